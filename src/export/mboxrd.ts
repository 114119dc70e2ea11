// mboxrd: each message starts with a "From " line, and every line of the form ">*From " gets one
// more ">", so a reader that removes one gets the message back exactly (mboxo cannot: it leaves
// ">From " and "From " indistinguishable). Lines end in LF, as mbox readers expect.
import { statusHeaderFields } from './flags.js';

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const LF = Buffer.from('\n');

/** The separator line: `From SENDER asctime(UTC)`, the sender being one token (MAILER-DAEMON when unknown). */
export function fromLine(sender: string | null, date: Date): string {
  const who = sender === null || sender.trim() === '' ? 'MAILER-DAEMON' : sender.replace(/\s+/g, '_');
  const two = (n: number) => String(n).padStart(2, '0');
  const asctime = `${DAYS[date.getUTCDay()]} ${MONTHS[date.getUTCMonth()]} ${String(date.getUTCDate()).padStart(2, ' ')} ${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} ${date.getUTCFullYear()}`;
  return `From ${who} ${asctime}\n`;
}

/** Where the header section ends: the offset of its blank line's first byte, or -1 when there is none. */
export function headerEnd(raw: Buffer): number {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (raw.length > 0 && (raw[0] === 0x0a || (raw[0] === 0x0d && raw[1] === 0x0a))) return 0; // no header at all
  if (crlf === -1) return lf === -1 ? -1 : lf + 1;
  if (lf === -1) return crlf + 2;
  return Math.min(crlf + 2, lf + 1);
}

/** Header field names an export writes itself; a message's own copies are dropped so flags cannot contradict. */
export const EXPORT_FIELDS = new Set(['status', 'x-status', 'x-keywords', 'x-folder']);

/** The header lines without fields named in EXPORT_FIELDS (continuation lines go with their field). */
function headerWithout(header: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let dropping = false;
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(0x0a, start);
    end = end === -1 ? header.length : end + 1;
    const line = header.subarray(start, end);
    const folded = line[0] === 0x20 || line[0] === 0x09;
    if (!folded) {
      const colon = line.indexOf(0x3a);
      dropping = colon > 0 && EXPORT_FIELDS.has(line.subarray(0, colon).toString('latin1').trim().toLowerCase());
    }
    if (!dropping) out.push(line);
    start = end;
  }
  return out;
}

function isFromLine(b: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end && b[i] === 0x3e) i++; // '>'
  return end - i >= 5 && b[i] === 0x46 && b[i + 1] === 0x72 && b[i + 2] === 0x6f && b[i + 3] === 0x6d && b[i + 4] === 0x20;
}

/**
 * `data` with CRLF made LF and ">*From " lines quoted once more, as one buffer (one write per
 * message, not one per line). Every line, the last included, ends in LF.
 */
function mboxLines(data: Buffer): Buffer {
  let lines = 1;
  for (let i = data.indexOf(0x0a); i !== -1; i = data.indexOf(0x0a, i + 1)) lines++;
  const out = Buffer.allocUnsafe(data.length + lines + 1); // at most one ">" and one LF more per line
  let n = 0;
  let start = 0;
  while (start < data.length) {
    const nl = data.indexOf(0x0a, start);
    const end = nl === -1 ? data.length : nl; // end excludes the LF
    if (isFromLine(data, start, end)) out[n++] = 0x3e;
    const stop = nl !== -1 && end > start && data[end - 1] === 0x0d ? end - 1 : end;
    n += data.copy(out, n, start, stop);
    out[n++] = 0x0a;
    start = end + 1;
  }
  return out.subarray(0, n);
}

export interface MboxEntry {
  raw: Buffer;
  sender: string | null;
  internalDate: Date;
  flags: readonly string[];
  folder?: string; // written as X-Folder (fe export --mbox --single)
}

/**
 * One message as mboxrd chunks: the From line, the header with Status, X-Status, X-Keywords (and
 * X-Folder) at its end, the body, and the empty line that ends every message. A message without
 * a final line end gets one (mbox has no way to say it had none).
 */
export function mboxrdMessage(m: MboxEntry): Buffer[] {
  const out: Buffer[] = [Buffer.from(fromLine(m.sender, m.internalDate), 'latin1')];
  const hEnd = headerEnd(m.raw);
  const header = hEnd === -1 ? m.raw : m.raw.subarray(0, hEnd);
  const body = hEnd === -1 ? Buffer.alloc(0) : m.raw.subarray(hEnd);
  out.push(mboxLines(Buffer.concat(headerWithout(header))));
  for (const f of statusHeaderFields(m.flags, m.folder)) out.push(Buffer.from(f + '\n', 'utf8'));
  if (hEnd === -1) out.push(LF); // all header: the blank line that ends it
  else out.push(mboxLines(body));
  out.push(LF);
  return out;
}
