// fe import: one source (mbox file, tree or stream; Maildir; EML tree or file; live IMAP) into
// one mailbox opened with its owner's password. The CLI is a thin face over this.
import { createReadStream, openSync, readSync, closeSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { openMailbox } from '../admin/mailbox.js';
import type { FeConfig } from '../config/schema.js';
import { UserError } from '../util/errors.js';
import { readEml } from './eml.js';
import { readImap } from './imap.js';
import { readMaildir } from './maildir.js';
import { detectMboxFormat, readMbox, type MboxFormat } from './mbox.js';
import { SourceError, type SourceItem } from './source.js';
import { FolderLimitReached } from '../store/mailbox-db.js';
import { ImportWriter, type ImportSummary } from './writer.js';
import { protectForMailbox } from '../pgp/store.js';
import { createLogger } from '../util/log.js';

export type ImportSource =
  | { kind: 'mbox'; path: string; stream?: AsyncIterable<Buffer>; format?: MboxFormat }
  | { kind: 'maildir'; path: string }
  | { kind: 'eml'; path: string }
  | { kind: 'imap'; url: string; password: string; insecure?: boolean };

export interface ImportRequest {
  config: FeConfig;
  address: string;
  password: string;
  source: ImportSource;
  folder?: string; // the folder to import into (mbox, one .eml file) or the only one to import (the rest)
  onBatch?: (s: ImportSummary) => void;
  onFormat?: (file: string, format: MboxFormat) => void;
}

export interface ImportReport extends ImportSummary {
  address: string;
  formats: Record<string, MboxFormat>; // mbox files and the format each was read as
}

function startsWithFrom(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(5);
    return readSync(fd, b, 0, 5, 0) === 5 && b.toString('latin1') === 'From ';
  } finally {
    closeSync(fd);
  }
}

/** Every file under `dir`, relative, sorted. */
function filesUnder(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const n of readdirSync(path.join(dir, rel)).sort()) {
    if (n.startsWith('.')) continue;
    const r = rel === '' ? n : `${rel}/${n}`;
    const st = statSync(path.join(dir, r));
    if (st.isDirectory()) out.push(...filesUnder(dir, r));
    else if (st.isFile()) out.push(r);
  }
  return out;
}

async function* mboxItems(req: ImportRequest, src: Extract<ImportSource, { kind: 'mbox' }>, formats: Record<string, MboxFormat>, maxMessage: number): AsyncGenerator<SourceItem> {
  const readOne = async function* (name: string, file: string | null, folder: string | null): AsyncGenerator<SourceItem> {
    const format = src.format ?? (file ? await detectMboxFormat(file) : 'mboxrd');
    formats[name] = format;
    req.onFormat?.(name, format);
    const stream = file ? createReadStream(file, { highWaterMark: 256 * 1024 }) : src.stream!;
    for await (const item of readMbox(stream, { name, format, maxMessage })) {
      if (item.kind === 'message' && folder !== null) item.folder = folder;
      yield item;
    }
  };
  if (src.path === '-') {
    yield* readOne('stdin', null, req.folder ?? null);
    return;
  }
  let st;
  try {
    st = statSync(src.path);
  } catch {
    throw new SourceError(`${src.path}: no such file or directory`);
  }
  if (st.isFile()) {
    yield* readOne(src.path, src.path, req.folder ?? null);
    return;
  }
  if (!st.isDirectory()) throw new SourceError(`${src.path} is neither a file nor a directory`);
  // A tree of mbox files, one per folder: A/B.mbox (or A/B) is folder A/B.
  for (const rel of filesUnder(src.path)) {
    const folder = rel.replace(/\.mbox$/i, '');
    if (req.folder !== undefined && folder !== req.folder) continue;
    const file = path.join(src.path, rel);
    if (!startsWithFrom(file)) {
      if (statSync(file).size > 0) yield { kind: 'skip', where: rel, reason: 'not an mbox file (it does not begin with a "From " line)' };
      continue;
    }
    yield* readOne(rel, file, folder);
  }
}

export async function runImport(req: ImportRequest): Promise<ImportReport> {
  const maxMessage = req.config.limits.messageSize;
  const formats: Record<string, MboxFormat> = {};
  const src = req.source;
  // Check what can be checked before the mailbox is opened (and its key unwrapped).
  if ((src.kind === 'maildir' || src.kind === 'eml' || (src.kind === 'mbox' && src.path !== '-')) ) {
    try {
      statSync(src.path);
    } catch {
      throw new UserError(`${src.path}: no such file or directory`);
    }
  }
  const opened = openMailbox(req.config, req.address, req.password);
  opened.store.folderLimit = req.config.limits.foldersPerMailbox;
  try {
    // Imported mail is stored as delivered mail is: encrypted when the mailbox has an OpenPGP key.
    const log = createLogger(req.config.logLevel, 'import');
    const keyed = opened.address.toLowerCase();
    // Encrypted to the key as it is today (the message's own date may predate the key).
    const protect = req.config.keys.has(keyed) ? (raw: Buffer) => protectForMailbox(req.config, keyed, raw, log) : undefined;
    const writer = new ImportWriter(opened.store, opened.store.dir, { defaultFolder: req.folder ?? 'INBOX', onBatch: req.onBatch, ...(protect ? { protect } : {}) });
    let items: AsyncIterable<SourceItem>;
    if (src.kind === 'mbox') items = mboxItems(req, src, formats, maxMessage);
    else if (src.kind === 'maildir') items = readMaildir(src.path, { maxMessage, only: req.folder });
    else if (src.kind === 'eml') items = readEml(src.path, { maxMessage, only: statSync(src.path).isDirectory() ? req.folder : undefined, into: req.folder });
    else items = readImap({ url: src.url, password: src.password, maxMessage, only: req.folder, insecure: src.insecure });
    try {
      for await (const item of items) await writer.add(item);
    } catch (e) {
      // What was read before the failure is kept: commit it, then say what went wrong.
      await writer.flush();
      if (e instanceof SourceError || e instanceof FolderLimitReached) throw new UserError(`${e.message}${writer.summary.imported > 0 ? ` (${writer.summary.imported} message(s) imported before that were kept)` : '; nothing was imported'}`);
      throw e;
    }
    await writer.flush();
    return { address: opened.address, formats, ...writer.summary };
  } finally {
    opened.store.close();
  }
}
