// Correspondents' keys from their Web Key Directory (draft-koch-openpgp-webkey-service 3.1): the
// advanced method on openpgpkey.DOMAIN when that name exists in DNS, the direct method on DOMAIN
// otherwise. Only a verified certificate, no redirects, a size bound, and a key is taken only
// when it carries a user ID of exactly this address and can be encrypted to now.
import https from 'node:https';
import * as openpgp from 'openpgp';
import type { Key } from 'openpgp';
import { isDnsNotFound, type FeResolver } from '../dns/resolver.js';
import { resolverLookup } from '../dns/lookup.js';
import { keyStateOf } from './key-state.js';
import { wkdHash } from './wkd-hash.js';

/** A key is a few KiB; anything much larger is not a key worth parsing. */
const MAX_KEY_BYTES = 512 * 1024;
const FOUND_TTL_MS = 60 * 60 * 1000;
// Not found, or the directory could not be asked: retried sooner, so a key published today is used today.
const MISSING_TTL_MS = 10 * 60 * 1000;

export interface WkdResult {
  key: Key | null;
  /** Where it came from, or why there is none (for the log; never the message). */
  note: string;
}

export interface WkdLookupOptions {
  resolver: () => FeResolver;
  /** 443; tests point it at fe-web on loopback. */
  port: () => number;
  timeoutMs?: number;
}

function fetchKey(host: string, pathAndQuery: string, opts: WkdLookupOptions): Promise<Uint8Array | null> {
  const timeout = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host, port: opts.port(), path: pathAndQuery, servername: host, lookup: resolverLookup(opts.resolver()), timeout, headers: { accept: 'application/octet-stream' } },
      (res) => {
        if (res.statusCode === 404) {
          res.resume();
          return resolve(null);
        }
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`${host} answered HTTP ${res.statusCode}`));
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_KEY_BYTES) req.destroy(new Error(`${host} sent more than ${MAX_KEY_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => resolve(new Uint8Array(Buffer.concat(chunks))));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${host} did not answer within ${timeout} ms`)));
    req.on('error', reject);
  });
}

async function parseKeys(bytes: Uint8Array): Promise<Key[]> {
  // The draft says binary; armored answers exist in the wild and gpg accepts them too.
  const text = Buffer.from(bytes.subarray(0, 64)).toString('latin1');
  if (text.includes('-----BEGIN PGP')) return openpgp.readKeys({ armoredKeys: Buffer.from(bytes).toString('utf8') });
  return openpgp.readKeys({ binaryKeys: bytes });
}

/** One per process: answers are cached, found keys for an hour, misses for ten minutes. */
export class WkdLookup {
  private readonly cache = new Map<string, { until: number; result: Promise<WkdResult> }>();

  constructor(private readonly opts: WkdLookupOptions) {}

  key(address: string, now: Date = new Date()): Promise<WkdResult> {
    const at = address.lastIndexOf('@');
    const local = address.slice(0, at);
    const domain = address.slice(at + 1).toLowerCase();
    const cacheKey = `${local.toLowerCase()}@${domain}`;
    const hit = this.cache.get(cacheKey);
    if (hit && hit.until > now.getTime()) return hit.result;
    const result = this.lookup(local, domain, now).catch((e: Error): WkdResult => ({ key: null, note: e.message }));
    const entry = { until: now.getTime() + MISSING_TTL_MS, result };
    this.cache.set(cacheKey, entry);
    void result.then((r) => {
      if (r.key) entry.until = now.getTime() + FOUND_TTL_MS;
    });
    if (this.cache.size > 10_000) this.cache.clear(); // a bound, not an eviction policy: lookups are cheap to redo
    return result;
  }

  private async lookup(local: string, domain: string, now: Date): Promise<WkdResult> {
    const hash = wkdHash(local);
    const l = `?l=${encodeURIComponent(local)}`;
    let host = `openpgpkey.${domain}`;
    let pathAndQuery = `/.well-known/openpgpkey/${domain}/hu/${hash}${l}`;
    try {
      await this.opts.resolver().a(host);
    } catch (e) {
      if (!isDnsNotFound(e)) throw e;
      host = domain; // no advanced-method name: the direct method on the domain itself
      pathAndQuery = `/.well-known/openpgpkey/hu/${hash}${l}`;
    }
    const bytes = await fetchKey(host, pathAndQuery, this.opts);
    if (!bytes) return { key: null, note: `no key published at ${host}` };
    const wanted = `${local}@${domain}`.toLowerCase();
    for (const key of await parseKeys(bytes)) {
      if (!key.users.some((u) => u.userID?.email?.toLowerCase() === wanted)) continue;
      const state = await keyStateOf(key, now);
      if (state.usable) return { key: state.key, note: `WKD ${host} ${state.fingerprint}` };
      return { key: null, note: `the key at ${host} is not usable: ${state.reason}` };
    }
    return { key: null, note: `the key at ${host} has no user ID ${wanted}` };
  }
}
