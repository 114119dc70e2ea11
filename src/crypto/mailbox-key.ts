// A mailbox's keys. The mailbox master key (which keys its SQLite database) and the private
// halves of its sealing keys (X25519, and ML-KEM-768 from key file v2 on) exist on disk only
// wrapped by a key derived from the owner's password; the public sealing keys sit in clear so
// the MX can seal mail without any password.
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
import { existsSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, fsyncDir, writeFileAtomic } from '../util/atomic-file.js';
import { isHybrid, MLKEM_PUBLIC_LEN, mlkemFromSeed, newMlkemSeed, type HybridPrivateKey, type SealOpener, type SealRecipient } from './seal.js';

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

interface KeyFileCommon {
  address: string;
  created: string;
  kdf: { name: 'scrypt'; salt: string } & ScryptParams;
  wrapped: { cipher: 'chacha20-poly1305'; nonce: string; data: string; tag: string };
}

// v1: an X25519 sealing key. v2 adds an ML-KEM-768 key (the hybrid seal); its 64-byte seed is
// wrapped beside the X25519 private key, under the same password-derived key.
interface KeyFileV1 extends KeyFileCommon {
  version: 1;
  sealing: { algorithm: 'x25519'; publicKey: string }; // SPKI DER, base64
}

interface KeyFileV2 extends KeyFileCommon {
  version: 2;
  sealing: { algorithm: 'x25519+ml-kem-768'; publicKey: string; mlkemPublicKey: string }; // SPKI DER; raw encapsulation key (1184 bytes), base64
}

type KeyFile = KeyFileV1 | KeyFileV2;

export interface MailboxSecrets {
  masterKey: Buffer; // 32 bytes
  /** X25519 alone for a v1 key file, the hybrid pair for v2. */
  sealingPrivateKey: SealOpener;
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

// The address is bound into the AEAD so a key file copied to another mailbox will not open; the
// version too, so a v2 file relabelled v1 (to drop the ML-KEM key) does not open either.
function aad(version: 1 | 2, address: string): Buffer {
  return Buffer.from(`fe mailbox key v${version} ${address}`, 'utf8');
}

// What the wrapped part holds: the master key, the X25519 private key and (v2) the ML-KEM seed.
interface Inner {
  masterKey: Buffer;
  x25519: KeyObject;
  mlkemSeed?: Buffer;
}

/** Always writes the current format (v2): a v1 key re-wrapped here gets an ML-KEM key. */
function wrap(address: string, password: string, inner: Inner & { mlkemSeed: Buffer }, created: string): KeyFileV2 {
  const salt = randomBytes(16);
  return wrapWith(kek(password, salt, SCRYPT), salt, address, inner, created);
}

/** As wrap, with the password-derived key already made from `salt` (async callers). */
function wrapWith(key: Buffer, salt: Buffer, address: string, inner: Inner & { mlkemSeed: Buffer }, created: string): KeyFileV2 {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  cipher.setAAD(aad(2, address), { plaintextLength: 0 }); // plaintextLength is used only by CCM modes
  const plain = Buffer.from(
    JSON.stringify({
      masterKey: inner.masterKey.toString('base64'),
      sealingPrivateKey: inner.x25519.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
      mlkemSeed: inner.mlkemSeed.toString('base64'),
    }),
  );
  const data = Buffer.concat([cipher.update(plain), cipher.final()]);
  plain.fill(0);
  // The public halves are derived from the private ones, never copied from an older file.
  const mlkem = mlkemFromSeed(inner.mlkemSeed);
  mlkem.secretKey.fill(0);
  return {
    version: 2,
    address,
    created,
    kdf: { name: 'scrypt', salt: salt.toString('base64'), ...SCRYPT },
    sealing: {
      algorithm: 'x25519+ml-kem-768',
      publicKey: createPublicKey(inner.x25519).export({ type: 'spki', format: 'der' }).toString('base64'),
      mlkemPublicKey: Buffer.from(mlkem.publicKey).toString('base64'),
    },
    wrapped: { cipher: 'chacha20-poly1305', nonce: nonce.toString('base64'), data: data.toString('base64'), tag: cipher.getAuthTag().toString('base64') },
  };
}

function readKeyFile(file: string): KeyFile {
  let parsed: KeyFile;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as KeyFile;
  } catch (e) {
    throw new KeyFileError(`cannot read mailbox key ${file}: ${(e as Error).message}`);
  }
  if (parsed.kdf?.name !== 'scrypt' || parsed.wrapped?.cipher !== 'chacha20-poly1305') throw new KeyFileError(`mailbox key ${file} has an unknown format`);
  if (parsed.version === 1 && parsed.sealing?.algorithm === 'x25519') return parsed;
  if (parsed.version === 2 && parsed.sealing?.algorithm === 'x25519+ml-kem-768' && typeof parsed.sealing.mlkemPublicKey === 'string') return parsed;
  throw new KeyFileError(`mailbox key ${file} has an unknown format (version ${String((parsed as { version?: unknown }).version)})`);
}

function unwrapInner(file: KeyFile, key: Buffer): Inner {
  const decipher = createDecipheriv('chacha20-poly1305', key, Buffer.from(file.wrapped.nonce, 'base64'), {
    authTagLength: 16,
  });
  const data = Buffer.from(file.wrapped.data, 'base64');
  decipher.setAAD(aad(file.version, file.address), { plaintextLength: data.length });
  decipher.setAuthTag(Buffer.from(file.wrapped.tag, 'base64'));
  let plain: Buffer;
  try {
    plain = Buffer.concat([decipher.update(data), decipher.final()]);
  } catch {
    throw new WrongPassword(); // the tag does not verify: wrong password (or a tampered file)
  }
  const json = JSON.parse(plain.toString('utf8')) as { masterKey: string; sealingPrivateKey: string; mlkemSeed?: string };
  plain.fill(0);
  const inner: Inner = {
    masterKey: Buffer.from(json.masterKey, 'base64'),
    x25519: createPrivateKey({ key: Buffer.from(json.sealingPrivateKey, 'base64'), format: 'der', type: 'pkcs8' }),
  };
  if (file.version === 2) {
    if (typeof json.mlkemSeed !== 'string') throw new KeyFileError('mailbox key v2 lacks its ML-KEM seed');
    inner.mlkemSeed = Buffer.from(json.mlkemSeed, 'base64');
  }
  return inner;
}

function unwrapInnerWithPassword(file: KeyFile, password: string): Inner {
  const { N, r, p } = file.kdf;
  return unwrapInner(file, kek(password, Buffer.from(file.kdf.salt, 'base64'), { N, r, p }));
}

function secretsOf(inner: Inner): MailboxSecrets {
  if (!inner.mlkemSeed) return { masterKey: inner.masterKey, sealingPrivateKey: inner.x25519 };
  const { publicKey, secretKey } = mlkemFromSeed(inner.mlkemSeed);
  inner.mlkemSeed.fill(0);
  const hybrid: HybridPrivateKey = { x25519: inner.x25519, mlkemSecret: secretKey, mlkemPublic: publicKey };
  return { masterKey: inner.masterKey, sealingPrivateKey: hybrid };
}

/** Creates a new mailbox key in `dir` (hybrid sealing key). Refuses to replace an existing one: that would orphan the mail. */
export function createMailboxKey(dir: string, address: string, password: string): void {
  if (hasMailboxKey(dir)) throw new KeyFileError(`a mailbox key already exists in ${dir}`);
  ensurePrivateDir(dir);
  const inner = { masterKey: randomBytes(32), x25519: generateKeyPairSync('x25519').privateKey, mlkemSeed: newMlkemSeed() };
  const file = wrap(address, password, inner, new Date().toISOString());
  inner.masterKey.fill(0);
  inner.mlkemSeed.fill(0);
  writeFileAtomic(keyFilePath(dir), JSON.stringify(file, null, 2) + '\n', 0o600);
}

export function unlockMailboxKey(dir: string, password: string): MailboxSecrets {
  return secretsOf(unwrapInnerWithPassword(readKeyFile(keyFilePath(dir)), password));
}

/** As unlockMailboxKey, with the key derivation off the event loop (daemons: logins must not stall others). */
export async function unlockMailboxKeyAsync(dir: string, password: string): Promise<MailboxSecrets> {
  return (await unlockMailboxKeyWithSalt(dir, password)).secrets;
}

/** As unlockMailboxKeyAsync, with the salt of the very file the password opened (what a verifier binds to). */
export async function unlockMailboxKeyWithSalt(dir: string, password: string): Promise<{ secrets: MailboxSecrets; salt: string }> {
  const file = readKeyFile(keyFilePath(dir));
  const { N, r, p } = file.kdf;
  return { secrets: secretsOf(unwrapInner(file, await kekAsync(password, Buffer.from(file.kdf.salt, 'base64'), { N, r, p }))), salt: file.kdf.salt };
}

/** The key file's current salt: a new one each time the key is re-wrapped (a password change). */
export function mailboxKeySalt(dir: string): string {
  return readKeyFile(keyFilePath(dir)).kdf.salt;
}

// Parsed sealing keys by key file, kept while the file is the same (inode, size, mtime): the MX
// seals every message, and reading, parsing and importing the key each time was ~5% of its CPU.
const sealingKeys = new Map<string, { stamp: string; key: SealRecipient }>();
const MAX_CACHED_KEYS = 10_000;

/** What the MX seals to: X25519 alone for a v1 key, the hybrid for v2. Needs no password. */
export function sealingPublicKey(dir: string): SealRecipient {
  const file = keyFilePath(dir);
  let st;
  try {
    st = statSync(file, { bigint: true });
  } catch {
    return readSealingPublicKey(file); // its own error for a missing or unreadable key file
  }
  const stamp = `${st.ino}:${st.size}:${st.mtimeNs}`;
  const cached = sealingKeys.get(file);
  if (cached && cached.stamp === stamp) return cached.key;
  const key = readSealingPublicKey(file);
  sealingKeys.delete(file);
  sealingKeys.set(file, { stamp, key });
  if (sealingKeys.size > MAX_CACHED_KEYS) sealingKeys.delete(sealingKeys.keys().next().value!);
  return key;
}

function readSealingPublicKey(keyFile: string): SealRecipient {
  const file = readKeyFile(keyFile);
  const x25519 = createPublicKey({ key: Buffer.from(file.sealing.publicKey, 'base64'), format: 'der', type: 'spki' });
  if (file.version === 1) return x25519;
  const mlkem = Buffer.from(file.sealing.mlkemPublicKey, 'base64');
  if (mlkem.length !== MLKEM_PUBLIC_LEN) throw new KeyFileError(`mailbox key ${keyFile}: the ML-KEM public key is ${mlkem.length} bytes, not ${MLKEM_PUBLIC_LEN}`);
  return { x25519, mlkem };
}

/** The mailbox key's format: 1 (X25519 seal) or 2 (X25519 + ML-KEM-768 hybrid). */
export function mailboxKeyVersion(dir: string): 1 | 2 {
  return readKeyFile(keyFilePath(dir)).version;
}

/**
 * Puts `next` in place of the key file only once it is known to open to the same secrets: it is
 * staged beside the old file, unwrapped again from disk, then renamed over it, so a crash or a bug
 * cannot lose the key.
 */
function replaceKeyFile(dir: string, next: KeyFile, open: (staged: KeyFile) => { masterKey: Buffer; mlkemSeed?: Buffer }, masterKey: Buffer, seed: Buffer): void {
  const staged = path.join(dir, `${KEY_FILE}.new`);
  writeFileAtomic(staged, JSON.stringify(next, null, 2) + '\n', 0o600);
  try {
    const check = open(readKeyFile(staged));
    const same = check.masterKey.equals(masterKey) && !!check.mlkemSeed?.equals(seed);
    check.masterKey.fill(0);
    check.mlkemSeed?.fill(0);
    if (!same) throw new KeyFileError('re-wrapped key does not match');
  } catch (e) {
    rmSync(staged, { force: true });
    throw e;
  }
  renameSync(staged, keyFilePath(dir));
  fsyncDir(dir);
}

/**
 * Writes the same secrets wrapped under `newPassword` (adding an ML-KEM key when the file had
 * none). The new file is written beside the old one and opened before it replaces the old, so a
 * crash or a bug cannot lose the key.
 */
function rewrap(dir: string, oldPassword: string, newPassword: string): { addedMlkem: boolean } {
  const current = readKeyFile(keyFilePath(dir));
  const inner = unwrapInnerWithPassword(current, oldPassword);
  const addedMlkem = !inner.mlkemSeed;
  const seed = inner.mlkemSeed ?? newMlkemSeed();
  const next = wrap(current.address, newPassword, { ...inner, mlkemSeed: seed }, current.created);
  replaceKeyFile(dir, next, (staged) => unwrapInnerWithPassword(staged, newPassword), inner.masterKey, seed);
  inner.masterKey.fill(0);
  seed.fill(0);
  return { addedMlkem };
}

/** Re-wraps the same secrets under a new password (and adds the ML-KEM key to a v1 file). */
export function changeMailboxPassword(dir: string, oldPassword: string, newPassword: string): void {
  rewrap(dir, oldPassword, newPassword);
}

/**
 * Gives a v1 mailbox key its ML-KEM-768 half, keeping the password, the master key and the X25519
 * key: mail sealed before stays readable, mail sealed after is hybrid. False when it had one already.
 */
export function upgradeMailboxSeal(dir: string, password: string): boolean {
  const current = readKeyFile(keyFilePath(dir));
  if (current.version === 2) {
    const inner = unwrapInnerWithPassword(current, password); // still check the password
    inner.masterKey.fill(0);
    inner.mlkemSeed?.fill(0);
    return false;
  }
  return rewrap(dir, password, password).addedMlkem;
}

/**
 * At a login: gives a v1 key its ML-KEM-768 half, as upgradeMailboxSeal does, but with the key
 * derivation off the event loop and without unwrapping again: `opened` is what the password just
 * unwrapped from the file whose salt is `opened.salt`. The caller holds the key file's lock. When
 * the file is no longer that one (another process upgraded it or changed the password since), it is
 * left alone and `opened` comes back. Otherwise the secrets and salt of the new file come back.
 * Crash-safe as rewrap: the new file is staged, read back and only then renamed over the old.
 */
export async function addMlkemAtLogin(dir: string, password: string, opened: { secrets: MailboxSecrets; salt: string }): Promise<{ secrets: MailboxSecrets; salt: string; upgraded: boolean }> {
  const current = readKeyFile(keyFilePath(dir));
  const x25519 = opened.secrets.sealingPrivateKey;
  if (current.version !== 1 || current.kdf.salt !== opened.salt || isHybrid(x25519)) return { ...opened, upgraded: false };
  const seed = newMlkemSeed();
  const salt = randomBytes(16);
  const key = await kekAsync(password, salt, SCRYPT);
  const inner = { masterKey: opened.secrets.masterKey, x25519, mlkemSeed: seed };
  const next = wrapWith(key, salt, current.address, inner, current.created);
  try {
    replaceKeyFile(dir, next, (staged) => unwrapInner(staged, key), inner.masterKey, seed);
  } finally {
    key.fill(0);
  }
  return { secrets: secretsOf(inner), salt: next.kdf.salt, upgraded: true };
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
