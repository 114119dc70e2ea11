// SMTP input at the edges of what RFC 5321 allows: NUL bytes in DATA are refused (IMAP could
// not serve them in a plain literal), quoted local parts are taken as RFC 5321 4.1.2 allows, and a
// client that drops mid-DATA is an info line, not an error.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';

let dns: DnsServer;
let fe: Daemon;
let w: ReturnType<typeof workspace>;

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: off\n  imaps: off\n  pop3: off\n  pop3s: off\n  http: off\n  https: off\ndns:\n  servers: ["${dns.address}"]\nlimits:\n  connections_per_ip: 50\n  messages_per_ip_per_minute: 1000\n`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery\n' });
  fe = await startServe(w.config, [], {}, ['mx']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

/** A raw SMTP dialogue: sends each chunk after the previous reply; returns every reply line. */
async function smtp(chunks: (string | Buffer)[], opts: { dropAfterLast?: boolean } = {}): Promise<string[]> {
  const sock = net.connect(fe.ports.mx!, '127.0.0.1');
  let got = '';
  const complete = () => /(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(got);
  const next = async (from: number) => {
    const deadline = Date.now() + 20_000;
    while (!(got.length > from && complete())) {
      if (Date.now() > deadline) throw new Error(`no reply; got:\n${got}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
  sock.on('error', () => undefined);
  await next(0);
  for (const [i, c] of chunks.entries()) {
    const from = got.length;
    sock.write(c);
    if (opts.dropAfterLast && i === chunks.length - 1) {
      await new Promise((r) => setTimeout(r, 300));
      sock.destroy();
      return got.split('\r\n').filter(Boolean);
    }
    await next(from);
  }
  sock.end('QUIT\r\n');
  return got.split('\r\n').filter(Boolean);
}

const envelope = ['EHLO client.example\r\n', 'MAIL FROM:<a@client.example>\r\n', 'RCPT TO:<me@example.org>\r\n', 'DATA\r\n'];

test('a message with a NUL byte is refused with 550 5.6.0 and not stored', async () => {
  const body = Buffer.concat([Buffer.from('From: a@client.example\r\nTo: me@example.org\r\nSubject: nul\r\n\r\nbefore'), Buffer.from([0]), Buffer.from('after\r\n.\r\n')]);
  const lines = await smtp([...envelope, body]);
  assert.match(lines.at(-1)!, /^550 5\.6\.0 .*NUL/, lines.join('\n'));
  assert.doesNotMatch(fe.log(), /accepted id=/);
  // The session goes on: a clean message after it is taken.
  const ok = await smtp([...envelope, 'From: a@client.example\r\nTo: me@example.org\r\nSubject: clean\r\n\r\nfine\r\n.\r\n']);
  assert.match(ok.at(-1)!, /^250 /, ok.join('\n'));
});

test('a client that drops in the middle of DATA is logged at info level, not as an error', async () => {
  await smtp([...envelope, 'From: a@client.example\r\nSubject: cut\r\n\r\nhalf a mess'], { dropAfterLast: true });
  await fe.waitForLog(/client left during a message/);
  assert.match(fe.log(), /^info fe\/mx: client left during a message/m);
  assert.doesNotMatch(fe.log(), /^error /m, fe.log());
});

test('postmaster@DOMAIN and a bare <postmaster> are accepted (RFC 5321 4.5.1) and reach the first mailbox', async () => {
  for (const rcpt of ['<postmaster@example.org>', '<postmaster>', '<PostMaster@example.org>']) {
    const lines = await smtp(['EHLO client.example\r\n', 'MAIL FROM:<a@client.example>\r\n', `RCPT TO:${rcpt}\r\n`]);
    assert.match(lines.at(-1)!, /^250 /, `${rcpt}: ${lines.join('\n')}`);
  }
  const none = await smtp(['EHLO client.example\r\n', 'MAIL FROM:<a@client.example>\r\n', 'RCPT TO:<nobody@example.org>\r\n']);
  assert.match(none.at(-1)!, /^550 5\.1\.1/, 'other unknown names are still refused');
});

// fe's resolver treats a quoted local part as its unquoted form (the MX cases are below).
test('a quoted local part resolves like its unquoted form; postmaster resolves to the first mailbox', async () => {
  const quoted = JSON.parse(await w.ok(['alias', 'resolve', '"me"@example.org', '--json'])) as { accepted: boolean; alias: string; via: string };
  assert.equal(quoted.accepted, true);
  assert.equal(quoted.via, 'exact');
  const other = await w.fe(['alias', 'resolve', '"not me"@example.org', '--json']);
  assert.doesNotMatch(other.stdout, /"accepted": ?true/);
  const pm = JSON.parse(await w.ok(['alias', 'resolve', 'postmaster@example.org', '--json'])) as { accepted: boolean; alias: string; via: string };
  assert.equal(pm.via, 'postmaster');
  assert.match(JSON.stringify(pm.alias), /me/);
});

test('quoted local parts (RFC 5321 4.1.2): valid ones are taken and matched unquoted, unknown ones get 550 5.1.1, malformed ones 501', async () => {
  const rcpt = async (to: string, from = '<a@client.example>') => (await smtp(['EHLO client.example\r\n', `MAIL FROM:${from}\r\n`, `RCPT TO:${to}\r\n`])).at(-1)!;
  // the unquoted form is an alias here: the same mailbox (quoted-pair included)
  assert.match(await rcpt('<"me"@example.org>'), /^250 /);
  assert.match(await rcpt('<"m\\e"@example.org>'), /^250 /);
  assert.match(await rcpt('<@relay.example:"me"@example.org>'), /^250 /, 'with a source route');
  // valid, but no such alias: the usual refusal, not a syntax error
  assert.match(await rcpt('<"john doe"@example.org>'), /^550 5\.1\.1 /);
  assert.match(await rcpt('<"me@example.org"@example.org>'), /^550 5\.1\.1 /);
  assert.match(await rcpt('<"john doe"@elsewhere.example>'), /^554 5\.7\.1 /, 'a foreign domain is still not relayed');
  // a quoted sender is a sender like any other
  assert.match(await rcpt('<me@example.org>', '<"john doe"@client.example>'), /^250 /);
  // not a Quoted-string: refused as before
  for (const bad of ['<"unterminated@example.org>', '<"a"b"@example.org>', '<"tab\there"@example.org>', '<"nul\\\u0001"@example.org>', '<"me"@>']) {
    assert.match(await rcpt(bad), /^501 /, bad);
  }
  // delivered by a real client, it lands in the mailbox of the alias it names
  const { stdout } = await promisify(execFile)('swaks', ['--server', `127.0.0.1:${fe.ports.mx!}`, '--from', 'a@client.example', '--to', '"me"@example.org', '--header', 'Subject: quoted', '--body', 'hello', '--hide-informational']);
  assert.match(stdout, /<- {2}250 2\.0\.0 Ok: queued as/);
  await fe.waitForLog(/accepted id=\S+ .*stored=1/);
});
