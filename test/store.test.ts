// The mailbox store end to end: MX-side spool (sealed, durable), owner-side import into the
// encrypted SQLite file, IMAP-shaped state (UIDs, MODSEQ, flags, expunges), snapshots, and the
// on-disk promise that no message byte is ever readable.
import { test } from 'node:test';
import { Database, type SqliteDb, type SqliteStatement } from '../src/store/sqlite.js';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMailboxKey, sealingPublicKey, unlockMailboxKey, type MailboxSecrets } from '../src/crypto/mailbox-key.js';
import { seal } from '../src/crypto/seal.js';
import { FolderExists, InvalidFlag, InvalidFolderName, MAILBOX_DB, MailStoreError, MailboxStore, NoSuchFolder, WrongMailboxKey } from '../src/store/mailbox-db.js';
import { mailboxDir } from '../src/store/paths.js';
import { appendToSpool, appendToSpoolAsync, isSpoolId, listSpool, newSpoolId, spoolCount, spoolDir, spoolFileName } from '../src/store/spool.js';
import { QueueStore } from '../src/queue/store.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'store-child.js');
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

function tmp(): string {
  return mkdtempSync(path.join(tmpdir(), 'fe-store-'));
}

function newMailbox(): { dir: string; secrets: MailboxSecrets; publicKey: KeyObject } {
  const kp = generateKeyPairSync('x25519');
  return { dir: path.join(tmp(), 'mb'), secrets: { masterKey: randomBytes(32), sealingPrivateKey: kp.privateKey }, publicKey: kp.publicKey };
}

function meta(from = 'sender@example.net', to = 'me@example.org'): { receivedAt: Date; envelopeFrom: string; envelopeTo: string } {
  return { receivedAt: new Date('2025-03-01T10:00:00Z'), envelopeFrom: from, envelopeTo: to };
}

function msg(subject: string, body = 'hello'): Buffer {
  return Buffer.from(`From: Sender <sender@example.net>\r\nTo: me@example.org\r\nSubject: ${subject}\r\nDate: Sat, 1 Mar 2025 10:00:00 +0000\r\nMessage-ID: <${subject}@example.net>\r\n\r\n${body}\r\n`);
}

function allFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).map((n) => path.join(dir, n)).filter((f) => statSync(f).isFile());
}

/** Files under `dir` that contain `needle` as bytes (ASCII, UTF-16LE, or base64 of it). */
function filesContaining(dir: string, needle: string): string[] {
  const forms = [Buffer.from(needle), Buffer.from(needle, 'utf16le'), Buffer.from(Buffer.from(needle).toString('base64').slice(0, 16))];
  return allFiles(dir).filter((f) => {
    const data = readFileSync(f);
    return forms.some((n) => data.includes(n));
  });
}

function sha(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

const mode = (f: string): number => statSync(f).mode & 0o777;

/** A second, raw connection to a mailbox database, keyed the documented way. */
function keyed(dir: string, secrets: MailboxSecrets, readonly = false): SqliteDb {
  const db = new Database(path.join(dir, MAILBOX_DB), { readonly });
  db.pragma(`cipher = 'chacha20'`);
  db.pragma(`key = "x'${secrets.masterKey.toString('hex')}'"`);
  return db;
}

test('a new mailbox database is chacha20-encrypted on disk with the agreed pragmas and 0600 files', () => {
  const { dir, secrets } = newMailbox();
  const store = MailboxStore.open(dir, secrets);
  try {
    assert.deepEqual(store.diagnostics(), {
      cipher: 'chacha20',
      journalMode: 'wal',
      autoVacuum: 1, // FULL
      secureDelete: 1,
      synchronous: 1, // NORMAL
      foreignKeys: 1,
      tempStore: 2, // MEMORY
      busyTimeout: 5000,
      schemaVersion: 4,
    });
    store.appendMessage('INBOX', msg('pragma-check'));
    const file = path.join(dir, MAILBOX_DB);
    const head = readFileSync(file).subarray(0, 100);
    assert.ok(!head.subarray(0, 16).equals(SQLITE_MAGIC), 'no plaintext SQLite header');
    assert.equal(head[20], 32, 'every page reserves 32 bytes: the ChaCha20-Poly1305 nonce and tag');
    for (const f of [file, `${file}-wal`, `${file}-shm`]) assert.equal(mode(f), 0o600, f);
    assert.equal(mode(dir), 0o700);
  } finally {
    store.close();
  }
  // The on-disk contract: the master key is the raw page key (SQLCipher-style x'..' form), not a
  // passphrase, so any SQLite3MultipleCiphers build can open a backup given the 32 bytes.
  const raw = keyed(dir, secrets, true);
  try {
    assert.deepEqual(raw.prepare('SELECT count(*) AS n FROM messages').get(), { n: 1 });
  } finally {
    raw.close();
  }
  const pass = new Database(path.join(dir, MAILBOX_DB), { readonly: true });
  try {
    pass.pragma(`cipher = 'chacha20'`);
    pass.pragma(`hexkey = '${secrets.masterKey.toString('hex')}'`); // hexkey = the same bytes as a passphrase (PBKDF2): must not open
    assert.throws(() => pass.prepare('SELECT count(*) FROM messages').get(), { code: 'SQLITE_NOTADB' });
  } finally {
    pass.close();
  }
});

test('spool files are sealed, 0600, complete, and a marker is in no file under the mailbox, before or after import', () => {
  const root = tmp();
  const dir = mailboxDir(root, 'example.org', 'me');
  createMailboxKey(dir, 'me@example.org', 'correct horse battery staple');
  const marker = `MARKER-${randomBytes(8).toString('hex')}`;
  const envFrom = `env-${randomBytes(6).toString('hex')}@sender.example`;
  const pub = sealingPublicKey(dir); // all the MX has
  const ids = [0, 1, 2].map((i) => appendToSpool(dir, pub, msg(`s${i}`, `${marker} number ${i}`), meta(envFrom)));
  assert.equal(spoolCount(dir), 3);
  assert.deepEqual(listSpool(dir), ids, 'listed in write order');
  const names = readdirSync(spoolDir(dir));
  assert.deepEqual(names.sort(), ids.map((id) => `${id}.sealed`).sort(), 'nothing but the final files: no temp files left');
  for (const n of names) assert.equal(mode(path.join(spoolDir(dir), n)), 0o600);
  assert.equal(mode(spoolDir(dir)), 0o700);
  assert.deepEqual(filesContaining(dir, marker), []);
  assert.deepEqual(filesContaining(dir, envFrom), [], 'envelope addresses are sealed too');

  const store = MailboxStore.open(dir, unlockMailboxKey(dir, 'correct horse battery staple'));
  try {
    const r = store.importSpool();
    assert.equal(r.imported, 3);
    assert.deepEqual(r.ids, ids);
    assert.equal(spoolCount(dir), 0);
    assert.ok(store.getRaw('INBOX', 1)!.includes(marker), 'the message is really in the store');
    assert.equal(store.getMessage('INBOX', 1)!.envelopeFrom, envFrom);
    assert.ok(existsSync(path.join(dir, `${MAILBOX_DB}-wal`)));
    assert.deepEqual(filesContaining(dir, marker), [], 'not in mailbox.db, -wal or -shm while open');
    assert.deepEqual(filesContaining(dir, envFrom), []);
  } finally {
    store.close();
  }
  assert.deepEqual(filesContaining(dir, marker), [], 'nor after the checkpoint on close');
});

test('concurrent async spool writes (what the MX does) each land whole, sealed, 0600, and all import', async () => {
  const root = tmp();
  const dir = mailboxDir(root, 'example.org', 'me');
  createMailboxKey(dir, 'me@example.org', 'correct horse battery staple');
  const marker = `MARKER-${randomBytes(8).toString('hex')}`;
  const pub = sealingPublicKey(dir);
  const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => appendToSpoolAsync(dir, pub, msg(`a${i}`, `${marker} ${i} ${'x'.repeat(i * 1000)}`), meta())));
  assert.equal(new Set(ids).size, 40);
  const names = readdirSync(spoolDir(dir));
  assert.deepEqual(names.sort(), ids.map((id) => `${id}.sealed`).sort(), 'nothing but the final files: no temp files left');
  for (const n of names) assert.equal(mode(path.join(spoolDir(dir), n)), 0o600);
  assert.deepEqual(filesContaining(dir, marker), []);
  const store = MailboxStore.open(dir, unlockMailboxKey(dir, 'correct horse battery staple'));
  try {
    assert.equal(store.importSpool().imported, 40);
    for (let uid = 1; uid <= 40; uid++) assert.match(store.getRaw('INBOX', uid)!.toString(), new RegExp(`${marker} \\d+ x*\\r\\n$`));
  } finally {
    store.close();
  }
});

test('async spool writes (on the writer threads): a message that is a view into a larger buffer is stored as exactly its bytes; a failed write rejects with its errno code', async () => {
  const { dir, secrets, publicKey } = newMailbox();
  const whole = Buffer.concat([Buffer.from('GARBAGE-BEFORE'), msg('view'), Buffer.from('GARBAGE-AFTER')]);
  const view = whole.subarray('GARBAGE-BEFORE'.length, whole.length - 'GARBAGE-AFTER'.length);
  await appendToSpoolAsync(dir, publicKey, view, meta());
  assert.equal(view.toString(), msg('view').toString(), 'the caller still has its bytes (nothing was transferred away)');
  const store = MailboxStore.open(dir, secrets);
  try {
    store.importSpool();
    assert.equal(store.getRaw('INBOX', 1)!.toString(), msg('view').toString());
  } finally {
    store.close();
  }
  // a mailbox "folder" that is a file: the spool folder cannot be made under it
  const blocked = path.join(tmp(), 'not-a-folder');
  writeFileSync(blocked, 'x');
  await assert.rejects(appendToSpoolAsync(blocked, publicKey, msg('x'), meta()), (e: NodeJS.ErrnoException) => e.code === 'ENOTDIR' || e.code === 'EEXIST');
});

test('import is one transaction and idempotent: a crash after commit but before unlinking imports nothing twice', () => {
  const { dir, secrets, publicKey } = newMailbox();
  const ids = [0, 1, 2].map((i) => appendToSpool(dir, publicKey, msg(`dup${i}`), meta()));
  const saved = path.join(tmp(), 'saved');
  mkdirSync(saved);
  for (const id of ids) copyFileSync(path.join(spoolDir(dir), `${id}.sealed`), path.join(saved, `${id}.sealed`));
  MailboxStore.open(dir, secrets).close();
  // Make the third insert fail (as a full disk would) through a second keyed connection.
  const side = keyed(dir, secrets);
  side.exec(`CREATE TRIGGER fail_third BEFORE INSERT ON messages WHEN (SELECT count(*) FROM messages) >= 2 BEGIN SELECT RAISE(ABORT, 'simulated failure'); END`);
  side.close();
  const store = MailboxStore.open(dir, secrets);
  try {
    assert.throws(() => store.importSpool(), /simulated failure/);
    assert.equal(store.getFolder('INBOX')!.messages, 0, 'all or nothing');
    assert.equal(spoolCount(dir), 3, 'no spool file removed');
    const side2 = keyed(dir, secrets);
    side2.exec('DROP TRIGGER fail_third');
    side2.close();
    assert.equal(store.importSpool().imported, 3, 'nothing was recorded as imported by the failed run');
    const before = store.getFolder('INBOX')!;
    // The crash: the commit happened, the unlinks did not.
    for (const id of ids) copyFileSync(path.join(saved, `${id}.sealed`), path.join(spoolDir(dir), `${id}.sealed`));
    const again = store.importSpool();
    assert.deepEqual({ imported: again.imported, skipped: again.skipped, failed: again.failed }, { imported: 0, skipped: 3, failed: [] });
    assert.equal(spoolCount(dir), 0, 'the leftover files are removed');
    const after = store.getFolder('INBOX')!;
    assert.equal(after.messages, 3);
    assert.equal(after.uidNext, before.uidNext);
    assert.deepEqual(
      store.listMessages('INBOX').map((m) => m.uid),
      [1, 2, 3],
    );
    // A new arrival after that still imports.
    appendToSpool(dir, publicKey, msg('late'), meta());
    assert.equal(store.importSpool().imported, 1);
    assert.equal(store.getFolder('INBOX')!.messages, 4);
  } finally {
    store.close();
  }
});

test('a spool file that does not open goes to spool/failed and is reported; the rest import', () => {
  const { dir, secrets, publicKey } = newMailbox();
  const ids = [0, 1, 2, 3].map((i) => appendToSpool(dir, publicKey, msg(`f${i}`), meta()));
  const sp = spoolDir(dir);
  const flip = path.join(sp, `${ids[1]}.sealed`);
  const data = readFileSync(flip);
  data[data.length - 40]! ^= 0xff;
  writeFileSync(flip, data);
  // sealed to a different mailbox's key
  writeFileSync(path.join(sp, `${ids[2]}.sealed`), seal(Buffer.from('x'), generateKeyPairSync('x25519').publicKey));
  // a valid file copied under another name must not be imported twice
  const copyId = '99999999999999-00000000000000000000';
  copyFileSync(path.join(sp, `${ids[3]}.sealed`), path.join(sp, `${copyId}.sealed`));
  // temp files of writers that crashed before their rename: never imported; old ones cleaned up
  const oldTmp = path.join(sp, `.${copyId}.sealed.1234.deadbeef.tmp`);
  const youngTmp = path.join(sp, `.${copyId}.sealed.1235.deadbeef.tmp`);
  copyFileSync(path.join(sp, `${ids[0]}.sealed`), oldTmp);
  copyFileSync(path.join(sp, `${ids[0]}.sealed`), youngTmp);
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
  utimesSync(oldTmp, twoHoursAgo, twoHoursAgo);
  const store = MailboxStore.open(dir, secrets);
  try {
    const r = store.importSpool();
    assert.deepEqual(r.ids, [ids[0], ids[3]]);
    assert.deepEqual(
      r.failed.map((f) => f.id),
      [ids[1], ids[2], copyId],
    );
    assert.match(r.failed[0]!.reason, /wrong key or the data was tampered with/);
    assert.match(r.failed[2]!.reason, /carries id/);
    assert.deepEqual(readdirSync(path.join(sp, 'failed')).sort(), [ids[1], ids[2], copyId].map((i) => `${i}.sealed`).sort());
    assert.equal(spoolCount(dir), 0);
    assert.ok(!existsSync(oldTmp) && existsSync(youngTmp), 'a young temp file may still be being written');
    assert.equal(store.getFolder('INBOX')!.messages, 2);
    assert.ok(store.getRaw('INBOX', 2)!.includes('Subject: f3'));
  } finally {
    store.close();
  }
});

test('1,000 spool files written as fast as possible get UIDs in write order, and ids never repeat', () => {
  const { dir, secrets, publicKey } = newMailbox();
  const n = 1000;
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(appendToSpool(dir, publicKey, msg(`order-${i}`), meta()));
  assert.equal(new Set(ids).size, n);
  assert.deepEqual(listSpool(dir), ids, 'a plain sort of the file names is write order');
  const store = MailboxStore.open(dir, secrets);
  try {
    const r = store.importSpool();
    assert.equal(r.imported, n);
    const uids = store.listMessages('INBOX').map((m) => m.uid);
    assert.equal(uids.length, n);
    for (let i = 0; i < n; i += 97) assert.ok(store.getRaw('INBOX', uids[i]!)!.includes(`Subject: order-${i}\r\n`), `UID ${uids[i]} is message ${i}`);
    assert.ok(store.getRaw('INBOX', uids[n - 1]!)!.includes(`Subject: order-${n - 1}\r\n`));
  } finally {
    store.close();
  }
  // Ids made back to back in a tight loop (far faster than a spool write) still strictly increase.
  const burst = Array.from({ length: 10_000 }, () => newSpoolId());
  for (let i = 1; i < burst.length; i++) assert.ok(burst[i - 1]! < burst[i]!, `${burst[i - 1]} < ${burst[i]}`);
});

test('spool ids follow arrival across writer processes, and first-format (millisecond) ids still import', () => {
  const { dir, secrets, publicKey } = newMailbox();
  // A spool file written by an older fe: 14-digit millisecond id, same payload layout.
  const oldId = `${String(Date.now() - 60_000).padStart(14, '0')}-${randomBytes(10).toString('hex')}`;
  assert.ok(isSpoolId(oldId));
  const metaJson = Buffer.from(JSON.stringify({ v: 1, id: oldId, receivedAt: new Date().toISOString(), envelopeFrom: 'old@example.net', envelopeTo: 'me@example.org' }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(metaJson.length);
  mkdirSync(spoolDir(dir), { recursive: true });
  writeFileSync(path.join(spoolDir(dir), spoolFileName(oldId)), seal(Buffer.concat([len, metaJson, msg('from-old-fe')]), publicKey), { mode: 0o600 });
  const first = appendToSpool(dir, publicKey, msg('parent-1'), meta());
  const pub = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  const child = spawnSync(process.execPath, [CHILD, 'spool', dir, pub, 'child', '1'], { encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  const childId = child.stdout.trim().split(' ')[0]!;
  const last = appendToSpool(dir, publicKey, msg('parent-2'), meta());
  assert.deepEqual(listSpool(dir), [oldId, first, childId, last]);
  const store = MailboxStore.open(dir, secrets);
  try {
    assert.deepEqual(store.importSpool().ids, [oldId, first, childId, last]);
    const subjects = store.listMessages('INBOX').map((m) => /Subject: (\S+)/.exec(store.getRaw('INBOX', m.uid)!.toString())![1]);
    assert.deepEqual(subjects, ['from-old-fe', 'parent-1', 'child-0', 'parent-2']);
  } finally {
    store.close();
  }
});

test('a wrong master key is WrongMailboxKey and changes no byte, also with a crashed writer\'s WAL present', () => {
  const { dir, secrets } = newMailbox();
  const store = MailboxStore.open(dir, secrets);
  store.appendMessage('INBOX', msg('keep me'));
  store.close();
  const file = path.join(dir, MAILBOX_DB);
  const before = sha(file);
  const wrong = { ...secrets, masterKey: randomBytes(32) };
  assert.throws(() => MailboxStore.open(dir, wrong), WrongMailboxKey);
  assert.equal(sha(file), before);
  assert.deepEqual(readdirSync(dir).sort(), [MAILBOX_DB], 'no journal files created either');

  // A writer killed with committed transactions still in its WAL.
  const child = spawnSync(process.execPath, [CHILD, 'crash-writer', dir, secrets.masterKey.toString('hex'), 'crashed-writer'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(child.signal, 'SIGKILL', child.stderr);
  const wal = `${file}-wal`;
  assert.ok(statSync(wal).size > 0);
  const [dbSum, walSum] = [sha(file), sha(wal)];
  assert.throws(() => MailboxStore.open(dir, wrong), WrongMailboxKey);
  assert.equal(sha(file), dbSum);
  assert.equal(sha(wal), walSum);
  const right = MailboxStore.open(dir, secrets);
  try {
    assert.equal(right.getFolder('INBOX')!.messages, 21, 'the crashed writer\'s commits survive');
  } finally {
    right.close();
  }
  assert.throws(() => MailboxStore.open(dir, { ...secrets, masterKey: Buffer.alloc(16) }), TypeError);
});

test('UIDs, UIDNEXT, MODSEQ and flags follow IMAP/CONDSTORE rules', () => {
  const { dir, secrets } = newMailbox();
  const store = MailboxStore.open(dir, secrets);
  try {
    const f0 = store.getFolder('INBOX')!;
    const a = store.appendMessage('INBOX', msg('a'), { flags: ['\\seen', 'Work'], internalDate: new Date('2024-01-02T03:04:05Z') });
    const b = store.appendMessage('INBOX', msg('b'));
    const c = store.appendMessage('INBOX', msg('c'), { flags: ['$Label1'] });
    assert.deepEqual([a.uid, b.uid, c.uid], [1, 2, 3]);
    assert.equal(a.uidValidity, f0.uidValidity);
    assert.ok(a.modseq > f0.highestModseq && b.modseq > a.modseq && c.modseq > b.modseq);
    let f = store.getFolder('inbox')!;
    assert.deepEqual([f.uidNext, f.highestModseq, f.messages, f.unseen], [4, c.modseq, 3, 2]);
    const list = store.listMessages('INBOX');
    assert.deepEqual(list[0]!.flags, ['\\Seen', 'Work'], 'system flags canonicalised');
    assert.equal(list[0]!.internalDate.toISOString(), '2024-01-02T03:04:05.000Z');
    assert.equal(list[0]!.size, msg('a').length);

    const r1 = store.setFlags('INBOX', [1, 2, 3, 99], ['\\Seen', 'work'], 'add');
    assert.deepEqual(
      r1.changed.map((x) => [x.uid, x.flags]),
      [
        [2, ['\\Seen', 'work']],
        [3, ['\\Seen', '$Label1', 'work']],
      ],
      'uid 1 already had both (keywords compare case-insensitively); uid 99 does not exist',
    );
    const m1 = r1.changed[0]!.modseq;
    assert.equal(m1, c.modseq + 1);
    assert.ok(r1.changed.every((x) => x.modseq === m1));
    assert.equal(store.getFolder('INBOX')!.highestModseq, m1);
    assert.equal(store.listMessages('INBOX')[0]!.modseq, a.modseq, 'unchanged message keeps its MODSEQ');

    assert.deepEqual(store.setFlags('INBOX', [2], ['\\Seen'], 'add').changed, [], 'no-op');
    assert.equal(store.getFolder('INBOX')!.highestModseq, m1);

    const r2 = store.setFlags('INBOX', [2], ['\\Flagged'], 'set');
    assert.deepEqual(r2.changed[0]!.flags, ['\\Flagged']);
    const r3 = store.setFlags('INBOX', [3], ['WORK', '\\Seen'], 'remove');
    assert.deepEqual(r3.changed[0]!.flags, ['$Label1']);
    assert.ok(r3.changed[0]!.modseq > r2.changed[0]!.modseq);

    // CONDSTORE: CHANGEDSINCE and UNCHANGEDSINCE
    assert.deepEqual(
      store.listMessages('INBOX', { changedSince: m1 }).map((m) => m.uid),
      [2, 3],
    );
    assert.deepEqual(
      store.listMessages('INBOX', { sinceUid: 1 }).map((m) => m.uid),
      [2, 3],
    );
    const r4 = store.setFlags('INBOX', [1, 2, 3], ['\\Answered'], 'add', { unchangedSince: m1 });
    assert.deepEqual(r4.modified, [2, 3]);
    assert.deepEqual(
      r4.changed.map((x) => x.uid),
      [1],
    );

    assert.throws(() => store.setFlags('INBOX', [1], ['\\Recent'], 'add'), InvalidFlag);
    assert.throws(() => store.setFlags('INBOX', [1], ['bad flag'], 'add'), InvalidFlag);
    assert.throws(() => store.appendMessage('Nope', msg('x')), NoSuchFolder);
    f = store.getFolder('INBOX')!;
    assert.equal(f.unseen, 2, 'uid 2 lost \\Seen to a "set", uid 3 to a "remove"');
  } finally {
    store.close();
  }
});

test('expunge removes only \\Deleted messages, records VANISHED UIDs, and never reuses a UID', () => {
  const { dir, secrets } = newMailbox();
  const store = MailboxStore.open(dir, secrets);
  try {
    for (const s of ['1', '2', '3', '4']) store.appendMessage('INBOX', msg(s));
    const base = store.getFolder('INBOX')!.highestModseq;
    assert.deepEqual(store.expunge('INBOX'), [], 'nothing is \\Deleted yet');
    store.setFlags('INBOX', [2, 3, 4], ['\\Deleted'], 'add');
    assert.deepEqual(store.expunge('INBOX', [3, 4, 1]), [3, 4], 'UID EXPUNGE: only the set, only \\Deleted');
    const mid = store.getFolder('INBOX')!.highestModseq;
    assert.deepEqual(store.expunge('INBOX'), [2]);
    assert.deepEqual(store.vanishedSince('INBOX', base), [2, 3, 4]);
    assert.deepEqual(store.vanishedSince('INBOX', mid), [2]);
    assert.ok(store.getFolder('INBOX')!.highestModseq > mid);
    assert.equal(store.getRaw('INBOX', 3), null);
    assert.deepEqual(
      store.listMessages('INBOX').map((m) => m.uid),
      [1],
    );
    assert.equal(store.appendMessage('INBOX', msg('5')).uid, 5);
  } finally {
    store.close();
  }
});

test('folders: defaults with SPECIAL-USE, create/rename/delete, UIDVALIDITY never repeats, copy and move', () => {
  const { dir, secrets } = newMailbox();
  const store = MailboxStore.open(dir, secrets);
  try {
    assert.deepEqual(
      store.listFolders().map((f) => [f.name, f.specialUse, f.subscribed]),
      [
        ['INBOX', null, true],
        ['Archive', '\\Archive', true],
        ['Drafts', '\\Drafts', true],
        ['Junk', '\\Junk', true],
        ['Sent', '\\Sent', true],
        ['Trash', '\\Trash', true],
      ],
    );
    const validities = new Set(store.listFolders().map((f) => f.uidValidity));
    assert.equal(validities.size, 6);

    store.createFolder('Work/2025/Q1');
    assert.ok(store.getFolder('Work') && store.getFolder('Work/2025'), 'parents are created');
    assert.throws(() => store.createFolder('Work'), FolderExists);
    assert.throws(() => store.createFolder('inbox'), FolderExists);
    for (const bad of ['', '/x', 'x/', 'a//b', 'a*b', 'a%', 'tab\there']) assert.throws(() => store.createFolder(bad), InvalidFolderName, bad);

    const q1 = store.getFolder('Work/2025/Q1')!;
    store.appendMessage('Work/2025/Q1', msg('q1'), { flags: ['\\Flagged'] });
    store.renameFolder('Work', 'Jobs/Old');
    assert.equal(store.getFolder('Work'), null);
    assert.equal(store.getFolder('Jobs/Old/2025/Q1')!.uidValidity, q1.uidValidity, 'children move along, keeping their state');
    assert.equal(store.getFolder('Jobs/Old/2025/Q1')!.messages, 1);
    assert.throws(() => store.renameFolder('Jobs', 'Jobs/x'), InvalidFolderName);
    assert.throws(() => store.deleteFolder('Jobs/Old'), MailStoreError, 'has subfolders');
    assert.throws(() => store.deleteFolder('INBOX'), MailStoreError);

    store.deleteFolder('Jobs/Old/2025/Q1');
    assert.equal(store.getFolder('Jobs/Old/2025/Q1'), null);
    const again = store.createFolder('Jobs/Old/2025/Q1');
    assert.ok(again.uidValidity > q1.uidValidity, 'a recreated name gets a new UIDVALIDITY');
    assert.equal(again.messages, 0);
    store.setSubscribed('Jobs', false);
    assert.equal(store.getFolder('Jobs')!.subscribed, false);

    // COPY and MOVE
    for (const s of ['m1', 'm2', 'm3']) store.appendMessage('INBOX', msg(s));
    store.setFlags('INBOX', [2], ['\\Seen'], 'add');
    const cp = store.copyMessages('INBOX', [2, 3], 'Archive');
    assert.deepEqual(cp.mapping, [
      [2, 1],
      [3, 2],
    ]);
    assert.equal(cp.uidValidity, store.getFolder('Archive')!.uidValidity);
    assert.deepEqual(store.listMessages('Archive')[0]!.flags, ['\\Seen']);
    const inboxModseq = store.getFolder('INBOX')!.highestModseq;
    const mv = store.moveMessages('INBOX', [1, 3], 'Trash');
    assert.deepEqual(mv.mapping, [
      [1, 1],
      [3, 2],
    ]);
    assert.deepEqual(
      store.listMessages('INBOX').map((m) => m.uid),
      [2],
    );
    assert.deepEqual(store.vanishedSince('INBOX', inboxModseq), [1, 3]);
    assert.ok(store.getRaw('Trash', 2)!.includes('Subject: m3'));
    // Bodies are shared; expunging one copy keeps the other readable.
    store.setFlags('Trash', [2], ['\\Deleted'], 'add');
    store.expunge('Trash');
    assert.ok(store.getRaw('Archive', 2)!.includes('Subject: m3'));

    // Renaming INBOX moves its mail to a new folder and leaves INBOX empty (RFC 3501 6.3.5).
    const oldInbox = store.getFolder('INBOX')!;
    store.renameFolder('INBOX', 'Old Inbox');
    assert.equal(store.getFolder('INBOX')!.messages, 0);
    assert.equal(store.getFolder('Old Inbox')!.messages, 1);
    assert.equal(store.appendMessage('INBOX', msg('new')).uid, oldInbox.uidNext, 'INBOX does not reuse UIDs');
  } finally {
    store.close();
  }
});

test('parsed envelope and body structure are stored; broken MIME keeps the raw message byte for byte', () => {
  const { dir, secrets } = newMailbox();
  const store = MailboxStore.open(dir, secrets);
  const mime = Buffer.from(
    [
      'From: =?utf-8?q?J=C3=B6rg?= <joerg@example.net>',
      'To: "Me, Myself" <me@example.org>, undisclosed-recipients:;',
      'Cc: other@example.org (Other Person)',
      'Subject: =?utf-8?B?R3LDvMOfZQ==?= and',
      ' more',
      'Date: Tue, 4 Mar 2025 09:08:07 +0100 (CET)',
      'Message-ID: <abc@example.net>',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="outer"',
      '',
      'preamble',
      '--outer',
      'Content-Type: multipart/alternative; boundary=inner',
      '',
      '--inner',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'plain line 1',
      'plain line 2',
      '--inner',
      'Content-Type: text/html',
      '',
      '<p>html</p>',
      '--inner--',
      '--outer',
      'Content-Type: application/pdf; name="a.pdf"',
      'Content-Disposition: attachment; filename="a.pdf"',
      'Content-Transfer-Encoding: base64',
      '',
      'JVBERi0=',
      '--outer',
      'Content-Type: message/rfc822',
      '',
      'Subject: inner message',
      'From: inner@example.com',
      '',
      'inner body',
      '--outer--',
      'epilogue',
      '',
    ].join('\r\n'),
  );
  const broken = Buffer.from('Subject: broken\r\nContent-Type: multipart/mixed; boundary="never"\r\nX-Bin: \xff\xfe\r\n\r\n--nope\r\n\x00\x01 binary junk', 'latin1');
  const headerOnly = Buffer.from('Subject: no body at all');
  try {
    store.appendMessage('INBOX', mime);
    store.appendMessage('INBOX', broken);
    store.appendMessage('INBOX', headerOnly);
    const m = store.getMessage('INBOX', 1)!;
    assert.equal(m.envelope.subject, '=?utf-8?B?R3LDvMOfZQ==?= and more', 'IMAP gets the raw, unfolded header');
    assert.deepEqual(m.envelope.from, [{ name: '=?utf-8?q?J=C3=B6rg?=', adl: null, mailbox: 'joerg', host: 'example.net' }]);
    assert.deepEqual(m.envelope.sender, m.envelope.from);
    assert.deepEqual(m.envelope.to, [
      { name: 'Me, Myself', adl: null, mailbox: 'me', host: 'example.org' },
      { name: null, adl: null, mailbox: 'undisclosed-recipients', host: null },
      { name: null, adl: null, mailbox: null, host: null },
    ]);
    assert.deepEqual(m.envelope.cc, [{ name: 'Other Person', adl: null, mailbox: 'other', host: 'example.org' }]);
    assert.equal(m.envelope.messageId, '<abc@example.net>');
    assert.equal(m.sentAt!.toISOString(), '2025-03-04T08:08:07.000Z');
    const s = m.structure;
    assert.equal(`${s.type}/${s.subtype}`, 'multipart/mixed');
    assert.deepEqual(
      s.parts!.map((p) => `${p.type}/${p.subtype}`),
      ['multipart/alternative', 'application/pdf', 'message/rfc822'],
    );
    const [alt, pdf, inner] = s.parts!;
    assert.deepEqual(
      alt!.parts!.map((p) => [`${p.type}/${p.subtype}`, p.lines]),
      [
        ['text/plain', 2],
        ['text/html', 1],
      ],
    );
    const raw = store.getRaw('INBOX', 1)!;
    const plain = alt!.parts![0]!;
    assert.equal(raw.subarray(plain.bodyStart, plain.bodyEnd).toString(), 'plain line 1\r\nplain line 2');
    assert.equal(pdf!.encoding, 'base64');
    assert.deepEqual(pdf!.disposition, { type: 'attachment', params: [['filename', 'a.pdf']] });
    assert.equal(raw.subarray(pdf!.bodyStart, pdf!.bodyEnd).toString(), 'JVBERi0=');
    assert.equal(inner!.message!.envelope.subject, 'inner message');
    assert.equal(raw.subarray(0, m.headerSize).toString().endsWith('\r\n\r\n'), true);

    assert.deepEqual(store.getRaw('INBOX', 2), broken);
    const b = store.getMessage('INBOX', 2)!;
    assert.equal(b.envelope.subject, 'broken');
    assert.equal(b.structure.parts!.length, 1, 'a multipart without delimiters shows as one text part');
    assert.deepEqual(store.getRaw('INBOX', 3), headerOnly);
    assert.equal(store.getMessage('INBOX', 3)!.structure.size, 0);
  } finally {
    store.close();
  }
});

test('snapshot while open is a consistent, still-encrypted copy that opens with the same key only', () => {
  const { dir, secrets } = newMailbox();
  const marker = `SNAP-${randomBytes(8).toString('hex')}`;
  const store = MailboxStore.open(dir, secrets);
  const out = path.join(tmp(), 'backup');
  mkdirSync(out);
  const target = path.join(out, MAILBOX_DB);
  try {
    for (let i = 0; i < 5; i++) store.appendMessage('INBOX', msg(`snap${i}`, `${marker} ${i}`));
    store.setFlags('INBOX', [2], ['\\Seen'], 'add');
    store.snapshot(target);
    assert.throws(() => store.snapshot(target), /already exists/);
    store.appendMessage('INBOX', msg('after the snapshot'));
  } finally {
    store.close();
  }
  assert.deepEqual(readdirSync(out), [MAILBOX_DB], 'no temp or journal files beside it');
  assert.equal(mode(target), 0o600);
  assert.ok(!readFileSync(target).subarray(0, 16).equals(SQLITE_MAGIC));
  assert.deepEqual(filesContaining(out, marker), []);
  assert.throws(() => MailboxStore.open(out, { ...secrets, masterKey: randomBytes(32) }), WrongMailboxKey);
  const copy = MailboxStore.open(out, secrets);
  try {
    assert.equal(copy.getFolder('INBOX')!.messages, 5);
    assert.ok(copy.getRaw('INBOX', 5)!.includes(`${marker} 4`));
    assert.deepEqual(copy.listMessages('INBOX')[1]!.flags, ['\\Seen']);
  } finally {
    copy.close();
  }
});

// Each writer fsyncs every file and its folder: about 400 fsyncs in all, under a second when the
// disk is idle but once over 30 s beside the rest of the suite. A writer that has not ended after
// 100 s is killed and named, so a real hang is told apart from a slow disk.
test('concurrent MX writers, one killed mid-burst: every id that was returned gets imported', { timeout: 120_000 }, async () => {
  const { dir, secrets, publicKey } = newMailbox();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pub = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const writers = [
    { tag: 'victim', count: 5000 },
    { tag: 'w1', count: 60 },
    { tag: 'w2', count: 60 },
    { tag: 'w3', count: 60 },
  ];
  const reported = new Map<string, string>(); // id -> expected body marker
  const exits = await Promise.all(
    writers.map(
      (w) =>
        new Promise<{ tag: string; signal: NodeJS.Signals | null; code: number | null; stderr: string }>((resolve, reject) => {
          const child = spawn(process.execPath, [CHILD, 'spool', dir, pub, w.tag, String(w.count)], { stdio: ['ignore', 'pipe', 'pipe'] });
          let buf = '';
          let stderr = '';
          let lines = 0;
          child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
          child.stdout.setEncoding('utf8').on('data', (d: string) => {
            buf += d;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const [id, tag, j] = buf.slice(0, nl).split(' ');
              buf = buf.slice(nl + 1);
              reported.set(id!, `child-${tag}-msg-${j}`);
              lines++;
              if (w.tag === 'victim' && lines === 25) child.kill('SIGKILL');
            }
          });
          const stalled = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`writer ${w.tag} still running after 100 s, ${lines} ids printed; stderr: ${stderr}`));
          }, 100_000);
          child.on('error', reject);
          child.on('close', (code, signal) => {
            clearTimeout(stalled);
            resolve({ tag: w.tag, code, signal, stderr });
          });
        }),
    ),
  );
  for (const e of exits) {
    if (e.tag === 'victim') assert.equal(e.signal, 'SIGKILL', 'killed mid-burst, not finished');
    else assert.equal(e.code, 0, e.stderr);
  }
  assert.ok(reported.size >= 25 + 180);
  const onDisk = spoolCount(dir);
  assert.ok(onDisk >= reported.size, 'every reported id is a complete file');
  const store = MailboxStore.open(dir, secrets);
  try {
    const r = store.importSpool();
    assert.deepEqual(r.failed, [], 'no half-written file was picked up');
    assert.equal(r.imported, onDisk);
    const uidOf = new Map(r.ids.map((id, i) => [id, i + 1]));
    for (const [id, body] of reported) {
      const uid = uidOf.get(id);
      assert.ok(uid !== undefined, `reported id ${id} was imported`);
      assert.ok(store.getRaw('INBOX', uid)!.includes(body), `${id} holds ${body}`);
    }
    assert.equal(store.getFolder('INBOX')!.messages, onDisk);
  } finally {
    store.close();
  }
});

// Creation used to race: openers of a missing file each keyed the empty file with a salt of
// their own, and whoever lost read the winner's pages as a wrong key (seen as "wrong password"
// for a mailbox, "was the key replaced?" for the queue, and a duplicate ALTER TABLE).
async function raceOpen(mode: 'open-at' | 'queue-open-at', dir: string, keyHex: string, children: number): Promise<string[]> {
  const startAt = Date.now() + 400; // all children loaded and spinning by then
  const outs = await Promise.all(
    Array.from({ length: children }, () => new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, [CHILD, mode, dir, keyHex, String(startAt)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.on('error', reject);
      child.on('close', () => resolve(out.trim()));
    })),
  );
  return outs;
}

test('processes that create one mailbox database at the same instant all open it, with one key', { timeout: 120_000 }, async () => {
  const failures: string[] = [];
  for (let round = 0; round < 12; round++) {
    const { dir, secrets } = newMailbox();
    const outs = await raceOpen('open-at', dir, secrets.masterKey.toString('hex'), 4);
    failures.push(...outs.filter((o) => o !== 'ok'));
    const store = MailboxStore.open(dir, secrets);
    try {
      assert.equal(store.getFolder('INBOX')!.messages, outs.filter((o) => o === 'ok').length);
    } finally {
      store.close();
    }
    assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.new')), [], 'no build file left');
  }
  assert.deepEqual(failures, []);
});

test('processes that create the queue database and its key at the same instant all open it', { timeout: 120_000 }, async () => {
  const failures: string[] = [];
  for (let round = 0; round < 12; round++) {
    const dataDir = tmp();
    const outs = await raceOpen('queue-open-at', dataDir, '-', 4);
    failures.push(...outs.filter((o) => o !== 'ok'));
    QueueStore.open(dataDir).close(); // the key on disk is the one the database was made with
  }
  assert.deepEqual(failures, []);
});

test('keying and opening an existing mailbox database is cheap (raw key, no KDF)', (t) => {
  const { dir, secrets } = newMailbox();
  const first = MailboxStore.open(dir, secrets);
  for (let i = 0; i < 50; i++) first.appendMessage('INBOX', msg(`t${i}`));
  first.close();
  const times: number[] = [];
  for (let i = 0; i < 10; i++) {
    const s = MailboxStore.open(dir, secrets);
    times.push(s.openMs);
    assert.equal(s.getFolder('INBOX')!.messages, 50);
    s.close();
  }
  times.sort((a, b) => a - b);
  t.diagnostic(`create ${first.openMs.toFixed(1)} ms; reopen median ${times[5]!.toFixed(2)} ms, max ${times[9]!.toFixed(2)} ms`);
});
