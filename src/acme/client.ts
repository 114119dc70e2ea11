// ACME (RFC 8555) client: one account key on disk, HTTP-01 challenges, a fresh certificate key
// per issuance. Only node:crypto, node:https and the system openssl (for the CSR) are used.
import { createHash, createPrivateKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { execa } from 'execa';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';

export interface AcmeChallengeStore {
  /** Publish the key authorization for an HTTP-01 token (served at http://NAME/.well-known/acme-challenge/TOKEN). */
  set(token: string, keyAuthorization: string): Promise<void>;
  remove(token: string): Promise<void>;
}

export interface AcmeOptions {
  directoryUrl: string; // e.g. https://127.0.0.1:14000/dir
  accountKeyFile: string; // PEM (PKCS#8, EC P-256); created 0600 if missing, reused afterwards
  email?: string | null; // contact mailto:, optional
  names: string[]; // DNS names for the certificate; first is CN
  challenges: AcmeChallengeStore;
  ca?: Buffer; // extra trusted CA for the ACME server's own HTTPS (private ACME servers, tests)
  log?: { info(msg: string, fields?: Record<string, unknown>): void; warn(msg: string, fields?: Record<string, unknown>): void };
  timeoutMs?: number; // overall, default 5 min
}

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
  notAfter: Date;
}

export interface AcmeProblem {
  type?: string;
  detail?: string;
  status?: number;
}

/** An ACME failure; `type`/`detail` come from the server's problem document when there was one. */
export class AcmeError extends Error {
  override readonly name = 'AcmeError';
  readonly type: string | undefined;
  readonly detail: string | undefined;
  /** HTTP status of the failing response (or the problem's own status). */
  readonly status: number | undefined;

  constructor(message: string, problem: AcmeProblem = {}) {
    super(message);
    this.type = problem.type;
    this.detail = problem.detail;
    this.status = problem.status;
  }
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const BAD_NONCE = 'urn:ietf:params:acme:error:badNonce';
// A server may reject any nonce (pebble's test mode rejects half of them at random); a retry costs
// one request and the overall deadline still bounds the loop, so allow a long streak.
const MAX_BAD_NONCE_RETRIES = 20;
const MAX_RESPONSE_BYTES = 1 << 20;
const POLL_START_MS = 1000;
const POLL_MAX_MS = 10_000;
const USER_AGENT = 'fe-acme/1 (RFC 8555; node)';

type Json = Record<string, unknown>;
type Log = NonNullable<AcmeOptions['log']>;

interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface Directory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
}

interface Order {
  status: string;
  authorizations: string[];
  finalize: string;
  certificate: string | undefined;
  error: AcmeProblem | undefined;
}

interface Challenge {
  type: string;
  url: string;
  token: string;
  status: string;
  error: AcmeProblem | undefined;
}

interface Authorization {
  status: string;
  identifier: string;
  challenges: Challenge[];
}

// ---- small helpers ---------------------------------------------------------------------------

function b64u(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Json, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') throw new AcmeError(`acme: server sent ${what} without "${key}"`);
  return v;
}

function optStr(o: Json, key: string): string | undefined {
  const v = o[key];
  return typeof v === 'string' ? v : undefined;
}

function problemOf(v: unknown): AcmeProblem | undefined {
  if (!isObject(v)) return undefined;
  return { type: optStr(v, 'type'), detail: optStr(v, 'detail'), status: typeof v['status'] === 'number' ? v['status'] : undefined };
}

/** "type: detail", plus any subproblems (RFC 8555 §6.7.1) so every failing name is named. */
function describeProblem(v: unknown): string {
  const p = problemOf(v) ?? {};
  let text = `${p.type ?? 'unknown error'}: ${p.detail ?? '(no detail)'}`;
  if (isObject(v) && Array.isArray(v['subproblems'])) {
    for (const sub of v['subproblems']) {
      const sp = problemOf(sub);
      if (!sp || !isObject(sub)) continue;
      const id = isObject(sub['identifier']) ? optStr(sub['identifier'], 'value') : undefined;
      text += `; ${id ?? '?'}: ${sp.type ?? 'error'}: ${sp.detail ?? ''}`;
    }
  }
  return text;
}

function seconds(ms: number): string {
  return String(Number((ms / 1000).toFixed(1)));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Retry-After as milliseconds (delta-seconds or HTTP-date), or undefined if absent or unreadable. */
function retryAfterMs(headers: IncomingHttpHeaders): number | undefined {
  const v = headers['retry-after'];
  if (typeof v !== 'string' || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

// Letters, digits and hyphens only: these names go into an openssl -subj/-addext argument, and
// HTTP-01 cannot prove a wildcard anyway.
const DNS_NAME = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/;

function checkNames(names: string[]): string[] {
  const out: string[] = [];
  for (const raw of names) {
    const name = raw.trim().toLowerCase().replace(/\.$/, '');
    if (!DNS_NAME.test(name)) throw new AcmeError(`acme: not a DNS name usable with HTTP-01: ${JSON.stringify(raw)}`);
    if (!out.includes(name)) out.push(name);
  }
  if (out.length === 0) throw new AcmeError('acme: no names to request a certificate for');
  return out;
}

// ---- keys and JWS ----------------------------------------------------------------------------

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

function newP256Pem(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function loadOrCreateAccountKey(file: string, log: Log | undefined): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
    if ((statSync(file).mode & 0o077) !== 0) log?.warn('acme account key file is readable by others', { file });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    ensurePrivateDir(path.dirname(file));
    // Written atomically at 0600, so a crash never leaves a half key that would lose the account.
    writeFileAtomic(file, newP256Pem(), 0o600);
    log?.info('acme account key created', { file });
    pem = readFileSync(file, 'utf8');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new AcmeError(`acme: cannot read the account key ${file}: ${(e as Error).message}`);
  }
  if (!isP256(key)) throw new AcmeError(`acme: account key ${file} is not an EC P-256 key`);
  return key;
}

interface Jwk {
  crv: string;
  kty: string;
  x: string;
  y: string;
}

function publicJwk(key: KeyObject): Jwk {
  const j = key.export({ format: 'jwk' });
  if (typeof j.crv !== 'string' || typeof j.kty !== 'string' || typeof j.x !== 'string' || typeof j.y !== 'string') {
    throw new AcmeError('acme: cannot export the account key as a JWK');
  }
  // Public members only: the exported JWK also carries "d".
  return { crv: j.crv, kty: j.kty, x: j.x, y: j.y };
}

/** RFC 7638: the required members in lexicographic order, no whitespace, SHA-256. */
function jwkThumbprint(jwk: Jwk): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return b64u(createHash('sha256').update(canonical).digest());
}

// ---- CSR -------------------------------------------------------------------------------------

/** The DER of the one CERTIFICATE REQUEST in openssl's PEM output, or null. */
function csrDer(pem: string): Buffer | null {
  const m = /-----BEGIN CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE REQUEST-----/.exec(pem);
  return m ? Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64') : null;
}

async function makeCsr(keyPem: string, names: string[], log: Log | undefined): Promise<Buffer> {
  const first = names[0]!;
  // A CN is limited to 64 characters; the SANs are what matters (RFC 8555 §7.4), so leave it out then.
  const subject = first.length <= 64 ? `/CN=${first}` : '/';
  // PEM, not DER, through execa: text output cannot lose a trailing byte that happens to be "\n".
  const args = (keyPath: string) => ['req', '-new', '-sha256', '-key', keyPath, '-subj', subject, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`, '-outform', 'PEM'];
  // Keep the key off disk: openssl reads it from /dev/stdin, which must be a real pipe (Node hands a
  // child a socket, which fopen() refuses), hence "cat |". The names are arguments, never shell text.
  const piped = await execa('sh', ['-c', 'cat | openssl "$@"', 'sh', ...args('/dev/stdin')], { input: keyPem, reject: false, timeout: 30_000 });
  const der = piped.exitCode === 0 ? csrDer(piped.stdout) : null;
  if (der) return der;
  // No /proc (so no /dev/stdin): a 0600 file in a private directory, removed at once.
  log?.warn('acme openssl could not read the key from a pipe; using a private temporary file', { error: piped.stderr.split('\n')[0] });
  const dir = await mkdtemp(path.join(tmpdir(), 'fe-acme-'));
  try {
    const keyFile = path.join(dir, 'key.pem');
    await writeFile(keyFile, keyPem, { mode: 0o600 });
    const r = await execa('openssl', args(keyFile), { stdin: 'ignore', reject: false, timeout: 30_000 });
    const der2 = r.exitCode === 0 ? csrDer(r.stdout) : null;
    if (!der2) throw new AcmeError(`acme: openssl could not make the CSR: ${r.stderr.trim().split('\n')[0] ?? ''}`);
    return der2;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The Location header as an absolute URL (resolved against the request URL, to be lenient). */
function locationOf(res: HttpResponse, requestUrl: string, what: string): string {
  const loc = res.headers['location'];
  if (typeof loc !== 'string' || loc === '') throw new AcmeError(`acme: ${what} returned no Location header`, { status: res.status });
  return new URL(loc, requestUrl).href;
}

function splitPem(chain: string): string[] {
  return chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

// ---- the protocol ----------------------------------------------------------------------------

class AcmeSession {
  private nonce: string | undefined;
  private kid: string | undefined;
  private dir: Directory | undefined;
  private readonly jwk: Jwk;

  constructor(
    private readonly agent: https.Agent,
    private readonly accountKey: KeyObject,
    private readonly deadline: number,
    private readonly timeoutMs: number,
    private readonly log: Log | undefined,
  ) {
    this.jwk = publicJwk(accountKey);
  }

  get thumbprint(): string {
    return jwkThumbprint(this.jwk);
  }

  private remaining(what: string): number {
    const left = this.deadline - Date.now();
    if (left <= 0) throw new AcmeError(`acme: timed out after ${seconds(this.timeoutMs)} s ${what}`);
    return left;
  }

  private request(method: string, url: string, headers: Record<string, string>, body?: string): Promise<HttpResponse> {
    const timeout = this.remaining(`before ${method} ${url}`);
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return Promise.reject(new AcmeError(`acme: server sent an invalid URL: ${url}`));
    }
    // RFC 8555 §6.1: ACME runs over HTTPS only.
    if (u.protocol !== 'https:') return Promise.reject(new AcmeError(`acme: refusing non-HTTPS URL ${url}`));
    const signal = AbortSignal.timeout(timeout);
    return new Promise<HttpResponse>((resolve, reject) => {
      const req = https.request(u, { method, agent: this.agent, signal, headers: { 'user-agent': USER_AGENT, ...headers } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) req.destroy(new AcmeError(`acme: response from ${url} is too large`));
          else chunks.push(c);
        });
        res.on('end', () => {
          const nonce = res.headers['replay-nonce'];
          // Every response may carry a fresh nonce; keeping the latest saves a newNonce round trip.
          if (typeof nonce === 'string' && nonce !== '') this.nonce = nonce;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      });
      req.on('error', (e: Error) => {
        if (e instanceof AcmeError) reject(e);
        else if (signal.aborted) reject(new AcmeError(`acme: timed out after ${seconds(this.timeoutMs)} s during ${method} ${url}`));
        else reject(new AcmeError(`acme: ${method} ${url}: ${e.message}`));
      });
      req.end(body);
    });
  }

  private failure(res: HttpResponse, what: string): AcmeError {
    const ctype = String(res.headers['content-type'] ?? '');
    if (ctype.startsWith('application/problem+json')) {
      let doc: unknown;
      try {
        doc = JSON.parse(res.body.toString('utf8'));
      } catch {
        doc = undefined;
      }
      const p = problemOf(doc) ?? {};
      return new AcmeError(`acme: ${describeProblem(doc)} (HTTP ${res.status}, ${what})`, { type: p.type, detail: p.detail, status: res.status });
    }
    const text = res.body.toString('utf8').replace(/\s+/g, ' ').trim().slice(0, 200);
    return new AcmeError(`acme: HTTP ${res.status} from ${what}${text ? `: ${text}` : ''}`, { status: res.status });
  }

  json(res: HttpResponse, what: string): Json {
    let doc: unknown;
    try {
      doc = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new AcmeError(`acme: ${what} answered with something that is not JSON`, { status: res.status });
    }
    if (!isObject(doc)) throw new AcmeError(`acme: ${what} answered with a non-object`, { status: res.status });
    return doc;
  }

  async directory(url: string): Promise<Directory> {
    const res = await this.request('GET', url, { accept: 'application/json' });
    if (res.status !== 200) throw this.failure(res, `directory ${url}`);
    const d = this.json(res, 'the directory');
    this.dir = { newNonce: str(d, 'newNonce', 'directory'), newAccount: str(d, 'newAccount', 'directory'), newOrder: str(d, 'newOrder', 'directory') };
    return this.dir;
  }

  private async freshNonce(): Promise<string> {
    if (this.nonce) {
      const n = this.nonce;
      this.nonce = undefined; // a nonce is good for one request only
      return n;
    }
    const res = await this.request('HEAD', this.dir!.newNonce, {});
    if (res.status >= 400) throw this.failure(res, 'newNonce');
    const n = this.nonce;
    this.nonce = undefined;
    if (!n) throw new AcmeError('acme: newNonce returned no Replay-Nonce header', { status: res.status });
    return n;
  }

  /** A JWS-signed POST; payload null means POST-as-GET (RFC 8555 §6.3). */
  async post(url: string, payload: Json | null, what: string, accept = 'application/json'): Promise<HttpResponse> {
    for (let attempt = 0; ; attempt++) {
      const nonce = await this.freshNonce();
      const header: Json = { alg: 'ES256', nonce, url };
      if (this.kid) header['kid'] = this.kid;
      else header['jwk'] = this.jwk;
      const protectedB64 = b64u(JSON.stringify(header));
      const payloadB64 = payload === null ? '' : b64u(JSON.stringify(payload));
      // JWS wants the raw 64-byte r||s, not DER (RFC 7518 §3.4).
      const signature = sign('sha256', Buffer.from(`${protectedB64}.${payloadB64}`), { key: this.accountKey, dsaEncoding: 'ieee-p1363' });
      const body = JSON.stringify({ protected: protectedB64, payload: payloadB64, signature: b64u(signature) });
      const res = await this.request('POST', url, { 'content-type': 'application/jose+json', accept }, body);
      if (res.status < 400) return res;
      const err = this.failure(res, what);
      if (err.type === BAD_NONCE && attempt < MAX_BAD_NONCE_RETRIES) {
        this.log?.info('acme server rejected the nonce; retrying', { request: what, attempt: attempt + 1 });
        continue;
      }
      throw err;
    }
  }

  async account(email: string | null | undefined): Promise<string> {
    const payload: Json = { termsOfServiceAgreed: true };
    if (email) payload['contact'] = [`mailto:${email}`];
    const res = await this.post(this.dir!.newAccount, payload, 'newAccount');
    const location = locationOf(res, this.dir!.newAccount, 'newAccount');
    const acct = this.json(res, 'newAccount');
    if (acct['status'] !== undefined && acct['status'] !== 'valid') {
      throw new AcmeError(`acme: the ACME account ${location} is ${String(acct['status'])}`, { status: res.status });
    }
    this.kid = location;
    // 201 = created now, 200 = the key already had an account (RFC 8555 §7.3.1).
    this.log?.info(res.status === 201 ? 'acme account created' : 'acme account reused', { account: location });
    return location;
  }

  parseOrder(o: Json): Order {
    const auths = o['authorizations'];
    if (!Array.isArray(auths) || !auths.every((a): a is string => typeof a === 'string')) {
      throw new AcmeError('acme: server sent an order without authorizations');
    }
    return {
      status: str(o, 'status', 'an order'),
      authorizations: auths,
      finalize: str(o, 'finalize', 'an order'),
      certificate: optStr(o, 'certificate'),
      error: problemOf(o['error']),
    };
  }

  async newOrder(names: string[]): Promise<{ url: string; order: Order }> {
    const res = await this.post(this.dir!.newOrder, { identifiers: names.map((value) => ({ type: 'dns', value })) }, 'newOrder');
    const url = locationOf(res, this.dir!.newOrder, 'newOrder');
    return { url, order: this.parseOrder(this.json(res, 'newOrder')) };
  }

  async getOrder(url: string): Promise<{ order: Order; res: HttpResponse }> {
    const res = await this.post(url, null, 'order');
    return { order: this.parseOrder(this.json(res, 'order')), res };
  }

  async getAuthorization(url: string): Promise<{ authz: Authorization; res: HttpResponse }> {
    const res = await this.post(url, null, 'authorization');
    const a = this.json(res, 'authorization');
    const id = isObject(a['identifier']) ? optStr(a['identifier'], 'value') : undefined;
    const challenges: Challenge[] = [];
    if (Array.isArray(a['challenges'])) {
      for (const c of a['challenges']) {
        if (!isObject(c)) continue;
        const type = optStr(c, 'type');
        const curl = optStr(c, 'url');
        if (!type || !curl) continue;
        challenges.push({ type, url: curl, token: optStr(c, 'token') ?? '', status: optStr(c, 'status') ?? '', error: problemOf(c['error']) });
      }
    }
    return { authz: { status: str(a, 'status', 'an authorization'), identifier: id ?? url, challenges }, res };
  }

  /** Waits Retry-After if the server sent one, else the backoff; never past the deadline. */
  async wait(res: HttpResponse, backoffMs: number, what: string): Promise<void> {
    const ms = Math.min(Math.max(retryAfterMs(res.headers) ?? backoffMs, 250), 60_000);
    await sleep(Math.min(ms, this.remaining(what)));
    this.remaining(what);
  }
}

function challengeFailure(authz: Authorization): AcmeError {
  const failed = authz.challenges.find((c) => c.error) ?? authz.challenges.find((c) => c.type === 'http-01');
  const p = failed?.error;
  const why = p ? `${p.type ?? 'error'}: ${p.detail ?? '(no detail)'}` : `authorization is ${authz.status}`;
  return new AcmeError(`acme: validation of ${authz.identifier} failed: ${why}`, { type: p?.type, detail: p?.detail, status: p?.status });
}

export async function obtainCertificate(opts: AcmeOptions): Promise<IssuedCertificate> {
  const names = checkNames(opts.names);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const log = opts.log;
  const accountKey = loadOrCreateAccountKey(opts.accountKeyFile, log);
  // Node's bundled roots plus the extra CA: a private ACME server should not make public ones untrusted.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 2, ...(opts.ca ? { ca: [...tls.rootCertificates, opts.ca.toString('utf8')] } : {}) });
  const s = new AcmeSession(agent, accountKey, deadline, timeoutMs, log);
  try {
    await s.directory(opts.directoryUrl);
    await s.account(opts.email);
    const { url: orderUrl, order } = await s.newOrder(names);
    log?.info('acme order created', { names, order: orderUrl });

    // Publish every token first, then trigger all challenges, then wait: the validations run in parallel.
    const pending: { authz: Authorization; challenge: Challenge; url: string }[] = [];
    const published: string[] = [];
    try {
      for (const authzUrl of order.authorizations) {
        const { authz } = await s.getAuthorization(authzUrl);
        if (authz.status === 'valid') continue; // the server reused an earlier validation
        if (authz.status !== 'pending') throw challengeFailure(authz);
        const challenge = authz.challenges.find((c) => c.type === 'http-01');
        if (!challenge || !challenge.token) {
          throw new AcmeError(`acme: the server offers no http-01 challenge for ${authz.identifier} (offered: ${authz.challenges.map((c) => c.type).join(', ') || 'none'})`);
        }
        published.push(challenge.token);
        // Key authorization, RFC 8555 §8.1: token "." base64url(JWK thumbprint of the account key).
        await opts.challenges.set(challenge.token, `${challenge.token}.${s.thumbprint}`);
        pending.push({ authz, challenge, url: authzUrl });
      }
      for (const p of pending) {
        // The empty object (not POST-as-GET) tells the server the response is ready (RFC 8555 §7.5.1).
        if (p.challenge.status === 'pending') await s.post(p.challenge.url, {}, `challenge for ${p.authz.identifier}`);
      }
      for (const p of pending) {
        let backoff = POLL_START_MS;
        for (;;) {
          const { authz, res } = await s.getAuthorization(p.url);
          if (authz.status === 'valid') {
            log?.info('acme authorization valid', { name: authz.identifier });
            break;
          }
          if (authz.status !== 'pending') throw challengeFailure(authz);
          await s.wait(res, backoff, `waiting for validation of ${authz.identifier}`);
          backoff = Math.min(backoff * 2, POLL_MAX_MS);
        }
      }
    } finally {
      for (const token of published) {
        try {
          await opts.challenges.remove(token);
        } catch (e) {
          log?.warn('acme could not remove a challenge token', { error: (e as Error).message });
        }
      }
    }

    // All authorizations are valid, so the order should be "ready" (it may lag a moment).
    let current: Order;
    let backoff = POLL_START_MS;
    for (;;) {
      const got = await s.getOrder(orderUrl);
      current = got.order;
      if (current.status === 'ready' || current.status === 'valid' || current.status === 'processing') break;
      if (current.status !== 'pending') throw new AcmeError(`acme: order became ${current.status}${current.error ? `: ${describeProblem(current.error)}` : ''}`, current.error ?? {});
      await s.wait(got.res, backoff, 'waiting for the order to become ready');
      backoff = Math.min(backoff * 2, POLL_MAX_MS);
    }
    if (current.status !== 'ready') throw new AcmeError(`acme: order is ${current.status} before finalization; cannot use it with a new key`);

    const keyPem = newP256Pem();
    const csr = await makeCsr(keyPem, names, log);
    const fin = await s.post(current.finalize, { csr: b64u(csr) }, 'finalize');
    // The finalize response is the order itself; poll it only while the CA is still signing.
    let res = fin;
    current = s.parseOrder(s.json(fin, 'finalize'));
    backoff = POLL_START_MS;
    while (current.status !== 'valid') {
      if (current.status !== 'processing' && current.status !== 'ready') {
        throw new AcmeError(`acme: order became ${current.status} after finalization${current.error ? `: ${describeProblem(current.error)}` : ''}`, current.error ?? {});
      }
      await s.wait(res, backoff, 'waiting for the certificate');
      backoff = Math.min(backoff * 2, POLL_MAX_MS);
      ({ order: current, res } = await s.getOrder(orderUrl));
    }
    if (!current.certificate) throw new AcmeError('acme: the valid order has no certificate URL');

    const certRes = await s.post(current.certificate, null, 'certificate download', 'application/pem-certificate-chain');
    const certPem = certRes.body.toString('utf8');
    const pems = splitPem(certPem);
    if (pems.length === 0) throw new AcmeError('acme: the certificate download contained no PEM certificate');
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(pems[0]!);
    } catch (e) {
      throw new AcmeError(`acme: the downloaded certificate cannot be parsed: ${(e as Error).message}`);
    }
    // A chain for someone else's key would break TLS at the next reload; refuse it here instead.
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new AcmeError('acme: the issued certificate does not match the key we sent');
    const notAfter = new Date(leaf.validTo);
    if (Number.isNaN(notAfter.getTime())) throw new AcmeError(`acme: cannot read the certificate's expiry (${leaf.validTo})`);
    log?.info('acme certificate issued', { names, notAfter: notAfter.toISOString() });
    return { certPem: pems.join('\n') + '\n', keyPem, notAfter };
  } finally {
    agent.destroy();
  }
}
