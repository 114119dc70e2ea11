// What the MX and submission servers share around smtp-server: replies with a code, the
// DATA answer for an async handler, certificate renewals, and a drain on stop.
import type { SMTPServer, SMTPServerDataStream } from 'smtp-server';
import { boundAddress, listenOn } from '../daemon/listen.js';
import type { TlsSource } from '../tls/source.js';
import { tlsServerOptions } from '../tls/policy.js';
import type { Logger } from '../util/log.js';

/** An SMTP answer: smtp-server sends `responseCode` and the message (which carries the enhanced code). */
/** The client went away in the middle of DATA: nothing to answer, nothing wrong here. */
export class ClientGone extends Error {}

/**
 * The message, or nothing once it passes `limit`: the rest is read (to answer 552) but not kept.
 * Refuses NUL bytes: fe offers no BINARYMIME, RFC 5321 text may not carry them, and IMAP could not
 * serve them in a plain literal later (RFC 3501 4.3).
 */
export async function readAll(stream: SMTPServerDataStream, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  let nul = false;
  try {
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      if (!nul && (chunk as Buffer).includes(0)) nul = true;
      if (size <= limit && !nul) chunks.push(chunk as Buffer);
      else chunks.length = 0;
    }
  } catch (e) {
    throw new ClientGone((e as Error).message);
  }
  if (nul && size <= limit) throw new SmtpReply(550, '5.6.0 Message contains NUL bytes, which are not allowed in mail here');
  return size <= limit ? Buffer.concat(chunks) : Buffer.alloc(0);
}

/** The domain of an address, lower-cased. */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

export class SmtpReply extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Answers DATA from an async handler: its text on success, its SmtpReply, or 451 for anything unexpected. */
export function answerData(work: Promise<string>, callback: (err: Error | null, message?: string) => void, log: Logger, what: string): void {
  work.then(
    (msg) => callback(null, msg),
    (e: unknown) => {
      if (e instanceof SmtpReply) return callback(e);
      // The client hung up (or was cut at a deadline) before the final dot: nothing was stored,
      // and nothing went wrong here.
      if (e instanceof ClientGone || (e as NodeJS.ErrnoException).code === 'ECONNECTION') {
        log.info(`client left during ${what}`, { reason: (e as Error).message });
        return callback(new SmtpReply(451, '4.3.0 Connection lost during DATA; nothing was stored'));
      }
      log.error(`unexpected failure handling ${what}`, { reason: (e as Error).message });
      callback(new SmtpReply(451, '4.3.0 Temporary local problem; try again later'));
    },
  );
}

/** listen/address/close for an smtp-server; `inTransaction` holds the sessions a drain waits for. */
export function smtpDaemon(server: SMTPServer, inTransaction: Set<string>, log: Logger, tls: TlsSource | null) {
  server.on('error', (e: Error) => log.warn('connection error', { reason: e.message }));
  // A renewed certificate: TLS sessions from now on get it.
  tls?.onChange((m) => server.updateSecureContext(tlsServerOptions(m)));
  return {
    server,
    listen: (port: number, host: string) => listenOn(server.server, port, host),
    address: () => boundAddress(server.server),
    /**
     * Drains: stops accepting connections at once, lets every message already under way finish
     * (up to drainMs), then says 421 to idle sessions and resolves.
     */
    async close(drainMs = 30_000): Promise<void> {
      server.server.close();
      const deadline = Date.now() + drainMs;
      while (inTransaction.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      (server.options as { closeTimeout?: number }).closeTimeout = 500; // idle sessions: a short grace, then 421
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
