// Server secrets (SRS key, later the queue key): random bytes in 0600 files under the data
// directory, created on first use. Never in fe.yml, never logged.
import { closeSync, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createFileOnce, ensurePrivateDir } from '../util/atomic-file.js';

export function serverSecret(dataDir: string, name: string, bytes = 32): Buffer {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, `${name}.key`);
  if (!existsSync(file)) {
    ensurePrivateDir(dir);
    // Two processes starting at once (fe serve and a CLI command) must agree on one key: the
    // first file in place wins and everyone reads it back, never a value of their own.
    createFileOnce(file, (tmp) => {
      const fd = openSync(tmp, 'wx', 0o600);
      try {
        fchmodSync(fd, 0o600);
        writeSync(fd, randomBytes(bytes).toString('base64') + '\n');
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    });
  }
  const value = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (value.length >= 16) return value;
  throw new Error(`${file} is damaged (too short); move it away to create a new one`);
}
