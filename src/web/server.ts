// The web daemon: the little HTTP a mail host needs, and nothing else. This file routes; what is
// answered lives beside it.
//   port 80  (listen.http):  ACME HTTP-01 answers (RFC 8555 8.3); any other request to a name of
//                            ours is sent to https.
//   port 443 (listen.https), for every domain in fe.yml:
//     the MTA-STS policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 3.2);
//     WKD keys at openpgpkey.DOMAIN and DOMAIN (wkd.ts);
//     client setup at autoconfig.DOMAIN / autodiscover.DOMAIN (autoconfig.ts, apple-profile.ts).
// No files are served from disk besides challenge tokens; the only body read is an Autodiscover
// request, a few hundred bytes, capped.
import http from 'node:http';
import https from 'node:https';
import type { FeConfig } from '../config/schema.js';
import { mtaStsPolicyText } from '../dns/records.js';
import type { ChallengeFiles } from '../acme/challenges.js';
import type { TlsSource } from '../tls/source.js';
import { tlsServerOptions } from '../tls/policy.js';
import type { Logger } from '../util/log.js';
import { boundAddress, listenOn } from '../daemon/listen.js';
import { WkdDirectory } from './wkd.js';
import { AUTOCONFIG_PATHS, AUTODISCOVER_MAX_BODY, AUTODISCOVER_PATHS, AutodiscoverRequestError, autodiscoverRequestAddress, autodiscoverResponse, servedAddress, thunderbirdConfig } from './autoconfig.js';
import { appleProfile, MOBILECONFIG_PATH, MOBILECONFIG_TYPE, ProfileError } from './apple-profile.js';

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
const XML = 'application/xml; charset=utf-8';
/** The per-domain names fe-web answers for besides mta-sts. (the ACME order covers them). */
const CLIENT_PREFIXES = ['openpgpkey.', 'autoconfig.', 'autodiscover.'];

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

/** The served domain a client-setup name belongs to: autoconfig.D, autodiscover.D or D itself. */
function clientDomain(config: FeConfig, host: string): string | null {
  for (const prefix of CLIENT_PREFIXES) {
    if (host.startsWith(prefix) && config.domains.has(host.slice(prefix.length))) return host.slice(prefix.length);
  }
  return config.domains.has(host) ? host : null;
}

function reply(res: http.ServerResponse, status: number, body: string | Uint8Array, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** The request body up to `max` bytes; null as soon as it is longer (the answer then closes the connection). */
function readBody(req: http.IncomingMessage, max: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size <= max) chunks.push(d);
      else resolve(null);
    });
    req.on('end', () => resolve(size > max ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function createWebServer(opts: WebServerOptions) {
  const { log } = opts;
  const wkd = new WkdDirectory();

  /** https: the client-setup documents; false when the path is none of them. */
  const clientSetup = async (req: http.IncomingMessage, res: http.ServerResponse, config: FeConfig, host: string, path: string, query: URLSearchParams): Promise<boolean> => {
    const hostDomain = clientDomain(config, host);
    const isAutoconfig = AUTOCONFIG_PATHS.includes(path);
    const isAutodiscover = AUTODISCOVER_PATHS.includes(path);
    const isProfile = path === MOBILECONFIG_PATH;
    if (!isAutoconfig && !isAutodiscover && !isProfile) return false;
    if (hostDomain === null && host !== config.hostname) return (reply(res, 404, 'not found\n'), true);
    if (req.method === 'POST' && !isAutodiscover) return (reply(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' }), true);
    let given = query.get('emailaddress') ?? query.get('email');
    if (req.method === 'POST') {
      const body = await readBody(req, AUTODISCOVER_MAX_BODY);
      if (body === null) return (reply(res, 413, `an Autodiscover request is at most ${AUTODISCOVER_MAX_BODY} bytes\n`, { connection: 'close' }), true);
      try {
        given = autodiscoverRequestAddress(body);
      } catch (e) {
        if (e instanceof AutodiscoverRequestError) return (reply(res, 400, `${e.message}\n`), true);
        throw e;
      }
    }
    const address = given !== null ? servedAddress(config, given) : null;
    if (given !== null && address === null) return (reply(res, 404, 'not an address of a domain served here\n'), true);
    if (isAutoconfig) {
      const domain = address?.domain ?? hostDomain;
      if (!domain) return (reply(res, 404, 'name the address: ?emailaddress=me@example.org\n'), true);
      return (reply(res, 200, thunderbirdConfig(config, domain), { 'content-type': XML }), true);
    }
    if (!address) return (reply(res, 400, 'name the address: ?emailaddress=me@example.org\n'), true);
    if (isAutodiscover) return (reply(res, 200, autodiscoverResponse(config, address.address), { 'content-type': XML }), true);
    try {
      const profile = appleProfile(config, address.address);
      const file = address.address.replace(/[^A-Za-z0-9._@-]/g, '_');
      return (reply(res, 200, profile, { 'content-type': MOBILECONFIG_TYPE, 'content-disposition': `attachment; filename="${file}.mobileconfig"` }), true);
    } catch (e) {
      if (e instanceof ProfileError) return (reply(res, 404, `${e.message}\n`), true);
      throw e;
    }
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const url = q < 0 ? raw : raw.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    const postable = opts.secure && req.method === 'POST' && AUTODISCOVER_PATHS.includes(url);
    if (req.method !== 'GET' && req.method !== 'HEAD' && !postable) return reply(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
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
      const key = await wkd.answer(config, host, url);
      if (key) return reply(res, key.status, key.body, { 'content-type': key.type });
      if (await clientSetup(req, res, config, host, url, query)) return;
      return reply(res, 404, 'not found\n');
    }
    // Plain HTTP: names of ours go to https (an MTA-STS fetcher never follows redirects, RFC 8461
    // 3.3, but a person with a browser does, and Outlook asks http://autodiscover. for one);
    // anything else is not ours to answer.
    const ours = host === config.hostname || policyFor(config, host) !== null || CLIENT_PREFIXES.some((p) => host.startsWith(p) && config.domains.has(host.slice(p.length)));
    if (ours) return reply(res, 301, 'moved to https\n', { location: `https://${host}${raw}` });
    return reply(res, 404, 'not found\n');
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    route(req, res).catch((e: unknown) => {
      log.error('web request failed', { reason: (e as Error).message });
      if (!res.headersSent) reply(res, 500, 'internal error\n');
      else res.destroy();
    });
  };

  let server: http.Server;
  if (opts.secure) {
    const source = opts.tls;
    if (!source) throw new Error('the https daemon needs a certificate');
    const s = https.createServer(tlsServerOptions(source.current()), handle);
    source.onChange((m) => s.setSecureContext(tlsServerOptions(m)));
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
