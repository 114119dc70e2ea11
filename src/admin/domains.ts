// Adding a domain: shared by `fe domain add` and `fe dev`.
import { addDomain as addDomainNode, setDkim } from '../config/edit.js';
import { editConfig } from '../config/file.js';
import { asciiDomain } from '../config/names.js';
import { createDkimKey, nextSelector, usedSelectors } from '../dkim/keys.js';
import { UserError } from '../util/errors.js';
import { parseName } from './lookup.js';

export interface AddDomainResult {
  name: string; // ASCII, as published in DNS
  written: string; // as written into fe.yml (may be Unicode)
  selector: string; // first DKIM selector
}

export async function addDomain(file: string, input: string): Promise<AddDomainResult> {
  const name = parseName(asciiDomain, input);
  const written = input.trim().replace(/\.$/, '').normalize('NFC').toLowerCase();
  const selector = await editConfig(file, ({ doc, config }) => {
    if (config.domains.has(name)) throw new UserError(`${name} is already served (as "${config.domains.get(name)!.key}"); nothing was changed`);
    addDomainNode(doc, written);
    const selector = nextSelector(usedSelectors(config.dataDir, name)); // a re-added domain never reuses an old name
    createDkimKey(config.dataDir, name, selector);
    setDkim(doc, written, { active: [selector], published: [selector] });
    return selector;
  });
  return { name, written, selector };
}
