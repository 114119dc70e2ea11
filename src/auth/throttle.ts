// Brute-force protection for logins (IMAP, POP3, submission): failures from one address are
// answered ever more slowly, and past a limit refused outright for a while.
export interface ThrottleOptions {
  windowMs?: number; // failures older than this are forgotten
  delayAfter?: number; // failures before answers slow down
  delayStepMs?: number; // added per failure beyond delayAfter
  maxDelayMs?: number;
  blockAfter?: number; // failures in the window that block the address
  blockMs?: number;
  now?: () => number;
}

export class LoginThrottle {
  private failures = new Map<string, number[]>();
  private blocked = new Map<string, number>(); // ip -> until
  private o: Required<ThrottleOptions>;

  constructor(opts: ThrottleOptions = {}) {
    this.o = { windowMs: 15 * 60_000, delayAfter: 3, delayStepMs: 1000, maxDelayMs: 5000, blockAfter: 10, blockMs: 15 * 60_000, now: Date.now, ...opts };
  }

  private recent(ip: string): number[] {
    const now = this.o.now();
    const list = (this.failures.get(ip) ?? []).filter((t) => now - t < this.o.windowMs);
    if (list.length > 0) this.failures.set(ip, list);
    else this.failures.delete(ip);
    return list;
  }

  /** Before checking a password: whether to try at all, and how long to wait before answering. */
  check(ip: string): { allowed: true; delayMs: number } | { allowed: false; retryAfterMs: number } {
    const until = this.blocked.get(ip);
    const now = this.o.now();
    if (until !== undefined) {
      if (until > now) return { allowed: false, retryAfterMs: until - now };
      this.blocked.delete(ip);
    }
    const n = this.recent(ip).length;
    return { allowed: true, delayMs: n < this.o.delayAfter ? 0 : Math.min(this.o.maxDelayMs, (n - this.o.delayAfter + 1) * this.o.delayStepMs) };
  }

  failure(ip: string): void {
    const list = this.recent(ip);
    list.push(this.o.now());
    this.failures.set(ip, list);
    if (list.length >= this.o.blockAfter) this.blocked.set(ip, this.o.now() + this.o.blockMs);
  }

  success(ip: string): void {
    this.failures.delete(ip);
  }
}
