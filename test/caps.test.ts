// Slowloris and connection caps against one real `fe serve` with small limits: a /24 gets its
// share and no more, the last tenth of the cap stays open to networks holding nothing yet, and
// the deadlines (greeting to EHLO, DATA, session, IMAP/POP3 login, command and SASL exchange,
// IMAP IDLE) hold against
// clients that trickle a byte now and then (which restarts the idle timer, not these).
// Each case talks from its own 127.N.x.x (all of 127/8 reaches the loopback interface).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect } from './helpers/imap-client.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { pop3Connect } from './helpers/pop3-client.js';
import { rawConnect, type RawConn } from './helpers/raw-socket.js';

const PASSWORD = 'correct horse battery staple';
const MAX = 40; // limits.max_connections here: the last 4 are kept for networks holding none
const SHARE = 10; // limits.connections_per_prefix
let fe: Daemon;

before(async () => {
  const w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nloopback_plaintext_auth: true\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["127.0.0.1:1"]\n` +
      `limits:\n  connections_per_ip: 100\n  messages_per_ip_per_minute: 1000\n  max_connections: ${MAX}\n  connections_per_prefix: ${SHARE}\n  greeting_timeout_seconds: 2\n  data_timeout_seconds: 3\n  session_timeout_seconds: 6\n  login_timeout_seconds: 3\n  command_timeout_seconds: 2\n  imap_idle_timeout_seconds: 3\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['mx', 'imap', 'pop3']);
});

after(async () => {
  await fe?.stop();
});

/** Writes `byte` every `everyMs` until the connection closes: each one restarts an idle timer. */
function trickle(c: RawConn, byte: string, everyMs: number): void {
  const t = setInterval(() => (c.socket.destroyed ? clearInterval(t) : c.socket.write(byte)), everyMs);
  void c.closed.then(() => clearInterval(t));
}

/** Resolves with all the connection received from now until the server closed it, and how long that took. */
async function untilClosed(c: RawConn): Promise<{ text: string; ms: number }> {
  const t0 = Date.now();
  await c.closed;
  return { text: c.unread(), ms: Date.now() - t0 };
}

/** A normal MX client from a network of its own, timed: greeting, EHLO, QUIT. */
async function normalSmtp(): Promise<number> {
  const t0 = Date.now();
  const s = await rawConnect(fe.ports.mx!, '127.99.0.1', /^220 .*\r\n/m);
  assert.match(await s.send('EHLO normal.test\r\n', /^250 .*\r\n/m), /^250-/);
  assert.match(await s.send('QUIT\r\n', /^221 .*\r\n/m), /^221 /);
  s.socket.destroy();
  return Date.now() - t0;
}

test('MX: a /24 gets its share, the cap keeps room for new networks, and trickling before EHLO is cut', async () => {
  // one /24 takes its share; one more from it (another address) is refused with the reason
  const held = await Promise.all(Array.from({ length: SHARE }, (_, i) => rawConnect(fe.ports.mx!, `127.10.0.${i + 1}`, /^220 .*\r\n/m)));
  const over = await rawConnect(fe.ports.mx!, '127.10.0.200', /^\d{3} .*\r\n/m);
  assert.equal(over.seen, `421 4.7.0 Too many connections from your network (limit ${SHARE}); try again later\r\n`);
  await over.closed;
  // more networks fill the cap up to its reserve (MAX - MAX/10): 127.11, 127.12 and 6 of 127.13
  const more = Array.from({ length: MAX - MAX / 10 - SHARE }, (_, k) => `127.${11 + Math.floor(k / SHARE)}.0.${(k % SHARE) + 1}`);
  held.push(...(await Promise.all(more.map((a) => rawConnect(fe.ports.mx!, a, /^220 .*\r\n/m)))));
  // a network already holding connections no longer gets in; a new one does, and is served
  const full = await rawConnect(fe.ports.mx!, '127.13.0.99', /^\d{3} .*\r\n/m);
  assert.equal(full.seen, '421 4.3.2 Too many connections; try again later\r\n');
  const t0 = Date.now();
  for (const c of held) trickle(c, 'N', 400); // "NNNN..." never completes a command
  const ms = await normalSmtp();
  assert.ok(ms < 2000, `a normal client from a new network took ${ms} ms beside ${held.length} trickling connections`);
  // every trickler is cut at greeting_timeout_seconds (2 s), whatever it sends
  const ends = await Promise.all(held.map(untilClosed));
  for (const e of ends) assert.match(e.text, /^421 4\.4\.2 No EHLO within 2 s; closing\r\n$/);
  const waited = Date.now() - t0;
  assert.ok(waited < 8000, `the last trickler went after ${waited} ms (deadline 2 s)`);
  // the slots are free again
  const again = await rawConnect(fe.ports.mx!, '127.10.0.1', /^\d{3} .*\r\n/m);
  assert.match(again.seen, /^220 /);
  again.socket.destroy();
});

/** INBOX's message count, seen by a normal IMAP user. */
async function inboxCount(): Promise<number> {
  const c = await imapConnect(fe.ports.imap!);
  assert.equal((await c.command(`LOGIN me@example.org "${PASSWORD}"`)).status, 'OK');
  const sel = await c.command('SELECT INBOX');
  await c.command('LOGOUT');
  c.close();
  return Number(sel.untagged.map((l) => /^\* (\d+) EXISTS/.exec(l)?.[1]).find(Boolean));
}

test('MX: a DATA trickled a line at a time is cut at data_timeout_seconds and nothing is stored', async () => {
  const before = await inboxCount();
  const s = await rawConnect(fe.ports.mx!, '127.20.0.1', /^220 .*\r\n/m);
  await s.send('EHLO slow.test\r\n', /^250 .*\r\n/m);
  await s.send('MAIL FROM:<slow@sender.example>\r\n', /^250 .*\r\n/m);
  await s.send('RCPT TO:<me@example.org>\r\n', /^250 .*\r\n/m);
  await s.send('DATA\r\nSubject: slow\r\n\r\n', /^354 .*\r\n/m);
  trickle(s, 'more text\r\n', 300);
  const end = await untilClosed(s);
  assert.equal(end.text, '421 4.4.2 DATA not completed within 3 s; closing\r\n');
  assert.ok(end.ms < 8000, `cut after ${end.ms} ms`);
  assert.equal(await inboxCount(), before, 'the cut message was not stored');
  // a message cut off is the client's doing, not a server failure
  assert.doesNotMatch(fe.log(), /^error /m);
});

test('MX: a session that keeps talking is cut at session_timeout_seconds', async () => {
  const s = await rawConnect(fe.ports.mx!, '127.21.0.1', /^220 .*\r\n/m);
  await s.send('EHLO chatty.test\r\n', /^250 .*\r\n/m);
  trickle(s, 'NOOP\r\n', 300);
  const end = await untilClosed(s);
  assert.match(end.text, /(^|\r\n)421 4\.4\.2 Session time limit \(6 s\) reached; closing\r\n$/);
  assert.match(end.text, /^250 /, 'the NOOPs were answered until then');
  const ms = await normalSmtp();
  assert.ok(ms < 2000, `a normal client took ${ms} ms`);
});

test('IMAP: a /24 gets its share; NOOPs before login are cut at login_timeout_seconds, a trickled command at command_timeout_seconds', async () => {
  const held: RawConn[] = [];
  for (let i = 0; i < SHARE; i++) held.push(await rawConnect(fe.ports.imap!, `127.30.0.${i + 1}`, /^\* OK .*\r\n/m));
  const over = await rawConnect(fe.ports.imap!, '127.30.0.200', /\r\n/);
  assert.equal(over.seen, `* BYE [UNAVAILABLE] too many connections from your network (limit ${SHARE})\r\n`);
  for (const c of held) trickle(c, 'a NOOP\r\n', 400);
  const t0 = Date.now();
  const c = await imapConnect(fe.ports.imap!);
  assert.equal((await c.command(`LOGIN me@example.org "${PASSWORD}"`)).status, 'OK');
  const ms = Date.now() - t0;
  assert.ok(ms < 2000, `a normal login took ${ms} ms`);
  const ends = await Promise.all(held.map(untilClosed));
  for (const e of ends) assert.match(e.text, /(^|\r\n)\* BYE login not completed within 3 s\r\n$/);
  // logged in, a command line that never ends: the idle timer restarts at each byte, this does not
  const slow = await rawConnect(fe.ports.imap!, '127.31.0.1', /^\* OK .*\r\n/m);
  await slow.send(`a LOGIN me@example.org "${PASSWORD}"\r\n`, /^a OK .*\r\n/m);
  trickle(slow, 'x', 200);
  const end = await untilClosed(slow);
  assert.equal(end.text, '* BYE command not completed within 2 s\r\n');
  assert.ok(end.ms < 7000, `cut after ${end.ms} ms`);
  // the normal session, quiet in between, is still there
  assert.equal((await c.command('NOOP')).status, 'OK');
  await c.command('LOGOUT');
  c.close();
});

test('IMAP: a literal gets its deadline plus a second per 64 KiB announced, and no more', async () => {
  const slow = await rawConnect(fe.ports.imap!, '127.32.0.1', /^\* OK .*\r\n/m);
  await slow.send(`a LOGIN me@example.org "${PASSWORD}"\r\n`, /^a OK .*\r\n/m);
  // 192 KiB announced: 2 s + 3 s; sent at a trickle it is cut after about 5 s
  await slow.send(`b APPEND INBOX {${192 * 1024}}\r\n`, /^\+ .*\r\n/m);
  const t0 = Date.now();
  trickle(slow, 'y'.repeat(100), 200);
  const end = await untilClosed(slow);
  const ms = Date.now() - t0;
  assert.equal(end.text, '* BYE command not completed within 5 s\r\n');
  assert.ok(ms > 4000 && ms < 10_000, `cut after ${ms} ms`);
});

test('POP3: a /24 gets its share; a client that never logs in is cut at login_timeout_seconds', async () => {
  const held: RawConn[] = [];
  for (let i = 0; i < SHARE; i++) held.push(await rawConnect(fe.ports.pop3!, `127.40.0.${i + 1}`, /^\+OK .*\r\n/m));
  const over = await rawConnect(fe.ports.pop3!, '127.40.0.200', /\r\n/);
  assert.equal(over.seen, `-ERR [SYS/TEMP] Too many connections from your network (limit ${SHARE})\r\n`);
  for (const c of held) trickle(c, 'NOOP\r\n', 400);
  const t0 = Date.now();
  const p = await pop3Connect(fe.ports.pop3!, { localAddress: '127.41.0.1' });
  const ms = Date.now() - t0;
  assert.ok(ms < 2000, `a normal POP3 greeting took ${ms} ms`);
  assert.match(await p.line(`USER me@example.org`), /^\+OK/);
  p.close();
  const ends = await Promise.all(held.map(untilClosed));
  for (const e of ends) assert.match(e.text, /(^|\r\n)-ERR \[SYS\/TEMP\] login not completed within 3 s\r\n$/);
  // a command line trickled a byte at a time
  const slow = await rawConnect(fe.ports.pop3!, '127.42.0.1', /^\+OK .*\r\n/m);
  trickle(slow, 'U', 200);
  const end = await untilClosed(slow);
  assert.equal(end.text, '-ERR [SYS/TEMP] command line not completed within 2 s\r\n');
});

/** send(), but a connection the server closes first fails the test with what it said instead of hanging it. */
async function say(c: RawConn, line: string, until: RegExp): Promise<string> {
  const closed = c.closed.then(() => {
    throw new Error(`closed by the server while waiting for ${until}; it said: ${JSON.stringify(c.unread())}`);
  });
  closed.catch(() => undefined); // once the reply came, a later close is no failure
  return Promise.race([c.send(line, until), closed]);
}

test('IMAP: an IDLE never ended is logged off at imap_idle_timeout_seconds, trickling or not; DONE in time keeps the session', { timeout: 60_000 }, async () => {
  const quiet = await rawConnect(fe.ports.imap!, '127.33.0.1', /^\* OK .*\r\n/m);
  await say(quiet, `a LOGIN me@example.org "${PASSWORD}"\r\n`, /^a OK .*\r\n/m);
  // an IDLE ended in time: its deadline goes with it
  await say(quiet, 'b IDLE\r\n', /^\+ .*\r\n/m);
  assert.match(await say(quiet, 'DONE\r\n', /^b .*\r\n/m), /^b OK IDLE terminated\r\n$/m);
  await new Promise((r) => setTimeout(r, 3500));
  assert.match(await say(quiet, 'c NOOP\r\n', /^c .*\r\n/m), /^c OK /m, 'the session outlived the deadline of its finished IDLE');
  // re-IDLE, and never DONE: RFC 2177 lets the server log the client off
  await say(quiet, 'd IDLE\r\n', /^\+ .*\r\n/m);
  const end = await untilClosed(quiet);
  assert.equal(end.text, '* BYE IDLE not renewed within 3 s\r\n');
  // octets that never make a DONE do not extend it
  const busy = await rawConnect(fe.ports.imap!, '127.33.0.2', /^\* OK .*\r\n/m);
  await say(busy, `a LOGIN me@example.org "${PASSWORD}"\r\n`, /^a OK .*\r\n/m);
  await say(busy, 'b IDLE\r\n', /^\+ .*\r\n/m);
  trickle(busy, 'x', 200);
  assert.equal((await untilClosed(busy)).text, '* BYE IDLE not renewed within 3 s\r\n');
});

test('IMAP: an AUTHENTICATE whose continuation never comes is cut at command_timeout_seconds, before the login deadline', { timeout: 60_000 }, async () => {
  const plain = await rawConnect(fe.ports.imap!, '127.34.0.1', /^\* OK .*\r\n/m);
  await plain.send('a AUTHENTICATE PLAIN\r\n', /^\+.*\r\n/m);
  assert.equal((await untilClosed(plain)).text, '* BYE authentication not completed within 2 s\r\n');
  // LOGIN's two prompts share one deadline: answering the first does not restart it
  const two = await rawConnect(fe.ports.imap!, '127.34.0.2', /^\* OK .*\r\n/m);
  await two.send('a AUTHENTICATE LOGIN\r\n', /^\+ .*\r\n/m);
  await new Promise((r) => setTimeout(r, 1200));
  await two.send(`${Buffer.from('me@example.org').toString('base64')}\r\n`, /^\+ .*\r\n/m);
  assert.equal((await untilClosed(two)).text, '* BYE authentication not completed within 2 s\r\n');
  // one that completes logs in as before
  const good = await rawConnect(fe.ports.imap!, '127.34.0.3', /^\* OK .*\r\n/m);
  await good.send('a AUTHENTICATE PLAIN\r\n', /^\+.*\r\n/m);
  assert.match(await good.send(`${Buffer.from(`\0me@example.org\0${PASSWORD}`).toString('base64')}\r\n`, /^a .*\r\n/m), /^a OK /m);
  good.socket.destroy();
});

test('POP3: an AUTH PLAIN whose response never comes is cut at command_timeout_seconds', { timeout: 60_000 }, async () => {
  const c = await rawConnect(fe.ports.pop3!, '127.43.0.1', /^\+OK .*\r\n/m);
  await c.send('AUTH PLAIN\r\n', /^\+ ?\r\n/m);
  assert.equal((await untilClosed(c)).text, '-ERR [SYS/TEMP] authentication not completed within 2 s\r\n');
});

test('IMAP: NUL in an APPEND literal is refused (BAD, nothing stored, session goes on); in literal8 (BINARY) it is kept and never served in a plain literal', { timeout: 60_000 }, async () => {
  const c = await rawConnect(fe.ports.imap!, '127.35.0.1', /^\* OK .*\r\n/m);
  await c.send(`a LOGIN me@example.org "${PASSWORD}"\r\n`, /^a OK .*\r\n/m);
  const count = async (tag: string) => Number(/MESSAGES (\d+)/.exec(await c.send(`${tag} STATUS INBOX (MESSAGES)\r\n`, new RegExp(`^${tag} OK .*\\r\\n`, 'm')))![1]);
  const before = await count('s1');
  const msg = 'From: a@sender.example\r\nSubject: nul\r\n\r\nbefore\0after\r\n';
  // a synchronising literal: the continuation, then the refusal once its octets are in
  await c.send(`b APPEND INBOX {${msg.length}}\r\n`, /^\+ .*\r\n/m);
  assert.match(await c.send(`${msg}\r\n`, /^b .*\r\n/m), /^b BAD NUL in a literal \(use literal8\)\r\n$/m);
  // LITERAL+: the same, and the command pipelined after it is read as a command
  const after = await c.send(`c APPEND INBOX {${msg.length}+}\r\n${msg}\r\nd NOOP\r\n`, /^d .*\r\n/m);
  assert.match(after, /^c BAD NUL in a literal/m);
  assert.match(after, /^d OK /m);
  assert.equal(await count('s2'), before, 'nothing was stored');
  // literal8 (RFC 3516; BINARY is advertised): stored as sent
  const ok = await c.send(`e APPEND INBOX ~{${msg.length}+}\r\n${msg}\r\n`, /^e .*\r\n/m);
  const uid = /^e OK \[APPENDUID \d+ (\d+)\]/m.exec(ok)?.[1];
  assert.ok(uid, ok);
  assert.equal(await count('s3'), before + 1);
  await c.send('h SELECT INBOX\r\n', /^h OK .*\r\n/m);
  const body = await c.send(`f UID FETCH ${uid} (BODY.PEEK[])\r\n`, /^f OK .*\r\n/m);
  assert.ok(body.includes(`BODY[] {${msg.length}}\r\n`), body);
  assert.ok(!body.includes('\0'), 'a plain literal carries no NUL');
  const bin = await c.send(`g UID FETCH ${uid} (BINARY.PEEK[])\r\n`, /^g OK .*\r\n/m);
  assert.ok(bin.includes(`BINARY[] ~{${msg.length}}\r\n${msg}`), bin);
  c.socket.destroy();
});
