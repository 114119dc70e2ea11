// Hybrid public-key encryption of one message for an offline mailbox: ephemeral X25519, HKDF-SHA256
// over the shared secret (salted with both public keys), ChaCha20-Poly1305. Sender-anonymous:
// whoever holds the public key can seal, only the private key opens.
//
// Format v1:  magic "feSL" | version 0x01 | ephemeral X25519 public key (32) | ciphertext | tag (16)
// Key and nonce both come from HKDF; the ephemeral key is fresh per message, so the nonce never repeats
// under one key. The header is the AEAD's associated data, so no byte of it can be altered.
import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto';

const MAGIC = Buffer.from('feSL', 'latin1');
const VERSION = 1;
const PUB_LEN = 32;
const TAG_LEN = 16;
const HEADER_LEN = MAGIC.length + 1 + PUB_LEN;
const INFO = Buffer.from('fe seal v1 x25519 hkdf-sha256 chacha20-poly1305', 'latin1');

export class SealError extends Error {}

function rawPublic(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'x25519') throw new SealError(`sealing key must be X25519, got ${key.asymmetricKeyType ?? key.type}`);
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new SealError('cannot export the X25519 public key');
  return Buffer.from(jwk.x, 'base64url');
}

function x25519Public(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

function deriveKeyNonce(privateKey: KeyObject, publicKey: KeyObject, ephemeralPub: Buffer, recipientPub: Buffer): { key: Buffer; nonce: Buffer } {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    // OpenSSL refuses low-order points (all-zero shared secret).
    throw new SealError('cannot open sealed message: invalid ephemeral key');
  }
  const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephemeralPub, recipientPub]), INFO, 44));
  shared.fill(0);
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32, 44) };
}

/** Seals the concatenation of `parts` (saves copying a large message just to prepend a header). */
export function sealParts(parts: readonly Uint8Array[], recipient: KeyObject): Buffer {
  if (recipient.type !== 'public') throw new SealError('seal needs the recipient public key');
  const recipientPub = rawPublic(recipient);
  const eph = generateKeyPairSync('x25519');
  const ephPub = rawPublic(eph.publicKey);
  const { key, nonce } = deriveKeyNonce(eph.privateKey, recipient, ephPub, recipientPub);
  const header = Buffer.concat([MAGIC, Buffer.from([VERSION]), ephPub]);
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  cipher.setAAD(header, { plaintextLength: 0 });
  const out: Buffer[] = [header];
  for (const p of parts) out.push(cipher.update(p));
  out.push(cipher.final(), cipher.getAuthTag());
  key.fill(0);
  return Buffer.concat(out);
}

export function seal(plaintext: Uint8Array, recipient: KeyObject): Buffer {
  return sealParts([plaintext], recipient);
}

export function isSealed(data: Uint8Array): boolean {
  return data.length >= MAGIC.length && Buffer.from(data.buffer, data.byteOffset, MAGIC.length).equals(MAGIC);
}

export function open(sealed: Uint8Array, recipientPrivate: KeyObject): Buffer {
  if (recipientPrivate.type !== 'private') throw new SealError('open needs the recipient private key');
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (!isSealed(buf)) throw new SealError('not a sealed message (bad magic)');
  if (buf.length < HEADER_LEN + TAG_LEN) throw new SealError('sealed message is truncated');
  const version = buf[MAGIC.length];
  if (version !== VERSION) throw new SealError(`unsupported sealed message version ${version}`);
  const header = buf.subarray(0, HEADER_LEN);
  const ephPub = buf.subarray(MAGIC.length + 1, HEADER_LEN);
  const recipientPub = rawPublic(createPublicKey(recipientPrivate));
  const { key, nonce } = deriveKeyNonce(recipientPrivate, x25519Public(Buffer.from(ephPub)), Buffer.from(ephPub), recipientPub);
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  const body = buf.subarray(HEADER_LEN, buf.length - TAG_LEN);
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
