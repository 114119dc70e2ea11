// A stand-in for somebody else's mail server: records what fe hands it. Recipients whose local
// part starts with "defer" get 451, with "refuse" get 550, with "once" 451 the first time and 250
// after, so tests can drive fe's error paths.
import { SMTPServer } from 'smtp-server';
import { acceptQuotedLocalPartsOn } from '../../src/smtp/quoted-local.js';

export interface Received {
  from: string;
  to: string[];
  raw: Buffer;
  secure: boolean;
  bodyType: string; // what MAIL FROM declared: 7bit, or 8bitmime with BODY=8BITMIME
  smtpUtf8: boolean; // MAIL FROM carried SMTPUTF8 (RFC 6531)
}

export interface PeerMx {
  port: number;
  messages: Received[];
  close(): Promise<void>;
}

export async function startPeerMx(tls?: { key: Buffer; cert: Buffer }, opts: { dataDelayMs?: number; no8BitMime?: boolean; noSmtpUtf8?: boolean; host?: string; port?: number; noStartTls?: boolean } = {}): Promise<PeerMx> {
  const messages: Received[] = [];
  const deferredOnce = new Set<string>();
  const server = new SMTPServer({
    ...(tls ?? {}),
    authOptional: true,
    disabledCommands: opts.noStartTls ? ['AUTH', 'STARTTLS'] : ['AUTH'], // no STARTTLS at all, not merely unadvertised
    ...(opts.no8BitMime ? { hide8BITMIME: true, hideSMTPUTF8: true } : {}),
    ...(opts.noSmtpUtf8 ? { hideSMTPUTF8: true } : {}), // 8BITMIME still offered
    disableReverseLookup: true,
    logger: false,
    onRcptTo(address, _session, cb) {
      const local = address.address.split('@')[0]!.toLowerCase();
      if (local.startsWith('defer')) return cb(Object.assign(new Error('4.2.0 Mailbox busy, try later'), { responseCode: 451 }));
      if (local.startsWith('refuse')) return cb(Object.assign(new Error('5.1.1 No such mailbox at the peer'), { responseCode: 550 }));
      if (local.startsWith('once') && !deferredOnce.has(address.address.toLowerCase())) {
        deferredOnce.add(address.address.toLowerCase());
        return cb(Object.assign(new Error('4.2.0 Greylisted, please try again later'), { responseCode: 451 }));
      }
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        // Recorded before the 250, as a real MX commits before answering.
        messages.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks), secure: session.secure, bodyType: (session.envelope as { bodyType?: string }).bodyType ?? '7bit', smtpUtf8: (session.envelope as { smtpUtf8?: boolean }).smtpUtf8 === true });
        if (opts.dataDelayMs) setTimeout(() => cb(), opts.dataDelayMs);
        else cb();
      });
    },
  });
  // A client killed mid-transaction (the queue's kill -9 test) resets its connection; smtp-server
  // reports that as an 'error' event, which unheard would crash the test process. A real MX goes on.
  server.on('error', () => {});
  // A real MX takes <"john doe"@remote.example> (RFC 5321 4.1.2), as fe's own MX does.
  acceptQuotedLocalPartsOn(server);
  // Several peers can share a port on different loopback addresses: one MX port for all in fe's config.
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as { port: number }).port;
  return { port, messages, close: () => new Promise((r) => server.close(() => r())) };
}
