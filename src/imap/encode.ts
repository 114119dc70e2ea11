// IMAP response serialisation (RFC 3501 sections 4, 7.4.2, 9; UTF8=ACCEPT RFC 6855).
//
// Every function returns response text as a JS string that goes on the wire UTF-8 encoded; a
// literal's `{n}` counts those UTF-8 octets. Message octets (sectionBytes) stay Buffers.

import type { Address, BodyPart, Envelope, Params } from '../store/message-parse.js';
import { decodeTransferEncoding } from '../store/transfer-encoding.js';
import { MONTHS, type SectionSpec } from './parser.js';

export interface EncodeOptions {
  /** UTF8=ACCEPT enabled: UTF-8 may go in quoted strings and mailbox names are not mUTF-7. */
  utf8?: boolean;
  /** Longer strings go as literals. */
  maxQuoted?: number;
}

const DEFAULT_MAX_QUOTED = 1024;

/** DQUOTE-delimited string with `\` and `"` escaped; only for text quotedOk() accepts. */
export function quoted(s: string): string {
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

/** `{n}CRLF` followed by the text; n counts UTF-8 octets. */
export function literal(s: string): string {
  return `{${Buffer.byteLength(s, 'utf8')}}\r\n${s}`;
}

/** Whether `s` may be sent as a quoted string: TEXT-CHARs only (UTF-8 too when enabled). */
export function quotedOk(s: string, opts: EncodeOptions = {}): boolean {
  if (s.length > (opts.maxQuoted ?? DEFAULT_MAX_QUOTED)) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x0d || c === 0x0a || c === 0) return false;
    if (c >= 0x80 && !opts.utf8) return false;
    if (c >= 0xd800 && c <= 0xdfff) {
      // a lone surrogate has no UTF-8 form
      const next = s.charCodeAt(i + 1);
      if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    }
  }
  return true;
}

/** `string` (RFC 3501 9): quoted when possible, otherwise a literal. NUL cannot be sent and is dropped. */
export function encodeString(s: string, opts: EncodeOptions = {}): string {
  const clean = s.includes('\0') ? s.replace(/\0/g, '') : s;
  return quotedOk(clean, opts) ? quoted(clean) : literal(clean);
}

/** `nstring`: NIL for null. */
export function nstring(s: string | null | undefined, opts: EncodeOptions = {}): string {
  return s === null || s === undefined ? 'NIL' : encodeString(s, opts);
}

const ATOM_SPECIALS = /[\x00-\x20\x7f-\uffff(){%*"\\]/;

/** `astring`: an atom when every character is an ASTRING-CHAR (and it is not NIL), else a string. */
export function astring(s: string, opts: EncodeOptions = {}): string {
  if (s.length > 0 && !ATOM_SPECIALS.test(s) && s.toUpperCase() !== 'NIL') return s;
  return encodeString(s, opts);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,';

/** RFC 3501 5.1.3 modified UTF-7. */
export function encodeModifiedUtf7(name: string): string {
  let out = '';
  let i = 0;
  while (i < name.length) {
    const c = name.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e) {
      out += c === 0x26 ? '&-' : name[i];
      i++;
      continue;
    }
    let j = i;
    while (j < name.length && !(name.charCodeAt(j) >= 0x20 && name.charCodeAt(j) <= 0x7e)) j++;
    const units: number[] = [];
    for (let k = i; k < j; k++) units.push(name.charCodeAt(k));
    let acc = 0;
    let bits = 0;
    let enc = '';
    for (const u of units) {
      acc = (acc << 16) | u;
      bits += 16;
      while (bits >= 6) {
        bits -= 6;
        enc += B64[(acc >> bits) & 0x3f];
      }
      acc &= (1 << bits) - 1;
    }
    if (bits > 0) enc += B64[(acc << (6 - bits)) & 0x3f];
    out += '&' + enc + '-';
    i = j;
  }
  return out;
}

/** A mailbox name in a response (LIST, STATUS...): mUTF-7 unless UTF8=ACCEPT, then astring. */
export function encodeMailbox(name: string, opts: EncodeOptions = {}): string {
  if (name.toUpperCase() === 'INBOX') return 'INBOX';
  return astring(opts.utf8 ? name : encodeModifiedUtf7(name), opts);
}

// ---- flags, dates ----

/** `(\Seen $Label)`: flags are atoms (system flags with their backslash). */
export function encodeFlags(flags: readonly string[]): string {
  for (const f of flags) {
    const bare = f.startsWith('\\') ? f.slice(1) : f;
    if (bare === '*' && f === '\\*') continue; // PERMANENTFLAGS
    if (bare.length === 0 || /[\x00-\x20\x7f-\uffff(){%*"\\\]]/.test(bare)) throw new TypeError(`not a valid flag: ${JSON.stringify(f)}`);
  }
  return `(${flags.join(' ')})`;
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/**
 * INTERNALDATE: `"17-Jul-1996 02:44:25 -0700"` with its quotes, in the zone `offsetMinutes` east
 * of UTC. RFC 3501's date-day-fixed pads the day with a space: `" 7-Jul-1996 ..."`.
 */
export function encodeInternalDate(date: Date, offsetMinutes = 0): string {
  const t = date.getTime();
  if (Number.isNaN(t)) throw new TypeError('invalid date');
  const d = new Date(t + offsetMinutes * 60_000);
  const day = String(d.getUTCDate()).padStart(2, ' ');
  const sign = offsetMinutes < 0 ? '-' : '+';
  const off = Math.abs(offsetMinutes);
  return `"${day}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} ${sign}${pad2(Math.floor(off / 60))}${pad2(off % 60)}"`;
}

// ---- ENVELOPE (RFC 3501 7.4.2) ----

function encodeAddress(a: Address, opts: EncodeOptions): string {
  return `(${nstring(a.name, opts)} ${nstring(a.adl, opts)} ${nstring(a.mailbox, opts)} ${nstring(a.host, opts)})`;
}

function encodeAddressList(list: Address[] | null, opts: EncodeOptions): string {
  if (!list || list.length === 0) return 'NIL';
  return '(' + list.map((a) => encodeAddress(a, opts)).join('') + ')';
}

/**
 * `(date subject from sender reply-to to cc bcc in-reply-to message-id)`. Header values go out as
 * stored (raw, RFC 2047 encoded words untouched); addresses as `(name adl mailbox host)`.
 */
export function encodeEnvelope(env: Envelope, opts: EncodeOptions = {}): string {
  return (
    '(' +
    [
      nstring(env.date, opts),
      nstring(env.subject, opts),
      encodeAddressList(env.from, opts),
      encodeAddressList(env.sender, opts),
      encodeAddressList(env.replyTo, opts),
      encodeAddressList(env.to, opts),
      encodeAddressList(env.cc, opts),
      encodeAddressList(env.bcc, opts),
      nstring(env.inReplyTo, opts),
      nstring(env.messageId, opts),
    ].join(' ') +
    ')'
  );
}

// ---- BODY / BODYSTRUCTURE (RFC 3501 7.4.2, 9: body) ----

function encodeParams(params: Params, opts: EncodeOptions): string {
  if (params.length === 0) return 'NIL';
  return '(' + params.map(([k, v]) => `${encodeString(k.toUpperCase(), opts)} ${encodeString(v, opts)}`).join(' ') + ')';
}

function encodeDisposition(part: BodyPart, opts: EncodeOptions): string {
  const d = part.disposition;
  return d ? `(${encodeString(d.type.toUpperCase(), opts)} ${encodeParams(d.params, opts)})` : 'NIL';
}

function encodeLanguage(part: BodyPart, opts: EncodeOptions): string {
  const l = part.language;
  if (!l || l.length === 0) return 'NIL';
  return '(' + l.map((x) => encodeString(x, opts)).join(' ') + ')';
}

const EMPTY_ENVELOPE: Envelope = { date: null, subject: null, from: null, sender: null, replyTo: null, to: null, cc: null, bcc: null, inReplyTo: null, messageId: null };

/**
 * BODY (`extensible` false) or BODYSTRUCTURE (`extensible` true) of a part from the store.
 * Type, subtype, encoding, parameter names and the disposition type are sent in upper case as in
 * RFC 3501's examples; values as stored.
 */
export function encodeBodyStructure(part: BodyPart, extensible: boolean, opts: EncodeOptions = {}): string {
  const s = (x: string): string => encodeString(x, opts);
  if (part.type === 'multipart') {
    const children = part.parts && part.parts.length > 0 ? part.parts : null;
    // body-type-mpart needs one body at least: an empty multipart shows as one empty text part.
    const inner = children
      ? children.map((p) => encodeBodyStructure(p, extensible, opts)).join('')
      : `("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0${extensible ? ' NIL NIL NIL NIL' : ''})`;
    let out = `(${inner} ${s(part.subtype.toUpperCase())}`;
    if (extensible) out += ` ${encodeParams(part.params, opts)} ${encodeDisposition(part, opts)} ${encodeLanguage(part, opts)} ${nstring(part.location, opts)}`;
    return out + ')';
  }
  const fields = [
    s(part.type.toUpperCase()),
    s(part.subtype.toUpperCase()),
    encodeParams(part.params, opts),
    nstring(part.id, opts),
    nstring(part.description, opts),
    s(part.encoding.toUpperCase()),
    String(part.size),
  ];
  if (part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global')) {
    // body-type-msg always carries an envelope and a body; an encapsulated message the store did
    // not parse (encoded, or nested too deep) shows an empty envelope and one text part.
    const m = part.message;
    const body = m
      ? encodeBodyStructure(m.body, extensible, opts)
      : `("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" ${part.size} ${part.lines ?? 0}${extensible ? ' NIL NIL NIL NIL' : ''})`;
    fields.push(encodeEnvelope(m ? m.envelope : EMPTY_ENVELOPE, opts), body, String(part.lines ?? 0));
  } else if (part.type === 'text') {
    fields.push(String(part.lines ?? 0));
  }
  if (extensible) fields.push(nstring(part.md5, opts), encodeDisposition(part, opts), encodeLanguage(part, opts), nstring(part.location, opts));
  return '(' + fields.join(' ') + ')';
}

// ---- BODY[section] (RFC 3501 6.4.5) ----

const CRLF = Buffer.from('\r\n');

function isMessagePart(p: BodyPart): boolean {
  return p.type === 'message' && (p.subtype === 'rfc822' || p.subtype === 'global');
}

/**
 * The part a path names, and the message whose header/text HEADER, TEXT and HEADER.FIELDS refer
 * to (null when the part is not a message/rfc822). null when no such part exists.
 */
export function resolvePart(root: BodyPart, path: readonly number[]): { part: BodyPart; message: BodyPart | null } | null {
  if (path.length === 0) return { part: root, message: root };
  // `body` is the body of a message (top level, or encapsulated): its children are its parts
  // when it is multipart, otherwise it is itself part 1.
  let body: BodyPart = root;
  let isMessageBody = true;
  let part: BodyPart | null = null;
  for (const n of path) {
    if (body.type === 'multipart') {
      const child = body.parts?.[n - 1];
      if (!child) return null;
      part = child;
    } else if (isMessageBody && n === 1) {
      part = body;
    } else {
      return null;
    }
    if (isMessagePart(part) && part.message) {
      body = part.message.body;
      isMessageBody = true;
    } else {
      body = part;
      isMessageBody = false;
    }
  }
  if (!part) return null;
  return { part, message: isMessagePart(part) && part.message ? part.message.body : null };
}

/** Header lines (each with its line break) of `header` and the names they start with. */
function headerLines(header: Buffer): Array<{ name: string | null; bytes: Buffer }> {
  const lines: Array<{ name: string | null; bytes: Buffer }> = [];
  let i = 0;
  while (i < header.length) {
    let nl = header.indexOf(0x0a, i);
    let end = nl < 0 ? header.length : nl + 1;
    // a field continues on lines starting with SP or HTAB
    while (end < header.length && (header[end] === 0x20 || header[end] === 0x09)) {
      nl = header.indexOf(0x0a, end);
      end = nl < 0 ? header.length : nl + 1;
    }
    const bytes = header.subarray(i, end);
    const text = bytes.toString('latin1');
    if (/^\r?\n$/.test(text)) break; // the blank line that ends the header
    const m = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/.exec(text);
    lines.push({ name: m ? m[1]!.toLowerCase() : null, bytes });
    i = end;
  }
  return lines;
}

function withCrlf(b: Buffer): Buffer {
  return b.length > 0 && b[b.length - 1] === 0x0a ? b : Buffer.concat([b, CRLF]);
}

/**
 * The octets of BODY[section]<partial> of a message (`raw`, its structure `root` from the store),
 * or null when the section names no part (send NIL or an empty string, as the server prefers).
 * HEADER.FIELDS and HEADER.FIELDS.NOT keep the matching lines as stored and end with a blank line.
 */
export function sectionBytes(raw: Buffer, root: BodyPart, spec: SectionSpec, partial?: { offset: number; length: number | null } | null): Buffer | null {
  const found = resolvePart(root, spec.path);
  if (!found) return null;
  const { part, message } = found;
  let out: Buffer;
  switch (spec.text) {
    case '':
      // the whole message for [], the part's body (for message/rfc822: the whole encapsulated message)
      out = spec.path.length === 0 ? raw : raw.subarray(part.bodyStart, part.bodyEnd);
      break;
    case 'MIME':
      out = raw.subarray(part.headerStart, part.bodyStart);
      break;
    case 'HEADER':
    case 'TEXT':
    case 'HEADER.FIELDS':
    case 'HEADER.FIELDS.NOT': {
      if (!message) return null; // only a message (top level or message/rfc822) has HEADER and TEXT
      if (spec.text === 'TEXT') {
        out = raw.subarray(message.bodyStart, message.bodyEnd);
        break;
      }
      const header = raw.subarray(message.headerStart, message.bodyStart);
      if (spec.text === 'HEADER') {
        out = header;
        break;
      }
      const names = new Set(spec.fields.map((f) => f.toLowerCase()));
      const not = spec.text === 'HEADER.FIELDS.NOT';
      const picked = headerLines(header)
        .filter((l) => l.name !== null && names.has(l.name) !== not)
        .map((l) => withCrlf(l.bytes));
      out = Buffer.concat([...picked, CRLF]);
      break;
    }
  }
  return applyPartial(out, partial);
}

/** The `<offset.length>` slice of a FETCH item (BODY[]<>, BINARY[]<>); the whole when null. */
export function applyPartial(b: Buffer, partial?: { offset: number; length: number | null } | null): Buffer {
  if (!partial) return b;
  const start = Math.min(partial.offset, b.length);
  return b.subarray(start, partial.length === null ? b.length : Math.min(b.length, start + partial.length));
}

/** The section text as a response names it: `1.2.HEADER.FIELDS (From To)`. */
export function formatSection(spec: SectionSpec): string {
  const parts: string[] = spec.path.map(String);
  if (spec.text) parts.push(spec.text);
  let s = parts.join('.');
  if (spec.text === 'HEADER.FIELDS' || spec.text === 'HEADER.FIELDS.NOT') s += ` (${spec.fields.map((f) => astring(f)).join(' ')})`;
  return s;
}

/** `BODY[section]<origin>` as the data item of a FETCH response (`<origin>` only for partials). */
export function sectionLabel(spec: SectionSpec, partial?: { offset: number; length: number | null } | null): string {
  return `BODY[${formatSection(spec)}]${partial ? `<${partial.offset}>` : ''}`;
}

/**
 * Message octets as a literal for FETCH: `{n}CRLF` and the bytes, or NIL. A literal may not hold
 * NUL (RFC 3501 9: CHAR8), so a binary part's NULs go out as 0x80, octet for octet (the size
 * stays true); BINARY[] gives the exact octets.
 */
export function literalBytes(b: Buffer | null): Buffer {
  if (b === null) return Buffer.from('NIL');
  let body = b;
  if (b.includes(0)) {
    body = Buffer.from(b);
    for (let i = body.indexOf(0); i >= 0; i = body.indexOf(0, i + 1)) body[i] = 0x80;
  }
  return Buffer.concat([Buffer.from(`{${b.length}}\r\n`), body]);
}

// ---- sequence sets ----

/** Sorted, merged `2,10:11` from numbers in any order; empty input gives ''. */
export function encodeSequenceSet(nums: Iterable<number>): string {
  const sorted = [...new Set(nums)].sort((a, b) => a - b);
  const out: string[] = [];
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    out.push(i === j ? String(sorted[i]) : `${sorted[i]}:${sorted[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/**
 * BINARY[path] (RFC 3516): a leaf part's body with its transfer encoding undone; the whole
 * message for an empty path; a multipart or message part as stored. null: no such part;
 * 'unknown-cte': an encoding fe cannot undo.
 */
export function binarySection(raw: Buffer, root: BodyPart, path: readonly number[]): Buffer | null | 'unknown-cte' {
  if (path.length === 0) return raw;
  const found = resolvePart(root, path);
  if (!found) return null;
  const body = raw.subarray(found.part.bodyStart, found.part.bodyEnd);
  if (found.part.type === 'multipart' || found.message) return body;
  return decodeTransferEncoding(body, found.part.encoding) ?? 'unknown-cte';
}

/** As literalBytes, but literal8 (`~{n}`, RFC 3516) when the octets contain NUL. */
export function literal8Bytes(b: Buffer | null): Buffer {
  if (b === null || !b.includes(0)) return literalBytes(b);
  return Buffer.concat([Buffer.from(`~{${b.length}}\r\n`), b]);
}
