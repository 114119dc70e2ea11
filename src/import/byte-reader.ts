// Pull-based reading of a byte stream by lines and by counts, holding at most one line (or the
// bytes asked for) in memory: a 100 MB line is counted and dropped, never buffered whole.

export interface Line {
  data: Buffer | null; // null when the line was longer than the limit (it was consumed and dropped)
  length: number; // its length including the LF
  newline: boolean; // false only for a last line that ends without LF (a cut-off file)
}

export class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private done = false;
  private readonly it: AsyncIterator<Buffer>;
  /** Bytes consumed so far. */
  offset = 0;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    const inner = source[Symbol.asyncIterator]();
    this.it = {
      next: async () => {
        const r = await inner.next();
        if (r.done) return { done: true, value: undefined };
        const v = r.value;
        return { done: false, value: typeof v === 'string' ? Buffer.from(v) : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength) };
      },
    };
  }

  /** Moves on to the next chunk once the current one is used up; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    if (this.done) return false;
    for (;;) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      if (r.value.length === 0) continue;
      this.buf = r.value;
      this.pos = 0;
      return true;
    }
  }

  /** The next line (with its LF), or null at the end. Lines over `max` bytes come back with data null. */
  async line(max: number): Promise<Line | null> {
    const parts: Buffer[] = [];
    let length = 0;
    let dropping = false;
    for (;;) {
      if (this.pos >= this.buf.length && !(await this.fill())) {
        if (length === 0) return null;
        this.offset += length;
        return { data: dropping ? null : Buffer.concat(parts), length, newline: false };
      }
      const nl = this.buf.indexOf(0x0a, this.pos);
      const end = nl === -1 ? this.buf.length : nl + 1;
      const piece = this.buf.subarray(this.pos, end);
      this.pos = end;
      length += piece.length;
      if (!dropping) {
        if (length > max) {
          dropping = true;
          parts.length = 0;
        } else parts.push(piece);
      }
      if (nl !== -1) {
        this.offset += length;
        return { data: dropping ? null : parts.length === 1 ? parts[0]! : Buffer.concat(parts), length, newline: true };
      }
    }
  }

  /** Exactly `n` bytes (fewer at the end of the stream); when n > max they are consumed and dropped (data null). */
  async bytes(n: number, max: number): Promise<{ data: Buffer | null; length: number }> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      if (this.pos >= this.buf.length && !(await this.fill())) break;
      const take = Math.min(n - got, this.buf.length - this.pos);
      if (n <= max) parts.push(this.buf.subarray(this.pos, this.pos + take));
      this.pos += take;
      got += take;
    }
    this.offset += got;
    return { data: n <= max ? Buffer.concat(parts) : null, length: got };
  }
}
