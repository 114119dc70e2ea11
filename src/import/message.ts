// What every import source does to one message before it is stored: the flags that mbox writers
// keep in header fields come out of the header (so the bytes are the original again), LF-only
// text gets its CRLF back, and something that is not mail at all is refused with a reason.

/** Header fields an mbox writer adds for flags and folders (fe export, mutt, Dovecot, Python). */
const MBOX_FIELDS = new Set(['status', 'x-status', 'x-keywords', 'x-folder']);
const KEYWORD_RE = /^[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]+$/; // an IMAP atom, as the store accepts

export class NotMail extends Error {}

/** Offset just past the header section's blank line (or the end when there is none). */
function headerLength(raw: Buffer): number {
  let start = 0;
  while (start < raw.length) {
    const nl = raw.indexOf(0x0a, start);
    const end = nl === -1 ? raw.length : nl + 1;
    const lineLen = end - start - (nl === -1 ? 0 : 1) - (nl > start && raw[nl - 1] === 0x0d ? 1 : 0);
    if (lineLen === 0) return end;
    start = end;
  }
  return raw.length;
}

export interface MboxHeaderFlags {
  raw: Buffer; // the message without those fields
  flags: string[];
  folder: string | null;
}

/**
 * Takes Status (R: \Seen), X-Status (A \Answered, F \Flagged, T \Draft, D \Deleted), X-Keywords
 * (space or comma separated) and X-Folder out of the header section. Only those fields go; every
 * other byte stays, so a message exported by fe comes back as it was stored.
 */
export function takeMboxFlags(raw: Buffer, alsoDrop: readonly string[] = []): MboxHeaderFlags {
  const drop = new Set([...MBOX_FIELDS, ...alsoDrop]);
  const hEnd = headerLength(raw);
  const kept: Buffer[] = [];
  const flags = new Set<string>();
  let folder: string | null = null;
  let start = 0;
  let dropping = false;
  let droppedAny = false;
  let current: { name: string; value: string } | null = null;
  const finish = () => {
    if (!current) return;
    const v = current.value.trim();
    if (current.name === 'status') {
      if (v.includes('R')) flags.add('\\Seen');
    } else if (current.name === 'x-status') {
      if (v.includes('A')) flags.add('\\Answered');
      if (v.includes('F')) flags.add('\\Flagged');
      if (v.includes('T')) flags.add('\\Draft');
      if (v.includes('D')) flags.add('\\Deleted');
    } else if (current.name === 'x-keywords') {
      for (const k of v.split(/[\s,]+/)) if (k !== '' && KEYWORD_RE.test(k) && k.length <= 200) flags.add(k);
    } else if (current.name === 'x-folder' && v !== '') folder = v;
    current = null;
  };
  while (start < hEnd) {
    const nl = raw.indexOf(0x0a, start);
    const end = nl === -1 || nl >= hEnd ? hEnd : nl + 1;
    const line = raw.subarray(start, end);
    const folded = line[0] === 0x20 || line[0] === 0x09;
    if (folded && dropping && current) current.value += line.toString('utf8');
    else if (!folded) {
      finish();
      const colon = line.indexOf(0x3a);
      const name = colon > 0 ? line.subarray(0, colon).toString('latin1').trim().toLowerCase() : '';
      dropping = drop.has(name);
      if (dropping) current = { name, value: line.subarray(colon + 1).toString('utf8') };
    }
    if (!dropping) kept.push(line);
    else droppedAny = true;
    start = end;
  }
  finish();
  if (!droppedAny) return { raw, flags: [], folder: null };
  kept.push(raw.subarray(hEnd));
  return { raw: Buffer.concat(kept), flags: [...flags], folder };
}

/**
 * mbox files end lines with LF; stored mail (RFC 5322) uses CRLF. A message without a single CRLF
 * gets every LF back as CRLF (fe export turned each CRLF into LF; a lone CR in a binary part
 * stays); one with any CRLF is kept byte for byte, since its line ends were not converted.
 */
export function restoreCrlf(raw: Buffer): Buffer {
  if (raw.includes('\r\n')) return raw;
  let lfs = 0;
  for (let i = raw.indexOf(0x0a); i !== -1; i = raw.indexOf(0x0a, i + 1)) lfs++;
  if (lfs === 0) return raw;
  const out = Buffer.allocUnsafe(raw.length + lfs);
  let o = 0;
  let start = 0;
  for (let i = raw.indexOf(0x0a); i !== -1; i = raw.indexOf(0x0a, start)) {
    o += raw.copy(out, o, start, i);
    out[o++] = 0x0d;
    out[o++] = 0x0a;
    start = i + 1;
  }
  raw.copy(out, o, start);
  return out;
}

/**
 * Refuses what is not an Internet message: it must begin with a header field ("Name: value") and
 * its header section must hold no NUL bytes. Bodies may hold anything (8-bit, binary).
 */
export function checkMail(raw: Buffer): void {
  if (raw.length === 0) throw new NotMail('empty message');
  const hEnd = headerLength(raw);
  const header = raw.subarray(0, hEnd);
  if (header.includes(0)) throw new NotMail('not a mail message (binary data in the header)');
  const nl = header.indexOf(0x0a);
  const first = header.subarray(0, nl === -1 ? header.length : nl).toString('latin1');
  if (!/^[\x21-\x39\x3b-\x7e]+[ \t]*:/.test(first)) throw new NotMail('not a mail message (it does not begin with a header field)');
  let fields = 0;
  for (const line of header.toString('latin1').split('\n')) if (/^[\x21-\x39\x3b-\x7e]+[ \t]*:/.test(line)) fields++;
  if (fields < 1) throw new NotMail('not a mail message (no header fields)');
}

/** The Date header's time, for sources that carry no internal date of their own. */
export function dateHeader(raw: Buffer): Date | null {
  const hEnd = headerLength(raw);
  const m = /^date[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(raw.subarray(0, Math.min(hEnd, 256 * 1024)).toString('latin1'));
  if (!m) return null;
  const d = new Date(m[1]!.replace(/\r?\n/g, ' ').replace(/\([^)]*\)/g, '').trim());
  return Number.isNaN(d.getTime()) ? null : d;
}
