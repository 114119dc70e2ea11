// `fe serve`: starts the daemons fe.yml asks for, reloads config on request, drains on stop.
import { loadConfig } from '../config/file.js';
import type { DaemonName, FeConfig } from '../config/schema.js';
import { createResolver, type FeResolver } from '../dns/resolver.js';
import { createMx, type Mx } from '../smtp/mx.js';
import { ensureSelfSigned, loadTls } from '../tls/self-signed.js';
import { createLogger, type Logger } from '../util/log.js';
import { serverSecret } from './secrets.js';

export const DAEMONS: readonly DaemonName[] = ['mx'];

export interface Running {
  config(): FeConfig;
  /** Where each started daemon listens. */
  addresses: Partial<Record<DaemonName, { address: string; port: number }>>;
  /** Re-reads fe.yml; a broken file is reported and the running config kept. */
  reload(): { ok: true } | { ok: false; error: string };
  close(): Promise<void>;
}

export async function serve(configFile: string, opts: { only?: DaemonName[]; log?: Logger } = {}): Promise<Running> {
  let config = loadConfig(configFile);
  const log = opts.log ?? createLogger(config.logLevel);
  let resolver: FeResolver = createResolver({ servers: config.dns.servers });
  const wanted = (opts.only ?? DAEMONS).filter((d) => config.listen[d] !== null);
  const tls = config.tls ? loadTls(config.tls) : await ensureSelfSigned(config.dataDir, config.hostname);

  const started: { name: DaemonName; daemon: Mx }[] = [];
  const addresses: Running['addresses'] = {};
  try {
    for (const name of wanted) {
      const listen = config.listen[name]!;
      if (name === 'mx') {
        const mx = createMx({ config: () => config, resolver: () => resolver, log: log.child('mx'), srsSecret: serverSecret(config.dataDir, 'srs'), tls });
        await mx.listen(listen.port, listen.host);
        started.push({ name, daemon: mx });
        addresses[name] = mx.address();
        log.info('listening', { daemon: name, address: `${listen.host}:${mx.address().port}` });
      }
    }
  } catch (e) {
    await Promise.all(started.map((s) => s.daemon.close()));
    throw e;
  }

  return {
    config: () => config,
    addresses,
    reload() {
      try {
        const next = loadConfig(configFile);
        config = next;
        resolver = createResolver({ servers: next.dns.servers });
        log.info('configuration reloaded', { domains: next.domains.size });
        return { ok: true };
      } catch (e) {
        log.error('configuration not reloaded; keeping the running one', { reason: (e as Error).message.split('\n').slice(0, 3).join(' | ') });
        return { ok: false, error: (e as Error).message };
      }
    },
    async close() {
      await Promise.all(started.map((s) => s.daemon.close()));
      log.info('stopped');
    },
  };
}
