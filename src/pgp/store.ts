// The one door into a mailbox's spool for mail that may be OpenPGP-encrypted: a mailbox whose
// address has a key in fe.yml gets every message encrypted to it before it is sealed, so the
// mailbox database, backups and every IMAP/POP3 client hold only ciphertext. A key that no
// longer works is never skipped silently: the message is stored sealed as usual, with a WARN.
import type { AliasConfig, DomainConfig, FeConfig } from '../config/schema.js';
import { sealingPublicKey } from '../crypto/mailbox-key.js';
import { appendToSpoolAsync, type SpoolMeta } from '../store/spool.js';
import type { Logger } from '../util/log.js';
import { encryptedKind } from './detect.js';
import { keyState } from './key-state.js';
import { encryptMessage, type SubjectMode } from './pgp-mime.js';
import type { WkdLookup } from './wkd-lookup.js';

/** The Subject rule for an address: the alias's `encrypt:`, then the domain's, then hide. */
export function subjectMode(config: FeConfig, address: string): SubjectMode {
  const at = address.lastIndexOf('@');
  const domain = config.domains.get(address.slice(at + 1));
  const alias = domain?.aliases.get(address.slice(0, at));
  return alias?.encrypt?.subject ?? domain?.encrypt?.subject ?? 'hide';
}

/** For a forward alias: the Subject rule when it opted in with `encrypt:`, null when it did not. */
export function forwardEncryption(domain: DomainConfig, alias: AliasConfig): SubjectMode | null {
  return alias.encrypt ? (alias.encrypt.subject ?? domain.encrypt?.subject ?? 'hide') : null;
}

// Warn of a key that expires soon once a day per key, not on every message.
const warnedSoon = new Map<string, number>();

/**
 * The bytes to store for `address` (its canonical local@domain): encrypted when it has a usable
 * key, as given otherwise (no key, already encrypted, or a key that stopped working: WARNed).
 */
export async function protectForMailbox(config: FeConfig, address: string, message: Buffer, log: Logger, now: Date = new Date()): Promise<Buffer> {
  if (!config.keys.has(address)) return message;
  return protect(config, address, subjectMode(config, address), message, log, now);
}

/**
 * The forwarded copy for `target` of an alias with `encrypt:`: encrypted to the key `fe key add`
 * keeps for the target, else to the one the target's domain publishes (WKD). Without a usable
 * key it goes out as it came, with a WARN.
 */
export async function protectForForward(config: FeConfig, target: string, subject: SubjectMode, message: Buffer, log: Logger, wkd: WkdLookup | null, now: Date = new Date()): Promise<Buffer> {
  const address = target.toLowerCase();
  if (config.keys.has(address)) return protect(config, address, subject, message, log, now);
  if (encryptedKind(message)) return message; // as it came: no need to ask for a key
  const published = wkd ? await wkd.key(target, now) : null;
  if (!published?.key) {
    log.warn('forward alias has encrypt: but the target has no OpenPGP key: forwarded WITHOUT OpenPGP', { to: log.addr(target), ...(published ? { wkd: published.note } : {}), fix: `fe key add ${target} KEY.asc` });
    return message;
  }
  return encryptMessage(message, published.key, subject, now);
}

async function protect(config: FeConfig, address: string, subject: SubjectMode, message: Buffer, log: Logger, now: Date): Promise<Buffer> {
  const entry = config.keys.get(address)!;
  const kind = encryptedKind(message);
  if (kind) {
    log.debug('already end-to-end encrypted; stored as it came', { to: log.addr(address), kind });
    return message;
  }
  const state = await keyState(entry.armored, now);
  if (!state.usable) {
    log.warn(`OpenPGP key no longer usable: message ${config.domains.has(address.slice(address.lastIndexOf('@') + 1)) ? 'stored WITHOUT OpenPGP (sealed as usual)' : 'forwarded WITHOUT OpenPGP'}`, { to: log.addr(address), fingerprint: state.fingerprint, reason: state.reason, fix: `fe key add ${address} NEWKEY.asc` });
    return message;
  }
  if (state.expiresSoon && state.expires) {
    const today = Math.floor(now.getTime() / 86_400_000);
    if (warnedSoon.get(state.fingerprint) !== today) {
      warnedSoon.set(state.fingerprint, today);
      log.warn('OpenPGP key expires soon; after that mail is stored without OpenPGP', { to: log.addr(address), fingerprint: state.fingerprint, expires: state.expires.toISOString().slice(0, 10) });
    }
  }
  return encryptMessage(message, state.key, subject, now);
}

/** protectForMailbox, then sealed into the mailbox's spool (`dir`). Spool errors are thrown as appendToSpoolAsync throws them. */
export async function storeInMailbox(config: FeConfig, dir: string, message: Buffer, meta: SpoolMeta, log: Logger): Promise<string> {
  const stored = await protectForMailbox(config, meta.envelopeTo, message, log, meta.receivedAt);
  return appendToSpoolAsync(dir, sealingPublicKey(dir), stored, meta);
}
