// The post-quantum seal: X25519 + ML-KEM-768 combined so that breaking one of the two is not
// enough, mailbox keys and spool files of the X25519-only format still open, `fe mailbox
// upgrade-seal` moves an old mailbox to the hybrid, and mail through a real `fe serve` MX is read
// back over IMAP (Python's imaplib) after the upgrade.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { createMailboxKey, mailboxKeyVersion, sealingPublicKey, unlockMailboxKey, upgradeMailboxSeal, WrongPassword } from '../src/crypto/mailbox-key.js';
import { isHybrid, open, seal, SealError, SealKeyMissing, type HybridPrivateKey, type HybridPublicKey } from '../src/crypto/seal.js';
import { appendToSpool, decodeSpoolFile, listSpool, spoolDir } from '../src/store/spool.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { V1_KEY_JSON, V1_PASSWORD, V1_SPOOL_FILE, V1_SPOOL_ID } from './helpers/seal-v1.js';

const run = promisify(execFile);
const MESSAGE = Buffer.from('Subject: hi\r\n\r\nthe launch code is PQ-MARKER-4711\r\n');

function hybridPair(): { pub: HybridPublicKey; priv: HybridPrivateKey } {
  const x = generateKeyPairSync('x25519');
  const m = ml_kem768.keygen();
  return { pub: { x25519: x.publicKey, mlkem: m.publicKey }, priv: { x25519: x.privateKey, mlkemSecret: m.secretKey, mlkemPublic: m.publicKey } };
}

const alice = hybridPair();
const mallory = hybridPair();
const X_SHARE = [5, 37] as const; // ephemeral X25519 public key
const KEM_CT = [37, 37 + 1088] as const; // ML-KEM-768 ciphertext

test('hybrid round trip (empty, small, 1 MB): version byte 2, plaintext hidden, 1141 bytes of overhead', () => {
  const big = randomBytes(1 << 20);
  MESSAGE.copy(big, 4321);
  for (const plain of [Buffer.alloc(0), MESSAGE, big]) {
    const sealed = seal(plain, alice.pub);
    assert.equal(sealed.subarray(0, 5).toString('latin1'), 'feSL\x02');
    assert.equal(sealed.length, plain.length + 4 + 1 + 32 + 1088 + 16);
    assert.ok(!sealed.includes('PQ-MARKER-4711'));
    assert.ok(open(sealed, alice.priv).equals(plain));
  }
  const v1 = seal(MESSAGE, alice.pub.x25519);
  assert.equal(v1[4], 1, 'an X25519 key alone still seals v1 (the queue, old mailboxes)');
  assert.ok(open(v1, alice.priv).equals(MESSAGE), 'a hybrid key opens v1 files with its X25519 half');
});

test('breaking one of the two is not enough: the right X25519 key with a wrong ML-KEM key fails, and the converse', () => {
  const sealed = seal(MESSAGE, alice.pub);
  const rightXOnly: HybridPrivateKey = { x25519: alice.priv.x25519, mlkemSecret: mallory.priv.mlkemSecret, mlkemPublic: alice.priv.mlkemPublic };
  const rightKemOnly: HybridPrivateKey = { x25519: mallory.priv.x25519, mlkemSecret: alice.priv.mlkemSecret, mlkemPublic: alice.priv.mlkemPublic };
  for (const k of [rightXOnly, rightKemOnly, mallory.priv]) assert.throws(() => open(sealed, k), /wrong key or the data was tampered with/);
  assert.throws(() => open(sealed, alice.priv.x25519), SealKeyMissing, 'an X25519-only key is told it lacks the ML-KEM part');
});

test('a tampered ML-KEM ciphertext or X25519 share fails to open; so do shares swapped between two messages', () => {
  const sealed = seal(MESSAGE, alice.pub);
  for (const pos of [X_SHARE[0], X_SHARE[0] + 17, X_SHARE[1] - 1, KEM_CT[0], KEM_CT[0] + 500, KEM_CT[1] - 1, sealed.length - 1]) {
    const bad = Buffer.from(sealed);
    bad[pos]! ^= 0x01;
    assert.throws(() => open(bad, alice.priv), SealError, `flip at ${pos}`);
  }
  // A low-order X25519 point is refused before any decryption.
  const zero = Buffer.from(sealed);
  zero.fill(0, X_SHARE[0], X_SHARE[1]);
  assert.throws(() => open(zero, alice.priv), SealError);
  // Mix and match: the X25519 share of one message with the ML-KEM ciphertext and body of another.
  const other = seal(MESSAGE, alice.pub);
  const mixed = Buffer.concat([sealed.subarray(0, X_SHARE[1]), other.subarray(KEM_CT[0])]);
  assert.throws(() => open(mixed, alice.priv), SealError);
  assert.throws(() => open(sealed.subarray(0, 37 + 1088 + 15), alice.priv), /truncated/);
});

test('mailbox keys: new ones are hybrid; an old X25519 key and its spool file open before and after upgrade-seal', () => {
  const base = path.join(workspace().dir, 'mailboxes');
  const fresh = path.join(base, 'new');
  createMailboxKey(fresh, 'new@example.org', 'a fresh password');
  assert.equal(mailboxKeyVersion(fresh), 2);
  const file = JSON.parse(readFileSync(path.join(fresh, 'key.json'), 'utf8')) as { sealing: { algorithm: string; mlkemPublicKey: string } };
  assert.equal(file.sealing.algorithm, 'x25519+ml-kem-768');
  assert.equal(Buffer.from(file.sealing.mlkemPublicKey, 'base64').length, 1184);
  const id = appendToSpool(fresh, sealingPublicKey(fresh), MESSAGE, { receivedAt: new Date(), envelopeFrom: 'a@b.example', envelopeTo: 'new@example.org' });
  const onDisk = readFileSync(path.join(spoolDir(fresh), `${id}.sealed`));
  assert.equal(onDisk[4], 2, 'new mailboxes seal hybrid');
  const freshSecrets = unlockMailboxKey(fresh, 'a fresh password');
  assert.ok(isHybrid(freshSecrets.sealingPrivateKey));
  assert.ok(decodeSpoolFile(onDisk, freshSecrets.sealingPrivateKey).message.equals(MESSAGE));

  const old = path.join(base, 'old');
  mkdirSync(spoolDir(old), { recursive: true });
  writeFileSync(path.join(old, 'key.json'), V1_KEY_JSON, { mode: 0o600 });
  writeFileSync(path.join(spoolDir(old), `${V1_SPOOL_ID}.sealed`), V1_SPOOL_FILE, { mode: 0o600 });
  assert.equal(mailboxKeyVersion(old), 1);
  const before = unlockMailboxKey(old, V1_PASSWORD);
  assert.equal(isHybrid(before.sealingPrivateKey), false);
  const entry = decodeSpoolFile(V1_SPOOL_FILE, before.sealingPrivateKey);
  assert.equal(entry.id, V1_SPOOL_ID);
  assert.match(entry.message.toString(), /Subject: sealed before the upgrade/);

  assert.throws(() => upgradeMailboxSeal(old, 'not the password'), WrongPassword);
  assert.equal(readFileSync(path.join(old, 'key.json'), 'utf8'), V1_KEY_JSON, 'a wrong password changes nothing');
  assert.equal(upgradeMailboxSeal(old, V1_PASSWORD), true);
  assert.equal(upgradeMailboxSeal(old, V1_PASSWORD), false, 'twice is harmless');
  assert.equal(mailboxKeyVersion(old), 2);
  assert.deepEqual(readdirSync(old).sort(), ['key.json', 'spool'], 'no staged key file left behind');
  const after = unlockMailboxKey(old, V1_PASSWORD);
  assert.ok(after.masterKey.equals(before.masterKey), 'the database key is kept');
  assert.ok(isHybrid(after.sealingPrivateKey));
  assert.equal(decodeSpoolFile(V1_SPOOL_FILE, after.sealingPrivateKey).id, V1_SPOOL_ID, 'the v1 spool file still opens');
  const pub = sealingPublicKey(old);
  assert.ok(isHybrid(pub));
  const sealedAfter = seal(MESSAGE, pub);
  assert.equal(sealedAfter[4], 2);
  assert.ok(open(sealedAfter, after.sealingPrivateKey).equals(MESSAGE));
  assert.throws(() => open(sealedAfter, before.sealingPrivateKey), SealKeyMissing, 'a copy of the old key cannot open what is sealed after');
});

describe_serve();

function describe_serve(): void {
  let dns: DnsServer;
  let w: ReturnType<typeof workspace>;
  let fe: Daemon;
  const mailbox = () => path.join(w.dataDir, 'mailboxes', 'example.org', 'old');

  async function deliver(subject: string): Promise<void> {
    const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'alice@sender.example', '--to', 'old@example.org', '--header', `Subject: ${subject}`, '--body', `${subject} body`, '--hide-informational']);
    assert.match(stdout, /<- +250 /);
  }

  /** Spool version byte of each waiting file, oldest first. */
  const spoolVersions = () => listSpool(mailbox()).map((id) => readFileSync(path.join(spoolDir(mailbox()), `${id}.sealed`))[4]);

  before(async () => {
    dns = await startDnsServer({});
    w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: off\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
    await w.ok(['domain', 'add', 'example.org']);
    // An old mailbox on disk, as fe before the hybrid left it; adding the alias attaches it again.
    mkdirSync(spoolDir(mailbox()), { recursive: true, mode: 0o700 });
    writeFileSync(path.join(mailbox(), 'key.json'), V1_KEY_JSON, { mode: 0o600 });
    writeFileSync(path.join(spoolDir(mailbox()), `${V1_SPOOL_ID}.sealed`), V1_SPOOL_FILE, { mode: 0o600 });
    const added = await w.ok(['alias', 'add', 'old@example.org', '--mailbox', '--password-stdin'], { stdin: `${V1_PASSWORD}\n` });
    assert.match(added, /attached again/);
    fe = await startServe(w.config, [], {}, ['mx', 'imaps']);
  });

  after(async () => {
    await fe?.stop();
    await dns?.close();
  });

  test('fe serve: mail before and after `fe mailbox upgrade-seal` (X25519, then hybrid on disk) is read over IMAP at the first login', async () => {
    // fe mailbox status imports the old spool file and says the seal is X25519 alone.
    const status = await w.ok(['mailbox', 'status', 'old@example.org', '--password-stdin'], { stdin: `${V1_PASSWORD}\n` });
    assert.match(status, /1 new message\(s\) imported/);
    assert.match(status, /sealed with X25519 alone; fe mailbox upgrade-seal old@example\.org --password-stdin adds ML-KEM-768/);
    assert.equal(JSON.parse(await w.ok(['mailbox', 'status', 'old@example.org', '--password-stdin', '--json'], { stdin: `${V1_PASSWORD}\n` })).seal, 'x25519');
    assert.equal(readFileSync(path.join(mailbox(), 'key.json'), 'utf8'), V1_KEY_JSON, 'status changes no key');
    await deliver('before upgrade');
    assert.deepEqual(spoolVersions(), [1]);

    const wrong = await w.fe(['mailbox', 'upgrade-seal', 'old@example.org', '--password-stdin'], { stdin: 'wrong\n' });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /wrong password for old@example\.org; nothing was changed/);
    assert.equal(readFileSync(path.join(mailbox(), 'key.json'), 'utf8'), V1_KEY_JSON);

    const up = await w.ok(['mailbox', 'upgrade-seal', 'old@example.org', '--password-stdin', '--json'], { stdin: `${V1_PASSWORD}\n` });
    assert.deepEqual(JSON.parse(up), { address: 'old@example.org', upgraded: true, seal: 'x25519+ml-kem-768', x25519OnlyInSpool: 1 });
    await deliver('after upgrade');
    assert.deepEqual(spoolVersions(), [1, 2], 'the MX seals hybrid from the upgrade on');
    assert.match(await w.ok(['mailbox', 'upgrade-seal', 'old@example.org', '--password-stdin'], { stdin: `${V1_PASSWORD}\n` }), /already has the X25519 \+ ML-KEM-768 seal; nothing was changed/);

    const file = path.join(w.dir, 'client.py');
    writeFileSync(
      file,
      `
import imaplib, json, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
m.login('old@example.org', ${JSON.stringify(V1_PASSWORD)})
typ, data = m.select('INBOX')
out = []
for i in range(1, int(data[0]) + 1):
    typ, body = m.fetch(str(i), '(BODY.PEEK[])')
    out.append(body[0][1].decode())
print(json.dumps(out))
m.logout()
`,
    );
    const { stdout } = await run('python3', [file], { timeout: 60_000 });
    const bodies = JSON.parse(stdout) as string[];
    assert.equal(bodies.length, 3);
    assert.match(bodies[0]!, /Subject: sealed before the upgrade\r\n/);
    assert.match(bodies[1]!, /Subject: before upgrade\r\n[^]*before upgrade body/);
    assert.match(bodies[2]!, /Subject: after upgrade\r\n[^]*after upgrade body/);
    assert.deepEqual(spoolVersions(), [], 'all imported');
    assert.deepEqual(readdirSync(spoolDir(mailbox())).filter((n) => n !== '.' && !n.startsWith('.')), [], 'none moved to failed/');
    const statusAfter = await w.ok(['mailbox', 'status', 'old@example.org', '--password-stdin', '--json'], { stdin: `${V1_PASSWORD}\n` });
    assert.equal(JSON.parse(statusAfter).seal, 'x25519+ml-kem-768');
    assert.doesNotMatch(await w.ok(['mailbox', 'status', 'old@example.org', '--password-stdin'], { stdin: `${V1_PASSWORD}\n` }), /X25519 alone/);
  });
}
