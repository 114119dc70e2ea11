// A self-signed certificate so TLS works before a real one is issued (and always in fe dev).
// Made with the system's openssl; the key is 0600 beside it under the data directory.
import { existsSync, readFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ensurePrivateDir } from '../util/atomic-file.js';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
}

export async function ensureSelfSigned(dataDir: string, hostname: string): Promise<TlsMaterial> {
  const dir = path.join(dataDir, 'tls');
  const keyFile = path.join(dir, 'self-signed.key');
  const certFile = path.join(dir, 'self-signed.crt');
  if (!existsSync(keyFile) || !existsSync(certFile)) {
    ensurePrivateDir(dir);
    await execa('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '825',
      '-keyout', keyFile, '-out', certFile,
      '-subj', `/CN=${hostname}`,
      // loopback names too, so local clients that check names (mbsync, fe dev) can trust it
      '-addext', `subjectAltName=DNS:${hostname},DNS:localhost,IP:127.0.0.1,IP:::1`,
    ], { stdin: 'ignore' });
    chmodSync(keyFile, 0o600);
  }
  return { key: readFileSync(keyFile), cert: readFileSync(certFile) };
}

export function loadTls(paths: { cert: string; key: string }): TlsMaterial {
  return { key: readFileSync(paths.key), cert: readFileSync(paths.cert) };
}
