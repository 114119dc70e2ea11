// The owner side of a mailbox: one SQLite3MultipleCiphers file per mailbox (ChaCha20-Poly1305 per
// page, keyed with the 32-byte master key), holding folders and messages in a shape IMAP
// (RFC 3501, CONDSTORE/QRESYNC, SPECIAL-USE) and POP3 can serve directly.
import { Database, type SqliteDb, type SqliteStatement } from './sqlite.js';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { MailboxSecrets } from '../crypto/mailbox-key.js';
import { isHybrid, SealError, SealKeyMissing } from '../crypto/seal.js';
import { createFileOnce, createPrivateFile, ensurePrivateDir, fsyncDir } from '../util/atomic-file.js';
import { parseMessage, type BodyPart, type Envelope } from './message-parse.js';
import { fold, FULLTEXT_SCHEMA, FullText, type FullTextHits } from './fulltext.js';
// The IMAP wire form of each envelope is kept beside the body (body_wire), so FETCH ENVELOPE copies
// bytes instead of encoding per message: the one place the store knows an IMAP format.
import { encodeEnvelope } from '../imap/encode.js';
import { FAILED_DIR, SpoolFormatError, type SpoolFolder, decodeSpoolFile, listSpool, removeStaleSpoolTemps, spoolDir, spoolFileName } from './spool.js';

type DB = SqliteDb;

export const MAILBOX_DB = 'mailbox.db';
export const DELIMITER = '/';
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const SPOOL_RECORD_DAYS = 30;

export class WrongMailboxKey extends Error {
  constructor(file: string) {
    super(`cannot open ${file}: wrong mailbox key (or not a mailbox database)`);
  }
}

export class MailStoreError extends Error {}
export class NoSuchFolder extends MailStoreError {
  constructor(name: string) {
    super(`no such folder: ${name}`);
  }
}
export class FolderExists extends MailStoreError {
  constructor(name: string) {
    super(`folder already exists: ${name}`);
  }
}
export class InvalidFolderName extends MailStoreError {}
/** CREATE, RENAME or an import would take a mailbox past limits.folders_per_mailbox. */
export class FolderLimitReached extends MailStoreError {
  constructor(readonly limit: number) {
    super(`this mailbox has reached its limit of ${limit} folders (limits.folders_per_mailbox)`);
  }
}
export class InvalidFlag extends MailStoreError {}

export interface MailboxStoreOptions {
  busyTimeoutMs?: number;
}

export interface FolderInfo {
  name: string;
  specialUse: string | null;
  uidValidity: number;
  uidNext: number;
  highestModseq: number;
  subscribed: boolean;
  messages: number;
  unseen: number;
  deleted: number; // messages flagged \Deleted
  deletedSize: number; // their octets (what EXPUNGE would free)
  size: number; // octets of all messages (RFC 8438 STATUS SIZE)
  recent: number; // messages no session has yet seen as \Recent
}

/** What one mailbox (all folders) holds, for QUOTA (RFC 9208). */
export interface MailboxUsage {
  messages: number;
  octets: number;
}

export interface MessageSummary {
  uid: number;
  modseq: number;
  flags: string[];
  internalDate: Date;
  size: number;
}

export interface MessageDetails extends MessageSummary {
  headerSize: number;
  sentAt: Date | null;
  envelope: Envelope;
  structure: BodyPart;
  envelopeFrom: string | null;
  envelopeTo: string | null;
  parseError: string | null;
}

export interface ImportResult {
  imported: number;
  ids: string[]; // spool ids imported now, in UID order
  skipped: number; // already imported earlier (crash between commit and unlink); their files are now removed
  failed: { id: string; reason: string }[]; // moved to spool/failed/
  folders: string[]; // folders that got new messages
}

/** One message for importMessages (fe import). */
export interface ImportItem {
  folder: string;
  raw: Buffer;
  flags: readonly string[];
  internalDate: Date;
  envelopeFrom?: string | null;
  specialUse?: string | null; // given to the folder when the import creates it
  /** What to keep instead of `raw` (encrypted to the mailbox's OpenPGP key); duplicates are still found by `raw`. */
  stored?: Buffer;
}

export interface ImportBatchResult {
  added: { folder: string; uid: number }[];
  duplicates: number; // imported before (same folder, Message-ID and SHA-256)
  parseErrors: number; // added, but the MIME structure did not parse (served as one text part)
}

export type FlagMode = 'set' | 'add' | 'remove';

export interface FlagChange {
  uid: number;
  flags: string[];
  modseq: number;
}

interface FolderRow {
  id: number;
  name: string;
  special_use: string | null;
  uid_validity: number;
  uid_next: number;
  highest_modseq: number;
  subscribed: number;
  recent_uid: number;
}

interface MessageRow {
  id: number;
  uid: number;
  modseq: number;
  system_flags: number;
  keywords: string;
  internal_date: number;
  size: number;
  body_id: number;
}

/** The Message-ID header's value as the parser stores it in bodies.message_id. */
function messageIdOf(raw: Buffer): string | null {
  return parseMessage(raw).envelope.messageId;
}

// ---- flags ----

const SYSTEM_FLAGS: [string, number][] = [
  ['\\Seen', 1],
  ['\\Answered', 2],
  ['\\Flagged', 4],
  ['\\Deleted', 8],
  ['\\Draft', 16],
];
const DELETED = 8;
const SEEN = 1;
const SYSTEM_BY_LOWER = new Map(SYSTEM_FLAGS.map(([n, b]) => [n.toLowerCase(), b]));
const KEYWORD_RE = /^[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]+$/; // IMAP atom without \ ] % * ( ) { "

interface FlagSet {
  bits: number;
  keywords: string[];
}

function parseFlags(flags: readonly string[]): FlagSet {
  let bits = 0;
  const keywords: string[] = [];
  const seen = new Set<string>();
  for (const f of flags) {
    if (f.startsWith('\\')) {
      const b = SYSTEM_BY_LOWER.get(f.toLowerCase());
      if (b === undefined) throw new InvalidFlag(`cannot store flag ${f}`); // \Recent is session state, never stored
      bits |= b;
    } else {
      if (!KEYWORD_RE.test(f) || f.length > 200) throw new InvalidFlag(`invalid keyword ${JSON.stringify(f)}`);
      const k = f.toLowerCase(); // keywords compare case-insensitively; the first spelling wins
      if (!seen.has(k)) {
        seen.add(k);
        keywords.push(f);
      }
    }
  }
  return { bits, keywords };
}

// Stored as " a b " so a SEARCH KEYWORD can match with instr(keywords, ' a ').
function encodeKeywords(k: readonly string[]): string {
  return k.length === 0 ? '' : ` ${k.join(' ')} `;
}

function decodeKeywords(s: string): string[] {
  return s.trim() === '' ? [] : s.trim().split(' ');
}

function flagList(bits: number, keywords: string): string[] {
  const out: string[] = [];
  for (const [n, b] of SYSTEM_FLAGS) if (bits & b) out.push(n);
  return out.concat(decodeKeywords(keywords));
}

function applyFlags(bits: number, keywords: string[], change: FlagSet, mode: FlagMode): FlagSet {
  if (mode === 'set') return change;
  const lower = new Set(change.keywords.map((k) => k.toLowerCase()));
  if (mode === 'add') {
    const have = new Set(keywords.map((k) => k.toLowerCase()));
    return { bits: bits | change.bits, keywords: keywords.concat(change.keywords.filter((k) => !have.has(k.toLowerCase()))) };
  }
  return { bits: bits & ~change.bits, keywords: keywords.filter((k) => !lower.has(k.toLowerCase())) };
}

// ---- folder names ----

export const SPECIAL_USE = new Set(['\\All', '\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash']);
const DEFAULT_FOLDERS: [string, string | null][] = [
  ['INBOX', null],
  ['Drafts', '\\Drafts'],
  ['Sent', '\\Sent'],
  ['Archive', '\\Archive'],
  ['Junk', '\\Junk'],
  ['Trash', '\\Trash'],
];

export function canonicalFolderName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1000) throw new InvalidFolderName('invalid folder name');
  if (/[\x00-\x1f\x7f*%]/.test(name)) throw new InvalidFolderName(`invalid character in folder name ${JSON.stringify(name)}`);
  try {
    encodeURIComponent(name); // throws on lone surrogates
  } catch {
    throw new InvalidFolderName('folder name is not valid Unicode');
  }
  const parts = name.split(DELIMITER);
  if (parts.some((p) => p === '')) throw new InvalidFolderName(`empty hierarchy level in folder name ${JSON.stringify(name)}`);
  if (parts[0]!.toUpperCase() === 'INBOX') parts[0] = 'INBOX'; // INBOX is case-insensitive (RFC 3501 5.1)
  return parts.join(DELIMITER);
}

/**
 * A name a new folder may take: canonical, and no level "." or ".." (fe export writes folders as
 * directories, where those would climb out of the tree or collapse into their parent).
 */
export function newFolderName(name: string): string {
  const canonical = canonicalFolderName(name);
  if (canonical.split(DELIMITER).some((p) => p === '.' || p === '..')) throw new InvalidFolderName(`a folder name may not have "." or ".." as a level: ${JSON.stringify(canonical)}`);
  return canonical;
}

export function parentsOf(name: string): string[] {
  const parts = name.split(DELIMITER);
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join(DELIMITER));
  return out;
}

// ---- schema ----

const MIGRATIONS: { version: number; up: (db: DB, store: MailboxStore) => void }[] = [
  {
    version: 1,
    up(db, store) {
      db.exec(`
        CREATE TABLE settings (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
        CREATE TABLE folders (
          id INTEGER PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          special_use TEXT,
          uid_validity INTEGER NOT NULL,
          uid_next INTEGER NOT NULL DEFAULT 1,
          highest_modseq INTEGER NOT NULL DEFAULT 1,
          subscribed INTEGER NOT NULL DEFAULT 1,
          created_at INTEGER NOT NULL
        );
        -- Content, shared by copies of a message; parsed once at store time.
        CREATE TABLE bodies (
          id INTEGER PRIMARY KEY,
          size INTEGER NOT NULL,
          header_size INTEGER NOT NULL,
          sent_at INTEGER,
          message_id TEXT,
          envelope TEXT NOT NULL,
          structure TEXT NOT NULL,
          search_subject TEXT NOT NULL,
          search_from TEXT NOT NULL,
          search_to TEXT NOT NULL,
          search_cc TEXT NOT NULL,
          search_bcc TEXT NOT NULL,
          parse_error TEXT
        );
        -- The raw bytes live apart so scanning metadata never pages through message blobs.
        CREATE TABLE body_raw (
          body_id INTEGER PRIMARY KEY REFERENCES bodies(id) ON DELETE CASCADE,
          raw BLOB NOT NULL
        );
        CREATE TABLE messages (
          id INTEGER PRIMARY KEY,
          folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
          uid INTEGER NOT NULL,
          modseq INTEGER NOT NULL,
          system_flags INTEGER NOT NULL DEFAULT 0,
          keywords TEXT NOT NULL DEFAULT '',
          internal_date INTEGER NOT NULL,
          size INTEGER NOT NULL,
          body_id INTEGER NOT NULL REFERENCES bodies(id),
          envelope_from TEXT,
          envelope_to TEXT,
          UNIQUE (folder_id, uid)
        );
        CREATE INDEX messages_modseq ON messages(folder_id, modseq);
        CREATE INDEX messages_body ON messages(body_id);
        -- QRESYNC: which UIDs vanished at which MODSEQ.
        CREATE TABLE expunged (
          folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
          uid INTEGER NOT NULL,
          modseq INTEGER NOT NULL,
          PRIMARY KEY (folder_id, uid)
        ) WITHOUT ROWID;
        CREATE INDEX expunged_modseq ON expunged(folder_id, modseq);
        -- Spool ids already imported, written in the import transaction itself.
        CREATE TABLE spool_imported (
          spool_id TEXT PRIMARY KEY,
          imported_at INTEGER NOT NULL
        ) WITHOUT ROWID;
      `);
      for (const [name, use] of DEFAULT_FOLDERS) store.insertFolderRow(name, use);
    },
  },
  {
    // fe import: what an import already added to a folder, keyed by Message-ID and the SHA-256 of
    // the bytes, so a re-run after an interruption adds nothing twice. Deleting the folder forgets it.
    version: 2,
    up(db) {
      db.exec(`
        CREATE TABLE imported (
          folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
          message_id TEXT NOT NULL,
          sha256 BLOB NOT NULL,
          PRIMARY KEY (folder_id, message_id, sha256)
        ) WITHOUT ROWID;
      `);
    },
  },
  {
    // \Recent (RFC 3501 2.3.2): UIDs from recent_uid on have not been seen by any session yet.
    // Existing mail is not new to anyone.
    // Subscriptions are names, apart from folders (RFC 3501 6.3.6): DELETE keeps them, and a
    // subscribed name may not exist. folders.subscribed is no longer read.
    version: 3,
    up(db) {
      db.exec(`
        ALTER TABLE folders ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
        UPDATE folders SET recent_uid = uid_next;
        CREATE TABLE subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID;
        INSERT INTO subscriptions (name) SELECT name FROM folders WHERE subscribed = 1;
      `);
    },
  },
  {
    // Speed (issue 15): the ENVELOPE in IMAP wire form (without UTF8=ACCEPT), so FETCH ENVELOPE
    // copies a string instead of parsing JSON and encoding, in a narrow table of its own (reading
    // it through bodies' wide rows decrypted most of the table); and the full-text index for
    // SEARCH BODY/TEXT (see fulltext.ts), which existing bodies get in the background, on use.
    version: 4,
    up(db) {
      db.exec('CREATE TABLE body_wire (body_id INTEGER PRIMARY KEY REFERENCES bodies(id) ON DELETE CASCADE, envelope TEXT NOT NULL)');
      // SEARCH SUBJECT/FROM/TO/CC/BCC read these: narrow rows again, copied from bodies
      db.exec(`
        CREATE TABLE body_search (
          body_id INTEGER PRIMARY KEY REFERENCES bodies(id) ON DELETE CASCADE,
          subject TEXT NOT NULL, "from" TEXT NOT NULL, "to" TEXT NOT NULL, cc TEXT NOT NULL, bcc TEXT NOT NULL
        );
        INSERT INTO body_search (body_id, subject, "from", "to", cc, bcc) SELECT id, search_subject, search_from, search_to, search_cc, search_bcc FROM bodies;
      `);
      const set = db.prepare('INSERT INTO body_wire (body_id, envelope) VALUES (?, ?)');
      for (const r of db.prepare('SELECT id, envelope FROM bodies').all() as { id: number; envelope: string }[]) {
        set.run(r.id, encodeEnvelope(JSON.parse(r.envelope) as Envelope));
      }
      db.exec(FULLTEXT_SCHEMA);
    },
  },
];
const LATEST = MIGRATIONS[MIGRATIONS.length - 1]!.version;

function isSqliteError(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

/** Keys a fresh connection. `raw:` + 32 bytes makes SQLite3MC use the key as is, skipping its PBKDF2. */
function keyConnection(db: DB, masterKey: Buffer): void {
  db.pragma(`cipher = 'chacha20'`);
  const k = Buffer.concat([Buffer.from('raw:', 'latin1'), masterKey]);
  try {
    db.key(k);
  } finally {
    k.fill(0);
  }
}

function startsWithSqliteMagic(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(16);
    const n = readSync(fd, head, 0, 16, 0);
    return n === 16 && head.equals(SQLITE_MAGIC);
  } finally {
    closeSync(fd);
  }
}

export class MailboxStore {
  readonly dir: string;
  readonly file: string;
  private openedInMs = 0;
  private readonly db: DB;
  private masterKey: Buffer;
  private sealingPrivateKey: MailboxSecrets['sealingPrivateKey'];
  private readonly stmts = new Map<string, SqliteStatement>();
  private readonly fullText: FullText;

  /** Most folders this mailbox may have (limits.folders_per_mailbox); 0: no limit. Set by whoever opens it. */
  folderLimit = 0;

  private constructor(dir: string, file: string, db: DB, secrets: MailboxSecrets) {
    this.dir = dir;
    this.file = file;
    this.db = db;
    this.fullText = new FullText(db, (bodyId) => {
      const r = this.stmt('SELECT b.structure, r.raw FROM bodies b JOIN body_raw r ON r.body_id = b.id WHERE b.id = ?').get(bodyId) as { structure: string; raw: Buffer } | undefined;
      return r ? { raw: r.raw, structure: JSON.parse(r.structure) as BodyPart } : null;
    });
    // SEARCH's substring match (search.ts) as an SQL function, for the header keys run as SQL
    db.function('fe_contains', { deterministic: true }, (hay: unknown, needle: unknown) => (fold(String(hay ?? '')).includes(String(needle)) ? 1 : 0));
    this.masterKey = Buffer.from(secrets.masterKey); // own copy: callers wipe theirs
    this.sealingPrivateKey = secrets.sealingPrivateKey;
  }

  /** A later login's key, when it has the ML-KEM half this store's lacks (the key was upgraded while open). */
  adoptSealingKey(key: MailboxSecrets['sealingPrivateKey']): void {
    if (isHybrid(key) && !isHybrid(this.sealingPrivateKey)) this.sealingPrivateKey = key;
  }

  /** Wall time the open took (cipher, key, first read, pragmas, migrations), in ms. */
  get openMs(): number {
    return this.openedInMs;
  }

  static open(mailboxDir: string, secrets: MailboxSecrets, options: MailboxStoreOptions = {}): MailboxStore {
    if (!Buffer.isBuffer(secrets.masterKey) || secrets.masterKey.length !== 32) throw new TypeError('mailbox master key must be 32 bytes');
    const t0 = performance.now();
    ensurePrivateDir(mailboxDir);
    const file = path.join(mailboxDir, MAILBOX_DB);
    // A new database is built aside, schema and all, then linked into place: two processes
    // opening an empty file at once (a first login beside fe import) would each key it with a
    // salt of their own, and the loser would read it as a wrong key.
    if (!existsSync(file)) {
      createFileOnce(file, (tmp) => {
        createPrivateFile(tmp); // SQLite would create it 0644; WAL and SHM files copy its mode
        MailboxStore.openFile(mailboxDir, tmp, secrets, options).close();
      });
    }
    const store = MailboxStore.openFile(mailboxDir, file, secrets, options);
    store.openedInMs = performance.now() - t0;
    return store;
  }

  private static openFile(mailboxDir: string, file: string, secrets: MailboxSecrets, options: MailboxStoreOptions): MailboxStore {
    const db = new Database(file);
    let store: MailboxStore | null = null;
    try {
      keyConnection(db, secrets.masterKey);
      let tables: number;
      try {
        // The first read is where a wrong key shows (SQLITE_NOTADB). Nothing has been written yet.
        tables = (db.prepare('SELECT count(*) AS n FROM sqlite_schema').get() as { n: number }).n;
      } catch (e) {
        if (isSqliteError(e, 'SQLITE_NOTADB')) throw new WrongMailboxKey(file);
        throw e;
      }
      // auto_vacuum only takes effect before the first table exists and before WAL is on.
      if (tables === 0) db.pragma('auto_vacuum = FULL');
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new MailStoreError(`cannot switch ${file} to WAL (got ${String(mode)})`);
      db.pragma('secure_delete = ON');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5000))}`);
      db.pragma('temp_store = MEMORY'); // sorts and temp tables never become files outside the volume
      db.pragma('journal_size_limit = 1048576'); // the WAL shrinks back after checkpoints (the MX counts it against the quota)
      store = new MailboxStore(mailboxDir, file, db, secrets);
      store.migrate();
      store.fullText.ensure(); // again when someone dropped the index: it refills on use
      if (tables === 0) {
        // Belt and braces on creation: the pages on disk must be encrypted.
        db.pragma('wal_checkpoint(TRUNCATE)');
        if (startsWithSqliteMagic(file)) throw new MailStoreError(`${file} was written unencrypted; refusing to use it`);
      }
    } catch (e) {
      store?.masterKey.fill(0);
      db.close();
      throw e;
    }
    return store;
  }

  close(): void {
    if (!this.db.open) return;
    this.stmts.clear();
    try {
      this.db.pragma('optimize');
    } finally {
      this.db.close();
      this.masterKey.fill(0);
    }
  }

  /** The connection's effective settings, for tests and status checks. */
  diagnostics(): Record<string, string | number> {
    const get = (p: string): string | number => this.db.pragma(p, { simple: true }) as string | number;
    return {
      cipher: String(get('cipher')),
      journalMode: get('journal_mode'),
      autoVacuum: get('auto_vacuum'),
      secureDelete: get('secure_delete'),
      synchronous: get('synchronous'),
      foreignKeys: get('foreign_keys'),
      tempStore: get('temp_store'),
      busyTimeout: get('busy_timeout'),
      schemaVersion: (this.db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number }).v,
    };
  }

  // ---- internals ----

  private stmt(sql: string): SqliteStatement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  private now(): number {
    return Date.now();
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    const current = (this.db.prepare('SELECT coalesce(max(version), 0) AS v FROM schema_version').get() as { v: number }).v;
    if (current > LATEST) throw new MailStoreError(`${this.file} has schema version ${current}; this fe knows up to ${LATEST}`);
    const applied = this.db.prepare('SELECT 1 FROM schema_version WHERE version = ?');
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      // IMMEDIATE and checked again inside: a second process upgrading the same file at the same
      // moment waits for the first, then finds the step done instead of applying it twice.
      this.db.transaction(() => {
        if (applied.get(m.version)) return;
        m.up(this.db, this);
        this.db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(m.version, this.now());
      }).immediate();
    }
  }

  // UIDVALIDITY must never repeat for a name: seconds since the epoch, strictly increasing.
  private nextUidValidity(): number {
    const row = this.stmt(`SELECT value FROM settings WHERE key = 'last_uid_validity'`).get() as { value: number } | undefined;
    const next = Math.max(Math.floor(this.now() / 1000), (row?.value ?? 0) + 1);
    this.stmt(`INSERT INTO settings (key, value) VALUES ('last_uid_validity', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(next);
    return next;
  }

  /** @internal used by migrations */
  insertFolderRow(name: string, specialUse: string | null, uidNext = 1, highestModseq = 1): FolderRow {
    const id = this.stmt('INSERT INTO folders (name, special_use, uid_validity, uid_next, highest_modseq, subscribed, created_at) VALUES (?, ?, ?, ?, ?, 1, ?)').run(
      name,
      specialUse,
      this.nextUidValidity(),
      uidNext,
      highestModseq,
      this.now(),
    ).lastInsertRowid;
    return this.stmt('SELECT * FROM folders WHERE id = ?').get(id) as FolderRow;
  }

  /** Creates `name` and its missing parents, within folderLimit (inside the caller's transaction). */
  private addFolder(name: string, specialUse: string | null, uidNext = 1, highestModseq = 1): FolderRow {
    const missing = [...parentsOf(name), name].filter((p) => !this.findFolder(p));
    if (this.folderLimit > 0 && this.folderCount() + missing.length > this.folderLimit) throw new FolderLimitReached(this.folderLimit);
    for (const p of missing.slice(0, -1)) this.insertFolderRow(p, null); // RFC 3501 CREATE
    return this.insertFolderRow(name, specialUse, uidNext, highestModseq);
  }

  folderCount(): number {
    return (this.stmt('SELECT count(*) AS n FROM folders').get() as { n: number }).n;
  }

  private findFolder(name: string): FolderRow | undefined {
    return this.stmt('SELECT * FROM folders WHERE name = ?').get(canonicalFolderName(name)) as FolderRow | undefined;
  }

  private folderBySpecialUse(use: string): FolderRow | undefined {
    return this.stmt('SELECT * FROM folders WHERE special_use = ? ORDER BY id LIMIT 1').get(use) as FolderRow | undefined;
  }

  private hasMessageId(f: FolderRow, messageId: string | null): boolean {
    if (!messageId) return false;
    return this.stmt('SELECT 1 FROM messages m JOIN bodies b ON b.id = m.body_id WHERE m.folder_id = ? AND b.message_id = ? LIMIT 1').get(f.id, messageId) !== undefined;
  }

  private folder(name: string): FolderRow {
    const f = this.findFolder(name);
    if (!f) throw new NoSuchFolder(name);
    return f;
  }

  private saveCounters(f: FolderRow): void {
    this.stmt('UPDATE folders SET uid_next = ?, highest_modseq = ? WHERE id = ?').run(f.uid_next, f.highest_modseq, f.id);
  }

  private insertBody(raw: Buffer, out?: { parseError: string | null }): number {
    const p = parseMessage(raw);
    if (out) out.parseError = p.error;
    const id = this.stmt(
      `INSERT INTO bodies (size, header_size, sent_at, message_id, envelope, structure, search_subject, search_from, search_to, search_cc, search_bcc, parse_error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      raw.length,
      p.headerSize,
      p.sentAt,
      p.envelope.messageId,
      JSON.stringify(p.envelope),
      JSON.stringify(p.structure),
      p.search.subject,
      p.search.from,
      p.search.to,
      p.search.cc,
      p.search.bcc,
      p.error,
    ).lastInsertRowid as number;
    this.stmt('INSERT INTO body_wire (body_id, envelope) VALUES (?, ?)').run(id, encodeEnvelope(p.envelope));
    this.stmt('INSERT INTO body_search (body_id, subject, "from", "to", cc, bcc) VALUES (?, ?, ?, ?, ?, ?)').run(id, p.search.subject, p.search.from, p.search.to, p.search.cc, p.search.bcc);
    this.stmt('INSERT INTO body_raw (body_id, raw) VALUES (?, ?)').run(id, raw);
    this.fullText.add(id, raw, p.structure);
    return id;
  }

  /** Inserts into `f` with the next UID at `modseq`; the caller saves the folder's counters. */
  private insertMessage(
    f: FolderRow,
    modseq: number,
    bodyId: number,
    size: number,
    flags: FlagSet,
    internalDate: number,
    envelopeFrom: string | null,
    envelopeTo: string | null,
  ): number {
    const uid = f.uid_next++;
    f.highest_modseq = modseq;
    this.stmt(
      `INSERT INTO messages (folder_id, uid, modseq, system_flags, keywords, internal_date, size, body_id, envelope_from, envelope_to)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(f.id, uid, modseq, flags.bits, encodeKeywords(flags.keywords), internalDate, size, bodyId, envelopeFrom, envelopeTo);
    return uid;
  }

  private deleteOrphanBodies(bodyIds: number[]): void {
    if (bodyIds.length === 0) return;
    this.stmt('DELETE FROM bodies WHERE id IN (SELECT value FROM json_each(?)) AND NOT EXISTS (SELECT 1 FROM messages WHERE body_id = bodies.id)').run(JSON.stringify(bodyIds));
  }

  /** Runs `fn` in a transaction whose commit is fsync'd (synchronous=FULL) before returning. */
  private durable<T>(fn: () => T): T {
    // WAL + NORMAL may roll back the last commits on power loss. That is fine for flags, not when
    // the only other copy (spool file, client's APPEND) is about to go away.
    this.db.pragma('synchronous = FULL');
    try {
      // IMMEDIATE: take the write lock first, so a writer in another process (fe import) makes this
      // wait (busy_timeout) instead of failing on a snapshot that went stale between read and write.
      return this.db.transaction(fn).immediate();
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  // ---- spool ----

  /**
   * Imports every sealed spool file into INBOX in one transaction, recording each spool id in the
   * same transaction; files are removed only after the commit is durable. Re-running after a crash
   * skips recorded ids. Files that do not open go to spool/failed/.
   */
  importSpool(): ImportResult {
    removeStaleSpoolTemps(this.dir);
    const ids = listSpool(this.dir);
    const result: ImportResult = { imported: 0, ids: [], skipped: 0, failed: [], folders: [] };
    if (ids.length === 0) return result;
    const dir = spoolDir(this.dir);
    const already: string[] = [];
    // Each target folder gets one new MODSEQ for the whole import.
    const targets = new Map<string, { f: FolderRow; modseq: number; used: boolean }>();
    const target = (use: SpoolFolder | undefined) => {
      const key = use ?? 'INBOX';
      let t = targets.get(key);
      if (!t) {
        const f = (use && (this.folderBySpecialUse(use) ?? this.findFolder(use.slice(1)))) || this.folder('INBOX');
        t = [...targets.values()].find((x) => x.f.id === f.id) ?? { f, modseq: f.highest_modseq + 1, used: false };
        targets.set(key, t);
      }
      return t;
    };
    this.durable(() => {
      const now = this.now();
      for (const id of ids) {
        if (this.stmt('SELECT 1 FROM spool_imported WHERE spool_id = ?').get(id)) {
          already.push(id);
          continue;
        }
        let sealed: Buffer;
        try {
          sealed = readFileSync(path.join(dir, spoolFileName(id)));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw e;
        }
        let entry;
        try {
          entry = decodeSpoolFile(sealed, this.sealingPrivateKey);
          if (entry.id !== id) throw new SpoolFormatError(`spool file ${id} carries id ${entry.id}`);
        } catch (e) {
          // Sealed for a key upgraded while this store was open: it opens at the next login.
          if (e instanceof SealKeyMissing) continue;
          if (e instanceof SealError || e instanceof SpoolFormatError) {
            result.failed.push({ id, reason: e.message });
            continue;
          }
          throw e;
        }
        const t = target(entry.meta.folder);
        this.stmt('INSERT INTO spool_imported (spool_id, imported_at) VALUES (?, ?)').run(id, now);
        // The sender's own copy of a message it sent: a client that already saved it in Sent wins.
        if (entry.meta.folder === '\\Sent' && this.hasMessageId(t.f, messageIdOf(entry.message))) {
          already.push(id);
          continue;
        }
        const bodyId = this.insertBody(entry.message);
        // Our own copy of what the owner sent is \Seen: it is not new mail.
        const flags = entry.meta.folder === '\\Sent' ? { bits: SEEN, keywords: [] } : { bits: 0, keywords: [] };
        this.insertMessage(t.f, t.modseq, bodyId, entry.message.length, flags, entry.meta.receivedAt.getTime(), entry.meta.envelopeFrom, entry.meta.envelopeTo);
        t.used = true;
        result.ids.push(id);
        if (!result.folders.includes(t.f.name)) result.folders.push(t.f.name);
      }
      for (const t of new Set(targets.values())) if (t.used) this.saveCounters(t.f);
    });
    result.imported = result.ids.length;
    result.skipped = already.length;
    // The commit is durable: now the spool files can go.
    if (result.failed.length > 0) {
      const failedDir = path.join(dir, FAILED_DIR);
      mkdirSync(failedDir, { recursive: true, mode: 0o700 });
      for (const f of result.failed) renameSync(path.join(dir, spoolFileName(f.id)), path.join(failedDir, spoolFileName(f.id)));
      fsyncDir(failedDir);
    }
    for (const id of [...result.ids, ...already]) rmSync(path.join(dir, spoolFileName(id)), { force: true });
    fsyncDir(dir);
    this.stmt('DELETE FROM spool_imported WHERE imported_at < ?').run(this.now() - SPOOL_RECORD_DAYS * 86400_000);
    return result;
  }

  // ---- folders ----

  private folderInfo(f: FolderRow): FolderInfo {
    const c = this.stmt(
      `SELECT count(*) AS n, coalesce(sum((system_flags & 1) = 0), 0) AS unseen, coalesce(sum((system_flags & 8) <> 0), 0) AS deleted,
              coalesce(sum(CASE WHEN system_flags & 8 THEN size ELSE 0 END), 0) AS deleted_size, coalesce(sum(size), 0) AS size
              , coalesce(sum(uid >= ?), 0) AS recent
       FROM messages WHERE folder_id = ?`,
    ).get(f.recent_uid, f.id) as { n: number; unseen: number; deleted: number; deleted_size: number; size: number; recent: number };
    const subscribed = this.stmt('SELECT 1 FROM subscriptions WHERE name = ?').get(f.name) !== undefined;
    return {
      name: f.name,
      specialUse: f.special_use,
      uidValidity: f.uid_validity,
      uidNext: f.uid_next,
      highestModseq: f.highest_modseq,
      subscribed,
      messages: c.n,
      unseen: c.unseen,
      deleted: c.deleted,
      deletedSize: c.deleted_size,
      size: c.size,
      recent: c.recent,
    };
  }

  /** Messages and octets across every folder (a copy counts again, as RFC 9208 STORAGE does). */
  usage(): MailboxUsage {
    const r = this.stmt('SELECT count(*) AS n, coalesce(sum(size), 0) AS octets FROM messages').get() as { n: number; octets: number };
    return { messages: r.n, octets: r.octets };
  }

  listFolders(): FolderInfo[] {
    const rows = this.stmt(`SELECT * FROM folders ORDER BY name <> 'INBOX', name`).all() as FolderRow[];
    return rows.map((r) => this.folderInfo(r));
  }

  /** Names and special-use of every folder, INBOX first: one query, no counts (LIST). */
  listFolderNames(): { name: string; specialUse: string | null }[] {
    const rows = this.stmt(`SELECT name, special_use FROM folders ORDER BY name <> 'INBOX', name`).all() as { name: string; special_use: string | null }[];
    return rows.map((r) => ({ name: r.name, specialUse: r.special_use }));
  }

  getFolder(name: string): FolderInfo | null {
    const f = this.findFolder(name);
    return f ? this.folderInfo(f) : null;
  }

  createFolder(name: string, options: { specialUse?: string | null } = {}): FolderInfo {
    const canonical = newFolderName(name);
    const use = options.specialUse ?? null;
    if (use !== null && !SPECIAL_USE.has(use)) throw new MailStoreError(`unknown special-use attribute ${use}`);
    return this.db.transaction(() => {
      if (this.findFolder(canonical)) throw new FolderExists(canonical);
      return this.folderInfo(this.addFolder(canonical, use));
    })();
  }

  /** Many folders in one transaction (those that exist are left alone); within folderLimit. */
  createFolders(names: readonly string[]): void {
    const canonical = names.map((n) => newFolderName(n));
    this.db.transaction(() => {
      const missing = new Set<string>();
      for (const name of canonical) for (const p of [...parentsOf(name), name]) if (!missing.has(p) && !this.findFolder(p)) missing.add(p);
      if (this.folderLimit > 0 && this.folderCount() + missing.size > this.folderLimit) throw new FolderLimitReached(this.folderLimit);
      for (const name of missing) this.insertFolderRow(name, null); // parents come before their children
    })();
  }

  renameFolder(from: string, to: string): void {
    const src = canonicalFolderName(from);
    const dst = newFolderName(to);
    if (src === dst) return;
    if (dst.startsWith(src + DELIMITER)) throw new InvalidFolderName(`cannot move ${src} into itself`);
    this.db.transaction(() => {
      const f = this.folder(src);
      if (this.findFolder(dst)) throw new FolderExists(dst);
      if (src === 'INBOX') {
        // RFC 3501: renaming INBOX moves its messages to a new folder and leaves INBOX empty.
        const target = this.addFolder(dst, null, f.uid_next, f.highest_modseq);
        this.stmt('UPDATE folders SET recent_uid = ? WHERE id = ?').run(f.recent_uid, target.id);
        const modseq = f.highest_modseq + 1;
        this.stmt('INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) SELECT folder_id, uid, ? FROM messages WHERE folder_id = ?').run(modseq, f.id);
        this.stmt('UPDATE messages SET folder_id = ? WHERE folder_id = ?').run(target.id, f.id);
        this.stmt('UPDATE folders SET highest_modseq = ? WHERE id = ?').run(modseq, f.id);
        return;
      }
      const children = this.stmt('SELECT id, name FROM folders WHERE substr(name, 1, ?) = ?').all(src.length + 1, src + DELIMITER) as { id: number; name: string }[];
      for (const c of children) {
        const renamed = dst + c.name.slice(src.length);
        if (this.findFolder(renamed)) throw new FolderExists(renamed);
      }
      const parents = parentsOf(dst).filter((p) => !this.findFolder(p));
      if (this.folderLimit > 0 && parents.length > 0 && this.folderCount() + parents.length > this.folderLimit) throw new FolderLimitReached(this.folderLimit);
      for (const p of parents) this.insertFolderRow(p, null);
      this.stmt('UPDATE folders SET name = ? WHERE id = ?').run(dst, f.id);
      for (const c of children) this.stmt('UPDATE folders SET name = ? WHERE id = ?').run(dst + c.name.slice(src.length), c.id);
      // subscriptions follow the folders they name
      this.stmt('UPDATE OR REPLACE subscriptions SET name = ? || substr(name, ?) WHERE name = ? OR substr(name, 1, ?) = ?').run(dst, src.length + 1, src, src.length + 1, src + DELIMITER);
    })();
  }

  deleteFolder(name: string): void {
    const canonical = canonicalFolderName(name);
    if (canonical === 'INBOX') throw new MailStoreError('INBOX cannot be deleted');
    this.db.transaction(() => {
      const f = this.folder(canonical);
      const child = this.stmt('SELECT 1 FROM folders WHERE substr(name, 1, ?) = ? LIMIT 1').get(canonical.length + 1, canonical + DELIMITER);
      if (child) throw new MailStoreError(`folder ${canonical} has subfolders; delete them first`);
      const bodies = (this.stmt('SELECT DISTINCT body_id FROM messages WHERE folder_id = ?').all(f.id) as { body_id: number }[]).map((r) => r.body_id);
      this.stmt('DELETE FROM folders WHERE id = ?').run(f.id); // cascades to messages and expunged
      this.deleteOrphanBodies(bodies);
    })();
    // secure_delete zeroed the freed cells; moving the WAL into the file and truncating it drops
    // the frames that still held the folder's pages (encrypted, but the owner asked for gone).
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  /** SUBSCRIBE needs the folder to exist; UNSUBSCRIBE also drops a name whose folder is gone. */
  setSubscribed(name: string, subscribed: boolean): void {
    const canonical = canonicalFolderName(name);
    if (subscribed) this.stmt('INSERT OR IGNORE INTO subscriptions (name) VALUES (?)').run(this.folder(canonical).name);
    else if (this.stmt('DELETE FROM subscriptions WHERE name = ?').run(canonical).changes === 0 && !this.findFolder(canonical)) throw new NoSuchFolder(canonical);
  }

  /** Every subscribed name, whether or not its folder exists (LSUB, LIST (SUBSCRIBED)). */
  subscriptions(): string[] {
    return (this.stmt(`SELECT name FROM subscriptions ORDER BY name <> 'INBOX', name`).all() as { name: string }[]).map((r) => r.name);
  }

  // ---- messages ----

  appendMessage(folder: string, raw: Uint8Array, options: { flags?: readonly string[]; internalDate?: Date } = {}): { uid: number; uidValidity: number; modseq: number } {
    return this.appendMessages(folder, [{ raw, ...options }])[0]!;
  }

  /**
   * APPEND, also of several messages at once (MULTIAPPEND, RFC 3502): one durable transaction,
   * so either all of them are added or none is.
   */
  appendMessages(folder: string, items: readonly { raw: Uint8Array; flags?: readonly string[]; internalDate?: Date }[]): { uid: number; uidValidity: number; modseq: number }[] {
    const prepared = items.map((it) => {
      const internalDate = it.internalDate ?? new Date();
      if (Number.isNaN(internalDate.getTime())) throw new TypeError('internalDate is not a valid date');
      return { flags: parseFlags(it.flags ?? []), internalDate, buf: Buffer.from(it.raw.buffer, it.raw.byteOffset, it.raw.byteLength) };
    });
    return this.durable(() => {
      const f = this.folder(folder);
      const out: { uid: number; uidValidity: number; modseq: number }[] = [];
      for (const { flags, internalDate, buf } of prepared) {
        // A client saving what it sent (RFC 6409 clients APPEND to Sent) replaces the copy that
        // submission saved for it, so the owner sees one message: the one the client knows.
        if (f.special_use === '\\Sent') {
          const id = messageIdOf(buf);
          const server = id
            ? (this.stmt('SELECT m.id, m.uid, m.body_id FROM messages m JOIN bodies b ON b.id = m.body_id WHERE m.folder_id = ? AND b.message_id = ? AND m.envelope_to IS NOT NULL').all(f.id, id) as { id: number; uid: number; body_id: number }[])
            : [];
          if (server.length > 0) this.removeMessages(f, server);
        }
        const modseq = f.highest_modseq + 1;
        const uid = this.insertMessage(f, modseq, this.insertBody(buf), buf.length, flags, internalDate.getTime(), null, null);
        out.push({ uid, uidValidity: f.uid_validity, modseq });
      }
      this.saveCounters(f);
      return out;
    });
  }

  /**
   * fe import: adds a batch in one durable IMMEDIATE transaction (another process may hold the
   * database open: the write lock is taken up front and waited for with busy_timeout), creating
   * folders as needed. A message already imported into the same folder (Message-ID + SHA-256 of
   * the bytes, table `imported`) is counted as a duplicate and not added again. Each folder gets
   * one new MODSEQ per batch.
   */
  importMessages(items: readonly ImportItem[]): ImportBatchResult {
    const prepared = items.map((it) => {
      if (Number.isNaN(it.internalDate.getTime())) throw new TypeError('internalDate is not a valid date');
      return { it, folder: canonicalFolderName(it.folder), flags: parseFlags(it.flags), sha: createHash('sha256').update(it.raw).digest(), messageId: messageIdOf(it.raw) ?? '' };
    });
    const result: ImportBatchResult = { added: [], duplicates: 0, parseErrors: 0 };
    const parsed = { parseError: null as string | null };
    this.durable(() => {
      const targets = new Map<string, { f: FolderRow; modseq: number; used: boolean }>();
      for (const p of prepared) {
        let t = targets.get(p.folder);
        if (!t) {
          let f = this.findFolder(p.folder);
          if (!f) {
            const use = p.it.specialUse && SPECIAL_USE.has(p.it.specialUse) && !this.folderBySpecialUse(p.it.specialUse) ? p.it.specialUse : null;
            f = this.addFolder(newFolderName(p.folder), use);
          }
          t = { f, modseq: f.highest_modseq + 1, used: false };
          targets.set(p.folder, t);
        }
        const seen = this.stmt('INSERT OR IGNORE INTO imported (folder_id, message_id, sha256) VALUES (?, ?, ?)').run(t.f.id, p.messageId, p.sha);
        if (seen.changes === 0) {
          result.duplicates++;
          continue;
        }
        const kept = p.it.stored ?? p.it.raw;
        const bodyId = this.insertBody(kept, parsed);
        if (parsed.parseError !== null) result.parseErrors++;
        const uid = this.insertMessage(t.f, t.modseq, bodyId, kept.length, p.flags, p.it.internalDate.getTime(), p.it.envelopeFrom ?? null, null);
        t.used = true;
        result.added.push({ folder: t.f.name, uid });
      }
      for (const t of targets.values()) if (t.used) this.saveCounters(t.f);
    });
    return result;
  }

  /** SQLite's data_version: it changes when another connection (another process) committed. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  private summary(r: MessageRow): MessageSummary {
    return { uid: r.uid, modseq: r.modseq, flags: flagList(r.system_flags, r.keywords), internalDate: new Date(r.internal_date), size: r.size };
  }

  /** Messages in UID order; `sinceUid` is exclusive, `changedSince` is CONDSTORE's CHANGEDSINCE. */
  listMessages(folder: string, options: { sinceUid?: number; changedSince?: number } = {}): MessageSummary[] {
    const f = this.folder(folder);
    const rows = this.stmt('SELECT * FROM messages WHERE folder_id = ? AND uid > ? AND modseq > ? ORDER BY uid').all(
      f.id,
      options.sinceUid ?? 0,
      options.changedSince ?? 0,
    ) as MessageRow[];
    return rows.map((r) => this.summary(r));
  }

  /**
   * SELECT's read of a folder, lean: each message's UID and its flags as one space-separated
   * string, UIDs ascending. Equal flag sets share one string (a folder has few distinct ones).
   */
  folderFlagText(folder: string): (readonly [number, string])[] {
    const f = this.folder(folder);
    const rows = this.stmt('SELECT uid, system_flags, keywords FROM messages WHERE folder_id = ? ORDER BY uid').raw(true).all(f.id) as [number, number, string][];
    const text = new Map<string, string>();
    return rows.map(([uid, bits, keywords]) => {
      const key = `${bits} ${keywords}`;
      let t = text.get(key);
      if (t === undefined) text.set(key, (t = flagList(bits, keywords).join(' ')));
      return [uid, t] as const;
    });
  }

  getMessage(folder: string, uid: number): MessageDetails | null {
    return this.getMessages(folder, [uid]).get(uid) ?? null;
  }

  /**
   * Details of many messages in one query (FETCH ENVELOPE/BODYSTRUCTURE of a whole folder).
   * The envelope and structure JSON are parsed only when read.
   */
  getMessages(folder: string, uids: readonly number[]): Map<number, MessageDetails> {
    const f = this.folder(folder);
    const rows = this.stmt(
      `SELECT m.*, b.header_size, b.sent_at, b.envelope, b.structure, b.parse_error
       FROM messages m JOIN bodies b ON b.id = m.body_id WHERE m.folder_id = ? AND m.uid IN (SELECT value FROM json_each(?))`,
    ).all(f.id, JSON.stringify(uids)) as (MessageRow & {
      header_size: number;
      sent_at: number | null;
      envelope: string;
      structure: string;
      parse_error: string | null;
      envelope_from: string | null;
      envelope_to: string | null;
    })[];
    const out = new Map<number, MessageDetails>();
    for (const r of rows) {
      let envelope: Envelope | undefined;
      let structure: BodyPart | undefined;
      out.set(r.uid, {
        ...this.summary(r),
        headerSize: r.header_size,
        sentAt: r.sent_at === null ? null : new Date(r.sent_at),
        get envelope() {
          return (envelope ??= JSON.parse(r.envelope) as Envelope);
        },
        get structure() {
          return (structure ??= JSON.parse(r.structure) as BodyPart);
        },
        envelopeFrom: r.envelope_from,
        envelopeTo: r.envelope_to,
        parseError: r.parse_error,
      });
    }
    return out;
  }

  /**
   * FETCH ENVELOPE of many messages: encodeEnvelope(envelope) (without UTF8=ACCEPT) as stored at
   * delivery, per UID, from a narrow table (no JSON, no wide rows).
   */
  envelopesWire(folder: string, uids: readonly number[]): Map<number, string> {
    const f = this.folder(folder);
    const rows = this.stmt(
      'SELECT m.uid, w.envelope FROM messages m JOIN body_wire w ON w.body_id = m.body_id WHERE m.folder_id = ? AND m.uid IN (SELECT value FROM json_each(?))',
    ).all(f.id, JSON.stringify(uids)) as { uid: number; envelope: string }[];
    return new Map(rows.map((r) => [r.uid, r.envelope]));
  }

  getRaw(folder: string, uid: number): Buffer | null {
    const f = this.folder(folder);
    const r = this.stmt('SELECT r.raw FROM messages m JOIN body_raw r ON r.body_id = m.body_id WHERE m.folder_id = ? AND m.uid = ?').get(f.id, uid) as
      | { raw: Buffer }
      | undefined;
    return r ? r.raw : null;
  }

  /**
   * STORE: changes flags of the given UIDs under one new MODSEQ. Messages whose flags do not change
   * keep their MODSEQ. With `unchangedSince` (CONDSTORE), messages modified after it are left
   * alone and returned in `modified`.
   */
  setFlags(
    folder: string,
    uids: readonly number[],
    flags: readonly string[],
    mode: FlagMode,
    options: { unchangedSince?: number } = {},
  ): { changed: FlagChange[]; unchanged: FlagChange[]; modified: number[] } {
    const change = parseFlags(flags);
    return this.db.transaction(() => {
      const f = this.folder(folder);
      const rows = this.stmt('SELECT * FROM messages WHERE folder_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid').all(f.id, JSON.stringify(uids)) as MessageRow[];
      const modseq = f.highest_modseq + 1;
      const changed: FlagChange[] = [];
      const unchanged: FlagChange[] = []; // named but already as asked: their flags and MODSEQ as they are
      const modified: number[] = [];
      for (const r of rows) {
        if (options.unchangedSince !== undefined && r.modseq > options.unchangedSince) {
          modified.push(r.uid);
          continue;
        }
        const next = applyFlags(r.system_flags, decodeKeywords(r.keywords), change, mode);
        const kw = encodeKeywords(next.keywords);
        if (next.bits === r.system_flags && kw === r.keywords) {
          unchanged.push({ uid: r.uid, flags: flagList(r.system_flags, r.keywords), modseq: r.modseq });
          continue;
        }
        this.stmt('UPDATE messages SET system_flags = ?, keywords = ?, modseq = ? WHERE id = ?').run(next.bits, kw, modseq, r.id);
        changed.push({ uid: r.uid, flags: flagList(next.bits, kw), modseq });
      }
      if (changed.length > 0) this.stmt('UPDATE folders SET highest_modseq = ? WHERE id = ?').run(modseq, f.id);
      return { changed, unchanged, modified };
    })();
  }

  /** EXPUNGE (or UID EXPUNGE with `uids`): removes \Deleted messages; returns their UIDs. */
  expunge(folder: string, uids?: readonly number[]): number[] {
    return this.db.transaction(() => {
      const f = this.folder(folder);
      const rows = (
        uids === undefined
          ? this.stmt(`SELECT id, uid, body_id FROM messages WHERE folder_id = ? AND (system_flags & ${DELETED}) <> 0 ORDER BY uid`).all(f.id)
          : this.stmt(`SELECT id, uid, body_id FROM messages WHERE folder_id = ? AND (system_flags & ${DELETED}) <> 0 AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid`).all(
              f.id,
              JSON.stringify(uids),
            )
      ) as { id: number; uid: number; body_id: number }[];
      if (rows.length === 0) return [];
      this.removeMessages(f, rows);
      return rows.map((r) => r.uid);
    })();
  }

  private removeMessages(f: FolderRow, rows: { id: number; uid: number; body_id: number }[]): void {
    const modseq = f.highest_modseq + 1;
    this.stmt('DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))').run(JSON.stringify(rows.map((r) => r.id)));
    this.stmt('INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) SELECT ?, value, ? FROM json_each(?)').run(f.id, modseq, JSON.stringify(rows.map((r) => r.uid)));
    this.stmt('UPDATE folders SET highest_modseq = ? WHERE id = ?').run(modseq, f.id);
    f.highest_modseq = modseq;
    this.deleteOrphanBodies([...new Set(rows.map((r) => r.body_id))]);
  }

  /**
   * \Recent: the first UID no session has seen yet. With `claim` (a read-write session is being
   * told of them) the messages stop being recent for every later session (RFC 3501 2.3.2).
   */
  recentFrom(folder: string, claim: boolean): number {
    const f = this.folder(folder);
    if (claim && f.uid_next > f.recent_uid) this.stmt('UPDATE folders SET recent_uid = ? WHERE id = ?').run(f.uid_next, f.id);
    return f.recent_uid;
  }

  /** Keywords set on some message of the folder (for FLAGS and PERMANENTFLAGS), first spelling wins. */
  folderKeywords(folder: string): string[] {
    const f = this.folder(folder);
    const out = new Map<string, string>();
    for (const r of this.stmt(`SELECT DISTINCT keywords FROM messages WHERE folder_id = ? AND keywords <> ''`).all(f.id) as { keywords: string }[]) {
      for (const k of decodeKeywords(r.keywords)) if (!out.has(k.toLowerCase())) out.set(k.toLowerCase(), k);
    }
    return [...out.values()];
  }

  /** The folder's HIGHESTMODSEQ and canonical name, without counting its messages (cheap). */
  folderState(name: string): { name: string; highestModseq: number; uidValidity: number } | null {
    const f = this.findFolder(name);
    return f ? { name: f.name, highestModseq: f.highest_modseq, uidValidity: f.uid_validity } : null;
  }

  /**
   * The decoded, lower-cased Subject/From/To/Cc/Bcc kept at store time, per UID: SEARCH on those
   * headers reads these instead of decrypting and parsing every message.
   */
  searchIndex(folder: string): Map<number, Record<'subject' | 'from' | 'to' | 'cc' | 'bcc', string>> {
    const f = this.folder(folder);
    const rows = this.stmt(
      `SELECT m.uid, b.subject, b."from", b."to", b.cc, b.bcc FROM messages m JOIN body_search b ON b.body_id = m.body_id WHERE m.folder_id = ?`,
    ).all(f.id) as { uid: number; subject: string; from: string; to: string; cc: string; bcc: string }[];
    return new Map(rows.map((r) => [r.uid, { subject: r.subject, from: r.from, to: r.to, cc: r.cc, bcc: r.bcc }]));
  }

  /**
   * UIDs and MODSEQs of the folder's messages matching an SQL condition over `messages m` (and
   * `body_search b`, the header search text, when `joinBodies`), in UID order: SEARCH keys that
   * SQL answers (search-sql.ts).
   */
  queryMessages(folder: string, filter: { where: string; params: readonly (string | number)[]; joinBodies: boolean }): { uid: number; modseq: number }[] {
    const f = this.folder(folder);
    const from = filter.joinBodies ? 'messages m JOIN body_search b ON b.body_id = m.body_id' : 'messages m';
    return this.stmt(`SELECT m.uid, m.modseq FROM ${from} WHERE m.folder_id = ? AND (${filter.where}) ORDER BY m.uid`).all(f.id, ...filter.params) as { uid: number; modseq: number }[];
  }

  /** SEARCH BODY/TEXT through the full-text index; bodies not indexed yet come back as `unindexed`. */
  searchText(folder: string, kind: 'body' | 'text', value: string): FullTextHits {
    return this.fullText.search(this.folder(folder).id, kind, value);
  }

  /** Indexes the bodies the full-text index lacks, in the background (a few hundred per turn). */
  buildFullText(): void {
    this.fullText.scheduleBuild(() => !this.db.open);
  }

  /** Indexes up to `limit` bodies the full-text index lacks, now; returns how many. */
  buildFullTextNow(limit = Number.MAX_SAFE_INTEGER): number {
    return this.fullText.buildSome(limit);
  }

  /** Bodies with and without a full-text row. */
  fullTextStatus(): { indexed: number; missing: number } {
    const r = this.stmt('SELECT count(*) AS n, sum(NOT EXISTS (SELECT 1 FROM body_text_done d WHERE d.id = b.id)) AS missing FROM bodies b').get() as { n: number; missing: number | null };
    return { indexed: r.n - (r.missing ?? 0), missing: r.missing ?? 0 };
  }

  /** Drops the full-text index and starts an empty one (it refills on use), e.g. after corruption. */
  resetFullText(): void {
    this.stmts.clear();
    this.fullText.reset();
  }

  /**
   * What SORT and THREAD compare, for every message of a folder in one query: dates and size,
   * the envelope JSON only when a key reads it, the header octets only for THREAD REFERENCES.
   */
  sortRows(folder: string, want: { envelope: boolean; header: boolean }): Map<number, { size: number; internalDate: number; sentAt: number | null; envelope: string | null; header: Buffer | null }> {
    const f = this.folder(folder);
    const rows = this.stmt(
      `SELECT m.uid, m.size, m.internal_date, b.sent_at, ${want.envelope ? 'b.envelope' : 'NULL'} AS envelope, ${want.header ? 'substr(r.raw, 1, b.header_size)' : 'NULL'} AS header
       FROM messages m JOIN bodies b ON b.id = m.body_id ${want.header ? 'JOIN body_raw r ON r.body_id = m.body_id' : ''} WHERE m.folder_id = ?`,
    ).all(f.id) as { uid: number; size: number; internal_date: number; sent_at: number | null; envelope: string | null; header: Buffer | null }[];
    return new Map(rows.map((r) => [r.uid, { size: r.size, internalDate: r.internal_date, sentAt: r.sent_at, envelope: r.envelope, header: r.header }]));
  }

  /** QRESYNC VANISHED (EARLIER): UIDs expunged after `modseq`. */
  vanishedSince(folder: string, modseq: number): number[] {
    const f = this.folder(folder);
    return (this.stmt('SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid').all(f.id, modseq) as { uid: number }[]).map((r) => r.uid);
  }

  /** COPY; returns COPYUID data. Copies share the stored body. */
  copyMessages(from: string, uids: readonly number[], to: string): { uidValidity: number; mapping: [number, number][] } {
    return this.db.transaction(() => this.copyInTx(from, uids, to).result)();
  }

  /** MOVE (RFC 6851): copy then expunge the sources, atomically. */
  moveMessages(from: string, uids: readonly number[], to: string): { uidValidity: number; mapping: [number, number][] } {
    return this.db.transaction(() => {
      const { result, src, rows } = this.copyInTx(from, uids, to);
      if (rows.length > 0) this.removeMessages(src, rows);
      return result;
    })();
  }

  private copyInTx(from: string, uids: readonly number[], to: string): { result: { uidValidity: number; mapping: [number, number][] }; src: FolderRow; rows: (MessageRow & { envelope_from: string | null; envelope_to: string | null })[] } {
    const src = this.folder(from);
    const dst = this.folder(to);
    const rows = this.stmt('SELECT * FROM messages WHERE folder_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid').all(src.id, JSON.stringify(uids)) as (MessageRow & {
      envelope_from: string | null;
      envelope_to: string | null;
    })[];
    const mapping: [number, number][] = [];
    if (rows.length > 0) {
      const modseq = dst.highest_modseq + 1;
      for (const r of rows) {
        const uid = this.insertMessage(dst, modseq, r.body_id, r.size, { bits: r.system_flags, keywords: decodeKeywords(r.keywords) }, r.internal_date, r.envelope_from, r.envelope_to);
        mapping.push([r.uid, uid]);
      }
      this.saveCounters(dst);
    }
    return { result: { uidValidity: dst.uid_validity, mapping }, src, rows };
  }

  // ---- backup ----

  /**
   * Runs `fn` in one read transaction: it sees the database as it was at the first read, whatever
   * other connections (IMAP, the MX's importer) commit meanwhile, so an export is never half a
   * change. Nothing may be written on this connection until `fn` settles.
   */
  async readConsistent<T>(fn: () => Promise<T>): Promise<T> {
    if (this.db.inTransaction) throw new MailStoreError('a transaction is already open on this mailbox');
    this.db.exec('BEGIN');
    try {
      this.stmt('SELECT count(*) FROM folders').get(); // in WAL mode the snapshot starts here
      return await fn();
    } finally {
      this.db.exec('COMMIT'); // read-only: only ends the snapshot
    }
  }

  /** What an export needs of each message of a folder, in UID order (no bodies). */
  exportList(folder: string): (MessageSummary & { envelopeFrom: string | null })[] {
    const f = this.folder(folder);
    const rows = this.stmt('SELECT * FROM messages WHERE folder_id = ? ORDER BY uid').all(f.id) as (MessageRow & { envelope_from: string | null })[];
    return rows.map((r) => ({ ...this.summary(r), envelopeFrom: r.envelope_from }));
  }

  /**
   * A consistent copy (see snapshot) keyed to `password` (SQLite3MC's ChaCha20 with its default
   * PBKDF2) instead of the mailbox key, or to nothing at all when `password` is null: what `fe
   * export --sqlite` hands its owner. The copy uses a rollback journal, so it is one file.
   */
  exportCopy(targetPath: string, password: string | null): void {
    this.snapshot(targetPath);
    try {
      const copy = new Database(targetPath, { fileMustExist: true });
      try {
        keyConnection(copy, this.masterKey);
        copy.pragma('journal_mode = DELETE');
        const key = Buffer.from(password ?? '', 'utf8'); // empty: SQLite3MC decrypts the file
        try {
          copy.rekey(key);
        } finally {
          key.fill(0);
        }
      } finally {
        copy.close();
      }
      const check = new Database(targetPath, { readonly: true, fileMustExist: true });
      try {
        if (password !== null) {
          check.pragma(`cipher = 'chacha20'`);
          check.key(Buffer.from(password, 'utf8'));
        }
        if (check.pragma('quick_check', { simple: true }) !== 'ok') throw new MailStoreError('the exported copy failed its check');
      } finally {
        check.close();
      }
      if ((password === null) !== startsWithSqliteMagic(targetPath)) throw new MailStoreError('the exported copy is not keyed as asked');
    } catch (e) {
      rmSync(targetPath, { force: true });
      throw e;
    }
  }

  /**
   * Writes a consistent, still-encrypted copy of the database to `targetPath` while the store stays
   * open (VACUUM INTO on this keyed connection; the copy is verified with the same key before it is
   * put in place). Never use db.serialize() for this: it returns plaintext pages.
   */
  snapshot(targetPath: string): void {
    const target = path.resolve(targetPath);
    if (existsSync(target)) throw new MailStoreError(`${target} already exists`);
    const dir = path.dirname(target);
    const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    createPrivateFile(tmp); // VACUUM INTO accepts an empty file and keeps its 0600 mode
    try {
      this.db.prepare('VACUUM INTO ?').run(tmp);
      if (startsWithSqliteMagic(tmp)) throw new MailStoreError('snapshot came out unencrypted');
      const check = new Database(tmp, { readonly: true, fileMustExist: true });
      try {
        keyConnection(check, this.masterKey);
        const ok = check.pragma('quick_check', { simple: true });
        if (ok !== 'ok') throw new MailStoreError(`snapshot failed its check: ${String(ok)}`);
        check.prepare('SELECT count(*) FROM messages').get();
      } finally {
        check.close();
      }
      const fd = openSync(tmp, 'r+');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, target);
      fsyncDir(dir);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }
}
