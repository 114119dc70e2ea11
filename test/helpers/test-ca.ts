// A throw-away certificate authority (system openssl) for tests of verified TLS.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestCa {
  caFile: string; // PEM, for NODE_EXTRA_CA_CERTS
  /** A key and certificate signed by the CA for these DNS names. */
  issue(names: string[]): { key: Buffer; cert: Buffer };
}

export function createTestCa(): TestCa {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-ca-'));
  const caKey = path.join(dir, 'ca.key');
  const caFile = path.join(dir, 'ca.pem');
  const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=fe test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  let serial = 1;
  return {
    caFile,
    issue(names) {
      const base = path.join(dir, `leaf${serial++}`);
      ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0]}`]);
      writeFileSync(`${base}.ext`, `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nextendedKeyUsage=serverAuth\n`);
      ossl(['x509', '-req', '-in', `${base}.csr`, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', `${base}.crt`, '-days', '2', '-extfile', `${base}.ext`]);
      return { key: readFileSync(`${base}.key`), cert: readFileSync(`${base}.crt`) };
    },
  };
}

/** The certificate a TLS server on 127.0.0.1:port presents for `servername` (not verified). */
export function presentedCertificate(port: number, servername: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const c = s.getPeerX509Certificate();
      s.end();
      if (c) resolve(c);
      else reject(new Error('no certificate'));
    });
    s.on('error', reject);
  });
}
