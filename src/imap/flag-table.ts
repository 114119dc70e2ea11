// What a session last told its client about each message's flags, kept compact: a sorted
// Uint32Array of UIDs beside an array of small ids into this table's own list of distinct flag
// strings (a mailbox has a handful of flag combinations, not one per message). A Map of 10,000
// UIDs to strings costs each selected session ~0.5 MB; this costs ~60 KB, so 500 sessions idling
// on a big INBOX stay small. The interface is the subset of Map the session uses.

const GONE = 0; // id 0: deleted (kept in place until enough accumulate to compact)

export class FlagTable {
  private uids = new Uint32Array(0);
  private ids: Uint16Array | Uint32Array = new Uint16Array(0);
  private n = 0; // slots in use (live and deleted)
  private dead = 0;
  private names: string[] = ['']; // id -> flags; index 0 unused (GONE)
  private index = new Map<string, number>(); // flags -> id

  /** From (uid, flags) pairs; UIDs in any order. */
  static from(entries: Iterable<readonly [number, string]>): FlagTable {
    const list = [...entries].sort((a, b) => a[0] - b[0]);
    const t = new FlagTable();
    t.grow(list.length);
    for (const [uid, flags] of list) {
      if (t.n > 0 && t.uids[t.n - 1] === uid) {
        t.ids[t.n - 1] = t.idOf(flags); // a repeated UID: the last one wins, as with a Map
        continue;
      }
      t.uids[t.n] = uid;
      t.ids[t.n++] = t.idOf(flags);
    }
    return t;
  }

  private idOf(flags: string): number {
    let id = this.index.get(flags);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(flags);
      this.index.set(flags, id);
      if (id > 0xffff && this.ids instanceof Uint16Array) this.ids = Uint32Array.from(this.ids);
    }
    return id;
  }

  private grow(min: number): void {
    if (min <= this.uids.length) return;
    const size = Math.max(min, this.uids.length + Math.ceil(this.uids.length / 8), 16); // mail arrives a few at a time
    const uids = new Uint32Array(size);
    uids.set(this.uids.subarray(0, this.n));
    const ids = this.ids instanceof Uint16Array ? new Uint16Array(size) : new Uint32Array(size);
    ids.set(this.ids.subarray(0, this.n));
    this.uids = uids;
    this.ids = ids;
  }

  /** The slot of `uid`, or -(insertion point) - 1. */
  private find(uid: number): number {
    let lo = 0;
    let hi = this.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const u = this.uids[mid]!;
      if (u === uid) return mid;
      if (u < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return -lo - 1;
  }

  has(uid: number): boolean {
    const i = this.find(uid);
    return i >= 0 && this.ids[i] !== GONE;
  }

  get(uid: number): string | undefined {
    const i = this.find(uid);
    return i >= 0 && this.ids[i] !== GONE ? this.names[this.ids[i]!] : undefined;
  }

  set(uid: number, flags: string): this {
    const id = this.idOf(flags);
    let i = this.find(uid);
    if (i >= 0) {
      if (this.ids[i] === GONE) this.dead--;
      this.ids[i] = id;
      return this;
    }
    i = -i - 1;
    this.grow(this.n + 1);
    if (i < this.n) {
      // new mail has the highest UIDs, so this shift is rare
      this.uids.copyWithin(i + 1, i, this.n);
      this.ids.copyWithin(i + 1, i, this.n);
    }
    this.uids[i] = uid;
    this.ids[i] = id;
    this.n++;
    return this;
  }

  delete(uid: number): boolean {
    const i = this.find(uid);
    if (i < 0 || this.ids[i] === GONE) return false;
    this.ids[i] = GONE;
    if (++this.dead > 64 && this.dead * 2 > this.n) this.compact();
    return true;
  }

  get size(): number {
    return this.n - this.dead;
  }

  private compact(): void {
    let w = 0;
    for (let r = 0; r < this.n; r++) {
      if (this.ids[r] === GONE) continue;
      this.uids[w] = this.uids[r]!;
      this.ids[w++] = this.ids[r]!;
    }
    this.n = w;
    this.dead = 0;
  }
}
