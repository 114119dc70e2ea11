// Content protection as a sender meets it: one real `fe serve` and one real clamd (Debian's
// clamav-daemon, on a unix socket in a temp dir, with a one-signature database made here: clamd
// has no network and no freshclam in tests). Programs, macros, disk images and EICAR are refused
// before 250; clean mail arrives byte for byte; a stopped clamd is a WARN or a 451 by policy.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { EICAR, startClamd, type Clamd } from './helpers/clamd.js';
import { findExecutable, type ExecutablesSettings } from '../src/protection/executables.js';

const run = promisify(execFile);
const PASSWORD = 'protection test password';
const CLAM_EXE = '/usr/share/clamav-testfiles/clam.exe'; // a real PE, from Debian's clamav-testfiles

let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let clamd: Clamd;
let fixtures: string;

/** A multipart/mixed message with base64 attachments, CRLF line ends. */
function mime(to: string, subject: string, files: { name: string; type: string; data: Buffer }[], text = 'Please see the attachment.'): string {
  const b = `b-${randomBytes(6).toString('hex')}`;
  const lines = [`From: Alice <alice@sender.example>`, `To: ${to}`, `Subject: ${subject}`, `Message-ID: <${randomBytes(8).toString('hex')}@sender.example>`, 'MIME-Version: 1.0', `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', text];
  for (const f of files) {
    lines.push(`--${b}`, `Content-Type: ${f.type}; name="${f.name}"`, 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${f.name}"`, '');
    lines.push(...(f.data.toString('base64').match(/.{1,76}/g) ?? []));
  }
  lines.push(`--${b}--`, '');
  return lines.join('\r\n');
}

/** Sends one message over SMTP; returns the reply to the end of DATA. */
async function send(to: string[], message: string): Promise<string> {
  const s = await smtpConnect(fe.ports.mx!);
  try {
    await s.command('EHLO client.test');
    assert.match(await s.command('MAIL FROM:<alice@sender.example>'), /^250/);
    for (const r of to) assert.match(await s.command(`RCPT TO:<${r}>`), /^250/);
    assert.match(await s.command('DATA'), /^354/);
    return await s.raw(message.replace(/\r\n\./g, '\r\n..') + '.\r\n');
  } finally {
    s.close();
  }
}

function spoolCount(domain: string, local: string): number {
  const dir = path.join(w.dataDir, 'mailboxes', domain, local, 'spool');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.sealed')).length : 0;
}

/** Runs a Python imaplib script (a real client) over IMAPS and returns what it prints. */
async function imapFetchLast(user: string): Promise<Buffer> {
  const file = path.join(w.dir, `fetch-${Date.now()}.py`);
  writeFileSync(
    file,
    `
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
m.login('${user}', '${PASSWORD}')
typ, data = m.select('INBOX')
typ, body = m.fetch(data[0].decode(), '(BODY.PEEK[])')
sys.stdout.buffer.write(body[0][1])
m.logout()
`,
  );
  const { stdout } = await run('python3', [file], { timeout: 30_000, encoding: 'buffer' });
  return stdout as unknown as Buffer;
}

/** Zip archives made by Python's zipfile (a real archiver), from a JSON description. */
async function makeZips(dir: string): Promise<void> {
  const script = path.join(dir, 'make.py');
  writeFileSync(
    script,
    `
import io, sys, zipfile
d = sys.argv[1]
eicar = open(d + '/eicar.txt', 'rb').read()
def zipped(entries):
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return b.getvalue()
open(d + '/eicar.zip', 'wb').write(zipped([('readme.txt', b'hello'), ('eicar.txt', eicar)]))
open(d + '/eicar2.zip', 'wb').write(zipped([('inner.zip', zipped([('eicar.txt', eicar)]))]))
# OOXML with a macro project: the VBA storage is an OLE file holding a _VBA_PROJECT stream
ole = bytes.fromhex('d0cf11e0a1b11ae1') + bytes(504) + '_VBA_PROJECT'.encode('utf-16-le') + bytes(1024)
open(d + '/report.docm', 'wb').write(zipped([('[Content_Types].xml', b'<?xml version="1.0"?><Types/>'), ('word/document.xml', b'<w:document/>'), ('word/vbaProject.bin', ole)]))
def nest(n):
    data = zipped([('payload.txt', b'plain text')])
    for i in range(n):
        data = zipped([('level%d.zip' % i, data)])
    return data
open(d + '/deep4.zip', 'wb').write(nest(4))
open(d + '/bomb.zip', 'wb').write(zipped([('zeros.txt', bytes(3 * 1024 * 1024))]))
# a zip whose every entry is encrypted (general purpose flag bit 0, local and central headers)
z = bytearray(zipped([('letter.txt', b'secret words')]))
for sig in (b'PK\x03\x04', b'PK\x01\x02'):
    at = z.find(sig)
    flag_at = at + (6 if sig == b'PK\x03\x04' else 8)
    z[flag_at] |= 1
open(d + '/locked.zip', 'wb').write(bytes(z))
open(d + '/tools.zip', 'wb').write(zipped([('docs/setup.txt', open(d + '/clam.exe', 'rb').read())]))
`,
  );
  await run('python3', [script, dir], { timeout: 30_000 });
}

before(async () => {
  w = workspace('hostname: mail.example.org\ndata_dir: ./data\n');
  fixtures = path.join(w.dir, 'fixtures');
  mkdirSync(fixtures);
  writeFileSync(path.join(fixtures, 'eicar.txt'), EICAR);
  writeFileSync(path.join(fixtures, 'clam.exe'), readFileSync(CLAM_EXE));
  [clamd] = await Promise.all([startClamd(path.join(w.dir, 'clamd')), makeZips(fixtures), (async () => (dns = await startDnsServer({})))()]);
  console.log(`# clamd started in ${clamd.startMs} ms`);

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
      `  viruses: {clamd: ${clamd.socket}, fail: open}`,
      '  spam: off      # rspamd and phishing have their own file (spam.test.ts)',
      '  phishing: off',
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['domain', 'add', 'other.org']);
  for (const a of ['me@example.org', 'me@other.org']) await w.ok(['alias', 'add', a, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  await w.ok(['alias', 'add', 'strict@other.org', '--forward', 'me@other.org']);
  // other.org opts out of the executables layer; its alias strict@ opts back in
  w.write(
    w
      .read()
      .replace(/( {2}other\.org:\n)/, '$1    protection: {executables: off}\n')
      .replace(/( {6}strict:\n)/, '$1        protection: {executables: on}\n'),
  );
  assert.match(w.read(), /protection: \{executables: on\}/);
  fe = await startServe(w.config, ['--only', 'mx,imaps'], {}, ['mx', 'imaps']);
});

after(async () => {
  await fe?.stop();
  await clamd?.stop();
  await dns?.close();
});

test('a clean message with a PDF and a JPEG is delivered byte for byte, with the verdicts in X-FE-Protection', async () => {
  const pdf = Buffer.from('%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n');
  const jpeg = Buffer.concat([Buffer.from('ffd8ffe000104a46494600010100000100010000', 'hex'), randomBytes(20_000), Buffer.from('ffd9', 'hex')]);
  const original = mime('me@example.org', 'holiday photos', [
    { name: 'itinerary.pdf', type: 'application/pdf', data: pdf },
    { name: 'beach.jpg', type: 'image/jpeg', data: jpeg },
  ]);
  const before = spoolCount('example.org', 'me');
  assert.match(await send(['me@example.org'], original), /^250 2\.0\.0 /);
  assert.equal(spoolCount('example.org', 'me'), before + 1);
  const raw = await imapFetchLast('me@example.org');
  assert.ok(raw.subarray(raw.length - Buffer.byteLength(original)).equals(Buffer.from(original)), 'the message as sent follows fe\'s headers unchanged');
  const added = raw.subarray(0, raw.length - Buffer.byteLength(original)).toString('latin1');
  assert.match(added, /^Received: /);
  assert.match(added, /\r\nX-FE-Protection: executables=accept;\r\n\tviruses=accept\r\n$/);
  const line = fe.log().split('\n').filter((l) => l.includes('protection id=')).at(-1)!;
  assert.match(line, /action=accept layers="executables=accept viruses=accept"/);
  assert.doesNotMatch(fe.log(), /alice@sender\.example|beach\.jpg|holiday photos/, 'no full address, file name or subject in the log');
});

test('EICAR plain, inside a zip, and inside a zip in a zip is refused by clamd before 250', async () => {
  const eicarZip = readFileSync(path.join(fixtures, 'eicar.zip'));
  const nested = readFileSync(path.join(fixtures, 'eicar2.zip'));
  const before = spoolCount('example.org', 'me');
  for (const [name, type, data] of [
    ['notes.txt', 'text/plain', Buffer.from(EICAR)],
    ['archive.zip', 'application/zip', eicarZip],
    ['nested.zip', 'application/zip', nested],
  ] as const) {
    const reply = await send(['me@example.org'], mime('me@example.org', `test ${name}`, [{ name, type, data }]));
    assert.match(reply, /^554 5\.7\.1 Virus found: FE-Test\.EICAR/, name);
  }
  const plain = await send(['me@example.org'], `From: alice@sender.example\r\nTo: me@example.org\r\nSubject: inline\r\n\r\n${EICAR}\r\n`);
  assert.match(plain, /^554 5\.7\.1 Virus found: FE-Test\.EICAR/, 'EICAR as the body itself');
  assert.equal(spoolCount('example.org', 'me'), before, 'nothing was stored');
  assert.match(fe.log(), /protection id=\w+ from=a\*\*\*@sender\.example action=reject layers="executables=accept viruses=reject\(virus\)"/);
});

test('programs, macros and disk images are refused by name and by content, naming the file', async () => {
  const exe = readFileSync(CLAM_EXE);
  const iso = Buffer.alloc(0x8800);
  iso.write('\x01CD001\x01', 0x8000, 'latin1'); // an ISO 9660 primary volume descriptor
  const cases: [string, string, Buffer, RegExp][] = [
    ['invoice.pdf.exe', 'application/pdf', Buffer.from('%PDF-1.4\n'), /"invoice\.pdf\.exe" refused: a program \(\.exe\)/],
    ['readme.txt', 'text/plain', exe, /"readme\.txt" refused: a Windows program \(PE\)/],
    ['report.docm', 'application/vnd.ms-word.document.macroEnabled.12', readFileSync(path.join(fixtures, 'report.docm')), /"report\.docm" refused: an Office document with macros \(vbaProject\.bin\)/],
    ['holiday.iso', 'application/octet-stream', iso, /"holiday\.iso" refused: a disk image \(\.iso\)/],
    ['backup.dat', 'application/octet-stream', iso, /"backup\.dat" refused: a disk image \(ISO 9660\/UDF\)/],
    ['tools.zip', 'application/zip', readFileSync(path.join(fixtures, 'tools.zip')), /"tools\.zip\/docs\/setup\.txt" refused: a Windows program \(PE\)/],
    ['run.js', 'text/plain', Buffer.from('WScript.Echo(1)'), /"run\.js" refused: a script or shortcut \(\.js\)/],
  ];
  const before = spoolCount('example.org', 'me');
  for (const [name, type, data, why] of cases) {
    const reply = await send(['me@example.org'], mime('me@example.org', 'documents', [{ name, type, data }]));
    assert.match(reply, /^554 5\.7\.1 Attachment /, name);
    assert.match(reply, why, name);
  }
  assert.equal(spoolCount('example.org', 'me'), before, 'nothing was stored');
  assert.match(fe.log(), /action=reject layers="executables=reject\(exe\) viruses=accept"/);
  assert.doesNotMatch(fe.log(), /invoice\.pdf\.exe/, 'file names stay out of the log');
});

test('a domain opts out of a layer, an alias opts back in; a shared message gets the strictest', async () => {
  const payload = () => mime('me@other.org', 'build', [{ name: 'setup.exe', type: 'application/octet-stream', data: readFileSync(CLAM_EXE) }]);
  const before = spoolCount('other.org', 'me');
  assert.match(await send(['me@other.org'], payload()), /^250 /, 'other.org turned executables off');
  assert.equal(spoolCount('other.org', 'me'), before + 1);
  assert.match(await send(['strict@other.org'], payload()), /^554 5\.7\.1 Attachment "setup\.exe"/, 'its alias (forwarding to me@other.org) turned it back on');
  assert.match(await send(['me@other.org', 'me@example.org'], payload()), /^554 5\.7\.1 /, 'one recipient that wants the layer is enough');
  assert.equal(spoolCount('other.org', 'me'), before + 1);
  assert.match(fe.log(), /action=accept layers="viruses=accept"/, 'only the layers that ran are listed');
});

test('fe status asks clamd: reachable, its version, and that its signature age is unknown without a daily database', async () => {
  const r = await w.fe(['status', '--json', '--checks', 'protection']);
  const results = JSON.parse(r.stdout) as { subject: string; level: string; detail: string }[];
  const viruses = results.find((x) => x.subject === 'viruses')!;
  assert.equal(viruses.level, 'WARN');
  assert.match(viruses.detail, new RegExp(`clamd at ${clamd.socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} answers: ClamAV \\d+\\.\\d+`));
  assert.match(viruses.detail, /age of its signatures is unknown/);
  assert.equal(results.find((x) => x.subject === 'executables')!.level, 'OK');
});

test('clamd stopped: fail-open delivers with a WARN; fail-closed answers 451; fe status says so', async () => {
  await clamd.stop();
  const before = spoolCount('example.org', 'me');
  assert.match(await send(['me@example.org'], mime('me@example.org', 'while clamd is down', [])), /^250 /);
  assert.equal(spoolCount('example.org', 'me'), before + 1);
  assert.match(fe.log(), /warn fe\S*: protection layer could not run id=\w+ layer=viruses action=skipped reason=".*clamd\.sock: (ENOENT|ECONNREFUSED)"/);
  const raw = await imapFetchLast('me@example.org');
  assert.match(raw.toString('latin1'), /\r\nX-FE-Protection: executables=accept;\r\n\tviruses=skipped\r\n/);
  const status = JSON.parse((await w.fe(['status', '--json', '--checks', 'protection'])).stdout) as { subject: string; level: string; detail: string }[];
  assert.match(status.find((x) => x.subject === 'viruses')!.detail, /does not answer .*delivered unscanned \(fail: open\)/);

  w.write(w.read().replace('fail: open}', 'fail: closed}'));
  fe.signal('SIGHUP');
  await fe.waitForLog(/configuration reloaded/);
  const waiting = spoolCount('example.org', 'me');
  assert.match(await send(['me@example.org'], mime('me@example.org', 'closed', [])), /^451 4\.7\.0 /);
  assert.equal(spoolCount('example.org', 'me'), waiting, 'nothing stored on 451');
  const closed = await w.fe(['status', '--json', '--checks', 'protection']);
  assert.equal(closed.code, 1, 'a FAIL: mail is being deferred');
});

// The executables layer on its own (the same code the MX runs), for archive formats Debian's
// clamav-testfiles ships real samples of, and for the limits.
const SETTINGS: ExecutablesSettings = { enabled: true, fail: 'closed', rejectEncrypted: true, archiveDepth: 3 };
const verdict = (name: string, data: Buffer, settings = SETTINGS) => findExecutable(Buffer.from(mime('me@example.org', 'x', [{ name, type: 'application/octet-stream', data }])), settings);

test('executables: names inside 7z, cab, tar.gz and bzip2 zips are read; limits and encryption are enforced', () => {
  for (const f of ['clam.7z', 'clam.cab', 'clam.tar.gz', 'clam.bz2.zip']) {
    const found = verdict(`sample-${f}`, readFileSync(`/usr/share/clamav-testfiles/${f}`));
    assert.ok(found, f);
    assert.equal(found.kind, 'exe', f);
    assert.match(found.file, /^sample-clam\..*\/clam\.exe$/, f);
  }
  assert.equal(verdict('deep.zip', readFileSync(path.join(fixtures, 'deep4.zip')))?.kind, 'nested-archive');
  assert.equal(verdict('deep.zip', readFileSync(path.join(fixtures, 'deep4.zip')), { ...SETTINGS, archiveDepth: 5 }), null, 'a deeper limit lets it through');
  assert.equal(verdict('bomb.zip', readFileSync(path.join(fixtures, 'bomb.zip')), { ...SETTINGS, entryLimit: 1024 * 1024 })?.kind, 'archive-bomb', 'inflating stops at the limit');
  assert.equal(verdict('locked.zip', readFileSync(path.join(fixtures, 'locked.zip')))?.kind, 'encrypted-archive');
  assert.equal(verdict('locked.zip', readFileSync(path.join(fixtures, 'locked.zip')), { ...SETTINGS, rejectEncrypted: false }), null, 'encrypted_archives: accept');
  // A 7z whose header is packed with the 7zAES coder (method id 06 F1 07 01): its listing is hidden.
  const next = Buffer.from([0x17, 0x06, 0x00, 0x01, 0x09, 0x10, 0x00, 0x07, 0x0b, 0x01, 0x00, 0x01, 0x24, 0x06, 0xf1, 0x07, 0x01, 0x00]);
  const start = Buffer.alloc(32);
  Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0x00, 0x04]).copy(start);
  start.writeBigUInt64LE(16n, 12);
  start.writeBigUInt64LE(BigInt(next.length), 20);
  assert.equal(verdict('archive.7z', Buffer.concat([start, randomBytes(16), next]))?.kind, 'encrypted-archive');
  // RAR 5 with an archive encryption header (type 4) right after the signature (rar -hp).
  const rar5 = Buffer.concat([Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1'), Buffer.from([0, 0, 0, 0, 0x21, 0x04, 0x00]), randomBytes(32)]);
  assert.equal(verdict('archive.rar', rar5)?.kind, 'encrypted-archive');
  // Office 97-2003 with a VBA project (an OLE compound file), and names that hide the extension
  const doc = Buffer.concat([Buffer.from('d0cf11e0a1b11ae1', 'hex'), Buffer.alloc(504), Buffer.from('_VBA_PROJECT_CUR', 'utf16le'), Buffer.alloc(512)]);
  assert.equal(verdict('budget.xls', doc)?.kind, 'macro');
  assert.equal(verdict('setup.exe. ', Buffer.from('x'))?.kind, 'exe', 'Windows drops trailing dots and spaces');
  assert.equal(verdict('invoice\u202Efdp.scr', Buffer.from('x'))?.kind, 'bidi-name');
  assert.equal(verdict('report.pdf', readFileSync('/usr/share/clamav-testfiles/clam.pdf')), null, 'a PDF is fine');
});

test('pipeline: the strictest verdict wins, a silent engine is cut off at the time budget, each layer keeps its fail policy', async () => {
  const { parseConfig } = await import('../src/config/schema.js');
  const { runProtection } = await import('../src/protection/pipeline.js');
  const { createLogger } = await import('../src/util/log.js');
  const { config } = parseConfig('hostname: mail.example.org\nprotection:\n  timeout: 1s\n  spam: {fail: closed}\n  phishing: {fail: open}\n', 'fe.yml');
  const lines: string[] = [];
  const log = createLogger('info', 'fe', (l) => lines.push(l));
  const input = { raw: Buffer.from('Subject: x\r\n\r\nhi\r\n'), clientIp: '127.0.0.1', helo: 'x', mailFrom: 'a@b.example', rcptTo: ['me@example.org'], auth: {} as never, hostname: 'mail.example.org', ownDomains: [] };
  // stand-ins for engines: one that answers junk, one that never answers, one that fails
  const junk = { name: 'spam', scan: async () => ({ layer: 'spam', action: 'junk' as const, score: 7.25, symbols: ['BAYES_SPAM'] }) };
  const silent = { name: 'spam', scan: () => new Promise<never>(() => {}) };
  const broken = { name: 'phishing', scan: async () => { throw new Error('engine down'); } };
  const accept = { name: 'executables', scan: async () => ({ layer: 'executables', action: 'accept' as const }) };

  const a = await runProtection(config!, input, [], log, 'id1', [accept, junk, broken]);
  assert.equal(a.action, 'junk');
  assert.equal(a.header, 'X-FE-Protection: executables=accept;\r\n\tspam=junk score=7.25 (BAYES_SPAM);\r\n\tphishing=skipped\r\n');
  assert.ok(lines.some((l) => /^warn fe: protection layer could not run id=id1 layer=phishing action=skipped reason="engine down"$/.test(l)), lines.join('\n'));

  const t0 = Date.now();
  const b = await runProtection(config!, input, [], log, 'id2', [accept, silent]);
  assert.ok(Date.now() - t0 < 3000, 'cut off near the 1 s budget');
  assert.equal(b.action, 'defer', 'spam is fail: closed');
  assert.equal(b.code, 451);
  assert.match(b.reply!, /^4\.7\.0 /);
  assert.ok(lines.some((l) => /protection id=id2 from=a\*\*\*@b\.example action=defer/.test(l)));
});
