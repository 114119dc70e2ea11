// The Spam layer: rspamd's normal worker (`POST /checkv2`, rspamd's HTTP protocol) scores the
// message; its action becomes fe's verdict. fe has already checked SPF/DKIM/DMARC/ARC, so those
// rspamd modules are switched off per request (Settings header) and fe's results are inserted as
// the symbols rspamd would have set: no second round of DNS lookups, and the same answer as fe's.
// Also the controller's learn calls (`/learnspam`, `/learnham`) the IMAP session makes.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AuthVerdict } from '../smtp/auth-check.js';
import type { Logger } from '../util/log.js';
import type { LayerVerdict, ProtectionLayer, ScanInput } from './layer.js';

/** What fe does when rspamd answers `greylist` or `soft reject`. */
export type SoftAction = 'accept' | 'defer';

export interface RspamdOptions {
  /** The normal worker, e.g. http://127.0.0.1:11333. */
  url: string;
  /** greylist / soft reject: let the message on, or answer 451 (the sender retries). */
  soft?: SoftAction;
  /**
   * fe's own thresholds on rspamd's score, where set: at or above `rejectScore` → 550, at or
   * above `junkScore` → Junk. Unset, rspamd's own action decides (its actions.conf).
   */
  rejectScore?: number;
  junkScore?: number;
  /** Per request; the pipeline's budget also applies. */
  timeoutMs?: number;
}

/** rspamd's /checkv2 answer, the parts fe reads. */
interface CheckReply {
  action?: string;
  score?: number;
  required_score?: number;
  symbols?: Record<string, { name?: string; score?: number }>;
  messages?: { smtp_message?: string };
}

// rspamd's own checks fe has done already (symbol names of rspamd 3.4's callbacks).
const AUTH_CHECKS = ['SPF_CHECK', 'DKIM_CHECK', 'DMARC_CHECK', 'ARC_CHECK'];

/** fe's SPF/DKIM/DMARC/ARC results as the symbols rspamd's modules would have inserted. */
export function authSymbols(auth: AuthVerdict): string[] {
  const out: string[] = [];
  const spf: Record<string, string> = { pass: 'R_SPF_ALLOW', fail: 'R_SPF_FAIL', softfail: 'R_SPF_SOFTFAIL', neutral: 'R_SPF_NEUTRAL', none: 'R_SPF_NA', temperror: 'R_SPF_DNSFAIL', permerror: 'R_SPF_PERMFAIL' };
  const s = spf[auth.spf.result.toLowerCase()];
  if (s) out.push(s);
  const dkim = auth.dkim.map((d) => d.result.toLowerCase());
  if (dkim.includes('pass')) out.push('R_DKIM_ALLOW');
  else if (dkim.includes('fail')) out.push('R_DKIM_REJECT');
  else if (dkim.includes('temperror')) out.push('R_DKIM_TEMPFAIL');
  else if (dkim.includes('permerror') || dkim.includes('policy') || dkim.includes('neutral')) out.push('R_DKIM_PERMFAIL');
  else out.push('R_DKIM_NA');
  const dm = auth.dmarc.result.toLowerCase();
  if (dm === 'pass') out.push('DMARC_POLICY_ALLOW');
  else if (dm === 'fail') out.push(auth.dmarc.policy === 'reject' ? 'DMARC_POLICY_REJECT' : auth.dmarc.policy === 'quarantine' ? 'DMARC_POLICY_QUARANTINE' : 'DMARC_POLICY_SOFTFAIL');
  else if (dm === 'none') out.push('DMARC_NA');
  else if (dm === 'temperror') out.push('DMARC_DNSFAIL');
  const arc: Record<string, string> = { pass: 'ARC_ALLOW', fail: 'ARC_REJECT', none: 'ARC_NA' };
  const a = arc[auth.arc.result.toLowerCase()];
  if (a) out.push(a);
  return out;
}

/** A header value rspamd gets from fe: no CR/LF (an envelope address is client text). */
function headerSafe(s: string): string {
  return s.replace(/[\r\n\0]/g, '');
}

interface HttpResult {
  status: number;
  body: Buffer;
}

/** One HTTP/1.1 POST on loopback; repeated headers stay separate lines (several Rcpt). */
function post(url: URL, headers: Record<string, string | string[]>, body: Buffer, signal: AbortSignal, timeoutMs: number): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { ...headers, 'Content-Length': String(body.length) }, signal, timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        // rspamd's answers are small JSON; anything huge is not rspamd
        if (size > 4 * 1024 * 1024) req.destroy(new Error('answer too large'));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code === 'ECONNREFUSED' ? `rspamd not listening at ${url.host}` : e.message)));
    req.end(body);
  });
}

/** The verdict for rspamd's answer (exported for the tests of the mapping). */
export function verdictOf(reply: CheckReply, opts: RspamdOptions): LayerVerdict {
  const score = typeof reply.score === 'number' ? reply.score : 0;
  // strongest first; rspamd's own score of each symbol is in its answer, fe keeps the names
  const symbols = Object.entries(reply.symbols ?? {})
    .sort(([, a], [, b]) => Math.abs(b.score ?? 0) - Math.abs(a.score ?? 0))
    .map(([name]) => name);
  const base = { layer: 'spam', score, symbols };
  let action = reply.action ?? 'no action';
  if (opts.rejectScore !== undefined || opts.junkScore !== undefined) {
    if (opts.rejectScore !== undefined && score >= opts.rejectScore) action = 'reject';
    else if (opts.junkScore !== undefined && score >= opts.junkScore) action = 'add header';
    else if (action === 'reject' || action === 'add header' || action === 'rewrite subject') action = 'no action';
  }
  switch (action) {
    case 'reject':
      return { ...base, action: 'reject', code: 550, reply: '5.7.1 Message refused as spam' };
    case 'add header':
    case 'rewrite subject':
      return { ...base, action: 'junk' };
    case 'greylist':
    case 'soft reject':
      if (opts.soft === 'defer') return { ...base, action: 'defer', code: 451, reply: '4.7.1 Message deferred by the spam filter; try again later' };
      return { ...base, action: 'accept' };
    default:
      return { ...base, action: 'accept' };
  }
}

export function rspamdLayer(opts: RspamdOptions): ProtectionLayer {
  const url = new URL('/checkv2', opts.url);
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return {
    name: 'spam',
    async scan(input: ScanInput, signal: AbortSignal): Promise<LayerVerdict> {
      const settings = `{ symbols_disabled = ${JSON.stringify(AUTH_CHECKS)}; symbols = ${JSON.stringify(authSymbols(input.auth))}; }`;
      const headers: Record<string, string | string[]> = {
        IP: headerSafe(input.clientIp),
        Helo: headerSafe(input.helo),
        // rspamd's `Hostname` is the client's reverse DNS name, which fe does not look up; fe's own
        // name goes as the MTA's
        'MTA-Name': headerSafe(input.hostname),
        Settings: settings,
      };
      if (input.mailFrom) headers.From = headerSafe(input.mailFrom);
      if (input.rcptTo.length > 0) headers.Rcpt = input.rcptTo.map(headerSafe);
      let res: HttpResult;
      try {
        res = await post(url, headers, input.raw, signal, timeoutMs);
      } catch (e) {
        return { layer: 'spam', action: 'skipped', problem: (e as Error).message };
      }
      if (res.status !== 200) return { layer: 'spam', action: 'skipped', problem: `rspamd answered HTTP ${res.status}` };
      let reply: CheckReply;
      try {
        reply = JSON.parse(res.body.toString('utf8')) as CheckReply;
      } catch {
        return { layer: 'spam', action: 'skipped', problem: 'rspamd answered something that is not JSON' };
      }
      return verdictOf(reply, opts);
    },
  };
}

export interface LearnOptions {
  /** The controller worker, e.g. http://127.0.0.1:11334. */
  url: string;
  /** The controller's password, if it asks for one (Debian's trusts loopback: secure_ip). */
  password?: string;
  timeoutMs?: number;
}

/**
 * Trains rspamd's Bayes classifier on one message. Resolves 'learned', or 'known' when rspamd
 * has learned this message as this class before; rejects on any other answer (for a log line).
 */
export async function rspamdLearn(kind: 'spam' | 'ham', raw: Buffer, opts: LearnOptions): Promise<'learned' | 'known'> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const headers: Record<string, string> = {};
  if (opts.password) headers.Password = opts.password;
  const res = await post(new URL(kind === 'spam' ? '/learnspam' : '/learnham', opts.url), headers, raw, AbortSignal.timeout(timeoutMs), timeoutMs);
  let reply: { success?: boolean; error?: string } = {};
  try {
    reply = JSON.parse(res.body.toString('utf8')) as typeof reply;
  } catch {
    // status alone then
  }
  if (res.status === 200 && reply.success) return 'learned';
  // 208 "already learned": rspamd keeps one learn per message and class
  if (reply.error && /already learned/i.test(reply.error)) return 'known';
  throw new Error(`rspamd learn_${kind}: HTTP ${res.status}${reply.error ? ` (${reply.error.replace(/<[^>]*>/g, '<id>').slice(0, 120)})` : ''}`);
}

/**
 * The IMAP sessions' learning hook: trains rspamd on each message in turn. Never throws; a
 * failure is one WARN line (no content, no addresses), since the user's move itself succeeded.
 */
export function spamLearner(opts: () => LearnOptions | null, log: Logger): (kind: 'spam' | 'ham', messages: Buffer[]) => Promise<void> {
  return async (kind, messages) => {
    const o = opts();
    if (!o) return;
    let learned = 0;
    let known = 0;
    for (const raw of messages) {
      try {
        if ((await rspamdLearn(kind, raw, o)) === 'learned') learned++;
        else known++;
      } catch (e) {
        log.warn('spam learning failed', { kind, reason: (e as Error).message, left: messages.length - learned - known });
        return;
      }
    }
    log.info('spam learned', { kind, learned, known });
  };
}

/**
 * The controller's password, where the owner set one: `secrets/rspamd-controller.password`
 * under the data directory (mode 0600, never in fe.yml). Debian's controller trusts loopback
 * without one.
 */
export function controllerPassword(dataDir: string): { password?: string } {
  try {
    const text = readFileSync(path.join(dataDir, 'secrets', 'rspamd-controller.password'), 'utf8').trim();
    return text ? { password: text } : {};
  } catch {
    return {};
  }
}
