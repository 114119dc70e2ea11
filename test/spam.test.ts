// The Spam and Phishing layers as a sender and a mailbox owner meet them: one real rspamd
// (Debian's 3.4, normal + controller workers on loopback, a throw-away config dir, Bayes in
// sqlite3 since there is no redis, DNS to the test's loopback resolver) and one real `fe serve`.
// GTUBE goes to Junk or is refused; a display-name spoof and a homograph link get their symbols;
// moving mail into and out of Junk over IMAP trains rspamd; a stopped rspamd is a WARN or a 451.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { phishingSymbols, homograph } from '../src/protection/phishing.js';
import { authSymbols, verdictOf } from '../src/protection/rspamd.js';
import { clientNetwork, greylistLayer } from '../src/protection/greylist.js';
import { dnsblName } from '../src/protection/dnsbl.js';
import type { ScanInput } from '../src/protection/layer.js';
import type { AuthVerdict } from '../src/smtp/auth-check.js';

const PASSWORD = 'spam test password';
// rspamd's test patterns (options.enable_test_patterns): X... rejects, Y... adds a header
const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
const GTUBE_ADD_HEADER = 'YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let rspamd: ChildProcess | null = null;
let normalPort: number;
let controllerPort: number;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A throw-away rspamd config: Debian's rules, but workers, DNS, Bayes and TLD list of its own. */
function writeRspamdConfig(dir: string): void {
  for (const d of ['local.d', 'override.d', 'db', 'run']) mkdirSync(path.join(dir, d), { recursive: true });
  writeFileSync(
    path.join(dir, 'rspamd.conf'),
    `.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging { type = "console"; level = "error"; }
worker "normal" {
  .include "$CONFDIR/worker-normal.inc"
  bind_socket = "127.0.0.1:${normalPort}";
  count = 1;
}
worker "controller" {
  .include "$CONFDIR/worker-controller.inc"
  bind_socket = "127.0.0.1:${controllerPort}";
  count = 1;
}
`,
  );
  // DNS only to the loopback resolver; no hyperscan compile and a short TLD list (the full list
  // costs rspamd ~30 s to compile at start); GTUBE test patterns on
  writeFileSync(
    path.join(dir, 'local.d', 'options.inc'),
    `dns { nameserver = ["${dns.address}"]; timeout = 0.5s; retransmits = 1; }
disable_hyperscan = true;
url_tld = "${path.join(dir, 'tld.dat')}";
enable_test_patterns = true;
`,
  );
  writeFileSync(path.join(dir, 'tld.dat'), 'com\nnet\norg\nexample\ntest\ninvalid\n');
  // redis is not here: rspamd 3.4 still has the sqlite3 Bayes backend; learn from the first message
  writeFileSync(
    path.join(dir, 'local.d', 'classifier-bayes.conf'),
    `backend = "sqlite3";
min_learns = 1;
cache { path = "$DBDIR/learn_cache.sqlite"; }
statfile { symbol = "BAYES_HAM"; spam = false; path = "$DBDIR/bayes.ham.sqlite"; }
statfile { symbol = "BAYES_SPAM"; spam = true; path = "$DBDIR/bayes.spam.sqlite"; }
`,
  );
  // the public fuzzy storage would be a connection off this host
  writeFileSync(path.join(dir, 'override.d', 'fuzzy_check.conf'), 'enabled = false;\n');
}

async function startRspamd(dir: string): Promise<number> {
  const started = Date.now();
  const vars = ['LOCAL_CONFDIR', dir, 'DBDIR', path.join(dir, 'db'), 'RUNDIR', path.join(dir, 'run'), 'LOGDIR', path.join(dir, 'run')];
  const args = ['-f', '-u', 'root', '-g', 'root', '-c', path.join(dir, 'rspamd.conf')];
  for (let i = 0; i < vars.length; i += 2) args.push('--var', `${vars[i]}=${vars[i + 1]}`);
  const child = spawn('rspamd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  rspamd = child;
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`rspamd exited ${code}: ${out.slice(-2000)}`))));
  // rspamd prints nothing when its workers listen: ask the controller (it answers once config is in)
  for (;;) {
    const up = await Promise.race([fetch(`http://127.0.0.1:${normalPort}/ping`).then((r) => r.ok, () => false), exited]);
    if (up && (await fetch(`http://127.0.0.1:${controllerPort}/stat`).then((r) => r.ok, () => false))) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopRspamd(): Promise<void> {
  const c = rspamd;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  });
  rspamd = null;
}

async function learned(): Promise<number> {
  const stat = (await (await fetch(`http://127.0.0.1:${controllerPort}/stat`)).json()) as { learned: number };
  return stat.learned;
}

/**
 * rspamd's learned count once it reaches `want` (or what it is after 10 s). The IMAP reply waits
 * for the learner only a short while (learnWaitMs), so on a loaded machine rspamd may still be
 * learning when the tagged OK arrives.
 */
async function learnedReaches(want: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const n = await learned();
    if (n >= want || Date.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends one message over SMTP; returns the reply to the end of DATA. */
async function send(to: string, message: string, from = 'alice@sender.example'): Promise<string> {
  const s = await smtpConnect(fe.ports.mx!);
  try {
    await s.command('EHLO client.sender.example');
    assert.match(await s.command(`MAIL FROM:<${from}>`), /^250/);
    assert.match(await s.command(`RCPT TO:<${to}>`), /^250/);
    assert.match(await s.command('DATA'), /^354/);
    return await s.raw(message.replace(/\r\n\./g, '\r\n..') + '.\r\n');
  } finally {
    s.close();
  }
}

function message(headers: string[], body: string): string {
  return [...headers, `Message-ID: <${randomBytes(8).toString('hex')}@sender.example>`, 'Date: Wed, 02 Dec 2026 01:00:00 +0000', 'MIME-Version: 1.0', '', body, ''].join('\r\n');
}

async function login(): Promise<ImapConn> {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  assert.equal((await c.command(`LOGIN me@example.org "${PASSWORD}"`)).status, 'OK');
  return c;
}

/** The X-FE-Protection header of the newest message in a folder, and the folder's count. */
async function newest(folder: string): Promise<{ exists: number; header: string }> {
  const c = await login();
  try {
    const sel = await c.command(`EXAMINE ${folder}`);
    const exists = Number(/\* (\d+) EXISTS/.exec(sel.untagged.join('\n'))?.[1] ?? 0);
    if (exists === 0) return { exists, header: '' };
    const f = await c.command(`FETCH ${exists} (BODY.PEEK[HEADER.FIELDS (X-FE-Protection)])`);
    return { exists, header: f.untagged.join('\n') };
  } finally {
    c.close();
  }
}

before(async () => {
  w = workspace('hostname: mail.example.org\ndata_dir: ./data\n');
  const dir = path.join(w.dir, 'rspamd');
  [dns, normalPort, controllerPort] = await Promise.all([startDnsServer({}), freePort(), freePort()]);
  writeRspamdConfig(dir);
  const rspamdUp = startRspamd(dir);
  w.write(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'listen:',
      '  mx: 127.0.0.1:0',
      '  submission: off',
      '  submissions: off',
      '  imaps: 127.0.0.1:0',
      '  pop3s: off',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'limits:',
      '  messages_per_ip_per_minute: 1000',
      'protection:',
      '  timeout: 10s',
      '  executables: off',
      '  viruses: off',
      `  spam: {rspamd: "http://127.0.0.1:${normalPort}", controller: "http://127.0.0.1:${controllerPort}", fail: open}`,
      '  phishing: on',
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  // rspamd starts while fe does; its start time is what this file costs beyond fe's
  const [ms, daemon] = await Promise.all([rspamdUp, startServe(w.config, ['--only', 'mx,imaps'], {}, ['mx', 'imaps'])]);
  fe = daemon;
  console.log(`# rspamd answered after ${ms} ms`);
});

after(async () => {
  await fe?.stop();
  await stopRspamd();
  await dns?.close();
});

test('GTUBE at rspamd\'s add-header level goes to Junk with its symbol; at the reject level it is refused with 550', async () => {
  const junkBefore = (await newest('Junk')).exists;
  const reply = await send('me@example.org', message(['From: Alice <alice@sender.example>', 'To: me@example.org', 'Subject: offer'], `Hello,\r\n${GTUBE_ADD_HEADER}\r\n`));
  assert.match(reply, /^250 /);
  const junk = await newest('Junk');
  assert.equal(junk.exists, junkBefore + 1, 'filed into Junk');
  assert.match(junk.header, /spam=junk score=6 \(GTUBE/);
  const inboxBefore = (await newest('INBOX')).exists;
  const refused = await send('me@example.org', message(['From: Alice <alice@sender.example>', 'To: me@example.org', 'Subject: offer'], `Hello,\r\n${GTUBE}\r\n`));
  assert.match(refused, /^550 5\.7\.1 /);
  assert.equal((await newest('INBOX')).exists, inboxBefore);
  assert.equal((await newest('Junk')).exists, junkBefore + 1, 'nothing stored');
  await fe.waitForLog(/protection id=\w+ from=a\*\*\*@sender\.example action=reject layers="[^"]*spam=reject\(GTUBE\)/, 5000);
});

test('an ordinary message is accepted into INBOX with rspamd\'s score, fe\'s SPF/DKIM/DMARC results passed as symbols', async () => {
  const before = (await newest('INBOX')).exists;
  const reply = await send('me@example.org', message(['From: Alice <alice@sender.example>', 'To: me@example.org', 'Subject: lunch'], 'Shall we meet for lunch on Thursday at the usual place near the station?\r\nAlice'));
  assert.match(reply, /^250 /);
  const inbox = await newest('INBOX');
  assert.equal(inbox.exists, before + 1);
  assert.match(inbox.header, /spam=accept score=-?\d/);
  // sender.example has no SPF record at the test resolver: fe says none, rspamd hears R_SPF_NA
  assert.match(inbox.header, /R_SPF_NA/);
  assert.match(inbox.header, /phishing=accept score=0/);
});

test('a display-name spoof of the recipient and a homograph link get their symbols in X-FE-Protection', async () => {
  const spoof = await send('me@example.org', message(['From: "me@example.org" <billing@sender.example>', 'To: me@example.org', 'Subject: your mailbox is full'], 'Your mailbox is over quota; log in again to keep receiving mail.'));
  assert.match(spoof, /^250 /);
  let junk = await newest('Junk');
  assert.match(junk.header, /phishing=junk score=6 \(FE_DN_SPOOF_RCPT\)/);
  // the link shows paypal.com; its href is a punycode name mixing Cyrillic and Latin
  const html = '<html><body><p>Please confirm your account:</p><p><a href="https://xn--pypal-4ve.com/login">https://www.paypal.com/login</a></p></body></html>';
  const link = await send('me@example.org', message(['From: Service <service@sender.example>', 'To: me@example.org', 'Subject: confirm', 'Content-Type: text/html; charset=utf-8'], html));
  assert.match(link, /^250 /);
  junk = await newest('Junk');
  assert.match(junk.header, /phishing=junk score=9 \(FE_HOMOGRAPH_LINK_MIXED, FE_LINK_TEXT_MISMATCH\)/);
});

test('moving or copying into Junk over IMAP trains rspamd as spam, out of Junk as ham', async () => {
  const text = (n: number) => `Dear customer number ${n}, our warehouse has excess stock of premium office chairs, desks and lamps at clearance prices; reply today to reserve yours before the weekend.`;
  for (const n of [1, 2]) assert.match(await send('me@example.org', message(['From: Shop <shop@sender.example>', 'To: me@example.org', `Subject: clearance ${n}`], text(n))), /^250 /);
  const c = await login();
  try {
    const sel = await c.command('SELECT INBOX');
    const exists = Number(/\* (\d+) EXISTS/.exec(sel.untagged.join('\n'))![1]);
    const start = await learned();
    assert.equal((await c.command(`MOVE ${exists} Junk`)).status, 'OK');
    assert.equal(await learnedReaches(start + 1), start + 1, 'MOVE into Junk: learn_spam');
    const uid = Number(/UID (\d+)/.exec((await c.command(`FETCH ${exists - 1} (UID)`)).untagged.join('\n'))![1]);
    assert.equal((await c.command(`UID COPY ${uid} Junk`)).status, 'OK');
    assert.equal(await learnedReaches(start + 2), start + 2, 'UID COPY into Junk: learn_spam');
    assert.equal((await c.command('SELECT Junk')).status, 'OK');
    assert.equal((await c.command('UID MOVE 1:* INBOX')).status, 'OK');
    assert.ok((await learnedReaches(start + 3)) >= start + 3, 'out of Junk: learn_ham');
  } finally {
    c.close();
  }
  await fe.waitForLog(/info fe\/spam: spam learned kind=spam learned=1/, 5000); // the log line comes through fe's stderr pipe, maybe after the reply
  await fe.waitForLog(/info fe\/spam: spam learned kind=ham/, 5000); // the log line comes through fe's stderr pipe, maybe after the reply
  assert.doesNotMatch(fe.log(), /spam learning failed/);
});

/** Rewrites the protection block's extra lines and waits for fe to reload. */
async function reconfigure(extra: string[]): Promise<void> {
  const text = w.read().replace(/\n {2}(greylist|dnsbl):.*(?=\n)/g, '');
  w.write(text.replace('  phishing: on\n', ['  phishing: on', ...extra, ''].join('\n')));
  await reload();
}

/** SIGHUP, and wait for this reload's log line (not an earlier one's). */
async function reload(): Promise<void> {
  const seen = (fe.log().match(/configuration reloaded/g) ?? []).length;
  fe.signal('SIGHUP');
  await fe.waitForLog(new RegExp(`(configuration reloaded[\\s\\S]*){${seen + 1}}`));
}

test('greylisting defers an unknown triplet with 451 and keeps only hashes; a listed client IP is refused, a silent blocklist is a WARN', async () => {
  await reconfigure(['  greylist: {enabled: on, delay: 5m}']);
  const mail = message(['From: Carol <carol@sender.example>', 'To: me@example.org', 'Subject: hello'], 'First contact.');
  assert.match(await send('me@example.org', mail, 'carol@sender.example'), /^451 4\.7\.1 Greylisted: please try again in 300 seconds/);
  assert.match(await send('me@example.org', mail, 'carol@sender.example'), /^451 4\.7\.1 Greylisted: please try again in (300|29\d) seconds/, 'a retry too soon waits on');
  const state = path.join(w.dataDir, 'protection', 'greylist.json');
  assert.equal(statSync(state).mode & 0o777, 0o600);
  assert.doesNotMatch(readFileSync(state, 'utf8'), /carol|sender\.example|127\.0\.0/, 'hashes, not addresses');
  // the client is 127.0.0.1: listed as 127.0.0.2 under bl.test (RFC 5782), not under clean.test
  dns.set('1.0.0.127.bl.test', { A: ['127.0.0.2'] });
  await reconfigure(['  dnsbl: {zones: [clean.test, bl.test]}']);
  assert.match(await send('me@example.org', mail), /^554 5\.7\.1 Client address is listed by bl\.test/);
  dns.set('1.0.0.127.bl.test', undefined);
  dns.setServfail('1.0.0.127.clean.test', true);
  assert.match(await send('me@example.org', mail), /^250 /, 'fail: open');
  await fe.waitForLog(/warn fe\/mx: protection layer could not run id=\w+ layer=dnsbl action=skipped reason="clean\.test: /, 5000);
  dns.setServfail('1.0.0.127.clean.test', false);
  await reconfigure([]);
});

test('rspamd stopped: fail open delivers with a WARN; fail closed answers 451', async () => {
  await stopRspamd();
  const before = (await newest('INBOX')).exists;
  const reply = await send('me@example.org', message(['From: Alice <alice@sender.example>', 'To: me@example.org', 'Subject: while rspamd is down'], 'Nothing to see.'));
  assert.match(reply, /^250 /);
  const inbox = await newest('INBOX');
  assert.equal(inbox.exists, before + 1);
  assert.match(inbox.header, /spam=skipped/);
  await fe.waitForLog(/warn fe\/mx: protection layer could not run id=\w+ layer=spam action=skipped reason="rspamd not listening at 127\.0\.0\.1:\d+"/, 5000);
  // the learner says so too, and the move still succeeds
  const c = await login();
  try {
    await c.command('SELECT INBOX');
    assert.equal((await c.command(`MOVE ${inbox.exists} Junk`)).status, 'OK');
  } finally {
    c.close();
  }
  await fe.waitForLog(/warn fe\/spam: spam learning failed kind=spam reason="rspamd not listening/, 5000); // the log line comes through fe's stderr pipe, maybe after the reply
  w.write(w.read().replace('fail: open}', 'fail: closed}'));
  await reload();
  const deferred = await send('me@example.org', message(['From: Alice <alice@sender.example>', 'To: me@example.org', 'Subject: later'], 'Nothing to see.'));
  assert.match(deferred, /^451 4\.7\.0 /);
});

// ---- the pieces, without daemons ---------------------------------------------------------------

function input(raw: string, rcpt = 'me@example.org'): ScanInput {
  const auth = { action: 'accept', authenticationResults: '', receivedSpf: '', spf: { result: 'none', domain: 'x' }, dkim: [], dmarc: { result: 'none' }, arc: { result: 'none', instance: 0, authResults: '' } } as AuthVerdict;
  return { raw: Buffer.from(raw.replace(/\r?\n/g, '\r\n')), clientIp: '192.0.2.1', helo: 'x', mailFrom: 'a@sender.example', rcptTo: [rcpt], auth, hostname: 'mail.example.org', ownDomains: ['example.org'] };
}

test('phishing: display names, homographs and link text, and what stays clean', () => {
  const sym = (headers: string, body = 'hi', type = 'text/plain') => phishingSymbols(input(`${headers}\nContent-Type: ${type}; charset=utf-8\n\n${body}\n`));
  assert.deepEqual(sym('From: "Alice Smith" <alice@sender.example>'), []);
  assert.deepEqual(sym('From: alice@sender.example <alice@sender.example>'), [], 'the real address as its own name');
  assert.deepEqual(sym('From: "Example.org Security Team" <alerts@sender.example>'), ['FE_DN_SPOOF_OWN_DOMAIN']);
  assert.deepEqual(sym('From: "=?utf-8?q?me=40example=2Eorg?=" <x@sender.example>'), ['FE_DN_SPOOF_RCPT'], 'RFC 2047 does not hide it');
  assert.deepEqual(sym('From: "Bob (bob@elsewhere.example) via List" <list@lists.sender.example>'), ['FE_DN_SPOOF_ADDRESS'], 'a list rewriting From: mild');
  assert.deepEqual(sym('From: "Mail" <ops@mail.sender.example>', 'see https://www.sender.example/x'), [], 'subdomains of the same site');
  // From domains: mixed scripts, a whole-script look-alike, and one imitating fe's own domain
  assert.deepEqual(sym('From: <billing@xn--pypal-4ve.com>'), ['FE_HOMOGRAPH_FROM_MIXED']);
  assert.deepEqual(sym('From: <ceo@аррӏе.com>'), ['FE_HOMOGRAPH_FROM_CONFUSABLE']);
  assert.deepEqual(sym('From: <it@еxample.org>'), ['FE_HOMOGRAPH_FROM_MIXED', 'FE_HOMOGRAPH_OWN_DOMAIN']);
  assert.deepEqual(sym('From: <info@bücher.example>'), [], 'an IDN in one script is fine');
  assert.deepEqual(sym('From: <info@пример.example>'), [], 'Cyrillic that does not pass for Latin is fine');
  assert.deepEqual(sym('From: <a@sender.example>', '<a href="https://sender.example/news">Read more</a> <a href="http://www.sender.example/">sender.example</a>', 'text/html'), []);
  assert.deepEqual(sym('From: <a@sender.example>', '<a href="https://evil.example/x">bank.example</a>', 'text/html'), ['FE_LINK_TEXT_MISMATCH']);
  assert.deepEqual(sym('From: <a@sender.example>', '<A HREF=\'https://evil.example/x\'><b>https://bank.example</b></A>', 'text/html'), ['FE_LINK_TEXT_MISMATCH'], 'markup inside the link text');
  assert.deepEqual(sym('From: <a@sender.example>', 'log in at https://xn--80ak6aa92e.com/'), ['FE_HOMOGRAPH_LINK_CONFUSABLE'], 'plain-text links too');
  assert.equal(homograph('example.org'), null);
});

test('rspamd: actions map to verdicts, fe\'s thresholds win where set; auth results become rspamd symbols', () => {
  const r = (action: string, score = 5) => ({ action, score, symbols: { A: { score: 1 }, B: { score: -3 } } });
  assert.equal(verdictOf(r('reject'), { url: '' }).action, 'reject');
  assert.equal(verdictOf(r('reject'), { url: '' }).code, 550);
  assert.equal(verdictOf(r('add header'), { url: '' }).action, 'junk');
  assert.equal(verdictOf(r('rewrite subject'), { url: '' }).action, 'junk');
  assert.equal(verdictOf(r('greylist'), { url: '' }).action, 'accept');
  assert.equal(verdictOf(r('soft reject'), { url: '', soft: 'defer' }).code, 451);
  assert.equal(verdictOf(r('no action'), { url: '' }).action, 'accept');
  assert.deepEqual(verdictOf(r('no action'), { url: '' }).symbols, ['B', 'A'], 'strongest first');
  assert.equal(verdictOf(r('reject', 9), { url: '', rejectScore: 20, junkScore: 8 }).action, 'junk');
  assert.equal(verdictOf(r('no action', 21), { url: '', rejectScore: 20 }).action, 'reject');
  const auth = { spf: { result: 'pass', domain: 'd' }, dkim: [{ result: 'fail', domain: 'd', selector: 's', aligned: true }], dmarc: { result: 'fail', policy: 'reject' }, arc: { result: 'none', instance: 0, authResults: '' } } as unknown as AuthVerdict;
  assert.deepEqual(authSymbols(auth), ['R_SPF_ALLOW', 'R_DKIM_REJECT', 'DMARC_POLICY_REJECT', 'ARC_NA']);
});

test('greylist: a retry after the delay passes and the triplet stays known; DMARC pass skips it; networks and DNSBL names', async () => {
  let now = Date.parse('2026-12-02T00:00:00Z');
  const layer = greylistLayer({ dataDir: w.dir, delaySeconds: 300, now: () => now });
  const at = (ip: string, from = 'a@sender.example') => layer.scan({ ...input('x'), clientIp: ip, mailFrom: from }, AbortSignal.timeout(1000));
  assert.equal((await at('192.0.2.10')).action, 'defer');
  now += 299_000;
  assert.equal((await at('192.0.2.77')).reply, '4.7.1 Greylisted: please try again in 1 seconds', 'same /24, same triplet');
  now += 1000;
  assert.equal((await at('192.0.2.10')).action, 'accept', 'retried after 5 minutes');
  now += 10 * 86400_000;
  assert.equal((await at('192.0.2.10')).action, 'accept', 'known');
  assert.equal((await at('198.51.100.1')).action, 'defer', 'another network is another triplet');
  const dmarc = { ...input('x'), clientIp: '203.0.113.5' };
  dmarc.auth = { ...dmarc.auth, dmarc: { result: 'pass' } };
  assert.equal((await layer.scan(dmarc, AbortSignal.timeout(1000))).action, 'accept');
  assert.equal(clientNetwork('2001:db8:1:2:3::4'), '2001:0db8:0001:0002::/64');
  assert.equal(clientNetwork('::ffff:192.0.2.1'), '192.0.2.0/24');
  assert.equal(dnsblName('192.0.2.99', 'zen.example'), '99.2.0.192.zen.example');
  assert.equal(dnsblName('2001:db8::1', 'bl.example'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example');
});
