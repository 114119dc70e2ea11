// More real clients against fe's IMAP and POP3: imapflow (Node), curl, offlineimap.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;

async function deliver(to: string, subject: string, body: string): Promise<void> {
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'alice@sender.example', '--to', to, '--header', `Subject: ${subject}`, '--body', body, '--hide-informational']);
  assert.match(stdout, /<- +250 /);
}

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: off\n  imaps: 127.0.0.1:0\n  pop3s: 127.0.0.1:0\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  for (const who of ['flow', 'curl', 'offline']) await w.ok(['alias', 'add', `${who}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['mx', 'imaps', 'pop3s']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('imapflow: list, open, fetch source, flag, and an IDLE "exists" push', async () => {
  await deliver('flow@example.org', 'first', 'hello from swaks');
  const client = new ImapFlow({ host: '127.0.0.1', port: fe.ports.imaps!, secure: true, tls: { rejectUnauthorized: false }, auth: { user: 'flow@example.org', pass: PASSWORD }, logger: false });
  await client.connect();
  try {
    const list = await client.list();
    assert.deepEqual(list.map((m) => m.path).sort(), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash']);
    assert.equal(list.find((m) => m.path === 'Sent')?.specialUse, '\\Sent');
    const box = await client.mailboxOpen('INBOX');
    assert.equal(box.exists, 1);
    const msg = await client.fetchOne('1', { source: true, envelope: true, flags: true, uid: true });
    assert.ok(msg);
    assert.equal(msg.envelope?.subject, 'first');
    assert.match(msg.source!.toString(), /\r\n\r\nhello from swaks\r\n/);
    await client.messageFlagsAdd('1', ['\\Flagged']);
    const again = await client.fetchOne('1', { flags: true });
    assert.ok(again && again.flags?.has('\\Flagged'));
    const pushed = new Promise<number>((resolve) => client.on('exists', (d: { count: number }) => resolve(d.count)));
    const idle = client.idle();
    await deliver('flow@example.org', 'second', 'while idling');
    assert.equal(await pushed, 2);
    void idle;
  } finally {
    await client.logout();
  }
});

test('curl: IMAPS list and fetch, POP3S list and retrieve', async () => {
  await deliver('curl@example.org', 'for curl', 'curl reads this');
  const user = ['--user', `curl@example.org:${PASSWORD}`, '--insecure', '--silent', '--show-error'];
  const { stdout: listing } = await run('curl', [...user, `imaps://127.0.0.1:${fe.ports.imaps}/`]);
  assert.match(listing, /\* LIST \(.*\) "\/" INBOX/);
  const { stdout: message } = await run('curl', [...user, `imaps://127.0.0.1:${fe.ports.imaps}/INBOX;UID=1`]);
  assert.match(message, /Subject: for curl/);
  assert.match(message, /curl reads this/);
  const { stdout: pop } = await run('curl', [...user, `pop3s://127.0.0.1:${fe.ports.pop3s}/`]);
  assert.match(pop, /^1 \d+\r?$/m);
  const { stdout: retr } = await run('curl', [...user, `pop3s://127.0.0.1:${fe.ports.pop3s}/1`]);
  assert.match(retr, /curl reads this/);
});

test('offlineimap: syncs a mailbox down into a Maildir', async () => {
  for (const n of [1, 2]) await deliver('offline@example.org', `offline ${n}`, `body ${n}`);
  const rc = path.join(w.dir, 'offlineimaprc');
  const maildir = path.join(w.dir, 'offline-mail');
  writeFileSync(
    rc,
    [
      '[general]',
      'accounts = fe',
      `metadata = ${path.join(w.dir, 'offline-meta')}`,
      '',
      '[Account fe]',
      'localrepository = local',
      'remoterepository = remote',
      '',
      '[Repository local]',
      'type = Maildir',
      `localfolders = ${maildir}`,
      '',
      '[Repository remote]',
      'type = IMAP',
      'remotehost = localhost',
      `remoteport = ${fe.ports.imaps}`,
      'remoteuser = offline@example.org',
      `remotepass = ${PASSWORD}`,
      'ssl = yes',
      `sslcacertfile = ${path.join(w.dataDir, 'tls', 'self-signed.crt')}`,
      '',
    ].join('\n'),
  );
  await run('offlineimap', ['-c', rc, '-o', '-u', 'quiet'], { timeout: 120_000 });
  const inbox = path.join(maildir, 'INBOX');
  const files = ['new', 'cur'].flatMap((d) => readdirSync(path.join(inbox, d)).map((f) => path.join(inbox, d, f)));
  assert.equal(files.length, 2);
  const subjects = files.map((f) => /Subject: (.*)\r?\n/.exec(readFileSync(f, 'utf8'))![1]).sort();
  assert.deepEqual(subjects, ['offline 1', 'offline 2']);
});
