// Answers kept for as long as their TTL says, no longer: node's resolver keeps nothing, so every
// message would otherwise ask the same SPF, DKIM and DMARC names again (a round trip each).
// "No such name / record" is kept for its SOA's negative TTL (RFC 2308); failures (SERVFAIL,
// timeouts) are never kept, so a resolver that recovers is asked again at once.

export interface CacheOptions {
  /** Most answers kept; the least recently used goes first. */
  maxEntries?: number;
  /** Upper bound on any TTL, in seconds: a record changed at its source is seen within this. */
  maxTtl?: number;
  /** Upper bound on negative TTLs, in seconds. */
  maxNegativeTtl?: number;
  /** Milliseconds since the epoch (tests move it). */
  now?: () => number;
}

export type Cached<T> = { records: T[]; missing: null } | { records: []; missing: 'ENOTFOUND' | 'ENODATA' };

interface Entry {
  expires: number;
  value: Cached<unknown>;
}

export const DEFAULT_MAX_ENTRIES = 5000;
export const DEFAULT_MAX_TTL = 3600;
export const DEFAULT_MAX_NEGATIVE_TTL = 900;

export class DnsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly now: () => number;

  constructor(opts: CacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.maxTtl = opts.maxTtl ?? DEFAULT_MAX_TTL;
    this.maxNegativeTtl = opts.maxNegativeTtl ?? DEFAULT_MAX_NEGATIVE_TTL;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  get<T>(key: string): Cached<T> | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    // Map order is insertion order: moving a hit to the end keeps the oldest-used first.
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.value as Cached<T>;
  }

  /** Keeps `value` for `ttl` seconds (capped); a TTL of 0 keeps nothing. */
  set<T>(key: string, value: Cached<T>, ttl: number): void {
    const seconds = Math.min(ttl, value.missing ? this.maxNegativeTtl : this.maxTtl);
    if (!(seconds > 0) || this.maxEntries <= 0) return;
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    this.entries.set(key, { expires: this.now() + seconds * 1000, value });
  }

  clear(): void {
    this.entries.clear();
  }
}
