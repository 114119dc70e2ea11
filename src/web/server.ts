// The web daemon: the little HTTP a mail host needs, and nothing else.
//   port 80  (listen.http):  ACME HTTP-01 answers (RFC 8555 8.3); any other request to a name of
//                            ours is sent to https.
//   port 443 (listen.https): the MTA-STS policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
//                            (RFC 8461 3.2) for every domain in fe.yml.
// No files are served from disk besides challenge tokens, and no request body is read.
import http from 'node:http';
import https from 'node:https';
import type { FeConfig } from '../config/schema.js';
import { mtaStsPolicyText } from '../dns/records.js';
import type { ChallengeFiles } from '../acme/challenges.js';
import type { TlsSource } from '../tls/source.js';
import type { Logger } from '../util/log.js';
import { boundAddress, listenOn } from '../daemon/listen.js';

export interface WebServerOptions {
  config: () => FeConfig;
  log: Logger;
  secure: boolean;
  /** For port 80: where the current challenge answers are. */
  challenges?: ChallengeFiles;
  /** For port 443. */
  tls?: TlsSource | null;
}

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
const POLICY_PATH = '/.well-known/mta-sts.txt';

/** The Host header without port and trailing dot, lower case; '' when missing or odd. */
function hostOf(req: http.IncomingMessage): string {
  const raw = (req.headers.host ?? '').toLowerCase();
  const host = raw.startsWith('[') ? raw.slice(0, raw.indexOf(']') + 1) : raw.replace(/:\d+$/, '');
  return host.replace(/\.$/, '');
}

/** The MTA-STS policy a Host header asks for, or null when the name is not mta-sts.<one of ours>. */
export function policyFor(config: FeConfig, host: string): string | null {
  if (!host.startsWith('mta-sts.')) return null;
  if (!config.domains.has(host.slice('mta-sts.'.length))) return null;
  return mtaStsPolicyText(config.mtaSts.mode, config.hostname, config.mtaSts.maxAgeSeconds);
}

function reply(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export function createWebServer(opts: WebServerOptions) {
  const { log } = opts;
  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
    const url = (req.url ?? '/').split('?')[0]!;
    const host = hostOf(req);
    const config = opts.config();
    if (!opts.secure && url.startsWith(CHALLENGE_PREFIX) && opts.challenges) {
      const answer = opts.challenges.read(url.slice(CHALLENGE_PREFIX.length));
      log.info('ACME challenge request', { host, found: answer !== null });
      // application/octet-stream is what RFC 8555 8.3 expects; the body is the key authorization only.
      if (answer !== null) return reply(res, 200, answer, { 'content-type': 'application/octet-stream' });
      return reply(res, 404, 'no such challenge\n');
    }
    if (opts.secure) {
      if (url === POLICY_PATH) {
        const policy = policyFor(config, host);
        if (policy !== null) return reply(res, 200, policy);
      }
      return reply(res, 404, 'not found\n');
    }
    // Plain HTTP: names of ours go to https (an MTA-STS fetcher never follows redirects, RFC 8461
    // 3.3, but a person with a browser does); anything else is not ours to answer.
    if (host === config.hostname || policyFor(config, host) !== null) {
      return reply(res, 301, 'moved to https\n', { location: `https://${host}${url}` });
    }
    return reply(res, 404, 'not found\n');
  };

  let server: http.Server;
  if (opts.secure) {
    const source = opts.tls;
    if (!source) throw new Error('the https daemon needs a certificate');
    const s = https.createServer({ ...source.current(), minVersion: 'TLSv1.2' }, handle);
    source.onChange((m) => s.setSecureContext({ ...m, minVersion: 'TLSv1.2' }));
    s.on('tlsClientError', () => undefined);
    server = s;
  } else {
    server = http.createServer(handle);
  }
  // Small and short: nothing here needs big headers or long-lived connections.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  server.on('clientError', (_e, socket) => socket.destroy());

  return {
    listen: (port: number, host: string) => listenOn(server, port, host),
    address: () => boundAddress(server),
    async close(): Promise<void> {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}
