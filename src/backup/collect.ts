// What goes into a backup, and how each file is captured as one consistent image without the
// keys to open it: the server cannot open a mailbox database, so it copies the database and its
// WAL byte for byte while nothing writes to them, which SQLite recovers exactly like a crash.
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A file, or a SQLite database with its write-ahead log, that must be copied as one image. */
export interface CaptureGroup {
  /** Paths relative to the data directory, '/'-separated; the database first. */
  members: string[];
  /**
   * Written in place (SQLite databases and their WAL): needs the quiet-copy check. Everything
   * else fe writes is replaced whole by rename, so one read of one inode is already consistent.
   */
  inPlace: boolean;
}

/** Files whose bytes change where they lie: SQLite's database and log files. */
export function writtenInPlace(name: string): boolean {
  return /\.(db|sqlite)(-wal)?$/.test(name);
}

export interface DirEntry {
  rel: string;
  mode: number;
  mtime: number;
}

/** Files that are never worth keeping: temp files, SQLite's shared-memory index, challenge tokens. */
export function skipped(rel: string, name: string): boolean {
  if (name.startsWith('.')) return true; // temp files of atomic writes, backup staging
  if (name.endsWith('.tmp') || name.endsWith('-shm') || name.endsWith('-journal')) return true;
  if (rel === 'lost+found' || rel === 'acme/challenges' || rel.startsWith('acme/challenges/')) return true;
  return false;
}

/**
 * Walks the data directory: folders (to recreate them with their modes) and capture groups in an
 * order that cannot lose mail: a mailbox's spool folder comes before its database, so a message
 * imported while the backup runs is in the spool copy, the database copy or both (import skips
 * spool ids it already has).
 */
export interface CapturePlan {
  dirs: DirEntry[];
  groups: CaptureGroup[];
  bytes: number;
}

export function planCapture(dataDir: string): CapturePlan {
  const dirs: DirEntry[] = [];
  const groups: CaptureGroup[] = [];
  let bytes = 0;
  const walk = (rel: string) => {
    const abs = rel ? path.join(dataDir, rel) : dataDir;
    let names: string[];
    try {
      names = readdirSync(abs).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && rel) return; // removed while we walk
      throw e;
    }
    const files: string[] = [];
    const subdirs: string[] = [];
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      if (skipped(r, name)) continue;
      const st = lstatSync(path.join(abs, name), { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) subdirs.push(name);
      else if (st.isFile()) {
        files.push(name);
        bytes += st.size;
      }
      // symlinks, sockets, devices: fe makes none, and following them could leave the volume
    }
    for (const name of subdirs) {
      const r = rel ? `${rel}/${name}` : name;
      const st = statSync(path.join(abs, name), { throwIfNoEntry: false });
      if (!st) continue;
      dirs.push({ rel: r, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) });
      walk(r);
    }
    const set = new Set(files);
    for (const name of files) {
      if (name.endsWith('-wal') && set.has(name.slice(0, -4))) continue; // goes with its database
      const r = rel ? `${rel}/${name}` : name;
      groups.push({ members: set.has(`${name}-wal`) ? [r, `${r}-wal`] : [r], inPlace: writtenInPlace(name) || set.has(`${name}-wal`) });
    }
  };
  walk('');
  return { dirs, groups, bytes };
}

/** What identifies a file's content without reading it: any write changes one of these. */
function signature(st: BigIntStats | undefined): string {
  if (!st) return 'absent';
  return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function statAll(dataDir: string, members: string[]): (BigIntStats | undefined)[] {
  return members.map((m) => statSync(path.join(dataDir, m), { bigint: true, throwIfNoEntry: false }));
}

/** Written within `withinMs` of now (mtime in ns, compared with the wall clock). */
function recentlyWritten(stats: (BigIntStats | undefined)[], withinMs: number): boolean {
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  return stats.some((st) => st !== undefined && nowNs - st.mtimeNs < BigInt(withinMs) * 1_000_000n);
}

export interface CapturedFile {
  rel: string;
  mode: number;
  mtime: number;
  size: number;
  /** Content in memory (small groups) or a staged copy to stream from (large ones). */
  data: Buffer | null;
  staged: string | null;
}

export interface CaptureOptions {
  /** Groups larger than this are copied to `stagingDir` instead of memory. */
  memoryLimit: number;
  stagingDir: string;
  attempts: number;
  /** Longer than the file system's timestamp granularity (a jiffy, at most 10 ms). */
  settleMs: number;
}

export const DEFAULT_CAPTURE: Omit<CaptureOptions, 'stagingDir'> = { memoryLimit: 16 * 1024 * 1024, attempts: 8, settleMs: 25 };

export class CaptureBusy extends Error {}

/**
 * One consistent image of a group: stat every member, wait past the timestamp granularity, copy,
 * stat again. Equal signatures mean no write touched any member while it was copied, so the copy
 * is a state the files really had at one instant (a WAL image SQLite recovers like after a crash).
 * A member that vanished (spool file imported meanwhile) is left out. Null: vanished entirely.
 */
export async function captureGroup(dataDir: string, group: CaptureGroup, opts: CaptureOptions): Promise<CapturedFile[] | null> {
  for (let attempt = 1; attempt <= opts.attempts; attempt++) {
    const stats = group.inPlace ? statAll(dataDir, group.members) : [];
    const before = stats.map(signature);
    if (group.inPlace && before.every((s) => s === 'absent')) return null;
    // A write lands in a later timestamp tick than one already seen only once that tick is over;
    // files untouched for longer than the settle time need no wait.
    if (recentlyWritten(stats, opts.settleMs * 2)) await sleep(opts.settleMs);
    const total = group.members.reduce((n, m) => n + (statSync(path.join(dataDir, m), { throwIfNoEntry: false })?.size ?? 0), 0);
    const copies: CapturedFile[] = [];
    try {
      for (const rel of group.members) {
        const abs = path.join(dataDir, rel);
        const st = statSync(abs, { throwIfNoEntry: false });
        if (!st) continue;
        const base = { rel, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
        if (total <= opts.memoryLimit) {
          const data = readFileSync(abs);
          copies.push({ ...base, size: data.length, data, staged: null });
        } else {
          mkdirSync(opts.stagingDir, { recursive: true, mode: 0o700 });
          const staged = path.join(opts.stagingDir, rel.replaceAll('/', '%'));
          rmSync(staged, { force: true });
          copyFileSync(abs, staged);
          copies.push({ ...base, size: statSync(staged).size, data: null, staged });
        }
      }
    } catch (e) {
      releaseCapture(copies);
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (!group.inPlace) return null; // replaced or removed (an imported spool file)
      continue; // vanished mid-copy: look again
    }
    if (!group.inPlace) return copies.length > 0 ? copies : null;
    const after = statAll(dataDir, group.members).map(signature);
    if (after.every((s, i) => s === before[i])) return copies;
    releaseCapture(copies);
    await sleep(Math.min(2000, 100 * attempt));
  }
  throw new CaptureBusy(`${group.members[0]} kept changing during ${opts.attempts} attempts`);
}

export function releaseCapture(copies: CapturedFile[]): void {
  for (const c of copies) if (c.staged) rmSync(c.staged, { force: true });
}

export function removeStaging(stagingDir: string): void {
  if (existsSync(stagingDir)) rmSync(stagingDir, { recursive: true, force: true });
}
