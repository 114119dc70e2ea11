// A mailbox's keys. The mailbox master key (which will key its SQLite database) and the private
// half of its sealing key pair exist on disk only wrapped by a key derived from the owner's
// password; the public sealing key sits in clear so the MX can seal mail without any password.
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  scrypt,
  scryptSync,
  type KeyObject,
} from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, fsyncDir, writeFileAtomic } from '../util/atomic-file.js';

export class WrongPassword extends Error {
  constructor() {
    super('wrong password');
  }
}

export class KeyFileError extends Error {}

interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

// ~32 MiB and ~100 ms per guess: slow for an attacker with a stolen disk, fine for a login.
const SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1 };
const KEY_FILE = 'key.json';

interface KeyFileV1 {
  version: 1;
  address: string;
  created: string;
  kdf: { name: 'scrypt'; salt: string } & ScryptParams;
  sealing: { algorithm: 'x25519'; publicKey: string }; // SPKI DER, base64
  wrapped: { cipher: 'chacha20-poly1305'; nonce: string; data: string; tag: string };
}

export interface MailboxSecrets {
  masterKey: Buffer; // 32 bytes
  sealingPrivateKey: KeyObject;
}

export function keyFilePath(dir: string): string {
  return path.join(dir, KEY_FILE);
}

export function hasMailboxKey(dir: string): boolean {
  return existsSync(keyFilePath(dir));
}

function scryptOptions(params: ScryptParams) {
  return { ...params, maxmem: 128 * params.N * params.r * 2 };
}

function kek(password: string, salt: Buffer, params: ScryptParams): Buffer {
  return scryptSync(password.normalize('NFC'), salt, 32, scryptOptions(params));
}

function kekAsync(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password.normalize('NFC'), salt, 32, scryptOptions(params), (e, key) => (e ? reject(e) : resolve(key))));
}

const DECOY_SALT = randomBytes(16);

/**
 * The work of checking a password against a mailbox that does not exist: the same scrypt as a
 * real unlock, so a wrong password and an unknown user take the same time (no mailbox probing).
 */
export async function decoyUnlockAsync(password: string): Promise<void> {
  (await kekAsync(password, DECOY_SALT, SCRYPT)).fill(0);
}

// The address is bound into the AEAD so a key file copied to another mailbox will not open.
function aad(address: string): Buffer {
  return Buffer.from(`fe mailbox key v1 ${address}`, 'utf8');
}

function wrap(address: string, password: string, secrets: MailboxSecrets, publicKey: KeyObject, created: string): KeyFileV1 {
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const cipher = createCipheriv('chacha20-poly1305', kek(password, salt, SCRYPT), nonce, { authTagLength: 16 });
  cipher.setAAD(aad(address), { plaintextLength: 0 }); // plaintextLength is used only by CCM modes
  const inner = Buffer.from(
    JSON.stringify({
      masterKey: secrets.masterKey.toString('base64'),
      sealingPrivateKey: secrets.sealingPrivateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
    }),
  );
  const data = Buffer.concat([cipher.update(inner), cipher.final()]);
  inner.fill(0);
  return {
    version: 1,
    address,
    created,
    kdf: { name: 'scrypt', salt: salt.toString('base64'), ...SCRYPT },
    sealing: { algorithm: 'x25519', publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64') },
    wrapped: { cipher: 'chacha20-poly1305', nonce: nonce.toString('base64'), data: data.toString('base64'), tag: cipher.getAuthTag().toString('base64') },
  };
}

function readKeyFile(file: string): KeyFileV1 {
  let parsed: KeyFileV1;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as KeyFileV1;
  } catch (e) {
    throw new KeyFileError(`cannot read mailbox key ${file}: ${(e as Error).message}`);
  }
  if (parsed.version !== 1 || parsed.kdf?.name !== 'scrypt' || parsed.wrapped?.cipher !== 'chacha20-poly1305') {
    throw new KeyFileError(`mailbox key ${file} has an unknown format`);
  }
  return parsed;
}

function unwrap(file: KeyFileV1, password: string): MailboxSecrets {
  const { N, r, p } = file.kdf;
  return unwrapWith(file, kek(password, Buffer.from(file.kdf.salt, 'base64'), { N, r, p }));
}

function unwrapWith(file: KeyFileV1, key: Buffer): MailboxSecrets {
  const decipher = createDecipheriv('chacha20-poly1305', key, Buffer.from(file.wrapped.nonce, 'base64'), {
    authTagLength: 16,
  });
  const data = Buffer.from(file.wrapped.data, 'base64');
  decipher.setAAD(aad(file.address), { plaintextLength: data.length });
  decipher.setAuthTag(Buffer.from(file.wrapped.tag, 'base64'));
  let inner: Buffer;
  try {
    inner = Buffer.concat([decipher.update(data), decipher.final()]);
  } catch {
    throw new WrongPassword(); // the tag does not verify: wrong password (or a tampered file)
  }
  const json = JSON.parse(inner.toString('utf8')) as { masterKey: string; sealingPrivateKey: string };
  inner.fill(0);
  return {
    masterKey: Buffer.from(json.masterKey, 'base64'),
    sealingPrivateKey: createPrivateKey({ key: Buffer.from(json.sealingPrivateKey, 'base64'), format: 'der', type: 'pkcs8' }),
  };
}

/** Creates a new mailbox key in `dir`. Refuses to replace an existing one: that would orphan the mail. */
export function createMailboxKey(dir: string, address: string, password: string): void {
  if (hasMailboxKey(dir)) throw new KeyFileError(`a mailbox key already exists in ${dir}`);
  ensurePrivateDir(dir);
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const secrets = { masterKey: randomBytes(32), sealingPrivateKey: privateKey };
  const file = wrap(address, password, secrets, publicKey, new Date().toISOString());
  secrets.masterKey.fill(0);
  writeFileAtomic(keyFilePath(dir), JSON.stringify(file, null, 2) + '\n', 0o600);
}

export function unlockMailboxKey(dir: string, password: string): MailboxSecrets {
  return unwrap(readKeyFile(keyFilePath(dir)), password);
}

/** As unlockMailboxKey, with the key derivation off the event loop (daemons: logins must not stall others). */
export async function unlockMailboxKeyAsync(dir: string, password: string): Promise<MailboxSecrets> {
  const file = readKeyFile(keyFilePath(dir));
  const { N, r, p } = file.kdf;
  return unwrapWith(file, await kekAsync(password, Buffer.from(file.kdf.salt, 'base64'), { N, r, p }));
}

export function sealingPublicKey(dir: string): KeyObject {
  const file = readKeyFile(keyFilePath(dir));
  return createPublicKey({ key: Buffer.from(file.sealing.publicKey, 'base64'), format: 'der', type: 'spki' });
}

/**
 * Re-wraps the same secrets under a new password. The new file is written beside the old one and
 * opened with the new password before it replaces the old, so a crash or a bug cannot lose the key.
 */
export function changeMailboxPassword(dir: string, oldPassword: string, newPassword: string): void {
  const current = readKeyFile(keyFilePath(dir));
  const secrets = unwrap(current, oldPassword);
  const publicKey = createPublicKey({ key: Buffer.from(current.sealing.publicKey, 'base64'), format: 'der', type: 'spki' });
  const next = wrap(current.address, newPassword, secrets, publicKey, current.created);
  const staged = path.join(dir, `${KEY_FILE}.new`);
  writeFileAtomic(staged, JSON.stringify(next, null, 2) + '\n', 0o600);
  try {
    const check = unwrap(readKeyFile(staged), newPassword);
    if (!check.masterKey.equals(secrets.masterKey)) throw new KeyFileError('re-wrapped key does not match');
  } catch (e) {
    rmSync(staged, { force: true });
    throw e;
  }
  renameSync(staged, keyFilePath(dir));
  fsyncDir(dir);
  secrets.masterKey.fill(0);
}

/** A long random password from an alphabet without look-alike characters (~140 bits). */
export function generatePassword(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const groups: string[] = [];
  for (let g = 0; g < 6; g++) {
    let s = '';
    // Rejection sampling keeps every character equally likely.
    while (s.length < 4) {
      const b = randomBytes(1)[0]!;
      if (b < 256 - (256 % alphabet.length)) s += alphabet[b % alphabet.length];
    }
    groups.push(s);
  }
  return groups.join('-');
}
