// mbox in its three common forms (RFC 4155 and the qmail/mutt descriptions): mboxo quotes body
// lines "From " as ">From "; mboxrd quotes every ">*From " line with one more ">" (what fe export
// writes), so one ">" comes off again; mboxcl2 quotes nothing and says each body's length in a
// Content-Length header. Read as a stream: one message in memory at a time.
import { open } from 'node:fs/promises';
import { ByteReader } from './byte-reader.js';
import { restoreCrlf, takeMboxFlags } from './message.js';
import { SourceError, type SourceItem } from './source.js';

export type MboxFormat = 'mboxo' | 'mboxrd' | 'mboxcl2';
export const MBOX_FORMATS: readonly MboxFormat[] = ['mboxo', 'mboxrd', 'mboxcl2'];

const FROM = Buffer.from('From ');
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

function isFrom(line: Buffer): boolean {
  return line.length >= 5 && line.subarray(0, 5).equals(FROM);
}

function isBlank(line: Buffer): boolean {
  return line.length === 1 || (line.length === 2 && line[0] === 0x0d);
}

/** Counts the ">" before "From " (-1 when the line is not of the form ">*From "). */
function quoteDepth(line: Buffer): number {
  let i = 0;
  while (i < line.length && line[i] === 0x3e) i++;
  return line.length - i >= 5 && line.subarray(i, i + 5).equals(FROM) ? i : -1;
}

/** The separator's sender and date: `From SENDER asctime` (time zone words after it are tolerated). */
export function parseFromLine(line: string): { sender: string | null; date: Date | null } {
  const rest = line.slice(5).trim();
  const sp = rest.indexOf(' ');
  const sender = sp === -1 ? rest : rest.slice(0, sp);
  const when = sp === -1 ? '' : rest.slice(sp + 1);
  const m = /([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(?:([A-Z]{2,5}|[+-]\d{4})\s+)?(\d{4})/.exec(when);
  let date: Date | null = null;
  if (m) {
    const month = MONTHS.indexOf(m[1]!.toLowerCase());
    if (month !== -1) date = new Date(Date.UTC(Number(m[7]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5] ?? 0)));
  }
  if (!date || Number.isNaN(date.getTime())) {
    const d = new Date(when);
    date = Number.isNaN(d.getTime()) ? null : d;
  }
  return { sender: sender === '' || sender === 'MAILER-DAEMON' ? null : sender, date };
}

function contentLength(header: Buffer[]): number | null {
  for (const l of header) {
    const m = /^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?\n$/i.exec(l.toString('latin1'));
    if (m) return Number(m[1]);
  }
  return null;
}

/**
 * Reads a whole file once to tell the three apart: mboxcl2 when the first message's
 * Content-Length ends exactly at the next "From " line (or the end); mboxrd when some line is
 * ">>From " (an mboxo writer never adds a second ">"); else mboxo. Throws SourceError for a file
 * that does not begin with a "From " line.
 */
export async function detectMboxFormat(file: string): Promise<MboxFormat> {
  const fh = await open(file, 'r');
  try {
    const reader = new ByteReader(fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 256 * 1024 }));
    let first = true;
    let inHeader = false;
    const header: Buffer[] = [];
    let clCheck: number | null = null;
    let rd = false;
    for (;;) {
      const line = await reader.line(1024 * 1024);
      if (!line) break;
      if (first) {
        if (line.data && isBlank(line.data)) continue;
        if (!line.data || !isFrom(line.data)) throw new SourceError(`${file} is not an mbox file (it does not begin with a "From " line)`);
        first = false;
        inHeader = true;
        continue;
      }
      if (inHeader && line.data) {
        if (isBlank(line.data)) {
          inHeader = false;
          const cl = contentLength(header);
          if (cl !== null) clCheck = reader.offset + cl;
        } else header.push(line.data);
      }
      if (line.data && quoteDepth(line.data) >= 2) rd = true;
      if (rd && clCheck === null && !inHeader) break;
    }
    if (first) return 'mboxrd'; // empty: nothing to tell apart
    if (clCheck !== null) {
      const probe = Buffer.alloc(6);
      const { bytesRead } = await fh.read(probe, 0, 6, clCheck);
      const at = probe.subarray(0, bytesRead).toString('latin1');
      if (bytesRead === 0 || at === '\n' || at.startsWith('\nFrom ') || at.startsWith('From ')) return 'mboxcl2';
    }
    return rd ? 'mboxrd' : 'mboxo';
  } finally {
    await fh.close();
  }
}

interface Current {
  index: number;
  fromLine: string;
  lines: Buffer[];
  size: number;
  tooBig: boolean;
  inHeader: boolean;
  header: Buffer[];
  cut: boolean;
  clOff: boolean; // mboxcl2: the body was read by its length; what follows is not unquoted
}

/**
 * Yields the messages of an mbox stream. Messages over `maxMessage` bytes and a last message
 * cut off in the middle of a line are reported as skipped; a stream that is not an mbox at all
 * throws SourceError before anything is yielded.
 */
export async function* readMbox(source: AsyncIterable<Buffer | Uint8Array | string>, options: { name: string; format: MboxFormat; maxMessage: number }): AsyncGenerator<SourceItem> {
  const reader = new ByteReader(source);
  const { format, maxMessage, name } = options;
  let cur: Current | null = null;
  let count = 0;

  const finish = (c: Current): SourceItem => {
    const where = `${name} message ${c.index}`;
    if (c.tooBig) return { kind: 'skip', where, reason: `larger than the message size limit (${maxMessage} bytes)` };
    if (c.cut) return { kind: 'skip', where, reason: 'cut off: the file ends in the middle of a line (truncated?)' };
    let raw = Buffer.concat(c.lines);
    // The empty line before the next "From " (or the end) belongs to the mbox, not the message.
    if (raw.length >= 2 && raw[raw.length - 1] === 0x0a && raw[raw.length - 2] === 0x0a) raw = raw.subarray(0, raw.length - 1);
    const { sender, date } = parseFromLine(c.fromLine);
    const taken = takeMboxFlags(raw, format === 'mboxcl2' ? ['content-length', 'lines'] : []);
    return { kind: 'message', where, folder: taken.folder, raw: restoreCrlf(taken.raw), flags: taken.flags, internalDate: date ?? new Date(Number.NaN), envelopeFrom: sender };
  };

  const append = (c: Current, data: Buffer | null, length: number) => {
    c.size += length;
    if (data === null || c.size > maxMessage) {
      c.tooBig = true;
      c.lines.length = 0;
    } else if (!c.tooBig) c.lines.push(data);
  };

  for (;;) {
    const line = await reader.line(maxMessage + 2);
    if (!line) break;
    const data = line.data;
    if (data && isFrom(data)) {
      if (cur) yield finish(cur);
      cur = { index: ++count, fromLine: data.toString('latin1').replace(/\r?\n$/, ''), lines: [], size: 0, tooBig: false, inHeader: true, header: [], cut: !line.newline, clOff: false };
      continue;
    }
    if (cur === null) {
      if (data && isBlank(data)) continue;
      throw new SourceError(`${name} is not an mbox file (it does not begin with a "From " line)`);
    }
    if (!line.newline) cur.cut = true;
    let out = data;
    if (out && !cur.clOff) {
      const depth = quoteDepth(out);
      if ((format === 'mboxrd' && depth >= 1) || (format === 'mboxo' && depth === 1)) out = out.subarray(1);
    }
    append(cur, out, out ? out.length : line.length);
    if (cur.inHeader && data) {
      if (isBlank(data)) {
        cur.inHeader = false;
        const cl = format === 'mboxcl2' ? contentLength(cur.header) : null;
        if (cl !== null) {
          const body = await reader.bytes(cl, Math.max(0, maxMessage - cur.size));
          append(cur, body.data, body.length);
          if (body.length < cl) cur.cut = true;
          cur.clOff = true;
        }
      } else cur.header.push(data);
    }
  }
  if (cur) yield finish(cur);
}
