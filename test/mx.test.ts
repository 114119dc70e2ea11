// The inbound MX as a sending server meets it: a real `fe serve`, real clients (swaks, nodemailer,
// raw SMTP), a DNS server on loopback for every lookup, and a peer MX as the forwarding target.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { authenticate } from 'mailauth';
import { createResolver } from '../src/dns/resolver.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { filesUnder, workspace } from './helpers/fe.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';

const run = promisify(execFile);

// A sender domain whose mail really comes from 127.0.0.1 and is DKIM-signed.
const sender = generateKeyPairSync('rsa', { modulusLength: 2048 });
const senderPub = sender.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const senderKeyPem = sender.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

let dns: DnsServer;
let peer: PeerMx;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let mxPort: number;
const marker = `MARKER-${Date.now()}-plaintext-must-not-leak`;

function spoolFiles(domain: string, local: string): string[] {
  const dir = path.join(w.dataDir, 'mailboxes', domain, local, 'spool');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.sealed')) : [];
}

async function swaks(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('swaks', ['--server', `127.0.0.1:${mxPort}`, '--hide-informational', ...args], { timeout: 30_000 });
    return stdout;
  } catch (e) {
    return (e as { stdout: string }).stdout; // swaks exits non-zero when the server refuses
  }
}

before(async () => {
  peer = await startPeerMx();
  dns = await startDnsServer({
    'sender.example': { TXT: ['v=spf1 ip4:127.0.0.1 -all'], MX: [{ priority: 10, exchange: 'mx.peer.example' }] },
    'sel._domainkey.sender.example': { TXT: [`v=DKIM1; k=rsa; p=${senderPub}`] },
    '_dmarc.sender.example': { TXT: ['v=DMARC1; p=reject'] },
    // a domain that publishes p=reject and does not list us: forged mail from it must bounce
    'strict.example': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
    '_dmarc.strict.example': { TXT: ['v=DMARC1; p=reject'] },
    // SPF hard fail and no DMARC at all
    'nodmarc.example': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
    // forwarding targets: their MX is the peer on loopback
    'target.example': { MX: [{ priority: 10, exchange: 'mx.peer.example' }] },
    'mx.peer.example': { A: ['127.0.0.1'] },
  }, { servfail: ['_dmarc.flaky.example'] });
  w = workspace(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'listen:',
      '  mx: 127.0.0.1:0',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'outbound:',
      `  port: ${peer.port}`,
      'limits:',
      '  message_size: 200000',
      '  connections_per_ip: 20',
      '  messages_per_ip_per_minute: 1000',
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  // An Ed25519 key signs too, listed first: ARC sealing must still pick the RSA key (mailauth seals with RSA only).
  await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']);
  w.write(w.read().replace(/active: \[(\w+), (\w+)\]/, 'active: [$2, $1]'));
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
  await w.ok(['alias', 'add', 'shop@example.org', '--forward', 'alice@target.example']);
  await w.ok(['alias', 'add', 'both@example.org', '--mailbox', '--forward', 'bob@target.example']);
  await w.ok(['alias', 'add', 'local@example.org', '--forward', 'me@example.org']);
  await w.ok(['alias', 'add', 'busy@example.org', '--forward', 'defer@target.example']);
  await w.ok(['alias', 'add', 'gone@example.org', '--forward', 'refuse@target.example']);
  // publish our own DKIM key in the test DNS, so the peer can verify our ARC seal
  const ours = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: { name: string; type: string; text?: string }[] };
  for (const r of ours.records.filter((r) => r.type === 'TXT')) dns.set(r.name.replace(/\.$/, ''), { TXT: [r.text!] });
  fe = await startServe(w.config, ['--only', 'mx']);
  mxPort = fe.ports.mx!;
});

after(async () => {
  await fe?.stop();
  await peer?.close();
  await dns?.close();
});

test('a message to a mailbox alias is sealed into its spool; its text is nowhere on disk', async () => {
  const before = spoolFiles('example.org', 'me').length;
  const out = await swaks(['--from', 'someone@nowhere.example', '--to', 'me@example.org', '--header', `Subject: ${marker}`, '--body', `${marker}\n`]);
  assert.match(out, /<- {2}250 2\.0\.0 Ok: queued as [0-9a-f]+/);
  assert.equal(spoolFiles('example.org', 'me').length, before + 1);
  for (const file of filesUnder(w.dir)) {
    assert.equal(readFileSync(file).includes(marker), false, `${file} holds no plaintext`);
  }
  assert.doesNotMatch(fe.log(), new RegExp(marker), 'not in the log either');
  assert.doesNotMatch(fe.log(), /someone@nowhere\.example/, 'no full addresses in the log');
});

test('recipients: case-insensitive, +tag sub-addressing, unknown users and relaying refused at RCPT', async () => {
  const s = await smtpConnect(mxPort);
  assert.match(s.greeting, /^220 mail\.example\.org .*fe ESMTP/);
  const ehlo = await s.command('EHLO client.test');
  for (const ext of ['STARTTLS', 'SIZE 200000', '8BITMIME', 'SMTPUTF8', 'PIPELINING']) assert.match(ehlo, new RegExp(`250[- ]${ext}`), ext);
  assert.doesNotMatch(ehlo, /AUTH/, 'no AUTH on the MX');
  assert.match(await s.command('MAIL FROM:<someone@nowhere.example>'), /^250/);
  assert.match(await s.command('RCPT TO:<ME@EXAMPLE.ORG>'), /^250/);
  assert.match(await s.command('RCPT TO:<me+receipts@example.org>'), /^250/);
  assert.match(await s.command('RCPT TO:<nobody@example.org>'), /^550 5\.1\.1 /);
  assert.match(await s.command('RCPT TO:<victim@gmail.example>'), /^554 5\.7\.1 Relaying denied/);
  assert.match(await s.command('RCPT TO:<not an address>'), /^5\d\d /);
  assert.match(await s.command('QUIT'), /^221/);
  s.close();
});

test('malformed SMTP gets clear errors and the server stays up', async () => {
  const s = await smtpConnect(mxPort);
  assert.match(await s.command('HELLO?'), /^500 /);
  assert.match(await s.command('RCPT TO:<me@example.org>'), /^503 /, 'RCPT before MAIL');
  assert.match(await s.command('DATA'), /^503 /, 'DATA before RCPT');
  assert.match(await s.command('EHLO x'), /^250/);
  assert.match(await s.command('MAIL FROM:<a@b.example> SIZE=999999999'), /^552 /, 'declared size over the limit');
  assert.match(await s.command('MAIL FROM:<a@b.example> BOGUS=1'), /^555 5\.5\.4 /, 'unknown MAIL parameter');
  s.close();
  const again = await smtpConnect(mxPort);
  assert.match(again.greeting, /^220/);
  again.close();
});

test('an oversized message is refused with 552 and nothing is stored', async () => {
  const before = spoolFiles('example.org', 'me').length;
  const s = await smtpConnect(mxPort);
  await s.command('EHLO client.test');
  await s.command('MAIL FROM:<someone@nowhere.example>');
  await s.command('RCPT TO:<me@example.org>');
  assert.match(await s.command('DATA'), /^354/);
  const line = 'x'.repeat(998) + '\r\n';
  const reply = await s.raw('Subject: big\r\n\r\n' + line.repeat(300) + '.\r\n');
  assert.match(reply, /^552 /);
  s.close();
  assert.equal(spoolFiles('example.org', 'me').length, before);
});

test('broken MIME is accepted and stored as it came', async () => {
  const before = spoolFiles('example.org', 'me').length;
  const s = await smtpConnect(mxPort);
  await s.command('EHLO client.test');
  await s.command('MAIL FROM:<someone@nowhere.example>');
  await s.command('RCPT TO:<me@example.org>');
  await s.command('DATA');
  const broken = 'Content-Type: multipart/mixed; boundary="never-closed"\r\nSubject: =?utf-8?B?broken\r\n\r\n--never-closed\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n.\r\n';
  assert.match(await s.raw(broken), /^250 /);
  s.close();
  assert.equal(spoolFiles('example.org', 'me').length, before + 1);
});

test('a forward alias relays in memory with SRS, ARC and the original DKIM intact', async () => {
  const before = peer.messages.length;
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: mxPort, secure: false, tls: { rejectUnauthorized: false }, name: 'client.sender.example' });
  await transport.sendMail({
    envelope: { from: 'alice@sender.example', to: ['shop@example.org'] },
    from: 'Alice <alice@sender.example>',
    to: 'shop@example.org',
    subject: 'order 42',
    text: 'please ship it\n',
    dkim: { domainName: 'sender.example', keySelector: 'sel', privateKey: senderKeyPem },
  });
  transport.close();
  assert.equal(peer.messages.length, before + 1);
  const got = peer.messages.at(-1)!;
  assert.deepEqual(got.to, ['alice@target.example']);
  assert.match(got.from, /^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=sender\.example=alice@example\.org$/i, 'envelope sender rewritten with SRS');
  assert.ok(got.secure, 'delivered over STARTTLS');
  assert.equal(spoolFiles('example.org', 'shop').length, 0, 'nothing kept on disk for a forward alias');
  const head = got.raw.toString('latin1').split('\r\n\r\n')[0]!;
  assert.match(head, /^ARC-Seal: i=1; a=rsa-sha256; .*cv=none/m);
  const rsaSelector = (JSON.parse(await w.ok(['dkim', 'list', 'example.org', '--json'])) as { selector: string; algorithm: string; active: boolean }[]).find((k) => k.active && k.algorithm === 'rsa')!.selector;
  assert.match(head.replace(/\r\n\s+/g, ' '), new RegExp(`^ARC-Seal: .*; s=${rsaSelector};`, 'm'), 'sealed with the RSA key');
  assert.match(head, /^Authentication-Results: mail\.example\.org;/m);
  // The peer's own verdict, with the same DNS: SPF passes for the SRS sender? Not needed; DKIM and ARC must verify.
  const verdict = await authenticate(got.raw, { ip: '127.0.0.1', helo: 'mail.example.org', mta: 'peer.test', sender: got.from, resolver: createResolver({ servers: [dns.address] }).mailauthResolver });
  assert.equal(verdict.dkim.results.find((r) => r.signingDomain === 'sender.example')?.status.result, 'pass', 'original DKIM survives forwarding');
  assert.ok(verdict.arc, 'ARC was evaluated');
  assert.equal(verdict.arc.status.result, 'pass', 'our ARC seal verifies');
  assert.match(verdict.arc.authResults ?? '', /dkim=pass/);
});

test('a bounce to an SRS address goes back to the original sender', async () => {
  const forwarded = peer.messages.find((m) => /^SRS0=/i.test(m.from));
  assert.ok(forwarded, 'a forwarded message exists (previous test)');
  const before = peer.messages.length;
  const out = await swaks(['--from', '<>', '--to', forwarded.from, '--header', 'Subject: Undelivered Mail', '--body', 'bounce\n']);
  assert.match(out, /<- {2}250 /);
  const bounce = peer.messages.at(-1)!;
  assert.equal(peer.messages.length, before + 1);
  assert.deepEqual(bounce.to, ['alice@sender.example']);
  assert.equal(bounce.from, '', 'bounces travel with the null sender');
  const forged = await swaks(['--from', '<>', '--to', 'SRS0=AAAA=AA=sender.example=alice@example.org']);
  assert.match(forged, /<\*\* +5\d\d /, 'a forged SRS address is refused');
});

test('mailbox + forward alias does both; a local forward lands in the local mailbox', async () => {
  const beforeBoth = spoolFiles('example.org', 'both').length;
  const beforePeer = peer.messages.length;
  assert.match(await swaks(['--from', 'alice@sender.example', '--to', 'both@example.org']), /<- {2}250 /);
  assert.equal(spoolFiles('example.org', 'both').length, beforeBoth + 1);
  assert.equal(peer.messages.length, beforePeer + 1);
  assert.deepEqual(peer.messages.at(-1)!.to, ['bob@target.example']);

  const beforeMe = spoolFiles('example.org', 'me').length;
  assert.match(await swaks(['--from', 'alice@sender.example', '--to', 'local@example.org']), /<- {2}250 /);
  assert.equal(spoolFiles('example.org', 'me').length, beforeMe + 1);
  assert.equal(peer.messages.length, beforePeer + 1, 'nothing went out for a local target');
});

test('the next hop deferring gives 451; refusing gives 550 with its reason', async () => {
  const deferred = await swaks(['--from', 'alice@sender.example', '--to', 'busy@example.org']);
  assert.match(deferred, /<\*\* +451 4\.4\.0 Forwarding deferred \(.*Mailbox busy/);
  const refused = await swaks(['--from', 'alice@sender.example', '--to', 'gone@example.org']);
  assert.match(refused, /<\*\* +550 5\.1\.0 Forwarding refused by the next hop: .*No such mailbox at the peer/);
});

test('DMARC and SPF policy: forged p=reject mail is refused, a DMARC DNS failure defers', async () => {
  const forged = await swaks(['--from', 'ceo@strict.example', '--to', 'me@example.org', '--header', 'From: ceo@strict.example']);
  assert.match(forged, /<\*\* +550 5\.7\.\d+ /);
  const hardfail = await swaks(['--from', 'x@nodmarc.example', '--to', 'me@example.org', '--header', 'From: x@nodmarc.example']);
  assert.match(hardfail, /<\*\* +550 5\.7\.23 /);
  const flaky = await swaks(['--from', 'x@flaky.example', '--to', 'me@example.org', '--header', 'From: x@flaky.example']);
  assert.match(flaky, /<\*\* +451 4\.7\.\d /);
  const genuine = await swaks(['--from', 'alice@sender.example', '--to', 'me@example.org', '--header', 'From: alice@sender.example']);
  assert.match(genuine, /<- {2}250 /, 'SPF-aligned mail from the same p=reject domain passes');
});

test('a forged Authentication-Results in our name is removed', async () => {
  const { stripOwnAuthResults } = await import('../src/smtp/mx.js');
  const msg = Buffer.from('Authentication-Results: mail.example.org; dkim=pass\r\n header.d=bank.example\r\nAuthentication-Results: other.example; spf=pass\r\nSubject: hi\r\n\r\nbody\r\n');
  const out = stripOwnAuthResults(msg, 'mail.example.org').toString();
  assert.equal(out, 'Authentication-Results: other.example; spf=pass\r\nSubject: hi\r\n\r\nbody\r\n');
});

test('SIGHUP reloads fe.yml without a restart; a broken file keeps the running config', async () => {
  await w.ok(['alias', 'add', 'later@example.org', '--forward', 'alice@target.example']);
  const s = await smtpConnect(mxPort);
  await s.command('EHLO client.test'); // a session open across the reload
  fe.signal('SIGHUP');
  await fe.waitForLog(/configuration reloaded domains=1/);
  await s.command('MAIL FROM:<alice@sender.example>');
  assert.match(await s.command('RCPT TO:<later@example.org>'), /^250/, 'the new alias works, in a session opened before the reload');
  s.close();

  const good = w.read();
  w.write(good + 'bogus_key: 1\n');
  fe.signal('SIGHUP');
  await fe.waitForLog(/configuration not reloaded; keeping the running one/);
  assert.match(await swaks(['--from', 'alice@sender.example', '--to', 'me@example.org']), /<- {2}250 /);
  w.write(good);
});

test('the owner opens the mailbox with the password: spooled mail is imported, byte for byte', async () => {
  const original = `From: alice@sender.example\r\nTo: me@example.org\r\nSubject: round trip ${Date.now()}\r\nMessage-ID: <rt@sender.example>\r\n\r\nline one\r\n..starts with a dot\r\n\u00e9t\u00e9 8-bit\r\n`;
  const s = await smtpConnect(mxPort);
  await s.command('EHLO client.test');
  await s.command('MAIL FROM:<alice@sender.example> BODY=8BITMIME');
  await s.command('RCPT TO:<me@example.org>');
  await s.command('DATA');
  // dot-stuffing on the wire: a line starting with "." is sent as ".."
  assert.match(await s.raw(Buffer.from(original.replace(/\r\n\./g, '\r\n..') + '.\r\n', 'utf8')), /^250 /);
  s.close();
  const waiting = spoolFiles('example.org', 'me').length;
  assert.ok(waiting >= 1);

  const wrong = await w.fe(['mailbox', 'status', 'me@example.org', '--password-stdin'], { stdin: 'not the password\n' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /wrong password for me@example\.org/);
  assert.equal(spoolFiles('example.org', 'me').length, waiting, 'a wrong password leaves the spool alone');

  const status = JSON.parse(await w.ok(['mailbox', 'status', 'me@example.org', '--password-stdin', '--json'], { stdin: 'correct horse battery staple\n' })) as { imported: number; folders: { name: string; messages: number }[] };
  assert.equal(status.imported, waiting);
  assert.equal(spoolFiles('example.org', 'me').length, 0, 'the spool is emptied once imported');
  assert.deepEqual(status.folders.map((f) => f.name).sort(), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash']);
  const inbox = status.folders.find((f) => f.name === 'INBOX')!;
  assert.ok(inbox.messages >= waiting);

  // Read it back through the same store code the IMAP server will use.
  const { unlockMailboxKey } = await import('../src/crypto/mailbox-key.js');
  const { MailboxStore } = await import('../src/store/mailbox-db.js');
  const dir = path.join(w.dataDir, 'mailboxes', 'example.org', 'me');
  const store = MailboxStore.open(dir, unlockMailboxKey(dir, 'correct horse battery staple'));
  try {
    const last = store.listMessages('INBOX').at(-1)!;
    const raw = store.getRaw('INBOX', last.uid)!;
    assert.ok(raw.subarray(raw.length - Buffer.byteLength(original)).equals(Buffer.from(original, 'utf8')), 'the original bytes follow our trace headers unchanged');
    assert.match(raw.toString('utf8'), /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.org \(fe\) with ESMTP id [0-9a-f]+;/);
  } finally {
    store.close();
  }
  const again = JSON.parse(await w.ok(['mailbox', 'status', 'me@example.org', '--password-stdin', '--json'], { stdin: 'correct horse battery staple\n' })) as { imported: number };
  assert.equal(again.imported, 0, 'nothing is imported twice');
  // imported into the encrypted database, the first test's marker is still nowhere on disk
  for (const file of filesUnder(w.dir)) assert.equal(readFileSync(file).includes(marker), false, `${file} holds no plaintext`);
});
