// A self-signed certificate so TLS works before a real one is issued (and always in fe dev).
// Made with the system's openssl; the key is 0600 beside it under the data directory.
import { chmodSync, existsSync, linkSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ensurePrivateDir } from '../util/atomic-file.js';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
}

/**
 * Several daemons (fe-mx, fe-mailstore, fe-web) start at once on a new host and each may find no
 * certificate. Each makes a pair in a private temp folder; the first to hard-link its key into
 * place wins and renames its certificate after it; the others drop theirs and wait for the
 * winner's certificate. So a key is never paired with another process's certificate.
 */
export async function ensureSelfSigned(dataDir: string, hostname: string): Promise<TlsMaterial> {
  const dir = path.join(dataDir, 'tls');
  const keyFile = path.join(dir, 'self-signed.key');
  const certFile = path.join(dir, 'self-signed.crt');
  for (let attempt = 0; !existsSync(certFile); attempt++) {
    ensurePrivateDir(dir);
    const tmp = mkdtempSync(path.join(dir, '.new-'));
    try {
      await execa('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '825',
        '-keyout', path.join(tmp, 'key'), '-out', path.join(tmp, 'crt'),
        '-subj', `/CN=${hostname}`,
        // loopback names too, so local clients that check names (mbsync, fe dev) can trust it
        '-addext', `subjectAltName=DNS:${hostname},DNS:localhost,IP:127.0.0.1,IP:::1`,
      ], { stdin: 'ignore' });
      chmodSync(path.join(tmp, 'key'), 0o600);
      try {
        linkSync(path.join(tmp, 'key'), keyFile);
        renameSync(path.join(tmp, 'crt'), certFile);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    if (attempt > 2) throw new Error(`${keyFile} exists without ${certFile}; remove it and start again`);
    // A key more than a minute old without its certificate was left by a crash: replace it.
    if (!existsSync(certFile) && Date.now() - statSync(keyFile).mtimeMs > 60_000) {
      unlinkSync(keyFile);
      continue;
    }
    // Another process holds the key: its certificate follows within seconds.
    const deadline = Date.now() + 60_000;
    while (!existsSync(certFile) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  }
  return { key: readFileSync(keyFile), cert: readFileSync(certFile) };
}

export function loadTls(paths: { cert: string; key: string }): TlsMaterial {
  return { key: readFileSync(paths.key), cert: readFileSync(paths.cert) };
}
