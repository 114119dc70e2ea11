// Sealing mail for an offline mailbox: only the private key opens it, and no byte can be changed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { SealError, isSealed, open, seal, sealParts } from '../src/crypto/seal.js';

const alice = generateKeyPairSync('x25519');
const mallory = generateKeyPairSync('x25519');
const MESSAGE = Buffer.from('Subject: hi\r\n\r\nthe launch code is SEAL-MARKER-4711\r\n');

test('seal/open round trip for empty, small and 50 MB messages; output hides the plaintext', () => {
  const big = randomBytes(50 * 1024 * 1024);
  MESSAGE.copy(big, 1234);
  for (const plain of [Buffer.alloc(0), MESSAGE, big]) {
    const sealed = seal(plain, alice.publicKey);
    assert.equal(sealed.length, plain.length + 4 + 1 + 32 + 16, 'magic + version + ephemeral key + tag');
    assert.ok(isSealed(sealed));
    assert.equal(sealed.subarray(0, 5).toString('latin1'), 'feSL\x01');
    assert.ok(!sealed.includes('SEAL-MARKER-4711'), 'plaintext must not show through');
    assert.ok(open(sealed, alice.privateKey).equals(plain));
  }
});

test('sealing twice gives unrelated outputs (fresh ephemeral key each time)', () => {
  const a = seal(MESSAGE, alice.publicKey);
  const b = seal(MESSAGE, alice.publicKey);
  assert.notDeepEqual(a.subarray(5, 37), b.subarray(5, 37));
  assert.notDeepEqual(a.subarray(37), b.subarray(37));
});

test('sealParts equals sealing the concatenation', () => {
  const sealed = sealParts([Buffer.from('head|'), Buffer.alloc(0), MESSAGE], alice.publicKey);
  assert.deepEqual(open(sealed, alice.privateKey), Buffer.concat([Buffer.from('head|'), MESSAGE]));
});

test('any flipped bit, truncation or extension is detected', () => {
  const sealed = seal(MESSAGE, alice.publicKey);
  // every region: magic, version, ephemeral key, ciphertext, tag
  for (const pos of [0, 4, 5, 20, 36, 37, 50, sealed.length - 17, sealed.length - 1]) {
    const bad = Buffer.from(sealed);
    bad[pos]! ^= 0x01;
    assert.throws(() => open(bad, alice.privateKey), SealError, `flip at ${pos}`);
  }
  assert.throws(() => open(sealed.subarray(0, sealed.length - 1), alice.privateKey), SealError);
  assert.throws(() => open(sealed.subarray(0, 30), alice.privateKey), /truncated/);
  assert.throws(() => open(Buffer.concat([sealed, Buffer.from([0])]), alice.privateKey), SealError);
  const version = Buffer.from(sealed);
  version[4] = 3;
  assert.throws(() => open(version, alice.privateKey), /unsupported sealed message version 3/);
  assert.throws(() => open(Buffer.from('From: x\r\n\r\nplain mail'), alice.privateKey), /not a sealed message/);
});

test('the wrong private key fails cleanly and yields no plaintext', () => {
  const sealed = seal(MESSAGE, alice.publicKey);
  assert.throws(() => open(sealed, mallory.privateKey), (e: unknown) => e instanceof SealError && /wrong key or the data was tampered with/.test(e.message));
});

test('key types are checked: seal needs an X25519 public key, open a private one', () => {
  assert.throws(() => seal(MESSAGE, alice.privateKey), SealError);
  assert.throws(() => open(seal(MESSAGE, alice.publicKey), alice.publicKey), SealError);
  const ed = generateKeyPairSync('ed25519');
  assert.throws(() => seal(MESSAGE, ed.publicKey), /X25519/);
});
