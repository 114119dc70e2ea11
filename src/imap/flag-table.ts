// What a selected session knows of its folder, kept compact: the UIDs it has told the client of,
// ascending (so slot i is sequence number i + 1), in a Uint32Array, beside small ids into this
// table's own list of distinct flag strings (a folder has a handful of flag combinations, not one
// per message). A number[] of 10,000 UIDs plus a Map of them to strings cost each session ~0.6 MB;
// this costs ~60 KB, so 500 sessions idling on a big INBOX stay small. The flag lookups are the
// subset of Map the session uses; uidView() is the sequence -> UID list without a copy.

export class FlagTable {
  static readonly HEADROOM = 64;
  private uids = new Uint32Array(0);
  private ids: Uint16Array | Uint32Array = new Uint16Array(0);
  private n = 0;
  private names: string[] = []; // id -> flags
  private index = new Map<string, number>(); // flags -> id

  /** From (uid, flags) pairs; UIDs in any order. */
  static from(entries: Iterable<readonly [number, string]>): FlagTable {
    let list = Array.isArray(entries) ? (entries as (readonly [number, string])[]) : [...entries];
    // the store gives UIDs ascending: sort (a copy) only when they are not
    if (list.some((e, i) => i > 0 && e[0] < list[i - 1]![0])) list = [...list].sort((a, b) => a[0] - b[0]);
    const t = new FlagTable();
    // Room for a little new mail: else the first message to arrive copies the whole table, in
    // every session idling on the folder at once.
    t.grow(list.length + FlagTable.HEADROOM);
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

  /**
   * The UIDs in order, sharing this table's memory: valid until the next set() of a new UID or
   * delete(), after which the caller takes a new view.
   */
  uidView(): Uint32Array {
    return this.uids.subarray(0, this.n);
  }

  /** Per slot, the id of its flags (flagsOf): a caller can judge each distinct flag string once. */
  idView(): Uint16Array | Uint32Array {
    return this.ids.subarray(0, this.n);
  }

  flagsOf(id: number): string {
    return this.names[id]!;
  }

  /** How many distinct flag strings the ids run over. */
  get distinct(): number {
    return this.names.length;
  }

  has(uid: number): boolean {
    return this.find(uid) >= 0;
  }

  get(uid: number): string | undefined {
    const i = this.find(uid);
    return i >= 0 ? this.names[this.ids[i]!] : undefined;
  }

  set(uid: number, flags: string): this {
    const id = this.idOf(flags);
    let i = this.find(uid);
    if (i >= 0) {
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

  /** Removes `uid`; the slots above it move down one (their sequence numbers drop by one). */
  delete(uid: number): boolean {
    const i = this.find(uid);
    if (i < 0) return false;
    this.uids.copyWithin(i, i + 1, this.n);
    this.ids.copyWithin(i, i + 1, this.n);
    this.n--;
    return true;
  }

  get size(): number {
    return this.n;
  }
}
