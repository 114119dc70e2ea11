// SIGTERM with clients in every state: `fe serve` must exit within its drain (here
// limits.shutdown_drain_seconds: 2) and a few seconds more, whatever the clients do, and lose
// nothing: a message cut off mid-DATA is not stored as if complete, mail already accepted is
// intact after a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect } from './helpers/imap-client.js';
import { rawConnect, type RawConn } from './helpers/raw-socket.js';

const PASSWORD = 'correct horse battery staple';
const DRAIN_S = 2;

/** Sends one whole message through the MX; resolves with the final reply. */
async function deliver(port: number, subject: string): Promise<string> {
  const s = await rawConnect(port, '127.50.0.1', /^220 .*\r\n/m);
  await s.send('EHLO sender.test\r\n', /^250 .*\r\n/m);
  await s.send('MAIL FROM:<a@sender.example>\r\n', /^250 .*\r\n/m);
  await s.send('RCPT TO:<me@example.org>\r\n', /^250 .*\r\n/m);
  await s.send('DATA\r\n', /^354 .*\r\n/m);
  const reply = await s.send(`Subject: ${subject}\r\n\r\nbody\r\n.\r\n`, /^\d{3} .*\r\n/m);
  s.socket.destroy();
  return reply;
}

async function subjects(fe: Daemon): Promise<string[]> {
  const c = await imapConnect(fe.ports.imap!);
  assert.equal((await c.command(`LOGIN me@example.org "${PASSWORD}"`)).status, 'OK');
  await c.command('SELECT INBOX');
  const r = await c.command('FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
  await c.command('LOGOUT');
  c.close();
  return r.untagged.join('\n').match(/Subject: [^\r\n]*/g) ?? [];
}

test('SIGTERM: fe serve exits within the drain whatever its clients do, and loses nothing', async () => {
  const w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nloopback_plaintext_auth: true\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["127.0.0.1:1"]\nlimits:\n  shutdown_drain_seconds: ${DRAIN_S}\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  const fe = await startServe(w.config, [], {}, ['mx', 'imap', 'pop3']);
  assert.match(await deliver(fe.ports.mx!, 'complete before the stop'), /^250 /);

  const clients: RawConn[] = [];
  const imap = async (addr: string) => {
    const c = await rawConnect(fe.ports.imap!, addr, /^\* OK .*\r\n/m, { halfOpen: true });
    await c.send(`a LOGIN me@example.org "${PASSWORD}"\r\n`, /^a OK .*\r\n/m);
    clients.push(c);
    return c;
  };
  // mid-DATA: half a message, then silence (the client never closes)
  const mx = await rawConnect(fe.ports.mx!, '127.51.0.1', /^220 .*\r\n/m, { halfOpen: true });
  await mx.send('EHLO sender.test\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<me@example.org>\r\nDATA\r\n', /^354 .*\r\n/m);
  mx.socket.write('Subject: cut off mid-DATA\r\n\r\nthe first half\r\n');
  clients.push(mx);
  // IMAP: IDLE, a literal half sent, logged in doing nothing
  await (await imap('127.52.0.1')).send('b SELECT INBOX\r\nc IDLE\r\n', /^\+ .*\r\n/m);
  const lit = await imap('127.52.0.2');
  await lit.send('b APPEND INBOX {1000}\r\n', /^\+ .*\r\n/m);
  lit.socket.write('Subject: cut off mid-literal\r\n\r\n');
  await imap('127.52.0.3');
  // POP3: logged in (the maildrop locked)
  const pop = await rawConnect(fe.ports.pop3!, '127.53.0.1', /^\+OK .*\r\n/m, { halfOpen: true });
  await pop.send('USER me@example.org\r\n', /^\+OK .*\r\n/m);
  await pop.send(`PASS ${PASSWORD}\r\n`, /^\+OK .*\r\n/m);
  clients.push(pop);
  // none of these clients ever closes its end (halfOpen): they ignore the server's FIN

  const t0 = Date.now();
  const code = await fe.stop('SIGTERM');
  const ms = Date.now() - t0;
  assert.equal(code, 0, fe.log());
  assert.ok(ms < (DRAIN_S + 8) * 1000, `fe serve took ${ms} ms to exit (drain ${DRAIN_S} s)`);
  assert.match(fe.log(), /stopped/);
  assert.doesNotMatch(fe.log(), /^error |Unhandled|TypeError/m);
  for (const c of clients) c.socket.destroy();

  // after a restart: the accepted message is there, neither half-sent one is
  const again = await startServe(w.config, [], {}, ['mx', 'imap', 'pop3']);
  try {
    assert.deepEqual(await subjects(again), ['Subject: complete before the stop']);
  } finally {
    await again.stop();
  }
});
