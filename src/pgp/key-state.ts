// Whether a key from fe.yml can be encrypted to right now. `fe key add` refused bad keys, but a
// good key expires or is revoked later: then fe must notice at delivery time and say so.
import * as openpgp from 'openpgp';
import type { Key } from 'openpgp';

/** Warn this long before a key stops working, so the owner can extend it in time. */
export const EXPIRY_WARNING_MS = 14 * 24 * 60 * 60 * 1000;

export type KeyState =
  | { usable: true; key: Key; fingerprint: string; expires: Date | null; expiresSoon: boolean }
  | { usable: false; fingerprint: string; reason: string };

// Parsed keys by armored text: parsing costs more than encrypting a small message.
const parsed = new Map<string, Promise<Key>>();

function readKey(armored: string): Promise<Key> {
  let p = parsed.get(armored);
  if (!p) {
    p = openpgp.readKey({ armoredKey: armored });
    p.catch(() => parsed.delete(armored));
    if (parsed.size > 1000) parsed.clear(); // keys removed from fe.yml leave; a bound keeps it small
    parsed.set(armored, p);
  }
  return p;
}

function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export async function keyState(armored: string, now: Date = new Date()): Promise<KeyState> {
  let key: Key;
  try {
    key = await readKey(armored);
  } catch (e) {
    return { usable: false, fingerprint: '?', reason: `the key in fe.yml cannot be read (${(e as Error).message.split('\n')[0]})` };
  }
  return keyStateOf(key, now);
}

/** The same verdict for a key already parsed (one fetched from a correspondent's WKD). */
export async function keyStateOf(key: Key, now: Date = new Date()): Promise<KeyState> {
  const fingerprint = key.getFingerprint().toUpperCase();
  if (await key.isRevoked(undefined, undefined, now)) return { usable: false, fingerprint, reason: 'it has been revoked by its owner' };
  let encryptionKey;
  try {
    encryptionKey = await key.getEncryptionKey(undefined, now);
  } catch {
    const exp = await key.getExpirationTime().catch(() => null);
    if (exp instanceof Date && exp <= now) return { usable: false, fingerprint, reason: `it expired on ${day(exp)}` };
    const subs = await Promise.all(key.subkeys.map((s) => s.getExpirationTime(now).catch(() => null)));
    const past = subs.filter((d): d is Date => d instanceof Date && d <= now).sort((a, b) => b.getTime() - a.getTime())[0];
    if (past) return { usable: false, fingerprint, reason: `its encryption subkey expired on ${day(past)}` };
    return { usable: false, fingerprint, reason: 'it has no valid encryption subkey (expired or revoked)' };
  }
  const ends = [await key.getExpirationTime().catch(() => null)];
  if (encryptionKey instanceof openpgp.Subkey) ends.push(await encryptionKey.getExpirationTime(now).catch(() => null));
  const expires = ends.filter((d): d is Date => d instanceof Date).sort((a, b) => a.getTime() - b.getTime())[0] ?? null;
  return { usable: true, key, fingerprint, expires, expiresSoon: expires !== null && expires.getTime() - now.getTime() < EXPIRY_WARNING_MS };
}
