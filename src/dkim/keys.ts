// DKIM signing keys: one RSA key per dated selector, the private half a 0600 file under the data
// directory (never in fe.yml), the public half beside it so DNS output needs no secret.
import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { dkimDir } from '../store/paths.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';

export interface DkimPublicKey {
  selector: string;
  keyType: 'rsa';
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

export function createDkimKey(dataDir: string, domain: string, selector: string): DkimPublicKey {
  const dir = dkimDir(dataDir, domain);
  ensurePrivateDir(dir);
  // 2048-bit RSA: what every verifier supports, and fits one TXT record.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileAtomic(privateKeyPath(dataDir, domain, selector), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  const spki = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  writeFileAtomic(publicKeyPath(dataDir, domain, selector), spki, 0o644);
  return { selector, keyType: 'rsa', publicKeyDerBase64: publicKey.export({ type: 'spki', format: 'der' }).toString('base64') };
}

export function readDkimPublicKey(dataDir: string, domain: string, selector: string): DkimPublicKey | null {
  const file = publicKeyPath(dataDir, domain, selector);
  if (!existsSync(file)) return null;
  const key = createPublicKey(readFileSync(file, 'utf8'));
  return { selector, keyType: 'rsa', publicKeyDerBase64: key.export({ type: 'spki', format: 'der' }).toString('base64') };
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
