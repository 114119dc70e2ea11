// Full-text index for SEARCH BODY and TEXT: an FTS5 table (trigram tokenizer) inside the
// encrypted mailbox database, so the index is as private as the mail. Each body's searchable text
// is kept case-folded in the table: the trigrams of a needle narrow the candidates and instr() on
// the stored text confirms them, so a result is exactly RFC 3501's case-insensitive substring
// match, as the per-message search computes it. Needles under 3 characters have no trigram and
// scan the stored text instead (still no decryption of message blobs, no MIME parsing).
//
// Rows are keyed by bodies.id: copies share a body, so COPY needs nothing; a trigger drops the
// row with its body (EXPUNGE, MOVE, DELETE of a folder). Bodies stored before the index existed
// (schema v3 mailboxes) or after it was dropped are indexed later, in small batches. Which bodies
// have a row is kept apart in body_text_done, a table of ids a few pages long: asking the FTS5
// table (or its content table, a page of text per row) decrypts ~10,000 pages per folder.
import type { SqliteDb } from './sqlite.js';
import type { BodyPart } from './message-parse.js';
import { bodyText } from './message-text.js';

/** Case-insensitive comparison form of SEARCH (RFC 3501: case-insensitive substring match). */
export function fold(s: string): string {
  return s.normalize('NFC').toLowerCase();
}

export const FULLTEXT_SCHEMA = `
  CREATE VIRTUAL TABLE IF NOT EXISTS body_text USING fts5(head, body, tokenize = 'trigram case_sensitive 1', detail = none);
  CREATE TABLE IF NOT EXISTS body_text_done (id INTEGER PRIMARY KEY);
  CREATE TRIGGER IF NOT EXISTS body_text_gone AFTER DELETE ON bodies BEGIN
    DELETE FROM body_text WHERE rowid = old.id;
    DELETE FROM body_text_done WHERE id = old.id;
  END;
`;

/** What TEXT (head and body) and BODY (body) look in: the raw header as text, the decoded text parts. */
export function searchableText(raw: Buffer, structure: BodyPart): { head: string; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw.toString('utf8') : raw.subarray(0, end).toString('utf8');
  return { head: fold(head), body: fold(bodyText(raw, structure)) };
}

/** Up to `max` distinct trigrams of `s` spread over it, as an FTS5 query (each one a token). */
function trigramQuery(s: string, max = 16): string | null {
  const cps = [...s];
  if (cps.length < 3) return null;
  const all: string[] = [];
  for (let i = 0; i + 3 <= cps.length; i++) all.push(cps.slice(i, i + 3).join(''));
  const unique = [...new Set(all)];
  const step = Math.max(1, unique.length / max);
  const picked = new Set<string>();
  for (let i = 0; i < unique.length && picked.size < max; i += step) picked.add(unique[Math.floor(i)]!);
  picked.add(unique[unique.length - 1]!);
  return [...picked].map((t) => `"${t.replace(/"/g, '""')}"`).join(' AND ');
}

export interface FullTextHits {
  /** UIDs of the folder whose text contains the needle. */
  hits: Set<number>;
  /** UIDs whose body is not indexed yet: the caller searches those itself. */
  unindexed: Set<number>;
}

export class FullText {
  private building = false;

  constructor(
    private readonly db: SqliteDb,
    private readonly loadBody: (bodyId: number) => { raw: Buffer; structure: BodyPart } | null,
  ) {}

  /** Creates the table and trigger when missing (new mailbox, migration, or the index was dropped). */
  ensure(): void {
    this.db.exec(FULLTEXT_SCHEMA);
  }

  /** Drops the index (table, its bookkeeping, the trigger) and starts an empty one. */
  reset(): void {
    this.db.exec('DROP TRIGGER IF EXISTS body_text_gone; DROP TABLE IF EXISTS body_text; DROP TABLE IF EXISTS body_text_done;');
    this.ensure();
  }

  add(bodyId: number, raw: Buffer, structure: BodyPart): void {
    const t = searchableText(raw, structure);
    this.db.prepare('INSERT OR REPLACE INTO body_text (rowid, head, body) VALUES (?, ?, ?)').run(bodyId, t.head, t.body);
    this.db.prepare('INSERT OR IGNORE INTO body_text_done (id) VALUES (?)').run(bodyId);
  }

  /** Matching UIDs of folder `folderId` for BODY (`kind` body) or TEXT (head or body). */
  search(folderId: number, kind: 'body' | 'text', value: string): FullTextHits {
    const needle = fold(value);
    const unindexed = new Set(
      (this.db.prepare('SELECT m.uid FROM messages m WHERE m.folder_id = ? AND NOT EXISTS (SELECT 1 FROM body_text_done d WHERE d.id = m.body_id)').all(folderId) as { uid: number }[]).map(
        (r) => r.uid,
      ),
    );
    const confirm = kind === 'body' ? 'instr(t.body, ?) > 0' : '(instr(t.head, ?) > 0 OR instr(t.body, ?) > 0)';
    const args: (string | number)[] = kind === 'body' ? [needle] : [needle, needle];
    const q = trigramQuery(needle);
    const rows = (
      q === null
        ? this.db.prepare(`SELECT m.uid FROM messages m JOIN body_text t ON t.rowid = m.body_id WHERE m.folder_id = ? AND ${confirm}`).all(folderId, ...args)
        : this.db
            .prepare(`SELECT m.uid FROM (SELECT rowid AS id, head, body FROM body_text WHERE body_text MATCH ?) t JOIN messages m ON m.body_id = t.id WHERE m.folder_id = ? AND ${confirm}`)
            .all(q, folderId, ...args) // detail=none has no column filter: instr() picks the column
    ) as { uid: number }[];
    return { hits: new Set(rows.map((r) => r.uid)), unindexed };
  }

  /** Indexes up to `limit` bodies that have no row yet; returns how many it indexed. */
  buildSome(limit: number): number {
    const ids = (this.db.prepare('SELECT b.id FROM bodies b WHERE NOT EXISTS (SELECT 1 FROM body_text_done d WHERE d.id = b.id) LIMIT ?').all(limit) as { id: number }[]).map((r) => r.id);
    if (ids.length === 0) return 0;
    this.db.transaction(() => {
      for (const id of ids) {
        const b = this.loadBody(id);
        // a body without its bytes still gets a (empty) row, so it is not picked again
        if (b) this.add(id, b.raw, b.structure);
        else {
          this.db.prepare(`INSERT OR REPLACE INTO body_text (rowid, head, body) VALUES (?, '', '')`).run(id);
          this.db.prepare('INSERT OR IGNORE INTO body_text_done (id) VALUES (?)').run(id);
        }
      }
    })();
    return ids.length;
  }

  /**
   * Fills the index in the background, `batch` bodies per turn of the event loop, so other
   * sessions' commands run between batches. Stops when complete or when `closed` says so.
   */
  scheduleBuild(closed: () => boolean, batch = 200): void {
    if (this.building) return;
    this.building = true;
    const step = () => {
      if (closed()) {
        this.building = false;
        return;
      }
      // an export holds a read transaction on this connection: no writes until it ends
      if (this.db.inTransaction) {
        setTimeout(step, 50).unref();
        return;
      }
      let n = 0;
      try {
        n = this.buildSome(batch);
      } catch {
        n = 0; // busy (another process writing) or closed: the next search schedules again
      }
      if (n === 0) this.building = false;
      else setImmediate(step);
    };
    setImmediate(step);
  }
}
