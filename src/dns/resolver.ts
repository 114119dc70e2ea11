// The one place fe resolves DNS. Everything else (MX lookups, SPF/DKIM/DMARC via mailauth, PTR
// checks) goes through an FeResolver, so tests can point it at a loopback server.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { DnsCache, type Cached } from './cache.js';
import { lookupValidated, type DnssecTypes, type Validated } from './dnssec.js';
import { lookupWire, parseServer, type AnswerType, type WireRecords } from './wire.js';

/**
 * nxdomain/nodata/badname are answers ("there is no such record"): SMTP may say 5xx.
 * temporary (SERVFAIL, timeout, refused, unreachable server) means "ask again later": 4xx.
 */
export type DnsFailureKind = 'nxdomain' | 'nodata' | 'badname' | 'temporary';

export class DnsLookupError extends Error {
  /** The c-ares code node reported (ENOTFOUND, ENODATA, ESERVFAIL, ETIMEOUT, ...). */
  readonly code: string;
  readonly kind: DnsFailureKind;
  readonly hostname: string;
  readonly rrtype: string;

  constructor(code: string, hostname: string, rrtype: string) {
    super(`DNS ${rrtype} lookup for ${hostname} failed: ${code}`);
    this.name = 'DnsLookupError';
    this.code = code;
    this.kind = classify(code);
    this.hostname = hostname;
    this.rrtype = rrtype;
  }

  /** The name or record does not exist; retrying will not help. */
  get notFound(): boolean {
    return this.kind !== 'temporary';
  }

  get temporary(): boolean {
    return this.kind === 'temporary';
  }
}

function classify(code: string): DnsFailureKind {
  switch (code) {
    case 'ENOTFOUND':
      return 'nxdomain';
    case 'ENODATA':
      return 'nodata';
    case 'EBADNAME':
      return 'badname';
    default:
      // ESERVFAIL, ETIMEOUT, EREFUSED, ECONNREFUSED, EBADRESP, EFORMERR, ...: the answer is unknown.
      return 'temporary';
  }
}

export function isDnsNotFound(err: unknown): boolean {
  return err instanceof DnsLookupError && err.notFound;
}

export function isDnsTemporary(err: unknown): boolean {
  return err instanceof DnsLookupError && err.temporary;
}

export interface MxRecord {
  exchange: string;
  priority: number;
}

/**
 * The resolver function mailauth accepts as its `resolver` option: called as
 * `resolver(name, 'TXT' | 'A' | 'AAAA' | 'MX' | 'PTR')` and expected to behave like
 * node's dns.promises.resolve — TXT as arrays of character-strings, MX as {exchange, priority},
 * and a thrown error whose `code` is ENOTFOUND or ENODATA when there is no record (any other
 * code is a temporary error to mailauth).
 */
export type MailauthResolver = (name: string, rrtype: string) => Promise<unknown>;

export interface FeResolver {
  mx(name: string): Promise<MxRecord[]>;
  /** One string per TXT record, its character-strings joined. */
  txt(name: string): Promise<string[]>;
  a(name: string): Promise<string[]>;
  aaaa(name: string): Promise<string[]>;
  /** Names for an IP address (the in-addr.arpa / ip6.arpa name is built here). */
  ptr(ip: string): Promise<string[]>;
  mailauthResolver: MailauthResolver;
  /** DANE's lookups: the records and whether a validating resolver on loopback vouched for them (src/dns/dnssec.ts). */
  validated<K extends keyof DnssecTypes>(name: string, type: K): Promise<Validated<DnssecTypes[K]>>;
}

export interface ResolverOptions {
  /** 'host:port' or 'host'; defaults to the system's resolvers. */
  servers?: string[];
  /** Upper bound for one lookup, retries included. */
  timeoutMs?: number;
  /** Where answers are kept for their TTL (default: a cache of this resolver's own; false: none). */
  cache?: DnsCache | false;
}

const DEFAULT_TIMEOUT_MS = 5000;
const TRIES = 2;

export function reverseName(ip: string): string {
  const family = isIP(ip);
  if (family === 4) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  if (family === 6) {
    // A trailing dotted quad (::ffff:192.0.2.1) is the last two 16-bit groups.
    const text = ip.toLowerCase().replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
      [[a, b], [c, d]].map(([x, y]) => ((Number(x) << 8) | Number(y)).toString(16)).join(':'),
    );
    const [head = '', tail] = text.split('::');
    const groups = (s: string): string[] => (s ? s.split(':') : []);
    let parts = groups(head);
    if (tail !== undefined) {
      const t = groups(tail);
      parts = [...parts, ...new Array<string>(8 - parts.length - t.length).fill('0'), ...t];
    }
    const nibbles = parts.map((g) => g.padStart(4, '0')).join('');
    return `${nibbles.split('').reverse().join('.')}.ip6.arpa`;
  }
  throw new DnsLookupError('EBADNAME', ip, 'PTR');
}

export function createResolver(opts: ResolverOptions = {}): FeResolver {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // node's resolver only parses and checks the server list (and reads the system's when fe.yml
  // names none); the questions go out through src/dns/wire.ts, which sees the TTLs.
  const system = new Resolver();
  if (opts.servers && opts.servers.length > 0) system.setServers(opts.servers);
  const servers = system.getServers().map(parseServer);
  const cache = opts.cache === false ? null : (opts.cache ?? new DnsCache());
  // Two tries per server; the first gets a third of the budget, and the deadline in ask() bounds the whole.
  const tryMs = Math.max(50, Math.ceil(timeoutMs / 3));

  // Identical lookups in flight at once share one query (16 sessions checking the same sender
  // ask the same SPF, DKIM and DMARC names together).
  const inflight = new Map<string, Promise<unknown>>();
  function run<T>(hostname: string, rrtype: string, fn: () => Promise<T>, kind = 'plain'): Promise<T> {
    const key = `${kind} ${rrtype} ${hostname.toLowerCase()}`;
    const pending = inflight.get(key);
    if (pending) return pending as Promise<T>;
    const p = ask(hostname, rrtype, fn);
    inflight.set(key, p);
    const forget = () => inflight.delete(key);
    p.then(forget, forget);
    return p;
  }

  async function ask<T>(hostname: string, rrtype: string, fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DnsLookupError('ETIMEOUT', hostname, rrtype)), timeoutMs);
    });
    try {
      return await Promise.race([fn(), deadline]);
    } catch (err) {
      if (err instanceof DnsLookupError) throw err;
      const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'EUNKNOWN';
      throw new DnsLookupError(code, hostname, rrtype);
    } finally {
      clearTimeout(timer);
    }
  }

  const host = (name: string): string => name.replace(/\.$/, '');

  /** Records of `type` at `name` from the cache or the resolver; ENOTFOUND / ENODATA thrown as node throws them. */
  async function lookup<K extends AnswerType>(name: string, type: K): Promise<WireRecords[K][]> {
    const key = `${type} ${host(name).toLowerCase()}`;
    let answer = cache?.get<WireRecords[K]>(key);
    answer ??= await run(name, type, async () => {
      const a = await lookupWire(servers, host(name), type, { tryMs, tries: TRIES });
      const value: Cached<WireRecords[K]> = a.missing ? { records: [], missing: a.missing } : { records: a.records, missing: null };
      cache?.set(key, value, a.ttl);
      return value;
    });
    if (answer.missing) throw new DnsLookupError(answer.missing, name, type);
    // A copy: what a caller does with its list never changes what the next one is given.
    return answer.records.slice();
  }

  const api = {
    mx: async (name: string) => (await lookup(name, 'MX')).sort((x, y) => x.priority - y.priority),
    txt: async (name: string) => (await lookup(name, 'TXT')).map((chunks) => chunks.join('')),
    a: (name: string) => lookup(name, 'A'),
    aaaa: (name: string) => lookup(name, 'AAAA'),
    ptr: async (ip: string) => lookup(reverseName(ip), 'PTR'),
  };

  const mailauthResolver: MailauthResolver = async (name, rrtype) => {
    const type = rrtype.toUpperCase();
    try {
      switch (type) {
        case 'TXT':
          // mailauth joins the character-strings itself.
          return await lookup(name, 'TXT');
        case 'MX':
          return await api.mx(name);
        case 'A':
        case 'AAAA':
        case 'CNAME':
          return await lookup(name, type);
        case 'PTR':
          // mailauth passes the arpa name already.
          return await lookup(name, 'PTR');
        default:
          return await run(name, type, () => system.resolve(host(name), type as 'NS'));
      }
    } catch (err) {
      // A name that cannot even be asked has no records; to mailauth that is ENOTFOUND,
      // otherwise a junk DKIM selector would turn into a temporary error.
      if (err instanceof DnsLookupError && err.kind === 'badname') {
        throw new DnsLookupError('ENOTFOUND', name, type);
      }
      throw err;
    }
  };

  const validated = <K extends keyof DnssecTypes>(name: string, type: K) =>
    run(name, type, () => lookupValidated(servers, host(name), type, Math.max(100, Math.ceil(timeoutMs / 2))), 'dnssec');

  return { ...api, mailauthResolver, validated };
}
