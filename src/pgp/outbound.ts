// `encrypt_outbound: wkd` on a mailbox: what it sends is encrypted as PGP/MIME when every outside
// recipient has a key (published in their WKD, or kept with `fe key add`), before DKIM signs it,
// so the signature covers what leaves. One recipient without a key: the message goes as written
// (encrypting to some would leave the others unable to read it), and the log says so.
import type { Key } from 'openpgp';
import type { FeConfig } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import { encryptedKind } from './detect.js';
import { keyState } from './key-state.js';
import { encryptMessage } from './pgp-mime.js';
import { subjectMode } from './store.js';
import type { WkdLookup } from './wkd-lookup.js';

function wantsWkd(config: FeConfig, user: string): boolean {
  const at = user.lastIndexOf('@');
  return config.domains.get(user.slice(at + 1).toLowerCase())?.aliases.get(user.slice(0, at).toLowerCase())?.encryptOutbound === 'wkd';
}

async function keptKey(config: FeConfig, address: string, now: Date): Promise<Key | null> {
  const entry = config.keys.get(address.toLowerCase());
  if (!entry) return null;
  const state = await keyState(entry.armored, now);
  return state.usable ? state.key : null;
}

/** The bytes to sign and queue for `recipients` (outside addresses) of a message `user` sends. */
export async function encryptOutbound(config: FeConfig, user: string, message: Buffer, recipients: string[], wkd: WkdLookup | null, log: Logger, now: Date = new Date()): Promise<Buffer> {
  if (recipients.length === 0 || !wkd || !wantsWkd(config, user)) return message;
  if (encryptedKind(message)) return message; // the client encrypted it already
  const found = await Promise.all(
    recipients.map(async (r) => {
      const kept = await keptKey(config, r, now);
      return kept ? { key: kept, note: 'fe key add' } : wkd.key(r, now);
    }),
  );
  const missing = found.filter((f) => !f.key).length;
  if (missing > 0) {
    log.info('sent without OpenPGP: not every recipient publishes a key', { user: log.addr(user), recipients: recipients.length, without: missing, why: found.find((f) => !f.key)!.note });
    return message;
  }
  // The sender's own key too, when it has one: a bounce returns the content, and only the
  // recipients could read it otherwise.
  const own = await keptKey(config, user, now);
  const keys = [...found.map((f) => f.key!), ...(own ? [own] : [])];
  log.info('encrypted to every recipient (OpenPGP, encrypt_outbound: wkd)', { user: log.addr(user), recipients: recipients.length });
  return encryptMessage(message, keys, subjectMode(config, user), now);
}
