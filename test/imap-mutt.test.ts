// neomutt, the terminal client, against a running `fe serve`: a user's session in the index over
// IMAPS (file one message away, copy one, flag, delete, read, pipe a message out, open another
// folder), and sending with an Fcc to Sent over STARTTLS on the IMAP port. neomutt needs a
// terminal, so it runs under util-linux `script` on a pseudo-terminal; every run is bounded.
// What counts is fe's side afterwards, read back over IMAP: folders, flags and bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { exchange, neomutt } from './helpers/neomutt.js';

const PASSWORD = 'correct horse battery staple';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let certFile: string;

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  for (const who of ['reader', 'writer']) await w.ok(['alias', 'add', `${who}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['mx', 'imap', 'imaps']);
  certFile = path.join(w.dataDir, 'tls', 'self-signed.crt');
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

/** Delivers `message` (CRLF lines) through fe's MX exactly as given, dot-stuffed on the wire. */
async function deliver(to: string, message: string): Promise<void> {
  const s = await smtpConnect(fe.ports.mx!);
  try {
    assert.match(await s.command('EHLO client.test'), /^250/);
    assert.match(await s.command('MAIL FROM:<alice@sender.example> BODY=8BITMIME'), /^250/);
    assert.match(await s.command(`RCPT TO:<${to}>`), /^250/);
    assert.match(await s.command('DATA'), /^354/);
    assert.match(await s.raw(message.replace(/^\./gm, '..') + '.\r\n'), /^250/);
    await s.command('QUIT');
  } finally {
    s.close();
  }
}

function simple(to: string, subject: string): string {
  return [`From: Alice <alice@sender.example>`, `To: ${to}`, `Subject: ${subject}`, `Message-ID: <${randomBytes(8).toString('hex')}@sender.example>`, 'Date: Mon, 02 Mar 2026 10:00:00 +0000', '', `This is ${subject}.`, ''].join('\r\n');
}

/** A folder of its own for one neomutt run: HOME, tmpdir, rc file and debug log. */
function muttDir(): string {
  const dir = mkdtempSync(path.join(w.dir, 'neomutt-'));
  assert.match(dir, /^[\w./-]+$/, 'the run folder is used unquoted inside neomutt commands');
  mkdirSync(path.join(dir, 'home'));
  mkdirSync(path.join(dir, 'tmp'));
  return dir;
}

/** A muttrc for `user` at `url` that trusts fe's certificate and asks nothing interactively. */
function writeMuttrc(dir: string, user: string, url: string, extra: string[] = []): string {
  const rc = path.join(dir, 'muttrc');
  writeFileSync(
    rc,
    [
      `set folder="${url}"`,
      `set imap_user="${user}"`,
      `set imap_pass="${PASSWORD}"`,
      'set spoolfile="+INBOX"',
      'set record=""',
      'set ssl_force_tls=yes',
      'set ssl_verify_host=yes',
      `set ssl_ca_certificates_file="${certFile}"`,
      `set certificate_file="${path.join(dir, 'certificates')}"`,
      'set header_cache=""',
      'set message_cachedir=""',
      'set imap_check_subscribed=yes',
      'set imap_peek=yes',
      `set tmpdir="${path.join(dir, 'tmp')}"`,
      'set hostname=example.org',
      'set confirmappend=no',
      'set confirmcreate=no',
      'set delete=yes',
      'set move=no',
      'set mark_old=yes', // unread messages seen in the index get the keyword Old on leaving
      'set quit=yes',
      'set wait_key=no',
      'set pipe_decode=no',
      'set beep=no',
      'set sleep_time=0', // no pause after each status message
      ...extra,
      '',
    ].join('\n'),
  );
  return rc;
}

async function login(port: number, user: string, opts: { tls: boolean }): Promise<ImapConn> {
  const c = await imapConnect(port, opts);
  const r = await c.command(`LOGIN ${user} "${PASSWORD}"`);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

interface Stored {
  uid: number;
  flags: string[];
  subject: string;
  internalDate: string;
  /** BODY[] as fe stores it. */
  raw: string;
}

/** Every message of a folder as fe has it (read-only: EXAMINE and BODY.PEEK). */
async function folder(c: ImapConn, name: string): Promise<Stored[]> {
  const ex = await c.command(`EXAMINE ${name}`);
  assert.equal(ex.status, 'OK', `EXAMINE ${name}: ${ex.text}`);
  const exists = Number(/^\* (\d+) EXISTS$/m.exec(ex.untagged.join('\n'))?.[1] ?? NaN);
  assert.ok(Number.isInteger(exists), `EXISTS for ${name}`);
  if (exists === 0) return [];
  const r = await c.command('UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])');
  assert.equal(r.status, 'OK', r.text);
  return r.untagged
    .filter((l) => /^\* \d+ FETCH /.test(l))
    .map((l) => {
      const lit = /BODY\[\] \{(\d+)\}\r\n/.exec(l);
      assert.ok(lit, `a BODY[] literal in ${l.slice(0, 200)}`);
      const start = Buffer.byteLength(l.slice(0, lit.index + lit[0].length));
      const raw = Buffer.from(l, 'utf8').subarray(start, start + Number(lit[1])).toString('utf8');
      const outside = l.slice(0, lit.index) + l.slice(lit.index + lit[0].length + raw.length);
      return {
        uid: Number(/UID (\d+)/.exec(outside)?.[1]),
        flags: (/FLAGS \(([^)]*)\)/.exec(outside)?.[1] ?? '').split(' ').filter((f) => f && f !== '\\Recent').sort(), // \Recent is this session's, not stored
        subject: /^Subject: (.*)$/im.exec(raw.split('\r\n\r\n')[0] ?? '')?.[1] ?? '',
        internalDate: /INTERNALDATE "([^"]+)"/.exec(outside)?.[1] ?? '',
        raw,
      };
    });
}

const bySubject = (msgs: Stored[]) => Object.fromEntries(msgs.map((m) => [m.subject, m.flags]));

/** "02-Mar-2026 10:00:00 +0100" (IMAP date-time) as milliseconds since the epoch. */
function imapDate(s: string): number {
  const m = /^ ?(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$/.exec(s);
  assert.ok(m, `an IMAP date-time: ${s}`);
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'].indexOf(m[2]!);
  const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9])) * 60_000;
  return Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])) - offset;
}

test('neomutt over IMAPS: save to a folder, copy, flag, delete, read, and pipe a message out byte for byte', async () => {
  const marker = `rt-${randomBytes(6).toString('hex')}`;
  const attachment = randomBytes(300).toString('base64').replace(/.{1,76}/g, '$&\r\n');
  const roundTrip = [
    'From: Alice Example <alice@sender.example>',
    'To: reader@example.org',
    `Subject: round trip ${marker}`,
    `Message-ID: <${marker}@sender.example>`,
    'Date: Mon, 02 Mar 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    'A preamble nobody reads.',
    '--b1',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Grüße aus Köln, ünïcödé ✓',
    '.a line that starts with a dot (stuffed on the SMTP wire)',
    'From the start of a line, as mbox would quote it',
    'trailing spaces   ',
    'a\ttab',
    'x'.repeat(200),
    '--b1',
    'Content-Type: application/octet-stream; name="blob.bin"',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="blob.bin"',
    '',
    attachment + '--b1--',
    '',
  ].join('\r\n');
  for (const subject of ['keep-me', 'copy-me', 'flag-me', 'delete-me', 'read-me']) await deliver('reader@example.org', simple('reader@example.org', subject));
  await deliver('reader@example.org', roundTrip);

  const dir = muttDir();
  const rc = writeMuttrc(dir, 'reader@example.org', `imaps://127.0.0.1:${fe.ports.imaps}/`);
  const fromInbox = path.join(dir, 'from-inbox.eml');
  const fromArchive = path.join(dir, 'from-archive.eml');
  const session = [
    // Pipe the round-trip message out raw, then file it away (save = copy, then delete here).
    `<search>~s ${marker}<enter><pipe-message>cat > ${fromInbox}<enter>`,
    `<tag-pattern>~s ${marker}<enter><tag-prefix><save-message>=Archive<enter><untag-pattern>~A<enter>`,
    '<tag-pattern>~s copy-me<enter><tag-prefix><copy-message>=Junk<enter><untag-pattern>~A<enter>',
    '<tag-pattern>~s flag-me<enter><tag-prefix><flag-message><untag-pattern>~A<enter>',
    '<tag-pattern>~s delete-me<enter><tag-prefix><delete-message><untag-pattern>~A<enter>',
    '<search>~s read-me<enter><display-message><exit>',
    '<sync-mailbox><quit>',
  ].join('');
  const first = await neomutt(dir, ['-F', rc, '-e', `push '${session}'`]);
  let imap = exchange(first.log);
  assert.equal(first.code, 0, `neomutt exit status\nscreen:\n${first.screen.slice(-3000)}\nIMAP:\n${imap.slice(-4000)}`);
  assert.match(imap, /^4> a\d+ UID COPY \d+ "?Archive"?$/m, `neomutt filed the message with a server-side COPY\n${imap}`);
  assert.match(imap, /^4< a\d+ OK \[COPYUID \d+ \d+ \d+\]/m, 'COPY answered with COPYUID (UIDPLUS)');

  const c = await login(fe.ports.imaps!, 'reader@example.org', { tls: true });
  try {
    const inbox = await folder(c, 'INBOX');
    // Leaving the folder, neomutt marks what is still unread "old" with its Old keyword.
    assert.deepEqual(bySubject(inbox), { 'keep-me': ['Old'], 'copy-me': ['Old'], 'flag-me': ['Old', '\\Flagged'], 'read-me': ['\\Seen'] }, `INBOX after the session\n${imap}`);
    assert.deepEqual(bySubject(await folder(c, 'Junk')), { 'copy-me': [] }, 'copy-message left a copy in Junk');
    let archive = await folder(c, 'Archive');
    assert.deepEqual(bySubject(archive), { [`round trip ${marker}`]: [] }, 'save-message moved the message to Archive');
    assert.deepEqual(await folder(c, 'Trash'), [], 'nothing went to Trash: neomutt expunges in place');

    // Byte for byte: fe's copy is what came in through the MX (after the trace headers fe adds),
    // and what neomutt piped out is fe's copy with its line ends made local (CRLF -> LF).
    const stored = archive[0]!.raw;
    assert.ok(stored.endsWith(roundTrip), `the stored message ends with the delivered one:\n${stored}`);
    const local = stored.replace(/\r\n/g, '\n');
    assert.equal(readFileSync(fromInbox, 'utf8'), local, 'piped from INBOX');

    // The filed message read again from Archive, read-only (-R): the same bytes, and neither
    // neomutt's BODY.PEEK[] nor anything else leaves a flag behind.
    const second = await neomutt(dir, ['-F', rc, '-R', '-f', '=Archive', '-e', `push '<search>~s ${marker}<enter><pipe-message>cat > ${fromArchive}<enter><quit>'`]);
    imap = exchange(second.log);
    assert.equal(second.code, 0, `neomutt exit status\nscreen:\n${second.screen.slice(-3000)}\nIMAP:\n${imap.slice(-4000)}`);
    assert.match(imap, /^4> a\d+ EXAMINE "?Archive"?$/m, 'read-only is EXAMINE');
    assert.equal(readFileSync(fromArchive, 'utf8'), local, 'piped from Archive after the COPY');
    archive = await folder(c, 'Archive');
    assert.deepEqual(bySubject(archive), { [`round trip ${marker}`]: [] }, 'Archive unchanged by reading');
  } finally {
    c.close();
  }
});

test('neomutt sending over STARTTLS: the Fcc lands in Sent via APPEND with \\Seen and its date', async () => {
  const marker = `fcc-${randomBytes(6).toString('hex')}`;
  const dir = muttDir();
  // The SMTP side is out of scope: "sendmail" keeps the outgoing message for comparison.
  const outgoing = path.join(dir, 'outgoing.eml');
  const sendmail = path.join(dir, 'sendmail');
  writeFileSync(sendmail, `#!/bin/sh\nexec cat > '${outgoing}'\n`);
  chmodSync(sendmail, 0o755);
  const draft = path.join(dir, 'draft.eml');
  writeFileSync(draft, ['From: Writer <writer@example.org>', 'To: friend@example.net', `Subject: sent ${marker}`, '', 'First line of what was sent.', 'Second line, ünïcödé.', ''].join('\n'));
  const rc = writeMuttrc(dir, 'writer@example.org', `imap://127.0.0.1:${fe.ports.imap}/`, [
    'set ssl_starttls=yes',
    'set record="+Sent"',
    `set sendmail="${sendmail}"`,
    'set resume_draft_files=yes', // -H: no prompts for recipients or subject
    'set editor="true"', // the draft is the message as it stands
    'set abort_unmodified=no',
    'set send_charset="utf-8"',
  ]);
  // In the compose menu, "y" sends; neomutt then appends the Fcc and exits.
  const run = await neomutt(dir, ['-F', rc, '-H', draft], { when: 'y:Send', keys: 'y' });
  const imap = exchange(run.log);
  assert.equal(run.code, 0, `neomutt exit status\nscreen:\n${run.screen.slice(-3000)}\nIMAP:\n${imap.slice(-4000)}`);
  assert.match(imap, /^4> a\d+ STARTTLS$/m, 'TLS came from STARTTLS on the IMAP port');
  const append = /^4> a\d+ APPEND "?Sent"? \(([^)]*)\) "([^"]+)" \{(\d+)\}$/m.exec(imap);
  assert.ok(append, `neomutt appended the Fcc\n${imap}`);
  assert.match(imap, /^4< a\d+ OK \[APPENDUID \d+ 1\]/m, 'APPEND answered with APPENDUID (UIDPLUS)');

  const c = await login(fe.ports.imaps!, 'writer@example.org', { tls: true });
  try {
    const sent = await folder(c, 'Sent');
    assert.equal(sent.length, 1, 'one message in Sent');
    const m = sent[0]!;
    assert.equal(m.subject, `sent ${marker}`);
    assert.deepEqual(m.flags, ['\\Seen'], `the flags neomutt gave APPEND (${append[1]})`);
    assert.equal(Buffer.byteLength(m.raw), Number(append[3]), 'fe keeps exactly the octets of the APPEND literal');
    assert.equal(imapDate(m.internalDate), imapDate(append[2]!), `INTERNALDATE ${m.internalDate} is the APPEND date ${append[2]}`);
    assert.ok(m.raw.endsWith('\r\n\r\nFirst line of what was sent.\r\nSecond line, ünïcödé.\r\n'), `the body:\n${m.raw}`);
    // The Fcc is the message that went out: same Message-ID, same body.
    const out = readFileSync(outgoing, 'utf8');
    const id = /^Message-ID: (<[^>]+>)$/im.exec(out)?.[1];
    assert.ok(id, `the outgoing message has a Message-ID:\n${out}`);
    assert.match(m.raw, new RegExp(`^Message-ID: ${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\r$`, 'im'));
    assert.equal(m.raw.split('\r\n\r\n').slice(1).join('\r\n\r\n'), out.split('\n\n').slice(1).join('\n\n').replace(/\n/g, '\r\n'));
    assert.deepEqual(await folder(c, 'INBOX'), [], 'the Fcc went to Sent only');
  } finally {
    c.close();
  }
});
