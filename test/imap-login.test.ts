// Logins to a mailbox that is already open: the in-memory verifier (src/auth/verifier.ts) answers
// them without scrypt, yet every attempt still goes through the login throttle, a wrong password
// is refused, and a password changed with `fe alias passwd` meanwhile takes effect at once (the old
// one refused, the new one accepted) over IMAP, POP3 and submission alike.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';

const USER = 'me@example.org';
const FIRST = 'correct horse battery staple';
const SECOND = 'a brand new passphrase here';
// One password check at a time and one waiting: without the verifier most of a burst of logins
// would be told to come back later. Four failures block an address.
const THROTTLE = { concurrency: 1, maxQueued: 1, delayAfter: 3, delayStepMs: 20, maxDelayMs: 100, blockAfter: 4 };

let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let holder: ImapConn; // keeps the mailbox open for the whole file

async function imapLogin(password: string, localAddress = '127.0.0.1'): Promise<{ status: string; text: string; conn: ImapConn }> {
  const conn = await imapConnect(fe.ports.imap!, { localAddress });
  const r = await conn.command(`LOGIN "${USER}" "${password}"`);
  return { status: r.status, text: r.text, conn };
}

function python(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('/usr/bin/python3', ['-c', script, ...args], { timeout: 30_000 }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout.trim()))),
  );
}

// poplib and smtplib print OK or the server's refusal; argv: port user password source-address
const POP = `import poplib, socket, sys
class From(poplib.POP3):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, (sys.argv[4], 0))
p = From('127.0.0.1', int(sys.argv[1]))
try:
    p.user(sys.argv[2]); p.pass_(sys.argv[3]); print('OK'); p.quit()
except poplib.error_proto as e:
    print(e)`;
const SUBMIT = `import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), source_address=(sys.argv[4], 0))
s.ehlo('client.example')
try:
    s.login(sys.argv[2], sys.argv[3]); print('OK')
except smtplib.SMTPAuthenticationError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()`;

before(async () => {
  dns = await startDnsServer({});
  w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nloopback_plaintext_auth: true\nlog_level: warn\n` +
      `listen:\n  mx: 127.0.0.1:0\n  submission: 127.0.0.1:0\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: 127.0.0.1:0\n  pop3s: off\n` +
      `dns:\n  servers: ["${dns.address}"]\nlimits:\n  connections_per_ip: 100\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', USER, '--mailbox', '--password-stdin'], { stdin: `${FIRST}\n` });
  fe = await startServe(w.config, ['--only', 'mx,imap,pop3,submission'], { FE_TEST_LOGIN_THROTTLE: JSON.stringify(THROTTLE) }, ['mx', 'imap', 'pop3', 'submission']);
  const r = await imapLogin(FIRST);
  assert.equal(r.status, 'OK', r.text);
  holder = r.conn;
});

after(async () => {
  holder?.close();
  await fe?.stop();
  await dns?.close();
});

test('twelve logins at once to the open mailbox all succeed though one password check may run and one wait', async () => {
  const tries = await Promise.all(Array.from({ length: 12 }, () => imapLogin(FIRST)));
  try {
    assert.deepEqual(
      tries.map((t) => `${t.status} ${t.text.replace(/^\[CAPABILITY [^\]]*\] /, '')}`),
      Array<string>(12).fill('OK logged in'),
    );
    const sel = await tries[0]!.conn.command('SELECT INBOX');
    assert.equal(sel.status, 'OK', 'a session opened by the verifier works like any other');
  } finally {
    for (const t of tries) t.conn.close();
  }
});

test('a wrong password against the open mailbox is refused (and falls through to the full check)', async () => {
  const r = await imapLogin(FIRST + 'x', '127.0.0.2');
  r.conn.close();
  assert.equal(r.status, 'NO');
  assert.match(r.text, /AUTHENTICATIONFAILED/);
  const nfc = await imapLogin(FIRST.toUpperCase(), '127.0.0.2');
  nfc.conn.close();
  assert.equal(nfc.status, 'NO', 'case matters');
});

test('throttling applies to verifier attempts: once an address is blocked, even the right password is refused', async () => {
  const from = '127.0.0.3';
  for (let i = 0; i < THROTTLE.blockAfter; i++) {
    const r = await imapLogin(`guess ${i}`, from);
    r.conn.close();
    assert.equal(r.status, 'NO');
    assert.match(r.text, /AUTHENTICATIONFAILED/, `guess ${i} is checked and fails`);
  }
  const right = await imapLogin(FIRST, from);
  right.conn.close();
  assert.equal(right.status, 'NO');
  assert.match(right.text, /UNAVAILABLE.*too many failed logins/i, 'the verifier does not bypass the block');
  const elsewhere = await imapLogin(FIRST, '127.0.0.4');
  elsewhere.conn.close();
  assert.equal(elsewhere.status, 'OK', 'another address is not affected');
});

test('POP3 and submission take the open mailbox password, and refuse a wrong one', async () => {
  assert.equal(await python(POP, [String(fe.ports.pop3), USER, FIRST, '127.0.0.7']), 'OK');
  assert.equal(await python(SUBMIT, [String(fe.ports.submission), USER, FIRST, '127.0.0.7']), 'OK');
  assert.match(await python(SUBMIT, [String(fe.ports.submission), USER, 'nope nope nope', '127.0.0.7']), /^535 /);
});

test('fe alias passwd while the mailbox stays open: the old password is refused at once, the new one accepted', async () => {
  await w.ok(['alias', 'passwd', USER, '--password-stdin'], { stdin: `${FIRST}\n${SECOND}\n` });
  const old = await imapLogin(FIRST, '127.0.0.5');
  old.conn.close();
  assert.equal(old.status, 'NO', 'the verifier forgot the old password when the key file changed');
  assert.match(old.text, /AUTHENTICATIONFAILED/);
  assert.match(await python(POP, [String(fe.ports.pop3), USER, FIRST, '127.0.0.8']), /AUTH|Invalid/);
  assert.match(await python(SUBMIT, [String(fe.ports.submission), USER, FIRST, '127.0.0.9']), /^535 /);
  const fresh = await imapLogin(SECOND, '127.0.0.5');
  fresh.conn.close();
  assert.equal(fresh.status, 'OK', fresh.text);
  // the new password is now the remembered one: a burst of logins with it needs no scrypt
  const burst = await Promise.all(Array.from({ length: 8 }, () => imapLogin(SECOND, '127.0.0.6')));
  for (const b of burst) b.conn.close();
  assert.deepEqual(burst.map((b) => b.status), Array<string>(8).fill('OK'));
  assert.equal(await python(POP, [String(fe.ports.pop3), USER, SECOND, '127.0.0.8']), 'OK');
  assert.equal(await python(SUBMIT, [String(fe.ports.submission), USER, SECOND, '127.0.0.9']), 'OK');
  const still = await holder.command('NOOP');
  assert.equal(still.status, 'OK', 'the session that held the mailbox open carries on');
});

test('password checks at once: one per core, at least 2, never the whole libuv pool', async () => {
  const { defaultCheckConcurrency } = await import('../src/auth/throttle.js');
  assert.equal(defaultCheckConcurrency(2, 4), 2);
  assert.equal(defaultCheckConcurrency(1, 4), 2);
  assert.equal(defaultCheckConcurrency(16, 4), 3, 'the pool also serves file I/O');
  assert.equal(defaultCheckConcurrency(16, 32), 16);
});
