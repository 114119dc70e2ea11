// Hands mail to a domain's MX: MX lookup through fe's resolver, each MX host in priority order,
// STARTTLS whenever offered, one connection for every message queued for the domain. Each
// recipient gets its own answer (accepted, refused for good, or worth retrying), because the
// queue retries and bounces per recipient and the MX passes a forward's answer on as 550 or 451.
import type { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { isDnsNotFound, type FeResolver } from '../dns/resolver.js';
import type { Logger } from '../util/log.js';
import { checkPeer, daneFor, type DaneHost } from './dane.js';
import { mxMatches, type MtaStsCache, type MtaStsPolicy } from './mta-sts.js';

export interface OutboundOptions {
  resolver: FeResolver;
  hostname: string; // our EHLO name
  port?: number; // 25, except in tests and fe dev
  timeoutMs?: number;
  log: Logger;
  mtaSts?: MtaStsCache;
  /** Told how TLS went in each session and policy lookup, for TLS-RPT (RFC 8460); see src/tlsrpt/. */
  onTls?: (t: TlsSeen) => void;
}

/**
 * One TLS outcome for TLS-RPT: a session that reached the MX (secure or not, or the TLS error
 * that ended it), or a policy problem met before any session (no MX the policy names, or a
 * policy that could not be fetched). Plain TCP failures are not TLS outcomes and are not told.
 */
export interface TlsSeen {
  domain: string;
  policy: { type: 'sts'; mode: MtaStsPolicy['mode']; mx: string[]; maxAge: number } | { type: 'sts-unavailable'; reason: string } | { type: 'no-policy-found' };
  mx: string | null;
  ip: string | null;
  secure: boolean;
  error: string | null;
}

export type DeliveryResult =
  | { ok: true; mx: string; response: string }
  | { ok: false; permanent: boolean; code: number | null; message: string };

/** Where an attempt failed: before any SMTP reply (network, TLS, DNS, policy) or at a command. */
export type Stage = 'dns' | 'connect' | 'tls' | 'policy' | 'mail' | 'rcpt' | 'data';

export interface RecipientOutcome {
  address: string;
  ok: boolean;
  permanent: boolean; // meaningful when !ok
  code: number | null; // the SMTP reply code, null without one
  message: string; // the reply (or the error), one line
  mx: string | null; // the host that answered
  stage: Stage | null;
  /** Accepted by a next hop that offers no DSN (RFC 3461): success reports are ours to send. */
  noDsn?: boolean;
}

export interface OutboundMessage {
  from: string; // '' is the null sender
  to: string[];
  message: Buffer;
  /** DSN parameters to pass on (RFC 3461), when the next hop offers DSN. */
  dsn?: { ret?: 'FULL' | 'HDRS' | null; envid?: string | null; notify?: Record<string, string[]>; orcpt?: Record<string, string> };
  /** RFC 8689: the message must travel over verified TLS only, and the next hop must promise the same. */
  requireTls?: boolean;
}

/** MX hosts in the order to try them (RFC 5321 section 5.1), or a permanent reason there are none. */
async function mxHosts(domain: string, resolver: FeResolver): Promise<{ hosts: string[] } | { error: Omit<RecipientOutcome, 'address'> }> {
  try {
    const records = (await resolver.mx(domain)).sort((a, b) => a.priority - b.priority);
    if (records.length === 1 && (records[0]!.exchange === '' || records[0]!.exchange === '.')) {
      return { error: { ok: false, permanent: true, code: 556, message: `556 5.1.10 ${domain} accepts no mail (null MX, RFC 7505)`, mx: null, stage: 'dns' } };
    }
    if (records.length > 0) return { hosts: records.map((r) => r.exchange.replace(/\.$/, '')) };
  } catch (e) {
    if (!isDnsNotFound(e)) return { error: { ok: false, permanent: false, code: null, message: `MX lookup for ${domain} failed: ${(e as Error).message}`, mx: null, stage: 'dns' } };
  }
  return { hosts: [domain] }; // no MX: the domain's own address is the implicit MX
}

async function addresses(host: string, resolver: FeResolver): Promise<string[]> {
  const found: string[] = [];
  for (const lookup of [(h: string) => resolver.a(h), (h: string) => resolver.aaaa(h)]) {
    try {
      found.push(...(await lookup(host)));
    } catch (e) {
      if (!isDnsNotFound(e)) throw e;
    }
  }
  return found;
}

type SmtpError = Error & { responseCode?: number; response?: string; recipient?: string; rejectedErrors?: SmtpError[]; command?: string; code?: string };

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 400);
}

/** Where a delivery failed. Without a reply code the peer never answered a command: the connection or TLS failed. */
function stageOf(e: SmtpError): Stage {
  if (!e.responseCode) return e.code === 'ETLS' || /certificate|TLS|SSL/i.test(e.message) ? 'tls' : 'connect';
  if (e.command === 'MAIL FROM') return 'mail';
  if (e.command === 'RCPT TO') return 'rcpt';
  if (e.command === 'DATA' || e.command === 'message') return 'data';
  return e.code === 'ETLS' || /certificate|TLS|SSL/i.test(e.message) ? 'tls' : 'connect';
}

function outcome(address: string, mx: string, e: SmtpError): RecipientOutcome {
  const code = e.responseCode ?? null;
  return { address, ok: false, permanent: code !== null && code >= 500, code, message: oneLine(e.response ?? e.message), mx, stage: stageOf(e) };
}

function has8Bit(message: Buffer): boolean {
  for (const b of message) if (b > 0x7f) return true;
  return false;
}

/** What the server said it supports in EHLO (nodemailer keeps it on the connection, not in its API). */
function extensionsOf(conn: SMTPConnection): string[] {
  return (conn as unknown as { _supportedExtensions?: string[] })._supportedExtensions ?? [];
}

const BOUNDARY = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))/i;

/**
 * Whether a header block of the message, or of any MIME part in it, carries raw UTF-8 (RFC 6532):
 * such a message needs SMTPUTF8 even when every address is ASCII (RFC 6531).
 */
export function hasUtf8Headers(message: Buffer): boolean {
  if (!has8Bit(message)) return false;
  const boundaries = new Set<string>();
  let inHeaders = true;
  let block: string[] = [];
  for (const raw of message.toString('latin1').split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (inHeaders) {
      if (line !== '') {
        if (/[^\x00-\x7f]/.test(line)) return true;
        block.push(line);
        continue;
      }
      // the end of a header block: its Content-Type may open parts with headers of their own
      const unfolded = block.join('\n').replace(/\n[ \t]+/g, ' ').split('\n');
      const type = unfolded.find((l) => /^content-type\s*:\s*multipart\//i.test(l));
      const b = type ? BOUNDARY.exec(type) : null;
      if (b) boundaries.add(b[1] ?? b[2]!);
      inHeaders = false;
      block = [];
    } else if (boundaries.size === 0) {
      return false; // a single-part message: the rest is body
    } else if (line.startsWith('--')) {
      const rest = line.slice(2).trimEnd();
      if (boundaries.has(rest)) inHeaders = true; // a delimiter: the next part's headers follow
    }
  }
  return false;
}

/**
 * A message the next hop cannot take as it is: 8-bit content without 8BITMIME (RFC 6152), an
 * internationalized address or UTF-8 header fields without SMTPUTF8 (RFC 6531). fe does not
 * rewrite messages it signed (an RFC 2047 downgrade of Subject or From would break the DKIM
 * signature), so these are refused for good, with a status that says why (RFC 3463 X.6.3,
 * RFC 6531 X.6.7 for addresses, X.6.9 for header fields).
 */
function downgradeProblem(m: OutboundMessage, extensions: string[], utf8Headers: boolean): string | null {
  const nonAscii = /[^\x00-\x7f]/;
  if ((nonAscii.test(m.from) || m.to.some((a) => nonAscii.test(a))) && !extensions.includes('SMTPUTF8')) return '553 5.6.7 the next hop does not accept internationalized addresses (no SMTPUTF8)';
  if (utf8Headers && !extensions.includes('SMTPUTF8')) return '550 5.6.9 the next hop does not accept UTF-8 header fields (no SMTPUTF8) and fe does not rewrite signed mail';
  if (!extensions.includes('8BITMIME') && has8Bit(m.message)) return '554 5.6.3 the next hop does not accept 8-bit messages (no 8BITMIME) and fe does not convert signed mail';
  return null;
}

/**
 * One SMTP session to one address: every message in turn (RSET between them). Returns each
 * message's per-recipient outcomes; a message the session never reached gets null (the
 * connection broke first), so the caller tries the next MX for it.
 */
function session(ip: string, mxName: string, batch: OutboundMessage[], opts: OutboundOptions, verifiedTls: boolean, dane: DaneHost, onMessage: (k: number, r: RecipientOutcome[]) => void, onTls?: (t: Pick<TlsSeen, 'mx' | 'ip' | 'secure' | 'error'>) => void): Promise<(RecipientOutcome[] | null)[]> {
  return new Promise((resolve) => {
    let tlsTold = false;
    const tellTls = (secure: boolean, error: string | null) => {
      if (tlsTold) return;
      tlsTold = true;
      onTls?.({ mx: mxName, ip, secure, error });
    };
    const timeout = opts.timeoutMs ?? 30_000;
    // A DANE host's certificate is checked against its TLSA records once the handshake is done
    // (checkPeer), not against CAs; DANE comes before MTA-STS (RFC 8461 section 2).
    const verify = dane.kind !== 'dane' && (verifiedTls || batch.some((m) => m.requireTls));
    const requireTls = verify || dane.kind === 'dane' || (dane.kind === 'none' && dane.encrypt === true);
    const conn = new SMTPConnection({
      host: ip,
      port: opts.port ?? 25,
      name: opts.hostname,
      servername: mxName,
      // Without an enforced policy TLS is opportunistic: a self-signed MX still gets encryption.
      // With one (MTA-STS enforce, REQUIRETLS), TLS is required and must verify for the MX name.
      // DANE (or validated TLSA records, none usable) requires TLS and verifies it on its own terms.
      ...(verify ? { requireTLS: true, tls: { rejectUnauthorized: true, servername: mxName } } : requireTls ? { requireTLS: true, tls: { rejectUnauthorized: false, servername: mxName } } : { opportunisticTLS: true, tls: { rejectUnauthorized: false } }),
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout * 2,
    });
    // nodemailer puts SMTPUTF8 on MAIL FROM only for non-ASCII addresses; a message with UTF-8
    // header fields needs it as well (RFC 6531), so the MAIL command is completed here.
    let wantSmtpUtf8 = false;
    const raw = conn as unknown as { _sendCommand(str: string, logStr?: string): void };
    const sendCommand = raw._sendCommand.bind(conn);
    raw._sendCommand = (str, logStr) => sendCommand(wantSmtpUtf8 && /^MAIL FROM:/i.test(str) && !/ SMTPUTF8\b/i.test(str) ? `${str} SMTPUTF8` : str, logStr);
    const results: (RecipientOutcome[] | null)[] = batch.map(() => null);
    // Each message's answers are passed on as soon as they are known, so the queue can commit
    // them before the next message is sent: a crash then repeats at most that one message.
    const set = (k: number, r: RecipientOutcome[]) => {
      results[k] = r;
      onMessage(k, r);
    };
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      try {
        conn.quit();
      } catch {
        // already closed
      }
      conn.close();
      resolve(results);
    };
    // A connection-level failure before a message got its answers: those messages get the
    // error (so the caller can decide to try another MX), the rest stay null.
    let current = -1;
    const connectionFailed = (e: SmtpError) => {
      if (settled) return;
      // A failed handshake comes as a socket error (ESOCKET) carrying node's TLS code and text.
      const tlsFailed = e.code === 'ETLS' || /^(ERR_TLS|ERR_SSL|CERT_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO)/.test((e as { originalCode?: string }).originalCode ?? '') || /certificate|altnames|TLS|SSL/i.test(e.message);
      if (current < 0 && tlsFailed) tellTls(false, oneLine(e.response ? `${e.message}: ${e.response}` : e.message));
      if (current < 0) {
        for (let i = 0; i < batch.length; i++) set(i, batch[i]!.to.map((a) => outcome(a, mxName, e)));
      } else if (results[current] === null) {
        set(current, batch[current]!.to.map((a) => outcome(a, mxName, e)));
      }
      finish();
    };
    conn.on('error', (e: Error) => connectionFailed(e as SmtpError));
    conn.on('end', () => connectionFailed(Object.assign(new Error(`connection to ${mxName} closed`), { code: 'ECONNECTION' })));
    const next = (i: number) => {
      if (i >= batch.length) return finish();
      current = i;
      const m = batch[i]!;
      const utf8Headers = hasUtf8Headers(m.message);
      const refuse = downgradeProblem(m, extensionsOf(conn), utf8Headers);
      if (refuse) {
        set(i, m.to.map((a) => ({ address: a, ok: false, permanent: true, code: null, message: `${refuse} (${mxName})`, mx: mxName, stage: 'mail' as const })));
        return next(i + 1);
      }
      if (m.requireTls && !conn.secure) {
        set(i, m.to.map((a) => ({ address: a, ok: false, permanent: true, code: null, message: `REQUIRETLS: ${mxName} offers no verified TLS`, mx: mxName, stage: 'tls' as const })));
        return next(i + 1);
      }
      const to = m.to.map((address) => {
        const notify = m.dsn?.notify?.[address];
        const orcpt = m.dsn?.orcpt?.[address];
        return notify || orcpt ? { address, dsn: { ...(notify ? { notify } : {}), ...(orcpt ? { orcpt } : {}) } } : address;
      });
      const envelope = {
        from: m.from === '' ? false : m.from,
        to,
        size: m.message.length,
        ...(m.dsn && (m.dsn.ret || m.dsn.envid) ? { dsn: { ...(m.dsn.ret ? { ret: m.dsn.ret } : {}), ...(m.dsn.envid ? { envid: m.dsn.envid } : {}) } } : {}),
        ...(m.requireTls ? { requireTLSExtensionEnabled: true } : {}),
        ...(has8Bit(m.message) ? { use8BitMime: true } : {}), // RFC 6152: 8-bit content is declared
      };
      wantSmtpUtf8 = utf8Headers; // an internationalized address nodemailer flags on its own
      conn.send(envelope as Parameters<SMTPConnection['send']>[0], m.message, (err, info) => {
        if (settled) return;
        if (err) {
          const e = err as SmtpError;
          if (e.rejectedErrors && e.rejectedErrors.length > 0) {
            // every recipient refused at RCPT: each has its own reply
            const byRcpt = new Map(e.rejectedErrors.map((r) => [r.recipient, r]));
            set(i, m.to.map((a) => outcome(a, mxName, byRcpt.get(a) ?? e)));
          } else if (e.responseCode) {
            set(i, m.to.map((a) => outcome(a, mxName, e))); // MAIL FROM or DATA refused: all recipients alike
          } else {
            return connectionFailed(e);
          }
        } else {
          const rejected = new Map((info.rejectedErrors ?? []).map((r) => [(r as SmtpError).recipient, r as SmtpError]));
          set(
            i,
            m.to.map((a) => {
              const r = rejected.get(a);
              if (r) return outcome(a, mxName, r);
              return { address: a, ok: true, permanent: false, code: Number(/^\d{3}/.exec(info.response)?.[0] ?? 250), message: oneLine(info.response), mx: mxName, stage: null, noDsn: !extensionsOf(conn).includes('DSN') };
            }),
          );
        }
        if (i + 1 >= batch.length) return finish();
        conn.reset((resetErr) => (resetErr ? connectionFailed(resetErr as SmtpError) : next(i + 1)));
      });
    };
    conn.connect(() => {
      const mismatch = dane.kind === 'dane' && conn.secure ? checkPeer((conn as unknown as { _socket: TLSSocket })._socket, dane) : null;
      if (mismatch) {
        tellTls(false, `DANE: ${mismatch}`);
        return connectionFailed(Object.assign(new Error(`4.7.5 DANE: ${mxName}: ${mismatch}`), { code: 'ETLS' }));
      }
      if (conn.secure || !requireTls) tellTls(conn.secure, null);
      if (requireTls && !conn.secure) return connectionFailed(Object.assign(new Error(`${mxName} did not start TLS`), { code: 'ETLS' }));
      next(0);
    });
  });
}

/**
 * Delivers a batch of messages for one domain. Every recipient of every message gets an
 * outcome. A 5xx from one MX is the domain's answer; a temporary failure moves on to the next
 * address or MX host for what is still undelivered.
 */
export async function deliverBatch(domain: string, batch: OutboundMessage[], opts: OutboundOptions, onDone?: (i: number, outcomes: RecipientOutcome[]) => void): Promise<RecipientOutcome[][]> {
  const emitted = new Set<number>();
  const emit = (i: number, outcomes: RecipientOutcome[]) => {
    if (emitted.has(i)) return;
    emitted.add(i);
    onDone?.(i, outcomes);
  };
  const all = (o: Omit<RecipientOutcome, 'address'>) => {
    const r = batch.map((m) => m.to.map((address) => ({ address, ...o })));
    r.forEach((x, i) => emit(i, x));
    return r;
  };
  const mx = await mxHosts(domain, opts.resolver);
  if ('error' in mx) return all(mx.error);
  let hosts = mx.hosts;
  let enforce = false;
  let tlsPolicy: TlsSeen['policy'] = { type: 'no-policy-found' };
  if (opts.mtaSts) {
    const { policy, note } = await opts.mtaSts.policyFor(domain);
    if (note) opts.log.info('MTA-STS', { domain, note });
    // A failed TXT lookup does not show that a policy exists; a failed fetch after it does.
    if (note && !policy && !note.startsWith('TXT lookup failed')) tlsPolicy = { type: 'sts-unavailable', reason: note };
    if (policy) tlsPolicy = { type: 'sts', mode: policy.mode, mx: policy.mx, maxAge: policy.maxAge };
    if (policy?.mode === 'enforce') {
      enforce = true;
      hosts = hosts.filter((h) => policy.mx.some((p) => mxMatches(p, h)));
      if (hosts.length === 0) {
        opts.onTls?.({ domain, policy: tlsPolicy, mx: null, ip: null, secure: false, error: `no MX of ${domain} (${mx.hosts.join(', ')}) matches its MTA-STS policy` });
        return all({ ok: false, permanent: false, code: null, message: `no MX of ${domain} matches its MTA-STS policy`, mx: null, stage: 'policy' });
      }
    }
  }
  if (tlsPolicy.type === 'sts-unavailable') opts.onTls?.({ domain, policy: tlsPolicy, mx: null, ip: null, secure: false, error: tlsPolicy.reason });
  const policyNow = tlsPolicy;
  // Sessions under a policy that could not be fetched are told once, as that failure, above.
  const onTls = opts.onTls && policyNow.type !== 'sts-unavailable' ? (t: Pick<TlsSeen, 'mx' | 'ip' | 'secure' | 'error'>) => opts.onTls!({ domain, policy: policyNow, ...t }) : undefined;
  const dane = await daneFor(domain, opts.resolver);
  // Per recipient: an outcome is final once accepted or refused for good; a temporary failure
  // (dead host, failed TLS, 4xx) is kept as the latest word and retried at the next address.
  const final = batch.map(() => new Map<string, RecipientOutcome>());
  const latest = batch.map((m) => new Map(m.to.map((address) => [address, { address, ok: false, permanent: false, code: null, message: `no address for any MX of ${domain}`, mx: null, stage: 'dns' } as RecipientOutcome])));
  const pendingOf = (i: number) => batch[i]!.to.filter((a) => !final[i]!.has(a));
  for (const host of hosts) {
    let ips: string[];
    try {
      ips = await addresses(host, opts.resolver);
    } catch (e) {
      for (let i = 0; i < batch.length; i++) for (const a of pendingOf(i)) latest[i]!.set(a, { address: a, ok: false, permanent: false, code: null, message: `address lookup for ${host} failed: ${(e as Error).message}`, mx: host, stage: 'dns' });
      continue;
    }
    const hostDane = await dane.host(host);
    if (hostDane.kind === 'defer') {
      for (let i = 0; i < batch.length; i++) for (const a of pendingOf(i)) latest[i]!.set(a, { address: a, ok: false, permanent: false, code: null, message: hostDane.message, mx: host, stage: 'tls' });
      continue;
    }
    for (const ip of ips) {
      const todo = batch.map((m, i) => ({ i, m: { ...m, to: pendingOf(i) } })).filter((x) => x.m.to.length > 0);
      if (todo.length === 0) break;
      await session(ip, host, todo.map((x) => x.m), opts, enforce, hostDane, (k, results) => {
        const i = todo[k]!.i;
        for (const o of results) {
          // RFC 7672 2.2: no STARTTLS or no matching certificate on a DANE host is never final, and never a reason to send in clear.
          if ((hostDane.kind === 'dane' || (hostDane.kind === 'none' && hostDane.encrypt)) && !o.ok && o.stage === 'tls') Object.assign(o, { permanent: false, code: null, message: o.message.startsWith('4.7.5') ? o.message : `4.7.5 DANE: ${host}: ${o.message}` });
          else if (enforce && !o.ok && o.code === null) o.message = `MTA-STS: ${o.message}`;
          if (o.ok || o.permanent) final[i]!.set(o.address, o);
          else latest[i]!.set(o.address, o);
        }
        if (pendingOf(i).length === 0) emit(i, batch[i]!.to.map((a) => final[i]!.get(a)!));
      }, onTls);
      if (batch.every((_, i) => pendingOf(i).length === 0)) break;
      opts.log.debug('MX attempt left recipients undelivered, trying the next', { mx: host, ip });
    }
    if (batch.every((_, i) => pendingOf(i).length === 0)) break;
  }
  const result = batch.map((m, i) => m.to.map((a) => final[i]!.get(a) ?? latest[i]!.get(a)!));
  result.forEach((r, i) => emit(i, r));
  return result;
}

/** One message to one domain, answered as a whole (the MX's forwarding needs one answer for its sender). */
export async function deliverToDomain(domain: string, envelope: { from: string; to: string[] }, message: Buffer, opts: OutboundOptions): Promise<DeliveryResult> {
  const [outcomes] = await deliverBatch(domain, [{ from: envelope.from, to: envelope.to, message }], opts);
  const failed = outcomes!.filter((o) => !o.ok);
  if (failed.length === 0) return { ok: true, mx: outcomes![0]!.mx ?? domain, response: outcomes![0]!.message };
  const first = failed.find((o) => !o.permanent) ?? failed[0]!;
  return { ok: false, permanent: first.permanent, code: first.code, message: first.message };
}
