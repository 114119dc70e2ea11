// Keeping an ACME certificate for the host: which names, when to renew, and the schedule the web
// daemon runs. The certificate covers the host name (SMTP, IMAP, POP3) and, for every domain, the
// names fe-web answers for: mta-sts. (the MTA-STS policy), openpgpkey. (WKD), autoconfig. and
// autodiscover. (client setup). `fe cert renew` runs the same renewOnce().
import { existsSync, readFileSync } from 'node:fs';
import type { FeConfig } from '../config/schema.js';
import { acmeCertificateFiles, readMatchingPair } from '../tls/source.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';
import type { Logger } from '../util/log.js';
import path from 'node:path';
import { ChallengeFiles, challengeDir } from './challenges.js';
import { AcmeError, obtainCertificate } from './client.js';

/** Renew when less than this is left (Let's Encrypt's certificates last 90 days; renew at 60). */
export const RENEW_BEFORE_DAYS = 30;
const DAY = 86_400_000;

/** Per domain, the web names besides mta-sts.; a CA refusing them must not cost the MTA-STS name. */
export const CLIENT_NAME_PREFIXES = ['openpgpkey', 'autoconfig', 'autodiscover'] as const;

export function wantedNames(config: FeConfig): string[] {
  const domains = [...config.domains.keys()];
  return [...coreNames(config), ...domains.flatMap((d) => CLIENT_NAME_PREFIXES.map((p) => `${p}.${d}`))];
}

/** The host name and the MTA-STS names: what mail delivery itself leans on. */
function coreNames(config: FeConfig): string[] {
  return [config.hostname, ...[...config.domains.keys()].map((d) => `mta-sts.${d}`)];
}

export interface CertificateState {
  /** Why a new certificate is needed, or null when the current one is fine. */
  due: string | null;
  notAfter: Date | null;
  names: string[];
}

/** Looks at the ACME certificate on disk (not at a configured or self-signed one). */
export function acmeState(config: FeConfig, now = new Date()): CertificateState {
  const files = acmeCertificateFiles(config.dataDir);
  if (!existsSync(files.cert) || !existsSync(files.key)) return { due: 'no ACME certificate yet', notAfter: null, names: [] };
  let pair: ReturnType<typeof readMatchingPair>;
  try {
    pair = readMatchingPair(files);
  } catch (e) {
    return { due: `the certificate on disk is unusable (${(e as Error).message})`, notAfter: null, names: [] };
  }
  const names = pair.names.split(',').map((s) => s.trim()).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4).toLowerCase());
  const missing = wantedNames(config).filter((n) => !names.includes(n));
  const daysLeft = (pair.notAfter.getTime() - now.getTime()) / DAY;
  let due: string | null = null;
  if (daysLeft < RENEW_BEFORE_DAYS) due = daysLeft < 0 ? 'it has expired' : `it expires in ${Math.floor(daysLeft)} days`;
  else if (missing.length > 0) due = `it does not cover ${missing.join(', ')}`;
  return { due, notAfter: pair.notAfter, names };
}

export interface RenewResult {
  renewed: boolean;
  /** What happened, for a log line or the CLI. */
  message: string;
  names: string[];
  notAfter: Date | null;
}

/**
 * Gets a new certificate when one is due (or `force`), for all wanted names. When that fails, tries
 * the host and mta-sts names, then the host name alone (each only when the certificate in use does
 * not already cover them), so mail TLS gets a real certificate even while a domain's other names
 * are not in DNS yet. Throws when nothing was obtained but something was due.
 */
export async function renewOnce(config: FeConfig, log: Logger, opts: { force?: boolean; now?: Date } = {}): Promise<RenewResult> {
  if (config.tls) return { renewed: false, message: 'tls.cert in fe.yml is used; ACME is not', names: [], notAfter: null };
  if (!config.acme.directory) return { renewed: false, message: 'acme.directory is off', names: [], notAfter: null };
  const state = acmeState(config, opts.now);
  if (!state.due && !opts.force) {
    return { renewed: false, message: `valid until ${state.notAfter!.toISOString()}; nothing to do`, names: state.names, notAfter: state.notAfter };
  }
  const reason = state.due ?? 'renewal forced';
  const files = acmeCertificateFiles(config.dataDir);
  ensurePrivateDir(path.dirname(files.cert));
  const base = {
    directoryUrl: config.acme.directory,
    accountKeyFile: files.accountKey,
    email: config.acme.email ?? config.admin,
    challenges: new ChallengeFiles(challengeDir(config.dataDir)),
    ...(config.acme.caFile ? { ca: readFileSync(config.acme.caFile) } : {}),
    log,
  };
  const all = wantedNames(config);
  log.info('requesting a certificate', { reason, names: all.join(' ') });
  // Fallbacks, widest first: often the client names are not in DNS yet, and the host name alone
  // keeps mail TLS real while a domain's mta-sts name is missing too.
  const core = coreNames(config);
  const attempts = [all, ...(core.length < all.length ? [core] : []), ...(core.length > 1 ? [[config.hostname]] : [])];
  // A fallback the current certificate already covers, for a while yet, would only lose names.
  const fresh = state.notAfter !== null && state.notAfter.getTime() - Date.now() > RENEW_BEFORE_DAYS * DAY;
  const covered = (names: string[]) => fresh && names.every((n) => state.names.includes(n));
  let issued: Awaited<ReturnType<typeof obtainCertificate>> | null = null;
  for (const [i, names] of attempts.entries()) {
    try {
      issued = await obtainCertificate({ ...base, names });
      break;
    } catch (e) {
      const next = attempts[i + 1];
      if (!(e instanceof AcmeError) || !next) throw e;
      if (covered(next)) throw e; // the certificate in use stays; the missing names wait for the next try
      log.warn(`certificate for ${names.length} names refused; trying ${next.length === 1 ? 'the host name alone' : 'the host and mta-sts names'}`, { reason: e.message });
    }
  }
  if (!issued) throw new Error('unreachable: every attempt either issued or threw');
  // Key first, then certificate: until both are in place the daemons see a mismatched pair and
  // keep the one they have (TlsSource.refresh).
  writeFileAtomic(files.key, issued.keyPem, 0o600);
  writeFileAtomic(files.cert, issued.certPem, 0o644);
  const names = readMatchingPair(files).names;
  log.info('certificate issued', { names, not_after: issued.notAfter.toISOString() });
  return { renewed: true, message: `issued for ${names.replace(/DNS:/g, '')}, valid until ${issued.notAfter.toISOString()}`, names: names.split(', ').map((n) => n.replace(/^DNS:/, '')), notAfter: issued.notAfter };
}

/** Retry delays after a failure: soon at first (DNS just published), then a few hours apart. */
const RETRY_MS = [10 * 60_000, 30 * 60_000, 60 * 60_000, 3 * 3_600_000, 6 * 3_600_000];
const CHECK_EVERY_MS = 12 * 3_600_000;

/** Runs renewOnce at start, every 12 hours, after failures with back-off, and when kicked (SIGHUP). */
export class RenewalSchedule {
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private running: Promise<void> | null = null;
  private stopped = false;
  private again = false;

  constructor(
    private readonly config: () => FeConfig,
    private readonly log: Logger,
    /** Called after a new certificate is on disk. */
    private readonly onRenewed: () => void,
  ) {}

  start(): void {
    this.kick();
  }

  /** Checks now; during a check, once more right after it (fe.yml may have changed meanwhile). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.running = this.check().finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async check(): Promise<void> {
    let next = CHECK_EVERY_MS;
    try {
      const r = await renewOnce(this.config(), this.log);
      this.failures = 0;
      if (r.renewed) this.onRenewed();
    } catch (e) {
      next = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)]!;
      this.failures++;
      this.log.warn('certificate not obtained; the daemons keep the current one', { reason: (e as Error).message, retry_in_minutes: Math.round(next / 60_000) });
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => this.kick(), next);
    this.timer.unref();
  }

  /** No more checks. One under way is not waited for: its files are written atomically. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
