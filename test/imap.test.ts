// IMAP on the encrypted mailboxes, against a real `fe serve`: Python's imaplib as a real client,
// and raw protocol sessions for what clients rely on (other sessions' changes, IDLE, bad input).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect } from './helpers/imap-client.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;

async function deliver(to: string, body: string, subject = 'hello'): Promise<void> {
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'alice@sender.example', '--to', to, '--header', `Subject: ${subject}`, '--body', body, '--hide-informational']);
  assert.match(stdout, /<- +250 /);
}

/** Runs a Python imaplib script (a real client) and returns what it prints. */
async function python(script: string): Promise<string> {
  const file = path.join(w.dir, `client-${Date.now()}-${Math.random()}.py`);
  writeFileSync(file, script);
  const { stdout } = await run('python3', [file], { timeout: 60_000 });
  return stdout;
}

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  await w.ok(['alias', 'add', 'you@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}-you\n` });
  await w.ok(['alias', 'add', 'search@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}-s\n` });
  fe = await startServe(w.config);
  assert.ok(fe.ports.imap && fe.ports.imaps);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('a message delivered by swaks reads back byte-identical over IMAPS with imaplib', async () => {
  const marker = `imap-roundtrip-${Date.now()}`;
  await deliver('me@example.org', `${marker}\nsecond line`);
  const out = await python(`
import imaplib, ssl, json
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
m.login('me@example.org', '${PASSWORD}')
typ, data = m.select('INBOX')
n = int(data[0])
typ, body = m.fetch(str(n), '(BODY.PEEK[] FLAGS)')
typ, env = m.fetch(str(n), '(ENVELOPE RFC822.SIZE)')
print(json.dumps({'n': n, 'raw': body[0][1].decode('utf8', 'replace'), 'meta': body[0][0].decode() + body[1].decode(), 'env': env[0].decode()}))
m.logout()
`);
  const r = JSON.parse(out) as { n: number; raw: string; meta: string; env: string };
  assert.ok(r.n >= 1);
  assert.match(r.raw, new RegExp(`\\r\\n\\r\\n${marker}\\r\\nsecond line\\r\\n(\\r\\n)*$`), 'the body as swaks sent it (it adds blank lines)');
  assert.match(r.raw, /^Received: from .*\r\n\tby mail\.example\.org \(fe\)/);
  assert.match(r.raw, /\r\nSubject: hello\r\n/);
  assert.match(r.meta, /FLAGS \((\\Recent)?\)/, 'BODY.PEEK does not set \\Seen');
  assert.match(r.env, /ENVELOPE \(".*" "hello" \(\(NIL NIL "alice" "sender\.example"\)\)/);
  // what swaks sent is exactly what is stored after our trace headers: compare with RFC822.SIZE
  assert.match(r.env, new RegExp(`RFC822\\.SIZE ${Buffer.byteLength(r.raw)}`));
});

test('a whole message sent with swaks --data comes back byte for byte (after fe\'s trace headers) over IMAP', async () => {
  const original = Buffer.from(
    [
      'From: "Ünïcode Sender" <alice@sender.example>',
      'To: me@example.org',
      `Subject: exact bytes ${Date.now()}`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      '',
      '.a line starting with a dot (dot-stuffed on the wire, not in the store)',
      'tabs\tand trailing spaces   ',
      'UTF-8: grüße, 日本語',
      '',
      '',
    ].join('\r\n'),
  );
  const file = path.join(w.dir, 'exact.eml');
  writeFileSync(file, original);
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'alice@sender.example', '--to', 'me@example.org', '--data', `@${file}`, '--hide-informational']);
  assert.match(stdout, /<- +250 /);
  const out = await python(`
import imaplib, ssl, sys, base64
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
m.login('me@example.org', '${PASSWORD}')
typ, data = m.select('INBOX', readonly=True)
typ, body = m.fetch(data[0].decode(), '(BODY.PEEK[])')
sys.stdout.write(base64.b64encode(body[0][1]).decode())
m.logout()
`);
  const stored = Buffer.from(out, 'base64');
  // swaks always ends DATA with CRLF "." CRLF after the file, so the message it sent is the file plus one CRLF
  const sent = Buffer.concat([original, Buffer.from('\r\n')]);
  assert.ok(stored.length > sent.length);
  assert.equal(stored.subarray(stored.length - sent.length).toString('latin1'), sent.toString('latin1'), 'the sent octets end the stored message unchanged');
  assert.match(stored.subarray(0, stored.length - sent.length).toString('utf8'), /^Received: [^]*\r\n$/, 'only fe\'s trace headers precede them');
});

test('imaplib: flags, copy, move, expunge, folders, append and status work and persist', async () => {
  await deliver('me@example.org', 'for flags');
  const out = await python(`
import imaplib, json, time
m = imaplib.IMAP4('127.0.0.1', ${fe.ports.imap})
m.starttls(ssl_context=__import__('ssl')._create_unverified_context())
m.login('me@example.org', '${PASSWORD}')
res = {}
m.select('INBOX')
res['store'] = m.store('1', '+FLAGS', '(\\\\Flagged \\\\Seen $Important)')[1][0].decode()
res['create'] = m.create('Projects/2026')[0]
res['list'] = [x.decode() for x in m.list()[1]]
res['copy'] = m.copy('1', 'Archive')[1][0].decode()
res['append'] = m.append('Drafts', '(\\\\Draft)', imaplib.Time2Internaldate(time.time()), b'Subject: draft\\r\\n\\r\\nunfinished\\r\\n')[1][0].decode()
res['status'] = m.status('Drafts', '(MESSAGES UNSEEN UIDNEXT)')[1][0].decode()
m.select('Archive')
res['archived'] = m.fetch('1', '(FLAGS)')[1][0].decode()
res['move'] = m._simple_command('MOVE', '1', 'Trash')[0]
res['after_move'] = m.select('Archive')[1][0].decode()
m.select('INBOX')
m.store('1', '+FLAGS', '\\\\Deleted')
res['expunge'] = [x.decode() for x in m.expunge()[1] if x]
res['rename'] = m.rename('Projects/2026', 'Projects/2027')[0]
res['delete'] = m.delete('Projects/2027')[0]
res['inbox_delete'] = m.delete('INBOX')[0]
m.logout()
print(json.dumps(res))
`);
  const r = JSON.parse(out) as Record<string, string & string[]>;
  assert.match(r.store!, /FLAGS \(.*\\Flagged.*\)/);
  assert.match(r.store!, /\$Important/);
  assert.equal(r.create, 'OK');
  assert.ok(r.list!.some((l) => /\(\\HasNoChildren\) "\/" Projects\/2026$/.test(l)), JSON.stringify(r.list));
  assert.ok(r.list!.some((l) => /\\Sent\) "\/" Sent$/.test(l)), 'special-use attributes');
  assert.match(r.copy!, /^\[COPYUID \d+ \d+ 1\]/);
  assert.match(r.append!, /^\[APPENDUID \d+ 1\]/);
  assert.match(r.status!, /MESSAGES 1 UNSEEN 1 UIDNEXT 2/);
  assert.match(r.archived!, /\\Flagged/, 'copies keep their flags');
  assert.equal(r.move, 'OK');
  assert.equal(r.after_move, '0', 'moved away');
  assert.deepEqual(r.expunge, ['1']);
  assert.equal(r.rename, 'OK');
  assert.equal(r.delete, 'OK');
  assert.equal(r.inbox_delete, 'NO');
});

test('no password before TLS on the plain port; wrong passwords are refused cleanly', async () => {
  const c = await imapConnect(fe.ports.imap!);
  assert.match(c.greeting, /^\* OK \[CAPABILITY [^\]]*STARTTLS[^\]]*LOGINDISABLED/);
  const r = await c.command(`LOGIN me@example.org "${PASSWORD}"`);
  assert.equal(r.status, 'NO');
  assert.match(r.text, /PRIVACYREQUIRED/);
  c.close();
  const keyFile = path.join(w.dataDir, 'mailboxes', 'example.org', 'me', 'key.json');
  const before = readFileSync(keyFile);
  const s = await imapConnect(fe.ports.imaps!, { tls: true });
  const bad = await s.command('LOGIN me@example.org "not the password"');
  assert.equal(bad.status, 'NO');
  assert.match(bad.text, /^\[AUTHENTICATIONFAILED\]/);
  const unknown = await s.command(`LOGIN nobody@example.org "${PASSWORD}"`);
  assert.equal(unknown.text, bad.text, 'an unknown user looks the same as a wrong password');
  const plain = await s.command(`AUTHENTICATE PLAIN ${Buffer.from(`\0me@example.org\0${PASSWORD}`).toString('base64')}`);
  assert.equal(plain.status, 'OK', 'SASL-IR PLAIN');
  s.close();
  // AUTHENTICATE LOGIN: two base64 prompts, "Username:" and "Password:"
  const l = await imapConnect(fe.ports.imaps!, { tls: true });
  assert.match(l.greeting, /AUTH=LOGIN/);
  l.write('L1 AUTHENTICATE LOGIN\r\n');
  assert.equal(await l.waitFor(/^\+ /), `+ ${Buffer.from('Username:').toString('base64')}`);
  l.write(Buffer.from('me@example.org').toString('base64') + '\r\n');
  assert.equal(await l.waitFor(/^\+ /), `+ ${Buffer.from('Password:').toString('base64')}`);
  l.write(Buffer.from(PASSWORD).toString('base64') + '\r\n');
  assert.match(await l.waitFor(/^L1 /), /^L1 OK /);
  l.close();
  assert.deepEqual(readFileSync(keyFile), before);
});

test('two sessions of one mailbox see each other\'s changes; IDLE hears new mail within a second', async () => {
  await deliver('you@example.org', 'one');
  await deliver('you@example.org', 'two');
  const a = await imapConnect(fe.ports.imaps!, { tls: true });
  const b = await imapConnect(fe.ports.imaps!, { tls: true });
  for (const c of [a, b]) assert.equal((await c.command(`LOGIN you@example.org "${PASSWORD}-you"`)).status, 'OK');
  const sel = await a.command('SELECT INBOX');
  assert.ok(sel.untagged.includes('* 2 EXISTS'), sel.untagged.join('\n'));
  await b.command('SELECT INBOX');
  await b.command('STORE 1 +FLAGS (\\Deleted)');
  await b.command('EXPUNGE');
  await b.command('STORE 1 +FLAGS (\\Answered)');
  const noop = await a.command('NOOP');
  assert.ok(noop.untagged.includes('* 1 EXPUNGE'), noop.untagged.join('\n'));
  assert.ok(noop.untagged.some((l) => /^\* 1 FETCH \(UID \d+ FLAGS \(\\Answered( \\Recent)?\)\)$/.test(l)), noop.untagged.join('\n'));

  a.write('i1 IDLE\r\n');
  await a.waitFor(/^\+ /);
  const started = Date.now();
  const exists = a.waitFor(/^\* 2 EXISTS$/, 5000);
  await deliver('you@example.org', 'three');
  await exists;
  assert.ok(Date.now() - started < 3000, `pushed ${Date.now() - started} ms after delivery began`);
  a.write('DONE\r\n');
  await a.waitFor(/^i1 OK/);
  a.close();
  b.close();
});

test('hostile input gets BAD/NO and the server stays up', async () => {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  assert.equal((await c.command(`LOGIN me@example.org "${PASSWORD}"`)).status, 'OK');
  const huge = await c.command('APPEND INBOX {999999999999}');
  assert.match(huge.status, /NO|BAD/);
  const deep = await c.command(`FETCH 1 ${'('.repeat(100)}FLAGS${')'.repeat(100)}`);
  assert.equal(deep.status, 'BAD');
  const range = await c.command(`FETCH ${Array.from({ length: 5000 }, (_, i) => i + 1).join(',')} FLAGS`);
  assert.equal(range.status, 'BAD');
  const unknown = await c.command('FROBNICATE');
  assert.equal(unknown.status, 'BAD');
  const noSelect = await c.command('FETCH 1 FLAGS');
  assert.equal(noSelect.status, 'BAD');
  assert.equal((await c.command('NOOP')).status, 'OK', 'the session is still usable');
  c.close();
  const again = await imapConnect(fe.ports.imaps!, { tls: true });
  assert.match(again.greeting, /^\* OK/);
  again.close();
});

test('SEARCH and UID SEARCH with flags, headers, text, dates and ESEARCH', async () => {
  await deliver('search@example.org', 'the quarterly report is attached', 'Quarterly report');
  await deliver('search@example.org', 'lunch on friday?', '=?utf-8?q?D=C3=A9jeuner?=');
  await deliver('search@example.org', 'nothing to see', 'misc');
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  await c.command(`LOGIN search@example.org "${PASSWORD}-s"`);
  await c.command('SELECT INBOX');
  await c.command('STORE 2 +FLAGS (\\Flagged)');
  const s = async (q: string) => (await c.command(q)).untagged.find((l) => /^\* (E?SEARCH)/.test(l));
  assert.equal(await s('SEARCH SUBJECT quarterly'), '* SEARCH 1');
  const word = 'déjeuner';
  assert.equal(await s(`SEARCH CHARSET UTF-8 SUBJECT {${Buffer.byteLength(word)}+}\r\n${word}`), '* SEARCH 2', 'encoded-word subjects are decoded; 8-bit text travels as a LITERAL+');
  assert.equal(await s('SEARCH FLAGGED'), '* SEARCH 2');
  assert.equal(await s('SEARCH UNFLAGGED NOT SUBJECT misc'), '* SEARCH 1');
  assert.equal(await s('SEARCH OR BODY friday BODY attached'), '* SEARCH 1 2');
  assert.equal(await s('SEARCH FROM alice@sender.example SINCE 1-Jan-2020'), '* SEARCH 1 2 3');
  assert.equal(await s('SEARCH 2:3 TEXT see'), '* SEARCH 3');
  assert.equal(await s('SEARCH HEADER X-Mailer swaks LARGER 10'), '* SEARCH 1 2 3');
  const uids = (await s('UID SEARCH ALL'))!.split(' ').slice(2).map(Number);
  assert.equal(uids.length, 3);
  assert.equal(await s(`UID SEARCH UID ${uids[1]}`), `* SEARCH ${uids[1]}`);
  assert.match((await s('SEARCH RETURN (MIN MAX COUNT) ALL'))!, /^\* ESEARCH \(TAG "t\d+"\) MIN 1 MAX 3 COUNT 3$/);
  const bad = await c.command('SEARCH CHARSET KOI8-R SUBJECT x');
  assert.equal(bad.status, 'NO');
  assert.match(bad.text, /^\[BADCHARSET/);
  assert.equal((await c.command('SEARCH FROBNICATE')).status, 'BAD');
  c.close();
});

test('UTF8=ACCEPT: UTF-8 mailbox names and strings once enabled; modified UTF-7 before', async () => {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  await c.command(`LOGIN me@example.org "${PASSWORD}"`);
  // before ENABLE: mailbox names travel in modified UTF-7 (RFC 3501 5.1.3)
  assert.equal((await c.command('CREATE "Caf&AOk-"')).status, 'OK');
  const listed = await c.command('LIST "" "Caf*"');
  assert.deepEqual(listed.untagged, ['* LIST (\\HasNoChildren) "/" Caf&AOk-']);
  const enabled = await c.command('ENABLE UTF8=ACCEPT');
  assert.ok(enabled.untagged.includes('* ENABLED UTF8=ACCEPT'));
  const utf8 = await c.command('LIST "" "Caf*"');
  assert.deepEqual(utf8.untagged, ['* LIST (\\HasNoChildren) "/" "Café"']);
  assert.equal((await c.command('SELECT "Café"')).status, 'OK');
  assert.equal((await c.command('DELETE "Café"')).status, 'OK');
  c.close();
});

test('LIST-EXTENDED and LIST-STATUS: selection and return options, several patterns', async () => {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  await c.command(`LOGIN me@example.org "${PASSWORD}"`);
  await c.command('UNSUBSCRIBE Junk');
  const special = await c.command('LIST (SPECIAL-USE) "" "*"');
  assert.deepEqual(special.untagged.map((l) => l.split('"/" ')[1]).sort(), ['Archive', 'Drafts', 'Junk', 'Sent', 'Trash']);
  const subscribed = await c.command('LIST (SUBSCRIBED) "" "*"');
  assert.ok(!subscribed.untagged.some((l) => l.endsWith(' Junk')), 'unsubscribed folders left out');
  assert.ok(subscribed.untagged.every((l) => l.includes('\\Subscribed')));
  const status = await c.command('LIST "" ("inbox" "Sent") RETURN (STATUS (MESSAGES UIDNEXT))');
  assert.equal(status.untagged.length, 4, status.untagged.join('\n'));
  assert.match(status.untagged[0]!, /^\* LIST \(\\HasNoChildren\) "\/" INBOX$/);
  assert.match(status.untagged[1]!, /^\* STATUS INBOX \(MESSAGES \d+ UIDNEXT \d+\)$/);
  assert.match(status.untagged[3]!, /^\* STATUS Sent \(MESSAGES 0 UIDNEXT 1\)$/);
  const caseSensitive = await c.command('LIST "" "sent"');
  assert.deepEqual(caseSensitive.untagged, [], 'names other than INBOX are case-sensitive');
  await c.command('SUBSCRIBE Junk');
  c.close();
});
