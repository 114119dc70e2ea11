// Hands a message to a domain's MX: MX lookup through fe's resolver, each MX host in priority
// order, STARTTLS whenever offered. The answer says whether a failure is permanent (5xx) or
// worth retrying (4xx, network), because the MX passes that on to the sender as 550 or 451.
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { isDnsNotFound, type FeResolver } from '../dns/resolver.js';
import type { Logger } from '../util/log.js';
import { mxMatches, type MtaStsCache } from './mta-sts.js';

export interface OutboundOptions {
  resolver: FeResolver;
  hostname: string; // our EHLO name
  port?: number; // 25, except in tests and fe dev
  timeoutMs?: number;
  log: Logger;
  mtaSts?: MtaStsCache;
}

export type DeliveryResult =
  | { ok: true; mx: string; response: string }
  | { ok: false; permanent: boolean; code: number | null; message: string };

/** MX hosts in the order to try them (RFC 5321 section 5.1), or a permanent reason there are none. */
async function mxHosts(domain: string, resolver: FeResolver): Promise<{ hosts: string[] } | { error: DeliveryResult }> {
  try {
    const records = (await resolver.mx(domain)).sort((a, b) => a.priority - b.priority);
    if (records.length === 1 && (records[0]!.exchange === '' || records[0]!.exchange === '.')) {
      return { error: { ok: false, permanent: true, code: 556, message: `${domain} accepts no mail (null MX)` } };
    }
    if (records.length > 0) return { hosts: records.map((r) => r.exchange.replace(/\.$/, '')) };
  } catch (e) {
    if (!isDnsNotFound(e)) return { error: { ok: false, permanent: false, code: null, message: `MX lookup for ${domain} failed: ${(e as Error).message}` } };
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

type SmtpError = Error & { responseCode?: number; response?: string };

function sendOnce(ip: string, mxName: string, envelope: { from: string; to: string[] }, message: Buffer, opts: OutboundOptions, verifiedTls: boolean): Promise<DeliveryResult> {
  return new Promise((resolve) => {
    const timeout = opts.timeoutMs ?? 30_000;
    const conn = new SMTPConnection({
      host: ip,
      port: opts.port ?? 25,
      name: opts.hostname,
      servername: mxName,
      // Without an enforced MTA-STS policy TLS is opportunistic: a self-signed MX still gets encryption.
      // With one, TLS is required and the certificate must be valid for the MX name.
      ...(verifiedTls ? { requireTLS: true, tls: { rejectUnauthorized: true, servername: mxName } } : { opportunisticTLS: true, tls: { rejectUnauthorized: false } }),
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout * 2,
    });
    let settled = false;
    const finish = (r: DeliveryResult) => {
      if (settled) return;
      settled = true;
      if (!r.ok) conn.close();
      resolve(r);
    };
    const failure = (e: SmtpError): DeliveryResult => {
      const code = e.responseCode ?? null;
      return { ok: false, permanent: code !== null && code >= 500, code, message: (e.response ?? e.message).replace(/\s+/g, ' ').slice(0, 300) };
    };
    conn.on('error', (e: Error) => finish(failure(e)));
    conn.connect(() => {
      conn.send({ from: envelope.from, to: envelope.to, size: message.length }, message, (err, info) => {
        if (err) return finish(failure(err as SmtpError));
        if (info && info.rejected.length > 0) {
          const first = info.rejectedErrors?.[0] as SmtpError | undefined;
          return finish(first ? failure(first) : { ok: false, permanent: true, code: 550, message: 'recipient rejected' });
        }
        conn.quit();
        finish({ ok: true, mx: mxName, response: info?.response ?? '' });
      });
    });
  });
}

export async function deliverToDomain(domain: string, envelope: { from: string; to: string[] }, message: Buffer, opts: OutboundOptions): Promise<DeliveryResult> {
  const mx = await mxHosts(domain, opts.resolver);
  if ('error' in mx) return mx.error;
  let hosts = mx.hosts;
  let enforce = false;
  if (opts.mtaSts) {
    const { policy, note } = await opts.mtaSts.policyFor(domain);
    if (note) opts.log.info('MTA-STS', { domain, note });
    if (policy?.mode === 'enforce') {
      enforce = true;
      hosts = hosts.filter((h) => policy.mx.some((p) => mxMatches(p, h)));
      if (hosts.length === 0) return { ok: false, permanent: false, code: null, message: `no MX of ${domain} matches its MTA-STS policy` };
    }
  }
  let last: DeliveryResult = { ok: false, permanent: false, code: null, message: `no address for any MX of ${domain}` };
  for (const host of hosts) {
    let ips: string[];
    try {
      ips = await addresses(host, opts.resolver);
    } catch (e) {
      last = { ok: false, permanent: false, code: null, message: `address lookup for ${host} failed: ${(e as Error).message}` };
      continue;
    }
    for (const ip of ips) {
      const result = await sendOnce(ip, host, envelope, message, opts, enforce);
      if (!result.ok && enforce && result.code === null) result.message = `MTA-STS: ${result.message}`;
      if (result.ok || result.permanent) return result; // a 5xx from one MX is the domain's answer
      opts.log.debug('MX attempt failed, trying the next', { mx: host, ip, reason: result.message });
      last = result;
    }
  }
  return last;
}
