// Deletion that deletes: IMAP DELETE and fe mailbox delete-folder leave no message bytes in the
// decrypted pages of the file; fe alias remove --purge shreds the key first, then the files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, linkSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { execFile, spawn } from 'node:child_process';
import { workspace } from './helpers/fe.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { Database } from '../src/store/sqlite.js';
import { unlockMailboxKey } from '../src/crypto/mailbox-key.js';

const run = promisify(execFile);
const PASSWORD = 'purge test password';
let w: ReturnType<typeof workspace>;
let dns: DnsServer;
let fe: Daemon;
const dirOf = (local: string) => path.join(w.dataDir, 'mailboxes', 'example.org', local);

/**
 * The mailbox file as plaintext pages: a copy of the database and its WAL, opened with the
 * mailbox key, the WAL folded in, then serialized, which hands over every page decrypted as it
 * is, free space included. (Re-keying to no key would not do: dropping the cipher's reserved
 * bytes makes SQLite3MC rebuild the file, which discards freed bytes whatever secure_delete says.)
 */
function decryptedPages(local: string, password: string): Buffer {
  const dir = dirOf(local);
  const tmp = mkdtempSync(path.join(tmpdir(), 'fe-pages-'));
  const copy = path.join(tmp, 'mailbox.db');
  copyFileSync(path.join(dir, 'mailbox.db'), copy);
  if (existsSync(path.join(dir, 'mailbox.db-wal'))) copyFileSync(path.join(dir, 'mailbox.db-wal'), copy + '-wal');
  const { masterKey } = unlockMailboxKey(dir, password);
  const db = new Database(copy);
  db.pragma(`cipher = 'chacha20'`);
  db.key(Buffer.concat([Buffer.from('raw:'), masterKey]));
  db.pragma('journal_mode = DELETE');
  const pages = db.serialize();
  db.close();
  assert.ok(pages.subarray(0, 15).toString('latin1') === 'SQLite format 3', 'the copy really is decrypted');
  return pages;
}

async function python(script: string): Promise<string> {
  const file = path.join(w.dir, `py-${Date.now()}-${Math.random()}.py`);
  writeFileSync(file, script);
  return (await run('/usr/bin/python3', [file])).stdout;
}

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3s: off\nloopback_plaintext_auth: true\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  await w.ok(['alias', 'add', 'gone@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}-gone\n` });
  fe = await startServe(w.config, [], {}, ['mx', 'imap']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('IMAP DELETE of a folder leaves none of its messages in the decrypted pages of the file', async () => {
  const marker = `SECRET-MARKER-${Date.now()}-imap`;
  await python(`
import imaplib
m = imaplib.IMAP4('127.0.0.1', ${fe.ports.imap})
m.login('me@example.org', '${PASSWORD}')
m.create('Secret')
# small messages, interleaved with ones that stay: their rows share pages that stay in use
for i in range(20):
    m.append('Secret', None, None, ('Subject: s%d\\r\\n\\r\\n${marker}\\r\\n' % i).encode())
    m.append('INBOX', None, None, ('Subject: keep %d\\r\\n\\r\\nKEEP-THIS-ONE\\r\\n' % i).encode())
# and large ones, whose overflow pages are freed whole
for i in range(5):
    m.append('Secret', None, None, ('Subject: big%d\\r\\n\\r\\n' % i + '${marker} ' * 300 + '\\r\\n').encode())
m.logout()
`);
  const before = decryptedPages('me', PASSWORD);
  assert.ok(before.includes(marker), 'the check sees message bytes when they are there');
  // The session stays logged in while the file is read: its logout closes the mailbox, and the
  // close (PRAGMA optimize, then the last connection's checkpoint) writes the WAL again.
  const session = spawn('/usr/bin/python3', ['-c', `
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', ${fe.ports.imap})
m.login('me@example.org', '${PASSWORD}')
print(m.delete('Secret')[0], flush=True)
sys.stdin.readline()
m.logout()
`]);
  const said = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    session.stderr.on('data', (d: Buffer) => (err += d.toString()));
    session.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    session.once('exit', (code) => reject(new Error(`python exited ${code} before answering: ${out}${err}`)));
  });
  assert.equal(said, 'OK');
  const walSize = statSync(path.join(dirOf('me'), 'mailbox.db-wal'), { throwIfNoEntry: false })?.size ?? 0;
  const after = decryptedPages('me', PASSWORD);
  session.stdin.end('\n');
  await new Promise((resolve) => session.once('exit', resolve));
  assert.equal(walSize, 0, 'the WAL, which held the folder\'s pages too, was folded in and truncated');
  assert.ok(!after.includes(marker), 'no byte of the deleted messages is left in the file');
  assert.ok(after.includes('KEEP-THIS-ONE'), 'the other folder is intact');
});

test('fe mailbox delete-folder does the same from the command line, with clear refusals', async () => {
  const marker = `SECRET-MARKER-${Date.now()}-cli`;
  await python(`
import imaplib
m = imaplib.IMAP4('127.0.0.1', ${fe.ports.imap})
m.login('me@example.org', '${PASSWORD}')
m.create('Old/2019')
m.append('Old/2019', None, None, ('Subject: old\\r\\n\\r\\n' + '${marker} ' * 100 + '\\r\\n').encode())
m.logout()
`);
  assert.ok(decryptedPages('me', PASSWORD).includes(marker));
  const parent = await w.fe(['mailbox', 'delete-folder', 'me@example.org', 'Old', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  assert.equal(parent.code, 1);
  assert.match(parent.stderr, /has subfolders; delete them first/);
  const missing = await w.fe(['mailbox', 'delete-folder', 'me@example.org', 'Nope', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /has no folder "Nope"/);
  const ok = await w.ok(['mailbox', 'delete-folder', 'me@example.org', 'Old/2019', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  assert.match(ok, /deleted Old\/2019 \(1 message\(s\)\)/);
  assert.ok(!decryptedPages('me', PASSWORD).includes(marker));
});

test('fe alias remove --purge: asks (or needs --yes), shreds the key file in place first, then removes everything', async () => {
  await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'a@sender.example', '--to', 'gone@example.org', '--header', 'Subject: spooled', '--hide-all']);
  const dir = dirOf('gone');
  const keyFile = path.join(dir, 'key.json');
  const original = readFileSync(keyFile);
  // A second name for the key file's inode shows what purge left in the file's blocks.
  const witness = path.join(w.dir, 'key-witness');
  linkSync(keyFile, witness);

  const refused = await w.fe(['alias', 'remove', 'gone@example.org', '--purge']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /add --yes when standard input is not a terminal/);
  assert.ok(existsSync(keyFile) && w.read().includes('gone'), 'nothing changed');

  const out = await w.ok(['alias', 'remove', 'gone@example.org', '--purge', '--yes']);
  assert.match(out, /removed gone@example\.org/);
  assert.match(out, /its mailbox key was destroyed and \d+ file\(s\) removed/);
  assert.ok(!existsSync(dir), 'the mailbox directory is gone: database, spool and all');
  assert.ok(!w.read().includes('gone@') && !/\bgone:/.test(w.read()), 'the alias is gone from fe.yml');
  const left = readFileSync(witness);
  assert.equal(left.length, original.length);
  assert.ok(!left.equals(original) && !left.includes('scrypt'), 'the key file was overwritten before it was unlinked');
  assert.throws(() => unlockMailboxKey(dir, `${PASSWORD}-gone`));
  const listed = await w.ok(['alias', 'list', '--json']);
  assert.ok(!listed.includes('gone@'));
});
