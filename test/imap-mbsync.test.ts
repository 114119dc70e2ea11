// mbsync (isync), the most demanding common IMAP client, in a full two-way sync with fe:
// mail down, flags and deletions up, a folder made offline created on the server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect } from './helpers/imap-client.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: off\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

function maildirFiles(dir: string): string[] {
  return ['new', 'cur'].flatMap((sub) => {
    try {
      return readdirSync(path.join(dir, sub)).map((f) => path.join(sub, f));
    } catch {
      return [];
    }
  });
}

test('mbsync: two-way sync of messages, flags, deletions and folders', async () => {
  for (const n of [1, 2, 3]) {
    const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'a@sender.example', '--to', 'me@example.org', '--header', `Subject: message ${n}`, '--hide-informational']);
    assert.match(stdout, /<- +250 /);
  }
  const local = path.join(w.dir, 'maildir');
  mkdirSync(local);
  const rc = path.join(w.dir, 'mbsyncrc');
  writeFileSync(
    rc,
    [
      'IMAPAccount fe',
      'Host localhost', // the self-signed certificate names localhost; mbsync checks the name
      `Port ${fe.ports.imaps}`,
      'User me@example.org',
      `Pass "${PASSWORD}"`,
      'SSLType IMAPS',
      `CertificateFile ${path.join(w.dataDir, 'tls', 'self-signed.crt')}`,
      '',
      'IMAPStore remote',
      'Account fe',
      '',
      'MaildirStore local',
      `Path ${local}/`,
      `Inbox ${local}/INBOX`,
      'SubFolders Verbatim',
      '',
      'Channel fe',
      'Far :remote:',
      'Near :local:',
      'Patterns *',
      'Create Both',
      'Expunge Both',
      'SyncState *',
      '',
    ].join('\n'),
  );
  const sync = () => run('mbsync', ['-c', rc, '-a'], { timeout: 60_000 });
  await sync();
  const inbox = path.join(local, 'INBOX');
  let files = maildirFiles(inbox);
  assert.equal(files.length, 3, `three messages down: ${files.join(', ')}`);
  for (const folder of ['Archive', 'Drafts', 'Junk', 'Sent', 'Trash']) assert.ok(readdirSync(local).includes(folder), `${folder} synced`);

  // Offline: read one, delete another, file a new folder with a message in it.
  const byUid = (uid: number) => files.find((f) => f.includes(`,U=${uid}:`))!;
  mkdirSync(path.join(inbox, 'cur'), { recursive: true });
  renameSync(path.join(inbox, byUid(1)), path.join(inbox, 'cur', path.basename(byUid(1)) + 'S'));
  renameSync(path.join(inbox, byUid(2)), path.join(inbox, 'cur', path.basename(byUid(2)) + 'T'));
  for (const sub of ['cur', 'new', 'tmp']) mkdirSync(path.join(local, 'Offline', sub), { recursive: true });
  writeFileSync(path.join(local, 'Offline', 'new', '1.local'), 'Subject: written offline\r\n\r\nhello\r\n');
  await new Promise((r) => setTimeout(r, 1100)); // mbsync waits out maildir timestamps of the same second
  await sync();

  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  await c.command(`LOGIN me@example.org "${PASSWORD}"`);
  const sel = await c.command('SELECT INBOX');
  assert.ok(sel.untagged.includes('* 2 EXISTS'), 'the deleted message is gone from the server');
  const flags = await c.command('UID FETCH 1:* (FLAGS)');
  assert.deepEqual(flags.untagged.map((l) => l.replace(/^\* \d+ FETCH /, '')), ['(UID 1 FLAGS (\\Seen))', '(UID 3 FLAGS ())']);
  const offline = await c.command('SELECT Offline');
  assert.equal(offline.status, 'OK', 'the folder made offline exists on the server');
  const got = await c.command('FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
  assert.match(got.untagged.join('\n'), /Subject: written offline/);
  c.close();

  // A third sync changes nothing: state is stable.
  await sync();
  files = maildirFiles(inbox);
  assert.equal(files.length, 2);
});
