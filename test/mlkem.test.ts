// ML-KEM-768 through crypto/mlkem.ts (Node's OpenSSL where it has ML-KEM, else JavaScript) must
// agree with @noble/post-quantum both ways: mail sealed under one Node opens under the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { mlkemBackend, mlkemDecapsulate, mlkemEncapsulate, mlkemKeygen } from '../src/crypto/mlkem.js';
import { open, sealParts, mlkemFromSeed } from '../src/crypto/seal.js';
import { generateKeyPairSync } from 'node:crypto';

const noNative = mlkemBackend === 'noble' ? `Node ${process.version} has no ML-KEM of its own: the JavaScript one is all there is to compare` : false;

test(`encapsulate and decapsulate round trip (${mlkemBackend}), a wrong ciphertext gives another secret`, () => {
  const { publicKey, secretKey } = mlkemKeygen(randomBytes(64));
  for (let i = 0; i < 20; i++) {
    const { cipherText, sharedSecret } = mlkemEncapsulate(publicKey);
    assert.equal(cipherText.length, 1088);
    assert.equal(sharedSecret.length, 32);
    assert.deepEqual(Buffer.from(mlkemDecapsulate(cipherText, secretKey)), Buffer.from(sharedSecret));
    const bad = Buffer.from(cipherText);
    bad[i] = bad[i]! ^ 1;
    assert.notDeepEqual(Buffer.from(mlkemDecapsulate(bad, secretKey)), Buffer.from(sharedSecret), 'implicit rejection: a changed ciphertext yields another secret');
  }
});

test("Node's ML-KEM and @noble/post-quantum open each other's ciphertexts", { skip: noNative }, () => {
  const { publicKey, secretKey } = ml_kem768.keygen(randomBytes(64));
  for (let i = 0; i < 20; i++) {
    const ours = mlkemEncapsulate(publicKey);
    assert.deepEqual(Buffer.from(ml_kem768.decapsulate(ours.cipherText, secretKey)), Buffer.from(ours.sharedSecret), 'native encapsulation, JavaScript decapsulation');
    const theirs = ml_kem768.encapsulate(publicKey);
    assert.deepEqual(Buffer.from(mlkemDecapsulate(theirs.cipherText, secretKey)), Buffer.from(theirs.sharedSecret), 'JavaScript encapsulation, native decapsulation');
  }
});

test('a message sealed with the other implementation opens, and a key of the wrong length is refused', { skip: noNative }, () => {
  const seed = randomBytes(64);
  const x = generateKeyPairSync('x25519');
  const kem = mlkemFromSeed(seed);
  const sealed = sealParts([Buffer.from('Subject: hi\r\n\r\nbody\r\n')], { x25519: x.publicKey, mlkem: kem.publicKey });
  // open with a decapsulation key whose bytes came from noble directly, in a fresh array
  const again = ml_kem768.keygen(seed);
  assert.equal(open(sealed, { x25519: x.privateKey, mlkemSecret: Uint8Array.from(again.secretKey), mlkemPublic: again.publicKey }).toString(), 'Subject: hi\r\n\r\nbody\r\n');
  assert.throws(() => mlkemEncapsulate(kem.publicKey.subarray(0, 1000)), /1184 bytes, not 1000/);
});
