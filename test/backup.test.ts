// Backups against a real `fe serve`: mail delivered by swaks, backed up with `fe backup run`,
// opened with Debian's age and GNU tar as an owner would, restored with `fe backup restore`, and
// read back over IMAP (imaplib) from a second `fe serve` on the restored files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { listBackups, runBackup } from '../src/backup/archive.js';
import { loadConfig } from '../src/config/file.js';
import { createLogger } from '../src/util/log.js';
import { captureGroup, CaptureBusy, DEFAULT_CAPTURE, planCapture, releaseCapture } from '../src/backup/collect.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { FE_BIN, filesUnder, runFe, workspace } from './helpers/fe.js';

const run = promisify(execFile);
const PASSWORD = 'backup test password 1';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let keyFile: string;
let backupDir: string;

async function deliver(port: number, to: string, body: string): Promise<void> {
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${port}`, '--from', 'alice@sender.example', '--to', to, '--header', 'Subject: backup', '--body', body, '--hide-informational']);
  assert.match(stdout, /<- +250 /);
}

/** Python imaplib (a real client): the bodies of every message in INBOX. */
async function inbox(port: number, user: string, password: string): Promise<string[]> {
  const script = `
import imaplib, json, sys
m = imaplib.IMAP4('127.0.0.1', ${port})
m.login(sys.argv[1], sys.argv[2])
typ, data = m.select('INBOX')
out = []
n = int(data[0])
if n:
    typ, rows = m.fetch('1:%d' % n, '(BODY.PEEK[])')
    out = [r[1].decode('utf8', 'replace') for r in rows if isinstance(r, tuple)]
print(json.dumps(out))
m.logout()
`;
  const { stdout } = await run('python3', ['-c', script, user, password], { timeout: 60_000 });
  return JSON.parse(stdout) as string[];
}

function baseConfig(dataDir: string, extra = ''): string {
  return `hostname: mail.example.org\ndata_dir: ${dataDir}\nloopback_plaintext_auth: true\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n${extra}`;
}

before(async () => {
  dns = await startDnsServer({});
  w = workspace();
  backupDir = path.join(w.dir, 'backups');
  w.write(baseConfig('./data', `backup:\n  to: ./backups\n  keep: 3\n`));
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  keyFile = path.join(w.dir, 'backup-key.txt');
  const out = await w.ok(['backup', 'key', '--out', keyFile]);
  assert.match(out, /backup\.recipients in .*: age1[0-9a-z]+/);
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  // Only the mail daemons: this file's tests make the backups themselves.
  fe = await startServe(w.config, ['--only', 'mx,imap'], {}, ['mx', 'imap']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('fe backup key: the secret is shown once and never written into fe.yml; a bad recipient is refused', async () => {
  const id = readFileSync(keyFile, 'utf8');
  const secret = /AGE-SECRET-KEY-1[0-9A-Z]+/.exec(id)![0];
  assert.ok(!w.read().includes(secret));
  const recipient = /age1[0-9a-z]+/.exec(w.read())![0];
  // Debian's age-keygen derives the same public key from the identity we made.
  const { stdout } = await run('age-keygen', ['-y', keyFile]);
  assert.equal(stdout.trim(), recipient);
  const bad = await w.fe(['backup', 'key', '--recipient', 'age1notakey']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not an age public key/);
  assert.ok(w.read().includes(recipient), 'fe.yml unchanged');
});

test('a backup made while mail is in the spool and in the database restores both, readable with the same password', async () => {
  const inDb = `in-db-${Date.now()}`;
  const inSpool = `in-spool-${Date.now()}`;
  await deliver(fe.ports.mx!, 'me@example.org', inDb);
  assert.equal((await inbox(fe.ports.imap!, 'me@example.org', PASSWORD)).filter((m) => m.includes(inDb)).length, 1); // login imports the spool
  await deliver(fe.ports.mx!, 'me@example.org', inSpool); // nobody logged in: stays sealed in the spool

  const r = await w.fe(['backup', 'run', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const made = JSON.parse(r.stdout) as { file: string; bytes: number; files: number; busy: string[] };
  assert.deepEqual(made.busy, []);
  assert.equal(path.dirname(made.file), backupDir);
  assert.equal(statSync(made.file).mode & 0o777, 0o600);
  assert.equal(statSync(made.file).size, made.bytes);
  assert.deepEqual(readdirSync(backupDir).sort(), [path.basename(made.file), `${path.basename(made.file)}.sha256`], 'no temp files left beside it');
  // The sidecar works with coreutils, the file is age's format and holds no mail in the clear.
  await run('sha256sum', ['-c', `${path.basename(made.file)}.sha256`], { cwd: backupDir });
  const raw = readFileSync(made.file);
  assert.ok(raw.subarray(0, 40).toString('latin1').startsWith('age-encryption.org/v1\n'));
  assert.ok(!raw.includes(inDb) && !raw.includes(inSpool) && !raw.includes('example.org'));
  assert.ok(!r.stderr.includes(inDb) && !r.stderr.includes(PASSWORD));

  // An owner without fe: age and tar open it; databases inside are still encrypted.
  const out = path.join(w.dir, 'by-hand');
  mkdirSync(out);
  await run('bash', ['-c', 'set -o pipefail; age -d -i "$1" "$2" | tar -x -C "$3"', 'x', keyFile, made.file, out]);
  const top = path.join(out, path.basename(made.file, '.tar.age'));
  assert.equal(readFileSync(path.join(top, 'fe.yml'), 'utf8'), w.read());
  const db = readFileSync(path.join(top, 'data/mailboxes/example.org/me/mailbox.db'));
  assert.ok(db.length > 4096 && !db.subarray(0, 16).toString('latin1').startsWith('SQLite format 3'), 'the mailbox database stays encrypted');
  const manifest = JSON.parse(readFileSync(path.join(top, 'MANIFEST.json'), 'utf8')) as { files: { path: string }[] };
  assert.ok(manifest.files.some((f) => /^data\/mailboxes\/example\.org\/me\/spool\/.+/.test(f.path)), 'the spooled message is in the backup');
  assert.ok(manifest.files.some((f) => f.path === 'data/mailboxes/example.org/me/key.json'));
  assert.ok(manifest.files.some((f) => /^data\/dkim\/example\.org\//.test(f.path)));

  // Restore to a new place and serve from it.
  const target = path.join(w.dir, 'restored');
  const restoredConfig = path.join(target, 'fe.yml');
  const res = await runFe(['--config', restoredConfig, 'backup', 'restore', made.file, '--identity', keyFile, '--data-dir', path.join(target, 'data')]);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /restored \d+ files from mail\.example\.org/);
  assert.match(readFileSync(restoredConfig, 'utf8'), new RegExp(`data_dir: ${path.join(target, 'data')}`));
  assert.ok(!filesUnder(target).some((f) => path.basename(f).startsWith('.fe-restore')), 'no staging left');
  const second = await startServe(restoredConfig, [], {}, ['mx', 'imap']);
  try {
    const bodies = await inbox(second.ports.imap!, 'me@example.org', PASSWORD);
    assert.equal(bodies.filter((m) => m.includes(inDb)).length, 1, 'the imported message, once');
    assert.equal(bodies.filter((m) => m.includes(inSpool)).length, 1, 'the spooled message, imported on login');
    await assert.rejects(inbox(second.ports.imap!, 'me@example.org', 'wrong password'), /LOGIN|authentication|AUTHENTICATIONFAILED/i);
  } finally {
    await second.stop();
  }
  // Restoring over existing data is refused and changes nothing.
  const again = await runFe(['--config', path.join(w.dir, 'other.yml'), 'backup', 'restore', made.file, '--identity', keyFile, '--data-dir', path.join(target, 'data')]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /is not empty/);
  assert.ok(!existsSync(path.join(w.dir, 'other.yml')));
});

test('a mailbox a client writes to during the backup is captured consistently and restores intact', async () => {
  // A real client APPENDs in a loop until told to stop, so it overlaps the backup however
  // fast or slow this machine is.
  const stop = path.join(w.dir, 'stop-writer');
  const writer = spawn('python3', [
    '-c',
    `
import imaplib, os, sys, time
m = imaplib.IMAP4('127.0.0.1', ${fe.ports.imap})
m.login('me@example.org', sys.argv[1])
i = 0
while not os.path.exists(sys.argv[2]):
    m.append('INBOX', None, None, ('Subject: busy %d\\r\\n\\r\\nbusy-body-%d\\r\\n' % (i, i)).encode())
    i += 1
    print(i, flush=True)
    time.sleep(0.1)
m.logout()
`,
    PASSWORD,
    stop,
  ]);
  let out = '';
  let started: () => void;
  const writing = new Promise<void>((resolve) => (started = resolve));
  const appended = () => Math.max(0, ...out.split(/\s+/).filter(Boolean).map(Number));
  writer.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (appended() >= 3) started();
  });
  const writerDone = new Promise<number | null>((resolve) => writer.on('exit', (code) => resolve(code)));
  await Promise.race([writing, writerDone.then((code) => assert.fail(`the writer stopped early (exit ${code})`))]);
  const atStart = appended();
  const r = await w.fe(['backup', 'run', '--json']);
  const atEnd = appended();
  writeFileSync(stop, '');
  assert.equal(await writerDone, 0);
  assert.equal(r.code, 0, r.stderr);
  const made = JSON.parse(r.stdout) as { file: string; busy: string[] };
  assert.deepEqual(made.busy, [], 'the writer pauses often enough for a quiet copy');
  assert.ok(atEnd > atStart, `the client appended while the backup ran (${atStart} before, ${atEnd} after)`);

  const target = path.join(w.dir, 'restored-busy');
  const cfg = path.join(target, 'fe.yml');
  const res = await runFe(['--config', cfg, 'backup', 'restore', made.file, '--identity', keyFile, '--data-dir', path.join(target, 'data')]);
  assert.equal(res.code, 0, res.stderr);
  const second = await startServe(cfg, [], {}, ['mx', 'imap']);
  try {
    const bodies = await inbox(second.ports.imap!, 'me@example.org', PASSWORD);
    const busy = bodies.filter((b) => b.includes('busy-body-'));
    assert.ok(busy.length > 0, 'some of the appends made it into the backup');
    // A consistent image holds a prefix of the appends: 0..k-1, none missing in between.
    const seen = busy.map((b) => Number(/busy-body-(\d+)/.exec(b)![1])).sort((a, b) => a - b);
    assert.deepEqual(seen, [...Array(seen.length).keys()]);
  } finally {
    await second.stop();
  }
});

test('fe backup verify and restore catch damage and the wrong key, and a damaged backup restores nothing', async () => {
  const list = JSON.parse((await w.ok(['backup', 'list', '--json'])).trim()) as { backups: { file: string }[] };
  const good = list.backups.at(-1)!.file;
  const ok = await w.ok(['backup', 'verify', '--identity', keyFile]);
  assert.match(ok, /checksum ok/);
  assert.match(ok, /contents ok: \d+ files from mail\.example\.org/);

  const damaged = path.join(w.dir, 'damaged.tar.age');
  const bytes = readFileSync(good);
  const mid = Math.floor(bytes.length / 2);
  bytes[mid] = bytes[mid]! ^ 0x01;
  writeFileSync(damaged, bytes);
  writeFileSync(`${damaged}.sha256`, readFileSync(`${good}.sha256`, 'utf8').replace(/\S+$/m, 'damaged.tar.age'));
  const v = await w.fe(['backup', 'verify', damaged]);
  assert.equal(v.code, 1);
  assert.match(v.stderr, /does not match its \.sha256/);
  writeFileSync(`${damaged}.sha256`, ''); // even without the sidecar, decryption notices
  const noSidecar = path.join(w.dir, 'nosidecar.tar.age');
  writeFileSync(noSidecar, bytes);
  const v2 = await w.fe(['backup', 'verify', noSidecar, '--identity', keyFile]);
  assert.equal(v2.code, 1);
  assert.match(v2.stderr, /age: .*(authentication|corrupt)/i);
  const target = path.join(w.dir, 'restore-damaged');
  const res = await runFe(['--config', path.join(target, 'fe.yml'), 'backup', 'restore', noSidecar, '--identity', keyFile, '--data-dir', path.join(target, 'data')]);
  assert.equal(res.code, 1);
  assert.ok(!existsSync(path.join(target, 'fe.yml')) && (!existsSync(path.join(target, 'data')) || readdirSync(path.join(target, 'data')).length === 0), 'nothing restored');
  if (existsSync(target)) assert.deepEqual(readdirSync(target).filter((n) => n.startsWith('.fe-restore')), [], 'staging removed');

  const truncated = path.join(w.dir, 'truncated.tar.age');
  writeFileSync(truncated, readFileSync(good).subarray(0, readFileSync(good).length - 100));
  const t = await w.fe(['backup', 'verify', truncated, '--identity', keyFile]);
  assert.equal(t.code, 1);
  assert.match(t.stderr, /age: /);

  const otherKey = path.join(w.dir, 'other-key.txt');
  await run('age-keygen', ['-o', otherKey]);
  const wrong = await w.fe(['backup', 'verify', good, '--identity', otherKey]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /no identity matches/);
  const notKey = await w.fe(['backup', 'verify', good, '--identity', w.config]);
  assert.equal(notKey.code, 1);
  assert.match(notKey.stderr, /not an age identity/);
});

test('backup.keep: the oldest are removed only after a new one verified; fe backup list shows them', async () => {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 1100)); // names carry the second
    await w.ok(['backup', 'run']);
  }
  const names = readdirSync(backupDir).filter((n) => n.endsWith('.tar.age'));
  assert.equal(names.length, 3, 'keep: 3');
  const table = await w.ok(['backup', 'list']);
  for (const n of names) assert.ok(table.includes(n));
  assert.equal(readdirSync(backupDir).filter((n) => n.endsWith('.sha256')).length, 3, 'each with its sidecar');
});

test('two backups within one second are both kept: the second is named -2, listed after the first, and verifies', async () => {
  await new Promise((r) => setTimeout(r, 1100)); // a second of its own: the test before made one in this second
  const config = loadConfig(w.config);
  const at = new Date();
  const first = await runBackup(config, createLogger('error', 'backup'), at);
  const second = await runBackup(config, createLogger('error', 'backup'), at);
  assert.notEqual(first.file, second.file);
  assert.match(path.basename(second.file), /^fe-mail\.example\.org-\d{8}T\d{6}Z-2\.tar\.age$/);
  assert.equal(path.basename(second.file), path.basename(first.file).replace('.tar.age', '-2.tar.age'));
  const listed = listBackups(backupDir).map((b) => b.file);
  assert.deepEqual(listed.slice(-2), [first.file, second.file], 'oldest first: the -2 one is the newer');
  assert.equal(listed.length, 3, 'keep: 3');
  await w.ok(['backup', 'verify', second.file, '--identity', keyFile]);
});

test('a full disk: the backup fails with a clear error, leaves no partial file, keeps the older backups, and fe status says so', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to mount a small tmpfs');
  const small = path.join(w.dir, 'small');
  mkdirSync(small);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=96k,mode=0700', 'tmpfs', small]);
  try {
    const other = workspace();
    other.write(readFileSync(w.config, 'utf8').replace('data_dir: ./data', `data_dir: ${w.dataDir}`).replace('to: ./backups', `to: ${small}`));
    // Tar headers make the archive bigger than the data: the early estimate passes, the write fails.
    const r = await other.fe(['backup', 'run']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no space left in .*small|not enough space in .*small/);
    assert.deepEqual(readdirSync(small).filter((n) => !n.startsWith('.fe-backup.lock')), [], 'no partial file');
    const st = await other.fe(['status', '--checks', 'backup', '--json']);
    const results = JSON.parse(st.stdout) as { level: string; detail: string }[];
    assert.ok(results.some((c) => c.level === 'WARN' && /latest attempt failed .*space/.test(c.detail)), st.stdout);
  } finally {
    await run('umount', [small]);
  }
  assert.equal(readdirSync(backupDir).filter((n) => n.endsWith('.tar.age')).length, 3, 'older backups untouched');
});

test('fe status: OK after a backup, WARN then FAIL as it ages, FAIL when it is gone', async () => {
  const check = async () => JSON.parse((await w.fe(['status', '--checks', 'backup', '--json'])).stdout) as { level: string; detail: string }[];
  const stateFile = path.join(w.dataDir, 'state', 'backup.json');
  await new Promise((r) => setTimeout(r, 1100)); // names carry the second: the tests before made one in this second
  await w.ok(['backup', 'run']);
  const fresh = await check();
  assert.equal(fresh[0]!.level, 'OK', JSON.stringify(fresh));
  assert.match(fresh[0]!.detail, /last good backup \d+ h ago: fe-mail\.example\.org-/);
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as { lastSuccess: { at: string; file: string }; lastRun: { at: string } };
  const at = (hoursAgo: number) => new Date(Date.now() - hoursAgo * 3600_000).toISOString();
  writeFileSync(stateFile, JSON.stringify({ ...state, lastSuccess: { ...state.lastSuccess, at: at(30) }, lastRun: { ...state.lastSuccess, at: at(30) } }));
  assert.equal((await check())[0]!.level, 'WARN', 'daily schedule, 30 h old');
  writeFileSync(stateFile, JSON.stringify({ ...state, lastSuccess: { ...state.lastSuccess, at: at(24 * 4) }, lastRun: { ...state.lastSuccess, at: at(24 * 4) } }));
  const old = await check();
  assert.equal(old[0]!.level, 'FAIL');
  assert.match(old[0]!.detail, /4 days ago/);
  writeFileSync(stateFile, JSON.stringify({ ...state, lastSuccess: { ...state.lastSuccess, file: path.join(backupDir, 'fe-gone.tar.age') } }));
  const gone = await check();
  assert.equal(gone[0]!.level, 'FAIL');
  assert.match(gone[0]!.detail, /is gone/);
  await new Promise((r) => setTimeout(r, 1100));
  await w.ok(['backup', 'run']); // leave a good state behind
});

test('fe serve --only backup: catches up at start, runs on its schedule, and follows fe.yml on SIGHUP', async () => {
  const other = workspace();
  const dir = path.join(other.dir, 'b');
  const recipient = /age1[0-9a-z]+/.exec(w.read())![0];
  const yaml = (schedule: string) => `hostname: mail.example.org\ndata_dir: ./data\nbackup:\n  to: ${dir}\n  recipients: [${recipient}]\n  schedule: "${schedule}"\n  keep: 2\n`;
  other.write(yaml('0 3 * * *'));
  await other.ok(['domain', 'add', 'example.org']);
  // Never backed up and due only at 03:00: the catch-up makes one now.
  const d = await startServe(other.config, ['--only', 'backup'], { FE_TEST_BACKUP_CATCHUP_MS: '200' }, []);
  try {
    await d.waitForLog(/backups scheduled schedule="0 3 \* \* \*"/);
    await d.waitForLog(/making one shortly/);
    await d.waitForLog(/backup made and verified/, 30_000);
    assert.equal(readdirSync(dir).filter((n) => n.endsWith('.tar.age')).length, 1);
    // A new schedule applies on SIGHUP: every 3 seconds.
    other.write(yaml('*/3 * * * * *'));
    d.signal('SIGHUP');
    await d.waitForLog(/backups scheduled schedule="\*\/3/);
    await d.waitForLog(/(backup made and verified[\s\S]*){3}/, 30_000);
    const names = readdirSync(dir).filter((n) => n.endsWith('.tar.age'));
    assert.ok(names.length >= 1 && names.length <= 2, `keep: 2 (${names.join(', ')})`);
    // Backups off: the schedule stops.
    other.write(other.read().replace(/  recipients: .*\n/, ''));
    d.signal('SIGHUP');
    await d.waitForLog(/backups are off/);
    await new Promise((r) => setTimeout(r, 500)); // a run already started may finish
    const count = readdirSync(dir).length;
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(readdirSync(dir).length, count, 'no new backups once off');
  } finally {
    assert.equal(await d.stop(), 0);
  }
});

test('kill -9 in the middle of a backup: the next run clears the partial file, the staging copy and the stale lock, and succeeds', async () => {
  const other = workspace();
  const dir = path.join(other.dir, 'b');
  const recipient = /age1[0-9a-z]+/.exec(w.read())![0];
  other.write(`hostname: mail.example.org\ndata_dir: ./data\nbackup:\n  to: ${dir}\n  recipients: [${recipient}]\n`);
  await other.ok(['domain', 'add', 'example.org']);
  // A file too big for memory goes through a staging copy; big enough to be caught mid-write.
  await run('dd', ['if=/dev/urandom', `of=${path.join(other.dataDir, 'big.bin')}`, 'bs=1M', 'count=96', 'status=none']);
  const child = spawn(process.execPath, [FE_BIN, '--config', other.config, 'backup', 'run'], { stdio: 'ignore' });
  const partial = () => (existsSync(dir) ? readdirSync(dir).find((n) => n.endsWith('.partial')) : undefined);
  for (let i = 0; i < 300 && !(partial() && statSync(path.join(dir, partial()!)).size > 8 << 20); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(partial(), 'caught while writing');
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  assert.ok(existsSync(path.join(dir, '.fe-backup.lock')), 'the dead run left its lock');
  assert.ok(readdirSync(other.dataDir).some((n) => n.startsWith('.backup-staging-')), 'and its staging copy');
  const r = await other.fe(['backup', 'run']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(dir).filter((n) => !n.match(/^fe-mail\.example\.org-\d{8}T\d{6}Z\.tar\.age(\.sha256)?$/)), [], 'only whole backups and their sidecars');
  assert.ok(!readdirSync(other.dataDir).some((n) => n.startsWith('.backup-staging-')));
  assert.match(await other.ok(['backup', 'verify', '--identity', keyFile]), /contents ok/);
});

test('a group that never stops changing is left out (CaptureBusy), one that pauses is copied as it was', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-capture-'));
  writeFileSync(path.join(dir, 'm.db'), Buffer.alloc(8192, 1));
  writeFileSync(path.join(dir, 'm.db-wal'), Buffer.alloc(100, 2));
  const plan = planCapture(dir);
  assert.deepEqual(plan.groups, [{ members: ['m.db', 'm.db-wal'], inPlace: true }], 'a database and its WAL are one group, copied with the quiet check');
  const opts = { ...DEFAULT_CAPTURE, attempts: 3, stagingDir: path.join(dir, '.staging') };
  // Written to every 2 ms: never quiet for a whole copy.
  const busy = setInterval(() => appendFileSync(path.join(dir, 'm.db-wal'), 'x'), 2);
  try {
    await assert.rejects(captureGroup(dir, plan.groups[0]!, opts), CaptureBusy);
  } finally {
    clearInterval(busy);
  }
  const copies = await captureGroup(dir, plan.groups[0]!, opts);
  assert.deepEqual(copies!.map((c) => [c.rel, c.data?.equals(readFileSync(path.join(dir, c.rel)))]), [['m.db', true], ['m.db-wal', true]]);
  // Over the memory limit, the copy is staged on the data volume and removed after.
  const staged = await captureGroup(dir, plan.groups[0]!, { ...opts, memoryLimit: 1000 });
  assert.ok(staged!.every((c) => c.staged && readFileSync(c.staged).equals(readFileSync(path.join(dir, c.rel)))));
  releaseCapture(staged!);
  assert.deepEqual(readdirSync(opts.stagingDir), []);
});
