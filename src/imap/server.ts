// The IMAP daemon: accepts connections (implicit TLS on 993, STARTTLS on 143) and runs a session
// for each, all sharing one mailbox registry with POP3.
import net from 'node:net';
import tls from 'node:tls';
import type { LoginThrottle } from '../auth/throttle.js';
import type { MailboxRegistry } from '../store/registry.js';
import type { Logger } from '../util/log.js';
import type { TlsSource } from '../tls/source.js';
import { tlsServerOptions } from '../tls/policy.js';
import { ImapSession } from './session.js';
import { boundAddress, listenOn } from '../daemon/listen.js';
import { ConnectionGate } from '../daemon/connection-gate.js';
import type { FeConfig } from '../config/schema.js';

export interface ImapServerOptions {
  registry: MailboxRegistry;
  log: Logger;
  throttle: LoginThrottle;
  tls: TlsSource | null;
  implicitTls: boolean;
  allowPlaintextAuth: (remoteAddress: string) => boolean;
  hostname: string;
  appendLimit: number;
  quota: () => number;
  idleTimeoutMs?: number;
  /** Read per connection, so SIGHUP changes it (limits.imap_connections_per_ip). */
  maxConnectionsPerIp?: () => number;
  /** limits: (read per connection): the connection caps and deadlines. Absent: none. */
  limits?: () => FeConfig['limits'];
  /** Spam learning from moves into/out of Junk (src/protection/rspamd.ts). */
  learn?: (kind: 'spam' | 'ham', messages: Buffer[]) => Promise<void>;
}

export function createImapServer(opts: ImapServerOptions) {
  const source = opts.tls;
  const context = source ? () => source.context() : null;
  const sessions = new Set<ImapSession>();
  const perIp = new Map<string, number>();
  const limits = opts.limits;
  const gate = limits ? new ConnectionGate(() => ({ maxConnections: limits().maxConnections, perPrefix: limits().connectionsPerPrefix })) : null;
  const onSocket = (socket: net.Socket) => {
    // A response is several writes (untagged lines, then the tagged one): with Nagle's algorithm
    // the later ones wait for the client's delayed ACK, some 40 ms on Linux, after each command.
    socket.setNoDelay(true);
    const ip = socket.remoteAddress ?? '';
    socket.on('error', () => undefined);
    const admitted = gate?.admit(ip) ?? { ok: true as const, release: () => undefined };
    if (!admitted.ok) {
      opts.log.info('connection refused', { ip, reason: admitted.reason });
      socket.end(admitted.reason === 'prefix' ? `* BYE [UNAVAILABLE] too many connections from your network (limit ${admitted.limit})\r\n` : '* BYE [UNAVAILABLE] too many connections; try again later\r\n');
      setTimeout(() => socket.destroy(), 2000).unref();
      return;
    }
    socket.once('close', admitted.release);
    const n = (perIp.get(ip) ?? 0) + 1;
    if (n > (opts.maxConnectionsPerIp?.() ?? 50)) {
      socket.end('* BYE too many connections from your address\r\n');
      return;
    }
    perIp.set(ip, n);
    // The slot is free as soon as either side is done with the connection (LOGOUT, the client's
    // FIN or reset), not when the socket has finished closing: a client that reconnects at once
    // must not find its old connection still counted.
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left <= 0) perIp.delete(ip);
      else perIp.set(ip, left);
    };
    socket.once('end', release);
    socket.once('error', release);
    const session: ImapSession = new ImapSession(socket, {
      registry: opts.registry,
      log: opts.log,
      throttle: opts.throttle,
      secureContext: opts.implicitTls ? null : context,
      allowPlaintextAuth: opts.allowPlaintextAuth,
      hostname: opts.hostname,
      appendLimit: opts.appendLimit,
      quota: opts.quota,
      idleTimeoutMs: opts.idleTimeoutMs ?? 30 * 60_000,
      ...(limits ? { deadlines: () => ({ loginMs: limits().loginTimeoutSeconds * 1000, commandMs: limits().commandTimeoutSeconds * 1000, idleMs: limits().imapIdleTimeoutSeconds * 1000 }) } : {}),
      ...(opts.learn ? { learn: opts.learn } : {}),
      onLogout: release,
      onClose: () => {
        sessions.delete(session);
        release();
      },
    });
    sessions.add(session);
  };
  const server = opts.implicitTls && source ? tls.createServer(tlsServerOptions(source.current()), onSocket) : net.createServer(onSocket);
  if (server instanceof tls.Server && source) source.onChange((m) => (server as tls.Server).setSecureContext(tlsServerOptions(m)));
  server.on('tlsClientError', () => undefined);
  return {
    listen: (port: number, host: string) => listenOn(server, port, host),
    address: () => boundAddress(server),
    /**
     * Stops accepting and says BYE to every session (IMAP clients reconnect on their own); those
     * still open after `drainMs` (a client that never closes its end) are cut.
     */
    async close(drainMs = 30_000): Promise<void> {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sessions) s.bye();
      const deadline = Date.now() + drainMs;
      while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const s of sessions) s.destroy();
      await closed;
    },
  };
}
