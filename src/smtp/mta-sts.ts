// MTA-STS (RFC 8461) for mail fe sends on: a domain that publishes a policy in "enforce" mode
// gets its mail only over verified TLS, and only to MX hosts the policy names. Policies are
// cached for their max_age and refreshed when the _mta-sts TXT id changes.
import https from 'node:https';
import { resolverLookup } from '../dns/lookup.js';
import { isDnsNotFound, type FeResolver } from '../dns/resolver.js';

export interface MtaStsPolicy {
  id: string;
  mode: 'enforce' | 'testing' | 'none';
  mx: string[]; // patterns: exact names or "*.example.net" (one leftmost label)
  maxAge: number; // seconds
}

const MAX_POLICY_BYTES = 64 * 1024; // RFC 8461 3.3 suggests a limit; policies are tiny

/** Does an MX host name match a policy's mx pattern (RFC 8461 4.1)? */
export function mxMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const h = host.toLowerCase().replace(/\.$/, '');
  if (p.startsWith('*.')) {
    const dot = h.indexOf('.');
    return dot > 0 && h.slice(dot + 1) === p.slice(2);
  }
  return p === h;
}

/** Parses the policy text; null if it is not a valid STSv1 policy. */
export function parsePolicy(text: string, id: string): MtaStsPolicy | null {
  const fields = new Map<string, string[]>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^([A-Za-z0-9_]+):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    fields.set(key, [...(fields.get(key) ?? []), m[2]!]);
  }
  const mode = fields.get('mode')?.[0];
  const maxAge = Number(fields.get('max_age')?.[0]);
  if (fields.get('version')?.[0] !== 'STSv1') return null;
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return null;
  if (!Number.isInteger(maxAge) || maxAge < 0 || maxAge > 31557600) return null;
  const mx = fields.get('mx') ?? [];
  if (mode !== 'none' && mx.length === 0) return null;
  return { id, mode, mx, maxAge };
}

/** Fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt with a verified certificate and no redirects. */
function fetchPolicyText(domain: string, resolver: FeResolver, port: number, timeoutMs: number): Promise<string> {
  const host = `mta-sts.${domain}`;
  return new Promise((resolve, reject) => {
    const req = https.get({ host, port, path: '/.well-known/mta-sts.txt', servername: host, lookup: resolverLookup(resolver), timeout: timeoutMs, headers: { accept: 'text/plain' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`policy fetch from ${host} answered HTTP ${res.statusCode}`));
      }
      if (!/^text\/plain\b/i.test(res.headers['content-type'] ?? '')) {
        res.resume();
        return reject(new Error(`policy from ${host} is not text/plain`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_POLICY_BYTES) req.destroy(new Error(`policy from ${host} is larger than ${MAX_POLICY_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`policy fetch from ${host} timed out`)));
    req.on('error', reject);
  });
}

export interface MtaStsOptions {
  resolver: () => FeResolver;
  port?: number; // 443, except in tests
  timeoutMs?: number;
  now?: () => number;
}

/** Policy lookups with the RFC's caching rules; one per process. */
export class MtaStsCache {
  private cache = new Map<string, { policy: MtaStsPolicy; expires: number }>();

  constructor(private opts: MtaStsOptions) {}

  /** The policy to apply to mail for `domain`, or null when the domain has none (or none can be had). */
  async policyFor(domain: string): Promise<{ policy: MtaStsPolicy | null; note?: string }> {
    const now = (this.opts.now ?? Date.now)();
    const cached = this.cache.get(domain);
    const fresh = cached && cached.expires > now ? cached.policy : null;
    let id: string | null = null;
    try {
      const records = (await this.opts.resolver().txt(`_mta-sts.${domain}`)).filter((t) => /^v=STSv1\s*;/i.test(t));
      if (records.length === 1) id = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)/.exec(records[0]!)?.[1] ?? null;
    } catch (e) {
      if (!isDnsNotFound(e)) return { policy: fresh, note: `TXT lookup failed: ${(e as Error).message}` };
    }
    // No (valid) record: a cached policy stays in force until it expires (RFC 8461 5.1).
    if (id === null) return { policy: fresh };
    if (fresh && fresh.id === id) return { policy: fresh };
    try {
      const text = await fetchPolicyText(domain, this.opts.resolver(), this.opts.port ?? 443, this.opts.timeoutMs ?? 15_000);
      const policy = parsePolicy(text, id);
      if (!policy) return { policy: fresh, note: `invalid policy text from mta-sts.${domain}` };
      this.cache.set(domain, { policy, expires: now + policy.maxAge * 1000 });
      return { policy };
    } catch (e) {
      return { policy: fresh, note: (e as Error).message };
    }
  }
}
