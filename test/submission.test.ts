// Sending mail end to end: a real `fe serve` (submission, queue, IMAP), real clients (swaks,
// Python smtplib, nodemailer), a loopback DNS server, a peer MX standing in for the world, the
// DKIM signature checked by Debian's python3-dkim, the DSN parsed by Python's email package.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { smtpConnect } from './helpers/smtp-client.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';
import { neomutt } from './helpers/neomutt.js';
import { pythonDkimVerify } from './helpers/python-dkim.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
const OTHER_PASSWORD = 'another long password here';

let dns: DnsServer;
let peer: PeerMx;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let dkimRecords: Record<string, string> = {};

async function swaks(port: number, args: string[]): Promise<string> {
  try {
    const { stdout } = await run('swaks', ['--server', `127.0.0.1:${port}`, '--hide-informational', ...args], { timeout: 30_000 });
    return stdout;
  } catch (e) {
    return (e as { stdout: string }).stdout;
  }
}

function python(script: string, input = '', args: string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited ${code}: ${err}`))));
    child.stdin.end(input);
  });
}

/** Every message in a folder over IMAPS, as raw text, via Python's imaplib. */
async function imapFolder(user: string, password: string, folder: string): Promise<{ flags: string; raw: string }[]> {
  const script = `
import imaplib, ssl, json, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx)
m.login(sys.argv[2], sys.argv[3])
typ, _ = m.select(sys.argv[4])
out = []
typ, data = m.uid('FETCH', '1:*', '(FLAGS BODY.PEEK[])')
for part in data:
    if isinstance(part, tuple):
        out.append({'flags': part[0].decode(), 'raw': part[1].decode('utf-8', 'replace')})
    elif isinstance(part, bytes) and out:
        out[-1]['flags'] += part.decode()  # FLAGS may come after the literal
print(json.dumps(out))
m.logout()
`;
  return JSON.parse(await python(script, '', [String(fe.ports.imaps), user, password, folder])) as { flags: string; raw: string }[];
}

async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${fe.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function spoolCount(local: string): number {
  const dir = path.join(w.dataDir, 'mailboxes', 'example.org', local, 'spool');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.sealed')).length : 0;
}

before(async () => {
  peer = await startPeerMx();
  dns = await startDnsServer({
    'remote.example': { MX: [{ priority: 10, exchange: 'mx.remote.example' }] },
    'mx.remote.example': { A: ['127.0.0.1'] },
    'nomail.example': { MX: [{ priority: 0, exchange: '.' }] },
  });
  w = workspace(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'listen:',
      '  mx: 127.0.0.1:0',
      '  submission: 127.0.0.1:0',
      '  submissions: 127.0.0.1:0',
      '  imaps: 127.0.0.1:0',
      '  pop3s: off',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'outbound:',
      `  port: ${peer.port}`,
      'limits:',
      '  send_recipients_per_message: 5',
      'queue:',
      '  give_up_after: 1h',
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  await w.ok(['alias', 'add', 'other@example.org', '--mailbox', '--password-stdin'], { stdin: `${OTHER_PASSWORD}\n` });
  await w.ok(['alias', 'add', 'team@example.org', '--forward', 'other@example.org,friend@remote.example']);
  // me may also send as sales@ (an address of a served domain that is not its own)
  w.write(w.read().replace('      me:\n        mailbox: true\n', '      me:\n        mailbox: true\n        send_as: [sales@example.org]\n'));
  assert.match(w.read(), /send_as: \[sales@example\.org\]/, 'the test edits fe.yml as intended');
  // other@ has a sending limit of its own, tighter than the global one
  w.write(w.read().replace('      other:\n        mailbox: true\n', '      other:\n        mailbox: true\n        limits: { send_recipients_per_message: 2 }\n'));
  assert.match(w.read(), /limits: \{ send_recipients_per_message: 2 \}/, 'the test edits fe.yml as intended');
  // tight@ gets fewer messages and recipients than the defaults, wide@ more recipients a message than the global 5
  await w.ok(['alias', 'add', 'tight@example.org', '--mailbox', '--password-stdin'], { stdin: `${OTHER_PASSWORD}\n` });
  await w.ok(['alias', 'add', 'wide@example.org', '--mailbox', '--password-stdin'], { stdin: `${OTHER_PASSWORD}\n` });
  w.write(w.read().replace('      tight:\n        mailbox: true\n', '      tight:\n        mailbox: true\n        limits: { send_messages_per_hour: 2, send_recipients_per_day: 3 }\n'));
  w.write(w.read().replace('      wide:\n        mailbox: true\n', '      wide:\n        mailbox: true\n        limits: { send_recipients_per_message: 8 }\n'));
  assert.match(w.read(), /limits: \{ send_messages_per_hour: 2, send_recipients_per_day: 3 \}/, 'the test edits fe.yml as intended');
  assert.match(w.read(), /limits: \{ send_recipients_per_message: 8 \}/, 'the test edits fe.yml as intended');
  const ours = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: { name: string; type: string; text?: string }[] };
  dkimRecords = Object.fromEntries(ours.records.filter((r) => r.type === 'TXT' && r.name.includes('._domainkey.')).map((r) => [r.name.replace(/\.$/, ''), r.text!]));
  assert.equal(Object.keys(dkimRecords).length, 2, 'an RSA and an Ed25519 key are published');
  fe = await startServe(w.config, [], { FE_TEST_QUEUE_RETRY_MS: '300' }, ['mx', 'submission', 'submissions', 'imaps']);
});

after(async () => {
  await fe?.stop();
  await peer?.close();
  await dns?.close();
});

test('on 587 a login before STARTTLS is refused and nothing can be sent', async () => {
  const s = await smtpConnect(fe.ports.submission!);
  assert.match(s.greeting, /^220 mail\.example\.org /);
  const ehlo = await s.command('EHLO client.test');
  assert.match(ehlo, /250[- ]STARTTLS/);
  assert.match(await s.command(`AUTH PLAIN ${Buffer.from(`\0me@example.org\0${PASSWORD}`).toString('base64')}`), /^538 .*STARTTLS/, 'refused before the password is even looked at');
  assert.match(await s.command('MAIL FROM:<me@example.org>'), /^530 /, 'mail without a login is refused');
  s.close();
});

test('a wrong password is 535 5.7.8 and says nothing more; an unknown user looks the same', async () => {
  const wrong = await swaks(fe.ports.submission!, ['--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', 'not the password', '--from', 'me@example.org', '--to', 'friend@remote.example']);
  assert.match(wrong, /<~\* +535 5\.7\.8 Authentication credentials invalid/);
  const unknown = await swaks(fe.ports.submission!, ['--tls', '--auth', 'PLAIN', '--auth-user', 'nobody@example.org', '--auth-password', 'whatever', '--from', 'nobody@example.org', '--to', 'friend@remote.example']);
  assert.match(unknown, /<~\* +535 5\.7\.8 Authentication credentials invalid/);
});

test('swaks over STARTTLS: the message leaves DKIM-signed (RSA and Ed25519, verified by python3-dkim), without Bcc, with Message-ID and Date', async () => {
  const before = peer.messages.length;
  const out = await swaks(fe.ports.submission!, [
    '--tls', '--auth', 'LOGIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD,
    '--from', 'me@example.org', '--to', 'friend@remote.example',
    '--data', 'From: Me <me@example.org>\r\nTo: friend@remote.example\r\nBcc: secret@remote.example\r\nSubject: hello from fe\r\n\r\nThe body of the first message.\r\n',
  ]);
  assert.match(out, /<~ {2}250 2\.0\.0 Ok: queued as <[^>]+@example\.org>/);
  const got = await waitFor('the peer to receive it', () => peer.messages.slice(before).find((m) => m.raw.includes('hello from fe')));
  assert.deepEqual(got.to, ['friend@remote.example']);
  assert.equal(got.from, 'me@example.org');
  const text = got.raw.toString();
  assert.doesNotMatch(text, /^Bcc:/im, 'Bcc is removed');
  assert.doesNotMatch(text, /secret@remote\.example/);
  assert.match(text, /^Message-ID: <[^>]+@example\.org>\r$/im);
  assert.match(text, /^Date: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r$/m);
  assert.match(text, /^DKIM-Signature:.*a=rsa-sha256/ims);
  assert.match(text, /^DKIM-Signature:.*a=ed25519-sha256/ims);
  assert.deepEqual(await pythonDkimVerify(text, dkimRecords), [true, true], 'both signatures verify at the receiving end');
  const tampered = text.replace('The body of the first message.', 'The body was changed.');
  assert.deepEqual(await pythonDkimVerify(tampered, dkimRecords), [false, false], 'a changed body fails both');
});

test('the sender\'s copy lands in Sent (\\Seen, Bcc kept, same Message-ID), read back over IMAPS', async () => {
  const sent = await waitFor('the Sent copy', async () => {
    const msgs = await imapFolder('me@example.org', PASSWORD, 'Sent');
    return msgs.find((m) => m.raw.includes('hello from fe'));
  });
  assert.match(sent.flags, /\\Seen/);
  assert.match(sent.raw, /^Bcc: secret@remote\.example\r$/m, 'the owner keeps the Bcc in their own copy');
  const outgoing = peer.messages.find((m) => m.raw.includes('hello from fe'))!.raw.toString();
  assert.equal(/^Message-ID: (.*)\r$/im.exec(sent.raw)![1], /^Message-ID: (.*)\r$/im.exec(outgoing)![1]);
});

test('a client that saves to Sent itself (IMAP APPEND of the same Message-ID) replaces the server\'s copy; other sessions see it go', async () => {
  const id = `<client-saves-${Date.now()}@example.org>`;
  const out = await swaks(fe.ports.submission!, [
    '--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'me@example.org', '--to', 'friend@remote.example',
    '--data', `From: me@example.org\r\nTo: friend@remote.example\r\nSubject: saved twice?\r\nMessage-ID: ${id}\r\n\r\nbody\r\n`,
  ]);
  assert.match(out, /250 2\.0\.0 Ok/);
  await waitFor('the server copy', async () => (await imapFolder('me@example.org', PASSWORD, 'Sent')).some((m) => m.raw.includes(id)));
  // Thunderbird's way: APPEND its own copy to Sent after sending, while another session watches Sent.
  const script = `
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
watch = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx); watch.login(sys.argv[2], sys.argv[3]); watch.select('Sent')
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx); m.login(sys.argv[2], sys.argv[3])
msg = ('From: me@example.org\\r\\nTo: friend@remote.example\\r\\nSubject: saved twice?\\r\\nMessage-ID: ' + sys.argv[4] + '\\r\\nX-Client-Copy: yes\\r\\n\\r\\nbody\\r\\n').encode()
print(m.append('Sent', '(\\\\Seen)', None, msg)[0])
time.sleep(0.3)
typ, data = watch.noop()
print(any(b'EXPUNGE' in (d or b'') for d in watch.untagged_responses.get('EXPUNGE', [])) or 'EXPUNGE' in watch.untagged_responses)
m.logout(); watch.logout()
`;
  const lines = (await python(script, '', [String(fe.ports.imaps), 'me@example.org', PASSWORD, id])).trim().split('\n');
  assert.deepEqual(lines, ['OK', 'True'], 'APPEND succeeded and the watching session was told of the expunge');
  const copies = (await imapFolder('me@example.org', PASSWORD, 'Sent')).filter((m) => m.raw.includes(id));
  assert.equal(copies.length, 1, 'one copy in Sent');
  assert.match(copies[0]!.raw, /^X-Client-Copy: yes\r$/m, 'the client\'s copy is the one kept');
});

test('Python smtplib on 465 (implicit TLS) sends as an allowed send_as address', async () => {
  const before = peer.messages.length;
  const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ctx)
s.login('me@example.org', sys.argv[2])
s.sendmail('sales@example.org', ['friend@remote.example'], b'From: Sales <sales@example.org>\\r\\nTo: friend@remote.example\\r\\nSubject: from sales\\r\\n\\r\\nhi\\r\\n')
s.quit()
print('sent')
`;
  assert.equal((await python(script, '', [String(fe.ports.submissions), PASSWORD])).trim(), 'sent');
  const got = await waitFor('the peer to receive it', () => peer.messages.slice(before).find((m) => m.raw.includes('from sales')));
  assert.equal(got.from, 'sales@example.org');
});

test('a message with UTF-8 in its Subject and From name (ASCII addresses) from smtplib leaves with SMTPUTF8, byte for byte, its DKIM signatures verified by python3-dkim', async () => {
  const before = peer.messages.length;
  const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ctx)
s.login('me@example.org', sys.argv[2])
msg = 'From: "J\\u00fcrgen Gro\\u00df" <me@example.org>\\r\\nTo: friend@remote.example\\r\\nSubject: Gr\\u00fc\\u00dfe aus K\\u00f6ln\\r\\nContent-Type: text/plain; charset=utf-8\\r\\nContent-Transfer-Encoding: 8bit\\r\\n\\r\\nS\\u00fc\\u00df\\r\\n'.encode('utf-8')
s.sendmail('me@example.org', ['friend@remote.example'], msg, mail_options=['SMTPUTF8', 'BODY=8BITMIME'])
s.quit()
print('sent')
`;
  assert.equal((await python(script, '', [String(fe.ports.submissions), PASSWORD])).trim(), 'sent');
  const got = await waitFor('the peer to receive it', () => peer.messages.slice(before).find((m) => m.raw.includes(Buffer.from('Subject: Gr\u00fc\u00dfe aus K\u00f6ln\r\n', 'utf8'))));
  assert.equal(got.smtpUtf8, true, 'MAIL FROM carried SMTPUTF8 to the next hop');
  assert.equal(got.bodyType, '8bitmime');
  assert.ok(got.raw.includes(Buffer.from('From: "J\u00fcrgen Gro\u00df" <me@example.org>', 'utf8')), 'the From name is untouched');
  assert.deepEqual(await pythonDkimVerify(got.raw, dkimRecords), [true, true], 'both signatures verify over the UTF-8 header fields');
});

test('sending as an address the mailbox does not own is 550 5.7.1 naming it, for MAIL FROM and for From', async () => {
  const envelope = await swaks(fe.ports.submission!, ['--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'other@example.org', '--to', 'friend@remote.example']);
  assert.match(envelope, /550 5\.7\.1 me@example\.org may not send as other@example\.org \(MAIL FROM\)/);
  const header = await swaks(fe.ports.submission!, [
    '--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'me+lists@example.org', '--to', 'friend@remote.example',
    '--data', 'From: Boss <ceo@remote.example>\r\nTo: friend@remote.example\r\nSubject: forged\r\n\r\nx\r\n',
  ]);
  assert.match(header, /550 5\.7\.1 me@example\.org may not send as ceo@remote\.example \(From header\)/);
  assert.ok(!peer.messages.some((m) => m.raw.includes('Subject: forged')));
});

test('too many recipients for one message is 452 4.5.3 with the limit', async () => {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: fe.ports.submissions!, secure: true, tls: { rejectUnauthorized: false }, auth: { user: 'me@example.org', pass: PASSWORD } });
  const info = await t.sendMail({ from: 'me@example.org', to: ['a@remote.example', 'b@remote.example', 'c@remote.example', 'd@remote.example', 'e@remote.example', 'f@remote.example'], subject: 'too many', text: 'x' });
  assert.deepEqual(info.rejected, ['f@remote.example'], 'the sixth recipient is refused, the first five accepted');
  assert.match(String((info.rejectedErrors?.[0] as { response?: string } | undefined)?.response), /^452 4\.5\.3 Too many recipients \(at most 5/);
  t.close();
  // a mailbox's own limits: in fe.yml override the global ones for that mailbox only
  const o = nodemailer.createTransport({ host: '127.0.0.1', port: fe.ports.submissions!, secure: true, tls: { rejectUnauthorized: false }, auth: { user: 'other@example.org', pass: OTHER_PASSWORD } });
  const own = await o.sendMail({ from: 'other@example.org', to: ['a@remote.example', 'b@remote.example', 'c@remote.example'], subject: 'own limit', text: 'x' });
  assert.deepEqual(own.rejected, ['c@remote.example'], 'the third recipient is refused under its own limit of 2');
  assert.match(String((own.rejectedErrors?.[0] as { response?: string } | undefined)?.response), /^452 4\.5\.3 Too many recipients \(at most 2 a message/);
  o.close();
});

test('Python smtplib over 587: a mailbox\'s own limits in fe.yml give it fewer messages and recipients (451 4.7.1, 452 4.5.3 naming the limit) or more recipients a message than the global ones', async () => {
  const script = `
import smtplib, ssl, sys, json
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def login(user):
    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))
    s.starttls(context=ctx)
    s.login(user, sys.argv[2])
    return s
def send(s, sender, rcpts, subject):
    msg = ('From: %s\\r\\nTo: list@remote.example\\r\\nSubject: %s\\r\\n\\r\\nx\\r\\n' % (sender, subject)).encode()
    try:
        refused = s.sendmail(sender, rcpts, msg)
        return {'refused': {k: [v[0], v[1].decode()] for k, v in refused.items()}}
    except smtplib.SMTPSenderRefused as e:
        return {'sender': [e.smtp_code, e.smtp_error.decode()]}
out = {}
s = login('tight@example.org')
out['t1'] = send(s, 'tight@example.org', ['t1@remote.example', 't2@remote.example'], 'tight 1')
out['t2'] = send(s, 'tight@example.org', ['t3@remote.example', 't4@remote.example'], 'tight 2')
out['t3'] = send(s, 'tight@example.org', ['t5@remote.example'], 'tight 3')
s.quit()
s = login('wide@example.org')
out['w'] = send(s, 'wide@example.org', ['w%d@remote.example' % i for i in range(1, 10)], 'wide 1')
s.quit()
print(json.dumps(out))
`;
  const out = JSON.parse(await python(script, '', [String(fe.ports.submission), OTHER_PASSWORD])) as Record<string, { refused?: Record<string, [number, string]>; sender?: [number, string] }>;
  assert.deepEqual(out.t1, { refused: {} }, 'two recipients fit tight@\'s day of 3');
  assert.deepEqual(Object.keys(out.t2!.refused!), ['t4@remote.example'], 'the fourth recipient of the day is refused, the third accepted');
  assert.equal(out.t2!.refused!['t4@remote.example']![0], 452);
  assert.match(out.t2!.refused!['t4@remote.example']![1], /^4\.5\.3 tight@example\.org has sent to 2 recipients in the last 24 hours, and 1 more is under way \(send_recipients_per_day is 3\)/);
  assert.equal(out.t3!.sender?.[0], 451, 'a third message in the hour is refused at MAIL FROM');
  assert.match(out.t3!.sender![1], /^4\.7\.1 tight@example\.org has sent 2 messages in the last hour \(send_messages_per_hour is 2\)/);
  // the global limit is 5 recipients a message; wide@'s own is 8
  assert.deepEqual(Object.keys(out.w!.refused!), ['w9@remote.example'], 'eight recipients accepted, the ninth refused');
  assert.equal(out.w!.refused!['w9@remote.example']![0], 452);
  assert.match(out.w!.refused!['w9@remote.example']![1], /^4\.5\.3 Too many recipients \(at most 8 a message; send_recipients_per_message\)/);
  const toOf = (subject: string) => peer.messages.filter((m) => m.raw.includes(`Subject: ${subject}\r\n`)).flatMap((m) => m.to).sort();
  await waitFor('the accepted messages at the peer', () => toOf('wide 1').length === 8 && toOf('tight 2').length === 1 && toOf('tight 1').length === 2);
  assert.deepEqual(toOf('tight 1'), ['t1@remote.example', 't2@remote.example']);
  assert.deepEqual(toOf('tight 2'), ['t3@remote.example']);
  assert.deepEqual(toOf('tight 3'), [], 'the refused message never left');
  assert.deepEqual(toOf('wide 1'), [1, 2, 3, 4, 5, 6, 7, 8].map((i) => `w${i}@remote.example`).sort());
});

test('the sending counts are one for 587 and 465 and outlive a restart; their file names no mailbox', async () => {
  // tight@ used its 2 messages of the hour on 587 in the test before
  const tight = (port: number, tls: string) => swaks(port, [tls, '--auth', 'PLAIN', '--auth-user', 'tight@example.org', '--auth-password', OTHER_PASSWORD, '--from', 'tight@example.org', '--to', 'x@remote.example', '--quit-after', 'RCPT']);
  const refused = /MAIL FROM:<tight@example\.org>\r?\n<~\* +451 4\.7\.1 tight@example\.org has sent 2 messages in the last hour/;
  assert.match(await tight(fe.ports.submissions!, '--tls-on-connect'), refused, 'port 465 knows what was sent on 587');
  const file = path.join(w.dataDir, 'submission', 'send-counts.json');
  await fe.stop();
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const saved = readFileSync(file, 'utf8');
  assert.doesNotMatch(saved, /tight|example\.org/, 'mailboxes appear only as HMACs');
  assert.equal(Object.keys((JSON.parse(saved) as { messages: object }).messages).length, 4, 'me@, other@, tight@ and wide@ sent within the hour');
  fe = await startServe(w.config, [], { FE_TEST_QUEUE_RETRY_MS: '300' }, ['mx', 'submission', 'submissions', 'imaps']);
  assert.match(await tight(fe.ports.submission!, '--tls'), refused, 'a restart does not give a fresh allowance');
  // a damaged file: a warning, and counting starts again
  await fe.stop();
  writeFileSync(file, '{not json');
  fe = await startServe(w.config, [], { FE_TEST_QUEUE_RETRY_MS: '300' }, ['mx', 'submission', 'submissions', 'imaps']);
  assert.match(fe.log(), /the sending counts in \S+ are damaged \(.+\); counting from zero$/m);
  assert.match(await tight(fe.ports.submission!, '--tls'), /<~ +250 /);
});

test('transactions under way count against the allowance: parallel sessions cannot each pass the check before any is recorded', async () => {
  // the counts started from zero in the test before: tight@ has 2 messages this hour, 3 recipients today
  const script = `
import smtplib, ssl, sys, json
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def login():
    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))
    s.starttls(context=ctx)
    s.login('tight@example.org', sys.argv[2])
    return s
a, b, c = login(), login(), login()
out = {}
out['a'] = a.mail('tight@example.org')[0]
out['b'] = b.mail('tight@example.org')[0]
code, text = c.mail('tight@example.org')
out['c'] = [code, text.decode()]
out['a_rcpt'] = [a.rcpt('r1@remote.example')[0], a.rcpt('r2@remote.example')[0]]
code, text = b.rcpt('r3@remote.example')
out['b_rcpt1'] = code
code, text = b.rcpt('r4@remote.example')
out['b_rcpt2'] = [code, text.decode()]
a.rset()
out['c_after_rset'] = c.mail('tight@example.org')[0]
for s in (a, b, c): s.quit()
d = login()
out['d_after_quit'] = d.mail('tight@example.org')[0]
out['d_rcpt'] = [d.rcpt('r%d@remote.example' % i)[0] for i in (5, 6, 7, 8)]
d.quit()
print(json.dumps(out))
`;
  const out = JSON.parse(await python(script, '', [String(fe.ports.submission), OTHER_PASSWORD])) as Record<string, unknown>;
  assert.equal(out.a, 250);
  assert.equal(out.b, 250);
  assert.equal((out.c as [number, string])[0], 451, 'a third transaction while two are open is over the 2 an hour');
  assert.match((out.c as [number, string])[1], /^4\.7\.1 tight@example\.org has sent 0 messages in the last hour, and 2 more are under way \(send_messages_per_hour is 2\)/);
  assert.deepEqual(out.a_rcpt, [250, 250]);
  assert.equal(out.b_rcpt1, 250, 'the third recipient of the day fits');
  assert.equal((out.b_rcpt2 as [number, string])[0], 452, 'a fourth, while the others are still held, does not');
  assert.match((out.b_rcpt2 as [number, string])[1], /^4\.5\.3 tight@example\.org has sent to 0 recipients in the last 24 hours, and 3 more are under way/);
  assert.equal(out.c_after_rset, 250, 'RSET gives the held message back');
  assert.equal(out.d_after_quit, 250, 'closed sessions hold nothing');
  assert.deepEqual(out.d_rcpt, [250, 250, 250, 452], 'nothing was sent, so 3 recipients remain for today');
});

test('local recipients are delivered on this host (forwards followed), remote ones through the queue', async () => {
  const before = peer.messages.length;
  const otherBefore = spoolCount('other');
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: fe.ports.submissions!, secure: true, tls: { rejectUnauthorized: false }, auth: { user: 'me@example.org', pass: PASSWORD } });
  await t.sendMail({ from: 'me@example.org', to: 'team@example.org', subject: 'team news', text: 'to the team' });
  t.close();
  // other@ got it straight into its spool (or already imported, if a session is open: none is)
  assert.equal(spoolCount('other'), otherBefore + 1);
  const msgs = await imapFolder('other@example.org', OTHER_PASSWORD, 'INBOX');
  assert.ok(msgs.some((m) => m.raw.includes('team news') && /DKIM-Signature:/i.test(m.raw)));
  const remote = await waitFor('the forward target to receive it', () => peer.messages.slice(before).find((m) => m.raw.includes('team news')));
  assert.deepEqual(remote.to, ['friend@remote.example']);
});

test('quoted local parts (RFC 5321 4.1.2): "john doe"@ leaves quoted for the remote, "other"@ is delivered here, a stray quote is 501', async () => {
  const before = peer.messages.length;
  const otherBefore = spoolCount('other');
  const auth = ['--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'me@example.org'];
  const out = await swaks(fe.ports.submission!, [...auth, '--to', '"john doe"@remote.example,"other"@example.org', '--header', 'Subject: quoted local parts']);
  assert.match(out, /RCPT TO:<"john doe"@remote\.example>\r?\n<~ +250 /);
  assert.match(out, /<~ +250 2\.0\.0 Ok/);
  const remote = await waitFor('the remote to receive it', () => peer.messages.slice(before).find((m) => m.raw.includes('quoted local parts')));
  assert.deepEqual(remote.to, ['"john doe"@remote.example']);
  assert.equal(spoolCount('other'), otherBefore + 1, 'the quoted form of a local alias is that alias');
  // the quoted form of the mailbox's own address is its own address, in MAIL FROM and From
  const own = await swaks(fe.ports.submission!, [...auth.slice(0, -2), '--from', '"me"@example.org', '--to', 'friend@remote.example', '--header', 'Subject: sent as quoted me']);
  assert.match(own, /<~ +250 2\.0\.0 Ok/);
  const stray = await swaks(fe.ports.submission!, [...auth, '--to', 'jo"hn@remote.example', '--quit-after', 'RCPT']);
  assert.match(stray, /RCPT TO:<jo"hn@remote\.example>\r?\n<~\* +501 /);
});

test('a 451 is retried and then delivered; the queue keeps only a record once it is done', async () => {
  const before = peer.messages.length;
  const out = await swaks(fe.ports.submission!, ['--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'me@example.org', '--to', 'oncebusy@remote.example', '--header', 'Subject: retried message']);
  assert.match(out, /250 2\.0\.0 Ok/);
  await waitFor('the retry to succeed', () => peer.messages.slice(before).find((m) => m.raw.includes('retried message')));
  const listed = await waitFor('the record to be redacted', async () => {
    const q = JSON.parse(await w.ok(['queue', 'list', '--all', '--json'])) as { messages: { id: string; redacted: boolean; recipients: { address: string; state: string; attempts: number; last_reply: string }[] }[] };
    return q.messages.find((m) => m.recipients.some((r) => r.address === 'oncebusy@remote.example') && m.redacted);
  });
  const r = listed.recipients[0]!;
  assert.equal(r.state, 'delivered');
  assert.equal(r.attempts, 2, 'one deferral, one delivery');
  // nothing is waiting any more
  assert.doesNotMatch(await w.ok(['queue', 'list']), /oncebusy/);
});

test('a 550 from the remote bounces at once: a DSN (RFC 3464) in the sender\'s INBOX, parsed by Python\'s email package', async () => {
  const out = await swaks(fe.ports.submission!, ['--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'me@example.org', '--to', 'refuse-me@remote.example', '--header', 'Subject: will bounce']);
  assert.match(out, /250 2\.0\.0 Ok/);
  const dsn = await waitFor('the bounce in INBOX', async () => (await imapFolder('me@example.org', PASSWORD, 'INBOX')).find((m) => /multipart\/report/i.test(m.raw) && m.raw.includes('refuse-me@remote.example')));
  const parse = `
import email, email.policy, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts = [p for p in m.iter_parts()]
status = parts[1].get_payload()
print(json.dumps({'type': m.get_content_type(), 'report': m.get_param('report-type'), 'auto': m['Auto-Submitted'], 'parts': [p.get_content_type() for p in parts],
  'final': str(status[1]['Final-Recipient']), 'action': str(status[1]['Action']), 'status': str(status[1]['Status']), 'diag': str(status[1]['Diagnostic-Code'])}))
`;
  const p = JSON.parse(await python(parse, dsn.raw)) as Record<string, unknown>;
  assert.equal(p.type, 'multipart/report');
  assert.equal(p.report, 'delivery-status');
  assert.equal(p.auto, 'auto-replied');
  assert.equal((p.parts as string[])[1], 'message/delivery-status');
  assert.match(String(p.final), /rfc822; ?refuse-me@remote\.example/);
  assert.equal(p.action, 'failed');
  assert.equal(p.status, '5.1.1');
  assert.match(String(p.diag), /550 5\.1\.1 No such mailbox at the peer/);
});

test('a null MX (RFC 7505) bounces without any connection attempt', async () => {
  const out = await swaks(fe.ports.submission!, ['--tls', '--auth', 'PLAIN', '--auth-user', 'me@example.org', '--auth-password', PASSWORD, '--from', 'me@example.org', '--to', 'anyone@nomail.example', '--header', 'Subject: to a null mx']);
  assert.match(out, /250 2\.0\.0 Ok/);
  await waitFor('the bounce', async () => (await imapFolder('me@example.org', PASSWORD, 'INBOX')).find((m) => /multipart\/report/i.test(m.raw) && m.raw.includes('anyone@nomail.example')));
  const q = JSON.parse(await w.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: { address: string; state: string; status: string }[] }[] };
  const r = q.messages.flatMap((m) => m.recipients).find((x) => x.address === 'anyone@nomail.example')!;
  assert.equal(r.state, 'bounced');
  assert.equal(r.status, '5.1.10');
});

test('NOTIFY=SUCCESS to a next hop without DSN: the sender gets a "relayed" report (RFC 3461), ENVID echoed', async () => {
  const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ctx)
s.login('me@example.org', sys.argv[2])
s.sendmail('me@example.org', ['tracked@remote.example'], b'From: me@example.org\\r\\nTo: tracked@remote.example\\r\\nSubject: please confirm\\r\\n\\r\\nhi\\r\\n', mail_options=['ENVID=track-123', 'RET=HDRS'], rcpt_options=['NOTIFY=SUCCESS,FAILURE'])
s.quit()
print('sent')
`;
  assert.equal((await python(script, '', [String(fe.ports.submissions), PASSWORD])).trim(), 'sent');
  const report = await waitFor('the success report', async () => (await imapFolder('me@example.org', PASSWORD, 'INBOX')).find((m) => /multipart\/report/i.test(m.raw) && m.raw.includes('tracked@remote.example')));
  assert.match(report.raw, /^Action: relayed\r$/m);
  assert.match(report.raw, /^Original-Envelope-Id: track-123\r$/m);
  assert.match(report.raw, /^Status: 2\.0\.0\r$/m);
});

test('the log names no message content and no full address', () => {
  assert.doesNotMatch(fe.log(), /The body of the first message|friend@remote\.example|me@example\.org/);
});

test("neomutt sends through 587 with its smtp_url (STARTTLS, AUTH): the remote gets it DKIM-signed", async () => {
  const marker = `neomutt-smtp-${Date.now()}`;
  const dir = mkdtempSync(path.join(w.dir, 'neomutt-'));
  mkdirSync(path.join(dir, 'home'));
  mkdirSync(path.join(dir, 'tmp'));
  const draft = path.join(dir, 'draft.eml');
  writeFileSync(draft, ['From: Me <me@example.org>', 'To: friend@remote.example', `Subject: ${marker}`, '', 'Sent by neomutt over submission.', ''].join('\n'));
  const rc = path.join(dir, 'muttrc');
  writeFileSync(
    rc,
    [
      `set folder="${dir}"`,
      'set record=""',
      `set smtp_url="smtp://me@example.org@127.0.0.1:${fe.ports.submission}/"`,
      `set smtp_pass="${PASSWORD}"`,
      'set ssl_starttls=yes',
      'set ssl_force_tls=yes',
      `set ssl_ca_certificates_file="${path.join(w.dataDir, 'tls', 'self-signed.crt')}"`,
      'set ssl_verify_host=no', // the certificate names mail.example.org; neomutt connects to 127.0.0.1
      `set certificate_file="${path.join(dir, 'certificates')}"`,
      'set resume_draft_files=yes',
      'set editor="true"',
      'set abort_unmodified=no',
      'set hostname=example.org',
      'set wait_key=no',
      'set sleep_time=0',
      `set tmpdir="${path.join(dir, 'tmp')}"`,
      '',
    ].join('\n'),
  );
  const before = peer.messages.length;
  const r = await neomutt(dir, ['-F', rc, '-H', draft], { when: 'y:Send', keys: 'y' });
  assert.equal(r.code, 0, r.screen.slice(-3000));
  const got = await waitFor('the remote to receive neomutt\'s message', () => peer.messages.slice(before).find((m) => m.raw.includes(marker)));
  assert.deepEqual(got.to, ['friend@remote.example']);
  assert.match(got.raw.toString('utf8'), /^DKIM-Signature: .*d=example\.org/im);
  assert.match(got.raw.toString('utf8'), /Sent by neomutt over submission\./);
});
