// One writer at a time for fe.yml: an exclusive lock file beside it holding the owner's pid.
// A lock left by a process that died (kill -9) is detected by its pid and broken.
import { closeSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../util/errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').split(/\s/)[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Moves a dead owner's lock out of the way; puts it back if it turned out to be a live one. */
function breakIfStale(lockFile: string, pid: number): void {
  const aside = `${lockFile}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    renameSync(lockFile, aside);
  } catch {
    return; // someone else already moved it
  }
  const owner = readOwner(aside);
  if (owner !== pid && owner !== null && alive(owner)) {
    try {
      linkSync(aside, lockFile); // a live lock taken in between: restore it
    } catch {
      /* a third process holds the lock now; it is theirs */
    }
  }
  rmSync(aside, { force: true });
}

export async function acquireLock(target: string, timeoutMs: number): Promise<() => void> {
  const lockFile = `${target}.lock`;
  const deadline = Date.now() + timeoutMs;
  let wait = 10;
  for (;;) {
    try {
      const fd = openSync(lockFile, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(lockFile, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new UserError(`cannot lock ${target}: ${(e as Error).message}`);
      }
    }
    const owner = readOwner(lockFile);
    if (owner !== null && !alive(owner)) {
      breakIfStale(lockFile, owner);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new UserError(
        `${target} is being changed by another fe process${owner ? ` (pid ${owner})` : ''}; nothing was changed, try again` +
          (owner ? '' : ` (if no fe is running, remove ${lockFile})`),
      );
    }
    await sleep(wait);
    wait = Math.min(wait * 2, 100);
  }
}
