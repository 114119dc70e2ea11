// Where things live under the data directory. Every path derives from validated, canonical names.
import { readdirSync, statSync, type Dirent } from 'node:fs';
import path from 'node:path';

export function mailboxDir(dataDir: string, domain: string, local: string): string {
  // "@" cannot occur in a local part, so the catch-all's folder cannot collide with an alias.
  return path.join(dataDir, 'mailboxes', domain, local === '*' ? '@catchall' : local);
}

export function dkimDir(dataDir: string, domain: string): string {
  return path.join(dataDir, 'dkim', domain);
}

export function stateDir(dataDir: string): string {
  return path.join(dataDir, 'state');
}

/**
 * Octets a mailbox takes on disk: its encrypted database (with WAL) and spooled mail not yet
 * imported. The MX cannot open the database, so this is how it checks the quota.
 */
export function mailboxDiskUsage(dir: string): number {
  let total = 0;
  const walk = (d: string, depth: number) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // no mailbox files yet
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isFile()) total += statSync(p, { throwIfNoEntry: false })?.size ?? 0;
      else if (e.isDirectory() && depth < 2) walk(p, depth + 1);
    }
  };
  walk(dir, 0);
  return total;
}
