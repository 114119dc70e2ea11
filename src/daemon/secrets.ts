// Server secrets (SRS key, later the queue key): random bytes in 0600 files under the data
// directory, created on first use. Never in fe.yml, never logged.
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';

export function serverSecret(dataDir: string, name: string, bytes = 32): Buffer {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, `${name}.key`);
  if (existsSync(file)) {
    const value = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (value.length >= 16) return value;
    throw new Error(`${file} is damaged (too short); move it away to create a new one`);
  }
  ensurePrivateDir(dir);
  const value = randomBytes(bytes);
  writeFileAtomic(file, value.toString('base64') + '\n', 0o600);
  return value;
}
