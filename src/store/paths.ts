// Where things live under the data directory. Every path derives from validated, canonical names.
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
