// The outbound queue daemon on its own (`fe serve --only queue`), against a peer MX on loopback:
// kill -9 in the middle of 200 deliveries, the body purge checked in the decrypted database
// file, and the delay notice a sender gets in their own mailbox.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { unlockMailboxKey } from '../src/crypto/mailbox-key.js';
import { loadConfig } from '../src/config/file.js';
import { handOff, queuePublicKey, queueSealingKeys } from '../src/queue/handoff.js';
import { QueueStore, retentionDays } from '../src/queue/store.js';
import { MailboxStore } from '../src/store/mailbox-db.js';
import { mailboxDir } from '../src/store/paths.js';
import { Database } from '../src/store/sqlite.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';

const PASSWORD = 'correct horse battery staple';
let dns: DnsServer;
let peer: PeerMx;
let w: ReturnType<typeof workspace>;

async function waitFor<T>(what: string, fn: () => T | Promise<T>, log: () => string, timeoutMs = 60_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function message(subject: string, body: string): Buffer {
  return Buffer.from(`From: me@example.org\r\nTo: someone@remote.example\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\n${body}\r\n`);
}

function queueMessage(i: number, to: string, marker = '', requireTls = false): void {
  handOff(w.dataDir, queuePublicKey(w.dataDir), { from: 'me@example.org', recipients: [{ address: to }], owner: 'me@example.org', submittedAt: new Date(), requireTls }, message(`m-${i}`, `body ${i} ${marker}`));
}

function inbox(ws = w): Buffer[] {
  const dir = mailboxDir(ws.dataDir, 'example.org', 'me');
  const store = MailboxStore.open(dir, unlockMailboxKey(dir, PASSWORD));
  try {
    store.importSpool();
    return store.listMessages('INBOX').map((m) => store.getRaw('INBOX', m.uid)!);
  } finally {
    store.close();
  }
}

const subjects = () => peer.messages.map((m) => /^Subject: (\S+)/m.exec(m.raw.toString())?.[1] ?? '');

before(async () => {
  peer = await startPeerMx(undefined, { dataDelayMs: 15 });
  dns = await startDnsServer({
    'remote.example': { MX: [{ priority: 10, exchange: 'mx.remote.example' }] },
    'mx.remote.example': { A: ['127.0.0.1'] },
    // the preferred MX is dead (nothing listens on 127.0.0.3), the second one works
    'twomx.example': { MX: [{ priority: 5, exchange: 'dead.twomx.example' }, { priority: 20, exchange: 'mx.remote.example' }] },
    'dead.twomx.example': { A: ['127.0.0.3'] },
  });
  w = workspace(
    ['hostname: mail.example.org', 'data_dir: ./data', 'dns:', `  servers: ["${dns.address}"]`, 'outbound:', `  port: ${peer.port}`, 'queue:', '  delay_notice_after: 1s', ''].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
});

after(async () => {
  await peer?.close();
  await dns?.close();
});

test('kill -9 of the queue daemon in the middle of 200 deliveries: every message arrives, at most one twice', { timeout: 180_000 }, async () => {
  for (let i = 0; i < 200; i++) queueMessage(i, `r${i}@remote.example`);
  let fe: Daemon = await startServe(w.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '200' }, []);
  await waitFor('some deliveries', () => peer.messages.length >= 40, () => fe.log());
  fe.signal('SIGKILL');
  assert.equal(await fe.exited, 'SIGKILL');
  const atKill = peer.messages.length;
  assert.ok(atKill < 200, `the kill came before the end (${atKill} delivered)`);
  fe = await startServe(w.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '200' }, []);
  try {
    await waitFor('all 200 to arrive', () => new Set(subjects()).size === 200, () => fe.log());
    await new Promise((r) => setTimeout(r, 500)); // anything sent twice would have arrived by now
    const counts = new Map<string, number>();
    for (const s of subjects()) counts.set(s, (counts.get(s) ?? 0) + 1);
    const twice = [...counts].filter(([, n]) => n > 1);
    assert.ok(twice.length <= 1 && twice.every(([, n]) => n === 2), `at most one message twice, got ${JSON.stringify(twice)}`);
    const q = JSON.parse(await w.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: { state: string }[] }[] };
    assert.equal(q.messages.length, 200);
    assert.ok(q.messages.every((m) => m.recipients.every((r) => r.state === 'delivered')));
  } finally {
    await fe.stop();
  }
});

test('a delivered message\'s body is gone from the decrypted queue file; a waiting one is still there', { timeout: 60_000 }, async () => {
  const sentMarker = `SENT-MARKER-${Date.now()}`;
  const waitingMarker = `WAITING-MARKER-${Date.now()}`;
  queueMessage(1000, 'purged@remote.example', sentMarker);
  queueMessage(1001, 'defer-forever@remote.example', waitingMarker);
  const fe = await startServe(w.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '60000' }, []);
  try {
    await waitFor('the purge', async () => {
      const q = JSON.parse(await w.ok(['queue', 'list', '--all', '--json'])) as { messages: { redacted: boolean; recipients: { address: string; attempts: number }[] }[] };
      const sent = q.messages.find((m) => m.recipients[0]!.address === 'purged@remote.example');
      const waiting = q.messages.find((m) => m.recipients[0]!.address === 'defer-forever@remote.example');
      return sent?.redacted && waiting && waiting.recipients[0]!.attempts > 0;
    }, () => fe.log());
  } finally {
    await fe.stop();
  }
  assert.ok(peer.messages.some((m) => m.raw.includes(sentMarker)), 'it was delivered first');
  // Decrypt a copy of the file page by page (rekey to no key) and look at every byte of it.
  const copy = path.join(w.dir, 'queue-copy.db');
  copyFileSync(QueueStore.file(w.dataDir), copy);
  const key = Buffer.from(readFileSync(path.join(w.dataDir, 'secrets', 'queue-db.key'), 'utf8').trim(), 'base64');
  const db = new Database(copy);
  db.pragma(`cipher = 'chacha20'`);
  db.key(Buffer.concat([Buffer.from('raw:'), key]));
  db.pragma('journal_mode = DELETE');
  db.rekey(Buffer.alloc(0));
  db.close();
  const plain = readFileSync(copy);
  assert.ok(plain.subarray(0, 16).toString('latin1').startsWith('SQLite format 3'), 'the copy is now plaintext');
  assert.ok(plain.includes(waitingMarker), 'a waiting message is found this way (the check can see bodies)');
  assert.ok(!plain.includes(sentMarker), 'the delivered one is not, not even in free pages');
  assert.ok(plain.includes('content purged'), 'its placeholder is');
});

test('a message waiting longer than queue.delay_notice_after gets one delay DSN in the sender\'s mailbox', { timeout: 60_000 }, async () => {
  queueMessage(2000, 'defer-slow@remote.example');
  const fe = await startServe(w.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '300' }, []);
  try {
    await waitFor('the delay notice', () => /delay notice put in the sender's mailbox/.test(fe.log()), () => fe.log());
    await new Promise((r) => setTimeout(r, 1500)); // more retries: still one notice
  } finally {
    await fe.stop();
  }
  const dir = mailboxDir(w.dataDir, 'example.org', 'me');
  const store = MailboxStore.open(dir, unlockMailboxKey(dir, PASSWORD));
  let raw: Buffer;
  try {
    store.importSpool();
    const notices = store.listMessages('INBOX').map((m) => store.getRaw('INBOX', m.uid)!).filter((r) => r.includes('defer-slow@remote.example'));
    assert.equal(notices.length, 1, 'one notice however many retries');
    raw = notices[0]!;
  } finally {
    store.close();
  }
  const parsed = await new Promise<string>((resolve, reject) => {
    const py = spawn('/usr/bin/python3', ['-c', `
import email, email.policy, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts = list(m.iter_parts())
g = parts[1].get_payload()[1]
print(json.dumps({'subject': str(m['Subject']), 'action': str(g['Action']), 'status': str(g['Status']), 'until': str(g['Will-Retry-Until'])}))
`]);
    let out = '';
    py.stdout.on('data', (d: Buffer) => (out += d.toString()));
    py.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited ${code}`))));
    py.stdin.end(raw);
  });
  const p = JSON.parse(parsed) as Record<string, string>;
  assert.match(p.subject!, /Delayed Mail/);
  assert.equal(p.action, 'delayed');
  assert.match(p.status!, /^4\.\d+\.\d+$/);
  assert.notEqual(p.until, 'None');
});

test('a dead preferred MX: the next one by preference gets the message; REQUIRETLS to an MX without TLS bounces (5.7.30), the mail beside it still goes', { timeout: 60_000 }, async () => {
  queueMessage(3000, 'someone@twomx.example');
  queueMessage(3001, 'strict@remote.example', '', true);
  queueMessage(3002, 'relaxed@remote.example', 'gr\u00fc\u00dfe'); // 8-bit: declared as such
  const fe = await startServe(w.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '300' }, []);
  try {
    await waitFor('the second MX to get it', () => subjects().includes('m-3000'), () => fe.log());
    await waitFor('the plain one beside the REQUIRETLS one', () => subjects().includes('m-3002'), () => fe.log());
    await waitFor('the REQUIRETLS bounce', () => inbox().some((r) => r.includes('strict@remote.example') && /multipart\/report/i.test(r.toString())), () => fe.log());
  } finally {
    await fe.stop();
  }
  assert.ok(!subjects().includes('m-3001'), 'never sent without TLS');
  assert.equal(peer.messages.find((m) => m.raw.includes('Subject: m-3002'))!.bodyType, '8bitmime', 'BODY=8BITMIME declared (RFC 6152)');
  const q = JSON.parse(await w.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: { address: string; state: string; status: string; remote_mta: string }[] }[] };
  const all = q.messages.flatMap((m) => m.recipients);
  assert.equal(all.find((r) => r.address === 'someone@twomx.example')!.remote_mta, 'mx.remote.example');
  assert.ok(dns.queries.some((q) => q.name === 'dead.twomx.example'), 'the preferred MX was tried first');
  const strict = all.find((r) => r.address === 'strict@remote.example')!;
  assert.equal(strict.state, 'bounced');
  assert.equal(strict.status, '5.7.30');
});

test('a next hop without 8BITMIME gets 7-bit mail; 8-bit mail is bounced (5.6.3), never sent undeclared', { timeout: 60_000 }, async () => {
  const old = await startPeerMx(undefined, { no8BitMime: true });
  const w2 = workspace(['hostname: mail.example.org', 'data_dir: ./data', 'dns:', `  servers: ["${dns.address}"]`, 'outbound:', `  port: ${old.port}`, ''].join('\n'));
  await w2.ok(['domain', 'add', 'example.org']);
  await w2.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  const send = (subject: string, body: string) =>
    handOff(w2.dataDir, queuePublicKey(w2.dataDir), { from: 'me@example.org', recipients: [{ address: `${subject}@remote.example` }], owner: 'me@example.org', submittedAt: new Date() }, message(subject, body));
  send('ascii', 'plain text');
  send('eightbit', 'gr\u00fc\u00dfe in UTF-8');
  const fe = await startServe(w2.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '300' }, []);
  try {
    await waitFor('both to be settled', async () => {
      const q = JSON.parse(await w2.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: { state: string }[] }[] };
      return q.messages.length === 2 && q.messages.every((m) => m.recipients.every((r) => r.state !== 'queued'));
    }, () => fe.log());
  } finally {
    await fe.stop();
    await old.close();
  }
  assert.deepEqual(old.messages.map((m) => m.to[0]), ['ascii@remote.example']);
  const q = JSON.parse(await w2.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: { address: string; state: string; status: string }[] }[] };
  const eight = q.messages.flatMap((m) => m.recipients).find((r) => r.address === 'eightbit@remote.example')!;
  assert.equal(eight.state, 'bounced');
  assert.equal(eight.status, '5.6.3');
});

test('UTF-8 in the Subject and the From name with ASCII addresses: MAIL FROM carries SMTPUTF8 where offered; a next hop without it gets no copy (5.6.9)', { timeout: 90_000 }, async () => {
  const modern = await startPeerMx();
  // the same port on another loopback address, so one outbound.port reaches both
  const old = await startPeerMx(undefined, { host: '127.0.0.2', port: modern.port, noSmtpUtf8: true });
  const d = await startDnsServer({
    'utf8.example': { MX: [{ priority: 10, exchange: 'mx.utf8.example' }] },
    'mx.utf8.example': { A: ['127.0.0.1'] },
    'plain.example': { MX: [{ priority: 10, exchange: 'mx.plain.example' }] },
    'mx.plain.example': { A: ['127.0.0.2'] },
  });
  const w3 = workspace(['hostname: mail.example.org', 'data_dir: ./data', 'dns:', `  servers: ["${d.address}"]`, 'outbound:', `  port: ${modern.port}`, ''].join('\n'));
  await w3.ok(['domain', 'add', 'example.org']);
  await w3.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  const subject = 'Gr\u00fc\u00dfe aus K\u00f6ln \u2709';
  const intl = (to: string) => Buffer.from(`From: "J\u00fcrgen Gro\u00df" <me@example.org>\r\nTo: ${to}\r\nSubject: ${subject}\r\nMessage-ID: <${to}>\r\n\r\nHallo\r\n`, 'utf8');
  // ASCII top-level headers, UTF-8 only in an attachment's filename (RFC 6532 applies to MIME parts too)
  const nested = (to: string) =>
    Buffer.from(
      `From: me@example.org\r\nTo: ${to}\r\nSubject: cv\r\nMessage-ID: <${to}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="r\u00e9sum\u00e9.txt"\r\n\r\nx\r\n--b1--\r\n`,
      'utf8',
    );
  // UTF-8 only in the body: 8BITMIME is enough
  const body8 = (to: string) => Buffer.from(`From: me@example.org\r\nTo: ${to}\r\nSubject: body only\r\nMessage-ID: <${to}>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\u00fc\u00dfe\r\n`, 'utf8');
  const send = (to: string, raw: Buffer) => handOff(w3.dataDir, queuePublicKey(w3.dataDir), { from: 'me@example.org', recipients: [{ address: to }], owner: 'me@example.org', submittedAt: new Date() }, raw);
  send('intl@utf8.example', intl('intl@utf8.example'));
  send('ascii@utf8.example', message('plain', 'nothing but ASCII'));
  send('intl@plain.example', intl('intl@plain.example'));
  send('nested@plain.example', nested('nested@plain.example'));
  send('body8@plain.example', body8('body8@plain.example'));
  const fe = await startServe(w3.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '300' }, []);
  try {
    await waitFor('all five to be settled', async () => {
      const q = JSON.parse(await w3.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: { state: string }[] }[] };
      return q.messages.length === 5 && q.messages.every((m) => m.recipients.every((r) => r.state !== 'queued'));
    }, () => fe.log());
    await waitFor('the bounces in the sender\'s INBOX', () => inbox(w3).filter((r) => /multipart\/report/i.test(r.toString())).length >= 2, () => fe.log());
  } finally {
    await fe.stop();
    await modern.close();
    await old.close();
    await d.close();
  }
  const got = modern.messages.find((m) => m.to[0] === 'intl@utf8.example');
  assert.ok(got, 'the peer that offers SMTPUTF8 got the message');
  assert.equal(got.smtpUtf8, true, 'MAIL FROM carried SMTPUTF8 (RFC 6531)');
  assert.ok(got.raw.includes(Buffer.from(`Subject: ${subject}\r\n`, 'utf8')), 'the UTF-8 Subject arrived byte for byte');
  assert.ok(got.raw.includes(Buffer.from('From: "J\u00fcrgen Gro\u00df" <me@example.org>', 'utf8')), 'the UTF-8 From name arrived byte for byte');
  assert.equal(modern.messages.find((m) => m.to[0] === 'ascii@utf8.example')?.smtpUtf8, false, 'an ASCII message does not ask for SMTPUTF8');
  assert.deepEqual(old.messages.map((m) => m.to[0]), ['body8@plain.example'], 'the peer without SMTPUTF8 got only the message whose headers are ASCII');
  assert.equal(old.messages[0]!.bodyType, '8bitmime');
  const q = JSON.parse(await w3.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: { address: string; state: string; status: string }[] }[] };
  const rcpt = (a: string) => q.messages.flatMap((m) => m.recipients).find((r) => r.address === a)!;
  for (const a of ['intl@plain.example', 'nested@plain.example']) {
    assert.equal(rcpt(a).state, 'bounced', a);
    assert.equal(rcpt(a).status, '5.6.9', a);
  }
  const report = inbox(w3).map((r) => r.toString()).find((r) => /multipart\/report/i.test(r) && r.includes('intl@plain.example'));
  assert.ok(report, 'the sender is told');
  assert.match(report, /Status: 5\.6\.9/);
  assert.match(report, /no SMTPUTF8/);
});

test('delivery records are kept for the owner domain\'s retention_days, else queue.retention_days', async () => {
  const r = workspace(['hostname: mail.example.org', 'data_dir: ./data', 'queue:', '  retention_days: 30', ''].join('\n'));
  await r.ok(['domain', 'add', 'example.org']);
  await r.ok(['domain', 'add', 'brief.example']);
  r.write(r.read().replace(/^ {2}brief\.example:\n/m, '  brief.example:\n    retention_days: 2\n'));
  assert.match(r.read(), /retention_days: 2/, 'the test edits fe.yml as intended');
  const config = loadConfig(r.config);
  assert.equal(config.domains.get('brief.example')?.retentionDays, 2);
  const { publicKey, privateKey } = queueSealingKeys(r.dataDir);
  for (const owner of ['me@example.org', 'me@brief.example']) {
    handOff(r.dataDir, publicKey, { from: owner, recipients: [{ address: 'x@remote.example' }], owner, submittedAt: new Date(), requireTls: false }, message(`kept-${owner}`, 'x'));
  }
  const store = QueueStore.open(r.dataDir);
  try {
    const now = Date.now();
    const { imported } = store.importIncoming(privateKey, now);
    assert.equal(imported.length, 2);
    const attempts = imported.flatMap((id) => store.recipients(id)).map((rcpt) => ({ recipientId: rcpt.id, state: 'delivered' as const, code: 250, text: '250 ok', failureClass: null, status: '2.0.0', remoteMta: 'mx.remote.example', nextAttempt: 0 }));
    store.record(attempts, now);
    assert.equal(store.redactFinished().length, 2);
    const owners = () => store.list(true).map((m) => m.message.owner).sort();
    assert.equal(store.purge(retentionDays(config), now + 1 * 86400_000), 0, 'a day later both are kept');
    assert.equal(store.purge(retentionDays(config), now + 3 * 86400_000), 1, 'three days later brief.example\'s is gone');
    assert.deepEqual(owners(), ['me@example.org']);
    assert.equal(store.purge(retentionDays(config), now + 31 * 86400_000), 1, 'after 31 days the other one too');
    assert.deepEqual(owners(), []);
  } finally {
    store.close();
  }
});
