// DKIM signing keys: one key per dated selector, RSA or Ed25519 (RFC 8463), the private half a
// 0600 file under the data directory (never in fe.yml), the public half beside it so DNS output
// needs no secret. The algorithm is read from the key itself, so a file is all there is to it.
import { generateKeyPairSync, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { dkimDir } from '../store/paths.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';

export type DkimKeyType = 'rsa' | 'ed25519';
export const DKIM_KEY_TYPES: readonly DkimKeyType[] = ['rsa', 'ed25519'];

export interface DkimPublicKey {
  selector: string;
  keyType: DkimKeyType;
  /** SubjectPublicKeyInfo, DER, base64 (for both types; src/dns/records.ts makes the p= value). */
  publicKeyDerBase64: string;
}

export function privateKeyPath(dataDir: string, domain: string, selector: string): string {
  return path.join(dkimDir(dataDir, domain), `${selector}.key`);
}

function publicKeyPath(dataDir: string, domain: string, selector: string): string {
  return path.join(dkimDir(dataDir, domain), `${selector}.pub`);
}

/** A selector for this month that is not taken yet: fe202611, then fe202611b, fe202611c ... */
export function nextSelector(taken: readonly string[], now = new Date()): string {
  const base = `fe${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
  if (!taken.includes(base)) return base;
  for (let c = 'b'.charCodeAt(0); c <= 'z'.charCodeAt(0); c++) {
    const s = base + String.fromCharCode(c);
    if (!taken.includes(s)) return s;
  }
  throw new Error(`all selectors for ${base} are taken`);
}

function keyTypeOf(key: KeyObject, file: string): DkimKeyType {
  const t = key.asymmetricKeyType;
  if (t === 'rsa' || t === 'ed25519') return t;
  throw new Error(`${file} holds a ${t ?? 'unknown'} key; DKIM keys are rsa or ed25519`);
}

function describe(selector: string, key: KeyObject, file: string): DkimPublicKey {
  return { selector, keyType: keyTypeOf(key, file), publicKeyDerBase64: key.export({ type: 'spki', format: 'der' }).toString('base64') };
}

export function createDkimKey(dataDir: string, domain: string, selector: string, keyType: DkimKeyType = 'rsa'): DkimPublicKey {
  const dir = dkimDir(dataDir, domain);
  ensurePrivateDir(dir);
  // 2048-bit RSA: what every verifier supports, and fits one TXT record. Ed25519 is not yet
  // understood by every receiver (RFC 8463 asks to sign with RSA beside it), hence the choice.
  const { privateKey, publicKey } = keyType === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileAtomic(privateKeyPath(dataDir, domain, selector), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  const spki = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  writeFileAtomic(publicKeyPath(dataDir, domain, selector), spki, 0o644);
  return describe(selector, publicKey, publicKeyPath(dataDir, domain, selector));
}

export function readDkimPublicKey(dataDir: string, domain: string, selector: string): DkimPublicKey | null {
  const file = publicKeyPath(dataDir, domain, selector);
  if (!existsSync(file)) return null;
  return describe(selector, createPublicKey(readFileSync(file, 'utf8')), file);
}

/** The algorithm of a selector's key: from SELECTOR.pub, else from SELECTOR.key; null when neither exists. */
export function dkimKeyType(dataDir: string, domain: string, selector: string): DkimKeyType | null {
  const pub = readDkimPublicKey(dataDir, domain, selector);
  if (pub) return pub.keyType;
  const file = privateKeyPath(dataDir, domain, selector);
  if (!existsSync(file)) return null;
  return keyTypeOf(createPrivateKey(readFileSync(file, 'utf8')), file);
}

/**
 * The active list once `selector` signs too: it replaces the active selector of its own
 * algorithm and keeps the other. RSA comes first, the order signatures are added in.
 * Selectors whose key cannot be read stay, so a missing file is reported, not silently dropped.
 */
export function activeWith(dataDir: string, domain: string, active: readonly string[], selector: string): string[] {
  const type = dkimKeyType(dataDir, domain, selector);
  if (!type) throw new Error(`no key file for selector ${selector} of ${domain}`);
  const kept = active.filter((s) => s !== selector && dkimKeyType(dataDir, domain, s) !== type);
  const rank = (s: string) => (dkimKeyType(dataDir, domain, s) === 'rsa' ? 0 : 1);
  return [...kept, selector].sort((a, b) => rank(a) - rank(b));
}

/**
 * Deletes the private key; the public half is kept as SELECTOR.retired so the name is never
 * handed out again (resolvers may still cache the old record under it).
 */
export function retireDkimKey(dataDir: string, domain: string, selector: string): void {
  rmSync(privateKeyPath(dataDir, domain, selector), { force: true });
  const pub = publicKeyPath(dataDir, domain, selector);
  if (existsSync(pub)) renameSync(pub, pub.replace(/\.pub$/, '.retired'));
}

/** Every selector ever created for the domain: published, retired, or left over from a removal. */
export function usedSelectors(dataDir: string, domain: string): string[] {
  const dir = dkimDir(dataDir, domain);
  if (!existsSync(dir)) return [];
  return [...new Set(readdirSync(dir).map((f) => f.replace(/\.(key|pub|retired)$/, '')))];
}
