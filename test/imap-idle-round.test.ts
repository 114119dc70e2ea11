// Telling many idle sessions of one change (src/imap/idle-round.ts: the change is read once per
// folder and shared), and SEARCH on flags alone answered from the session's flag table. Both are
// speed work (the bench measures it); these check that every session still hears and finds
// exactly what it should, against a real `fe serve`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';

const PASSWORD = 'idle round password';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;

async function login(user: string): Promise<ImapConn> {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  const r = await c.command(`LOGIN ${user}@example.org "${PASSWORD}"`);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

async function ok(c: ImapConn, line: string | Buffer) {
  const r = await c.command(line);
  assert.equal(r.status, 'OK', `${String(line).slice(0, 60)}: ${r.text}`);
  return r;
}

function message(subject: string): Buffer {
  return Buffer.from(`From: a@sender.example\r\nTo: x@example.org\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@sender.example>\r\n\r\nbody of ${subject}\r\n`);
}

async function append(c: ImapConn, folder: string, subject: string, flags = ''): Promise<void> {
  const msg = message(subject);
  await ok(c, Buffer.concat([Buffer.from(`APPEND ${folder} ${flags ? `(${flags}) ` : ''}{${msg.length}+}\r\n`), msg]));
}

/** Starts IDLE and waits for the server's continuation. */
async function idle(c: ImapConn): Promise<void> {
  c.write('i IDLE\r\n');
  await c.waitFor(/^\+ /);
}

/** The sequence numbers of a `* SEARCH` answer. */
async function search(c: ImapConn, criteria: string): Promise<number[]> {
  const r = await ok(c, `SEARCH ${criteria}`);
  const line = r.untagged.find((l) => l.startsWith('* SEARCH'));
  assert.ok(line, `no * SEARCH for ${criteria}: ${r.untagged.join(' | ')}`);
  return line.slice('* SEARCH'.length).trim().split(' ').filter(Boolean).map(Number);
}

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  for (const user of ['round', 'flags']) await w.ok(['alias', 'add', `${user}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['mx', 'imaps']);
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

test('IDLE: sessions idling on two folders of one mailbox each hear their own part of one MOVE, and later changes', async () => {
  const writer = await login('round');
  await ok(writer, 'CREATE Kept');
  // the same history in both folders, so their MODSEQs are the same: each folder's change must still reach only its own idlers
  for (const s of ['one', 'two', 'three']) await append(writer, 'INBOX', s);
  for (const s of ['old one', 'old two', 'old three']) await append(writer, 'Kept', s);
  const inbox: ImapConn[] = [];
  for (let i = 0; i < 6; i++) {
    const c = await login('round');
    const r = await ok(c, 'SELECT INBOX');
    assert.ok(r.untagged.includes('* 3 EXISTS'), r.untagged.join(' | '));
    inbox.push(c);
  }
  const archive: ImapConn[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await login('round');
    const r = await ok(c, 'SELECT Kept');
    assert.ok(r.untagged.includes('* 3 EXISTS'), r.untagged.join(' | '));
    archive.push(c);
  }
  for (const c of [...inbox, ...archive]) await idle(c);
  await ok(writer, 'SELECT INBOX');

  // one command changes both folders: INBOX loses message 2, Kept gains it
  const heardInbox = inbox.map((c) => c.waitFor(/^\* \d+ EXPUNGE/, 30_000));
  const heardArchive = archive.map((c) => c.waitFor(/^\* \d+ EXISTS/, 30_000));
  await ok(writer, 'MOVE 2 Kept');
  assert.deepEqual(await Promise.all(heardInbox), inbox.map(() => '* 2 EXPUNGE'));
  assert.deepEqual(await Promise.all(heardArchive), archive.map(() => '* 4 EXISTS'));

  // the next change reads from where each was told: only the flag change, by its new number
  const flagged = inbox.map((c) => c.waitFor(/^\* \d+ FETCH/, 30_000));
  await ok(writer, 'STORE 2 +FLAGS (\\Flagged)');
  for (const line of await Promise.all(flagged)) assert.match(line, /^\* 2 FETCH \(UID 3 FLAGS \((\\Flagged|\\Recent| )+\)\)$/);

  // an idler that ends IDLE and selects the other folder hears that folder's changes, not INBOX's
  const mover = inbox.pop()!;
  mover.write('DONE\r\n');
  await mover.waitFor(/^i OK/, 30_000);
  const r = await ok(mover, 'SELECT Kept');
  assert.ok(r.untagged.includes('* 4 EXISTS'), r.untagged.join(' | '));
  await idle(mover);
  const heard = [...archive, mover].map((c) => c.waitFor(/^\* \d+ EXISTS/, 30_000));
  const heardHere = inbox.map((c) => c.waitFor(/^\* \d+ EXISTS/, 30_000));
  await append(writer, 'Kept', 'four');
  await append(writer, 'INBOX', 'five');
  assert.deepEqual(await Promise.all(heard), [...archive, mover].map(() => '* 5 EXISTS'));
  assert.deepEqual(await Promise.all(heardHere), inbox.map(() => '* 3 EXISTS'));
  for (const c of [writer, ...inbox, ...archive, mover]) c.close();
});

test('SEARCH on flags alone agrees with the stored flags: own STORE, another session\'s STORE before and after NOOP, \\Recent, keywords', async () => {
  const other = await login('flags');
  await append(other, 'INBOX', 'a', '\\Seen');
  await append(other, 'INBOX', 'b');
  await append(other, 'INBOX', 'c', '\\Seen \\Flagged');
  await append(other, 'INBOX', 'd', '\\Deleted $Later');
  await append(other, 'INBOX', 'e', '\\Flagged');
  const c = await login('flags');
  await ok(c, 'SELECT INBOX'); // takes \Recent for all five

  assert.deepEqual(await search(c, 'UNSEEN'), [2, 4, 5]);
  assert.deepEqual(await search(c, 'FLAGGED UNDELETED'), [3, 5]);
  assert.deepEqual(await search(c, 'OR DELETED SEEN'), [1, 3, 4]);
  assert.deepEqual(await search(c, 'NOT FLAGGED'), [1, 2, 4]);
  assert.deepEqual(await search(c, 'KEYWORD $later'), [4]);
  assert.deepEqual(await search(c, 'UNKEYWORD $Later SEEN'), [1, 3]);
  assert.deepEqual(await search(c, 'NEW'), [2, 4, 5]);
  assert.deepEqual(await search(c, 'OLD'), []);
  assert.deepEqual(await search(c, 'ALL'), [1, 2, 3, 4, 5]);
  const r = await ok(c, 'UID SEARCH UNSEEN');
  assert.ok(r.untagged.includes('* SEARCH 2 4 5'), r.untagged.join(' | '));

  // this session's own changes
  await ok(c, 'STORE 2 +FLAGS (\\Seen)');
  await ok(c, 'FETCH 5 BODY[]'); // sets \Seen
  assert.deepEqual(await search(c, 'UNSEEN'), [4]);

  // another session's change counts at once, and after this session was told of it
  await ok(other, 'SELECT INBOX');
  await ok(other, 'STORE 1 -FLAGS (\\Seen)');
  assert.deepEqual(await search(c, 'UNSEEN'), [1, 4]);
  await ok(c, 'NOOP');
  assert.deepEqual(await search(c, 'UNSEEN'), [1, 4]);

  // another session's new message: in this session's answer once it is told of it
  await append(other, 'INBOX', 'f');
  await ok(c, 'NOOP');
  assert.deepEqual(await search(c, 'UNSEEN'), [1, 4, 6]);
  assert.deepEqual(await search(c, 'RECENT UNSEEN'), [1, 4]); // the appending session, which has INBOX open, took 6's \Recent
  // a session opened later has nothing recent: \Recent is this session's alone
  const later = await login('flags');
  await ok(later, 'SELECT INBOX');
  assert.deepEqual(await search(later, 'NEW'), []);
  assert.deepEqual(await search(later, 'UNSEEN'), [1, 4, 6]);
  for (const x of [c, other, later]) x.close();
});
