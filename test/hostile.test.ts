// Hostile clients against one real `fe serve`: clients that send without reading, announce huge
// literals, stream oversized DATA, flood logins or probe login timing. Each case asserts what an
// operator would check: the process's resident memory stays bounded, the exact replies, and a
// normal client is still served within 2 s while the attack runs.
//
// Throttle state is per address and per /24, so every case talks from its own 127.N.0.0/24
// (all of 127/8 reaches the loopback interface).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import zlib from 'node:zlib';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect } from './helpers/imap-client.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { rawConnect } from './helpers/raw-socket.js';

const PASSWORD = 'correct horse battery staple';
const MiB = 1024 * 1024;
const MESSAGE_SIZE = MiB; // limits.message_size here: the APPENDLIMIT and the MX's SIZE
let dns: DnsServer;
let fe: Daemon;

before(async () => {
  dns = await startDnsServer({});
  const w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nloopback_plaintext_auth: true\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\nlimits:\n  message_size: 1M\n  connections_per_ip: 50\n  messages_per_ip_per_minute: 1000\n`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  // short throttle delays keep the file fast; the counting and blocking are the real ones
  fe = await startServe(w.config, [], { FE_TEST_LOGIN_THROTTLE: JSON.stringify({ delayStepMs: 20, maxDelayMs: 100 }) }, ['mx', 'imap', 'pop3']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

/** Resident memory of the `fe serve` process. */
function rssMiB(): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${fe.child.pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

/** The highest RSS seen over `ms` (the server may still be taking in what was sent). */
async function peakRssMiB(ms: number): Promise<number> {
  let peak = rssMiB();
  for (let t = 0; t < ms; t += 100) {
    await new Promise((r) => setTimeout(r, 100));
    peak = Math.max(peak, rssMiB());
  }
  return peak;
}

/** Writes `chunk` until `total` octets are out or the peer stops reading (no drain for 1.5 s). */
async function flood(socket: net.Socket, chunk: Buffer, total: number): Promise<number> {
  let sent = 0;
  while (sent < total) {
    sent += chunk.length;
    if (socket.write(chunk)) continue;
    const drained = await new Promise<boolean>((r) => {
      const t = setTimeout(() => (socket.off("drain", ok), r(false)), 1500);
      const ok = () => (clearTimeout(t), r(true));
      socket.once('drain', ok);
    });
    if (!drained) break;
  }
  return sent;
}

/** A normal login's time with nothing else going on, measured first (a loaded CI machine is slower). */
let quietMs = 0;
/** What "still served" means: within 2 s, or 5 quiet logins' time on a slow machine. */
const servedWithin = () => Math.max(2000, 5 * quietMs);

/** A normal IMAP user, timed: log in, SELECT, LOGOUT. */
async function normalImapUser(): Promise<number> {
  const t0 = Date.now();
  const c = await imapConnect(fe.ports.imap!);
  const login = await c.command(`LOGIN me@example.org "${PASSWORD}"`);
  assert.equal(login.status, 'OK', login.text);
  assert.equal((await c.command('SELECT INBOX')).status, 'OK');
  await c.command('LOGOUT');
  c.close();
  return Date.now() - t0;
}

function repeat(line: string, size: number): Buffer {
  return Buffer.from(line.repeat(Math.ceil(size / line.length)), 'latin1');
}

test('IMAP: a client that sends commands before login and never reads does not grow the server', async () => {
  await normalImapUser(); // warm: the mailbox has been opened once
  quietMs = await normalImapUser();
  const base = rssMiB();
  const c = await rawConnect(fe.ports.imap!, '127.1.0.1', /\* OK .*\r\n/);
  c.socket.pause(); // from here on the client reads nothing
  const sent = await flood(c.socket, repeat('a NOOP\r\n', 64 * 1024), 256 * MiB);
  const grown = (await peakRssMiB(500)) - base;
  assert.ok(grown < 48, `RSS grew by ${grown.toFixed(1)} MiB after ${(sent / MiB).toFixed(0)} MiB of unread NOOPs`);
  assert.ok(sent < 128 * MiB, `the server kept reading: ${(sent / MiB).toFixed(0)} MiB taken`);
  const ms = await normalImapUser();
  assert.ok(ms < servedWithin(), `a normal login took ${ms} ms during the flood`);
  c.socket.destroy();
});

test('IMAP: input through COMPRESS=DEFLATE is inflated only as fast as the session reads it', async () => {
  const c = await rawConnect(fe.ports.imap!, '127.1.0.2', /\* OK .*\r\n/);
  await c.send(`a LOGIN me@example.org "${PASSWORD}"\r\n`, /^a OK .*\r\n/m);
  await c.send('b COMPRESS DEFLATE\r\n', /^b OK .*\r\n/m);
  c.socket.pause();
  // 256 MiB of NOOPs deflate to a few hundred KiB: all of it fits in the kernel's buffers
  const bomb = zlib.deflateRawSync(repeat('c NOOP\r\n', 256 * MiB), { level: 9 });
  const base = rssMiB();
  c.socket.write(bomb);
  const grown = (await peakRssMiB(2000)) - base;
  assert.ok(grown < 48, `RSS grew by ${grown.toFixed(1)} MiB from ${(bomb.length / 1024).toFixed(0)} KiB of deflated input`);
  const ms = await normalImapUser();
  assert.ok(ms < servedWithin(), `a normal login took ${ms} ms during the bomb`);
  c.socket.destroy();
});

test('IMAP: literals over 8 KiB are refused before login, APPENDLIMIT after it', async () => {
  const c = await rawConnect(fe.ports.imap!, '127.1.0.3', /\* OK .*\r\n/);
  // before login: refused from the announcement, no "+" and nothing reserved
  assert.match(await c.send('a APPEND INBOX {500000}\r\n', /\r\n/), /^a BAD \[TOOBIG\] literals over 8192 octets need a login first\r\n$/);
  assert.match(await c.send('a2 APPEND INBOX {67108864}\r\n', /\r\n/), /^a2 NO \[TOOBIG\] literal of 67108864 octets exceeds the limit of 1048576\r\n$/);
  assert.match(await c.send('b LOGIN me@example.org {8193}\r\n', /\r\n/), /^b BAD \[TOOBIG\] /);
  // a refused non-synchronising literal is skipped, and the session goes on
  assert.match(await c.send(`c LOGIN me@example.org {9000+}\r\n${'x'.repeat(9000)}\r\nd NOOP\r\n`, /^d .*\r\n/m), /^c BAD \[TOOBIG\] .*\r\nd OK /);
  // a small literal (a password) is fine
  assert.match(await c.send(`e LOGIN me@example.org {${PASSWORD.length}}\r\n`, /\r\n/), /^\+ /);
  assert.match(await c.send(`${PASSWORD}\r\n`, /^e .*\r\n/m), /^e OK /);
  // logged in: the advertised APPENDLIMIT holds, one octet over is refused before any is sent
  const caps = await c.send('f CAPABILITY\r\n', /^f .*\r\n/m);
  assert.match(caps, new RegExp(` APPENDLIMIT=${MESSAGE_SIZE}[ \\r]`));
  assert.match(await c.send(`g APPEND INBOX {${MESSAGE_SIZE + 1}}\r\n`, /\r\n/), new RegExp(`^g NO \\[TOOBIG\\] literal of ${MESSAGE_SIZE + 1} octets exceeds the limit of ${MESSAGE_SIZE}\\r\\n$`));
  const body = Buffer.concat([Buffer.from('Subject: at the limit\r\n\r\n'), repeat('0123456789abcde\n', MESSAGE_SIZE)]).subarray(0, MESSAGE_SIZE);
  assert.match(await c.send(`h APPEND INBOX {${MESSAGE_SIZE}}\r\n`, /\r\n/), /^\+ /);
  c.socket.write(body);
  assert.match(await c.send('\r\n', /^h .*\r\n/m), /^h OK \[APPENDUID \d+ \d+\] APPEND completed/);
  c.socket.destroy();
});

test('MX: an oversized DATA without SIZE is answered 552 without being held in memory', async () => {
  const base = rssMiB();
  const s = await rawConnect(fe.ports.mx!, '127.1.0.4', /^220 .*\r\n/m);
  await s.send('EHLO big.test\r\n', /^250 .*\r\n/m);
  await s.send('MAIL FROM:<big@sender.example>\r\n', /^250 .*\r\n/m);
  await s.send('RCPT TO:<me@example.org>\r\n', /^250 .*\r\n/m);
  await s.send('DATA\r\n', /^354 .*\r\n/m);
  let peak = 0;
  const watch = setInterval(() => (peak = Math.max(peak, rssMiB())), 50);
  // 384 MiB: far more than any bound below, so holding it (537 MiB for 128 MiB before the fix)
  // cannot pass. Node 22+ collects the dropped chunks later than Node 20 (about 100 MiB of
  // garbage whatever the size sent, measured with 128 and 512 MiB under Node 24), hence two bounds.
  const sent = await flood(s.socket, repeat('0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n', 64 * 1024), 384 * MiB);
  const reply = await s.send('\r\n.\r\n', /^\d{3} .*\r\n/m);
  clearInterval(watch);
  assert.equal(sent >= 384 * MiB, true, 'the MX reads the whole message to answer it');
  assert.match(reply, new RegExp(`^552 5\\.3\\.4 Message too big: the limit here is ${MESSAGE_SIZE} bytes\\r\\n$`));
  const grown = Math.max(peak, rssMiB()) - base;
  // Node 20 stays near 40 MiB idle but reached 48.3 under CI load (GC later when the machine is
  // busy); 96 still fails a server that holds even a quarter of what was sent.
  const bound = Number(process.versions.node.split('.')[0]) >= 22 ? 160 : 96;
  assert.ok(grown < bound, `RSS grew by ${grown.toFixed(1)} MiB for ${(sent / MiB).toFixed(0)} MiB of DATA (bound ${bound} MiB)`);
  assert.match(await s.send('QUIT\r\n', /^221 .*\r\n/m), /^221 /);
  s.socket.destroy();
  const ok = await smtpConnect(fe.ports.mx!);
  assert.match(ok.greeting, /^220 /);
  ok.close();
});

/** One IMAP LOGIN over a fresh connection from `localAddress`: the tagged reply. */
async function loginFrom(localAddress: string, user: string, password: string): Promise<string> {
  const c = await rawConnect(fe.ports.imap!, localAddress, /\* OK .*\r\n/);
  const reply = await c.send(`a LOGIN ${user} "${password}"\r\n`, /^a .*\r\n/m);
  c.socket.destroy();
  return reply.trim();
}

test('logins: 50 parallel guesses from one address are counted before they are checked', async () => {
  const replies = await Promise.all(Array.from({ length: 50 }, () => loginFrom('127.2.0.1', 'me@example.org', 'not the password')));
  const checked = replies.filter((r) => r === 'a NO [AUTHENTICATIONFAILED] wrong user name or password').length;
  const refused = replies.filter((r) => r === 'a NO [UNAVAILABLE] too many logins waiting; try again in a moment').length;
  assert.ok(checked <= 10, `${checked} of 50 parallel guesses were checked (limit 10)`);
  assert.equal(checked + refused, 50, replies.join('\n'));
  // the address is now blocked, even with the right password; others are not
  assert.match(await loginFrom('127.2.0.1', 'me@example.org', PASSWORD), /^a NO \[UNAVAILABLE\] too many failed logins from your address; try again in 15 minutes$/);
  assert.match(await loginFrom('127.2.0.2', 'me@example.org', PASSWORD), /^a OK /);
});

test('logins: abandoned guesses from many addresses do not delay a user who logged in before', async () => {
  await normalImapUser(); // 127.0.0.1 is known-good from here on
  const sockets: net.Socket[] = [];
  for (let n = 0; n < 30; n++) {
    for (let i = 0; i < 10; i++) {
      const s = net.connect({ port: fe.ports.imap!, host: '127.0.0.1', localAddress: `127.3.${n}.1` });
      s.on('error', () => undefined);
      s.write('a LOGIN me@example.org "guess"\r\n', () => s.destroy());
      sockets.push(s);
    }
  }
  await Promise.all(sockets.map((s) => new Promise((r) => (s.destroyed ? r(null) : s.once('close', r)))));
  const ms = await normalImapUser();
  assert.ok(ms < servedWithin(), `a known user's login took ${ms} ms behind 300 abandoned guesses`);
});

test('logins: an unknown user costs the same time as a wrong password', async () => {
  const timed = async (n: number, user: string) => {
    const t0 = process.hrtime.bigint();
    const reply = await loginFrom(`127.4.${n}.1`, user, 'not the password');
    assert.equal(reply, 'a NO [AUTHENTICATIONFAILED] wrong user name or password');
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const wrong: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 5; i++) {
    wrong.push(await timed(2 * i, 'me@example.org'));
    unknown.push(await timed(2 * i + 1, 'nobody@example.org'));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  assert.ok(median(wrong) > 20, `a wrong password took ${median(wrong).toFixed(1)} ms (scrypt is ~65 ms)`);
  assert.ok(median(unknown) > median(wrong) * 0.6, `unknown user ${median(unknown).toFixed(1)} ms, wrong password ${median(wrong).toFixed(1)} ms`);
});
