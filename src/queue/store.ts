// The outbound queue's database: an encrypted SQLite file (ChaCha20-Poly1305, keyed by a 0600
// server secret) holding each message once and a row per recipient with its state, attempts and
// the last answer. The queue daemon is its one writer for deliveries; `fe queue` commands make
// small transactions beside it (WAL, busy timeout), which the daemon sees on its next round.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { SealError, type SealOpener } from '../crypto/seal.js';
import { serverSecret } from '../daemon/secrets.js';
import { Database, type SqliteDb, type SqliteStatement } from '../store/sqlite.js';
import { HandoffFormatError, incomingDir, incomingFile, listIncoming, queueDir, readIncoming, type QueueRecipient } from './handoff.js';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import type { FeConfig } from '../config/schema.js';
import { TlsResultStore } from '../tlsrpt/results.js';
import { createFileOnce, createPrivateFile, ensurePrivateDir, fsyncDir } from '../util/atomic-file.js';

export type RecipientState = 'queued' | 'delivered' | 'bounced' | 'expired';

export interface QueuedMessage {
  id: string;
  createdAt: number;
  sender: string;
  owner: string | null;
  envid: string | null;
  ret: 'FULL' | 'HDRS' | null;
  requireTls: boolean;
  tlsReport: boolean;
  size: number;
  redacted: boolean;
  delayNotified: boolean;
}

export interface RecipientRow {
  id: number;
  msgId: string;
  address: string;
  domain: string;
  notify: string[] | null;
  orcpt: string | null;
  state: RecipientState;
  attempts: number;
  nextAttempt: number;
  lastAttempt: number | null;
  lastCode: number | null;
  lastText: string | null;
  lastClass: string | null;
  lastStatus: string | null;
  remoteMta: string | null;
  finalAt: number | null;
}

export interface AttemptRecord {
  recipientId: number;
  state: RecipientState;
  code: number | null;
  text: string;
  failureClass: string | null;
  status: string | null; // RFC 3463
  remoteMta: string | null;
  nextAttempt: number; // for state 'queued'
}

/** What a redacted message's body says instead of the message. */
export const REDACTED_BODY = Buffer.from(
  'X-Fe-Redacted: yes\r\nSubject: (sent; content purged)\r\n\r\nThis message was delivered to every recipient. Its content was then purged from the outbound queue for the owner\'s privacy; only the delivery record remains, until it expires.\r\n',
);

const QUEUE_DB = 'queue.db';

interface MsgRow {
  id: string;
  created_at: number;
  sender: string;
  owner: string | null;
  envid: string | null;
  ret: string | null;
  require_tls: number;
  tls_report: number;
  size: number;
  redacted: number;
  delay_notified: number;
}

interface RcptRow {
  id: number;
  msg_id: string;
  address: string;
  domain: string;
  notify: string | null;
  orcpt: string | null;
  state: RecipientState;
  attempts: number;
  next_attempt: number;
  last_attempt: number | null;
  last_code: number | null;
  last_text: string | null;
  last_class: string | null;
  last_status: string | null;
  remote_mta: string | null;
  final_at: number | null;
}

function toMessage(r: MsgRow): QueuedMessage {
  return { id: r.id, createdAt: r.created_at, sender: r.sender, owner: r.owner, envid: r.envid, ret: r.ret === 'FULL' || r.ret === 'HDRS' ? r.ret : null, requireTls: r.require_tls === 1, tlsReport: r.tls_report === 1, size: r.size, redacted: r.redacted === 1, delayNotified: r.delay_notified === 1 };
}

function toRecipient(r: RcptRow): RecipientRow {
  return {
    id: r.id,
    msgId: r.msg_id,
    address: r.address,
    domain: r.domain,
    notify: r.notify ? r.notify.split(',') : null,
    orcpt: r.orcpt,
    state: r.state,
    attempts: r.attempts,
    nextAttempt: r.next_attempt,
    lastAttempt: r.last_attempt,
    lastCode: r.last_code,
    lastText: r.last_text,
    lastClass: r.last_class,
    lastStatus: r.last_status,
    remoteMta: r.remote_mta,
    finalAt: r.final_at,
  };
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** How long the records of a message are kept: its owner's domain's retention_days, else queue.retention_days. */
export function retentionDays(config: FeConfig): (owner: string | null) => number {
  return (owner) => (owner ? config.domains.get(owner.slice(owner.lastIndexOf('@') + 1).toLowerCase())?.retentionDays : undefined) ?? config.queue.retentionDays;
}

export class QueueStore {
  private stmts = new Map<string, SqliteStatement>();

  private constructor(
    readonly dataDir: string,
    private readonly db: SqliteDb,
  ) {}

  static file(dataDir: string): string {
    return path.join(queueDir(dataDir), QUEUE_DB);
  }

  static exists(dataDir: string): boolean {
    return existsSync(QueueStore.file(dataDir));
  }

  static open(dataDir: string, options: { busyTimeoutMs?: number } = {}): QueueStore {
    ensurePrivateDir(queueDir(dataDir));
    const file = QueueStore.file(dataDir);
    // A new queue.db is built aside and linked into place: two processes opening an empty file
    // at once would each key it with a salt of their own, and one would then fail to read it.
    if (!existsSync(file)) {
      createFileOnce(file, (tmp) => {
        createPrivateFile(tmp); // SQLite would make it 0644
        QueueStore.openFile(dataDir, tmp, options).close();
      });
    }
    return QueueStore.openFile(dataDir, file, options);
  }

  private static openFile(dataDir: string, file: string, options: { busyTimeoutMs?: number }): QueueStore {
    const key = serverSecret(dataDir, 'queue-db');
    const db = new Database(file);
    try {
      db.pragma(`cipher = 'chacha20'`);
      const k = Buffer.concat([Buffer.from('raw:', 'latin1'), key]);
      try {
        db.key(k);
      } finally {
        k.fill(0);
        key.fill(0);
      }
      const tables = (db.prepare('SELECT count(*) AS n FROM sqlite_schema').get() as { n: number }).n;
      if (tables === 0) db.pragma('auto_vacuum = FULL');
      db.pragma('journal_mode = WAL');
      db.pragma('secure_delete = ON'); // a purged body's pages are zeroed, not just unlinked
      db.pragma('synchronous = FULL'); // every state change is durable: a crash must not deliver twice
      db.pragma('foreign_keys = ON');
      db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 10_000}`);
      db.pragma('temp_store = MEMORY');
      db.pragma('journal_size_limit = 4194304');
      db.exec(`
        CREATE TABLE IF NOT EXISTS messages (
          id TEXT PRIMARY KEY,
          created_at INTEGER NOT NULL,
          sender TEXT NOT NULL,
          owner TEXT,
          envid TEXT,
          ret TEXT,
          require_tls INTEGER NOT NULL DEFAULT 0,
          size INTEGER NOT NULL,
          body BLOB NOT NULL,
          redacted INTEGER NOT NULL DEFAULT 0,
          delay_notified INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS recipients (
          id INTEGER PRIMARY KEY,
          msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
          address TEXT NOT NULL,
          domain TEXT NOT NULL,
          notify TEXT,
          orcpt TEXT,
          state TEXT NOT NULL DEFAULT 'queued',
          attempts INTEGER NOT NULL DEFAULT 0,
          next_attempt INTEGER NOT NULL,
          last_attempt INTEGER,
          last_code INTEGER,
          last_text TEXT,
          last_class TEXT,
          last_status TEXT,
          remote_mta TEXT,
          final_at INTEGER,
          UNIQUE (msg_id, address)
        );
        CREATE INDEX IF NOT EXISTS recipients_due ON recipients(state, next_attempt);
        CREATE INDEX IF NOT EXISTS recipients_msg ON recipients(msg_id);
      `);
      // Added with TLS-RPT: a queue.db made before it gets the column.
      // Checked and added in one write transaction, so two processes upgrading at once add it once.
      db.transaction(() => {
        if (!(db.prepare('SELECT name FROM pragma_table_info(?)').all('messages') as { name: string }[]).some((c) => c.name === 'tls_report')) db.exec('ALTER TABLE messages ADD COLUMN tls_report INTEGER NOT NULL DEFAULT 0');
      }).immediate();
    } catch (e) {
      db.close();
      if ((e as { code?: string }).code === 'SQLITE_NOTADB') throw new Error(`${file} does not open with the queue key in ${path.join(dataDir, 'secrets')}; was the key replaced?`);
      throw e;
    }
    return new QueueStore(dataDir, db);
  }

  private tlsResultStore: TlsResultStore | null = null;

  /** The TLS-RPT counters, kept beside the queue in the same encrypted file. */
  get tlsResults(): TlsResultStore {
    return (this.tlsResultStore ??= new TlsResultStore(this.db));
  }

  private stmt(sql: string): SqliteStatement {
    let s = this.stmts.get(sql);
    if (!s) this.stmts.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  close(): void {
    this.stmts.clear();
    if (this.db.open) this.db.close();
  }

  /**
   * Moves every sealed file in incoming/ into the database, one transaction, then removes the
   * files. A file already imported (a crash between commit and unlink) is only removed.
   */
  importIncoming(privateKey: SealOpener, now = Date.now()): { imported: string[]; failed: { id: string; reason: string }[] } {
    const ids = listIncoming(this.dataDir);
    const result = { imported: [] as string[], failed: [] as { id: string; reason: string }[] };
    if (ids.length === 0) return result;
    const done: string[] = [];
    this.db.transaction(() => {
      for (const id of ids) {
        if (this.stmt('SELECT 1 FROM messages WHERE id = ?').get(id)) {
          done.push(id);
          continue;
        }
        let entry;
        try {
          entry = readIncoming(this.dataDir, id, privateKey);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
          if (e instanceof SealError || e instanceof HandoffFormatError) {
            result.failed.push({ id, reason: (e as Error).message });
            continue;
          }
          throw e;
        }
        const s = entry.submission;
        this.stmt('INSERT INTO messages (id, created_at, sender, owner, envid, ret, require_tls, tls_report, size, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
          id,
          s.submittedAt.getTime(),
          s.from,
          s.owner,
          s.envid ?? null,
          s.ret ?? null,
          s.requireTls ? 1 : 0,
          s.tlsReport ? 1 : 0,
          entry.message.length,
          entry.message,
        );
        const seen = new Set<string>();
        for (const r of s.recipients as QueueRecipient[]) {
          const key = r.address.toLowerCase();
          if (seen.has(key)) continue;
          seen.add(key);
          this.stmt('INSERT INTO recipients (msg_id, address, domain, notify, orcpt, next_attempt) VALUES (?, ?, ?, ?, ?, ?)').run(id, r.address, domainOf(r.address), r.notify?.join(',') ?? null, r.orcpt ?? null, now);
        }
        result.imported.push(id);
        done.push(id);
      }
    })();
    for (const id of done) rmSync(incomingFile(this.dataDir, id), { force: true });
    if (result.failed.length > 0) {
      const failedDir = path.join(incomingDir(this.dataDir), 'failed');
      mkdirSync(failedDir, { recursive: true, mode: 0o700 });
      for (const f of result.failed) renameSync(incomingFile(this.dataDir, f.id), path.join(failedDir, `${f.id}.sealed`));
    }
    if (done.length > 0 || result.failed.length > 0) fsyncDir(incomingDir(this.dataDir));
    return result;
  }

  /** Recipients due now, grouped by destination domain (one connection per domain). */
  due(now = Date.now(), limit = 1000): Map<string, RecipientRow[]> {
    const rows = this.stmt(`SELECT * FROM recipients WHERE state = 'queued' AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?`).all(now, limit) as RcptRow[];
    const byDomain = new Map<string, RecipientRow[]>();
    for (const r of rows) {
      const list = byDomain.get(r.domain) ?? [];
      list.push(toRecipient(r));
      byDomain.set(r.domain, list);
    }
    return byDomain;
  }

  /** When the next queued recipient falls due, or null when nothing waits. */
  nextDue(): number | null {
    const r = this.stmt(`SELECT min(next_attempt) AS t FROM recipients WHERE state = 'queued'`).get() as { t: number | null };
    return r.t;
  }

  message(id: string): QueuedMessage | null {
    const r = this.stmt('SELECT id, created_at, sender, owner, envid, ret, require_tls, tls_report, size, redacted, delay_notified FROM messages WHERE id = ?').get(id) as MsgRow | undefined;
    return r ? toMessage(r) : null;
  }

  body(id: string): Buffer | null {
    const r = this.stmt('SELECT body FROM messages WHERE id = ?').get(id) as { body: Buffer } | undefined;
    return r ? r.body : null;
  }

  recipients(msgId: string): RecipientRow[] {
    return (this.stmt('SELECT * FROM recipients WHERE msg_id = ? ORDER BY id').all(msgId) as RcptRow[]).map(toRecipient);
  }

  /** Stores the outcome of one attempt for each recipient, durably, in one transaction. */
  record(attempts: AttemptRecord[], now = Date.now()): void {
    this.db.transaction(() => {
      for (const a of attempts) {
        this.stmt(
          `UPDATE recipients SET state = ?, attempts = attempts + 1, last_attempt = ?, last_code = ?, last_text = ?, last_class = ?, last_status = ?, remote_mta = ?,
             next_attempt = ?, final_at = CASE WHEN ? = 'queued' THEN NULL ELSE ? END
           WHERE id = ? AND state = 'queued'`,
        ).run(a.state, now, a.code, a.text, a.failureClass, a.status, a.remoteMta, a.nextAttempt, a.state, now, a.recipientId);
      }
    })();
  }

  markDelayNotified(msgId: string): void {
    this.stmt('UPDATE messages SET delay_notified = 1 WHERE id = ?').run(msgId);
  }

  /**
   * Messages whose every recipient is final get their body replaced by a short placeholder
   * (secure_delete zeroes the old pages). Returns the ids redacted.
   */
  redactFinished(): string[] {
    const ids = (this.stmt(`SELECT id FROM messages m WHERE redacted = 0 AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.msg_id = m.id AND r.state = 'queued')`).all() as { id: string }[]).map((r) => r.id);
    if (ids.length === 0) return ids;
    this.db.transaction(() => {
      for (const id of ids) this.stmt('UPDATE messages SET body = ?, redacted = 1 WHERE id = ?').run(REDACTED_BODY, id);
    })();
    this.db.pragma('wal_checkpoint(TRUNCATE)'); // the old body pages leave the WAL too
    return ids;
  }

  /** Deletes the records of finished messages older than their retention (days, or days per owner address). */
  purge(retention: number | ((owner: string | null) => number), now = Date.now()): number {
    const daysOf = typeof retention === 'number' ? () => retention : retention;
    // A record goes once it is older than its owner's domain keeps records and nothing of it is
    // still queued or finished within that time.
    const rows = this.stmt(
      `SELECT m.id, m.owner, m.created_at, (SELECT MAX(CASE WHEN r.state = 'queued' THEN 9e15 ELSE r.final_at END) FROM recipients r WHERE r.msg_id = m.id) AS last FROM messages m WHERE m.redacted = 1`,
    ).all() as { id: string; owner: string | null; created_at: number; last: number | null }[];
    const remove = this.stmt('DELETE FROM messages WHERE id = ?');
    let n = 0;
    this.db.transaction(() => {
      for (const r of rows) {
        const limit = now - daysOf(r.owner) * 86400_000;
        if (r.created_at < limit && (r.last ?? 0) < limit) n += remove.run(r.id).changes;
      }
    })();
    return n;
  }

  /** Every message with its recipients, newest first; `all` includes finished ones. */
  list(all = false): { message: QueuedMessage; recipients: RecipientRow[] }[] {
    const rows = (
      all
        ? this.stmt('SELECT id, created_at, sender, owner, envid, ret, require_tls, tls_report, size, redacted, delay_notified FROM messages ORDER BY created_at DESC, id DESC').all()
        : this.stmt(`SELECT id, created_at, sender, owner, envid, ret, require_tls, tls_report, size, redacted, delay_notified FROM messages m WHERE EXISTS (SELECT 1 FROM recipients r WHERE r.msg_id = m.id AND r.state = 'queued') ORDER BY created_at DESC, id DESC`).all()
    ) as MsgRow[];
    return rows.map((r) => ({ message: toMessage(r), recipients: this.recipients(r.id) }));
  }

  /** Makes queued recipients due now: of one message, or all. Returns how many. */
  retryNow(msgId: string | null, now = Date.now()): number {
    const r = msgId === null ? this.stmt(`UPDATE recipients SET next_attempt = ? WHERE state = 'queued'`).run(now) : this.stmt(`UPDATE recipients SET next_attempt = ? WHERE state = 'queued' AND msg_id = ?`).run(now, msgId);
    return r.changes;
  }

  /** Removes a message (queued or not) and its recipients. */
  delete(msgId: string): boolean {
    return this.stmt('DELETE FROM messages WHERE id = ?').run(msgId).changes > 0;
  }

  stats(now = Date.now()): { queued: number; deferred: number; oldest: number | null } {
    const r = this.stmt(`SELECT count(DISTINCT msg_id) AS queued, coalesce(sum(attempts > 0), 0) AS deferred, min(m.created_at) AS oldest FROM recipients r JOIN messages m ON m.id = r.msg_id WHERE r.state = 'queued'`).get() as { queued: number; deferred: number; oldest: number | null };
    void now;
    return r;
  }
}
