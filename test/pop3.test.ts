// POP3 and POP3S as mail clients meet them: a real `fe serve`, mail delivered with swaks through
// the MX (DNS on loopback), read back with Python's poplib, fetchmail, getmail6 and a bare client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { filesUnder, workspace } from './helpers/fe.js';
import { pop3Connect, type Pop3Client } from './helpers/pop3-client.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
const MAILBOXES = ['me', 'uidl', 'dele', 'fm', 'gm', 'lock', 'big', 'pipe'];
// Logins that fail come from their own loopback addresses, so the throttle they trip does not
// slow the other tests (the throttle is per client address).
const THROTTLE = { delayAfter: 2, delayStepMs: 500, maxDelayMs: 1000, blockAfter: 5, blockMs: 600_000 };
const IDLE_MS = 4000;

let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let ports: { mx: number; pop3: number; pop3s: number };
let pyScript: string;

async function deliver(to: string, raw: string | Buffer): Promise<void> {
  const file = path.join(w.dir, `msg-${Date.now()}-${Math.random().toString(36).slice(2)}.eml`);
  // swaks ends DATA with CRLF "." CRLF after the file's text: leave the message's own last CRLF to it.
  const bytes = Buffer.from(raw);
  writeFileSync(file, bytes.subarray(0, bytes.length - (bytes.subarray(-2).toString() === '\r\n' ? 2 : 0)));
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${ports.mx}`, '--from', 'sender@nowhere.example', '--to', `${to}@example.org`, '--data', `@${file}`, '--hide-informational'], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
  assert.match(stdout, /<- {2}250 2\.0\.0 Ok: queued/, 'the MX accepted the message');
}

function message(subject: string, body: string): string {
  return `From: Sender <sender@nowhere.example>\r\nTo: someone@example.org\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@nowhere.example>\r\n\r\n${body}`;
}

type PyResult = Record<string, unknown> | string | unknown[];

/** Python's poplib: logs in (POP3S, or POP3 + STLS) and runs the operations given. */
async function poplib(user: string, ops: unknown[][], mode: 'ssl' | 'stls' = 'ssl', password = PASSWORD): Promise<PyResult[]> {
  const port = mode === 'ssl' ? ports.pop3s : ports.pop3;
  const { stdout } = await run('python3', [pyScript, String(port), mode, `${user}@example.org`, password, JSON.stringify(ops)], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as PyResult[];
}

async function login(user: string, options: { tls?: boolean; localAddress?: string } = { tls: true }): Promise<Pop3Client> {
  const c = await pop3Connect(options.tls === false ? ports.pop3 : ports.pop3s, options);
  assert.match(c.greeting, /^\+OK /);
  assert.match(await c.line(`USER ${user}@example.org`), /^\+OK/);
  assert.match(await c.line(`PASS ${PASSWORD}`), /^\+OK Maildrop has \d+ messages/);
  return c;
}

async function stat(user: string): Promise<number> {
  const c = await login(user);
  const s = await c.line('STAT');
  await c.line('QUIT');
  c.destroy();
  return Number(/^\+OK (\d+) \d+$/.exec(s)![1]);
}

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

function mailboxFingerprint(local: string): string {
  const dir = path.join(w.dataDir, 'mailboxes', 'example.org', local);
  const h = createHash('sha256');
  for (const f of filesUnder(dir).sort()) h.update(f).update(readFileSync(f));
  return h.digest('hex');
}

before(async () => {
  dns = await startDnsServer({});
  w = workspace(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'listen:',
      '  mx: 127.0.0.1:0',
      '  submission: off',
      '  submissions: off',
      '  pop3: 127.0.0.1:0',
      '  pop3s: 127.0.0.1:0',
      '  imaps: off',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'limits:',
      '  message_size: 5000000',
      '  connections_per_ip: 30',
      '  messages_per_ip_per_minute: 1000',
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  for (const m of MAILBOXES) await w.ok(['alias', 'add', `${m}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  pyScript = path.join(w.dir, 'pop.py');
  writeFileSync(
    pyScript,
    [
      'import base64, json, poplib, ssl, sys',
      'port, mode, user, pw, ops = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])',
      'ctx = ssl._create_unverified_context()',
      "if mode == 'ssl':",
      "    p = poplib.POP3_SSL('127.0.0.1', port, context=ctx, timeout=20)",
      'else:',
      "    p = poplib.POP3('127.0.0.1', port, timeout=20)",
      '    p.stls(context=ctx)',
      'def enc(x):',
      "    if isinstance(x, bytes): return x.decode('latin1')",
      '    if isinstance(x, (list, tuple)): return [enc(i) for i in x]',
      '    return x',
      'out = []',
      'try:',
      '    p.user(user)',
      '    p.pass_(pw)',
      'except poplib.error_proto as e:',
      "    print(json.dumps([{'error': enc(e.args[0])}])); sys.exit(0)",
      'for op in ops:',
      '    try:',
      "        if op[0] in ('retr', 'top'):",
      '            r = getattr(p, op[0])(*op[1:])',
      "            out.append({'status': enc(r[0]), 'data': base64.b64encode(b'\\r\\n'.join(r[1]) + b'\\r\\n').decode()})",
      '        else:',
      '            out.append(enc(getattr(p, op[0])(*op[1:])))',
      '    except poplib.error_proto as e:',
      "        out.append({'error': enc(e.args[0])})",
      "    if op[0] == 'quit': break",
      'print(json.dumps(out))',
      '',
    ].join('\n'),
  );
  fe = await startServe(w.config, [], { FE_TEST_LOGIN_THROTTLE: JSON.stringify(THROTTLE), FE_TEST_IDLE_TIMEOUT_MS: String(IDLE_MS) }, ['mx', 'pop3', 'pop3s']);
  ports = { mx: fe.ports.mx!, pop3: fe.ports.pop3!, pop3s: fe.ports.pop3s! };
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

const ROUND_TRIP =
  message('round trip', 'line one\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nthe line above is a lone dot\r\n\r\n') +
  'gr\u00fc\u00dfe 8bit\r\n' +
  'x'.repeat(990) +
  '\r\nlast line\r\n';

test('a message delivered with swaks reads back byte-identical over RETR (poplib, POP3S)', async () => {
  await deliver('me', Buffer.from(ROUND_TRIP, 'utf8'));
  const [list, retr, quit] = await poplib('me', [['list'], ['retr', 1], ['quit']]);
  const got = Buffer.from((retr as { data: string }).data, 'base64');
  const sent = Buffer.from(ROUND_TRIP, 'utf8');
  assert.ok(got.subarray(got.length - sent.length).equals(sent), `the tail is the message as sent:\n${got.toString('latin1').slice(-300)}`);
  const trace = got.subarray(0, got.length - sent.length).toString('latin1');
  assert.match(trace, /^Received: from [^\r\n]+\r\n\tby mail\.example\.org \(fe\)/, 'only our trace headers come before it');
  assert.match(trace, /^Authentication-Results: mail\.example\.org;/m);
  const listed = Number(/^1 (\d+)$/.exec(((list as unknown[])[1] as string[])[0]!)![1]);
  assert.equal(listed, got.length, 'LIST gives the exact size in octets');
  assert.match(quit as string, /^\+OK/);
});

test('TOP sends the header, the empty line and n lines of the body, byte-stuffed', async () => {
  const c = await login('me');
  const top0 = await c.multi('TOP 1 0');
  assert.match(top0.status, /^\+OK/);
  assert.equal(top0.lines.at(-1), '', 'ends with the empty line after the header');
  assert.ok(top0.lines.includes('Subject: round trip'));
  assert.ok(!top0.lines.includes('line one'));
  const top3 = await c.multi('TOP 1 3');
  assert.deepEqual(top3.lines.slice(top0.lines.length), ['line one', '.a line starting with a dot', '..two dots']);
  // On the wire a body line that starts with "." gets one more.
  c.send('TOP 1 4\r\n');
  const status = await c.readLine();
  assert.match(status, /^\+OK/);
  await new Promise((r) => setTimeout(r, 300));
  const wire = c.pending().toString('latin1');
  assert.ok(wire.includes('\r\nline one\r\n..a line starting with a dot\r\n...two dots\r\n..\r\n.\r\n'), wire.slice(-200));
  c.clear();
  assert.match(await c.line('TOP 1'), /^-ERR/, 'TOP needs two arguments');
  assert.match(await c.line('TOP 9 1'), /^-ERR/, 'no such message');
  assert.match(await c.line('QUIT'), /^\+OK/);
  c.destroy();
});

test('UIDL is stable across sessions and after other messages are deleted', async () => {
  for (const n of [1, 2, 3]) await deliver('uidl', message(`uidl ${n}`, `body ${n}\r\n`));
  const first = ((await poplib('uidl', [['uidl'], ['quit']]))[0] as unknown[])[1] as string[];
  const second = ((await poplib('uidl', [['uidl'], ['quit']], 'stls'))[0] as unknown[])[1] as string[];
  assert.equal(first.length, 3);
  assert.deepEqual(second, first, 'the same over POP3 + STLS in a second session');
  const ids = first.map((l) => l.split(' ')[1]!);
  for (const id of ids) assert.match(id, /^\d+\.\d+$/, 'UIDVALIDITY.UID');
  assert.equal(new Set(ids).size, 3);
  const [dele, quit] = await poplib('uidl', [['dele', 1], ['quit']]);
  assert.match(dele as string, /^\+OK/);
  assert.match(quit as string, /^\+OK/);
  const after = ((await poplib('uidl', [['uidl'], ['quit']]))[0] as unknown[])[1] as string[];
  assert.deepEqual(after, [`1 ${ids[1]}`, `2 ${ids[2]}`], 'the others keep their ids under new message numbers');
  const single = await login('uidl');
  assert.equal(await single.line('UIDL 2'), `+OK 2 ${ids[2]}`);
  single.destroy();
});

test('DELE takes effect only at QUIT; RSET undoes it; a dropped connection deletes nothing', async () => {
  for (const n of [1, 2, 3]) await deliver('dele', message(`dele ${n}`, `body ${n}\r\n`));
  let c = await login('dele');
  const ids = (await c.multi('UIDL')).lines;
  assert.equal(ids.length, 3);
  assert.match(await c.line('DELE 1'), /^\+OK/);
  assert.match(await c.line('STAT'), /^\+OK 2 \d+$/, 'STAT leaves out the marked message');
  assert.match(await c.line('RETR 1'), /^-ERR .*deleted/);
  assert.match(await c.line('DELE 1'), /^-ERR .*deleted/);
  assert.match(await c.line('DELE 4'), /^-ERR/);
  assert.deepEqual((await c.multi('LIST')).lines.map((l) => l.split(' ')[0]), ['2', '3']);
  c.destroy(); // no QUIT
  await c.closed;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await stat('dele'), 3, 'nothing deleted without QUIT');

  c = await login('dele');
  assert.match(await c.line('DELE 2'), /^\+OK/);
  assert.match(await c.line('RSET'), /^\+OK/);
  assert.match(await c.line('STAT'), /^\+OK 3 /);
  assert.match(await c.line('QUIT'), /^\+OK .*0 messages deleted/);
  c.destroy();
  assert.equal(await stat('dele'), 3, 'RSET unmarked it');

  c = await login('dele');
  assert.match(await c.line('DELE 2'), /^\+OK/);
  assert.match(await c.line('QUIT'), /^\+OK .*1 message deleted/);
  await c.closed;
  c = await login('dele');
  assert.deepEqual((await c.multi('UIDL')).lines.map((l) => l.split(' ')[1]), [ids[0]!.split(' ')[1], ids[2]!.split(' ')[1]], 'message 2 is gone for good');
  c.destroy();
});

test('plaintext authentication is refused before TLS; STLS then AUTH PLAIN works', async () => {
  const c = await pop3Connect(ports.pop3);
  const capa = await c.multi('CAPA');
  assert.ok(capa.lines.includes('STLS'));
  assert.ok(!capa.lines.includes('USER'), 'USER is not offered in the clear');
  assert.ok(!capa.lines.some((l) => l.startsWith('SASL')), 'nor SASL PLAIN');
  for (const l of ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING']) assert.ok(capa.lines.includes(l), l);
  assert.match(capa.lines.find((l) => l.startsWith('IMPLEMENTATION')) ?? '', /^IMPLEMENTATION fe/);
  assert.match(await c.line('USER me@example.org'), /^-ERR \[AUTH\] /);
  assert.match(await c.line(`PASS ${PASSWORD}`), /^-ERR \[AUTH\] /);
  const plain = Buffer.from(`\0me@example.org\0${PASSWORD}`).toString('base64');
  assert.match(await c.line(`AUTH PLAIN ${plain}`), /^-ERR \[AUTH\] /);
  assert.match(await c.line('APOP me@example.org c4c9334bac560ecc979e58001b3e22fb'), /^-ERR/);
  assert.match(await c.line('STAT'), /^-ERR/, 'no transaction commands before login');

  // What is sent in the clear after STLS is thrown away (no command injection into TLS).
  assert.match(await c.stls('CAPA\r\n'), /^\+OK/);
  const secure = await c.multi('CAPA');
  assert.ok(secure.lines.includes('USER') && secure.lines.includes('SASL PLAIN'), 'both offered under TLS');
  assert.ok(!secure.lines.includes('STLS'));
  assert.equal(c.pending().length, 0, 'the injected CAPA was not answered');
  assert.match(await c.line('STLS'), /^-ERR/, 'no second STLS');
  assert.match(await c.line('AUTH PLAIN'), /^\+ ?$/, 'continuation');
  assert.match(await c.line('*'), /^-ERR/, '"*" cancels');
  assert.match(await c.line('AUTH PLAIN'), /^\+ ?$/);
  assert.match(await c.line('not base64!'), /^-ERR/);
  assert.match(await c.line('AUTH CRAM-MD5'), /^-ERR/);
  assert.match(await c.line('AUTH PLAIN'), /^\+ ?$/);
  assert.match(await c.line(plain), /^\+OK Maildrop has 1 messages/);
  const after = await c.multi('CAPA');
  assert.ok(!after.lines.includes('USER') && !after.lines.includes('STLS'), 'no login capabilities once logged in');
  assert.match(await c.line('QUIT'), /^\+OK/);
  c.destroy();

  // An initial response on the same line, over POP3S.
  const d = await pop3Connect(ports.pop3s, { tls: true });
  assert.match(await d.line(`AUTH PLAIN ${plain}`), /^\+OK/);
  assert.match(await d.line('QUIT'), /^\+OK/);
  d.destroy();
  // poplib sees the refusal too
  const refused = await run('python3', ['-c', `import poplib\np=poplib.POP3('127.0.0.1',${ports.pop3})\ntry:\n  p.user('me@example.org')\nexcept poplib.error_proto as e:\n  print(e)`]);
  assert.match(refused.stdout, /-ERR \[AUTH\]/);
});

test('a wrong password gets -ERR [AUTH] and leaves the mailbox untouched; three strikes close the session', async () => {
  const before = mailboxFingerprint('me');
  const c = await pop3Connect(ports.pop3s, { tls: true, localAddress: '127.0.0.2' });
  assert.match(await c.line('USER me@example.org'), /^\+OK/);
  assert.match(await c.line('PASS not the password'), /^-ERR \[AUTH\] /);
  assert.match(await c.line('USER nobody@example.org'), /^\+OK/, 'unknown users look the same');
  assert.match(await c.line(`PASS ${PASSWORD}`), /^-ERR \[AUTH\] /);
  assert.match(await c.line(`AUTH PLAIN ${Buffer.from(`\0me@example.org\0wrong`).toString('base64')}`), /^-ERR \[AUTH\] /);
  await c.closed;
  assert.equal(mailboxFingerprint('me'), before, 'no file of the mailbox changed');
  assert.doesNotMatch(fe.log(), /not the password/, 'passwords are never logged');
  assert.doesNotMatch(fe.log(), /me@example\.org/, 'addresses are masked');
});

test('repeated failures from one address are slowed, then refused even with the right password', async () => {
  const ip = '127.0.0.3';
  const times: number[] = [];
  for (let i = 0; i < THROTTLE.blockAfter; i++) {
    const c = await pop3Connect(ports.pop3s, { tls: true, localAddress: ip });
    await c.line('USER me@example.org');
    const t0 = Date.now();
    assert.match(await c.line('PASS wrong'), /^-ERR \[AUTH\] /);
    times.push(Date.now() - t0);
    c.destroy();
  }
  assert.ok(times[2]! >= THROTTLE.delayStepMs, `the third failure waited (${times.join(', ')} ms)`);
  assert.ok(times[3]! >= THROTTLE.maxDelayMs, `the fourth waited longer (${times.join(', ')} ms)`);
  const c = await pop3Connect(ports.pop3s, { tls: true, localAddress: ip });
  await c.line('USER me@example.org');
  assert.match(await c.line(`PASS ${PASSWORD}`), /^-ERR \[LOGIN-DELAY\] /, 'blocked');
  await c.closed;
  // other addresses are not affected
  (await login('me')).destroy();
});

test('pipelined commands are answered in order', async () => {
  for (const n of [1, 2]) await deliver('pipe', message(`pipe ${n}`, `body ${n}\r\n`));
  const c = await pop3Connect(ports.pop3s, { tls: true });
  c.send(`CAPA\r\nUSER pipe@example.org\r\nPASS ${PASSWORD}\r\nSTAT\r\nLIST\r\nUIDL\r\nTOP 1 0\r\nNOOP\r\nRETR 2\r\nDELE 1\r\nLIST 1\r\nRSET\r\nQUIT\r\n`);
  assert.match((await c.readMulti()).status, /^\+OK/);
  assert.match(await c.readLine(), /^\+OK/);
  assert.match(await c.readLine(), /^\+OK Maildrop has 2 messages/);
  assert.match(await c.readLine(), /^\+OK 2 \d+$/);
  assert.equal((await c.readMulti()).lines.length, 2);
  assert.equal((await c.readMulti()).lines.length, 2);
  assert.ok((await c.readMulti()).lines.includes('Subject: pipe 1'));
  assert.equal(await c.readLine(), '+OK');
  assert.ok((await c.readMulti()).lines.includes('body 2'));
  assert.match(await c.readLine(), /^\+OK/);
  assert.match(await c.readLine(), /^-ERR/);
  assert.match(await c.readLine(), /^\+OK/);
  assert.match(await c.readLine(), /^\+OK/);
  await c.closed;
  assert.equal(await stat('pipe'), 2);
});

test('an oversized command line is answered -ERR and skipped, and the session goes on', async () => {
  const c = await login('pipe');
  assert.match(await c.line('NOOP ' + 'x'.repeat(10_000)), /^-ERR Line too long/);
  assert.equal(await c.line('NOOP'), '+OK');
  // 4 MB without a line end: never buffered, one -ERR when it is noticed
  const rss0 = rssKb(fe.child.pid!);
  const chunk = Buffer.alloc(256 * 1024, 0x41);
  for (let i = 0; i < 16; i++) c.send(chunk);
  c.send('\r\nSTAT\r\n');
  assert.match(await c.readLine(), /^-ERR Line too long/);
  assert.match(await c.readLine(), /^\+OK 2 /);
  assert.ok(rssKb(fe.child.pid!) - rss0 < 32 * 1024, 'the server did not keep the line');
  assert.match(await c.line('QUIT'), /^\+OK/);
  c.destroy();
});

test('one POP3 session per mailbox: a second login gets -ERR [IN-USE] until the first ends', async () => {
  await deliver('lock', message('lock', 'body\r\n'));
  const a = await login('lock');
  assert.match(await a.line('DELE 1'), /^\+OK/);
  const b = await pop3Connect(ports.pop3);
  assert.match(await b.stls(), /^\+OK/);
  assert.match(await b.line('USER lock@example.org'), /^\+OK/);
  assert.match(await b.line(`PASS ${PASSWORD}`), /^-ERR \[IN-USE\] /, 'POP3 (STLS) and POP3S share the lock');
  assert.match(await a.line('STAT'), /^\+OK 0 0$/, 'the first session is unaffected');
  assert.match(await a.line('QUIT'), /^\+OK .*1 message deleted/);
  await a.closed;
  assert.match(await b.line('USER lock@example.org'), /^\+OK/);
  assert.match(await b.line(`PASS ${PASSWORD}`), /^\+OK Maildrop has 0 messages/, 'free again, and it saw the deletion');
  b.destroy();
});

test('fetchmail (POP3S) downloads and deletes the mail', async () => {
  const marker = `fetchmail-${Date.now()}`;
  await deliver('fm', message('for fetchmail 1', `${marker} one\r\n`));
  await deliver('fm', message('for fetchmail 2', `${marker} two\r\n`));
  const home = path.join(w.dir, 'fetchmail');
  mkdirSync(home, { mode: 0o700 });
  const out = path.join(home, 'mail.txt');
  const rc = path.join(home, 'fetchmailrc');
  writeFileSync(rc, `poll 127.0.0.1 service ${ports.pop3s} protocol POP3 uidl\n  user "fm@example.org" password "${PASSWORD}" is "me" here\n  ssl no sslcertck\n  mda "cat >> ${out}"\n`);
  chmodSync(rc, 0o600);
  const r = await run('fetchmail', ['--nosyslog', '-f', rc, '-v'], { env: { ...process.env, FETCHMAILHOME: home, HOME: home }, timeout: 30_000 }).catch((e: { stdout: string; stderr: string; code: number }) => e);
  const text = readFileSync(out, 'utf8');
  assert.ok(text.includes(`${marker} one`) && text.includes(`${marker} two`), `both messages delivered:\n${r.stdout}\n${r.stderr}`);
  assert.equal(await stat('fm'), 0, 'fetchmail deleted them on the server');
});

test('getmail6 (POP3S) retrieves into a Maildir', async () => {
  const marker = `getmail-${Date.now()}`;
  await deliver('gm', message('for getmail', `${marker}\r\n`));
  // getmail will not deliver as root: then it delivers as nobody, into a folder nobody can write.
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-getmail-'));
  const maildir = path.join(dir, 'Maildir');
  for (const sub of ['new', 'cur', 'tmp']) mkdirSync(path.join(maildir, sub), { recursive: true, mode: 0o777 });
  if (root) for (const d of [dir, maildir, ...['new', 'cur', 'tmp'].map((s) => path.join(maildir, s))]) chmodSync(d, 0o777);
  writeFileSync(
    path.join(dir, 'getmailrc'),
    `[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = ${ports.pop3s}\nusername = gm@example.org\npassword = ${PASSWORD}\n\n[destination]\ntype = Maildir\npath = ${maildir}/\n${root ? 'user = nobody\n' : ''}\n[options]\nread_all = true\ndelete = false\nverbose = 2\n`,
  );
  const r = await run('getmail', ['--getmaildir', dir, '--rcfile', 'getmailrc'], { timeout: 30_000 }).catch((e: { stdout: string; stderr: string }) => e);
  const files = readdirSync(path.join(maildir, 'new'));
  assert.equal(files.length, 1, `one message retrieved:\n${r.stdout}\n${r.stderr}`);
  assert.ok(readFileSync(path.join(maildir, 'new', files[0]!), 'utf8').includes(marker));
  assert.equal(await stat('gm'), 1, 'kept on the server (delete = false)');
});

test('a client that never reads does not make the server buffer, and is dropped when idle', async () => {
  const line = 'y'.repeat(76) + '\r\n';
  await deliver('big', message('big', line.repeat(Math.floor(1_000_000 / line.length))));
  const c = await login('big');
  const size = Number(/^\+OK 1 (\d+)$/.exec(await c.line('STAT'))![1]);
  assert.ok(size > 1_000_000);
  const rss0 = rssKb(fe.child.pid!);
  c.socket().pause();
  c.send('RETR 1\r\n'.repeat(200)); // 200 MB of replies if the server queued them all
  await new Promise((r) => setTimeout(r, 1500));
  const grown = rssKb(fe.child.pid!) - rss0;
  assert.ok(grown < 64 * 1024, `server memory grew by ${grown} kB only`);
  // Nothing moves, so the idle timer fires and the server drops the connection.
  await new Promise((r) => setTimeout(r, IDLE_MS + 500));
  let received = 0;
  c.socket().on('data', (d: Buffer) => (received += d.length));
  c.socket().resume();
  const closed = await Promise.race([c.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))]);
  assert.ok(closed, 'the server closed the connection');
  assert.ok(received + c.pending().length < 20 * size, 'only what fitted in the socket buffers was sent');
  assert.equal(await stat('big'), 1, 'the lock was released and nothing deleted');
});

test('an idle session is logged out after the idle timeout without a response', async () => {
  const c = await login('me');
  const t0 = Date.now();
  await c.closed;
  assert.ok(Date.now() - t0 >= IDLE_MS - 200);
  assert.equal(c.pending().length, 0, 'no response (RFC 1939 autologout)');
});

test('SIGTERM: idle sessions are told and closed, and their marked messages are kept', async () => {
  const c = await login('uidl');
  assert.match(await c.line('DELE 1'), /^\+OK/);
  const exited = fe.stop('SIGTERM');
  assert.match(await c.readLine(), /^-ERR \[SYS\/TEMP\] /);
  assert.equal(await exited, 0);
  fe = await startServe(w.config, [], {}, ['pop3s']);
  ports = { mx: fe.ports.mx!, pop3: fe.ports.pop3!, pop3s: fe.ports.pop3s! };
  assert.equal(await stat('uidl'), 2, 'nothing was deleted');
});
