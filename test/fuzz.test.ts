// Mutation fuzzing of the MX, IMAP and POP3 against one real `fe serve`: valid sessions, mutated
// (test/helpers/fuzz.ts), played for a bounded time per protocol. After each protocol: the
// process is alive, its log has no error and no crash, and a normal client is served.
// In CI FE_FUZZ_SECONDS defaults to 8 per protocol; `npm run fuzz` runs longer (5 minutes per
// protocol unless FE_FUZZ_SECONDS says). FE_FUZZ_SEED replays a run's seed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect } from './helpers/imap-client.js';
import { pop3Connect } from './helpers/pop3-client.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { fuzzFor } from './helpers/fuzz.js';

const PASSWORD = 'correct horse battery staple';
const SECONDS = Number(process.env.FE_FUZZ_SECONDS) || 8;
const SEED = Number(process.env.FE_FUZZ_SEED) || Math.floor(Math.random() * 2 ** 31);
const CONCURRENCY = Number(process.env.FE_FUZZ_CONCURRENCY) || 4;
let dns: DnsServer;
let fe: Daemon;

before(async () => {
  dns = await startDnsServer({});
  const w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nloopback_plaintext_auth: true\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n` +
      `protection:\n  viruses: { enabled: false }\n  spam: { enabled: false }\nlimits:\n  message_size: 1M\n  connections_per_ip: 50\n  messages_per_ip_per_minute: 100000\n  command_timeout_seconds: 5\n  login_timeout_seconds: 10\n  greeting_timeout_seconds: 10\n  data_timeout_seconds: 10\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], { FE_TEST_LOGIN_THROTTLE: JSON.stringify({ delayStepMs: 5, maxDelayMs: 20 }) }, ['mx', 'imap', 'pop3']);
  for (let i = 0; i < 3; i++) await normalSmtp(`seed ${i}`); // something to FETCH and RETR
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

const MESSAGE = 'From: a@sender.example\r\nTo: me@example.org\r\nSubject: =?utf-8?q?fuzz?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b--\r\n';

const SMTP_SESSIONS = [
  ['EHLO fuzz.test\r\n', 'MAIL FROM:<a@sender.example> SIZE=300 BODY=8BITMIME\r\n', 'RCPT TO:<me@example.org>\r\n', 'DATA\r\n', MESSAGE, '.\r\n', 'QUIT\r\n'],
  ['HELO fuzz.test\r\n', 'MAIL FROM:<>\r\n', 'RCPT TO:<me@example.org> NOTIFY=NEVER\r\n', 'RCPT TO:<nobody@example.org>\r\n', 'RSET\r\n', 'NOOP\r\n', 'VRFY me\r\n', 'HELP\r\n', 'QUIT\r\n'],
  ['EHLO fuzz.test\r\n', 'MAIL FROM:<a@sender.example> SMTPUTF8\r\n', 'RCPT TO:<me@example.org>\r\n', 'DATA\r\n', 'Subject: x\r\n\r\n..dot\r\n.\r\n', 'MAIL FROM:<b@sender.example>\r\n', 'RCPT TO:<other@else.example>\r\n', 'STARTTLS\r\n', 'AUTH PLAIN AGZvbwBiYXI=\r\n', 'QUIT\r\n'],
];

const login = `a LOGIN me@example.org "${PASSWORD}"\r\n`;
const IMAP_SESSIONS = [
  [login, 'b CAPABILITY\r\n', 'c SELECT INBOX (CONDSTORE)\r\n', 'd FETCH 1:* (FLAGS UID ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BINARY.PEEK[1] BODY[2]<0.10>)\r\n', 'e UID SEARCH OR TEXT "hello" SUBJECT fuzz SINCE 1-Jan-2020\r\n', 'f STORE 1 +FLAGS (\\Flagged $Junk)\r\n', 'g LOGOUT\r\n'],
  [login, `b APPEND INBOX (\\Seen) "01-Jan-2024 10:00:00 +0000" {${MESSAGE.length}+}\r\n${MESSAGE}\r\n`, 'c LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT SIZE))\r\n', 'd CREATE "fuzz/&AOk-"\r\n', 'e RENAME "fuzz/&AOk-" fuzz2\r\n', 'f DELETE fuzz2\r\n', 'g STATUS INBOX (MESSAGES UNSEEN HIGHESTMODSEQ)\r\n', 'h GETQUOTAROOT INBOX\r\n', 'i LOGOUT\r\n'],
  ['a AUTHENTICATE PLAIN AG1lQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=\r\n', 'b ENABLE QRESYNC UTF8=ACCEPT\r\n', 'c SELECT INBOX (QRESYNC (1 1 1:5))\r\n', 'd IDLE\r\n', 'DONE\r\n', 'e UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n', 'f UID MOVE 1 Junk\r\n', 'g COPY 1:* Trash\r\n', 'h EXPUNGE\r\n', 'i ID ("name" "fuzz")\r\n', 'j NAMESPACE\r\n', 'k UNSELECT\r\n', 'l LOGOUT\r\n'],
  [login, 'b COMPRESS DEFLATE\r\n', 'c NOOP\r\n'], // what follows COMPRESS is not deflated: the server must cope
];

const POP3_SESSIONS = [
  ['CAPA\r\n', 'USER me@example.org\r\n', `PASS ${PASSWORD}\r\n`, 'STAT\r\n', 'LIST\r\n', 'UIDL\r\n', 'TOP 1 2\r\n', 'RETR 1\r\n', 'LIST 2\r\n', 'NOOP\r\n', 'RSET\r\n', 'QUIT\r\n'],
  ['AUTH PLAIN\r\n', 'AG1lQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=\r\n', 'UIDL 1\r\n', 'DELE 1\r\n', 'RSET\r\n', 'RETR 99\r\n', 'QUIT\r\n'],
  ['AUTH PLAIN AG1lQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=\r\n', 'STLS\r\n', 'APOP me x\r\n', 'TOP 1 0\r\n', 'QUIT\r\n'],
];

async function normalSmtp(subject: string): Promise<void> {
  const s = await smtpConnect(fe.ports.mx!);
  assert.match(s.greeting, /^220 /);
  assert.match(await s.command('EHLO normal.test'), /^250/);
  assert.match(await s.command('MAIL FROM:<n@sender.example>'), /^250 /);
  assert.match(await s.command('RCPT TO:<me@example.org>'), /^250 /);
  assert.match(await s.command('DATA'), /^354 /);
  assert.match(await s.raw(`Subject: ${subject}\r\n\r\nhello\r\n.\r\n`), /^250 /);
  await s.command('QUIT');
  s.close();
}

async function normalImap(): Promise<void> {
  const c = await imapConnect(fe.ports.imap!);
  assert.equal((await c.command(`LOGIN me@example.org "${PASSWORD}"`)).status, 'OK');
  assert.equal((await c.command('SELECT INBOX')).status, 'OK');
  assert.equal((await c.command('FETCH 1:* (FLAGS)')).status, 'OK');
  await c.command('LOGOUT');
  c.close();
}

async function normalPop3(): Promise<void> {
  const p = await pop3Connect(fe.ports.pop3!);
  assert.match(await p.line('USER me@example.org'), /^\+OK/);
  assert.match(await p.line(`PASS ${PASSWORD}`), /^\+OK/);
  assert.match(await p.line('STAT'), /^\+OK \d+ \d+/);
  assert.match(await p.line('QUIT'), /^\+OK/);
  p.close();
}

/** What must never appear in fe's log, whatever a client sends. */
const BAD_LOG = /^error |Uncaught|Unhandled|TypeError|RangeError|ReferenceError|ERR_INTERNAL|heap out of memory|    at /m;

async function fuzzProtocol(name: string, port: number, sessions: string[][], firstOctet: number, normal: () => Promise<void>): Promise<void> {
  const logFrom = fe.log().length;
  const { runs, mutations } = await fuzzFor({ port, sessions, ms: SECONDS * 1000, seed: SEED, concurrency: CONCURRENCY, firstOctet });
  const ctx = `${name}: seed ${SEED}, ${runs} sessions (${JSON.stringify(mutations)})`;
  assert.equal(fe.child.exitCode, null, `fe serve exited: ${ctx}\n${fe.log().slice(logFrom)}`);
  assert.ok(runs > 10, ctx);
  const t0 = Date.now();
  await normal();
  const ms = Date.now() - t0;
  assert.ok(ms < 5000, `a normal ${name} client took ${ms} ms after the fuzzing (${ctx})`);
  const log = fe.log().slice(logFrom);
  assert.ok(!BAD_LOG.test(log), `${ctx}: the log says\n${log.split('\n').filter((l) => BAD_LOG.test(l)).slice(0, 20).join('\n')}`);
  console.log(`# ${ctx}`);
}

test('fuzz: the MX survives mutated SMTP sessions', () => fuzzProtocol('SMTP', fe.ports.mx!, SMTP_SESSIONS, 64, () => normalSmtp('after fuzzing')));
test('fuzz: IMAP survives mutated sessions', () => fuzzProtocol('IMAP', fe.ports.imap!, IMAP_SESSIONS, 128, normalImap));
test('fuzz: POP3 survives mutated sessions', () => fuzzProtocol('POP3', fe.ports.pop3!, POP3_SESSIONS, 192, normalPop3));
