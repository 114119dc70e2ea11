// The queue's seal: what waits in queue/incoming/ is sealed with X25519 + ML-KEM-768 like a
// mailbox spool; a queue made before the hybrid (X25519 key only, files sealed with it) gets its
// ML-KEM key when the queue daemon starts, and its old files are still delivered; processes
// making the key at once all end up with the one key.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { isHybrid, open as openSealed, SealKeyMissing } from '../src/crypto/seal.js';
import { handOff, incomingDir, queuePublicKey, queueSealingKeys } from '../src/queue/handoff.js';
import { QueueStore } from '../src/queue/store.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe } from './helpers/daemon.js';
import { ROOT, workspace } from './helpers/fe.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';

const run = promisify(execFile);
const PASSWORD = 'queue seal password';
let dns: DnsServer;
let peer: PeerMx;

const message = (subject: string) => Buffer.from(`From: me@example.org\r\nTo: x@remote.example\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\nQUEUE-MARKER ${subject}\r\n`);
const submission = () => ({ from: 'me@example.org', recipients: [{ address: 'x@remote.example' }], owner: 'me@example.org', submittedAt: new Date() });
const incoming = (dataDir: string) => readdirSync(incomingDir(dataDir)).filter((n) => n.endsWith('.sealed')).map((n) => readFileSync(path.join(incomingDir(dataDir), n)));

before(async () => {
  peer = await startPeerMx();
  dns = await startDnsServer({ 'remote.example': { MX: [{ priority: 10, exchange: 'mx.remote.example' }] }, 'mx.remote.example': { A: ['127.0.0.1'] } });
});

after(async () => {
  await peer?.close();
  await dns?.close();
});

test('a new queue seals hybrid: version byte 2, the message hidden, imported with the private key', () => {
  const w = workspace();
  const keys = queueSealingKeys(w.dataDir);
  assert.ok(isHybrid(keys.publicKey) && isHybrid(keys.privateKey));
  const pub = queuePublicKey(w.dataDir);
  assert.ok(isHybrid(pub), 'writers read the hybrid public key from the files');
  handOff(w.dataDir, pub, submission(), message('fresh'));
  const [file] = incoming(w.dataDir);
  assert.equal(file!.subarray(0, 5).toString('latin1'), 'feSL\x02');
  assert.ok(!file!.includes('QUEUE-MARKER'));
  assert.throws(() => openSealed(file!, keys.privateKey.x25519), SealKeyMissing, 'the X25519 key alone does not open it');
  assert.equal(readFileSync(path.join(w.dataDir, 'secrets', 'queue-seal-mlkem.key')).length > 0, true);
  const store = QueueStore.open(w.dataDir);
  try {
    const { imported, failed } = store.importIncoming(queueSealingKeys(w.dataDir).privateKey);
    assert.equal(imported.length, 1);
    assert.deepEqual(failed, []);
  } finally {
    store.close();
  }
});

test('a queue made before the hybrid: its X25519-sealed files are delivered, and the daemon adds the ML-KEM key for what comes after', { timeout: 120_000 }, async () => {
  const w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nloopback_plaintext_auth: true\ndns:\n  servers: ["${dns.address}"]\noutbound:\n  port: ${peer.port}\n` +
      `listen:\n  mx: off\n  submission: 127.0.0.1:0\n  submissions: off\n  imap: off\n  imaps: off\n  pop3: off\n  pop3s: off\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  // The key files as fe before the hybrid made them, and a file sealed with X25519 alone.
  const old = generateKeyPairSync('x25519');
  mkdirSync(path.join(w.dataDir, 'secrets'), { recursive: true, mode: 0o700 });
  mkdirSync(path.join(w.dataDir, 'queue'), { recursive: true, mode: 0o700 });
  writeFileSync(path.join(w.dataDir, 'secrets', 'queue-seal.key'), old.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  writeFileSync(path.join(w.dataDir, 'queue', 'seal.pub'), old.publicKey.export({ type: 'spki', format: 'pem' }) as string, { mode: 0o644 });
  assert.equal(isHybrid(queuePublicKey(w.dataDir)), false, 'without the daemon, writers keep sealing with X25519');
  handOff(w.dataDir, queuePublicKey(w.dataDir), submission(), message('sealed-before'));
  assert.deepEqual(incoming(w.dataDir).map((f) => f[4]), [1]);

  const fe = await startServe(w.config, ['--only', 'queue,submission'], { FE_TEST_QUEUE_RETRY_MS: '200' }, ['submission']);
  try {
    const pub = queuePublicKey(w.dataDir);
    assert.ok(isHybrid(pub), 'the queue daemon added the ML-KEM key');
    assert.ok(pub.x25519.equals(old.publicKey), 'and kept the X25519 one');
    const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.submission}`, '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'me@example.org', '--to', 'x@remote.example', '--header', 'Subject: sent-after', '--body', 'QUEUE-MARKER after', '--hide-informational'], { timeout: 60_000 });
    assert.match(stdout, /<- +250 /);
    const deadline = Date.now() + 60_000;
    const subjects = () => peer.messages.map((m) => /^Subject: (\S+)/m.exec(m.raw.toString())?.[1]).filter((s) => s === 'sealed-before' || s === 'sent-after').sort();
    while (subjects().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(subjects(), ['sealed-before', 'sent-after'], fe.log());
    assert.deepEqual(incoming(w.dataDir), [], 'nothing left in incoming/');
  } finally {
    await fe.stop();
  }
});

// Processes that find no key and make one at the same moment must not each keep their own.
const MAKE_KEYS = `
import { queueSealingKeys } from './dist/src/queue/handoff.js';
const { publicKey } = queueSealingKeys(process.argv[1]);
console.log(Buffer.from(publicKey.mlkem).toString('base64') + ' ' + publicKey.x25519.export({ type: 'spki', format: 'der' }).toString('base64'));`;

test('four processes making the queue key at once all get the same key', async () => {
  const w = workspace();
  const outs = await Promise.all(
    Array.from(
      { length: 4 },
      () =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(process.execPath, ['--input-type=module', '-e', MAKE_KEYS, w.dataDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}`))));
        }),
    ),
  );
  assert.equal(new Set(outs).size, 1, 'one key for all');
  const pub = queuePublicKey(w.dataDir);
  assert.ok(isHybrid(pub));
  assert.equal(`${Buffer.from(pub.mlkem).toString('base64')} ${pub.x25519.export({ type: 'spki', format: 'der' }).toString('base64')}`, outs[0]);
  assert.deepEqual(readdirSync(path.join(w.dataDir, 'secrets')).sort(), ['queue-seal-mlkem.key', 'queue-seal.key'], 'no staged files left');
});
