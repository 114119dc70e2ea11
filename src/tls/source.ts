// Which certificate the daemons present, and picking up a new one without a restart.
//
// The choice, in order: tls.cert/tls.key from fe.yml; the ACME certificate the web daemon keeps
// under DATA/tls/; the self-signed one made at first start. The files are checked every minute
// (and on SIGHUP), so a renewal written by another process (fe-web, `fe cert renew`) reaches
// fe-mx and fe-mailstore on its own. A pair whose key does not match its certificate (a renewal
// half written) is ignored until it does, and the running one is kept.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { FeConfig } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import { ensureSelfSigned, type TlsMaterial } from './self-signed.js';
import { tlsServerOptions } from './policy.js';

export type CertificateKind = 'configured' | 'acme' | 'self-signed';

export interface CertificateFiles {
  kind: CertificateKind;
  cert: string;
  key: string;
}

export function acmeCertificateFiles(dataDir: string): { cert: string; key: string; accountKey: string } {
  const dir = path.join(dataDir, 'tls');
  return { cert: path.join(dir, 'acme.crt'), key: path.join(dir, 'acme.key'), accountKey: path.join(dir, 'acme-account.key') };
}

export function selfSignedFiles(dataDir: string): { cert: string; key: string } {
  const dir = path.join(dataDir, 'tls');
  return { cert: path.join(dir, 'self-signed.crt'), key: path.join(dir, 'self-signed.key') };
}

/** The files the daemons should use now (without reading them). */
export function currentCertificateFiles(config: FeConfig): CertificateFiles {
  if (config.tls) return { kind: 'configured', ...config.tls };
  const acme = acmeCertificateFiles(config.dataDir);
  if (existsSync(acme.cert) && existsSync(acme.key)) return { kind: 'acme', cert: acme.cert, key: acme.key };
  return { kind: 'self-signed', ...selfSignedFiles(config.dataDir) };
}

/** Reads a key and certificate and checks they belong together; throws with the reason if not. */
export function readMatchingPair(files: { cert: string; key: string }): TlsMaterial & { notAfter: Date; names: string } {
  const cert = readFileSync(files.cert);
  const key = readFileSync(files.key);
  const x509 = new X509Certificate(cert);
  if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error(`${files.key} is not the key of ${files.cert}`);
  return { cert, key, notAfter: new Date(x509.validTo), names: x509.subjectAltName ?? '' };
}

function fingerprint(files: CertificateFiles): string {
  const st = (f: string) => {
    try {
      const s = statSync(f);
      return `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch {
      return 'missing';
    }
  };
  return `${files.kind}|${files.cert}|${st(files.cert)}|${files.key}|${st(files.key)}`;
}

export class TlsSource {
  private material: TlsMaterial;
  private secureContext: SecureContext;
  private seen: string;
  private listeners: ((m: TlsMaterial) => void)[] = [];
  private timer: NodeJS.Timeout | null = null;
  kind: CertificateKind;

  private constructor(
    private readonly config: () => FeConfig,
    private readonly log: Logger | null,
    files: CertificateFiles,
    material: TlsMaterial,
  ) {
    this.material = material;
    this.secureContext = createSecureContext(tlsServerOptions(material));
    this.seen = fingerprint(files);
    this.kind = files.kind;
  }

  /** Loads the current certificate; makes the self-signed one first if nothing else exists. */
  static async open(config: () => FeConfig, log: Logger | null = null): Promise<TlsSource> {
    const c = config();
    if (!c.tls) await ensureSelfSigned(c.dataDir, c.hostname);
    let files = currentCertificateFiles(c);
    let material: TlsMaterial;
    try {
      material = readMatchingPair(files);
    } catch (e) {
      if (files.kind !== 'acme') throw e;
      // A broken ACME pair must not keep the daemons down: start on the self-signed one.
      log?.warn('ACME certificate unusable; using the self-signed one', { reason: (e as Error).message });
      files = { kind: 'self-signed', ...selfSignedFiles(c.dataDir) };
      material = readMatchingPair(files);
    }
    return new TlsSource(config, log, files, material);
  }

  current(): TlsMaterial {
    return this.material;
  }

  context(): SecureContext {
    return this.secureContext;
  }

  /** Called with the new material after a change; servers that hold their own context swap it. */
  onChange(listener: (m: TlsMaterial) => void): void {
    this.listeners.push(listener);
  }

  /** Re-reads the files if they (or the choice between them) changed. True when a new one is in use. */
  refresh(): boolean {
    const files = currentCertificateFiles(this.config());
    const fp = fingerprint(files);
    if (fp === this.seen) return false;
    let next: ReturnType<typeof readMatchingPair>;
    try {
      next = readMatchingPair(files);
    } catch (e) {
      // Not remembered as seen: the next check tries again (the other half may still be coming).
      this.log?.warn('new certificate not usable yet; keeping the current one', { reason: (e as Error).message });
      return false;
    }
    this.seen = fp;
    this.kind = files.kind;
    this.material = { key: next.key, cert: next.cert };
    this.secureContext = createSecureContext(tlsServerOptions(next));
    this.log?.info('certificate loaded', { kind: files.kind, names: next.names, not_after: next.notAfter.toISOString() });
    for (const l of this.listeners) l(this.material);
    return true;
  }

  /** Checks for a new certificate every `intervalMs` (default a minute) until close(). */
  watch(intervalMs = 60_000): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.refresh(), intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
