// `fe` run as root (sudo fe alias add ...) must not leave root-owned files in a data directory
// that the daemons read as the `fe` user: a root-owned mailbox folder or DKIM key would make the
// MX fail to spool or sign. Files root created there are handed to the data directory's owner.
import { lchownSync, lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** Gives every root-owned entry under `dataDir` to the owner of `dataDir` (no-op unless that owner is not root). */
export function adoptDataDirOwner(dataDir: string): number {
  let owner;
  try {
    owner = lstatSync(dataDir);
  } catch {
    return 0; // no data directory yet
  }
  if (owner.uid === 0) return 0;
  let changed = 0;
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.uid === 0) {
        lchownSync(p, owner.uid, owner.gid);
        changed++;
      }
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dataDir);
  return changed;
}
