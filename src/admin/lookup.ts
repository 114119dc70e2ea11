// Looking up names given by a person: bad names and unknown domains become user errors (exit 1).
import { aliasAddress, asciiDomain, formatAddress, NameError } from '../config/names.js';
import { hasMailboxKey, keyFilePath } from '../crypto/mailbox-key.js';
import { mailboxDir } from '../store/paths.js';
import type { DomainConfig, FeConfig } from '../config/schema.js';
import { UserError } from '../util/errors.js';

/** Runs a name parser, reporting a bad name as a user error (exit 1). */
export function parseName<T>(parse: (s: string) => T, input: string): T {
  try {
    return parse(input);
  } catch (e) {
    if (e instanceof NameError) throw new UserError(e.message);
    throw e;
  }
}

export function servedDomain(config: FeConfig, input: string): DomainConfig {
  const name = parseName(asciiDomain, input);
  const domain = config.domains.get(name);
  if (!domain) {
    const served = [...config.domains.keys()];
    throw new UserError(`${name} is not a domain in ${config.file}` + (served.length ? ` (served: ${served.join(', ')})` : ' (no domains yet: `fe domain add NAME`)'));
  }
  return domain;
}

/** A mailbox alias given by a person and its folder; refused unless it is a mailbox whose key file exists. */
export function mailboxWithKey(config: FeConfig, input: string): { canonical: string; dir: string } {
  const address = parseName(aliasAddress, input);
  const canonical = formatAddress(address);
  const domain = servedDomain(config, address.domain);
  if (!domain.aliases.get(address.local)?.mailbox) throw new UserError(`${canonical} is not a mailbox alias`);
  const dir = mailboxDir(config.dataDir, domain.name, address.local);
  if (!hasMailboxKey(dir)) throw new UserError(`the mailbox key of ${canonical} is missing (${keyFilePath(dir)})`);
  return { canonical, dir };
}
