// Puts what a source yields into the mailbox, a small batch per transaction.
//
// How this works while `fe serve` runs: the IMAP/POP3 daemon keeps the same encrypted database
// open. We write to it directly (both connections use WAL and a busy timeout; every write
// transaction on either side is BEGIN IMMEDIATE, so one waits for the other instead of failing
// on a stale snapshot), in batches small enough (100 messages or 4 MiB) that the daemon never
// waits for long. The sealed spool was the other way in, but it carries neither flags nor folder
// names, and the daemon imports a spool in one transaction, which would hold it up for a whole
// import. After each commit we create and remove a marker file in the spool folder: the daemon
// watches that folder, sees SQLite's data_version change, and its sessions report the new
// messages (EXISTS; IDLE clients hear at once). Each batch is durable before the next starts,
// and `imported` remembers Message-ID + SHA-256 per folder, so a re-run after a kill adds
// nothing twice.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, rmSync } from 'node:fs';
import path from 'node:path';
import { FolderLimitReached, newFolderName, parentsOf, type ImportItem, type MailboxStore } from '../store/mailbox-db.js';
import { spoolDir } from '../store/spool.js';
import { checkMail, dateHeader, NotMail } from './message.js';
import type { SourceItem } from './source.js';

const SYSTEM = new Map(['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'].map((f) => [f.toLowerCase(), f]));
const KEYWORD_RE = /^[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]+$/;

export interface ImportSummary {
  read: number; // messages the source offered (imported, duplicates and skipped)
  imported: number;
  duplicates: number; // imported by an earlier run
  skipped: { where: string; reason: string }[];
  mimeProblems: number; // imported, but their MIME structure did not parse (served as plain text)
  folders: Record<string, number>; // folder -> messages imported now
  bytes: number;
}

export interface WriterOptions {
  batchMessages?: number;
  batchBytes?: number;
  defaultFolder: string;
  /** Called after each committed batch (progress). */
  onBatch?: (s: ImportSummary) => void;
  /** The bytes to store for a message (OpenPGP-encrypted for a mailbox with a key); absent: as read. */
  protect?: (raw: Buffer) => Promise<Buffer>;
}

/** IMAP flags a store accepts; the rest (\Recent, odd keywords) are dropped. */
function cleanFlags(flags: readonly string[]): string[] {
  const out: string[] = [];
  for (const f of flags) {
    if (f.startsWith('\\')) {
      const s = SYSTEM.get(f.toLowerCase());
      if (s && !out.includes(s)) out.push(s);
    } else if (KEYWORD_RE.test(f) && f.length <= 200 && !out.some((x) => x.toLowerCase() === f.toLowerCase())) out.push(f);
  }
  return out;
}

export class ImportWriter {
  readonly summary: ImportSummary = { read: 0, imported: 0, duplicates: 0, skipped: [], mimeProblems: 0, folders: {}, bytes: 0 };
  private batch: ImportItem[] = [];
  private batchBytes = 0;
  private readonly maxMessages: number;
  private readonly maxBytes: number;
  private readonly bySpecialUse: Map<string, string>;
  /** Folders the mailbox has or this import creates, to stop at limits.folders_per_mailbox before a batch fails. */
  private readonly folders: Set<string>;

  constructor(
    private readonly store: MailboxStore,
    private readonly mailboxDir: string,
    private readonly opts: WriterOptions,
  ) {
    this.maxMessages = opts.batchMessages ?? 100;
    this.maxBytes = opts.batchBytes ?? 4 * 1024 * 1024;
    // A source's Sent, Drafts, Junk ... (SPECIAL-USE) go into this mailbox's folder of that use.
    const existing = store.listFolders();
    this.bySpecialUse = new Map(existing.flatMap((f) => (f.specialUse ? [[f.specialUse, f.name] as [string, string]] : [])));
    this.folders = new Set(existing.map((f) => f.name));
  }

  async add(item: SourceItem): Promise<void> {
    this.summary.read++;
    if (item.kind === 'skip') {
      this.summary.skipped.push({ where: item.where, reason: item.reason });
      return;
    }
    let folder: string;
    try {
      checkMail(item.raw);
      const mapped = item.specialUse ? this.bySpecialUse.get(item.specialUse) : undefined;
      folder = mapped ?? item.folder ?? this.opts.defaultFolder;
      folder = this.folders.has(folder) ? folder : newFolderName(folder);
    } catch (e) {
      this.summary.skipped.push({ where: item.where, reason: e instanceof NotMail ? e.message : `bad folder name: ${(e as Error).message}` });
      return;
    }
    if (!this.folders.has(folder)) {
      const added = [...parentsOf(folder), folder].filter((f) => !this.folders.has(f));
      if (this.store.folderLimit > 0 && this.folders.size + added.length > this.store.folderLimit) throw new FolderLimitReached(this.store.folderLimit);
      for (const f of added) this.folders.add(f);
    }
    const date = Number.isNaN(item.internalDate.getTime()) ? (dateHeader(item.raw) ?? new Date()) : item.internalDate;
    const stored = this.opts.protect ? await this.opts.protect(item.raw) : undefined;
    this.batch.push({ folder, raw: item.raw, flags: cleanFlags(item.flags), internalDate: date, envelopeFrom: item.envelopeFrom ?? null, specialUse: item.specialUse ?? null, ...(stored && stored !== item.raw ? { stored } : {}) });
    this.batchBytes += (stored ?? item.raw).length;
    if (this.batch.length >= this.maxMessages || this.batchBytes >= this.maxBytes) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const r = this.store.importMessages(batch);
    this.summary.duplicates += r.duplicates;
    this.summary.imported += r.added.length;
    this.summary.mimeProblems += r.parseErrors;
    for (const a of r.added) this.summary.folders[a.folder] = (this.summary.folders[a.folder] ?? 0) + 1;
    for (const it of batch) this.summary.bytes += it.raw.length;
    if (r.added.length > 0) this.tellDaemon();
    this.opts.onBatch?.(this.summary);
    await new Promise((resolve) => setImmediate(resolve)); // signals and other I/O between batches
  }

  /** A file appearing in the spool folder wakes a running daemon's watcher (see the top). */
  private tellDaemon(): void {
    const dir = spoolDir(this.mailboxDir);
    try {
      if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
      const marker = path.join(dir, `.import-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
      closeSync(openSync(marker, 'wx', 0o600));
      rmSync(marker, { force: true });
    } catch {
      // no daemon to tell is fine; sessions see the mail at their next SELECT anyway
    }
  }
}
