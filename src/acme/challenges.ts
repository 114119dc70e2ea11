// HTTP-01 challenge responses on disk, under DATA/acme/challenges/TOKEN. Whoever runs an order (the
// web daemon's renewal, or `fe cert renew` as root) writes them; the web daemon serves them on
// port 80. Key authorizations are public by design (RFC 8555 8.3), so the files are 0644.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { AcmeChallengeStore } from './client.js';

/** base64url, as ACME tokens are (RFC 8555 8.1): nothing else may reach the file system. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export function challengeDir(dataDir: string): string {
  return path.join(dataDir, 'acme', 'challenges');
}

export class ChallengeFiles implements AcmeChallengeStore {
  constructor(private readonly dir: string) {}

  async set(token: string, keyAuthorization: string): Promise<void> {
    if (!TOKEN.test(token)) throw new Error('ACME token is not base64url');
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    writeFileAtomic(path.join(this.dir, token), keyAuthorization, 0o644);
  }

  async remove(token: string): Promise<void> {
    if (TOKEN.test(token)) rmSync(path.join(this.dir, token), { force: true });
  }

  /** The key authorization for a token, or null (unknown token, or not a token at all). */
  read(token: string): string | null {
    if (!TOKEN.test(token)) return null;
    try {
      return readFileSync(path.join(this.dir, token), 'utf8');
    } catch {
      return null;
    }
  }
}
