// Connection caps and per-phase deadlines for an smtp-server (MX and submission). The idle
// timeout restarts on every octet, so a client trickling a byte at a time is bounded by these
// instead: greeting to EHLO, DATA to its final dot, and the whole session, none of which any
// input extends.
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { SMTPServer, SMTPServerSession } from 'smtp-server';
import type { FeConfig } from '../config/schema.js';
import { ConnectionGate } from '../daemon/connection-gate.js';
import type { Logger } from '../util/log.js';
import { SmtpReply } from './daemon.js';

/** What fe uses of smtp-server's connection object (not in its typings). */
interface Connection {
  id: string;
  hostNameAppearsAs: string | false;
  send(code: number, message: string): void;
  close(): void;
  _socket: Socket;
}

interface Tracked {
  release: () => void;
  timers: NodeJS.Timeout[];
}

export function smtpSessionLimits(server: () => SMTPServer, limits: () => FeConfig['limits'], log: Logger) {
  const gate = new ConnectionGate(() => ({ maxConnections: limits().maxConnections, perPrefix: limits().connectionsPerPrefix }));
  const tracked = new Map<string, Tracked>();

  const find = (id: string): Connection | undefined => {
    for (const c of (server() as unknown as { connections: Set<Connection> }).connections) if (c.id === id) return c;
    return undefined;
  };
  /** Says 421 and closes; the socket is destroyed shortly after whatever the client does. */
  const cut = (id: string, text: string) => {
    const c = find(id);
    if (!c) return;
    log.info('session cut', { reason: text.replace(/^[\d.]+ /, '') });
    c.send(421, text);
    c.close();
    setTimeout(() => c._socket.destroy(), 2000).unref();
  };
  const after = (id: string, seconds: number, fn: () => void) => {
    const t = setTimeout(fn, seconds * 1000);
    t.unref();
    tracked.get(id)?.timers.push(t);
    return t;
  };

  return {
    /** From onConnect: an SmtpReply when the connection is refused, else null (deadlines armed). */
    admit(session: SMTPServerSession): SmtpReply | null {
      const a = gate.admit(session.remoteAddress);
      if (!a.ok) {
        log.info('connection refused', { ip: session.remoteAddress, reason: a.reason });
        return a.reason === 'prefix'
          ? new SmtpReply(421, `4.7.0 Too many connections from your network (limit ${a.limit}); try again later`)
          : new SmtpReply(421, '4.3.2 Too many connections; try again later');
      }
      tracked.set(session.id, { release: a.release, timers: [] });
      const l = limits();
      after(session.id, l.greetingTimeoutSeconds, () => {
        if (!find(session.id)?.hostNameAppearsAs) cut(session.id, `4.4.2 No EHLO within ${l.greetingTimeoutSeconds} s; closing`);
      });
      after(session.id, l.sessionTimeoutSeconds, () => cut(session.id, `4.4.2 Session time limit (${l.sessionTimeoutSeconds} s) reached; closing`));
      return null;
    },
    /** From onData: the message must be in (its final dot) within data_timeout_seconds; checking it after is not timed here. */
    dataStarted(session: SMTPServerSession, stream: Readable): void {
      const seconds = limits().dataTimeoutSeconds;
      const t = after(session.id, seconds, () => cut(session.id, `4.4.2 DATA not completed within ${seconds} s; closing`));
      stream.once('end', () => clearTimeout(t));
      stream.once('close', () => clearTimeout(t));
    },
    /** From onClose. */
    closed(session: SMTPServerSession): void {
      const t = tracked.get(session.id);
      if (!t) return;
      tracked.delete(session.id);
      for (const timer of t.timers) clearTimeout(timer);
      t.release();
    },
  };
}
