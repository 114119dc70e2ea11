// OpenPGP at rest, end to end: a real `fe serve`, mail sent with swaks (MX and submission), read
// back with Python's imaplib, decrypted with gpg and the owner's private key; mail that came
// encrypted (gpg PGP/MIME, gpg inline, openssl S/MIME) stays byte-identical; a key that expired
// makes fe store the mail sealed as usual and say so in the log and in `fe status`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseDocument } from 'yaml';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';
import { expiredKey, goodKey, type PgpFixture } from './helpers/pgp-fixtures.js';
import { authenticate } from 'mailauth';
import { createResolver } from '../src/dns/resolver.js';
import { loadConfig } from '../src/config/file.js';
import { activeSigners, dkimRecord } from '../src/dkim/sign.js';
import { pythonDkimVerify } from './helpers/python-dkim.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
const DAY_S = 24 * 60 * 60;
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let gnupg: string; // a GnuPG home holding the private keys of me@ and keep@
let me: PgpFixture;
let keep: PgpFixture;
let old: PgpFixture;
let friend: PgpFixture;
let peer: PeerMx;

function input(cmd: string, args: string[], stdin: string | Buffer, env: Record<string, string> = {}): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.end(stdin);
  });
}

async function gpg(args: string[], stdin: string | Buffer = ''): Promise<Buffer> {
  const r = await input('gpg', ['--homedir', gnupg, '--batch', '--yes', '--trust-model', 'always', ...args], stdin);
  assert.equal(r.code, 0, `gpg ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function swaks(args: string[]): Promise<string> {
  try {
    return (await run('swaks', ['--hide-informational', ...args], { timeout: 30_000 })).stdout;
  } catch (e) {
    return (e as { stdout: string }).stdout;
  }
}

async function deliver(to: string, subject: string, body: string): Promise<void> {
  const out = await swaks(['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'alice@sender.example', '--to', to, '--header', `Subject: ${subject}`, '--body', body]);
  assert.match(out, /<- +250 /, out);
}

async function deliverFile(to: string, message: Buffer): Promise<void> {
  const file = path.join(w.dir, `m-${Date.now()}-${Math.random()}.eml`);
  writeFileSync(file, message);
  const out = await swaks(['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'alice@sender.example', '--to', to, '--data', `@${file}`]);
  assert.match(out, /<- +250 /, out);
}

interface Fetched {
  raw: Buffer;
  envelope: string;
  structure: { outer: string; parts: { type: string; payload: string }[] };
}

/** The newest message of a folder, as a real client (imaplib + the email package) sees it. */
async function newest(user: string, password: string, folder = 'INBOX', searchFrom = 'alice'): Promise<Fetched & { found: number }> {
  const script = `
import imaplib, ssl, json, sys, base64, email
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx)
m.login(sys.argv[2], sys.argv[3])
typ, data = m.select(sys.argv[4], readonly=True)
n = data[0].decode()
typ, body = m.fetch(n, '(BODY.PEEK[])')
typ, env = m.fetch(n, '(ENVELOPE)')
typ, found = m.search(None, 'FROM', sys.argv[5])
raw = body[0][1]
msg = email.message_from_bytes(raw)
parts = [{'type': p.get_content_type(), 'payload': p.get_payload(decode=True).decode('latin1')} for p in msg.get_payload()] if msg.is_multipart() else []
print(json.dumps({'raw': base64.b64encode(raw).decode(), 'envelope': env[0].decode('utf8', 'replace'), 'structure': {'outer': msg.get('Content-Type', ''), 'parts': parts}, 'found': len(found[0].split())}))
m.logout()
`;
  const { stdout } = await run('python3', ['-c', script, String(fe.ports.imaps), user, password, folder, searchFrom], { timeout: 60_000 });
  const r = JSON.parse(stdout) as { raw: string; envelope: string; structure: Fetched['structure']; found: number };
  return { ...r, raw: Buffer.from(r.raw, 'base64') };
}

/** gpg's plaintext of a PGP/MIME message: what the owner's mail client shows. */
async function decrypt(f: Fetched): Promise<string> {
  const part = f.structure.parts[1];
  assert.ok(part, 'a second (encrypted) part');
  return (await gpg(['--decrypt'], part.payload)).toString('utf8');
}

before(async () => {
  [me, keep, old] = await Promise.all([goodKey('me@example.org', { name: 'Me' }), goodKey('keep@example.org'), expiredKey('old@example.org')]);
  const soon = await goodKey('soon@example.org', { keyExpirationTime: 7 * DAY_S });
  friend = await goodKey('friend@target.example');
  peer = await startPeerMx();
  // forward targets: their MX is the peer on loopback
  dns = await startDnsServer({ 'target.example': { MX: [{ priority: 10, exchange: 'mx.peer.example' }] }, 'mx.peer.example': { A: ['127.0.0.1'] } });
  w = workspace(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'listen:',
      '  mx: 127.0.0.1:0',
      '  submission: 127.0.0.1:0',
      '  submissions: off',
      '  imaps: 127.0.0.1:0',
      '  pop3s: off',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'outbound:',
      `  port: ${peer.port}`,
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  for (const local of ['me', 'keep', 'old', 'soon', 'plain']) {
    await w.ok(['alias', 'add', `${local}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}-${local}\n` });
  }
  await w.ok(['alias', 'add', 'fwd@example.org', '--forward', 'friend@target.example']);
  await w.ok(['alias', 'add', 'fwdnokey@example.org', '--forward', 'nokey@target.example']);
  await w.ok(['key', 'add', 'friend@target.example', '-'], { stdin: friend.publicArmored });
  await w.ok(['key', 'add', 'me@example.org', '-'], { stdin: me.publicArmored });
  await w.ok(['key', 'add', 'keep@example.org', '-'], { stdin: keep.publicArmored });
  assert.match(await w.ok(['key', 'add', 'soon@example.org', '-'], { stdin: soon.publicArmored }), /expires \d{4}-/);
  // `fe key add` refuses an expired key, so this one is as if it had expired after being added.
  const refused = await w.fe(['key', 'add', 'old@example.org', '-'], { stdin: old.publicArmored });
  assert.match(refused.stderr, /key refused: .*expired/);
  const doc = parseDocument(w.read());
  const { readKey } = await import('openpgp');
  doc.setIn(['keys', 'old@example.org'], doc.createNode({ fingerprint: (await readKey({ armoredKey: old.publicArmored })).getFingerprint().toUpperCase(), key: old.publicArmored }));
  doc.setIn(['domains', 'example.org', 'aliases', 'keep', 'encrypt'], doc.createNode({ subject: 'keep' }));
  doc.setIn(['domains', 'example.org', 'aliases', 'fwd', 'encrypt'], true);
  doc.setIn(['domains', 'example.org', 'aliases', 'fwdnokey', 'encrypt'], true);
  w.write(doc.toString());
  // submission checks its own DKIM signature through DNS: publish what fe says to publish
  const ours = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: { name: string; type: string; text?: string }[] };
  for (const r of ours.records) if (r.type === 'TXT' && r.name.includes('._domainkey.')) dns.set(r.name, { TXT: [r.text!] });

  gnupg = mkdtempSync(path.join(tmpdir(), 'fe-gnupg-'));
  await gpg(['--import'], me.privateArmored + keep.privateArmored + friend.privateArmored);
  fe = await startServe(w.config, [], {}, ['mx', 'submission', 'imaps']);
});

after(async () => {
  await fe?.stop();
  await peer?.close();
  await dns?.close();
});

test('mail to an alias with a key is stored as PGP/MIME; gpg with the owner\'s key gives back the body and the real Subject', async () => {
  const marker = `the-secret-body-${Date.now()}`;
  await deliver('me@example.org', 'Quarterly numbers', `${marker}\nsecond line`);
  const f = await newest('me@example.org', `${PASSWORD}-me`);
  const raw = f.raw.toString('latin1');
  assert.ok(!raw.includes(marker), 'no plaintext body in what the server stores and serves');
  assert.ok(!raw.includes('Quarterly numbers'), 'the real Subject is hidden');
  // RFC 3156: multipart/encrypted, the version part, the octet-stream part
  assert.match(f.structure.outer, /^multipart\/encrypted;\s*protocol="application\/pgp-encrypted";\s*boundary="[^"]+"$/);
  assert.deepEqual(f.structure.parts.map((p) => p.type), ['application/pgp-encrypted', 'application/octet-stream']);
  assert.match(f.structure.parts[0]!.payload, /^Version: 1\r?\n/);
  assert.match(f.structure.parts[1]!.payload, /^-----BEGIN PGP MESSAGE-----\r?\n/);
  // what clients list mail by stays outside
  assert.match(f.envelope, /ENVELOPE \("[^"]*\d{4} [^"]*" "\[\.\.\.\]" \(\(NIL NIL "alice" "sender\.example"\)\)/, f.envelope);
  assert.match(f.envelope, /\(\(NIL NIL "me" "example\.org"\)\)/, 'To');
  assert.ok(f.found >= 1, 'SEARCH FROM finds it');
  assert.match(raw, /^Received: from .*\r\n\tby mail\.example\.org \(fe\)/);

  const plain = await decrypt(f);
  assert.match(plain, new RegExp(`\\r\\n\\r\\n${marker}\\r\\nsecond line\\r\\n`), 'the body as sent');
  assert.match(plain, /^Subject: Quarterly numbers\r$/m, 'the real Subject inside');
  assert.match(plain, /^Content-Type: text\/plain[^\r]*;(\r\n)? ?hp="cipher"\r$/m, 'RFC 9788: the protected part says hp="cipher"');
  assert.match(plain, /^HP-Outer: Subject: \[\.\.\.\]\r$/m, 'RFC 9788: what the outer Subject said');
  assert.match(plain, /^From: alice@sender\.example\r$/m);
  assert.ok(!/^Received:/m.test(plain), 'trace fields stay outside only');
});

test('a message whose header ends in bare LFs is split into fields: its body never lands outside', async () => {
  const marker = `bare-lf-body-${Date.now()}`;
  const s = await smtpConnect(fe.ports.mx!);
  assert.match(await s.command('EHLO client.example'), /^250/);
  assert.match(await s.command('MAIL FROM:<alice@sender.example>'), /^250/);
  assert.match(await s.command('RCPT TO:<me@example.org>'), /^250/);
  assert.match(await s.command('DATA'), /^354/);
  assert.match(await s.raw(`From: alice@sender.example\nTo: me@example.org\nSubject: bare LF\n\n${marker}\n\r\n.\r\n`), /^250/);
  s.close();
  const f = await newest('me@example.org', `${PASSWORD}-me`);
  assert.ok(!f.raw.toString('latin1').includes(marker));
  assert.match(f.envelope, /"\[\.\.\.\]"/);
  const plain = await decrypt(f);
  assert.ok(plain.includes(marker));
  assert.match(plain, /^Subject: bare LF\r$/m);
});

test('encrypt: {subject: keep} on the alias keeps the real Subject outside; the body is still encrypted', async () => {
  const marker = `kept-subject-body-${Date.now()}`;
  await deliver('keep@example.org', 'Visible subject', marker);
  const f = await newest('keep@example.org', `${PASSWORD}-keep`);
  assert.ok(!f.raw.toString('latin1').includes(marker));
  assert.match(f.envelope, /"Visible subject"/);
  const plain = await decrypt(f);
  assert.match(plain, /^Subject: Visible subject\r$/m);
  assert.match(plain, /^HP-Outer: Subject: Visible subject\r$/m);
  assert.ok(plain.includes(marker));
});

test('mail that came encrypted (gpg PGP/MIME, gpg inline, openssl S/MIME) is stored byte-identical, not encrypted again', async () => {
  const cipher = (await gpg(['--armor', '--encrypt', '--recipient', 'me@example.org'], 'Content-Type: text/plain\r\n\r\nalready secret\r\n')).toString().replace(/\r?\n/g, '\r\n');
  const head = (ct: string) => `From: alice@sender.example\r\nTo: me@example.org\r\nSubject: came encrypted ${ct}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@sender.example>\r\nMIME-Version: 1.0\r\n`;
  const pgpMime = Buffer.from(
    head('pgp-mime') +
      'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b1"\r\n\r\n' +
      '--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n' +
      cipher +
      '--b1--\r\n',
  );
  const inline = Buffer.from(head('inline') + 'Content-Type: text/plain; charset=us-ascii\r\n\r\n' + cipher);
  const certDir = mkdtempSync(path.join(tmpdir(), 'fe-smime-'));
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(certDir, 'k.pem'), '-out', path.join(certDir, 'c.pem'), '-days', '2', '-subj', '/CN=me@example.org']);
  const smimeBody = await input('openssl', ['cms', '-encrypt', '-aes256', path.join(certDir, 'c.pem')], 'Content-Type: text/plain\r\n\r\nsmime secret\r\n');
  assert.equal(smimeBody.code, 0, smimeBody.stderr);
  const smime = Buffer.from(head('smime') + smimeBody.stdout.toString().replace(/^MIME-Version: 1.0\r?\n/, '').replace(/\r?\n/g, '\r\n'));
  assert.match(smime.toString(), /application\/(x-)?pkcs7-mime; smime-type=enveloped-data/);

  for (const message of [pgpMime, inline, smime]) {
    await deliverFile('me@example.org', message);
    const f = await newest('me@example.org', `${PASSWORD}-me`);
    const sent = Buffer.concat([message, Buffer.from('\r\n')]); // swaks ends DATA with CRLF . CRLF after the file
    assert.equal(f.raw.subarray(f.raw.length - sent.length).toString('latin1'), sent.toString('latin1'), 'the sent octets end the stored message unchanged');
    assert.match(f.raw.subarray(0, f.raw.length - sent.length).toString('latin1'), /^Received: [^]*\r\n$/, "only fe's trace headers precede them");
  }
});

test('a key that expired is not used: the mail is stored sealed as usual, with a WARN in the log and in fe status', async () => {
  const marker = `to-an-expired-key-${Date.now()}`;
  await deliver('old@example.org', 'for old', marker);
  const f = await newest('old@example.org', `${PASSWORD}-old`);
  assert.ok(f.raw.toString('latin1').includes(marker), 'stored without OpenPGP');
  assert.match(f.envelope, /"for old"/);
  await fe.waitForLog(/^warn .*OpenPGP key no longer usable: message stored WITHOUT OpenPGP.*to=o\*\*\*@example\.org.*expired on \d{4}-\d\d-\d\d/m);
  assert.ok(!fe.log().includes(marker), 'the log never holds the body');

  const status = await w.fe(['status', '--checks', 'openpgp']);
  assert.equal(status.code, 0, 'WARNs do not fail fe status');
  assert.match(status.stdout, /WARN +openpgp +old@example\.org: key [0-9A-F]{40} is not used: it expired on \d{4}-\d\d-\d\d; its mail is stored WITHOUT OpenPGP/);
  assert.match(status.stdout, /WARN +openpgp +soon@example\.org: key [0-9A-F]{40} expires on \d{4}-\d\d-\d\d; after that/);
  assert.match(status.stdout, /OK +openpgp +me@example\.org: mail is encrypted to key [0-9A-F]{40}/);
});

test('a key expiring within 14 days still encrypts, and the log warns', async () => {
  const marker = `soon-${Date.now()}`;
  await deliver('soon@example.org', 'soon', marker);
  const f = await newest('soon@example.org', `${PASSWORD}-soon`);
  assert.ok(!f.raw.toString('latin1').includes(marker));
  assert.match(fe.log(), /^warn .*OpenPGP key expires soon.*to=s\*\*\*@example\.org.*expires=\d{4}-/m);
});

test('submission: the Sent copy is encrypted to the sender\'s key, the local recipient\'s copy to theirs', async () => {
  const marker = `sent-by-me-${Date.now()}`;
  const out = await swaks([
    '--server', `127.0.0.1:${fe.ports.submission}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', `${PASSWORD}-me`,
    '--from', 'me@example.org', '--to', 'keep@example.org', '--header', 'Subject: from me', '--body', marker,
  ]);
  assert.match(out, /<- +250 /, out);
  const sent = await newest('me@example.org', `${PASSWORD}-me`, 'Sent', 'me');
  assert.ok(!sent.raw.toString('latin1').includes(marker));
  assert.ok((await decrypt(sent)).includes(marker), "me@'s key opens the Sent copy");
  const got = await newest('keep@example.org', `${PASSWORD}-keep`, 'INBOX', 'me');
  assert.ok(!got.raw.toString('latin1').includes(marker));
  const plain = await decrypt(got);
  assert.ok(plain.includes(marker));
  assert.match(plain, /^DKIM-Signature: /m, 'signed before it was encrypted');
});

test('a bounce put in a mailbox with a key is encrypted to it (the DSN quotes the message)', async () => {
  const marker = `bounced-${Date.now()}`;
  const out = await swaks([
    '--server', `127.0.0.1:${fe.ports.submission}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', `${PASSWORD}-me`,
    '--from', 'me@example.org', '--to', 'refuse@target.example', '--header', 'Subject: will bounce', '--body', marker,
  ]);
  assert.match(out, /<- +250 /, out);
  // The peer refuses the recipient (550): the queue bounces at once, into me@'s INBOX.
  let dsn: Awaited<ReturnType<typeof newest>> | null = null;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 300))) {
    const n = await newest('me@example.org', `${PASSWORD}-me`, 'INBOX', 'postmaster');
    if (n.found > 0 && /postmaster/i.test(n.envelope)) {
      dsn = n;
      break;
    }
  }
  assert.ok(dsn, `a bounce arrived within 30 s\n${fe.log()}`);
  assert.match(dsn.structure.outer, /multipart\/encrypted/);
  assert.ok(!dsn.raw.toString('latin1').includes(marker), 'the quoted message is not readable on the server');
  const plain = await decrypt(dsn);
  assert.match(plain, /multipart\/report;[^]*report-type="?delivery-status/i);
  assert.match(plain, /Final-Recipient: rfc822; ?refuse@target\.example/i);
  assert.match(plain, /Action: failed/);
});

test('fe import into a mailbox with a key stores each message encrypted to it; a re-run adds nothing', async () => {
  const marker = `imported-${Date.now()}`;
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'fe-mbox-')), 'old.mbox');
  writeFileSync(file, `From alice@old.example Mon Jan  5 10:00:00 2026\nFrom: Alice <alice@old.example>\nTo: me@example.org\nSubject: from the old provider\nMessage-ID: <${marker}@old.example>\nDate: Mon, 5 Jan 2026 10:00:00 +0000\n\nThe body ${marker}.\n`);
  const first = JSON.parse(await w.ok(['import', 'me@example.org', '--mbox', file, '--password-stdin', '--json'], { stdin: `${PASSWORD}-me\n` })) as { imported: number };
  assert.equal(first.imported, 1);
  const got = await newest('me@example.org', `${PASSWORD}-me`, 'INBOX', 'alice@old.example');
  assert.match(got.structure.outer, /multipart\/encrypted/);
  assert.ok(!got.raw.toString('latin1').includes(`The body ${marker}`), 'the body is not readable on the server');
  assert.ok((await decrypt(got)).includes(`The body ${marker}`));
  const again = JSON.parse(await w.ok(['import', 'me@example.org', '--mbox', file, '--password-stdin', '--json'], { stdin: `${PASSWORD}-me\n` })) as { imported: number; duplicates: number };
  assert.deepEqual([again.imported, again.duplicates], [0, 1], 'found as a duplicate by the plaintext, though each encryption differs');
});

test('a forward alias with encrypt: true sends the copy encrypted to the target\'s key, DKIM-signed and ARC-sealed after encrypting', async () => {
  const marker = `forwarded-secret-${Date.now()}`;
  const before = peer.messages.length;
  await deliver('fwd@example.org', 'Forwarded subject', marker);
  assert.equal(peer.messages.length, before + 1);
  const got = peer.messages.at(-1)!;
  assert.deepEqual(got.to, ['friend@target.example']);
  assert.match(got.from, /^SRS0=/i);
  const raw = got.raw.toString('latin1');
  assert.ok(!raw.includes(marker), 'no plaintext leaves this host');
  assert.ok(!raw.includes('Forwarded subject'));
  const head = raw.split('\r\n\r\n')[0]!;
  assert.match(head, /^Content-Type: multipart\/encrypted; protocol="application\/pgp-encrypted";/m);
  assert.match(head, /^Subject: \[\.\.\.\]$/m);
  const verdict = await authenticate(got.raw, { ip: '127.0.0.1', helo: 'mail.example.org', mta: 'peer.test', sender: got.from, resolver: createResolver({ servers: [dns.address] }).mailauthResolver });
  assert.ok(verdict.arc, 'ARC was evaluated');
  assert.equal(verdict.arc.status.result, 'pass', 'the ARC seal covers the encrypted copy');
  // Signed by the alias domain after encrypting: python3-dkim verifies the copy as received.
  assert.match(head, /^DKIM-Signature: [^]*?d=example\.org;/m);
  const records = Object.fromEntries(activeSigners(loadConfig(w.config), 'example.org').map((s) => [`${s.selector}._domainkey.example.org`, dkimRecord(s)]));
  const dkim = await pythonDkimVerify(got.raw, records);
  assert.ok(dkim.length >= 1 && dkim.every(Boolean), `every DKIM signature verifies: ${JSON.stringify(dkim)}`);
  const armored = /-----BEGIN PGP MESSAGE-----[^]*?-----END PGP MESSAGE-----\r\n/.exec(raw)?.[0];
  assert.ok(armored);
  const plain = (await gpg(['--decrypt'], armored)).toString('utf8');
  assert.ok(plain.includes(marker), "the target's key opens it");
  assert.match(plain, /^Subject: Forwarded subject\r$/m);
});

test('a forward alias with encrypt: true whose target has no key forwards as it came, with a WARN', async () => {
  const marker = `forwarded-plain-${Date.now()}`;
  await deliver('fwdnokey@example.org', 'no key', marker);
  assert.ok(peer.messages.at(-1)!.raw.toString('latin1').includes(marker));
  await fe.waitForLog(/^warn .*target has no OpenPGP key: forwarded WITHOUT OpenPGP.*to=n\*\*\*@target\.example/m);
});

test('an alias without a key is stored as it came', async () => {
  const marker = `no-key-${Date.now()}`;
  await deliver('plain@example.org', 'plain', marker);
  const f = await newest('plain@example.org', `${PASSWORD}-plain`);
  assert.ok(f.raw.toString('latin1').includes(marker));
  assert.ok(!f.raw.toString('latin1').includes('multipart/encrypted'));
});

test('fe.yml: encrypt takes true or {subject: keep|hide}; false and other values are refused with the fix', async () => {
  const t = workspace();
  await t.ok(['domain', 'add', 'example.org']);
  await t.ok(['alias', 'add', 'x@example.org', '--forward', 'y@remote.example']);
  const base = t.read();
  t.write(base.replace('example.org:\n', 'example.org:\n    encrypt:\n      subject: keep\n'));
  assert.match(t.read(), /encrypt:\n      subject: keep/, 'the test edits fe.yml as intended');
  assert.equal((await t.fe(['config', 'check'])).code, 0);
  t.write(base.replace('example.org:\n', 'example.org:\n    encrypt:\n      subject: maybe\n'));
  const bad = await t.fe(['config', 'check']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stdout + bad.stderr, /fe\.yml:\d+:\d+: domains\.example\.org\.encrypt\.subject: must be keep or hide/);
  t.write(base.replace(/(\n +x:\n)/, '$1        encrypt: false\n'));
  const off = await t.fe(['config', 'check']);
  assert.notEqual(off.code, 0);
  assert.match(off.stdout + off.stderr, /aliases\.x\.encrypt: .*fe key remove/);
});
