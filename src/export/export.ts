// fe export: a mailbox's mail in the formats other software reads (mboxrd, EML, Maildir++), from
// one consistent read snapshot of the encrypted database, one message in memory at a time.
// Decrypted mail goes only where the owner said (-o), never to a temporary file elsewhere.
import { UserError } from '../util/errors.js';
import { encodeModifiedUtf7 } from '../imap/encode.js';
import type { FolderInfo, MailboxStore } from '../store/mailbox-db.js';
import { maildirInfo, MaildirKeywords } from './flags.js';
import { mboxrdMessage } from './mboxrd.js';
import { DirectoryTarget, FileTarget, writeChunks, ZipTarget, type TreeTarget } from './target.js';

export type ExportFormat = 'mbox' | 'eml' | 'maildir';

export interface ExportProgress {
  messages: number;
  bytes: number;
  totalMessages: number;
  totalBytes: number;
}

export interface ExportOptions {
  format: ExportFormat;
  output: string; // a path, or "-" for standard output
  single?: boolean; // mbox: one file for all folders, each message with X-Folder
  zip?: boolean; // eml and maildir: one zip archive instead of a directory
  folders?: readonly string[]; // only these (default: all)
  onProgress?: (p: ExportProgress) => void;
}

export interface ExportSummary {
  address: string;
  format: ExportFormat;
  output: string;
  messages: number;
  bytes: number; // octets of the messages as stored
  folders: { name: string; messages: number; bytes: number; path: string }[];
  warnings: string[];
  seconds: number;
}

export class ExportError extends UserError {}

/**
 * A folder name as a relative file path: "/" separates directories; "%", control characters,
 * backslashes and a leading "." in a component are %XX-escaped, so no name can climb out of the
 * export or hide as a dot file. (The EML manifest records the real names.)
 */
export function folderPath(name: string): string {
  return name
    .split('/')
    .map((part) =>
      part.replace(/[%\\\u0000-\u001f\u007f]|^\./g, (c) =>
        [...Buffer.from(c, 'utf8')].map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join(''),
      ),
    )
    .join('/');
}

/** Maildir++ directory of a folder: INBOX is the root, A/B is ".A.B" (names in modified UTF-7). */
export function maildirFolder(name: string): { dir: string; nested: boolean } {
  if (name === 'INBOX') return { dir: '', nested: false };
  const parts = name.split('/').map((p) => encodeModifiedUtf7(p));
  return { dir: '.' + parts.join('.'), nested: parts.some((p) => p.includes('.')) };
}

function stamp(d: Date): string {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  return iso.slice(0, 10).replaceAll('-', '') + '-' + iso.slice(11, 19).replaceAll(':', '');
}

interface Planned {
  folder: FolderInfo;
  messages: ReturnType<MailboxStore['exportList']>;
}

function plan(store: MailboxStore, only: readonly string[] | undefined): Planned[] {
  const all = store.listFolders();
  let chosen = all;
  if (only && only.length > 0) {
    chosen = [];
    for (const want of only) {
      const f = all.find((x) => x.name === want || (want.toUpperCase() === 'INBOX' && x.name === 'INBOX'));
      if (!f) throw new ExportError(`no folder named ${JSON.stringify(want)} (fe mailbox status lists them)`);
      if (!chosen.includes(f)) chosen.push(f);
    }
  }
  return chosen.map((folder) => ({ folder, messages: store.exportList(folder.name) }));
}

export async function exportMailbox(store: MailboxStore, address: string, opts: ExportOptions): Promise<ExportSummary> {
  const t0 = performance.now();
  return store.readConsistent(async () => {
    const planned = plan(store, opts.folders);
    const progress: ExportProgress = {
      messages: 0,
      bytes: 0,
      totalMessages: planned.reduce((n, p) => n + p.messages.length, 0),
      totalBytes: planned.reduce((n, p) => n + p.messages.reduce((b, m) => b + m.size, 0), 0),
    };
    const summary: ExportSummary = { address, format: opts.format, output: opts.output, messages: 0, bytes: 0, folders: [], warnings: [], seconds: 0 };
    const raw = (folder: string, uid: number): Buffer => {
      const r = store.getRaw(folder, uid);
      if (r === null) throw new ExportError(`message ${uid} of ${folder} vanished inside a read snapshot`); // cannot happen in one transaction
      return r;
    };
    const count = (entry: ExportSummary['folders'][number], size: number) => {
      entry.messages++;
      entry.bytes += size;
      summary.messages++;
      summary.bytes += size;
      progress.messages++;
      progress.bytes += size;
      opts.onProgress?.(progress);
    };
    opts.onProgress?.(progress);

    if (opts.format === 'mbox') await exportMbox(planned, opts, raw, count, summary);
    else {
      const tree: TreeTarget = opts.zip ? new ZipTarget(opts.output === '-' ? FileTarget.stdout() : FileTarget.file(opts.output)) : new DirectoryTarget(opts.output);
      try {
        if (opts.format === 'eml') await exportEml(planned, address, tree, raw, count, summary);
        else await exportMaildir(planned, tree, raw, count, summary);
        await tree.finish();
      } catch (e) {
        tree.abort();
        throw e;
      }
    }
    summary.seconds = Math.round(performance.now() - t0) / 1000;
    return summary;
  });
}

type RawOf = (folder: string, uid: number) => Buffer;
type Count = (entry: ExportSummary['folders'][number], size: number) => void;

async function exportMbox(planned: Planned[], opts: ExportOptions, raw: RawOf, count: Count, summary: ExportSummary): Promise<void> {
  const single = opts.single === true || opts.output === '-';
  if (single) {
    const out = opts.output === '-' ? FileTarget.stdout() : FileTarget.file(opts.output);
    try {
      for (const p of planned) {
        const entry = { name: p.folder.name, messages: 0, bytes: 0, path: opts.output };
        summary.folders.push(entry);
        for (const m of p.messages) {
          const r = raw(p.folder.name, m.uid);
          await writeChunks(out.stream, mboxrdMessage({ raw: r, sender: m.envelopeFrom, internalDate: m.internalDate, flags: m.flags, folder: p.folder.name }));
          count(entry, m.size);
        }
      }
      await out.finish();
    } catch (e) {
      out.abort();
      throw e;
    }
    return;
  }
  // One mbox per folder, in a directory tree: Archive/2024 is Archive/2024.mbox.
  const dir = new DirectoryTarget(opts.output);
  try {
    for (const p of planned) {
      const rel = folderPath(p.folder.name) + '.mbox';
      const entry = { name: p.folder.name, messages: 0, bytes: 0, path: rel };
      summary.folders.push(entry);
      const file = new FolderFile(dir, rel);
      for (const m of p.messages) {
        const r = raw(p.folder.name, m.uid);
        await file.append(mboxrdMessage({ raw: r, sender: m.envelopeFrom, internalDate: m.internalDate, flags: m.flags }));
        count(entry, m.size);
      }
      await file.close();
    }
    await dir.finish();
  } catch (e) {
    dir.abort();
    throw e;
  }
}

/** Appends to one file inside a DirectoryTarget (an mbox grows message by message). */
class FolderFile {
  private stream: import('node:fs').WriteStream | null = null;
  constructor(
    private readonly dir: DirectoryTarget,
    private readonly rel: string,
  ) {}

  async append(chunks: Buffer[]): Promise<void> {
    this.stream ??= this.dir.openStream(this.rel);
    await writeChunks(this.stream, chunks);
  }

  async close(): Promise<void> {
    this.stream ??= this.dir.openStream(this.rel); // an empty folder is an empty mbox
    const s = this.stream;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.end(() => resolve());
    });
  }
}

async function exportEml(planned: Planned[], address: string, tree: TreeTarget, raw: RawOf, count: Count, summary: ExportSummary): Promise<void> {
  const manifest = {
    format: 'fe-eml',
    version: 1,
    address,
    exportedAt: new Date().toISOString(),
    folders: [] as { name: string; specialUse: string | null; uidValidity: number; subscribed: boolean; messages: { file: string; uid: number; flags: string[]; internalDate: string }[] }[],
  };
  for (const p of planned) {
    const dir = folderPath(p.folder.name);
    const entry = { name: p.folder.name, messages: 0, bytes: 0, path: dir };
    summary.folders.push(entry);
    const listed = { name: p.folder.name, specialUse: p.folder.specialUse, uidValidity: p.folder.uidValidity, subscribed: p.folder.subscribed, messages: [] as (typeof manifest.folders)[number]['messages'] };
    manifest.folders.push(listed);
    await tree.mkdir(dir);
    for (const m of p.messages) {
      const file = `${dir}/${stamp(m.internalDate)}-${m.uid}.eml`;
      await tree.writeFile(file, [raw(p.folder.name, m.uid)], m.internalDate);
      listed.messages.push({ file, uid: m.uid, flags: m.flags, internalDate: m.internalDate.toISOString() });
      count(entry, m.size);
    }
  }
  await tree.writeFile('manifest.json', [Buffer.from(JSON.stringify(manifest, null, 1) + '\n', 'utf8')], new Date());
}

async function exportMaildir(planned: Planned[], tree: TreeTarget, raw: RawOf, count: Count, summary: ExportSummary): Promise<void> {
  for (const p of planned) {
    const { dir, nested } = maildirFolder(p.folder.name);
    if (nested) summary.warnings.push(`folder ${JSON.stringify(p.folder.name)} has a "." in its name, which Maildir++ reads as a level: it comes back as ${JSON.stringify(p.folder.name.split('/').join('.').split('.').join('/'))}`);
    const prefix = dir === '' ? '' : dir + '/';
    const entry = { name: p.folder.name, messages: 0, bytes: 0, path: dir === '' ? '.' : dir };
    summary.folders.push(entry);
    for (const sub of ['cur', 'new', 'tmp']) await tree.mkdir(prefix + sub);
    if (dir !== '') await tree.writeFile(prefix + 'maildirfolder', [], new Date()); // Maildir++ marks subfolders so
    const keywords = new MaildirKeywords();
    for (const m of p.messages) {
      const name = `${Math.floor(m.internalDate.getTime() / 1000)}.${m.uid}.fe${maildirInfo(m.flags, keywords)}`;
      await tree.writeFile(`${prefix}cur/${name}`, [raw(p.folder.name, m.uid)], m.internalDate);
      count(entry, m.size);
    }
    if (keywords.size > 0) await tree.writeFile(prefix + 'dovecot-keywords', [Buffer.from(keywords.file(), 'utf8')], new Date());
    if (keywords.dropped.size > 0) summary.warnings.push(`${p.folder.name}: Maildir has room for 26 keywords; not kept: ${[...keywords.dropped].join(' ')}`);
  }
}
