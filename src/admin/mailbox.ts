// Opening a mailbox with its owner's password: unwrap the keys, open the encrypted database,
// bring in mail that arrived while it was closed. Used by `fe mailbox` (and later IMAP/POP3 login).
import { formatAddress, aliasAddress } from '../config/names.js';
import type { FeConfig } from '../config/schema.js';
import { hasMailboxKey, unlockMailboxKey, WrongPassword } from '../crypto/mailbox-key.js';
import { MailboxStore, type ImportResult } from '../store/mailbox-db.js';
import { mailboxDir } from '../store/paths.js';
import { UserError } from '../util/errors.js';
import { parseName, servedDomain } from './lookup.js';

export interface OpenedMailbox {
  address: string;
  /** The mailbox's directory under data_dir (key.json, spool/). */
  dir: string;
  store: MailboxStore;
  imported: ImportResult;
}

export function openMailbox(config: FeConfig, input: string, password: string): OpenedMailbox {
  const address = parseName(aliasAddress, input);
  const canonical = formatAddress(address);
  const domain = servedDomain(config, address.domain);
  if (!domain.aliases.get(address.local)?.mailbox) throw new UserError(`${canonical} is not a mailbox alias`);
  const dir = mailboxDir(config.dataDir, domain.name, address.local);
  if (!hasMailboxKey(dir)) throw new UserError(`the mailbox key of ${canonical} is missing under ${dir}`);
  let secrets;
  try {
    secrets = unlockMailboxKey(dir, password);
  } catch (e) {
    if (e instanceof WrongPassword) throw new UserError(`wrong password for ${canonical}`);
    throw e;
  }
  const store = MailboxStore.open(dir, secrets);
  secrets.masterKey.fill(0);
  try {
    return { address: canonical, dir, store, imported: store.importSpool() };
  } catch (e) {
    store.close();
    throw e;
  }
}
