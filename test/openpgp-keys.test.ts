import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import { checkPublicKey, KeyRejected } from '../src/keys/openpgp.js';
import {
  expiredKey,
  forgedUserIdKey,
  goodKey,
  keyWithExpiredEncryptionSubkey,
  keyWithRevokedEncryptionSubkey,
  keyWithRevokedUserId,
  revokedKey,
  signOnlyKey,
  twoKeysArmored,
  twoKeysOneBlock,
  unsignedUserIdKey,
} from './helpers/pgp-fixtures.js';

const ALICE = 'alice@example.org';
const DAY = 24 * 60 * 60 * 1000;

async function fingerprintOf(armoredKey: string): Promise<string> {
  return (await openpgp.readKey({ armoredKey })).getFingerprint().toUpperCase();
}

// Asserts a KeyRejected whose message is one user-facing line matching every pattern.
async function rejects(promise: Promise<unknown>, ...patterns: RegExp[]): Promise<string> {
  let message = '';
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof KeyRejected, `expected KeyRejected, got ${String(err)}`);
    message = err.message;
    assert.doesNotMatch(message, /[\r\n]/, 'message must be a single line');
    assert.doesNotMatch(message, /-----BEGIN|\bat .*\.js:\d+/, 'message must not carry armor or stack frames');
    for (const p of patterns) assert.match(message, p);
    return true;
  });
  return message;
}

test('accepts a good armored key with its fingerprint, user IDs and algorithm', async () => {
  const k = await goodKey(ALICE);
  const before = new Date();
  const accepted = await checkPublicKey(k.publicArmored, ALICE);
  assert.equal(accepted.fingerprint, await fingerprintOf(k.publicArmored));
  assert.match(accepted.fingerprint, /^[0-9A-F]{40}$/);
  assert.deepEqual(accepted.userIds, [`Test User <${ALICE}>`]);
  assert.equal(accepted.algorithm, 'ed25519 / x25519');
  assert.equal(accepted.expires, null);
  assert.ok(accepted.created.getTime() <= before.getTime());
  assert.ok(before.getTime() - accepted.created.getTime() < 60_000);
  // The re-armored output is the public key and nothing more.
  assert.match(accepted.armored, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
  const reread = await openpgp.readKey({ armoredKey: accepted.armored });
  assert.equal(reread.isPrivate(), false);
  assert.equal(reread.getFingerprint().toUpperCase(), accepted.fingerprint);
});

test('accepts a good binary key, also as a Buffer', async () => {
  const k = await goodKey(ALICE);
  const fpr = await fingerprintOf(k.publicArmored);
  assert.equal((await checkPublicKey(k.publicBinary, ALICE)).fingerprint, fpr);
  assert.equal((await checkPublicKey(Buffer.from(k.publicBinary), ALICE)).fingerprint, fpr);
});

test('accepts armored text given as bytes: plain, UTF-8 BOM, CRLF, UTF-16LE with BOM', async () => {
  const k = await goodKey(ALICE);
  const fpr = await fingerprintOf(k.publicArmored);
  const utf8 = new TextEncoder().encode(k.publicArmored);
  const withBom = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8]);
  const crlf = new TextEncoder().encode(k.publicArmored.replace(/\n/g, '\r\n'));
  const utf16 = new Uint8Array([0xff, 0xfe, ...Buffer.from(k.publicArmored, 'utf16le')]);
  for (const input of [utf8, withBom, crlf, utf16]) {
    assert.equal((await checkPublicKey(input, ALICE)).fingerprint, fpr);
  }
});

test('accepts armor surrounded by other text (e.g. pasted from a mail)', async () => {
  const k = await goodKey(ALICE);
  const accepted = await checkPublicKey(`Here is my key:\n\n${k.publicArmored}\nCheers, Alice\n`, ALICE);
  assert.equal(accepted.fingerprint, await fingerprintOf(k.publicArmored));
});

test('matches the address case-insensitively and keeps user IDs as written', async () => {
  const k = await goodKey('Alice@Example.ORG', { name: 'Alice' });
  const accepted = await checkPublicKey(k.publicArmored, 'aLiCe@example.org');
  assert.deepEqual(accepted.userIds, ['Alice <Alice@Example.ORG>']);
  await checkPublicKey(k.publicArmored, ' ALICE@EXAMPLE.ORG ');
});

test('matches any of several user IDs', async () => {
  const k = await goodKey(['old@example.net', ALICE]);
  const accepted = await checkPublicKey(k.publicArmored, ALICE);
  assert.equal(accepted.userIds.length, 2);
});

test('reports RSA and RFC 9580 curve25519 algorithms readably', async () => {
  const rsa = await goodKey(ALICE, { type: 'rsa', rsaBits: 2048 });
  assert.equal((await checkPublicKey(rsa.publicArmored, ALICE)).algorithm, 'rsa2048');
  const modern = await goodKey(ALICE, { type: 'curve25519' });
  assert.equal((await checkPublicKey(modern.publicArmored, ALICE)).algorithm, 'ed25519 / x25519');
});

test('rejects a private key without echoing it, armored and binary', async () => {
  const k = await goodKey(ALICE);
  const msg = await rejects(checkPublicKey(k.privateArmored, ALICE), /private key/, /gpg --export --armor alice@example\.org/);
  // No line of the armored private key (body or header) may leak.
  for (const line of k.privateArmored.split('\n').filter((l) => l.length >= 8)) {
    assert.ok(!msg.includes(line), 'message contains private key material');
  }
  const binary = (await openpgp.readPrivateKey({ armoredKey: k.privateArmored })).write();
  await rejects(checkPublicKey(binary, ALICE), /private key/, /gpg --export --armor/);
});

test('rejects a damaged private key as private, not as garbage', async () => {
  const k = await goodKey(ALICE);
  const cut = k.privateArmored.slice(0, Math.floor(k.privateArmored.length / 2));
  await rejects(checkPublicKey(cut, ALICE), /this is a private key; give the public key/);
});

test('rejects a private key hidden after a public one', async () => {
  const k = await goodKey(ALICE);
  await rejects(checkPublicKey(`${k.publicArmored}\n${k.privateArmored}`, ALICE), /private key/);
});

test('rejects two concatenated armored keys and names both', async () => {
  const armored = await twoKeysArmored(ALICE, 'bob@example.org');
  const msg = await rejects(checkPublicKey(armored, ALICE), /2 keys/, /exactly one/);
  const blocks = armored.split(/(?=-----BEGIN PGP PUBLIC KEY BLOCK-----)/);
  assert.equal(blocks.length, 2);
  for (const b of blocks) assert.ok(msg.includes(await fingerprintOf(b)));
});

test('rejects two keys in one armor block and in one binary stream', async () => {
  const two = await twoKeysOneBlock(ALICE, 'bob@example.org');
  await rejects(checkPublicKey(two.publicArmored, ALICE), /2 keys/, /exactly one/);
  await rejects(checkPublicKey(two.publicBinary, ALICE), /2 keys/, /exactly one/);
});

test('rejects a revoked key', async () => {
  const k = await revokedKey(ALICE);
  const fpr = await fingerprintOf(k.publicArmored);
  await rejects(checkPublicKey(k.publicArmored, ALICE), /has been revoked by its owner/, new RegExp(fpr));
});

test('rejects an expired key and says when it expired', async () => {
  const k = await expiredKey(ALICE);
  const key = await openpgp.readKey({ armoredKey: k.publicArmored });
  const expiry = new Date(key.getCreationTime().getTime() + DAY).toISOString().slice(0, 10);
  await rejects(checkPublicKey(k.publicArmored, ALICE), /expired/, new RegExp(`expired on ${expiry}`), /quick-set-expire/);
});

test('judges expiry at the given time and reports the expiry date', async () => {
  const k = await goodKey(ALICE, { keyExpirationTime: 24 * 60 * 60 });
  const accepted = await checkPublicKey(k.publicArmored, ALICE);
  assert.ok(accepted.expires instanceof Date);
  assert.equal(accepted.expires.getTime(), accepted.created.getTime() + DAY);
  const expiry = accepted.expires.toISOString().slice(0, 10);
  await rejects(checkPublicKey(k.publicArmored, ALICE, new Date(Date.now() + 2 * DAY)), new RegExp(`expired on ${expiry}`));
});

test('rejects a key that is checked at a time before it was created', async () => {
  const k = await goodKey(ALICE);
  await rejects(checkPublicKey(k.publicArmored, ALICE, new Date(Date.now() - 10 * DAY)), /created .* after/, /clock/);
});

test('rejects a key whose self-signature does not verify', async () => {
  const k = await forgedUserIdKey('mallory@example.org', ALICE);
  await rejects(checkPublicKey(k.publicArmored, ALICE), /self-signatures do not verify/);
  await rejects(checkPublicKey(k.publicBinary, ALICE), /self-signatures do not verify/);
});

test('rejects a sign-only key', async () => {
  const k = await signOnlyKey(ALICE);
  await rejects(checkPublicKey(k.publicArmored, ALICE), /cannot encrypt/, /signing-only/, /encryption subkey/);
});

test('rejects a key whose encryption subkey expired', async () => {
  const k = await keyWithExpiredEncryptionSubkey(ALICE);
  // The primary is fine on its own; only the subkey is at fault.
  await (await openpgp.readKey({ armoredKey: k.publicArmored })).verifyPrimaryKey();
  await rejects(checkPublicKey(k.publicArmored, ALICE), /encryption subkey expired on \d{4}-\d{2}-\d{2}/);
});

test('rejects a key whose encryption subkey was revoked', async () => {
  const k = await keyWithRevokedEncryptionSubkey(ALICE);
  await rejects(checkPublicKey(k.publicArmored, ALICE), /encryption subkey has been revoked/);
});

test('rejects a key for other addresses and lists the ones it has', async () => {
  const k = await goodKey(['bob@example.org', 'robert@example.net']);
  await rejects(
    checkPublicKey(k.publicArmored, ALICE),
    /does not belong to alice@example\.org/,
    /bob@example\.org, robert@example\.net/,
  );
});

test('ignores a user ID that is not validly self-signed', async () => {
  const k = await unsignedUserIdKey('mallory@example.org', ALICE);
  await rejects(checkPublicKey(k.publicArmored, ALICE), /not validly signed/, /it is for mallory@example\.org/);
  // The genuine user ID on the same key is still accepted.
  await checkPublicKey(k.publicArmored, 'mallory@example.org');
});

test('ignores a revoked user ID', async () => {
  const k = await keyWithRevokedUserId('bob@example.org', ALICE);
  await rejects(checkPublicKey(k.publicArmored, ALICE), /revoked or not validly signed/, /it is for bob@example\.org/);
});

test('rejects garbage text and garbage bytes', async () => {
  await rejects(checkPublicKey('hello, this is not a key\n', ALICE), /not an OpenPGP public key/, /gpg --export --armor/);
  await rejects(checkPublicKey(new TextEncoder().encode('ssh-ed25519 AAAAC3Nz alice'), ALICE), /not an OpenPGP public key/);
  const bytes = new Uint8Array(64).map((_, i) => (i * 37 + 0x99) & 0xff);
  await rejects(checkPublicKey(bytes, ALICE), /not an OpenPGP public key/);
});

test('rejects a truncated or corrupted armored key', async () => {
  const k = await goodKey(ALICE);
  await rejects(checkPublicKey(k.publicArmored.slice(0, k.publicArmored.length / 2), ALICE), /not an OpenPGP public key|not valid/);
  const body = k.publicArmored.split('\n');
  body[3] = (body[3] ?? '').replace(/[A-Za-z]/, (c) => (c === 'A' ? 'B' : 'A'));
  await rejects(checkPublicKey(body.join('\n'), ALICE), /not an OpenPGP public key|not valid/);
});

test('rejects other OpenPGP armor types such as messages', async () => {
  const k = await goodKey(ALICE);
  const encryptionKeys = await openpgp.readKey({ armoredKey: k.publicArmored });
  const message = await openpgp.encrypt({ message: await openpgp.createMessage({ text: 'hi' }), encryptionKeys });
  await rejects(checkPublicKey(message, ALICE), /OpenPGP message, not a key/);
});

test('rejects empty input', async () => {
  await rejects(checkPublicKey('', ALICE), /empty/, /gpg --export --armor alice@example\.org/);
  await rejects(checkPublicKey(new Uint8Array(0), ALICE), /empty/);
  await rejects(checkPublicKey(' \n\t\n', ALICE), /empty/);
});
