// A small POSIX tar (pax interchange format) writer and reader: backups decrypt to a plain tar
// that GNU tar or bsdtar can list and extract, so an owner never needs fe to get their data out.
// Only regular files and directories are written; the reader accepts what this writer makes
// plus the pax/GNU variations other tools produce for those two types.

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK);

export interface TarEntryHeader {
  path: string; // relative, '/'-separated, no '..'
  type: 'file' | 'dir';
  size: number; // 0 for directories
  mode: number; // permission bits
  mtime: number; // seconds since the epoch
}

export class TarError extends Error {}

function octal(value: number, width: number): string {
  // width includes the terminating NUL
  const s = Math.trunc(value).toString(8);
  if (s.length > width - 1) throw new TarError(`value ${value} does not fit a ${width}-byte tar field`);
  return s.padStart(width - 1, '0') + '\0';
}

function paxRecord(key: string, value: string): string {
  // "LEN key=value\n" where LEN counts itself: grow until the digits settle.
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body);
  for (;;) {
    const total = len + String(len).length;
    if (String(total).length === String(len).length) return `${total}${body}`;
    len = total;
  }
}

function splitUstarPath(p: string): { name: string; prefix: string } | null {
  if (Buffer.byteLength(p) <= 100) return { name: p, prefix: '' };
  // Split at a '/' so that prefix <= 155 bytes and name <= 100 bytes.
  for (let i = p.length - 1; i > 0; i--) {
    if (p[i] !== '/') continue;
    const prefix = p.slice(0, i);
    const name = p.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name.length > 0) return { name, prefix };
  }
  return null;
}

function rawHeader(fields: { name: string; prefix: string; mode: number; size: number; mtime: number; typeflag: string }): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(fields.name, 0, 100, 'utf8');
  h.write(octal(fields.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid: ownership is the restorer's business
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(fields.size, 12), 124, 'ascii');
  h.write(octal(fields.mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum is computed over spaces here
  h.write(fields.typeflag, 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  h.write(fields.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? Buffer.alloc(0) : ZEROS.subarray(0, BLOCK - rest);
}

/** The header block(s) for one entry: a pax 'x' header first when the path or size needs it. */
export function entryHeader(e: TarEntryHeader): Buffer {
  checkEntryPath(e.path);
  const p = e.type === 'dir' ? `${e.path}/` : e.path;
  const split = splitUstarPath(p);
  const bigSize = e.size > 0o77777777777;
  const blocks: Buffer[] = [];
  if (!split || bigSize) {
    let records = '';
    if (!split) records += paxRecord('path', p);
    if (bigSize) records += paxRecord('size', String(e.size));
    const body = Buffer.from(records, 'utf8');
    blocks.push(rawHeader({ name: 'PaxHeader', prefix: '', mode: 0o644, size: body.length, mtime: e.mtime, typeflag: 'x' }), body, padding(body.length));
  }
  const fallback = split ?? { name: p.slice(-99), prefix: '' };
  blocks.push(rawHeader({ ...fallback, mode: e.mode, size: bigSize ? 0 : e.size, mtime: e.mtime, typeflag: e.type === 'dir' ? '5' : '0' }));
  return Buffer.concat(blocks);
}

/** Two zero blocks end an archive. */
export function endOfArchive(): Buffer {
  return Buffer.alloc(BLOCK * 2);
}

/** Archive paths are relative and never climb out of where they are extracted. */
export function checkEntryPath(p: string): void {
  if (p.length === 0 || p.startsWith('/') || p.includes('\0') || p.split('/').some((s) => s === '..' || s === '' || s === '.')) {
    throw new TarError(`unsafe path in archive: ${JSON.stringify(p)}`);
  }
}

function field(h: Buffer, off: number, len: number): string {
  const end = h.indexOf(0, off);
  return h.toString('utf8', off, end === -1 || end > off + len ? off + len : end);
}

function parseNumber(h: Buffer, off: number, len: number, what: string): number {
  if (h[off]! & 0x80) {
    // GNU base-256 for big values
    let n = 0;
    for (let i = off + 1; i < off + len; i++) n = n * 256 + h[i]!;
    return n;
  }
  const s = field(h, off, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`bad ${what} field in tar header`);
  return parseInt(s, 8);
}

function parsePax(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    if (sp === -1) throw new TarError('bad pax header');
    const len = Number(body.toString('ascii', i, sp));
    if (!Number.isInteger(len) || len <= 0 || i + len > body.length) throw new TarError('bad pax record length');
    const rec = body.toString('utf8', sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq === -1) throw new TarError('bad pax record');
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/** Pulls exact byte counts out of a chunked stream. */
class ByteReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private done = false;
  constructor(private source: AsyncIterator<Buffer>) {}

  private async fill(n: number): Promise<boolean> {
    while (this.have < n && !this.done) {
      const r = await this.source.next();
      if (r.done) this.done = true;
      else if (r.value.length > 0) {
        this.chunks.push(r.value);
        this.have += r.value.length;
      }
    }
    return this.have >= n;
  }

  /** Exactly n bytes, or null at a clean end of stream before any of them. */
  async read(n: number): Promise<Buffer | null> {
    if (!(await this.fill(n))) {
      if (this.have === 0) return null;
      throw new TarError('archive is truncated');
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.have = rest.length;
    return out;
  }

  /** Reads to the end; true when everything left is zero (GNU tar pads to whole records). */
  async drainZeros(): Promise<boolean> {
    let zero = true;
    while (await this.fill(1)) {
      for (const c of this.chunks) if (zero && c.some((b) => b !== 0)) zero = false;
      this.chunks = [];
      this.have = 0;
    }
    return zero;
  }

  /** Up to `max` bytes (at least one), for streaming a body without holding it whole. */
  async some(max: number): Promise<Buffer> {
    if (!(await this.fill(1))) throw new TarError('archive is truncated');
    const first = this.chunks[0]!;
    if (first.length <= max) {
      this.chunks.shift();
      this.have -= first.length;
      return first;
    }
    this.chunks[0] = first.subarray(max);
    this.have -= max;
    return first.subarray(0, max);
  }
}

/**
 * Reads an archive entry by entry. `onEntry` gets each header and an iterator over its body,
 * which it must consume (or not: what it leaves is skipped). Unknown entry types are rejected:
 * a backup holds files and folders only.
 */
export async function readTar(source: AsyncIterable<Buffer>, onEntry: (e: TarEntryHeader, body: AsyncIterable<Buffer>) => Promise<void>): Promise<number> {
  const r = new ByteReader(source[Symbol.asyncIterator]());
  let pax = new Map<string, string>();
  let count = 0;
  for (;;) {
    const h = await r.read(BLOCK);
    if (h === null) throw new TarError('archive ends without its end marker (truncated)');
    if (h.equals(ZEROS)) {
      const second = await r.read(BLOCK);
      if (second === null || !second.equals(ZEROS)) throw new TarError('archive ends without its end marker (truncated)');
      // Reading to the end lets the layer below check its own end (age's final chunk).
      if (!(await r.drainZeros())) throw new TarError('data after the end of the archive');
      return count;
    }
    const stored = parseNumber(h, 148, 8, 'checksum');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (sum !== stored) throw new TarError('tar header checksum mismatch (corrupt archive)');
    const typeflag = String.fromCharCode(h[156]!) || '0';
    let size = parseNumber(h, 124, 12, 'size');
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L') {
      const body = size === 0 ? Buffer.alloc(0) : await r.read(size + padding(size).length);
      if (body === null) throw new TarError('archive is truncated');
      if (typeflag === 'x') pax = parsePax(body.subarray(0, size));
      else if (typeflag === 'L') pax.set('path', body.subarray(0, size).toString('utf8').replace(/\0+$/, ''));
      continue;
    }
    const prefix = field(h, 345, 155);
    let name = pax.get('path') ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    if (pax.has('size')) size = Number(pax.get('size'));
    pax = new Map();
    let type: TarEntryHeader['type'];
    if (typeflag === '0' || typeflag === '\0' || typeflag === '7') type = 'file';
    else if (typeflag === '5') type = 'dir';
    else throw new TarError(`unsupported entry type '${typeflag}' for ${JSON.stringify(name)}`);
    if (type === 'dir') name = name.replace(/\/+$/, '');
    checkEntryPath(name);
    const entry: TarEntryHeader = { path: name, type, size: type === 'dir' ? 0 : size, mode: parseNumber(h, 100, 8, 'mode') & 0o7777, mtime: parseNumber(h, 136, 12, 'mtime') };
    let left = entry.size;
    const body: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        while (left > 0) {
          const chunk = await r.some(Math.min(left, 1 << 20));
          left -= chunk.length;
          yield chunk;
        }
      },
    };
    await onEntry(entry, body);
    while (left > 0) left -= (await r.some(Math.min(left, 1 << 20))).length; // what the callback left
    const pad = padding(entry.size).length;
    if (pad > 0 && (await r.read(pad)) === null) throw new TarError('archive is truncated');
    count++;
  }
}
