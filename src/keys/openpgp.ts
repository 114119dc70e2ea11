// Validation of a user-supplied OpenPGP public key before fe encrypts mail to it.
import * as openpgp from 'openpgp';
import type { Key, Subkey } from 'openpgp';

export interface AcceptedKey {
  fingerprint: string;      // uppercase hex, no spaces
  armored: string;          // the public key re-armored by openpgp (never private material)
  userIds: string[];        // as in the key
  algorithm: string;        // e.g. 'ed25519 / x25519' or 'rsa4096', human readable
  created: Date;
  // Earliest of the primary key's and the chosen encryption subkey's expiry:
  // the moment mail can no longer be encrypted to this key. null = never.
  expires: Date | null;
}

export class KeyRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyRejected';
  }
}

const ARMOR_HEADER = /^-----BEGIN PGP ([A-Z0-9 ,/]+)-----[ \t]*\r?$/gm;
const ENCRYPTION_ALGORITHMS = new Set(['rsaEncryptSign', 'rsaEncrypt', 'elgamal', 'ecdh', 'x25519', 'x448', 'pqc_mlkem_x25519']);

function exportHint(address: string): string {
  return `gpg --export --armor ${address}`;
}

// openpgp's error text is short and names no secret data, but may be wrapped over
// several lines; keep the first line so our message stays a single line.
function detail(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = (text.split(/\r?\n/)[0] ?? '').trim();
  return line.length > 160 ? `${line.slice(0, 157)}...` : line;
}

function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}

type Decoded = { kind: 'armored'; text: string } | { kind: 'binary'; bytes: Uint8Array };

function decode(input: Uint8Array | string): Decoded {
  if (typeof input === 'string') return { kind: 'armored', text: input.replace(/^\uFEFF/, '') };
  // Copy out of a possible Buffer so openpgp sees a plain Uint8Array.
  const bytes = new Uint8Array(input);
  const b0 = bytes[0];
  const b1 = bytes[1];
  // Text files with a BOM (UTF-16 comes from PowerShell redirection of `gpg --armor`).
  if (b0 === 0xef && b1 === 0xbb && bytes[2] === 0xbf) {
    return { kind: 'armored', text: new TextDecoder('utf-8').decode(bytes.subarray(3)) };
  }
  if (b0 === 0xff && b1 === 0xfe) return { kind: 'armored', text: new TextDecoder('utf-16le').decode(bytes.subarray(2)) };
  if (b0 === 0xfe && b1 === 0xff) return { kind: 'armored', text: new TextDecoder('utf-16be').decode(bytes.subarray(2)) };
  // Every OpenPGP packet header has the high bit set; ASCII armor never does.
  if (b0 !== undefined && (b0 & 0x80) !== 0) return { kind: 'binary', bytes };
  return { kind: 'armored', text: new TextDecoder('utf-8').decode(bytes) };
}

function privateKeyRejection(address: string): KeyRejected {
  return new KeyRejected(
    `this is a private key; give the public key (${exportHint(address)}) and keep the private key to yourself`,
  );
}

function unparseable(address: string, why: string): KeyRejected {
  return new KeyRejected(`not an OpenPGP public key: ${why}; give the key exported with ${exportHint(address)}`);
}

async function parseArmored(text: string, address: string): Promise<Key[]> {
  const headers = [...text.matchAll(ARMOR_HEADER)];
  if (headers.length === 0) {
    throw unparseable(address, 'expected ASCII armor ("BEGIN PGP PUBLIC KEY BLOCK") or binary OpenPGP data');
  }
  // Check every block's type before parsing so private material is never handed on.
  for (const h of headers) {
    const type = h[1] ?? '';
    if (type === 'PRIVATE KEY BLOCK') throw privateKeyRejection(address);
  }
  for (const h of headers) {
    const type = h[1] ?? '';
    if (type !== 'PUBLIC KEY BLOCK') {
      throw unparseable(address, `the input is an OpenPGP ${type.toLowerCase()}, not a key`);
    }
  }
  // openpgp reads only the first armor block of a string, so concatenated
  // files (cat a.asc b.asc) must be split here or the extra keys go unseen.
  const keys: Key[] = [];
  for (let i = 0; i < headers.length; i++) {
    const start = headers[i]?.index ?? 0;
    const end = headers[i + 1]?.index ?? text.length;
    try {
      keys.push(...(await openpgp.readKeys({ armoredKeys: text.slice(start, end) })));
    } catch (err) {
      throw unparseable(address, `the armored key could not be read (${detail(err)})`);
    }
  }
  return keys;
}

async function parseBinary(bytes: Uint8Array, address: string): Promise<Key[]> {
  try {
    return await openpgp.readKeys({ binaryKeys: bytes });
  } catch (err) {
    throw unparseable(address, `the binary data could not be read as a key (${detail(err)})`);
  }
}

function algorithmName(k: Key | Subkey): string {
  const info = k.getAlgorithmInfo();
  switch (info.algorithm) {
    case 'rsaEncryptSign':
    case 'rsaEncrypt':
    case 'rsaSign':
      return `rsa${info.bits ?? ''}`;
    case 'dsa':
    case 'elgamal':
      return `${info.algorithm}${info.bits ?? ''}`;
    case 'eddsaLegacy':
    case 'ed25519':
      return 'ed25519';
    case 'ed448':
      return 'ed448';
    case 'x25519':
      return 'x25519';
    case 'x448':
      return 'x448';
    case 'ecdh':
      return info.curve === 'curve25519Legacy' ? 'x25519' : `ecdh ${info.curve ?? ''}`.trim();
    case 'ecdsa':
      return `ecdsa ${info.curve ?? ''}`.trim();
    case 'pqc_mlkem_x25519':
      return 'ml-kem-768+x25519';
    case 'pqc_mldsa_ed25519':
      return 'ml-dsa-65+ed25519';
    default:
      return String(info.algorithm);
  }
}

function finiteDate(d: Date | number | null): Date | null {
  return d instanceof Date ? d : null;
}

// Turn getEncryptionKey's generic failure into a reason the user can act on.
async function noEncryptionKey(key: Key, fpr: string, now: Date, cause: unknown): Promise<KeyRejected> {
  const fix = `ask the owner to add or renew an encryption subkey (gpg --quick-add-key ${fpr} cv25519 encr) and export the key again`;
  const candidates = key.subkeys.filter((s) => ENCRYPTION_ALGORITHMS.has(s.getAlgorithmInfo().algorithm));
  let expired: Date | null = null;
  let revoked = false;
  for (const s of candidates) {
    const binding = s.bindingSignatures[s.bindingSignatures.length - 1];
    if (binding && (await s.isRevoked(binding, key.keyPacket, now))) revoked = true;
    const exp = finiteDate(await s.getExpirationTime(now));
    if (exp && exp <= now && (!expired || exp > expired)) expired = exp;
  }
  if (candidates.length === 0 && !ENCRYPTION_ALGORITHMS.has(key.getAlgorithmInfo().algorithm)) {
    return new KeyRejected(`key ${fpr} cannot encrypt: it is a signing-only key with no encryption subkey; ${fix}`);
  }
  if (expired) return new KeyRejected(`key ${fpr} cannot encrypt: its encryption subkey expired on ${day(expired)}; ${fix}`);
  if (revoked) return new KeyRejected(`key ${fpr} cannot encrypt: its encryption subkey has been revoked; ${fix}`);
  return new KeyRejected(`key ${fpr} has no valid encryption subkey (${detail(cause)}); ${fix}`);
}

export async function checkPublicKey(input: Uint8Array | string, address: string, now: Date = new Date()): Promise<AcceptedKey> {
  const wanted = address.trim().toLowerCase();
  const decoded = decode(input);
  const blank = decoded.kind === 'armored' ? decoded.text.trim() === '' : decoded.bytes.length === 0;
  if (blank) throw new KeyRejected(`no key given: the input is empty; give the public key exported with ${exportHint(address)}`);

  const keys = decoded.kind === 'armored' ? await parseArmored(decoded.text, address) : await parseBinary(decoded.bytes, address);
  if (keys.some((k) => k.isPrivate())) throw privateKeyRejection(address);
  const key = keys[0];
  if (!key) throw unparseable(address, 'it contains no key');
  if (keys.length > 1) {
    const fprs = keys.slice(0, 5).map((k) => k.getFingerprint().toUpperCase());
    const more = keys.length > 5 ? ', ...' : '';
    throw new KeyRejected(
      `the input contains ${keys.length} keys (${fprs.join(', ')}${more}); give exactly one public key, e.g. ${exportHint(address)}`,
    );
  }

  const fpr = key.getFingerprint().toUpperCase();
  if (await key.isRevoked(undefined, undefined, now)) {
    throw new KeyRejected(`key ${fpr} has been revoked by its owner; ask them for their current key`);
  }
  try {
    await key.verifyPrimaryKey(now);
  } catch (err) {
    const created = key.getCreationTime();
    if (created > now) {
      throw new KeyRejected(`key ${fpr} was created ${created.toISOString()}, after ${now.toISOString()}; check the system clock`);
    }
    // null here means "no valid self-signature", which the generic message below covers.
    const exp = finiteDate(await key.getExpirationTime());
    if (exp && exp <= now) {
      throw new KeyRejected(`key ${fpr} expired on ${day(exp)}; ask the owner to extend it (gpg --quick-set-expire ${fpr} 1y) and export it again`);
    }
    throw new KeyRejected(
      `key ${fpr} is not valid: its self-signatures do not verify (${detail(err)}); the key is damaged or tampered with, export it again with ${exportHint(address)}`,
    );
  }

  // Only user IDs with a valid, unrevoked self-signature count: anyone can append
  // an unsigned "<victim@example.org>" packet and getUserIDs() would list it.
  const valid: string[] = [];
  let unverifiedMatch = false;
  for (const user of key.users) {
    const email = user.userID?.email;
    if (!email) continue;
    let ok = true;
    try {
      await user.verify(now);
    } catch {
      ok = false;
    }
    if (ok) valid.push(email);
    else if (email.toLowerCase() === wanted) unverifiedMatch = true;
  }
  if (!valid.some((e) => e.toLowerCase() === wanted)) {
    const has = valid.length > 0 ? `it is for ${[...new Set(valid)].join(', ')}` : 'it has no valid user ID with an email address';
    const why = unverifiedMatch ? `its user ID for ${address} is revoked or not validly signed, and ` : '';
    throw new KeyRejected(`key ${fpr} does not belong to ${address}: ${why}${has}; give the key of ${address}`);
  }

  let encryptionKey: Key | Subkey;
  try {
    encryptionKey = await key.getEncryptionKey(undefined, now);
  } catch (err) {
    throw await noEncryptionKey(key, fpr, now, err);
  }

  const primaryAlg = algorithmName(key);
  const encAlg = algorithmName(encryptionKey);
  const expiries = [finiteDate(await key.getExpirationTime())];
  if (encryptionKey instanceof openpgp.Subkey) expiries.push(finiteDate(await encryptionKey.getExpirationTime(now)));
  const ends = expiries.filter((d): d is Date => d !== null).sort((a, b) => a.getTime() - b.getTime());

  return {
    fingerprint: fpr,
    armored: key.toPublic().armor(),
    userIds: key.getUserIDs(),
    algorithm: primaryAlg === encAlg ? primaryAlg : `${primaryAlg} / ${encAlg}`,
    created: key.getCreationTime(),
    expires: ends[0] ?? null,
  };
}
