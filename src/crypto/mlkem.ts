// ML-KEM-768 (FIPS 203) encapsulation and decapsulation for the sealed spool and queue.
//
// Node's own implementation (OpenSSL 3.5: Node 24 has it, Node 20 not) where the running Node
// has it, else @noble/post-quantum. Both are the standard algorithm on the same raw key formats, so each
// opens what the other sealed (test/mlkem.test.ts checks it both ways). Measured here: encapsulate
// 0.03 ms native against 0.53 ms in JavaScript, decapsulate 0.04 against 0.57; the MX pays one
// encapsulation for every message it seals and a login one decapsulation per spooled message.
//
// Node takes keys as DER: SubjectPublicKeyInfo, and PKCS#8 holding the expanded decapsulation key
// (the structures of IETF LAMPS' ML-KEM certificate document), built here from fixed prefixes.
import crypto, { type KeyObject } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';

export const MLKEM_PUBLIC_LEN = 1184;
const SECRET_LEN = 2400;
// SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.4.2 (id-alg-ml-kem-768) }, BIT STRING (1184 bytes) }
const SPKI_PREFIX = Buffer.from('308204b2300b0609608648016503040402038204a100', 'hex');
// SEQUENCE { INTEGER 0, SEQUENCE { OID }, OCTET STRING { OCTET STRING (2400 bytes: expandedKey) } }
const PKCS8_PREFIX = Buffer.from('30820978020100300b060960864801650304040204820964' + '04820960', 'hex');

type NodeKem = {
  encapsulate(key: KeyObject): { sharedKey: Buffer; ciphertext: Buffer };
  decapsulate(key: KeyObject, ciphertext: Uint8Array): Buffer;
};

function nodeKem(): NodeKem | null {
  const c = crypto as unknown as Partial<NodeKem>;
  if (typeof c.encapsulate !== 'function' || typeof c.decapsulate !== 'function') return null;
  try {
    // OpenSSL may be older than 3.5 (a Node built against the system's): then ML-KEM is missing
    (crypto.generateKeyPairSync as (type: string) => unknown)('ml-kem-768');
    return c as NodeKem;
  } catch {
    return null;
  }
}

const native = nodeKem();

/** Which implementation this process uses: 'node' (OpenSSL) or 'noble' (JavaScript). */
export const mlkemBackend: 'node' | 'noble' = native ? 'node' : 'noble';

// Key objects for the keys in use: a mailbox's public key object stays the same for every
// message sealed in this thread, an opener's secret for a whole session.
const publicKeys = new WeakMap<Uint8Array, KeyObject>();
const secretKeys = new WeakMap<Uint8Array, KeyObject>();

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  let k = publicKeys.get(publicKey);
  if (!k) {
    if (publicKey.length !== MLKEM_PUBLIC_LEN) throw new Error(`an ML-KEM-768 public key is ${MLKEM_PUBLIC_LEN} bytes, not ${publicKey.length}`);
    k = crypto.createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    publicKeys.set(publicKey, k);
  }
  return k;
}

function secretKeyObject(secretKey: Uint8Array): KeyObject {
  let k = secretKeys.get(secretKey);
  if (!k) {
    if (secretKey.length !== SECRET_LEN) throw new Error(`an ML-KEM-768 decapsulation key is ${SECRET_LEN} bytes, not ${secretKey.length}`);
    const der = Buffer.concat([PKCS8_PREFIX, secretKey]);
    try {
      k = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
    secretKeys.set(secretKey, k);
  }
  return k;
}

/** The key pair a 64-byte seed (d | z of FIPS 203) stands for; JavaScript always (once per key load). */
export function mlkemKeygen(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array } {
  return ml_kem768.keygen(seed);
}

/** A fresh shared secret and its ciphertext for the holder of `publicKey`. */
export function mlkemEncapsulate(publicKey: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array } {
  if (!native) return ml_kem768.encapsulate(publicKey);
  const r = native.encapsulate(publicKeyObject(publicKey));
  return { cipherText: r.ciphertext, sharedSecret: r.sharedKey };
}

/** The shared secret in `cipherText` (ML-KEM's implicit rejection: a wrong one gives a different secret, no error). */
export function mlkemDecapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array {
  if (!native) return ml_kem768.decapsulate(cipherText, secretKey);
  return native.decapsulate(secretKeyObject(secretKey), cipherText);
}
