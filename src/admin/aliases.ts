// Adding aliases: shared by `fe alias add` and `fe dev`.
import { rmSync } from 'node:fs';
import { takeAliasCreation } from '../config/alias-quota.js';
import { setAlias } from '../config/edit.js';
import { editConfig } from '../config/file.js';
import { aliasAddress, formatAddress, mailboxAddress } from '../config/names.js';
import type { AliasConfig } from '../config/schema.js';
import { createMailboxKey, generatePassword, hasMailboxKey, keyFilePath, unlockMailboxKey, WrongPassword } from '../crypto/mailbox-key.js';
import { mailboxDir } from '../store/paths.js';
import { UserError } from '../util/errors.js';
import { parseName, servedDomain } from './lookup.js';

export const MIN_PASSWORD = 12;

export function describeAlias(alias: AliasConfig): string {
  const parts = [];
  if (alias.mailbox) parts.push('mailbox');
  if (alias.forward.length > 0) parts.push(`forward to ${alias.forward.join(', ')}`);
  return parts.join(' + ');
}

export interface AddAliasRequest {
  address: string;
  forward: string[];
  mailbox: boolean;
  password?: string | null; // the owner's choice; none: a random one is generated for a mailbox
}

export interface AddAliasResult {
  address: string; // canonical
  generatedPassword: string | null; // to show once
  reattached: boolean; // an earlier mailbox of this name was opened with the given password
}

export async function addAlias(file: string, req: AddAliasRequest): Promise<AddAliasResult> {
  const address = parseName(aliasAddress, req.address);
  const canonical = formatAddress(address);
  const forward = req.forward.map((s) => parseName(mailboxAddress, s));
  if (!req.mailbox && forward.length === 0) throw new UserError('an alias needs forwarding targets, a mailbox, or both');
  if (forward.some((f) => f.toLowerCase() === canonical)) throw new UserError(`${canonical} cannot forward to itself`);
  const given = req.password ?? null;
  if (given !== null && given.length < MIN_PASSWORD) throw new UserError(`the password is shorter than ${MIN_PASSWORD} characters; nothing was changed`);
  const password = given ?? (req.mailbox ? generatePassword() : null);
  let reattached = false;
  let created: string | null = null;
  await editConfig(file, ({ doc, config }) => {
    const domain = servedDomain(config, address.domain);
    const existing = domain.aliases.get(address.local);
    if (existing) throw new UserError(`${canonical} already exists (${describeAlias(existing)}); nothing was changed`);
    if (password !== null) {
      const dir = mailboxDir(config.dataDir, domain.name, address.local);
      if (hasMailboxKey(dir)) {
        // Mail from an earlier alias of this name is still there: only its own password may reopen it.
        if (given === null) {
          throw new UserError(`a mailbox for ${canonical} already exists in ${dir} (from an earlier alias); give its password with --password-stdin to attach it again, or move that folder away`);
        }
        try {
          unlockMailboxKey(dir, given);
        } catch (e) {
          if (e instanceof WrongPassword) throw new UserError(`a mailbox for ${canonical} already exists in ${dir} and this is not its password; nothing was changed`);
          throw e;
        }
        reattached = true;
      } else {
        createMailboxKey(dir, canonical, password);
        created = dir;
      }
    }
    takeAliasCreation(config.dataDir, domain.name, config.limits.aliasCreationsPerDomainPerDay);
    setAlias(doc, domain, address.local, { forward, mailbox: req.mailbox, sendAs: [] });
  }).catch((e: unknown) => {
    // A key whose password was never shown would only block a later attempt: take it back.
    if (created) rmSync(keyFilePath(created), { force: true });
    throw e;
  });
  return { address: canonical, generatedPassword: given === null ? password : null, reattached };
}
