// Admission of new connections to one daemon: a global cap, a share per /24 (IPv4) or /64
// (IPv6), and the last tenth of the cap kept for networks that hold no connection yet, so
// a flood from a few networks (or many addresses in one) cannot lock everyone else out.
import { prefixOf } from '../auth/throttle.js';

export interface GateLimits {
  /** Connections this daemon holds at once. */
  maxConnections: number;
  /** Connections one /24 or /64 may hold. */
  perPrefix: number;
}

export type Admission = { ok: true; release: () => void } | { ok: false; reason: 'full' | 'prefix'; limit: number };

export class ConnectionGate {
  private total = 0;
  private readonly byPrefix = new Map<string, number>();

  /** `limits` is read at each connection, so SIGHUP changes it. */
  constructor(private readonly limits: () => GateLimits) {}

  get size(): number {
    return this.total;
  }

  admit(ip: string): Admission {
    const { maxConnections, perPrefix } = this.limits();
    const prefix = prefixOf(ip) || ip;
    const held = this.byPrefix.get(prefix) ?? 0;
    if (held >= perPrefix) return { ok: false, reason: 'prefix', limit: perPrefix };
    const reserve = Math.ceil(maxConnections / 10);
    // the reserve admits only networks with no connection yet: new addresses still get in
    if (this.total >= maxConnections || (this.total >= maxConnections - reserve && held > 0)) return { ok: false, reason: 'full', limit: maxConnections };
    this.total++;
    this.byPrefix.set(prefix, held + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const left = (this.byPrefix.get(prefix) ?? 1) - 1;
        if (left <= 0) this.byPrefix.delete(prefix);
        else this.byPrefix.set(prefix, left);
      },
    };
  }
}
