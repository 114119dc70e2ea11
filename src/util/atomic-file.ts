// Crash-safe file replacement: write a sibling temp file, fsync it, rename over, fsync the folder.
// A reader (or a crash at any instant) sees either the old content or the new, never a mix.
import { closeSync, fchmodSync, fchownSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { open as openAsync, rename as renameAsync, rm as rmAsync } from 'node:fs/promises';
import path from 'node:path';

/** fsync a file or folder by path: it flushes the inode whichever descriptor wrote it. */
export function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function fsyncDir(dir: string): void {
  fsyncPath(dir);
}

export interface Owner {
  uid: number;
  gid: number;
}

function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600, owner?: Owner): void {
  const dir = path.dirname(file);
  const tmp = tempName(file);
  // The mode is set at creation so a secret is never readable by others, not even briefly.
  const fd = openSync(tmp, 'wx', mode);
  try {
    fchmodSync(fd, mode); // exact mode, whatever the umask
    if (owner && process.getuid?.() === 0) fchownSync(fd, owner.uid, owner.gid); // keep the file's owner when root edits it
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

// Folder fsyncs shared between concurrent writers (group commit): one fsync of a folder makes
// every rename done in it before the fsync started durable. A caller waits for an fsync that
// starts after its call; callers arriving while one runs share the next.
const folderSyncs = new Map<string, { running: Promise<void>; next: Promise<void> | null }>();

async function fsyncPathAsync(p: string): Promise<void> {
  const h = await openAsync(p, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export function fsyncDirShared(dir: string): Promise<void> {
  const current = folderSyncs.get(dir);
  if (!current) {
    const entry = { running: fsyncPathAsync(dir), next: null as Promise<void> | null };
    folderSyncs.set(dir, entry);
    const done = () => {
      if (folderSyncs.get(dir) === entry && entry.next === null) folderSyncs.delete(dir);
    };
    entry.running.then(done, done);
    return entry.running;
  }
  if (!current.next) {
    const next = current.running.catch(() => undefined).then(() => {
      current.next = null;
      folderSyncs.delete(dir);
      return fsyncDirShared(dir);
    });
    current.next = next;
  }
  return current.next;
}

/**
 * writeFileAtomic without blocking the calling thread: the write and both fsyncs run on libuv's
 * threads, so a work thread seals the next message while the disk syncs this one, and
 * concurrent writers in one folder share its fsync. The same guarantees: when it resolves, the
 * whole file is durable under its name.
 */
export async function writeFileAtomicAsync(file: string, data: Uint8Array, mode = 0o600): Promise<void> {
  const tmp = tempName(file);
  const h = await openAsync(tmp, 'wx', mode);
  try {
    await h.chmod(mode);
    await h.writeFile(data);
    await h.sync();
  } catch (e) {
    await h.close();
    await rmAsync(tmp, { force: true });
    throw e;
  }
  await h.close();
  try {
    await renameAsync(tmp, file);
  } catch (e) {
    await rmAsync(tmp, { force: true });
    throw e;
  }
  await fsyncDirShared(path.dirname(file));
}

/** mkdir -p with a private mode for every folder it creates. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Creates an empty file 0600 if it does not exist (SQLite would create it 0644; WAL and SHM copy its mode). */
export function createPrivateFile(file: string): void {
  try {
    const fd = openSync(file, 'wx', 0o600);
    fchmodSync(fd, 0o600);
    closeSync(fd);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

/**
 * Makes `file` appear fully built or not at all, whoever else is creating it at the same moment:
 * `build` writes a sibling temp path, which is hard-linked into place (link, unlike rename, fails
 * when the name exists). Returns false when another process got there first: its file stands and
 * this one is discarded, so two creators never end up using two different files (or keys).
 */
export function createFileOnce(file: string, build: (tmp: string) => void): boolean {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.new`);
  try {
    build(tmp);
    fsyncPath(tmp);
    try {
      linkSync(tmp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    fsyncDir(dir);
    return true;
  } finally {
    // SQLite leaves -wal/-shm beside a database it built; none of them may outlive the build.
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(tmp + suffix, { force: true });
  }
}
