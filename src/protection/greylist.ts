// Greylisting: the first message of an unknown (client network, sender, recipient) triplet is
// answered 451; a retry after `delay` (default 5 minutes) passes, and the triplet is then known
// for 36 days. Real MTAs retry, most spam cannons do not. Senders that pass DMARC are not
// delayed. The state is a small file under the data directory holding hashes, not addresses.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';
import type { LayerVerdict, ProtectionLayer, ScanInput } from './layer.js';

export interface GreylistOptions {
  dataDir: string;
  /** Seconds a triplet must wait before its retry passes. */
  delaySeconds: number;
  /** For tests: the clock. */
  now?: () => number;
}

/** A first attempt not retried within this long is forgotten. */
const RETRY_WINDOW_MS = 24 * 3600_000;
/** A triplet that passed stays known this long after its last message. */
const KNOWN_FOR_MS = 36 * 86400_000;
/** Bound on the file: the oldest entries go first. */
const MAX_ENTRIES = 100_000;

interface Entry {
  /** First attempt (ms). */
  first: number;
  /** Last message that passed (ms), 0 while still waiting. */
  passed: number;
}

/** The client's network: /24 for IPv4 (pools of outbound servers), /64 for IPv6. */
export function clientNetwork(ip: string): string {
  const v4 = ip.replace(/^::ffff:/i, '');
  if (isIPv4(v4)) return v4.split('.').slice(0, 3).join('.') + '.0/24';
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const groups = head ? head.split(':') : [];
  const rest = tail ? tail.split(':') : [];
  const full = [...groups, ...new Array<string>(Math.max(0, 8 - groups.length - rest.length)).fill('0'), ...rest];
  return full.slice(0, 4).map((g) => g.padStart(4, '0')).join(':') + '::/64';
}

function key(ip: string, sender: string, rcpt: string): string {
  return createHash('sha256').update(`${clientNetwork(ip)}\0${sender.toLowerCase()}\0${rcpt.toLowerCase()}`).digest('base64url').slice(0, 22);
}

class GreylistStore {
  private entries = new Map<string, Entry>();

  constructor(private file: string) {
    if (!existsSync(file)) return;
    try {
      const data = JSON.parse(readFileSync(file, 'utf8')) as Record<string, [number, number]>;
      for (const [k, [first, passed]] of Object.entries(data)) this.entries.set(k, { first, passed });
    } catch {
      // a damaged state file only means some senders wait once more
    }
  }

  /** 'pass' or the seconds still to wait. */
  check(keys: string[], now: number, delayMs: number): 'pass' | number {
    let wait = 0;
    let changed = false;
    for (const k of keys) {
      const e = this.entries.get(k);
      if (e && e.passed > 0 && now - e.passed < KNOWN_FOR_MS) {
        e.passed = now;
        changed = true;
        continue;
      }
      if (e && e.passed === 0 && now - e.first < RETRY_WINDOW_MS) {
        if (now - e.first >= delayMs) {
          e.passed = now;
          changed = true;
        } else wait = Math.max(wait, delayMs - (now - e.first));
        continue;
      }
      this.entries.set(k, { first: now, passed: 0 });
      changed = true;
      wait = Math.max(wait, delayMs);
    }
    if (changed) this.save(now);
    return wait > 0 ? Math.ceil(wait / 1000) : 'pass';
  }

  private save(now: number): void {
    for (const [k, e] of this.entries) {
      if (e.passed > 0 ? now - e.passed >= KNOWN_FOR_MS : now - e.first >= RETRY_WINDOW_MS) this.entries.delete(k);
    }
    // Map keeps insertion order: the first ones are the oldest
    for (const k of this.entries.keys()) {
      if (this.entries.size <= MAX_ENTRIES) break;
      this.entries.delete(k);
    }
    const out: Record<string, [number, number]> = {};
    for (const [k, e] of this.entries) out[k] = [e.first, e.passed];
    ensurePrivateDir(path.dirname(this.file));
    writeFileAtomic(this.file, JSON.stringify(out), 0o600);
  }
}

// one store per data directory for the daemon's life (layers are built per message)
const stores = new Map<string, GreylistStore>();

export function greylistLayer(opts: GreylistOptions): ProtectionLayer {
  const file = path.join(opts.dataDir, 'protection', 'greylist.json');
  return {
    name: 'greylist',
    async scan(input: ScanInput): Promise<LayerVerdict> {
      if (input.auth.dmarc.result === 'pass') return { layer: 'greylist', action: 'accept', symbols: ['DMARC_PASS'] };
      let store = stores.get(file);
      if (!store) stores.set(file, (store = new GreylistStore(file)));
      const keys = input.rcptTo.map((r) => key(input.clientIp, input.mailFrom, r));
      const r = store.check(keys, (opts.now ?? Date.now)(), opts.delaySeconds * 1000);
      if (r === 'pass') return { layer: 'greylist', action: 'accept' };
      return { layer: 'greylist', action: 'defer', code: 451, reply: `4.7.1 Greylisted: please try again in ${r} seconds`, symbols: ['GREYLISTED'] };
    },
  };
}
