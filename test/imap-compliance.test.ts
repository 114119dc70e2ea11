// RFC 3501 / RFC 7162 points a compliance tester checks, against a real `fe serve`: \Recent,
// keywords in FLAGS and PERMANENTFLAGS, CONDSTORE enabling and reporting, COPY/MOVE into the
// selected mailbox, CREATE/DELETE/LIST details, SENT* dates, modified UTF-7 names, BODY[n] of
// binary parts, ENVELOPE source routes, SEARCH details, and the per-address connection limit.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';

const PASSWORD = 'compliance password';
const USERS = ['recent', 'kw', 'cs', 'copy', 'boxes', 'dates', 'utf7', 'bin', 'env', 'srch', 'conn'];
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;

// Connections a test opened, closed after it even when it fails: the per-address limit (4) must
// not leak into the next test.
const opened: ImapConn[] = [];

async function connect(): Promise<ImapConn> {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  opened.push(c);
  return c;
}

async function login(user: string): Promise<ImapConn> {
  const c = await connect();
  const r = await c.command(`LOGIN ${user}@example.org "${PASSWORD}"`);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

function message(subject: string, extraHeaders = '', body = 'plain body\r\n'): Buffer {
  return Buffer.from(`From: a@sender.example\r\nTo: x@example.org\r\nSubject: ${subject}\r\n${extraHeaders}\r\n${body}`);
}

async function append(c: ImapConn, folder: string, msg: Buffer, flags = ''): Promise<number> {
  const lit = msg.includes(0) ? '~' : ''; // NUL only in literal8 (RFC 3516)
  const r = await c.command(Buffer.concat([Buffer.from(`APPEND ${folder} ${flags ? `(${flags}) ` : ''}${lit}{${msg.length}+}\r\n`), msg]));
  assert.equal(r.status, 'OK', r.text);
  return Number(/APPENDUID \d+ (\d+)/.exec(r.text)![1]);
}

const run = promisify(execFile);

/** Runs a Python imaplib script (a real client) and returns what it prints. */
async function python(script: string): Promise<string> {
  const file = path.join(w.dir, `client-${Date.now()}-${Math.random()}.py`);
  writeFileSync(file, script);
  const { stdout } = await run('/usr/bin/python3', [file], { timeout: 120_000 });
  return stdout;
}

const find = (lines: string[], re: RegExp): string | undefined => lines.find((l) => re.test(l));

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlimits:\n  imap_connections_per_ip: 4\nlisten:\n  mx: off\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  for (const user of USERS) await w.ok(['alias', 'add', `${user}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['imap', 'imaps']);
});

afterEach(async () => {
  const all = opened.splice(0);
  for (const c of all) c.close();
  await Promise.all(all.map((c) => c.closed));
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('\\Recent: new mail is recent in exactly one session; APPEND and COPY count; STATUS RECENT and SEARCH NEW/RECENT/OLD agree', async () => {
  const a = await login('recent');
  await a.command('CREATE R');
  await append(a, 'R', message('one'));
  await append(a, 'R', message('two'), '\\Seen');
  const st = await a.command('STATUS R (MESSAGES RECENT)');
  assert.equal(st.untagged[0], '* STATUS R (MESSAGES 2 RECENT 2)', 'both are new to everyone');

  // EXAMINE sees them recent without taking that away from the next SELECT
  const ex = await a.command('EXAMINE R');
  assert.ok(ex.untagged.includes('* 2 RECENT'), ex.untagged.join('\n'));
  const sel = await a.command('SELECT R');
  assert.ok(sel.untagged.includes('* 2 RECENT'), sel.untagged.join('\n'));
  assert.equal(find((await a.command('SEARCH RECENT')).untagged, /^\* SEARCH/), '* SEARCH 1 2');
  assert.equal(find((await a.command('SEARCH NEW')).untagged, /^\* SEARCH/), '* SEARCH 1', 'NEW is RECENT UNSEEN');
  assert.equal(find((await a.command('SEARCH OLD')).untagged, /^\* SEARCH/), '* SEARCH');
  const fl = await a.command('FETCH 1 (FLAGS)');
  assert.equal(fl.untagged[0], '* 1 FETCH (FLAGS (\\Recent))');

  // a second session selecting now: nothing is recent for it
  const b = await login('recent');
  const selB = await b.command('SELECT R');
  assert.ok(selB.untagged.includes('* 0 RECENT'), selB.untagged.join('\n'));
  assert.equal(find((await b.command('SEARCH OLD')).untagged, /^\* SEARCH/), '* SEARCH 1 2');
  assert.equal((await b.command('FETCH 1 (FLAGS)')).untagged[0], '* 1 FETCH (FLAGS ())');

  // b appends: the first session told of it (b itself, at its APPEND) has it recent, a does not
  const ap = await b.command(Buffer.concat([Buffer.from(`APPEND R {${message('three').length}+}\r\n`), message('three')]));
  assert.equal(ap.status, 'OK');
  assert.ok(ap.untagged.includes('* 3 EXISTS') && ap.untagged.includes('* 1 RECENT'), ap.untagged.join('\n'));
  const noopA = await a.command('NOOP');
  assert.ok(noopA.untagged.includes('* 3 EXISTS') && noopA.untagged.includes('* 2 RECENT'), noopA.untagged.join('\n'));
  assert.equal(find((await b.command('SEARCH RECENT')).untagged, /^\* SEARCH/), '* SEARCH 3');
  assert.equal(find((await a.command('SEARCH RECENT')).untagged, /^\* SEARCH/), '* SEARCH 1 2');

  // COPY into another folder: recent there for whoever sees it first
  await a.command('CREATE R2');
  assert.equal((await a.command('COPY 1:3 R2')).status, 'OK');
  assert.equal((await a.command('STATUS R2 (RECENT)')).untagged[0], '* STATUS R2 (RECENT 3)');
  const selR2 = await b.command('SELECT R2');
  assert.ok(selR2.untagged.includes('* 3 RECENT'), selR2.untagged.join('\n'));
  assert.equal((await a.command('STATUS R2 (RECENT)')).untagged[0], '* STATUS R2 (RECENT 0)', 'b took them');
  // expunged messages stop counting
  await b.command('STORE 1 +FLAGS.SILENT (\\Deleted)');
  const exp = await b.command('EXPUNGE');
  assert.ok(exp.untagged.includes('* 1 EXPUNGE'));
  assert.equal((await b.command('STATUS R2 (RECENT)')).untagged[0], '* STATUS R2 (RECENT 2)');
  a.close();
  b.close();
});

test('FLAGS and PERMANENTFLAGS list the keywords in use; a new keyword brings a new FLAGS first', async () => {
  const a = await login('kw');
  await a.command('CREATE K');
  await append(a, 'K', message('k1'), '$Forwarded Work');
  await append(a, 'K', message('k2'));
  const sel = await a.command('SELECT K');
  assert.ok(sel.untagged.includes('* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded Work)'), sel.untagged.join('\n'));
  assert.ok(sel.untagged.includes('* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded Work \\*)] flags allowed'), sel.untagged.join('\n'));

  const st = await a.command('STORE 2 +FLAGS (Urgent)');
  const iFlags = st.untagged.findIndex((l) => l.startsWith('* FLAGS ('));
  const iFetch = st.untagged.findIndex((l) => / FETCH /.test(l));
  assert.ok(iFlags >= 0 && iFlags < iFetch, st.untagged.join('\n'));
  assert.match(st.untagged[iFlags]!, / Urgent\)$/);
  assert.ok(st.untagged.some((l) => /^\* OK \[PERMANENTFLAGS \(.* Urgent \\\*\)\]/.test(l)), st.untagged.join('\n'));

  // another session's new keyword reaches this one the same way
  const b = await login('kw');
  await b.command('SELECT K');
  assert.equal((await b.command('STORE 1 +FLAGS.SILENT (Later)')).status, 'OK');
  const noop = await a.command('NOOP');
  const j = noop.untagged.findIndex((l) => l.startsWith('* FLAGS (') && l.includes('Later'));
  const k = noop.untagged.findIndex((l) => /^\* 1 FETCH .*Later/.test(l));
  assert.ok(j >= 0 && j < k, noop.untagged.join('\n'));
  // a keyword the client already knows does not repeat FLAGS
  const again = await a.command('STORE 2 +FLAGS (Work)');
  assert.ok(!again.untagged.some((l) => l.startsWith('* FLAGS')), again.untagged.join('\n'));
  // NIL is an atom, so a keyword (RFC 3501 flag-keyword = atom)
  const nil = await a.command('STORE 1 +FLAGS NIL');
  assert.equal(nil.status, 'OK', nil.text);
  assert.ok(nil.untagged.some((l) => /^\* 1 FETCH \(FLAGS \(.*NIL.*\)\)$/.test(l)), nil.untagged.join('\n'));
  a.close();
  b.close();
});

test('CONDSTORE: FETCH MODSEQ enables it; STORE reports unchanged messages; a change undone elsewhere is still told; ESEARCH MIN/MAX carry their own MODSEQ', async () => {
  const a = await login('cs');
  await a.command('CREATE C');
  for (let i = 1; i <= 3; i++) await append(a, 'C', message(`c${i}`));
  await a.command('SELECT C');
  const f = await a.command('FETCH 1 (MODSEQ)');
  assert.equal(f.status, 'OK');
  assert.ok(f.untagged.some((l) => /^\* OK \[HIGHESTMODSEQ \d+\]/.test(l)), 'the enabling command tells HIGHESTMODSEQ');
  assert.match(find(f.untagged, / FETCH /)!, /^\* 1 FETCH \(MODSEQ \(\d+\)\)$/);
  // CONDSTORE is now on: a plain FLAGS fetch... and STORE responses carry MODSEQ
  const st = await a.command('STORE 1 +FLAGS (\\Flagged)');
  assert.match(st.untagged.find((l) => / FETCH /.test(l))!, /^\* 1 FETCH \(UID 1 MODSEQ \(\d+\) FLAGS \(\\Flagged \\Recent\)\)$/);
  // STORE that changes nothing still answers with the flags
  const same = await a.command('STORE 1:2 +FLAGS (\\Flagged)');
  const fetches = same.untagged.filter((l) => / FETCH /.test(l));
  assert.equal(fetches.length, 2, same.untagged.join('\n'));

  // another session sets and clears a flag: flags are as before, MODSEQ moved, the client is told
  const before = Number(/MODSEQ \((\d+)\)/.exec(find((await a.command('FETCH 3 (MODSEQ)')).untagged, / FETCH /)!)![1]);
  const b = await login('cs');
  await b.command('SELECT C');
  await b.command('STORE 3 +FLAGS.SILENT (\\Seen)');
  await b.command('STORE 3 -FLAGS.SILENT (\\Seen)');
  const noop = await a.command('NOOP');
  const told = find(noop.untagged, /^\* 3 FETCH/);
  assert.ok(told, noop.untagged.join('\n'));
  assert.ok(Number(/MODSEQ \((\d+)\)/.exec(told)![1]) > before);
  // and not again at the next NOOP
  assert.ok(!(await a.command('NOOP')).untagged.some((l) => / FETCH /.test(l)));

  // ESEARCH: MIN/MAX with a MODSEQ key report the MODSEQ of the message returned
  const modseqs = new Map((await a.command('FETCH 1:3 (MODSEQ)')).untagged.filter((l) => / FETCH /.test(l)).map((l) => [Number(/^\* (\d+)/.exec(l)![1]), Number(/MODSEQ \((\d+)\)/.exec(l)![1])]));
  const min = await a.command('SEARCH RETURN (MIN) MODSEQ 1');
  assert.match(find(min.untagged, /ESEARCH/)!, new RegExp(`\\) MIN 1 MODSEQ ${modseqs.get(1)}$`));
  assert.ok(modseqs.get(1) !== Math.max(...modseqs.values()), 'message 1 is not the one changed last');
  const all = await a.command('SEARCH RETURN (MIN COUNT) MODSEQ 1');
  assert.match(find(all.untagged, /ESEARCH/)!, new RegExp(`MIN 1 COUNT 3 MODSEQ ${Math.max(...modseqs.values())}$`));
  a.close();
  b.close();
});

test('COPY and MOVE into the selected mailbox: the session hears EXISTS for the copies', async () => {
  const a = await login('copy');
  await a.command('CREATE M');
  await append(a, 'M', message('m1'));
  await append(a, 'M', message('m2'));
  await a.command('SELECT M');
  const cp = await a.command('COPY 1 M');
  assert.equal(cp.status, 'OK', cp.text);
  assert.ok(cp.untagged.includes('* 3 EXISTS'), cp.untagged.join('\n'));
  const mv = await a.command('MOVE 2 M');
  assert.equal(mv.status, 'OK', mv.text);
  assert.ok(mv.untagged.includes('* 2 EXPUNGE') && mv.untagged.includes('* 3 EXISTS'), mv.untagged.join('\n'));
  const uids = find((await a.command('UID SEARCH ALL')).untagged, /^\* SEARCH/);
  assert.equal(uids, '* SEARCH 1 3 4');
  const subjects = (await a.command('FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])')).untagged.map((l) => /Subject: (\w+)/.exec(l)?.[1]);
  assert.deepEqual(subjects, ['m1', 'm1', 'm2']);
  a.close();
});

test('CREATE with a trailing separator; subscriptions outlive DELETE (\\NonExistent); LIST options checked; RECURSIVEMATCH gives CHILDINFO', async () => {
  const a = await login('boxes');
  const cr = await a.command('CREATE Projects/');
  assert.equal(cr.status, 'OK', cr.text);
  assert.deepEqual((await a.command('LIST "" Projects')).untagged, ['* LIST (\\HasNoChildren) "/" Projects']);
  assert.deepEqual((await a.command('LSUB "" Projects')).untagged, [], 'CREATE does not subscribe');

  assert.equal((await a.command('SUBSCRIBE Projects')).status, 'OK');
  assert.equal((await a.command('DELETE Projects')).status, 'OK');
  assert.deepEqual((await a.command('LIST "" Projects')).untagged, []);
  assert.deepEqual((await a.command('LIST (SUBSCRIBED) "" Projects')).untagged, ['* LIST (\\NonExistent \\Subscribed) "/" Projects']);
  assert.deepEqual((await a.command('LSUB "" Projects')).untagged, ['* LSUB (\\Noselect) "/" Projects']);
  assert.equal((await a.command('UNSUBSCRIBE Projects')).status, 'OK', 'a gone folder can be unsubscribed');
  assert.deepEqual((await a.command('LSUB "" Projects')).untagged, []);

  for (const bad of ['LIST (BOGUS) "" "*"', 'LIST "" "*" RETURN (BOGUS)', 'LIST (RECURSIVEMATCH) "" "*"']) assert.equal((await a.command(bad)).status, 'BAD', bad);

  assert.equal((await a.command('CREATE Fruit/Apple')).status, 'OK');
  assert.equal((await a.command('SUBSCRIBE Fruit/Apple')).status, 'OK');
  const rec = await a.command('LIST (SUBSCRIBED RECURSIVEMATCH) "" "F%"');
  assert.deepEqual(rec.untagged, ['* LIST (\\HasChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))']);
  const plain = await a.command('LIST (SUBSCRIBED) "" "F%"');
  assert.deepEqual(plain.untagged, [], 'without RECURSIVEMATCH the unsubscribed parent is not listed');
  a.close();
});

test('SENTBEFORE/SENTON/SENTSINCE use the date the Date header names, not its UTC day', async () => {
  const a = await login('dates');
  await a.command('CREATE D');
  // 23:30 at -0700 is already 2 July in UTC; the header says 1 July
  await append(a, 'D', message('late', 'Date: Mon, 1 Jul 2024 23:30:00 -0700\r\n'));
  await append(a, 'D', message('early', 'Date: Tue, 2 Jul 2024 00:30:00 +0200\r\n')); // 1 July in UTC
  await a.command('SELECT D');
  const hits = async (q: string) => find((await a.command(`SEARCH ${q}`)).untagged, /^\* SEARCH/);
  assert.equal(await hits('SENTON 1-Jul-2024'), '* SEARCH 1');
  assert.equal(await hits('SENTON 2-Jul-2024'), '* SEARCH 2');
  assert.equal(await hits('SENTBEFORE 2-Jul-2024'), '* SEARCH 1');
  assert.equal(await hits('SENTSINCE 2-Jul-2024'), '* SEARCH 2');
  a.close();
});

test('modified UTF-7 names: an exact LIST finds the mailbox; a malformed name is NO, not BAD', async () => {
  const a = await login('utf7');
  assert.equal((await a.command('CREATE "&AMk-t&AOk-"')).status, 'OK');
  assert.deepEqual((await a.command('LIST "" "&AMk-t&AOk-"')).untagged, ['* LIST (\\HasNoChildren) "/" &AMk-t&AOk-']);
  assert.deepEqual((await a.command('LIST "" "&AMk-t%"')).untagged, ['* LIST (\\HasNoChildren) "/" &AMk-t&AOk-']);
  assert.equal((await a.command('SELECT "&AMk-t&AOk-"')).status, 'OK');
  for (const bad of ['SELECT "&AMk"', 'SELECT "&Jjo!-"', 'STATUS "&AMk" (MESSAGES)']) {
    const r = await a.command(bad);
    assert.equal(r.status, 'NO', `${bad}: ${r.status} ${r.text}`);
  }
  a.close();
});

test('BODY[n] of a binary part carries no NUL (a literal cannot); BINARY[n] gives the exact octets', async () => {
  const a = await login('bin');
  await a.command('CREATE B');
  const part = Buffer.from([0x41, 0x00, 0x42, 0x00, 0x00, 0x43, 0xff]);
  const msg = Buffer.concat([
    Buffer.from('From: a@sender.example\r\nSubject: bin\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n'),
    part,
    Buffer.from('\r\n--b--\r\n'),
  ]);
  await append(a, 'B', msg);
  await a.command('SELECT B');
  const body = await a.command('FETCH 1 (BODY.PEEK[2])');
  assert.equal(body.status, 'OK');
  const line = find(body.untagged, / FETCH /)!;
  assert.ok(line.includes(`BODY[2] {${part.length}}`), line);
  assert.ok(!line.includes('\u0000'), 'no NUL inside a literal');
  const full = await a.command('FETCH 1 (BODY.PEEK[])');
  assert.ok(!find(full.untagged, / FETCH /)!.includes('\u0000'));
  const bin = find((await a.command('FETCH 1 (BINARY.PEEK[2])')).untagged, / FETCH /)!;
  assert.ok(bin.includes(`BINARY[2] ~{${part.length}}\r\n${part.toString('latin1')})`), JSON.stringify(bin));
  a.close();
});

test('ENVELOPE keeps a source route as the address adl; SEARCH FROM finds an address with a comment inside; BODY/TEXT see an attached message header', async () => {
  const a = await login('env');
  await a.command('CREATE E');
  await append(a, 'E', Buffer.from('From: <@relay.example,@hop.example:joe@example.com>\r\nTo: ann(at home)@example.net\r\nSubject: routed\r\n\r\nbody\r\n'));
  const inner = 'From: carol@example.org\r\nSubject: quarterly-figures-inside\r\n\r\nthe inner text\r\n';
  await append(a, 'E', Buffer.from(`From: b@sender.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n${inner}--x--\r\n`));
  await a.command('SELECT E');
  const env = find((await a.command('FETCH 1 (ENVELOPE)')).untagged, / FETCH /)!;
  assert.ok(env.includes('((NIL "@relay.example,@hop.example" "joe" "example.com"))'), env);
  const hits = async (q: string) => find((await a.command(`SEARCH ${q}`)).untagged, /^\* SEARCH/);
  assert.equal(await hits('TO "ann@example.net"'), '* SEARCH 1');
  assert.equal(await hits('FROM "joe@example.com"'), '* SEARCH 1');
  assert.equal(await hits('BODY "quarterly-figures-inside"'), '* SEARCH 2');
  assert.equal(await hits('TEXT "quarterly-figures-inside"'), '* SEARCH 2');
  assert.equal(await hits('BODY "carol@example.org"'), '* SEARCH 2');
  a.close();
});

test('the per-address connection limit does not count connections the client already closed (imaplib reconnecting at once)', async () => {
  // limits.imap_connections_per_ip is 4: three held open leave one slot, used again and again
  const held = await Promise.all([0, 1, 2].map(() => login('conn')));
  let out: string;
  try {
    out = await python(`
import imaplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ok = 0
for i in range(25):
    m = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
    m.login('conn@example.org', '${PASSWORD}')
    m.select('INBOX')
    m.logout()
    ok += 1
for i in range(25):
    m = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
    m.noop()
    m.shutdown()  # gone without LOGOUT
    ok += 1
# without TLS nothing slows the reconnect down
for i in range(200):
    m = imaplib.IMAP4('127.0.0.1', ${fe.ports.imap})
    m.noop()
    m.logout()
    ok += 1
for i in range(200):
    m = imaplib.IMAP4('127.0.0.1', ${fe.ports.imap})
    m.shutdown()
    ok += 1
print(ok)
`);
  } finally {
    for (const c of held) c.close();
  }
  assert.equal(out.trim(), '450');
  // A client that said LOGOUT is done with its connection, even while its end of the socket has
  // not closed yet (allowHalfOpen: the server's FIN does not close it).
  const lingering: net.Socket[] = [];
  try {
    for (let i = 0; i < 6; i++) {
      const s = net.connect({ port: fe.ports.imap!, host: '127.0.0.1', allowHalfOpen: true });
      lingering.push(s);
      let got = '';
      const reply = await new Promise<string>((resolve, reject) => {
        s.on('error', reject);
        s.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          if (/^\* OK/.test(got) && !got.includes('a LOGOUT-SENT')) {
            got += 'a LOGOUT-SENT';
            s.write('a LOGOUT\r\n');
          }
          if (/^\* BYE too many/.test(got) || /\r\na OK/.test(got)) resolve(got);
        });
      });
      assert.match(reply, /^\* OK/, `reconnect ${i} after LOGOUT: ${reply}`);
    }
  } finally {
    for (const s of lingering) s.destroy();
  }
  // the limit itself still holds
  const four = await Promise.all([0, 1, 2, 3].map(() => login('conn')));
  const fifth = await connect();
  assert.match(fifth.greeting, /^\* BYE too many connections/);
  for (const c of [...four, fifth]) c.close();
});

test('imaplib sees \\Recent: RECENT after SELECT, and new mail from another session', async () => {
  const out = await python(`
import imaplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
a = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
a.login('srch@example.org', '${PASSWORD}')
a.append('INBOX', None, None, b'From: a@b.example\\r\\nSubject: r1\\r\\n\\r\\nx\\r\\n')
a.select('INBOX')
print('select', a.response('RECENT')[1])
b = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
b.login('srch@example.org', '${PASSWORD}')
b.append('INBOX', None, None, b'From: a@b.example\\r\\nSubject: r2\\r\\n\\r\\nx\\r\\n')
a.noop()
print('noop', a.response('RECENT')[1])
print('search', a.search(None, 'NEW')[1])
b.select('INBOX')
print('other', b.response('RECENT')[1])
`);
  assert.equal(out.trim(), "select [b'1']\nnoop [b'2']\nsearch [b'1 2']\nother [b'0']");
});
