// Brute-force and flood protection for logins (IMAP, POP3, submission). Failures from one address,
// and from its /24 (IPv4) or /64 (IPv6), are answered ever more slowly and past a limit refused
// for a while. An attempt counts from the moment it starts, so parallel logins cannot all slip
// under the limit. Password checks (scrypt, ~32 MiB and ~65 ms of CPU each) run a few at a time;
// waiting ones whose client has gone are dropped, and addresses that logged in before wait in
// their own lane, ahead of strangers.
import net from 'node:net';
import { availableParallelism } from 'node:os';

/**
 * Password checks at once by default: one per core, but never all of libuv's thread pool (async
 * scrypt runs there, beside file I/O): at least 2, at most the pool's size less one.
 */
export function defaultCheckConcurrency(cores = availableParallelism(), pool = Number(process.env.UV_THREADPOOL_SIZE) || 4): number {
  return Math.max(2, Math.min(cores, pool - 1));
}

export interface ThrottleOptions {
  windowMs?: number; // failures older than this are forgotten
  delayAfter?: number; // failures before answers slow down
  delayStepMs?: number; // added per failure beyond delayAfter
  maxDelayMs?: number;
  blockAfter?: number; // failures in the window that block the address
  blockMs?: number;
  /** Failures in the window that block a whole /24 or /64 (addresses that logged in before are exempt). */
  prefixBlockAfter?: number;
  /** Password checks running at once. */
  concurrency?: number;
  /** Attempts waiting for a check, per lane, before new ones are told to come back later. */
  maxQueued?: number;
  /** How long a successful login makes its address known-good. */
  knownGoodMs?: number;
  now?: () => number;
}

export type LoginOutcome<T> =
  | { kind: 'ok'; value: T }
  | { kind: 'failed' }
  /** Too many failures: refused without checking. */
  | { kind: 'blocked'; retryAfterMs: number }
  /** Too many checks waiting (or in flight for this address): refused without checking; try again soon. */
  | { kind: 'busy' }
  /** The client left before its turn: nothing was checked. */
  | { kind: 'gone' };

const MAX_TRACKED = 100_000; // addresses and prefixes remembered, oldest forgotten first

/** The /24 of an IPv4 address or the /64 of an IPv6 one ("" when neither). */
export function prefixOf(ip: string): string {
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (net.isIPv4(v4)) return v4.split('.').slice(0, 3).join('.') + '.0/24';
  if (!net.isIPv6(ip)) return '';
  // expand "::" to get the first four groups
  const [head, tail = ''] = ip.split('::') as [string, string?];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':') + '::/64';
}

interface Waiter {
  alive: () => boolean;
  start: () => void;
  gone: () => void;
}

export class LoginThrottle {
  private failures = new Map<string, number[]>(); // address or prefix -> failure times
  private blocked = new Map<string, number>(); // address or prefix -> until
  private inflight = new Map<string, number>(); // address -> attempts started, not finished
  private knownGood = new Map<string, number>(); // address -> last successful login
  private running = 0;
  private lanes: { good: Waiter[]; other: Waiter[] } = { good: [], other: [] };
  private o: Required<ThrottleOptions>;

  constructor(opts: ThrottleOptions = {}) {
    this.o = {
      windowMs: 15 * 60_000,
      delayAfter: 3,
      delayStepMs: 1000,
      maxDelayMs: 5000,
      blockAfter: 10,
      blockMs: 15 * 60_000,
      prefixBlockAfter: 50,
      concurrency: defaultCheckConcurrency(),
      maxQueued: 64,
      knownGoodMs: 30 * 24 * 3600_000,
      now: Date.now,
      ...opts,
    };
  }

  private recent(key: string): number[] {
    const now = this.o.now();
    const list = (this.failures.get(key) ?? []).filter((t) => now - t < this.o.windowMs);
    if (list.length > 0) this.failures.set(key, list);
    else this.failures.delete(key);
    return list;
  }

  private isKnownGood(ip: string): boolean {
    const t = this.knownGood.get(ip);
    return t !== undefined && this.o.now() - t < this.o.knownGoodMs;
  }

  private blockedFor(key: string): number {
    const until = this.blocked.get(key);
    if (until === undefined) return 0;
    const left = until - this.o.now();
    if (left > 0) return left;
    this.blocked.delete(key);
    return 0;
  }

  /** Whether an attempt from `ip` would be tried now, and after what delay (attempts in flight count as failures). */
  check(ip: string): { allowed: true; delayMs: number } | { allowed: false; retryAfterMs: number; busy: boolean } {
    const prefix = prefixOf(ip);
    const blockedMs = Math.max(this.blockedFor(ip), this.isKnownGood(ip) || !prefix ? 0 : this.blockedFor(prefix));
    if (blockedMs > 0) return { allowed: false, retryAfterMs: blockedMs, busy: false };
    // Attempts in flight count as failures until they end: fifty at once see each other. Not for
    // an address that logged in before: a client opening many connections at once (a mail app's
    // parallel sessions, a NAT of users) would be slowed and refused for its own logins. Its
    // failures still count once they end, so guesses from it are blocked as from any other.
    const inflight = this.isKnownGood(ip) ? 0 : (this.inflight.get(ip) ?? 0);
    const n = this.recent(ip).length + inflight;
    if (inflight > 0 && n >= this.o.blockAfter) return { allowed: false, retryAfterMs: 1000, busy: true };
    return { allowed: true, delayMs: n < this.o.delayAfter ? 0 : Math.min(this.o.maxDelayMs, (n - this.o.delayAfter + 1) * this.o.delayStepMs) };
  }

  /**
   * Runs one login attempt from `ip`: `check` resolves with the account (or null for bad
   * credentials); `alive` tells whether the client is still connected. `quick`, when given, is
   * tried first, after the same gate and delay: a non-null answer (an in-memory verifier's hit)
   * needs no password-check slot; null falls through to `check`, so a miss costs what it did.
   */
  async login<T>(ip: string, alive: () => boolean, check: () => Promise<T | null>, quick?: () => T | null): Promise<LoginOutcome<T>> {
    const gate = this.check(ip);
    if (!gate.allowed) return gate.busy ? { kind: 'busy' } : { kind: 'blocked', retryAfterMs: gate.retryAfterMs };
    const good = this.isKnownGood(ip);
    const pending = this.inflight.get(ip) ?? 0;
    this.inflight.set(ip, pending + 1);
    try {
      if (gate.delayMs > 0) await new Promise((r) => setTimeout(r, gate.delayMs));
      if (!alive()) {
        this.failure(ip); // an abandoned guess still counts
        return { kind: 'gone' };
      }
      const known = quick?.() ?? null;
      if (known !== null) {
        this.success(ip);
        return { kind: 'ok', value: known };
      }
      if (!(await this.slot(good, alive))) {
        this.failure(ip);
        return { kind: alive() ? 'busy' : 'gone' };
      }
      let value: T | null;
      try {
        value = await check();
      } finally {
        this.release();
      }
      if (value === null) {
        this.failure(ip);
        return { kind: 'failed' };
      }
      this.success(ip);
      return { kind: 'ok', value };
    } finally {
      const left = (this.inflight.get(ip) ?? 1) - 1;
      if (left <= 0) this.inflight.delete(ip);
      else this.inflight.set(ip, left);
    }
  }

  /** Waits for a free password check; false when the lane is full or the client left meanwhile. */
  private slot(good: boolean, alive: () => boolean): Promise<boolean> {
    if (this.running < this.o.concurrency) {
      this.running++;
      return Promise.resolve(true);
    }
    const lane = good ? this.lanes.good : this.lanes.other;
    if (lane.length >= this.o.maxQueued) {
      // drop the dead before refusing a live one
      for (let i = lane.length - 1; i >= 0; i--) if (!lane[i]!.alive()) lane.splice(i, 1)[0]!.gone();
      if (lane.length >= this.o.maxQueued) return Promise.resolve(false);
    }
    return new Promise((resolve) => lane.push({ alive, start: () => resolve(true), gone: () => resolve(false) }));
  }

  private release(): void {
    this.running--;
    for (;;) {
      const next = this.lanes.good.shift() ?? this.lanes.other.shift();
      if (!next) return;
      if (!next.alive()) {
        next.gone(); // its client hung up while waiting: no check for nobody
        continue;
      }
      this.running++;
      next.start();
      return;
    }
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key); // re-insert: the Map's order is oldest first
    map.set(key, value);
    if (map.size > MAX_TRACKED) map.delete(map.keys().next().value!);
  }

  /** Counts a failed login from `ip` (login() does this itself). */
  failure(ip: string): void {
    for (const [key, limit] of [[ip, this.o.blockAfter], [prefixOf(ip), this.o.prefixBlockAfter]] as const) {
      if (!key) continue;
      const list = this.recent(key);
      list.push(this.o.now());
      this.remember(this.failures, key, list);
      if (list.length >= limit) this.remember(this.blocked, key, this.o.now() + this.o.blockMs);
    }
  }

  /** Forgives `ip` its failures and marks it known-good (login() does this itself). */
  success(ip: string): void {
    this.failures.delete(ip);
    this.remember(this.knownGood, ip, this.o.now());
  }
}
