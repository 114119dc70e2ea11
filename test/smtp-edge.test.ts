// SMTP input at the edges of what RFC 5321 allows: NUL bytes in DATA are refused (IMAP could
// not serve them in a plain literal), and a client that drops mid-DATA is an info line, not an error.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';

let dns: DnsServer;
let fe: Daemon;

before(async () => {
  dns = await startDnsServer({});
  const w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: off\n  imaps: off\n  pop3: off\n  pop3s: off\n  http: off\n  https: off\ndns:\n  servers: ["${dns.address}"]\nlimits:\n  connections_per_ip: 50\n  messages_per_ip_per_minute: 1000\n`);
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
