// Where an export's bytes go: a directory tree, one file, a zip, or standard output. Files and
// trees are written under a temporary name beside their destination and renamed when the export
// is complete, so an interrupted export never leaves something that looks whole. Owner-only modes:
// this is the owner's mail in the clear, wherever they chose to put it.
import { once } from 'node:events';
import { createWriteStream, type WriteStream, existsSync, mkdirSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { PassThrough } from 'node:stream';
import yazl from 'yazl';

import { UserError } from '../util/errors.js';

export class ExportTargetError extends UserError {}

/** Writes chunks, waiting whenever the stream asks to (a slow pipe never piles mail up in memory). */
export async function writeChunks(out: Writable, chunks: readonly Buffer[]): Promise<void> {
  for (const c of chunks) {
    if (out.errored) throw new ExportTargetError(`the output failed before the export finished: ${out.errored.message}`);
    if (c.length === 0) continue;
    if (!out.write(c)) await waitDrain(out);
  }
}

async function waitDrain(out: Writable): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const done = (e?: Error) => {
      out.off('drain', ok);
      out.off('error', done);
      out.off('close', closed);
      if (e) reject(e instanceof ExportTargetError ? e : new ExportTargetError(`the output failed before the export finished: ${e.message}`));
      else resolve();
    };
    const ok = () => done();
    const closed = () => done(new ExportTargetError('the output was closed before the export finished'));
    out.once('drain', ok);
    out.once('error', done);
    out.once('close', closed);
  });
}

async function endStream(out: Writable): Promise<void> {
  if (out === process.stdout) {
    // stdout is never closed here; wait until what was written has been handed to the pipe
    if (out.writableNeedDrain) await waitDrain(out);
    return;
  }
  out.end();
  if (!out.writableFinished) await once(out, 'finish');
}

function temporaryName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.partial-${randomBytes(4).toString('hex')}`);
}

export function refuseExisting(target: string): void {
  if (existsSync(target)) throw new ExportTargetError(`${target} already exists; choose another -o or move it away (an export never overwrites)`);
  if (!existsSync(path.dirname(path.resolve(target)))) throw new ExportTargetError(`${path.dirname(path.resolve(target))} does not exist`);
}

/** One file written as a stream: a file (temp name, renamed at the end) or standard output. */
export class FileTarget {
  readonly stream: Writable;
  private readonly tmp: string | null;

  private constructor(stream: Writable, tmp: string | null, private readonly target: string | null) {
    this.stream = stream;
    this.tmp = tmp;
  }

  static stdout(): FileTarget {
    // A reader that goes away (EPIPE) shows as stream.errored, which writeChunks reports.
    process.stdout.on('error', () => undefined);
    return new FileTarget(process.stdout, null, null);
  }

  static file(target: string): FileTarget {
    refuseExisting(target);
    const tmp = temporaryName(target);
    return new FileTarget(createWriteStream(tmp, { mode: 0o600, flags: 'wx' }), tmp, target);
  }

  async finish(): Promise<void> {
    await endStream(this.stream);
    if (this.tmp !== null && this.target !== null) {
      if (existsSync(this.target)) throw new ExportTargetError(`${this.target} appeared during the export; the export is left at ${this.tmp}`);
      renameSync(this.tmp, this.target);
    }
  }

  abort(): void {
    if (this.tmp === null) return;
    this.stream.destroy();
    rmSync(this.tmp, { force: true });
  }
}

/** A tree of files: a directory on disk or entries of a zip archive. Paths use "/". */
export interface TreeTarget {
  writeFile(relPath: string, chunks: readonly Buffer[], mtime: Date): Promise<void>;
  mkdir(relPath: string): Promise<void>;
  finish(): Promise<void>;
  abort(): void;
}

export class DirectoryTarget implements TreeTarget {
  private readonly tmp: string;

  constructor(private readonly target: string) {
    refuseExisting(target);
    this.tmp = temporaryName(target);
    mkdirSync(this.tmp, { mode: 0o700 });
  }

  private resolve(relPath: string): string {
    const p = path.join(this.tmp, ...relPath.split('/'));
    if (!p.startsWith(this.tmp + path.sep)) throw new ExportTargetError(`refusing to write outside the export: ${relPath}`);
    return p;
  }

  async mkdir(relPath: string): Promise<void> {
    mkdirSync(this.resolve(relPath), { recursive: true, mode: 0o700 });
  }

  async writeFile(relPath: string, chunks: readonly Buffer[], mtime: Date): Promise<void> {
    const p = this.resolve(relPath);
    mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
    writeFileSync(p, Buffer.concat(chunks as Buffer[]), { mode: 0o600, flag: 'wx' });
    utimesSync(p, mtime, mtime);
  }

  /** A file inside the tree to append to (an mbox folder grows message by message). */
  openStream(relPath: string): WriteStream {
    const p = this.resolve(relPath);
    mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
    return createWriteStream(p, { mode: 0o600, flags: 'wx' });
  }

  async finish(): Promise<void> {
    if (existsSync(this.target)) throw new ExportTargetError(`${this.target} appeared during the export; the export is left at ${this.tmp}`);
    renameSync(this.tmp, this.target);
  }

  abort(): void {
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/**
 * A zip archive, streamed: each entry is handed to the archiver only when it asks for it, so at
 * most one message is held at a time however large the mailbox.
 */
export class ZipTarget implements TreeTarget {
  private readonly zip = new yazl.ZipFile();
  private readonly file: FileTarget;
  private piped: Promise<void>;
  private failed: Error | null = null;

  constructor(file: FileTarget) {
    this.file = file;
    this.zip.on('error', (e: Error) => (this.failed = e));
    this.piped = new Promise<void>((resolve, reject) => {
      this.zip.outputStream.on('error', reject);
      this.zip.outputStream.on('end', resolve);
    });
    this.zip.outputStream.pipe(file.stream, { end: false });
    this.piped.catch(() => undefined);
  }

  async mkdir(relPath: string): Promise<void> {
    this.zip.addEmptyDirectory(relPath, { mode: 0o40700 });
  }

  async writeFile(relPath: string, chunks: readonly Buffer[], mtime: Date): Promise<void> {
    if (this.failed) throw this.failed;
    // Wait until the archiver reaches this entry: then the entries before it have been written out.
    await new Promise<void>((resolve) => {
      this.zip.addReadStreamLazy(relPath, { mtime, mode: 0o100600, compress: true }, (cb: (err: Error | null, s: PassThrough) => void) => {
        const s = new PassThrough();
        cb(null, s);
        for (const c of chunks) s.write(c);
        s.end();
        resolve();
      });
    });
  }

  async finish(): Promise<void> {
    this.zip.end();
    await this.piped;
    if (this.failed) throw this.failed;
    await this.file.finish();
  }

  abort(): void {
    this.file.abort();
  }
}
