// Destroying a mailbox: crypto-shredding first, then the files. The wrapped key goes first
// because it alone makes the rest readable: once it is gone, the database, its WAL, the sealed
// spool and every backup copy of those files are ciphertext nobody can open, even with the
// password. Then the files themselves, so the space is freed and nothing is left to explain.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readdirSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { keyFilePath } from '../crypto/mailbox-key.js';
import { fsyncDir } from '../util/atomic-file.js';

export interface PurgeResult {
  keyDestroyed: boolean;
  filesRemoved: number;
}

/** Overwrites a file in place with random bytes (as many as it holds), syncs, then unlinks it. */
function shred(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    const size = fstatSync(fd).size;
    let done = 0;
    while (done < size) {
      const chunk = randomBytes(Math.min(65536, size - done));
      done += writeSync(fd, chunk, 0, chunk.length, done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  unlinkSync(file);
}

function countFiles(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(path.join(dir, e.name)) : 1;
  return n;
}

export function purgeMailboxDir(dir: string): PurgeResult {
  if (!existsSync(dir)) return { keyDestroyed: false, filesRemoved: 0 };
  const key = keyFilePath(dir);
  let keyDestroyed = false;
  if (existsSync(key)) {
    shred(key);
    fsyncDir(dir); // the unlink is durable before anything else goes
    keyDestroyed = true;
  }
  const filesRemoved = countFiles(dir) + (keyDestroyed ? 1 : 0);
  rmSync(dir, { recursive: true, force: true });
  fsyncDir(path.dirname(dir));
  return { keyDestroyed, filesRemoved };
}
