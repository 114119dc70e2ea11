// FETCH responses of many messages gathered into few large writes: one socket write (and one
// backpressure check) per ~64 KiB instead of per message.

/** FETCH responses gathered into writes of about `size` bytes. */
export class FetchChunk {
  private parts: (string | Buffer)[] = [];
  private bytes = 0;
  private strings = true;

  constructor(
    private readonly write: (b: Buffer) => void,
    private readonly size = 64 * 1024,
  ) {}

  /** Adds one response; true when a write went out (the caller then waits for backpressure). */
  add(head: string, body: readonly (string | Buffer)[], tail: string): boolean {
    this.parts.push(head);
    for (const p of body) {
      this.parts.push(p);
      if (typeof p === 'string') this.bytes += p.length;
      else {
        this.bytes += p.length;
        this.strings = false;
      }
    }
    this.parts.push(tail);
    this.bytes += head.length + tail.length;
    if (this.bytes < this.size) return false;
    this.end();
    return true;
  }

  end(): void {
    if (this.parts.length === 0) return;
    const parts = this.parts;
    this.write(this.strings ? Buffer.from(parts.join(''), 'utf8') : Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p))));
    this.parts = [];
    this.bytes = 0;
    this.strings = true;
  }
}
