// Cheap, synchronous parsing of a raw RFC 5322 / MIME message into what IMAP FETCH ENVELOPE,
// BODYSTRUCTURE, BODY[section] and SEARCH need, computed once at store time. It never throws:
// broken MIME degrades to a simpler structure, and the raw message is always kept as received.

export interface Address {
  name: string | null;
  adl: string | null; // an obsolete source route "@a,@b" (RFC 5322 obs-route), kept for ENVELOPE
  mailbox: string | null; // null together with host === null marks the end of a group
  host: string | null; // null marks group syntax (RFC 3501 7.4.2)
}

export interface Envelope {
  date: string | null;
  subject: string | null;
  from: Address[] | null;
  sender: Address[] | null;
  replyTo: Address[] | null;
  to: Address[] | null;
  cc: Address[] | null;
  bcc: Address[] | null;
  inReplyTo: string | null;
  messageId: string | null;
}

export type Params = [string, string][];

export interface BodyPart {
  type: string; // lower case, e.g. "text"
  subtype: string; // lower case, e.g. "plain"
  params: Params;
  id: string | null;
  description: string | null;
  encoding: string; // lower case, "7bit" when absent
  size: number; // body octets
  lines: number | null; // text/* and message/rfc822 only
  md5: string | null;
  disposition: { type: string; params: Params } | null;
  language: string[] | null;
  location: string | null;
  // Absolute offsets into the raw message: header starts, body starts, body ends.
  headerStart: number;
  bodyStart: number;
  bodyEnd: number;
  parts?: BodyPart[];
  message?: { envelope: Envelope; body: BodyPart };
}

export interface ParsedMessage {
  headerSize: number; // octets of the top-level header including the blank line
  envelope: Envelope;
  structure: BodyPart;
  sentAt: number | null; // Date: header as ms since epoch
  // Decoded (RFC 2047), lower-cased text for SEARCH.
  search: { subject: string; from: string; to: string; cc: string; bcc: string };
  error: string | null; // why parsing fell back, if it did
}

const MAX_DEPTH = 24;
const MAX_PARTS = 2000;
const MAX_HEADER_BYTES = 1 << 20; // a "header" without an end (broken mail) is parsed only this far
const LF = 0x0a;
const CR = 0x0d;

type Fields = Map<string, string[]>;

interface Ctx {
  parts: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeHeaderBytes(buf: Buffer): string {
  try {
    return utf8.decode(buf); // RFC 6532 allows UTF-8 headers
  } catch {
    return buf.toString('latin1');
  }
}

/** Offset where the body starts (just past the blank line), or `end` if there is none. */
function findBodyStart(buf: Buffer, start: number, end: number): number {
  if (start < end && buf[start] === LF) return start + 1;
  if (start + 1 < end && buf[start] === CR && buf[start + 1] === LF) return start + 2;
  let i = start;
  for (;;) {
    const nl = buf.indexOf(LF, i);
    if (nl < 0 || nl >= end - 1) return end;
    if (buf[nl + 1] === LF) return nl + 2;
    if (nl + 2 < end && buf[nl + 1] === CR && buf[nl + 2] === LF) return nl + 3;
    i = nl + 1;
  }
}

export function parseHeaderFields(text: string): Fields {
  const fields: Fields = new Map();
  let name: string | null = null;
  let value = '';
  const flush = (): void => {
    if (name === null) return;
    const list = fields.get(name);
    if (list) list.push(value.trim());
    else fields.set(name, [value.trim()]);
    name = null;
  };
  for (const line of text.split(/\r?\n/)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && name !== null) {
      value += line; // unfolding removes only the line break
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    if (colon <= 0) continue; // not a header line (e.g. an mbox "From " line): ignore it
    const n = line.slice(0, colon).trim().toLowerCase();
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(n)) continue;
    name = n;
    value = line.slice(colon + 1);
  }
  flush();
  return fields;
}

function first(fields: Fields, name: string): string | null {
  const v = fields.get(name);
  return v && v.length > 0 ? v[0]! : null;
}

function stripComments(s: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      out += c;
      if (c === '\\' && i + 1 < s.length) out += s[++i];
      else if (c === '"') quoted = false;
    } else if (depth > 0) {
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')') depth--;
    } else if (c === '(') depth++;
    else {
      if (c === '"') quoted = true;
      out += c;
    }
  }
  return out;
}

function unquote(s: string): string {
  const t = s.trim();
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) return t.slice(1, -1).replace(/\\(.)/g, '$1');
  return t;
}

/** `value; a=b; c="d"` -> value (lower case) and parameters (names lower case, values as given). */
export function parseParams(header: string): { value: string; params: Params } {
  const segments: string[] = [];
  let cur = '';
  let quoted = false;
  const s = stripComments(header);
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      cur += c;
      if (c === '\\' && i + 1 < s.length) cur += s[++i];
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
      cur += c;
    } else if (c === ';') {
      segments.push(cur);
      cur = '';
    } else cur += c;
  }
  segments.push(cur);
  const value = (segments.shift() ?? '').trim().toLowerCase();
  const params: Params = [];
  for (const seg of segments) {
    const eq = seg.indexOf('=');
    if (eq <= 0) continue;
    const k = seg.slice(0, eq).trim().toLowerCase();
    if (k) params.push([k, unquote(seg.slice(eq + 1))]);
  }
  return { value, params };
}

function param(params: Params, name: string): string | null {
  for (const [k, v] of params) if (k === name) return v;
  return null;
}

// ---- RFC 2047 encoded words (for SEARCH text only; IMAP hands clients the raw header) ----

const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;

function wordBytes(enc: string, text: string): Buffer {
  if (enc === 'b' || enc === 'B') return Buffer.from(text, 'base64');
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '_') out.push(0x20);
    else if (c === '=' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(c.charCodeAt(0) & 0xff);
  }
  return Buffer.from(out);
}

function decodeCharset(bytes: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset.replace(/\*.*$/, '').trim()).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

export function decodeWords(s: string): string {
  let out = '';
  let last = 0;
  let runCharset: string | null = null;
  let runBytes: Buffer[] = [];
  for (const m of s.matchAll(ENCODED_WORD)) {
    const gap = s.slice(last, m.index);
    const charset = m[1]!.toLowerCase();
    const bytes = wordBytes(m[2]!, m[3]!);
    const adjacent = runCharset !== null && /^\s*$/.test(gap);
    // Whitespace between adjacent encoded words is not text; a run of same-charset words is
    // decoded as one so multi-byte characters split across words survive.
    if (adjacent && runCharset === charset) {
      runBytes.push(bytes);
    } else {
      if (runCharset !== null) out += decodeCharset(Buffer.concat(runBytes), runCharset);
      if (!adjacent) out += gap;
      runCharset = charset;
      runBytes = [bytes];
    }
    last = m.index + m[0].length;
  }
  if (runCharset !== null) out += decodeCharset(Buffer.concat(runBytes), runCharset);
  return out + s.slice(last);
}

// ---- addresses ----

interface Tok {
  k: 'atom' | 'quoted' | 'comment' | 'literal' | 'special';
  v: string;
}

function tokenize(s: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      i++;
    } else if (c === '"') {
      let v = '';
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        v += s[i++];
      }
      i++;
      toks.push({ k: 'quoted', v });
    } else if (c === '(') {
      let depth = 1;
      let v = '';
      i++;
      while (i < s.length && depth > 0) {
        const d = s[i]!;
        if (d === '\\' && i + 1 < s.length) {
          v += s[i + 1];
          i += 2;
          continue;
        }
        if (d === '(') depth++;
        else if (d === ')' && --depth === 0) break;
        v += d;
        i++;
      }
      i++;
      toks.push({ k: 'comment', v: v.trim() });
    } else if (c === '[') {
      const close = s.indexOf(']', i);
      const end = close < 0 ? s.length : close + 1;
      toks.push({ k: 'literal', v: s.slice(i, end) });
      i = end;
    } else if ('<>,:;@'.includes(c)) {
      toks.push({ k: 'special', v: c });
      i++;
    } else {
      let v = '';
      while (i < s.length && !' \t\r\n"(<>,:;@['.includes(s[i]!)) v += s[i++];
      toks.push({ k: 'atom', v });
    }
  }
  return toks;
}

function makeAddress(name: string | null, spec: string, adl: string | null = null): Address {
  const at = spec.lastIndexOf('@');
  // A normal address never has a NIL host; an address without a domain gets an empty one.
  if (at < 0) return { name, adl, mailbox: spec, host: '' };
  return { name, adl, mailbox: spec.slice(0, at), host: spec.slice(at + 1) };
}

const words = (toks: Tok[]): string =>
  toks
    .filter((t) => t.k === 'atom' || t.k === 'quoted')
    .map((t) => t.v)
    .join(' ');

export function parseAddressList(value: string | null): Address[] | null {
  if (value === null) return null;
  const toks = tokenize(value);
  const out: Address[] = [];
  let phrase: Tok[] = [];
  let inGroup = false;
  let skipToSeparator = false;
  const flushPlain = (): void => {
    const spec = phrase
      .filter((t) => t.k !== 'comment')
      .map((t) => t.v)
      .join('');
    const comment = phrase.find((t) => t.k === 'comment');
    if (spec) out.push(makeAddress(comment?.v || null, spec));
    phrase = [];
  };
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i]!;
    if (t.k === 'special' && (t.v === ',' || t.v === ';')) {
      if (!skipToSeparator) flushPlain();
      phrase = [];
      skipToSeparator = false;
      if (t.v === ';' && inGroup) {
        out.push({ name: null, adl: null, mailbox: null, host: null });
        inGroup = false;
      }
      continue;
    }
    if (skipToSeparator) continue;
    if (t.k === 'special' && t.v === '<') {
      const inner: Tok[] = [];
      let j = i + 1;
      while (j < toks.length && !(toks[j]!.k === 'special' && toks[j]!.v === '>')) inner.push(toks[j++]!);
      // An obsolete source route "@a,@b:" goes to the address's adl (RFC 3501 7.4.2).
      const colon = inner.findIndex((x) => x.k === 'special' && x.v === ':');
      const routed = colon >= 0 && inner[0]?.v === '@';
      const specToks = routed ? inner.slice(colon + 1) : inner;
      const adl = routed
        ? inner
            .slice(0, colon)
            .filter((x) => x.k !== 'comment')
            .map((x) => x.v)
            .join('') || null
        : null;
      const spec = specToks
        .filter((x) => x.k !== 'comment')
        .map((x) => x.v)
        .join('');
      const name = words(phrase) || phrase.find((x) => x.k === 'comment')?.v || null;
      out.push(makeAddress(name, spec, adl));
      phrase = [];
      skipToSeparator = true;
      i = j;
      continue;
    }
    if (t.k === 'special' && t.v === ':' && !inGroup) {
      out.push({ name: null, adl: null, mailbox: words(phrase), host: null });
      phrase = [];
      inGroup = true;
      continue;
    }
    phrase.push(t);
  }
  if (!skipToSeparator) flushPlain();
  if (inGroup) out.push({ name: null, adl: null, mailbox: null, host: null });
  return out.length > 0 ? out : null;
}

export function parseDate(value: string | null): number | null {
  if (!value) return null;
  const ms = Date.parse(stripComments(value).replace(/\s+/g, ' ').trim());
  return Number.isNaN(ms) ? null : ms;
}

function buildEnvelope(fields: Fields): Envelope {
  const addr = (name: string): Address[] | null => {
    const all = fields.get(name);
    return all ? parseAddressList(all.join(', ')) : null;
  };
  const from = addr('from');
  return {
    date: first(fields, 'date'),
    subject: first(fields, 'subject'),
    from,
    // RFC 3501: absent or empty Sender / Reply-To take the value of From.
    sender: addr('sender') ?? from,
    replyTo: addr('reply-to') ?? from,
    to: addr('to'),
    cc: addr('cc'),
    bcc: addr('bcc'),
    inReplyTo: first(fields, 'in-reply-to'),
    messageId: first(fields, 'message-id'),
  };
}

// ---- MIME structure ----

function countLines(buf: Buffer, start: number, end: number): number {
  let n = 0;
  let i = start;
  for (;;) {
    const nl = buf.indexOf(LF, i);
    if (nl < 0 || nl >= end) break;
    n++;
    i = nl + 1;
  }
  if (end > start && buf[end - 1] !== LF) n++; // an unterminated last line still counts
  return n;
}

interface Boundary {
  lineStart: number; // the CRLF before the delimiter belongs to the delimiter
  after: number;
  close: boolean;
}

function findBoundaries(buf: Buffer, start: number, end: number, boundary: string): Boundary[] {
  const delim = Buffer.from('--' + boundary, 'latin1');
  const found: Boundary[] = [];
  let i = start;
  while (i < end) {
    const p = buf.indexOf(delim, i);
    if (p < 0 || p + delim.length > end) break;
    if (p !== start && buf[p - 1] !== LF) {
      i = p + 1;
      continue;
    }
    let q = p + delim.length;
    const close = q + 1 < end && buf[q] === 0x2d && buf[q + 1] === 0x2d;
    if (close) q += 2;
    while (q < end && (buf[q] === 0x20 || buf[q] === 0x09)) q++;
    if (q < end && buf[q] !== CR && buf[q] !== LF) {
      i = p + 1; // a longer line that merely starts with the delimiter
      continue;
    }
    if (buf[q] === CR && buf[q + 1] === LF) q += 2;
    else if (buf[q] === LF) q += 1;
    let lineStart = p;
    if (p > start && buf[p - 1] === LF) {
      lineStart = p - 1;
      if (lineStart > start && buf[lineStart - 1] === CR) lineStart--;
    }
    found.push({ lineStart, after: Math.min(q, end), close });
    if (close) break;
    i = q;
  }
  return found;
}

interface PartResult {
  part: BodyPart;
  fields: Fields;
}

function parsePart(buf: Buffer, start: number, end: number, depth: number, ctx: Ctx, defaultType: [string, string]): PartResult {
  ctx.parts++;
  const bodyStart = findBodyStart(buf, start, end);
  const fields = parseHeaderFields(decodeHeaderBytes(buf.subarray(start, Math.min(bodyStart, start + MAX_HEADER_BYTES))));
  const ctHeader = first(fields, 'content-type');
  let type = defaultType[0];
  let subtype = defaultType[1];
  let params: Params = [];
  if (ctHeader !== null) {
    const ct = parseParams(ctHeader);
    const m = /^([^\s/]+)\/([^\s/]+)$/.exec(ct.value);
    if (m) {
      type = m[1]!;
      subtype = m[2]!;
      params = ct.params;
    } else {
      // RFC 2045 5.2: an unparseable type is text/plain; us-ascii
      type = 'text';
      subtype = 'plain';
      params = [['charset', 'us-ascii']];
    }
  } else if (type === 'text') {
    params = [['charset', 'us-ascii']];
  }
  const dispo = first(fields, 'content-disposition');
  const disposition = dispo !== null ? parseParams(dispo) : null;
  const language = first(fields, 'content-language');
  const part: BodyPart = {
    type,
    subtype,
    params,
    id: first(fields, 'content-id'),
    description: first(fields, 'content-description'),
    encoding: (first(fields, 'content-transfer-encoding') ?? '7bit').trim().toLowerCase() || '7bit',
    size: end - bodyStart,
    lines: null,
    md5: first(fields, 'content-md5'),
    disposition: disposition && disposition.value ? { type: disposition.value, params: disposition.params } : null,
    language: language
      ? language
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean)
      : null,
    location: first(fields, 'content-location'),
    headerStart: start,
    bodyStart,
    bodyEnd: end,
  };
  const deeper = depth < MAX_DEPTH && ctx.parts < MAX_PARTS;
  const encoded = part.encoding === 'base64' || part.encoding === 'quoted-printable';
  if (type === 'multipart') {
    const boundary = param(params, 'boundary');
    const found = deeper && boundary ? findBoundaries(buf, bodyStart, end, boundary) : [];
    const parts: BodyPart[] = [];
    const childDefault: [string, string] = subtype === 'digest' ? ['message', 'rfc822'] : ['text', 'plain'];
    for (let k = 0; k < found.length && !found[k]!.close && ctx.parts < MAX_PARTS; k++) {
      const s = found[k]!.after;
      const e = Math.max(s, found[k + 1]?.lineStart ?? end); // no closing delimiter: runs to the end
      parts.push(parsePart(buf, s, e, depth + 1, ctx, childDefault).part);
    }
    if (parts.length === 0) {
      // IMAP needs at least one part: present the body as one plain-text part without a header.
      parts.push({
        ...part,
        type: 'text',
        subtype: 'plain',
        params: [['charset', 'us-ascii']],
        id: null,
        description: null,
        encoding: '7bit',
        md5: null,
        disposition: null,
        language: null,
        location: null,
        headerStart: bodyStart,
        lines: countLines(buf, bodyStart, end),
      });
    }
    part.parts = parts;
  } else if (type === 'message' && (subtype === 'rfc822' || subtype === 'global') && !encoded) {
    part.lines = countLines(buf, bodyStart, end);
    if (deeper) {
      const inner = parsePart(buf, bodyStart, end, depth + 1, ctx, ['text', 'plain']);
      part.message = { envelope: buildEnvelope(inner.fields), body: inner.part };
    }
  } else if (type === 'text') {
    part.lines = countLines(buf, bodyStart, end);
  }
  return { part, fields };
}

const ADDRESS_FIELDS = new Set(['from', 'to', 'cc', 'bcc']);

function searchText(fields: Fields, name: string): string {
  const all = fields.get(name);
  if (!all) return '';
  const text = decodeWords(all.join(', '));
  if (!ADDRESS_FIELDS.has(name)) return text.toLowerCase();
  // Addresses also in their plain form, so comments inside one ("a(x)@b") do not hide it from SEARCH FROM
  const plain = (parseAddressList(all.join(', ')) ?? [])
    .filter((a) => a.host !== null)
    .map((a) => `${a.name ? decodeWords(a.name) + ' ' : ''}<${a.mailbox}${a.host ? '@' + a.host : ''}>`);
  return (plain.length > 0 ? `${text}\n${plain.join(', ')}` : text).toLowerCase();
}

export function parseMessage(raw: Buffer): ParsedMessage {
  const ctx: Ctx = { parts: 0 };
  try {
    const { part, fields } = parsePart(raw, 0, raw.length, 0, ctx, ['text', 'plain']);
    return {
      headerSize: part.bodyStart,
      envelope: buildEnvelope(fields),
      structure: part,
      sentAt: parseDate(first(fields, 'date')),
      search: {
        subject: searchText(fields, 'subject'),
        from: searchText(fields, 'from'),
        to: searchText(fields, 'to'),
        cc: searchText(fields, 'cc'),
        bcc: searchText(fields, 'bcc'),
      },
      error: null,
    };
  } catch (e) {
    // Last resort: the whole message as one opaque text part; the raw bytes are stored regardless.
    const bodyStart = findBodyStartSafe(raw);
    return {
      headerSize: bodyStart,
      envelope: { date: null, subject: null, from: null, sender: null, replyTo: null, to: null, cc: null, bcc: null, inReplyTo: null, messageId: null },
      structure: {
        type: 'text',
        subtype: 'plain',
        params: [['charset', 'us-ascii']],
        id: null,
        description: null,
        encoding: '7bit',
        size: raw.length - bodyStart,
        lines: null,
        md5: null,
        disposition: null,
        language: null,
        location: null,
        headerStart: 0,
        bodyStart,
        bodyEnd: raw.length,
      },
      sentAt: null,
      search: { subject: '', from: '', to: '', cc: '', bcc: '' },
      error: (e as Error).message || String(e),
    };
  }
}

function findBodyStartSafe(raw: Buffer): number {
  try {
    return findBodyStart(raw, 0, raw.length);
  } catch {
    return 0;
  }
}
