// Sender Rewriting Scheme (Shevek's SRS, as in libsrs2) for forwarded mail: the envelope sender
// becomes an address at our domain so SPF passes at the next hop, and bounces to it can be
// routed back after checking our HMAC and the day stamp.
//
//   SRS0=HHHH=TT=orig-domain=orig-local@our-domain           (first forward)
//   SRS1=HHHH=first-forwarder==HHHH=TT=orig-domain=orig-local@our-domain   (re-forward of SRS0)
import { createHmac, timingSafeEqual } from 'node:crypto';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
// Two base32 characters hold 10 bits: the day number modulo 1024.
const STAMP_MODULO = 1024;
const DAY_MS = 86_400_000;
const HASH_LENGTH = 4;
const DEFAULT_MAX_AGE_DAYS = 21;
const SRS_PREFIX = /^SRS([01])([=+-])/i;

export interface SrsOptions {
  maxAgeDays?: number;
  /** Clock in ms since the epoch (tests move it). */
  now?: () => number;
}

export interface Srs {
  /** Rewrites a MAIL FROM address; '' (a bounce) and addresses already at our domain stay as they are. */
  forward(sender: string): string;
  /** The address a bounce to `address` should go to, or null if it is not a valid, fresh SRS address of ours. */
  reverse(address: string): string | null;
}

function splitAddress(address: string): { local: string; host: string } | null {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at), host: address.slice(at + 1) };
}

export function createSrs(secret: Buffer | Buffer[], domain: string, opts: SrsOptions = {}): Srs {
  // Several secrets allow rotation: the first signs, all verify.
  const secrets = Array.isArray(secret) ? secret : [secret];
  if (secrets.length === 0 || secrets.some((s) => s.length < 16)) throw new Error('SRS secret must be at least 16 bytes');
  const ourDomain = domain.toLowerCase().replace(/\.$/, '');
  const maxAgeDays = opts.maxAgeDays ?? DEFAULT_MAX_AGE_DAYS;
  const now = opts.now ?? Date.now;

  function hash(key: Buffer, parts: string[]): string {
    const h = createHmac('sha1', key);
    // Lower-cased, so that a relay that changes the case of the local part does not break it.
    for (const p of parts) h.update(p.toLowerCase(), 'utf8');
    return h.digest('base64').slice(0, HASH_LENGTH);
  }

  function hashOk(given: string, parts: string[]): boolean {
    if (given.length !== HASH_LENGTH) return false;
    // Case-insensitive: some MTAs lower-case local parts, and base64 is mixed-case.
    const a = Buffer.from(given.toUpperCase(), 'utf8');
    let ok = false;
    for (const key of secrets) {
      const b = Buffer.from(hash(key, parts).toUpperCase(), 'utf8');
      // Check every secret, without stopping early, so timing says nothing about which matched.
      if (a.length === b.length && timingSafeEqual(a, b)) ok = true;
    }
    return ok;
  }

  function today(): number {
    return Math.floor(now() / DAY_MS) % STAMP_MODULO;
  }

  function stamp(): string {
    const d = today();
    return BASE32[(d >> 5) & 31]! + BASE32[d & 31]!;
  }

  function stampFresh(ts: string): boolean {
    if (ts.length !== 2) return false;
    const hi = BASE32.indexOf(ts[0]!.toUpperCase());
    const lo = BASE32.indexOf(ts[1]!.toUpperCase());
    if (hi < 0 || lo < 0) return false;
    // Modular difference: a stamp "from the future" shows up as a very old one.
    const age = (today() - ((hi << 5) | lo) + STAMP_MODULO) % STAMP_MODULO;
    return age <= maxAgeDays;
  }

  const signer = secrets[0]!;

  return {
    forward(sender: string): string {
      if (sender === '') return '';
      const addr = splitAddress(sender);
      if (!addr) throw new Error('SRS needs an address with a domain');
      const { local, host } = addr;
      if (host.toLowerCase() === ourDomain) return sender;

      const m = SRS_PREFIX.exec(local);
      if (m && m[1] === '0') {
        // Re-forwarding someone's SRS0: keep it intact and record its host, signed by us.
        const srsUser = local.slice(4); // starts with the original separator
        return `SRS1=${hash(signer, [host, srsUser])}=${host}=${srsUser}@${ourDomain}`;
      }
      if (m && m[1] === '1') {
        // Re-forwarding an SRS1: the first forwarder and its SRS0 part stay, only the hash is ours.
        const rest = local.slice(5);
        const h = rest.indexOf('=');
        const s = h < 0 ? -1 : rest.indexOf('=', h + 1);
        if (s > h + 1) {
          const srsHost = rest.slice(h + 1, s);
          const srsUser = rest.slice(s + 1);
          return `SRS1=${hash(signer, [srsHost, srsUser])}=${srsHost}=${srsUser}@${ourDomain}`;
        }
        // Not parseable as SRS1: rewrite it like any other address.
      }
      const ts = stamp();
      return `SRS0=${hash(signer, [ts, host, local])}=${ts}=${host}=${local}@${ourDomain}`;
    },

    reverse(address: string): string | null {
      const addr = splitAddress(address);
      if (!addr || addr.host.toLowerCase().replace(/\.$/, '') !== ourDomain) return null;
      const m = SRS_PREFIX.exec(addr.local);
      if (!m) return null;
      const body = addr.local.slice(5);

      if (m[1] === '0') {
        // HHHH=TT=orig-domain=orig-local; the local part may itself contain '='.
        const i1 = body.indexOf('=');
        const i2 = i1 < 0 ? -1 : body.indexOf('=', i1 + 1);
        const i3 = i2 < 0 ? -1 : body.indexOf('=', i2 + 1);
        if (i3 < 0) return null;
        const h = body.slice(0, i1);
        const ts = body.slice(i1 + 1, i2);
        const host = body.slice(i2 + 1, i3);
        const local = body.slice(i3 + 1);
        if (!host || !local) return null;
        if (!hashOk(h, [ts, host, local])) return null;
        if (!stampFresh(ts)) return null;
        return `${local}@${host}`;
      }

      // SRS1: HHHH=first-forwarder=<sep>rest-of-SRS0
      const i1 = body.indexOf('=');
      const i2 = i1 < 0 ? -1 : body.indexOf('=', i1 + 1);
      if (i2 < 0) return null;
      const h = body.slice(0, i1);
      const srsHost = body.slice(i1 + 1, i2);
      const srsUser = body.slice(i2 + 1);
      if (!srsHost || !/^[=+-]/.test(srsUser)) return null;
      if (!hashOk(h, [srsHost, srsUser])) return null;
      // The first forwarder checks its own SRS0 hash and age.
      return `SRS0${srsUser}@${srsHost}`;
    },
  };
}
