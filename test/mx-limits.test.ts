// The MX under pressure: connection floods, message floods, kill -9 in a burst, a clean stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startDnsServer } from './helpers/dns-server.js';
import { startServe } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { smtpConnect } from './helpers/smtp-client.js';

async function setup(limits: string) {
  const dns = await startDnsServer({});
  const w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\ndns:\n  servers: ["${dns.address}"]\nlimits:\n${limits}`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
  const spool = path.join(w.dataDir, 'mailboxes', 'example.org', 'me', 'spool');
  const count = () => (existsSync(spool) ? readdirSync(spool).filter((f) => f.endsWith('.sealed')).length : 0);
  return { dns, w, count };
}

/** One message over a fresh connection; resolves with the final reply line (or the error). */
async function sendOne(port: number, body: string): Promise<string> {
  try {
    const s = await smtpConnect(port);
    if (!s.greeting.startsWith('220')) return s.greeting;
    await s.command('EHLO burst.test');
    const mail = await s.command('MAIL FROM:<burst@sender.example>');
    if (!mail.startsWith('250')) return mail;
    await s.command('RCPT TO:<me@example.org>');
    await s.command('DATA');
    const reply = await s.raw(`Subject: burst\r\n\r\n${body}\r\n.\r\n`);
    s.close();
    return reply;
  } catch (e) {
    return `error: ${(e as Error).message}`;
  }
}

test('too many connections from one address get 421 with a reason; others are unaffected', async () => {
  const { dns, w } = await setup('  connections_per_ip: 5\n');
  const fe = await startServe(w.config, ['--only', 'mx']);
  try {
    const port = fe.ports.mx!;
    const held = await Promise.all(Array.from({ length: 5 }, () => smtpConnect(port)));
    for (const s of held) assert.match(s.greeting, /^220 /);
    const extra = await smtpConnect(port);
    assert.match(extra.greeting, /^421 4\.7\.0 Too many connections from your address \(limit 5\)/);
    await extra.closed;
    held[0]!.close();
    await held[0]!.closed;
    await new Promise((r) => setTimeout(r, 100));
    const after = await smtpConnect(port);
    assert.match(after.greeting, /^220 /, 'a slot frees up when a connection closes');
    after.close();
    for (const s of held) s.close();
  } finally {
    await fe.stop();
    await dns.close();
  }
});

test('a message flood from one address is cut off with 421 after the per-minute limit', async () => {
  const { dns, w, count } = await setup('  messages_per_ip_per_minute: 3\n');
  const fe = await startServe(w.config, ['--only', 'mx']);
  try {
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(await sendOne(fe.ports.mx!, `message ${i}`));
    assert.deepEqual(replies.map((r) => r.slice(0, 3)), ['250', '250', '250', '421', '421']);
    assert.match(replies[3]!, /Too many messages from your address \(limit 3 a minute\)/);
    assert.equal(count(), 3);
  } finally {
    await fe.stop();
    await dns.close();
  }
});

test('an idle client is told 421 and dropped after limits.idle_timeout_seconds', async () => {
  const { dns, w } = await setup('  idle_timeout_seconds: 1\n');
  const fe = await startServe(w.config, ['--only', 'mx']);
  try {
    const s = await smtpConnect(fe.ports.mx!);
    await s.command('EHLO slow.test');
    const started = Date.now();
    assert.match(await s.raw(''), /^421 .*Timeout/, 'the server says why before it hangs up');
    await s.closed;
    const waited = Date.now() - started;
    assert.ok(waited >= 900 && waited < 10_000, `closed after ${waited} ms`);
    assert.match(await sendOne(fe.ports.mx!, 'a prompt sender is fine'), /^250 /);
  } finally {
    await fe.stop();
    await dns.close();
  }
});

test('thirty idle connections do not keep a real sender out', async () => {
  const { dns, w } = await setup('  connections_per_ip: 50\n');
  const fe = await startServe(w.config, ['--only', 'mx']);
  try {
    // many idle sockets do not stop a real sender
    const idle = await Promise.all(Array.from({ length: 30 }, () => new Promise<net.Socket>((r) => { const s = net.connect(fe.ports.mx!, '127.0.0.1', () => r(s)); })));
    assert.match(await sendOne(fe.ports.mx!, 'still works'), /^250 /);
    for (const s of idle) s.destroy();
  } finally {
    await fe.stop();
    await dns.close();
  }
});

test('kill -9 during a burst loses no message that got 250', async () => {
  const { dns, w, count } = await setup('  connections_per_ip: 100\n  messages_per_ip_per_minute: 100000\n');
  let fe = await startServe(w.config, ['--only', 'mx']);
  const port = fe.ports.mx!;
  let acked = 0;
  let stop = false;
  const sender = async () => {
    while (!stop) {
      const reply = await sendOne(port, 'x'.repeat(2000));
      if (reply.startsWith('250')) acked++;
      else if (!reply.startsWith('4')) break; // connection refused once the server is gone
    }
  };
  const senders = Array.from({ length: 8 }, sender);
  // Let the burst run, then kill the server in the middle of it.
  while (acked < 40) await new Promise((r) => setTimeout(r, 20));
  fe.signal('SIGKILL');
  await fe.stop('SIGKILL');
  stop = true;
  await Promise.all(senders);
  const stored = count();
  assert.ok(acked >= 40);
  assert.ok(stored >= acked, `every acknowledged message is on disk: ${stored} stored, ${acked} acknowledged`);
  assert.ok(stored <= acked + 8, 'at most the in-flight messages are extra (their senders will retry)');
  // The restarted server starts clean and keeps accepting.
  fe = await startServe(w.config, ['--only', 'mx']);
  try {
    assert.match(await sendOne(fe.ports.mx!, 'after restart'), /^250 /);
    assert.equal(count(), stored + 1);
    // and every one of them opens: no half-written spool file was left behind
    const status = JSON.parse(await w.ok(['mailbox', 'status', 'me@example.org', '--password-stdin', '--json'], { stdin: 'correct horse battery staple\n' })) as { imported: number; failed: number };
    assert.deepEqual([status.imported, status.failed], [stored + 1, 0]);
  } finally {
    await fe.stop();
    await dns.close();
  }
});

test('SIGTERM lets a session in progress finish, then exits 0', async () => {
  const { dns, w, count } = await setup('  connections_per_ip: 10\n');
  const fe = await startServe(w.config, ['--only', 'mx']);
  try {
    const s = await smtpConnect(fe.ports.mx!);
    await s.command('EHLO drain.test');
    await s.command('MAIL FROM:<x@sender.example>');
    await s.command('RCPT TO:<me@example.org>');
    fe.signal('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    assert.match(await s.command('DATA'), /^354/);
    assert.match(await s.raw('Subject: drain\r\n\r\nlast one\r\n.\r\n'), /^250 /);
    s.close();
    assert.equal(await fe.exited, 0);
    assert.equal(count(), 1);
    // no longer listening
    const refused = await new Promise<boolean>((r) => net.connect(fe.ports.mx!, '127.0.0.1').on('error', () => r(true)).on('connect', () => r(false)));
    assert.ok(refused);
  } finally {
    await fe.stop();
    await dns.close();
  }
});
