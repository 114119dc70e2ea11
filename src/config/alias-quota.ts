// Rate limit on alias creation per domain (a rolling 24 hours), so a leaked admin script or a
// mistake cannot mint thousands of addresses. State lives under the data directory, not fe.yml.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { stateDir } from '../store/paths.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';
import { UserError } from '../util/errors.js';

const DAY_MS = 24 * 60 * 60 * 1000;

function file(dataDir: string): string {
  return path.join(stateDir(dataDir), 'alias-creations.json');
}

function load(dataDir: string): Record<string, number[]> {
  const f = file(dataDir);
  if (!existsSync(f)) return {};
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as Record<string, number[]>;
  } catch {
    return {}; // a damaged counter must not block the admin; it only loses history
  }
}

/** Throws when the domain reached its limit; otherwise records one creation. Call under the config lock. */
export function takeAliasCreation(dataDir: string, domain: string, limit: number, now = Date.now()): void {
  const all = load(dataDir);
  const recent = (all[domain] ?? []).filter((t) => now - t < DAY_MS);
  if (limit > 0 && recent.length >= limit) {
    const next = new Date(Math.min(...recent) + DAY_MS);
    throw new UserError(
      `${recent.length} aliases were created for ${domain} in the last 24 hours, the limit ` +
        `(limits.alias_creations_per_domain_per_day: ${limit}); the next one can be added after ${next.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    );
  }
  recent.push(now);
  all[domain] = recent;
  ensurePrivateDir(stateDir(dataDir));
  writeFileAtomic(file(dataDir), JSON.stringify(all) + '\n', 0o600);
}
