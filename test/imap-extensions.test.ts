// IMAP extensions against a real `fe serve`: QRESYNC (RFC 7162), QUOTA (RFC 9208) with the MX
// side of the quota, BINARY (RFC 3516), COMPRESS=DEFLATE (RFC 4978), STATUS=SIZE (RFC 8438),
// and SEARCH BODY through base64 and quoted-printable parts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import zlib from 'node:zlib';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';
import { smtpConnect } from './helpers/smtp-client.js';

const PASSWORD = 'extensions password';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;

async function login(user: string): Promise<ImapConn> {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  const r = await c.command(`LOGIN ${user}@example.org "${PASSWORD}"`);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

function message(subject: string, body = 'plain body\r\n', extraHeaders = ''): Buffer {
  return Buffer.from(`From: a@sender.example\r\nTo: x@example.org\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@sender.example>\r\n${extraHeaders}\r\n${body}`);
}

async function append(c: ImapConn, folder: string, msg: Buffer, flags = ''): Promise<number> {
  const r = await c.command(Buffer.concat([Buffer.from(`APPEND ${folder} ${flags ? `(${flags}) ` : ''}{${msg.length}+}\r\n`), msg]));
  assert.equal(r.status, 'OK', r.text);
  return Number(/APPENDUID \d+ (\d+)/.exec(r.text)![1]);
}

const code = (lines: string[], name: string): string => {
  for (const l of lines) {
    const m = new RegExp(`\\[${name} ([^\\]]+)\\]`).exec(l);
    if (m) return m[1]!;
  }
  throw new Error(`no [${name}] in ${lines.join('\n')}`);
};

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlimits:\n  mailbox_quota: 300K\n  imap_connections_per_ip: 6\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  for (const user of ['q', 'full', 'bin', 'z', 'idle']) await w.ok(['alias', 'add', `${user}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['mx', 'imaps']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('QRESYNC: a client resynchronises with one SELECT: VANISHED (EARLIER) and changed flags only', async () => {
  const c = await login('q');
  assert.equal((await c.command('CREATE Q')).status, 'OK');
  const uids: number[] = [];
  for (let i = 1; i <= 5; i++) uids.push(await append(c, 'Q', message(`qresync ${i}`)));
  const sel = await c.command('SELECT Q');
  const validity = Number(code(sel.untagged, 'UIDVALIDITY'));
  const modseq = Number(code(sel.untagged, 'HIGHESTMODSEQ'));

  // QRESYNC parameters need ENABLE QRESYNC first (RFC 7162 3.2.5)
  const early = await c.command(`SELECT Q (QRESYNC (${validity} ${modseq}))`);
  assert.equal(early.status, 'BAD');

  // another session changes things while "our" client is away
  const other = await login('q');
  await other.command('SELECT Q');
  assert.equal((await other.command(`UID STORE ${uids[1]} +FLAGS (\\Flagged)`)).status, 'OK');
  assert.equal((await other.command(`UID STORE ${uids[3]} +FLAGS (\\Deleted)`)).status, 'OK');
  const ex = await other.command('EXPUNGE');
  assert.ok(ex.untagged.includes('* 4 EXPUNGE'), 'a session without QRESYNC still gets EXPUNGE');
  other.close();

  const en = await c.command('ENABLE QRESYNC');
  assert.ok(en.untagged.includes('* ENABLED QRESYNC'));
  const re = await c.command(`SELECT Q (QRESYNC (${validity} ${modseq}))`);
  assert.equal(re.status, 'OK', re.text);
  assert.ok(re.untagged.some((l) => /^\* OK \[CLOSED\]/.test(l)), 'the previous mailbox is reported closed');
  assert.ok(re.untagged.includes(`* VANISHED (EARLIER) ${uids[3]}`), re.untagged.join('\n'));
  const fetches = re.untagged.filter((l) => / FETCH /.test(l));
  assert.equal(fetches.length, 1, fetches.join('\n'));
  assert.match(fetches[0]!, new RegExp(`^\\* 2 FETCH \\(UID ${uids[1]} FLAGS \\(\\\\Flagged\\) MODSEQ \\(\\d+\\)\\)$`));

  // known-uids narrows VANISHED to UIDs the client has
  const narrow = await c.command(`EXAMINE Q (QRESYNC (${validity} ${modseq} ${uids[0]}:${uids[2]}))`);
  assert.ok(!narrow.untagged.some((l) => l.startsWith('* VANISHED')), narrow.untagged.join('\n'));
  // a different UIDVALIDITY: nothing to resync from, just the normal SELECT
  const stale = await c.command(`SELECT Q (QRESYNC (${validity + 1} ${modseq}))`);
  assert.ok(!stale.untagged.some((l) => l.startsWith('* VANISHED') || / FETCH /.test(l)));

  // UID FETCH ... (CHANGEDSINCE m VANISHED)
  const f = await c.command(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${modseq} VANISHED)`);
  assert.equal(f.status, 'OK', f.text);
  assert.equal(f.untagged[0], `* VANISHED (EARLIER) ${uids[3]}`);
  assert.equal(f.untagged.filter((l) => / FETCH /.test(l)).length, 1);
  assert.equal((await c.command(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${modseq} VANISHED)`)).status, 'BAD', 'VANISHED only in UID FETCH');

  // with QRESYNC on, expunges come as VANISHED by UID
  await c.command(`UID STORE ${uids[4]} +FLAGS.SILENT (\\Deleted)`);
  const ex2 = await c.command('EXPUNGE');
  assert.deepEqual(ex2.untagged.filter((l) => /VANISHED|EXPUNGE/.test(l)), [`* VANISHED ${uids[4]}`]);
  const st = await c.command('STATUS Q (MESSAGES HIGHESTMODSEQ)');
  assert.match(st.untagged[0]!, /MESSAGES 3 HIGHESTMODSEQ \d+/);
  c.close();
});

test('QUOTA: the MX defers mail for a full mailbox (452 4.2.2); IMAP reports usage and refuses APPEND and COPY over it', async () => {
  // 60 KB messages against a 300K quota: the spool fills, then the MX defers
  const body = 'x'.repeat(76) + '\r\n';
  const big = `From: a@sender.example\r\nTo: full@example.org\r\nSubject: big\r\n\r\n${body.repeat(780)}`;
  const s = await smtpConnect(fe.ports.mx!);
  await s.command('EHLO sender.example');
  const replies: string[] = [];
  for (let i = 0; i < 10; i++) {
    await s.command('MAIL FROM:<a@sender.example>');
    const rcpt = await s.command('RCPT TO:<full@example.org>');
    replies.push(rcpt);
    if (!rcpt.startsWith('250')) {
      await s.command('RSET');
      break;
    }
    await s.command('DATA');
    assert.match(await s.raw(big + '\r\n.\r\n'), /^250/);
  }
  s.close();
  const accepted = replies.filter((r) => r.startsWith('250')).length;
  assert.ok(accepted >= 3 && accepted <= 5, `accepted ${accepted}`);
  assert.match(replies.at(-1)!, /^452 4\.2\.2 Mailbox full/);

  const c = await login('full');
  const sel = await c.command('SELECT INBOX');
  assert.ok(sel.untagged.includes(`* ${accepted} EXISTS`), 'nothing accepted was lost');
  const sizes = (await c.command('FETCH 1:* (RFC822.SIZE)')).untagged.map((l) => Number(/RFC822\.SIZE (\d+)/.exec(l)![1]));
  const used = Math.ceil(sizes.reduce((a, b) => a + b, 0) / 1024);
  const root = await c.command('GETQUOTAROOT INBOX');
  assert.deepEqual(root.untagged, ['* QUOTAROOT INBOX ""', `* QUOTA "" (STORAGE ${used} 300)`]);
  assert.deepEqual((await c.command('GETQUOTA ""')).untagged, [`* QUOTA "" (STORAGE ${used} 300)`]);
  assert.equal((await c.command('GETQUOTA "other"')).status, 'NO');
  assert.match((await c.command('SETQUOTA "" (STORAGE 1000000)')).text, /^\[NOPERM\]/);

  const hundredK = message('hundred', body.repeat(1300));
  const refused = await c.command(Buffer.concat([Buffer.from(`APPEND INBOX {${hundredK.length}+}\r\n`), hundredK]));
  assert.equal(refused.status, 'NO');
  assert.match(refused.text, /^\[OVERQUOTA\]/);
  const copy = await c.command('COPY 1:* INBOX');
  assert.match(copy.text, /^\[OVERQUOTA\]/);
  assert.ok(!(await c.command('NOOP')).untagged.some((l) => /EXISTS/.test(l)), 'the refused APPEND and COPY stored nothing');

  await c.command('STORE 1:2 +FLAGS.SILENT (\\Deleted)');
  const st = await c.command('STATUS INBOX (MESSAGES DELETED DELETED-STORAGE SIZE)');
  assert.equal(st.untagged[0], `* STATUS INBOX (MESSAGES ${accepted} DELETED 2 DELETED-STORAGE ${Math.ceil((sizes[0]! + sizes[1]!) / 1024)} SIZE ${sizes.reduce((a, b) => a + b, 0)})`);
  await c.command('EXPUNGE');
  const ok = await c.command(Buffer.concat([Buffer.from(`APPEND INBOX {${hundredK.length}+}\r\n`), hundredK]));
  assert.equal(ok.status, 'OK', 'room again after EXPUNGE');
  c.close();
});

test('BINARY: parts come decoded (base64, quoted-printable), literal8 for NUL octets, UNKNOWN-CTE for unknown encodings', async () => {
  const c = await login('bin');
  const octets = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const utf8Text = 'Grüße aus Köln — ünïcödé text\r\n';
  const mime = [
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from(utf8Text).toString('base64'),
    '--b1',
    'Content-Type: text/plain; charset=iso-8859-1',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'Caf=E9 cr=E8me, a soft=',
    ' break and trailing space   ',
    'end',
    '--b1',
    'Content-Type: application/octet-stream',
    'Content-Transfer-Encoding: base64',
    '',
    octets.toString('base64').replace(/(.{76})/g, '$1\r\n'),
    '--b1',
    'Content-Type: text/plain',
    'Content-Transfer-Encoding: x-uuencode',
    '',
    'begin 644 x',
    '--b1--',
    '',
  ].join('\r\n');
  const uid = await append(c, 'INBOX', message('binary parts', mime.slice(mime.indexOf('\r\n\r\n') + 4), mime.slice(0, mime.indexOf('\r\n\r\n') + 2)));
  await c.command('SELECT INBOX');
  const r = await c.command(`UID FETCH ${uid} (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[3] BINARY.PEEK[3]<0.10> FLAGS)`);
  assert.equal(r.status, 'OK', r.text);
  const line = r.untagged[0]!;
  assert.match(line, new RegExp(`BINARY\\.SIZE\\[1\\] ${Buffer.byteLength(utf8Text)}`));
  assert.ok(line.includes(`BINARY[1] {${Buffer.byteLength(utf8Text)}}\r\n${utf8Text}`), line);
  // quoted-printable: =E9 is one octet (latin1 é); the soft break joins lines; transport padding goes
  const qp = Buffer.from('Caf\xe9 cr\xe8me, a soft break and trailing space\r\nend', 'latin1');
  assert.ok(line.includes(`BINARY[2] {${qp.length}}\r\n`), line);
  assert.match(line, /BINARY\.SIZE\[3\] 256/);
  assert.ok(line.includes(`BINARY[3]<0> ~{10}\r\n${octets.subarray(0, 10).toString('latin1')}`), 'a partial, as literal8 because it holds NUL');
  assert.match(line, /FLAGS \((\\Recent)?\)/, 'PEEK leaves \\Seen alone (the message is new to this session: \\Recent)');
  const whole = await c.command(`UID FETCH ${uid} (BINARY.PEEK[3])`);
  assert.ok(whole.untagged[0]!.includes(`BINARY[3] ~{256}\r\n${octets.toString('latin1')}`), 'NUL octets force literal8');
  const unknown = await c.command(`UID FETCH ${uid} (BINARY.PEEK[4])`);
  assert.equal(unknown.status, 'NO');
  assert.match(unknown.text, /^\[UNKNOWN-CTE\]/);
  const seen = await c.command(`UID FETCH ${uid} (BINARY[1])`);
  assert.match(seen.untagged.join('\n'), /FLAGS \(\\Seen( \\Recent)?\)/, 'BINARY without PEEK sets \\Seen');

  // SEARCH BODY looks through the decoded text of text parts, not the encoded octets
  const search = async (key: string) => (await c.command(`UID SEARCH CHARSET UTF-8 BODY {${Buffer.byteLength(key)}+}\r\n${key}`)).untagged[0];
  assert.equal(await search('Grüße aus Köln'), `* SEARCH ${uid}`, 'inside base64, in UTF-8');
  assert.equal(await search('café crème'), `* SEARCH ${uid}`, 'inside quoted-printable, in latin1, case-insensitive');
  assert.equal(await search('soft break'), `* SEARCH ${uid}`, 'across a soft line break');
  assert.equal(await search(Buffer.from('Grüße aus').toString('base64').slice(0, 8)), '* SEARCH', 'the base64 text itself is not what BODY sees');

  // APPEND with literal8: a message with a NUL octet is kept byte for byte
  const withNul = Buffer.concat([Buffer.from('From: a@sender.example\r\nSubject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\nbefore'), Buffer.from([0]), Buffer.from('after\r\n')]);
  const ap = await c.command(Buffer.concat([Buffer.from(`APPEND INBOX ~{${withNul.length}+}\r\n`), withNul]));
  assert.equal(ap.status, 'OK', ap.text);
  const nulUid = Number(/APPENDUID \d+ (\d+)/.exec(ap.text)![1]);
  const back = await c.command(`UID FETCH ${nulUid} (BINARY.PEEK[])`);
  assert.ok(back.untagged[0]!.includes(`BINARY[] ~{${withNul.length}}\r\n${withNul.toString('latin1')}`));
  c.close();
});

test('COMPRESS=DEFLATE: after the tagged OK both directions are raw deflate, and a big FETCH shrinks on the wire', async () => {
  const c = await login('z');
  const text = 'The same sentence again and again compresses very well. ';
  const msg = message('compress me', (text.repeat(20) + '\r\n').repeat(100));
  await append(c, 'INBOX', msg);
  c.close();

  const socket = tls.connect({ port: fe.ports.imaps!, host: '127.0.0.1', rejectUnauthorized: false });
  let wire = 0;
  let plain = '';
  let compressed = false;
  const inflate = zlib.createInflateRaw();
  const deflate = zlib.createDeflateRaw();
  inflate.on('data', (d: Buffer) => (plain += d.toString('latin1')));
  socket.on('data', (d: Buffer) => {
    if (compressed) {
      wire += d.length;
      inflate.write(d);
    } else plain += d.toString('latin1');
  });
  const until = async (re: RegExp) => {
    const end = Date.now() + 10_000;
    while (!re.test(plain)) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} in ${plain.slice(-300)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await until(/^\* OK/);
  socket.write(`a LOGIN z@example.org "${PASSWORD}"\r\n`);
  await until(/a OK/);
  socket.write('b COMPRESS DEFLATE\r\n');
  await until(/b OK/);
  compressed = true;
  deflate.pipe(socket);
  const send = (line: string) => {
    deflate.write(line + '\r\n');
    deflate.flush(zlib.constants.Z_SYNC_FLUSH);
  };
  send('c SELECT INBOX');
  await until(/c OK \[READ-WRITE\]/);
  send('d FETCH 1 (BODY.PEEK[])');
  await until(/d OK/);
  assert.ok(plain.includes(msg.toString('latin1')), 'the message arrives intact through inflate');
  assert.ok(wire < msg.length / 5, `${wire} octets on the wire for a ${msg.length}-octet message`);
  send('e COMPRESS DEFLATE');
  await until(/e NO \[COMPRESSIONACTIVE\]/);
  send('f LOGOUT');
  await until(/f OK/);
  socket.destroy();
});

test('limits.imap_connections_per_ip: the connection over the limit gets BYE; a closed one frees its place', async () => {
  const open: ImapConn[] = [];
  for (let i = 0; i < 6; i++) open.push(await imapConnect(fe.ports.imaps!, { tls: true }));
  for (const c of open) assert.match(c.greeting, /^\* OK /);
  const over = await imapConnect(fe.ports.imaps!, { tls: true });
  assert.match(over.greeting, /^\* BYE too many connections from your address/);
  await over.closed;
  open.pop()!.close();
  await new Promise((r) => setTimeout(r, 200));
  const again = await imapConnect(fe.ports.imaps!, { tls: true });
  assert.match(again.greeting, /^\* OK /);
  for (const c of [...open, again]) c.close();
});

test('five idling sessions each hear new mail, flag changes and expunges made by another session', async () => {
  const writer = await login('idle');
  const first = await append(writer, 'INBOX', message('idle one'));
  await append(writer, 'INBOX', message('idle two'));
  const idlers: ImapConn[] = [];
  for (let i = 0; i < 5; i++) {
    const c = await login('idle');
    await c.command('SELECT INBOX');
    c.write('i IDLE\r\n');
    await c.waitFor(/^\+ /);
    idlers.push(c);
  }
  await append(writer, 'INBOX', message('idle three'));
  for (const c of idlers) await c.waitFor(/^\* 3 EXISTS$/, 5000);
  await writer.command('SELECT INBOX');
  await writer.command(`UID STORE ${first} +FLAGS (\\Flagged)`);
  for (const c of idlers) assert.match(await c.waitFor(/FETCH/, 5000), new RegExp(`^\\* 1 FETCH \\(UID ${first} FLAGS \\(\\\\Flagged( \\\\Recent)?\\)\\)$`));
  await writer.command(`UID STORE ${first} +FLAGS (\\Deleted)`);
  await writer.command('EXPUNGE');
  for (const c of idlers) await c.waitFor(/^\* 1 EXPUNGE$/, 5000);
  for (const c of [...idlers, writer]) c.close();
});
