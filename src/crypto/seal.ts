// Public-key encryption of one message for an offline mailbox. Sender-anonymous: whoever holds the
// public key can seal, only the private key opens. Two versions, told apart by the byte after the
// magic; both keep opening.
//
// v1 (X25519):  "feSL" | 0x01 | ephemeral X25519 public key (32) | ciphertext | tag (16)
//   key, nonce = HKDF-SHA256(ikm = X25519 shared secret, salt = eph pub | recipient pub, info = INFO_V1)
//
// v2 (hybrid X25519 + ML-KEM-768, FIPS 203):
//   "feSL" | 0x02 | ephemeral X25519 public key (32) | ML-KEM-768 ciphertext (1088) | ciphertext | tag (16)
//   key, nonce = HKDF-SHA256(ikm = ss_mlkem | ss_x25519 | ct_mlkem | eph pub | recipient X25519 pub
//                                  | recipient ML-KEM pub, salt = INFO_V2, info = INFO_V2)
//   Both shared secrets go into one extraction together with everything public that names this
//   message and this recipient (the idea of X-Wing: the combiner treats HMAC as a random oracle
//   over the whole transcript). Whoever breaks X25519 (a quantum computer) still lacks ss_mlkem;
//   whoever breaks ML-KEM still lacks ss_x25519; and neither share can be replayed against
//   another recipient or paired with another message's other share, because the ciphertexts
//   and public keys are bound in. ML-KEM's implicit rejection gives a wrong secret for an altered
//   ciphertext, so such a file fails on the tag like any other tampering.
//
// Key and nonce both come from HKDF; the ephemeral secrets are fresh per message, so the nonce
// never repeats under one key. The header is the AEAD's associated data: no byte of it can change.
import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, KeyObject, randomBytes } from 'node:crypto';
import { MLKEM_PUBLIC_LEN, mlkemDecapsulate, mlkemEncapsulate, mlkemKeygen } from './mlkem.js';

const MAGIC = Buffer.from('feSL', 'latin1');
export const SEAL_V1 = 1;
export const SEAL_V2 = 2;
const X_LEN = 32;
const TAG_LEN = 16;
export { MLKEM_PUBLIC_LEN };
export const MLKEM_CIPHERTEXT_LEN = 1088;
export const MLKEM_SEED_LEN = 64;
const HEADER_V1 = MAGIC.length + 1 + X_LEN;
const HEADER_V2 = HEADER_V1 + MLKEM_CIPHERTEXT_LEN;
const INFO_V1 = Buffer.from('fe seal v1 x25519 hkdf-sha256 chacha20-poly1305', 'latin1');
const INFO_V2 = Buffer.from('fe seal v2 x25519+ml-kem-768 hkdf-sha256 chacha20-poly1305', 'latin1');

export class SealError extends Error {}

/** The file is sealed for a hybrid key and the key given has no ML-KEM part (an older copy of the mailbox key). */
export class SealKeyMissing extends SealError {}

/** Public half of a hybrid mailbox sealing key. */
export interface HybridPublicKey {
  x25519: KeyObject;
  mlkem: Uint8Array; // ML-KEM-768 encapsulation key, 1184 bytes
}

/** Private half of a hybrid sealing key, as held in memory while a mailbox is open. */
export interface HybridPrivateKey {
  x25519: KeyObject;
  mlkemSecret: Uint8Array; // ML-KEM-768 decapsulation key (2400 bytes), expanded from the stored 64-byte seed
  mlkemPublic: Uint8Array;
}

/** An X25519 key alone seals v1 (the queue, old mailboxes); a hybrid key seals v2. */
export type SealRecipient = KeyObject | HybridPublicKey;
export type SealOpener = KeyObject | HybridPrivateKey;

export function isHybrid<T extends SealRecipient | SealOpener>(key: T): key is Exclude<T, KeyObject> {
  return !(key instanceof KeyObject);
}

/** The ML-KEM-768 key pair a 64-byte seed (d | z of FIPS 203) stands for. */
export function mlkemFromSeed(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array } {
  if (seed.length !== MLKEM_SEED_LEN) throw new SealError(`ML-KEM seed must be ${MLKEM_SEED_LEN} bytes, got ${seed.length}`);
  return mlkemKeygen(seed);
}

export function newMlkemSeed(): Buffer {
  return randomBytes(MLKEM_SEED_LEN);
}

export function rawX25519Public(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'x25519') throw new SealError(`sealing key must be X25519, got ${key.asymmetricKeyType ?? key.type}`);
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new SealError('cannot export the X25519 public key');
  return Buffer.from(jwk.x, 'base64url');
}

function x25519Public(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

function x25519Shared(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  try {
    return diffieHellman({ privateKey, publicKey });
  } catch {
    // OpenSSL refuses low-order points (all-zero shared secret).
    throw new SealError('cannot open sealed message: invalid ephemeral key');
  }
}

function split(okm: Buffer): { key: Buffer; nonce: Buffer } {
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32, 44) };
}

function deriveV1(shared: Buffer, ephPub: Buffer, recipientPub: Buffer): { key: Buffer; nonce: Buffer } {
  const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephPub, recipientPub]), INFO_V1, 44));
  shared.fill(0);
  return split(okm);
}

function deriveV2(ssMlkem: Uint8Array, ssX: Buffer, ctMlkem: Uint8Array, ephPub: Buffer, xPub: Buffer, mlkemPub: Uint8Array): { key: Buffer; nonce: Buffer } {
  const ikm = Buffer.concat([ssMlkem, ssX, ctMlkem, ephPub, xPub, mlkemPub]);
  const okm = Buffer.from(hkdfSync('sha256', ikm, INFO_V2, INFO_V2, 44));
  ikm.fill(0);
  ssX.fill(0);
  ssMlkem.fill(0);
  return split(okm);
}

function encrypt(header: Buffer, key: Buffer, nonce: Buffer, parts: readonly Uint8Array[]): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  cipher.setAAD(header, { plaintextLength: 0 });
  const out: Buffer[] = [header];
  for (const p of parts) out.push(cipher.update(p));
  out.push(cipher.final(), cipher.getAuthTag());
  key.fill(0);
  return Buffer.concat(out);
}

/** Seals the concatenation of `parts` (saves copying a large message just to prepend a header). */
export function sealParts(parts: readonly Uint8Array[], recipient: SealRecipient): Buffer {
  const x = isHybrid(recipient) ? recipient.x25519 : recipient;
  if (x.type !== 'public') throw new SealError('seal needs the recipient public key');
  const xPub = rawX25519Public(x);
  const eph = generateKeyPairSync('x25519');
  const ephPub = rawX25519Public(eph.publicKey);
  const ssX = x25519Shared(eph.privateKey, x);
  if (!isHybrid(recipient)) {
    const { key, nonce } = deriveV1(ssX, ephPub, xPub);
    return encrypt(Buffer.concat([MAGIC, Buffer.from([SEAL_V1]), ephPub]), key, nonce, parts);
  }
  if (recipient.mlkem.length !== MLKEM_PUBLIC_LEN) throw new SealError(`ML-KEM-768 public key must be ${MLKEM_PUBLIC_LEN} bytes, got ${recipient.mlkem.length}`);
  let kem: { cipherText: Uint8Array; sharedSecret: Uint8Array };
  try {
    kem = mlkemEncapsulate(recipient.mlkem);
  } catch (e) {
    throw new SealError(`invalid ML-KEM-768 public key: ${(e as Error).message}`);
  }
  const { key, nonce } = deriveV2(kem.sharedSecret, ssX, kem.cipherText, ephPub, xPub, recipient.mlkem);
  return encrypt(Buffer.concat([MAGIC, Buffer.from([SEAL_V2]), ephPub, kem.cipherText]), key, nonce, parts);
}

export function seal(plaintext: Uint8Array, recipient: SealRecipient): Buffer {
  return sealParts([plaintext], recipient);
}

export function isSealed(data: Uint8Array): boolean {
  return data.length >= MAGIC.length && Buffer.from(data.buffer, data.byteOffset, MAGIC.length).equals(MAGIC);
}

/** The format version of a sealed message (1: X25519, 2: hybrid), or null when it is not one. */
export function sealVersion(data: Uint8Array): number | null {
  return isSealed(data) && data.length > MAGIC.length ? data[MAGIC.length]! : null;
}

export function open(sealed: Uint8Array, recipientPrivate: SealOpener): Buffer {
  const x = isHybrid(recipientPrivate) ? recipientPrivate.x25519 : recipientPrivate;
  if (x.type !== 'private') throw new SealError('open needs the recipient private key');
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (!isSealed(buf)) throw new SealError('not a sealed message (bad magic)');
  const version = buf[MAGIC.length];
  if (version !== SEAL_V1 && version !== SEAL_V2) throw new SealError(`unsupported sealed message version ${version}`);
  const headerLen = version === SEAL_V1 ? HEADER_V1 : HEADER_V2;
  if (buf.length < headerLen + TAG_LEN) throw new SealError('sealed message is truncated');
  const header = buf.subarray(0, headerLen);
  const ephPub = Buffer.from(buf.subarray(MAGIC.length + 1, HEADER_V1));
  const xPub = rawX25519Public(createPublicKey(x));
  let derived: { key: Buffer; nonce: Buffer };
  if (version === SEAL_V1) {
    derived = deriveV1(x25519Shared(x, x25519Public(ephPub)), ephPub, xPub);
  } else {
    if (!isHybrid(recipientPrivate)) throw new SealKeyMissing('this message is sealed with the X25519 + ML-KEM-768 hybrid and the key given has no ML-KEM part');
    const ct = buf.subarray(HEADER_V1, HEADER_V2);
    const ssX = x25519Shared(x, x25519Public(ephPub));
    let ssM: Uint8Array;
    try {
      ssM = mlkemDecapsulate(ct, recipientPrivate.mlkemSecret);
    } catch (e) {
      ssX.fill(0);
      throw new SealError(`cannot open sealed message: ${(e as Error).message}`);
    }
    derived = deriveV2(ssM, ssX, ct, ephPub, xPub, recipientPrivate.mlkemPublic);
  }
  const { key, nonce } = derived;
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  const body = buf.subarray(headerLen, buf.length - TAG_LEN);
  decipher.setAAD(header, { plaintextLength: body.length });
  decipher.setAuthTag(buf.subarray(buf.length - TAG_LEN));
  const plain = decipher.update(body);
  try {
    decipher.final();
  } catch {
    plain.fill(0); // never hand out unauthenticated plaintext
    throw new SealError('cannot open sealed message: wrong key or the data was tampered with');
  } finally {
    key.fill(0);
  }
  return plain;
}
