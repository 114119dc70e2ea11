// `fe serve`: starts the daemons fe.yml asks for, reloads config on request, drains on stop.
import { loadConfig } from '../config/file.js';
import { controllerPassword, spamLearner } from '../protection/rspamd.js';
import type { DaemonName, FeConfig } from '../config/schema.js';
import { createResolver, type FeResolver } from '../dns/resolver.js';
import { WkdLookup } from '../pgp/wkd-lookup.js';
import { LoginThrottle, type ThrottleOptions } from '../auth/throttle.js';
import { createPop3Server, isLoopback } from '../pop3/server.js';
import { createImapServer } from '../imap/server.js';
import { createMx } from '../smtp/mx.js';
import { createSubmissionServer } from '../submission/server.js';
import { QueueRunner } from '../queue/runner.js';
import { MailboxRegistry } from '../store/registry.js';
import { TlsSource } from '../tls/source.js';
import { createWebServer } from '../web/server.js';
import { ChallengeFiles, challengeDir } from '../acme/challenges.js';
import { RenewalSchedule } from '../acme/renewal.js';
import { BackupSchedule } from '../backup/schedule.js';
import { createLogger, type Logger } from '../util/log.js';
import { serverSecret } from './secrets.js';
import { SendLimits } from '../submission/send-limits.js';
import path from 'node:path';

import { DAEMONS, type ServiceName } from './services.js';
export { DAEMONS, SERVICES, type ServiceName } from './services.js';

interface Daemon {
  listen(port: number, host: string): Promise<void>;
  address(): { address: string; port: number };
  /** Lets sessions under way finish for `drainMs`, closes what is left, and then resolves. */
  close(drainMs?: number): Promise<void>;
}

/** Test knobs, read from the environment so tests can drive the real `fe serve` quickly. */
function testSettings(): { idleTimeoutMs?: number; throttle: ThrottleOptions; backupCatchUpMs?: number; queueRetryMs?: number; tlsReportOffsetMs?: number } {
  const idle = Number(process.env.FE_TEST_IDLE_TIMEOUT_MS);
  const catchUp = Number(process.env.FE_TEST_BACKUP_CATCHUP_MS);
  const retry = Number(process.env.FE_TEST_QUEUE_RETRY_MS);
  const tlsOffset = Number(process.env.FE_TEST_TLSRPT_CLOCK_OFFSET_MS); // moves TLS-RPT's day on
  const throttle = process.env.FE_TEST_LOGIN_THROTTLE ? (JSON.parse(process.env.FE_TEST_LOGIN_THROTTLE) as ThrottleOptions) : {};
  return { ...(idle > 0 ? { idleTimeoutMs: idle } : {}), ...(catchUp > 0 ? { backupCatchUpMs: catchUp } : {}), ...(retry > 0 ? { queueRetryMs: retry } : {}), ...(Number.isFinite(tlsOffset) && tlsOffset !== 0 ? { tlsReportOffsetMs: tlsOffset } : {}), throttle };
}

export interface Running {
  config(): FeConfig;
  /** Where each started daemon listens. */
  addresses: Partial<Record<DaemonName, { address: string; port: number }>>;
  /** Re-reads fe.yml; a broken file is reported and the running config kept. */
  reload(): { ok: true } | { ok: false; error: string };
  /**
   * Stops: listeners at once, sessions under way get limits.shutdown_drain_seconds, then whatever
   * is left is closed. Resolves within that and a few seconds more, whatever clients do.
   */
  close(): Promise<void>;
}

export async function serve(configFile: string, opts: { only?: ServiceName[]; log?: Logger } = {}): Promise<Running> {
  let config = loadConfig(configFile);
  const log = opts.log ?? createLogger(config.logLevel);
  let resolver: FeResolver = createResolver({ servers: config.dns.servers });
  const wanted = DAEMONS.filter((d) => (opts.only ?? DAEMONS).includes(d) && config.listen[d] !== null);
  // One certificate source per process; it notices a renewal written by another process.
  const tls = await TlsSource.open(() => config, log.child('tls'));
  tls.watch();

  // One registry per process: every session of a mailbox shares one open database.
  const registry = new MailboxRegistry({ config: () => config, log: log.child('mailbox') });
  const testing = testSettings();
  const throttle = new LoginThrottle(testing.throttle);
  // moves into/out of Junk train rspamd (read per move: SIGHUP may turn it off)
  const spamLearn = spamLearner(() => (config.protection.spam.enabled && config.protection.spam.learn ? { url: config.protection.spam.controllerUrl, ...controllerPassword(config.dataDir) } : null), log.child('spam'));
  const allowPlaintextAuth = (ip: string) => config.loopbackPlaintextAuth && isLoopback(ip);
  // The outbound queue runs where asked for (the fe-queue unit), and in a plain `fe serve`.
  const queue = !opts.only || opts.only.includes('queue') ? new QueueRunner({ config: () => config, resolver: () => resolver, log: log.child('queue'), ...(testing.queueRetryMs ? { backoffMs: () => testing.queueRetryMs! } : {}), ...(testing.tlsReportOffsetMs ? { tlsReportClock: () => Date.now() + testing.tlsReportOffsetMs! } : {}) }) : null;
  // Correspondents' OpenPGP keys (encrypt_outbound: wkd), one cache for both submission ports.
  const wkd = new WkdLookup({ resolver: () => resolver, port: () => config.outbound.wkdPort });
  // What each mailbox sent in the last hour and day, for both submission ports, kept across restarts.
  const sendLimits = wanted.some((n) => n === 'submission' || n === 'submissions')
    ? new SendLimits(Date.now, { file: path.join(config.dataDir, 'submission', 'send-counts.json'), key: serverSecret(config.dataDir, 'send-counts'), onError: (message) => log.child('submission').warn(message) })
    : null;
  const make = (name: DaemonName): Daemon => {
    switch (name) {
      case 'submission':
      case 'submissions':
        return createSubmissionServer({ config: () => config, log: log.child(name), throttle, openMailboxes: registry, tls, implicitTls: name === 'submissions', allowPlaintextAuth, onQueued: () => queue?.kick(), wkd, ...(sendLimits ? { sendLimits } : {}) });
      case 'mx':
        return createMx({ config: () => config, resolver: () => resolver, log: log.child('mx'), srsSecret: serverSecret(config.dataDir, 'srs'), tls });
      case 'imap':
      case 'imaps':
        return createImapServer({ registry, log: log.child(name), throttle, tls, implicitTls: name === 'imaps', allowPlaintextAuth, hostname: config.hostname, appendLimit: config.limits.messageSize, quota: () => config.limits.mailboxQuota, maxConnectionsPerIp: () => config.limits.imapConnectionsPerIp, limits: () => config.limits, learn: spamLearn, ...(testing.idleTimeoutMs ? { idleTimeoutMs: testing.idleTimeoutMs } : {}) });
      case 'pop3':
      case 'pop3s':
        return createPop3Server({ registry, throttle, tls, allowPlaintextAuth, log: log.child(name), implicitTls: name === 'pop3s', connectionsPerIp: () => config.limits.connectionsPerIp, limits: () => config.limits, idleTimeoutMs: testing.idleTimeoutMs });
      case 'http':
        return createWebServer({ config: () => config, log: log.child('http'), secure: false, challenges: new ChallengeFiles(challengeDir(config.dataDir)) });
      case 'https':
        return createWebServer({ config: () => config, log: log.child('https'), secure: true, tls });
    }
  };

  const started: { name: DaemonName; daemon: Daemon }[] = [];
  const addresses: Running['addresses'] = {};
  try {
    for (const name of wanted) {
      const listen = config.listen[name]!;
      const daemon = make(name);
      await daemon.listen(listen.port, listen.host);
      started.push({ name, daemon });
      addresses[name] = daemon.address();
      log.info('listening', { daemon: name, address: `${listen.host}:${daemon.address().port}` });
    }
  } catch (e) {
    await Promise.all(started.map((s) => s.daemon.close()));
    tls.close();
    throw e;
  }
  // The process that answers HTTP-01 on port 80 also keeps the ACME certificate.
  const renewal = addresses.http && !config.tls && config.acme.directory ? new RenewalSchedule(() => config, log.child('acme'), () => tls.refresh()) : null;
  renewal?.start();
  queue?.start();
  // Backups run where asked for (the fe-backup unit), or in a plain `fe serve` when configured.
  const backups = opts.only ? opts.only.includes('backup') : config.backup.recipients.length > 0;
  const schedule = backups ? new BackupSchedule(() => config, log.child('backup'), testing.backupCatchUpMs) : null;
  schedule?.start();

  return {
    config: () => config,
    addresses,
    reload() {
      try {
        const next = loadConfig(configFile);
        config = next;
        resolver = createResolver({ servers: next.dns.servers });
        log.info('configuration reloaded', { domains: next.domains.size });
        tls.refresh();
        renewal?.kick(); // a new domain needs its mta-sts name on the certificate
        schedule?.apply();
        queue?.kick();
        return { ok: true };
      } catch (e) {
        log.error('configuration not reloaded; keeping the running one', { reason: (e as Error).message.split('\n').slice(0, 3).join(' | ') });
        return { ok: false, error: (e as Error).message };
      }
    },
    async close() {
      const drainMs = config.limits.shutdownDrainSeconds * 1000;
      renewal?.stop();
      tls.close();
      const stopping = Promise.all([schedule?.stop(), queue?.stop(), ...started.map((s) => s.daemon.close(drainMs))]);
      // The daemons bound their own drain; this is the backstop for anything that hangs past it.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), drainMs + 5000)));
      const outcome = await Promise.race([stopping.then(() => 'done' as const), late]);
      clearTimeout(timer);
      if (outcome === 'late') log.warn('stop deadline passed; exiting with work still open', { drain_seconds: drainMs / 1000 });
      registry.closeAll();
      sendLimits?.flush();
      log.info('stopped');
    },
  };
}
