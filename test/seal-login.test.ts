// The automatic seal upgrade: a mailbox whose key is still X25519-only gets its ML-KEM-768 key
// when its owner logs in with the password over IMAP, POP3 or submission (real `fe serve`, Python
// clients), while the MX keeps sealing mail to it; a kill -9 in the middle of an upgrade leaves a
// key that opens with the same password, and leftovers of such a crash do not stop the next one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { mailboxKeyVersion, sealingPublicKey, unlockMailboxKey } from '../src/crypto/mailbox-key.js';
import { isHybrid } from '../src/crypto/seal.js';
import { spoolDir } from '../src/store/spool.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { ROOT, workspace } from './helpers/fe.js';
import { V1_KEY_JSON, V1_PASSWORD, V1_SPOOL_FILE, V1_SPOOL_ID, writeV1Key } from './helpers/seal-v1.js';

const run = promisify(execFile);
const POP_PASSWORD = 'pop v1 password';
const SUB_PASSWORD = 'submission v1 password';
const CRASH_PASSWORD = 'crash v1 password';

let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
const mailbox = (local: string) => path.join(w.dataDir, 'mailboxes', 'example.org', local);

async function deliver(to: string, subject: string): Promise<void> {
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--from', 'alice@sender.example', '--to', to, '--header', `Subject: ${subject}`, '--body', `${subject} body`, '--hide-informational'], { timeout: 60_000 });
  assert.match(stdout, /<- +250 /);
}

async function python(script: string, args: string[]): Promise<string> {
  const { stdout } = await run('python3', ['-c', script, ...args], { timeout: 60_000 });
  return stdout.trim();
}

// argv: port user password; prints the subjects of INBOX, or the refusal
const IMAP_SUBJECTS = `import imaplib, json, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try:
    m.login(sys.argv[2], sys.argv[3])
except imaplib.IMAP4.error as e:
    print('NO'); sys.exit(0)
typ, data = m.select('INBOX')
out = []
for i in range(1, int(data[0]) + 1):
    typ, body = m.fetch(str(i), '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
    out.append(body[0][1].decode().strip())
print(json.dumps(sorted(out)))
m.logout()`;

const POP_SUBJECTS = `import poplib, json, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]))
p.user(sys.argv[2]); p.pass_(sys.argv[3])
out = []
for i in range(1, len(p.list()[1]) + 1):
    out += [l.decode() for l in p.top(i, 0)[1] if l.startswith(b'Subject:')]
print(json.dumps(sorted(out)))
p.quit()`;

const SUBMIT_LOGIN = `import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))
s.ehlo('client.example')
s.login(sys.argv[2], sys.argv[3]); print('OK')
s.quit()`;

const keyFile = (local: string) => readFileSync(path.join(mailbox(local), 'key.json'), 'utf8');
const leftovers = (local: string) => readdirSync(mailbox(local)).filter((n) => n.startsWith('key.json') && n !== 'key.json');

before(async () => {
  dns = await startDnsServer({});
  w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nloopback_plaintext_auth: true\n` +
      `listen:\n  mx: 127.0.0.1:0\n  submission: 127.0.0.1:0\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: 127.0.0.1:0\n  pop3s: off\n` +
      `dns:\n  servers: ["${dns.address}"]\nlimits:\n  connections_per_ip: 100\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  // Old mailboxes on disk, as fe before the hybrid left them; adding the alias attaches each again.
  mkdirSync(spoolDir(mailbox('old')), { recursive: true, mode: 0o700 });
  writeFileSync(path.join(mailbox('old'), 'key.json'), V1_KEY_JSON, { mode: 0o600 });
  writeFileSync(path.join(spoolDir(mailbox('old')), `${V1_SPOOL_ID}.sealed`), V1_SPOOL_FILE, { mode: 0o600 });
  writeV1Key(mailbox('pop'), 'pop@example.org', POP_PASSWORD);
  writeV1Key(mailbox('sub'), 'sub@example.org', SUB_PASSWORD);
  writeV1Key(mailbox('crash'), 'crash@example.org', CRASH_PASSWORD);
  for (const [local, password] of [['old', V1_PASSWORD], ['pop', POP_PASSWORD], ['sub', SUB_PASSWORD], ['crash', CRASH_PASSWORD]] as const) {
    const added = await w.ok(['alias', 'add', `${local}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${password}\n` });
    assert.match(added, /attached again/);
  }
  fe = await startServe(w.config, ['--only', 'mx,imap,pop3,submission'], {}, ['mx', 'imap', 'pop3', 'submission']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('IMAP login (imaplib) adds the ML-KEM key to an X25519-only mailbox while the MX delivers to it; nothing is lost', async () => {
  const before = unlockMailboxKey(mailbox('old'), V1_PASSWORD);
  await deliver('old@example.org', 'before login');
  assert.equal(await python(IMAP_SUBJECTS, [String(fe.ports.imap), 'old@example.org', 'not the password']), 'NO');
  assert.equal(keyFile('old'), V1_KEY_JSON, 'a wrong password changes nothing');

  // The MX seals to the key file at the moment it reads it, old or new: both open after the upgrade.
  const racing = Array.from({ length: 6 }, (_, i) => deliver('old@example.org', `during login ${i}`));
  const first = python(IMAP_SUBJECTS, [String(fe.ports.imap), 'old@example.org', V1_PASSWORD]);
  await Promise.all(racing);
  assert.notEqual(await first, 'NO');
  assert.equal(mailboxKeyVersion(mailbox('old')), 2, 'the login upgraded the key');
  assert.deepEqual(leftovers('old'), [], 'no staged key or lock left');
  const upgraded = unlockMailboxKey(mailbox('old'), V1_PASSWORD);
  assert.ok(upgraded.masterKey.equals(before.masterKey), 'same password, same database key');
  assert.ok(isHybrid(upgraded.sealingPrivateKey));
  assert.ok(isHybrid(sealingPublicKey(mailbox('old'))), 'the MX now seals X25519 + ML-KEM-768');
  await fe.waitForLog(/mailbox seal upgraded to X25519 \+ ML-KEM-768 at login/);

  await deliver('old@example.org', 'after login');
  const expected = ['Subject: after login', 'Subject: before login', ...Array.from({ length: 6 }, (_, i) => `Subject: during login ${i}`), 'Subject: sealed before the upgrade'].sort();
  assert.deepEqual(JSON.parse(await python(IMAP_SUBJECTS, [String(fe.ports.imap), 'old@example.org', V1_PASSWORD])), expected);
  assert.deepEqual(readdirSync(spoolDir(mailbox('old'))).filter((n) => !n.startsWith('.')), [], 'all imported, none moved to failed/');
  const again = readFileSync(path.join(mailbox('old'), 'key.json'), 'utf8');
  assert.equal(await python(IMAP_SUBJECTS, [String(fe.ports.imap), 'old@example.org', V1_PASSWORD]).then((s) => JSON.parse(s).length), expected.length);
  assert.equal(keyFile('old'), again, 'an upgraded key is not rewritten at later logins');
});

test('POP3 (poplib) and submission (smtplib) logins upgrade the seal too', async () => {
  await deliver('pop@example.org', 'waiting for pop');
  assert.equal(mailboxKeyVersion(mailbox('pop')), 1);
  assert.deepEqual(JSON.parse(await python(POP_SUBJECTS, [String(fe.ports.pop3), 'pop@example.org', POP_PASSWORD])), ['Subject: waiting for pop']);
  assert.equal(mailboxKeyVersion(mailbox('pop')), 2);
  await deliver('pop@example.org', 'hybrid for pop');
  assert.deepEqual(JSON.parse(await python(POP_SUBJECTS, [String(fe.ports.pop3), 'pop@example.org', POP_PASSWORD])), ['Subject: hybrid for pop', 'Subject: waiting for pop']);

  assert.equal(mailboxKeyVersion(mailbox('sub')), 1);
  assert.equal(await python(SUBMIT_LOGIN, [String(fe.ports.submission), 'sub@example.org', SUB_PASSWORD]), 'OK');
  assert.equal(mailboxKeyVersion(mailbox('sub')), 2);
  assert.deepEqual(leftovers('sub'), []);
  assert.ok(isHybrid(unlockMailboxKey(mailbox('sub'), SUB_PASSWORD).sealingPrivateKey));
});

test('the leftovers of an upgrade killed mid-way (a half-written staged key, the lock of a dead process) do not stop the next login', async () => {
  const dir = mailbox('crash');
  const before = unlockMailboxKey(dir, CRASH_PASSWORD);
  const dead = spawn('true');
  const pid = await new Promise<number>((resolve) => dead.on('exit', () => resolve(dead.pid!)));
  writeFileSync(path.join(dir, 'key.json.lock'), `${pid}\n`);
  writeFileSync(path.join(dir, 'key.json.new'), '{"version": 2, "addr');
  assert.notEqual(await python(IMAP_SUBJECTS, [String(fe.ports.imap), 'crash@example.org', CRASH_PASSWORD]), 'NO');
  assert.equal(mailboxKeyVersion(dir), 2);
  assert.deepEqual(leftovers('crash'), []);
  assert.ok(unlockMailboxKey(dir, CRASH_PASSWORD).masterKey.equals(before.masterKey));
});

// A child upgrades copies of the v1 fixture one after another, and is killed with SIGKILL at
// whatever point it has reached: every copy it touched must still open with the same password.
const CHILD = `
import { cpSync, renameSync } from 'node:fs';
import path from 'node:path';
import { addMlkemAtLogin, unlockMailboxKeyWithSalt } from './dist/src/crypto/mailbox-key.js';
const [base, fixture, password] = process.argv.slice(1);
for (let i = 0; ; i++) {
  const dir = path.join(base, String(i));
  cpSync(fixture, dir + '.copying', { recursive: true });
  renameSync(dir + '.copying', dir);
  process.stdout.write(i + '\\n');
  await addMlkemAtLogin(dir, password, await unlockMailboxKeyWithSalt(dir, password));
}`;

test('kill -9 in the middle of upgrades: every mailbox key still opens with the same password and the same database key', async () => {
  const fixture = path.join(w.dir, 'v1-fixture');
  mkdirSync(fixture, { recursive: true });
  writeFileSync(path.join(fixture, 'key.json'), V1_KEY_JSON, { mode: 0o600 });
  const original = (() => {
    mkdirSync(path.join(w.dir, 'v1-check'), { recursive: true });
    writeFileSync(path.join(w.dir, 'v1-check', 'key.json'), V1_KEY_JSON);
    return unlockMailboxKey(path.join(w.dir, 'v1-check'), V1_PASSWORD).masterKey;
  })();
  let touched = 0;
  for (let round = 0; round < 4; round++) {
    const base = path.join(w.dir, `crash-${round}`);
    mkdirSync(base);
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, base, fixture, V1_PASSWORD], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    // Kill after a different number of copies each round, so the kill lands at different points.
    await new Promise<void>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.split('\n').length > round + 2) resolve();
      });
      void exited.then(() => resolve());
    });
    child.kill('SIGKILL');
    await exited;
    for (const name of readdirSync(base)) {
      const dir = path.join(base, name);
      if (name.endsWith('.copying')) continue; // killed inside the test's own copy
      touched++;
      const secrets = unlockMailboxKey(dir, V1_PASSWORD);
      assert.ok(secrets.masterKey.equals(original), `${dir}: the database key is kept`);
      assert.equal(readFileSync(path.join(dir, 'key.json'), 'utf8') === V1_KEY_JSON, mailboxKeyVersion(dir) === 1);
    }
  }
  assert.ok(touched >= 4);
});
