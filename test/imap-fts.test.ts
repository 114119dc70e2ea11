// SEARCH BODY/TEXT through the full-text index (src/store/fulltext.ts) against a real `fe serve`:
// the same answers with the index, without it (dropped: every message searched one by one) and
// as the messages say; short needles, non-ASCII, base64 and quoted-printable parts, an attached
// message's header; the index follows EXPUNGE, COPY and MOVE, fills again after being dropped,
// and a schema v3 mailbox migrates to v4 and searches. Also SEARCH keys that run as SQL.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';
import { unlockMailboxKey } from '../src/crypto/mailbox-key.js';
import { MailboxStore, MAILBOX_DB } from '../src/store/mailbox-db.js';
import { Database } from '../src/store/sqlite.js';
import { encodeEnvelope } from '../src/imap/encode.js';

const PASSWORD = 'fulltext password';
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
const MBOX = () => path.join(w.dataDir, 'mailboxes', 'example.org', 'ft');

async function login(): Promise<ImapConn> {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  const r = await c.command(`LOGIN ft@example.org "${PASSWORD}"`);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

async function append(c: ImapConn, folder: string, msg: string, flags = ''): Promise<number> {
  const b = Buffer.from(msg.replace(/\r?\n/g, '\r\n'), 'utf8');
  const r = await c.command(Buffer.concat([Buffer.from(`APPEND ${folder} ${flags ? `(${flags}) ` : ''}{${b.length}+}\r\n`), b]));
  assert.equal(r.status, 'OK', r.text);
  return Number(/APPENDUID \d+ (\d+)/.exec(r.text)![1]);
}

/** UIDs a UID SEARCH returns, sorted. */
async function uids(c: ImapConn, criteria: string | Buffer): Promise<number[]> {
  const r = await c.command(typeof criteria === 'string' ? `UID SEARCH ${criteria}` : Buffer.concat([Buffer.from('UID SEARCH '), criteria]));
  assert.equal(r.status, 'OK', `${criteria}: ${r.text}`);
  const line = r.untagged.find((l) => l.startsWith('* SEARCH')) ?? '* SEARCH';
  return line.slice(8).trim().split(' ').filter(Boolean).map(Number).sort((a, b) => a - b);
}

/** A UTF-8 search string as a literal (CHARSET UTF-8). */
const utf8Literal = (s: string) => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from(`{${b.length}+}\r\n`), b]);
};

const M = {
  plain: 'From: a@sender.example\nSubject: airship\nMessage-ID: <p@x>\n\nThe ZEPPELIN landed at noon. ab\n',
  qp: 'From: b@sender.example\nSubject: qp\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nCaf=C3=A9 cr=C3=A8me and a zep=\npelin split by a soft break\n',
  b64: `From: c@sender.example\nSubject: b64\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n${Buffer.from('Grüße aus München, ΣΟΦΙΑ\n', 'utf8').toString('base64')}\n`,
  attach: `From: d@sender.example\nSubject: attachment\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nsee attached\n--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n${Buffer.from('hiddenword in a binary file').toString('base64')}\n--XX--\n`,
  inner: 'From: e@sender.example\nSubject: forward\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=YY\n\n--YY\nContent-Type: text/plain\n\nforwarded below\n--YY\nContent-Type: message/rfc822\n\nFrom: inner@sender.example\nSubject: innermost marker\n\ninner body text\n--YY--\n',
  latin1: 'From: f@sender.example\nSubject: latin1\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nna=EFve fa=E7ade\n',
};

// [criteria, the messages that match]
const CASES: [string | Buffer, (keyof typeof M)[]][] = [
  ['BODY zeppelin', ['plain', 'qp']],
  ['TEXT zeppelin', ['plain', 'qp']],
  ['BODY "ZePpElIn landed"', ['plain']],
  ['BODY ab', ['plain']], // two characters: no trigram
  ['BODY e', ['plain', 'qp', 'b64', 'attach', 'inner', 'latin1']],
  ['BODY ""', ['plain', 'qp', 'b64', 'attach', 'inner', 'latin1']],
  ['TEXT airship', ['plain']], // in the header only
  ['BODY airship', []],
  ['BODY hiddenword', []], // inside a non-text attachment
  ['BODY "innermost marker"', ['inner']], // an attached message's header is its parent's body
  ['TEXT "inner body"', ['inner']],
  [Buffer.concat([Buffer.from('CHARSET UTF-8 BODY '), utf8Literal('crème')]), ['qp']],
  [Buffer.concat([Buffer.from('CHARSET UTF-8 BODY '), utf8Literal('é')]), ['qp']], // one character, non-ASCII
  [Buffer.concat([Buffer.from('CHARSET UTF-8 BODY '), utf8Literal('MÜNCHEN')]), ['b64']],
  [Buffer.concat([Buffer.from('CHARSET UTF-8 TEXT '), utf8Literal('σοφια')]), ['b64']],
  [Buffer.concat([Buffer.from('CHARSET UTF-8 BODY '), utf8Literal('naïve')]), ['latin1']],
  ['BODY zeppelin SUBJECT qp', ['qp']],
  ['OR BODY landed TEXT forward', ['plain', 'inner']],
  ['NOT BODY e', []],
  ['BODY nowhere-at-all', []],
];

let uidOf: Record<keyof typeof M, number>;
let c: ImapConn;

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imap: off\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'ft@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config);
  c = await login();
  assert.equal((await c.command('SELECT INBOX')).status, 'OK');
  uidOf = {} as typeof uidOf;
  for (const k of Object.keys(M) as (keyof typeof M)[]) uidOf[k] = await append(c, 'INBOX', M[k]);
});

after(async () => {
  c?.close();
  await fe?.stop();
  await dns?.close();
});

async function checkCases(label: string): Promise<void> {
  for (const [criteria, want] of CASES) {
    assert.deepEqual(await uids(c, criteria), want.map((k) => uidOf[k]).sort((a, b) => a - b), `${label}: ${criteria.toString()}`);
  }
}

/** The server's mailbox, opened a second time from this process (SQLite allows it; WAL). */
function withStore<T>(fn: (s: MailboxStore) => T): T {
  const s = MailboxStore.open(MBOX(), unlockMailboxKey(MBOX(), PASSWORD));
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

test('SEARCH BODY/TEXT: the index answers as the messages say (short strings, non-ASCII, base64, quoted-printable, attached messages)', async () => {
  assert.deepEqual(withStore((s) => s.fullTextStatus()), { indexed: 6, missing: 0 }, 'APPEND indexed every message');
  await checkCases('indexed');
});

test('with the index dropped the answers are the same, and the index fills again in the background', async () => {
  withStore((s) => s.resetFullText());
  assert.deepEqual(withStore((s) => s.fullTextStatus()), { indexed: 0, missing: 6 });
  await checkCases('not indexed');
  // the first BODY search scheduled the build; it runs in batches between commands
  const deadline = Date.now() + 30_000;
  while (withStore((s) => s.fullTextStatus()).missing > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(withStore((s) => s.fullTextStatus()), { indexed: 6, missing: 0 }, 'rebuilt');
  await checkCases('rebuilt');
});

test('the index follows COPY, MOVE and EXPUNGE', async () => {
  assert.equal((await c.command('CREATE ftcopy')).status, 'OK');
  assert.equal((await c.command('CREATE ftmove')).status, 'OK');
  const extra = await append(c, 'INBOX', 'From: g@sender.example\nSubject: extra\n\nwandering albatross\n');
  assert.equal((await c.command(`UID COPY ${extra} ftcopy`)).status, 'OK');
  assert.deepEqual(await uids(c, 'BODY albatross'), [extra]);
  assert.equal((await c.command(`UID MOVE ${extra} ftmove`)).status, 'OK');
  assert.deepEqual(await uids(c, 'BODY albatross'), []);
  for (const folder of ['ftcopy', 'ftmove']) {
    assert.equal((await c.command(`SELECT ${folder}`)).status, 'OK');
    assert.equal((await uids(c, 'BODY albatross')).length, 1, folder);
  }
  // expunge the copy: the body is still in ftmove, so its row stays
  assert.equal((await c.command('SELECT ftcopy')).status, 'OK');
  assert.equal((await c.command('STORE 1 +FLAGS.SILENT (\\Deleted)')).status, 'OK');
  assert.equal((await c.command('EXPUNGE')).status, 'OK');
  assert.deepEqual(withStore((s) => s.fullTextStatus()), { indexed: 7, missing: 0 });
  // expunge the last copy: body and row go
  assert.equal((await c.command('SELECT ftmove')).status, 'OK');
  assert.equal((await c.command('STORE 1 +FLAGS.SILENT (\\Deleted)')).status, 'OK');
  assert.equal((await c.command('EXPUNGE')).status, 'OK');
  assert.deepEqual(await uids(c, 'BODY albatross'), []);
  assert.deepEqual(withStore((s) => s.fullTextStatus()), { indexed: 6, missing: 0 });
  assert.equal((await c.command('SELECT INBOX')).status, 'OK');
  await checkCases('after COPY/MOVE/EXPUNGE');
});

test('SEARCH keys SQL answers (flags, keywords, sizes, dates, UIDs, headers) agree with per-message evaluation', async () => {
  const all = Object.values(uidOf).sort((a, b) => a - b);
  assert.equal((await c.command(`UID STORE ${uidOf.qp},${uidOf.b64} +FLAGS (\\Seen $Work)`)).status, 'OK');
  assert.equal((await c.command(`UID STORE ${uidOf.b64} +FLAGS (\\Flagged)`)).status, 'OK');
  const sizes = (await c.command('UID FETCH 1:* (RFC822.SIZE)')).untagged.map((l) => /UID (\d+) RFC822\.SIZE (\d+)/.exec(l) ?? /RFC822\.SIZE (\d+) UID (\d+)/.exec(l));
  const sizeOf = new Map(sizes.filter(Boolean).map((m) => [Number(m![1]), Number(m![2])]));
  const median = [...sizeOf.values()].sort((a, b) => a - b)[3]!;
  const cases: [string, number[]][] = [
    ['UNSEEN', all.filter((u) => u !== uidOf.qp && u !== uidOf.b64)],
    ['SEEN FLAGGED', [uidOf.b64]],
    ['KEYWORD $work', [uidOf.qp, uidOf.b64]], // keywords compare case-insensitively
    ['UNKEYWORD $WORK UNSEEN', all.filter((u) => u !== uidOf.qp && u !== uidOf.b64)],
    [`LARGER ${median}`, all.filter((u) => sizeOf.get(u)! > median)],
    [`OR SMALLER ${median} FLAGGED`, all.filter((u) => sizeOf.get(u)! < median || u === uidOf.b64)],
    ['SINCE 1-Jan-2000 BEFORE 1-Jan-2100', all],
    ['BEFORE 1-Jan-2000', []],
    ['YOUNGER 3600', all],
    [`UID ${uidOf.qp}:${uidOf.attach} NOT SUBJECT b64`, [uidOf.qp, uidOf.attach]],
    ['SUBJECT AIRSHIP', [uidOf.plain]],
    ['FROM c@sender', [uidOf.b64]],
    ['OR SUBJECT forward FROM f@sender', [uidOf.inner, uidOf.latin1]],
    ['UNSEEN BODY zeppelin', [uidOf.plain]], // SQL narrows, the index answers BODY
  ];
  for (const [criteria, want] of cases) assert.deepEqual(await uids(c, criteria), want, criteria);
  // plain SEARCH answers sequence numbers
  const r = await c.command('SEARCH FLAGGED');
  assert.ok(r.untagged.includes(`* SEARCH ${all.indexOf(uidOf.b64) + 1}`), r.untagged.join('\n'));
});

test('a schema v3 mailbox migrates to v4: envelopes in wire form, the index fills on use, and search works', () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'fe-fts-')), 'mb');
  const secrets = { masterKey: randomBytes(32), sealingPrivateKey: generateKeyPairSync('x25519').privateKey };
  let store = MailboxStore.open(dir, secrets);
  const when = new Date('2024-03-01T10:00:00Z');
  store.importMessages((Object.keys(M) as (keyof typeof M)[]).map((k) => ({ folder: 'INBOX', raw: Buffer.from(M[k].replace(/\n/g, '\r\n')), flags: [], internalDate: when })));
  store.close();
  // What schema v3 left on disk: no envelope_wire column, no full-text table, version 3.
  const db = new Database(path.join(dir, MAILBOX_DB));
  db.pragma(`cipher = 'chacha20'`);
  db.key(Buffer.concat([Buffer.from('raw:'), secrets.masterKey]));
  db.exec(`DROP TRIGGER body_text_gone; DROP TABLE body_text; DROP TABLE body_text_done; DROP TABLE body_wire; DROP TABLE body_search; DELETE FROM schema_version WHERE version = 4;`);
  db.close();
  store = MailboxStore.open(dir, secrets);
  try {
    assert.equal(store.diagnostics().schemaVersion, 4);
    const all = store.listMessages('INBOX').map((m) => m.uid);
    const msgs = store.getMessages('INBOX', all);
    const wire = store.envelopesWire('INBOX', all);
    assert.equal(wire.size, 6);
    for (const [uid, m] of msgs) assert.equal(wire.get(uid), encodeEnvelope(m.envelope), 'the migration stored every envelope in wire form');
    assert.deepEqual(store.fullTextStatus(), { indexed: 0, missing: 6 });
    assert.deepEqual(
      store.queryMessages('INBOX', { where: "fe_contains(b.subject, 'airship')", params: [], joinBodies: true }).map((r) => r.uid),
      [1],
      'header search text copied into body_search',
    );
    const before = store.searchText('INBOX', 'body', 'zeppelin');
    assert.equal(before.unindexed.size, 6, 'nothing indexed yet: the caller searches those itself');
    assert.equal(store.buildFullTextNow(4), 4, 'batches');
    assert.equal(store.buildFullTextNow(), 2);
    assert.deepEqual(store.fullTextStatus(), { indexed: 6, missing: 0 });
    const after = store.searchText('INBOX', 'body', 'zeppelin');
    assert.equal(after.unindexed.size, 0);
    assert.equal(after.hits.size, 2, 'plain and quoted-printable');
    // fe import (importMessages) indexes what it adds
    store.importMessages([{ folder: 'INBOX', raw: Buffer.from('From: x@y\r\nSubject: late\r\n\r\nimported zeppelin\r\n'), flags: [], internalDate: when }]);
    assert.deepEqual(store.fullTextStatus(), { indexed: 7, missing: 0 });
    assert.equal(store.searchText('INBOX', 'text', 'ZEPPELIN').hits.size, 3);
  } finally {
    store.close();
  }
});
