// How much each mailbox has sent lately: sliding windows of an hour (messages) and a day
// (recipients), one set for both submission ports of a process.
//
// The counts are kept in a file under data_dir, so a restart (an upgrade, fe init again, a
// crash) does not give a stolen password a fresh allowance. The file names no mailbox: each is
// keyed by an HMAC with a server secret. It holds times only from the last day, is written at
// most once a second after a message (write-then-rename), and once more at stop.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';

const HOUR_MS = 3600_000;
const DAY_MS = 86_400_000;
const SAVE_DELAY_MS = 1000;

export interface SendCountsFile {
  file: string;
  /** HMAC key for the mailbox names in the file (a server secret). */
  key: Buffer;
  /** A file that cannot be read or written: the counts go on in memory. */
  onError: (message: string) => void;
}

interface Saved {
  v: 1;
  messages: Record<string, number[]>;
  recipients: Record<string, [number, number][]>;
}

export class SendLimits {
  private messages = new Map<string, number[]>();
  private recipients = new Map<string, { t: number; n: number }[]>();
  // Transactions under way (MAIL FROM given, DATA not finished): they count against the
  // allowance too, or parallel sessions would each pass the check before any had been recorded.
  private heldMessages = new Map<string, number>();
  private heldRecipients = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private now: () => number = Date.now,
    private store?: SendCountsFile,
  ) {
    if (store) this.load(store);
  }

  /** null when the mailbox may start another message, else the reason to give. */
  checkMessage(user: string, perHour: number): string | null {
    const t = this.now();
    const k = this.key(user);
    const list = (this.messages.get(k) ?? []).filter((x) => t - x < HOUR_MS);
    this.messages.set(k, list);
    const held = this.heldMessages.get(k) ?? 0;
    if (list.length + held < perHour) return null;
    return `4.7.1 ${user} has sent ${list.length} messages in the last hour${underWay(held, 'is', 'are')} (send_messages_per_hour is ${perHour}); try again later`;
  }

  /** null when `count` more recipients (beyond those held) fit today's allowance. */
  checkRecipients(user: string, count: number, perDay: number): string | null {
    const t = this.now();
    const k = this.key(user);
    const list = (this.recipients.get(k) ?? []).filter((x) => t - x.t < DAY_MS);
    this.recipients.set(k, list);
    const used = list.reduce((s, x) => s + x.n, 0);
    const held = this.heldRecipients.get(k) ?? 0;
    if (used + held + count <= perDay) return null;
    return `4.5.3 ${user} has sent to ${used} recipients in the last 24 hours${underWay(held, 'is', 'are')} (send_recipients_per_day is ${perDay}); try again later`;
  }

  /** A transaction starts (after checkMessage passed): it counts until release(). */
  hold(user: string): void {
    add(this.heldMessages, this.key(user), 1);
  }

  /** A recipient of a held transaction was accepted (after checkRecipients passed). */
  holdRecipient(user: string): void {
    add(this.heldRecipients, this.key(user), 1);
  }

  /** The transaction ended (message accepted or not, RSET, connection gone): its hold goes. */
  release(user: string, recipients: number): void {
    const k = this.key(user);
    add(this.heldMessages, k, -1);
    add(this.heldRecipients, k, -recipients);
  }

  /** Counts a message once it was accepted. */
  record(user: string, recipients: number): void {
    const t = this.now();
    const k = this.key(user);
    this.messages.set(k, [...(this.messages.get(k) ?? []), t]);
    this.recipients.set(k, [...(this.recipients.get(k) ?? []), { t, n: recipients }]);
    if (this.store && !this.timer) {
      this.timer = setTimeout(() => this.flush(), SAVE_DELAY_MS);
      this.timer.unref();
    }
  }

  /** Writes the counts now (at stop; otherwise a second after a message). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.store) return;
    const t = this.now();
    const saved: Saved = { v: 1, messages: {}, recipients: {} };
    for (const [k, list] of this.messages) {
      const kept = list.filter((x) => t - x < HOUR_MS);
      if (kept.length > 0) saved.messages[k] = kept;
      else this.messages.delete(k);
    }
    for (const [k, list] of this.recipients) {
      const kept = list.filter((x) => t - x.t < DAY_MS);
      if (kept.length > 0) saved.recipients[k] = kept.map((x) => [x.t, x.n]);
      else this.recipients.delete(k);
    }
    try {
      ensurePrivateDir(path.dirname(this.store.file));
      writeFileAtomic(this.store.file, JSON.stringify(saved));
    } catch (e) {
      this.store.onError(`could not save the sending counts to ${this.store.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }

  private key(user: string): string {
    return this.store ? createHmac('sha256', this.store.key).update(user).digest('base64url').slice(0, 22) : user;
  }

  private load(store: SendCountsFile): void {
    let raw: string;
    try {
      raw = readFileSync(store.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') store.onError(`could not read the sending counts in ${store.file} (${(e as NodeJS.ErrnoException).code}); counting from zero`);
      return;
    }
    const t = this.now();
    const times = (v: unknown): number[] => (Array.isArray(v) ? v.filter((x): x is number => Number.isFinite(x) && x <= t) : []);
    try {
      const saved = JSON.parse(raw) as Partial<Saved>;
      if (saved.v !== 1) throw new Error(`version ${String(saved.v)}`);
      for (const [k, list] of Object.entries(saved.messages ?? {})) {
        const kept = times(list).filter((x) => t - x < HOUR_MS);
        if (kept.length > 0) this.messages.set(k, kept);
      }
      for (const [k, list] of Object.entries(saved.recipients ?? {})) {
        if (!Array.isArray(list)) continue;
        const kept = list
          .filter((x): x is [number, number] => Array.isArray(x) && Number.isFinite(x[0]) && Number.isInteger(x[1]) && x[1] >= 0 && x[0] <= t && t - x[0] < DAY_MS)
          .map(([at, n]) => ({ t: at, n }));
        if (kept.length > 0) this.recipients.set(k, kept);
      }
    } catch (e) {
      store.onError(`the sending counts in ${store.file} are damaged (${(e as Error).message}); counting from zero`);
    }
  }
}

function add(map: Map<string, number>, k: string, n: number): void {
  const v = (map.get(k) ?? 0) + n;
  if (v > 0) map.set(k, v);
  else map.delete(k);
}

function underWay(n: number, one: string, more: string): string {
  return n === 0 ? '' : `, and ${n} more ${n === 1 ? one : more} under way`;
}
