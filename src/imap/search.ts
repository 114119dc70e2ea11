// SEARCH (RFC 3501 6.4.4): key parsing into an AST and evaluation over a message view, with
// CONDSTORE's MODSEQ key (RFC 7162 3.1.5), SEARCHRES's "$" (RFC 5182), ESEARCH's RETURN options
// and result formatting (RFC 4731), WITHIN's OLDER/YOUNGER (RFC 5032).

import { encodeSequenceSet } from './encode.js';
import { fold } from '../store/fulltext.js';
import { ImapSyntaxError, MONTHS, STAR, parseRawSequenceSet, type RawSequenceSet, type Token } from './parser.js';

/** A calendar day: days since 1970-01-01. */
export type Day = number;

export type SearchKey =
  | { type: 'all' }
  | { type: 'flag'; flag: string; set: boolean } // ANSWERED, UNSEEN, KEYWORD x, UNKEYWORD x, ...
  | { type: 'new' } // RECENT UNSEEN
  | { type: 'seq'; set: RawSequenceSet | '$' }
  | { type: 'uid'; set: RawSequenceSet | '$' }
  | { type: 'header'; field: string; value: string } // FROM, TO, CC, BCC, SUBJECT, HEADER
  | { type: 'body'; value: string }
  | { type: 'text'; value: string }
  | { type: 'date'; field: 'internal' | 'sent'; op: 'before' | 'on' | 'since'; day: Day }
  | { type: 'size'; op: 'larger' | 'smaller'; n: number }
  | { type: 'age'; op: 'older' | 'younger'; seconds: number }
  | { type: 'modseq'; modseq: number; entry: { name: string; kind: 'priv' | 'shared' | 'all' } | null }
  | { type: 'not'; key: SearchKey }
  | { type: 'or'; a: SearchKey; b: SearchKey }
  | { type: 'and'; keys: SearchKey[] };

export type ReturnOption = 'MIN' | 'MAX' | 'ALL' | 'COUNT' | 'SAVE';

export interface SearchCommand {
  /** RETURN (...) given (ESEARCH): the options, ALL when the list was empty. null: plain SEARCH. */
  returns: ReturnOption[] | null;
  charset: 'US-ASCII' | 'UTF-8';
  key: SearchKey;
  /** Whether a MODSEQ key is used: the response then carries the highest MODSEQ (RFC 7162). */
  usesModseq: boolean;
}

/** What the evaluator needs of one message. */
export interface SearchMessage {
  seq: number;
  uid: number;
  /** Including \Recent when the session has it recent. */
  flags: readonly string[];
  internalDate: Date;
  /** Date: header, or null. */
  sentDate: Date | null;
  /** The calendar day the Date: header names in its own zone (SENTBEFORE/SENTON/SENTSINCE), if known. */
  sentDay?: Day | null;
  size: number;
  modseq: number;
  /** Lower-case field name -> decoded (RFC 2047) values, one per occurrence. */
  headers: ReadonlyMap<string, readonly string[]>;
  /**
   * The stored search text of an indexed header (subject, from, to, cc, bcc), or null when the
   * field is not indexed; lets SEARCH skip loading the message. An absent field reads as ''.
   */
  indexedHeader?(field: string): string | null;
  /**
   * BODY/TEXT answered by the full-text index: whether the message matches, or null when its
   * body is not indexed (then body()/text() are searched).
   */
  fullText?(kind: 'body' | 'text', value: string): boolean | null;
  /** Decoded body text (BODY). */
  body(): string;
  /** Decoded header and body text (TEXT). */
  text(): string;
}

export interface SearchContext {
  /** Largest sequence number and UID in the mailbox, for "*". */
  maxSeq: number;
  maxUid: number;
  /** UIDs of the saved result (SEARCHRES "$"). */
  saved?: ReadonlySet<number>;
  /** Zone for BEFORE/ON/SINCE on the internal date, minutes east of UTC (default 0). */
  zoneMinutes?: number;
  /** For OLDER/YOUNGER (default: now). */
  now?: Date;
}

export class SearchError extends ImapSyntaxError {}

const SYSTEM_FLAGS: Record<string, [string, boolean]> = {
  ANSWERED: ['\\Answered', true],
  DELETED: ['\\Deleted', true],
  DRAFT: ['\\Draft', true],
  FLAGGED: ['\\Flagged', true],
  RECENT: ['\\Recent', true],
  SEEN: ['\\Seen', true],
  UNANSWERED: ['\\Answered', false],
  UNDELETED: ['\\Deleted', false],
  UNDRAFT: ['\\Draft', false],
  UNFLAGGED: ['\\Flagged', false],
  UNSEEN: ['\\Seen', false],
  OLD: ['\\Recent', false],
};

const STRING_HEADERS: Record<string, string> = { FROM: 'from', TO: 'to', CC: 'cc', BCC: 'bcc', SUBJECT: 'subject' };
const DATE_KEYS: Record<string, ['internal' | 'sent', 'before' | 'on' | 'since']> = {
  BEFORE: ['internal', 'before'],
  ON: ['internal', 'on'],
  SINCE: ['internal', 'since'],
  SENTBEFORE: ['sent', 'before'],
  SENTON: ['sent', 'on'],
  SENTSINCE: ['sent', 'since'],
};

const MAX_KEY_DEPTH = 32;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** `1-Feb-1994` (date-text, from an atom or a quoted string) -> Day. */
export function parseSearchDate(s: string): Day {
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(s);
  const month = m ? MONTHS.findIndex((x) => x.toLowerCase() === m[2]!.toLowerCase()) : -1;
  if (!m || month < 0) throw new SearchError(`invalid date "${s.slice(0, 20)}"`);
  const day = Number(m[1]);
  const ms = Date.UTC(Number(m[3]), month, day);
  if (day < 1 || new Date(ms).getUTCDate() !== day) throw new SearchError(`invalid date "${s}"`);
  return Math.floor(ms / 86_400_000);
}

class Parser {
  i = 0;
  usesModseq = false;
  constructor(
    readonly toks: Token[],
    readonly charset: 'US-ASCII' | 'UTF-8',
  ) {}

  atEnd(): boolean {
    return this.i >= this.toks.length;
  }

  take(what: string): Token {
    const t = this.toks[this.i++];
    if (!t) throw new SearchError(`missing ${what}`);
    return t;
  }

  astring(what: string): string {
    const t = this.take(what);
    if (t.type === 'atom' && t.section === undefined) return t.value;
    if (t.type === 'nil') return 'NIL';
    if (t.type !== 'string') throw new SearchError(`${what} must be a string`);
    if (this.charset === 'US-ASCII' && t.bytes.some((b) => b >= 0x80)) throw new SearchError('8-bit text with CHARSET US-ASCII', 'BADCHARSET');
    try {
      return utf8.decode(t.bytes);
    } catch {
      throw new SearchError('text is not valid UTF-8', 'BADCHARSET');
    }
  }

  atom(what: string): string {
    const t = this.take(what);
    if (t.type !== 'atom' || t.section !== undefined) throw new SearchError(`invalid ${what}`);
    return t.value;
  }

  number(what: string, max = 0xffffffff): number {
    const s = this.atom(what);
    if (!/^\d{1,20}$/.test(s) || Number(s) > max) throw new SearchError(`invalid ${what} "${s.slice(0, 20)}"`);
    return Number(s);
  }

  keys(depth: number): SearchKey[] {
    const out: SearchKey[] = [];
    while (!this.atEnd()) out.push(this.key(depth));
    return out;
  }

  key(depth: number): SearchKey {
    if (depth > MAX_KEY_DEPTH) throw new SearchError('search keys nested too deep');
    const t = this.take('search key');
    if (t.type === 'list') {
      if (t.items.length === 0) throw new SearchError('empty parenthesised search key');
      const sub = new Parser(t.items, this.charset);
      const keys = sub.keys(depth + 1);
      this.usesModseq ||= sub.usesModseq;
      return keys.length === 1 ? keys[0]! : { type: 'and', keys };
    }
    if (t.type !== 'atom' || t.section !== undefined) throw new SearchError('invalid search key');
    const name = t.value.toUpperCase();
    if (/^[\d*$]/.test(name)) return { type: 'seq', set: parseRawSequenceSet(t.value) };
    const sys = SYSTEM_FLAGS[name];
    if (sys) return { type: 'flag', flag: sys[0], set: sys[1] };
    const header = STRING_HEADERS[name];
    if (header) return { type: 'header', field: header, value: this.astring(name) };
    const date = DATE_KEYS[name];
    if (date) {
      const d = this.take('date');
      const s = d.type === 'atom' ? d.value : d.type === 'string' && d.literal === null ? d.bytes.toString('latin1') : null;
      if (s === null) throw new SearchError('invalid date');
      return { type: 'date', field: date[0], op: date[1], day: parseSearchDate(s) };
    }
    switch (name) {
      case 'ALL':
        return { type: 'all' };
      case 'NEW':
        return { type: 'new' };
      case 'KEYWORD':
      case 'UNKEYWORD': {
        const flag = this.atom('keyword');
        if (flag.startsWith('\\') || /[\x00-\x20\x7f-\uffff(){%*"\\\]]/.test(flag)) throw new SearchError(`invalid keyword "${flag.slice(0, 40)}"`);
        return { type: 'flag', flag, set: name === 'KEYWORD' };
      }
      case 'HEADER': {
        const field = this.astring('header field name');
        if (!/^[\x21-\x39\x3b-\x7e]+$/.test(field)) throw new SearchError('invalid header field name');
        return { type: 'header', field: field.toLowerCase(), value: this.astring('header value') };
      }
      case 'BODY':
        return { type: 'body', value: this.astring('BODY text') };
      case 'TEXT':
        return { type: 'text', value: this.astring('TEXT text') };
      case 'LARGER':
      case 'SMALLER':
        return { type: 'size', op: name === 'LARGER' ? 'larger' : 'smaller', n: this.number('size') };
      case 'OLDER':
      case 'YOUNGER': {
        const seconds = this.number('interval');
        if (seconds === 0) throw new SearchError('interval must not be zero');
        return { type: 'age', op: name === 'OLDER' ? 'older' : 'younger', seconds };
      }
      case 'UID': {
        const s = this.atom('UID set');
        return { type: 'uid', set: parseRawSequenceSet(s) };
      }
      case 'NOT':
        return { type: 'not', key: this.key(depth + 1) };
      case 'OR': {
        const a = this.key(depth + 1);
        const b = this.key(depth + 1);
        return { type: 'or', a, b };
      }
      case 'MODSEQ': {
        // MODSEQ [entry-name entry-type-req] mod-sequence-valzer
        let entry: { name: string; kind: 'priv' | 'shared' | 'all' } | null = null;
        const next = this.toks[this.i];
        if (next?.type === 'string') {
          const ename = this.astring('entry name');
          const kind = this.atom('entry type').toLowerCase();
          if (kind !== 'priv' && kind !== 'shared' && kind !== 'all') throw new SearchError('invalid MODSEQ entry type');
          entry = { name: ename, kind };
        }
        this.usesModseq = true;
        return { type: 'modseq', modseq: this.number('mod-sequence', Number.MAX_SAFE_INTEGER), entry };
      }
      default:
        throw new SearchError(`unknown search key ${t.value.slice(0, 40)}`);
    }
  }
}

/**
 * Parses the arguments of SEARCH / UID SEARCH (everything after the command name):
 * `[RETURN (opts)] [CHARSET name] key...`. Throws SearchError (code BADCHARSET for an unknown
 * charset or 8-bit text under US-ASCII: answer `NO [BADCHARSET (US-ASCII UTF-8)]`, otherwise
 * BAD). Without CHARSET the charset is US-ASCII (RFC 3501), or UTF-8 once UTF8=ACCEPT is enabled
 * (`opts.utf8`, RFC 6855).
 */
export function parseSearch(args: Token[], opts: { utf8?: boolean } = {}): SearchCommand {
  let i = 0;
  let returns: ReturnOption[] | null = null;
  const first = args[0];
  if (first?.type === 'atom' && first.value.toUpperCase() === 'RETURN') {
    const l = args[1];
    if (l?.type !== 'list') throw new SearchError('RETURN needs a list');
    returns = [];
    for (const o of l.items) {
      const v = o.type === 'atom' ? o.value.toUpperCase() : '';
      if (v !== 'MIN' && v !== 'MAX' && v !== 'ALL' && v !== 'COUNT' && v !== 'SAVE') throw new SearchError('invalid RETURN option');
      if (!returns.includes(v)) returns.push(v);
    }
    if (returns.length === 0) returns.push('ALL'); // RFC 4731: RETURN () means RETURN (ALL)
    i = 2;
  }
  let charset: 'US-ASCII' | 'UTF-8' = 'US-ASCII';
  const cs = args[i];
  if (cs?.type === 'atom' && cs.value.toUpperCase() === 'CHARSET') {
    const name = args[i + 1];
    const v = name?.type === 'atom' ? name.value : name?.type === 'string' ? name.bytes.toString('latin1') : null;
    if (v === null) throw new SearchError('CHARSET needs a name');
    const up = v.toUpperCase();
    if (up === 'UTF-8' || up === 'UTF8') charset = 'UTF-8';
    else if (up === 'US-ASCII' || up === 'ASCII') charset = 'US-ASCII';
    else throw new SearchError(`unsupported charset ${v.slice(0, 40)}`, 'BADCHARSET');
    i += 2;
  } else if (opts.utf8) {
    charset = 'UTF-8';
  }
  const p = new Parser(args.slice(i), charset);
  const keys = p.keys(0);
  if (keys.length === 0) throw new SearchError('missing search key');
  return { returns, charset, key: keys.length === 1 ? keys[0]! : { type: 'and', keys }, usesModseq: p.usesModseq };
}

// ---- evaluation ----

export { fold };

function contains(hay: string, needle: string): boolean {
  return fold(hay).includes(fold(needle));
}

function hasFlag(flags: readonly string[], flag: string): boolean {
  const f = flag.toLowerCase();
  return flags.some((x) => x.toLowerCase() === f);
}

/** Whether `key` looks at flags alone (and ALL), so a session's own flag table can answer it. */
export function flagsOnly(key: SearchKey): boolean {
  switch (key.type) {
    case 'all':
    case 'flag':
    case 'new':
      return true;
    case 'not':
      return flagsOnly(key.key);
    case 'or':
      return flagsOnly(key.a) && flagsOnly(key.b);
    case 'and':
      return key.keys.every(flagsOnly);
    default:
      return false;
  }
}

/** A flags-only key (see flagsOnly) against one message's flags, \Recent among them when it is recent. */
export function matchesFlags(key: SearchKey, flags: readonly string[]): boolean {
  switch (key.type) {
    case 'all':
      return true;
    case 'flag':
      return hasFlag(flags, key.flag) === key.set;
    case 'new':
      return hasFlag(flags, '\\Recent') && !hasFlag(flags, '\\Seen');
    case 'not':
      return !matchesFlags(key.key, flags);
    case 'or':
      return matchesFlags(key.a, flags) || matchesFlags(key.b, flags);
    case 'and':
      return key.keys.every((k) => matchesFlags(k, flags));
    default:
      throw new Error(`not a flag key: ${key.type}`);
  }
}

function inRaw(set: RawSequenceSet | '$', n: number, max: number, saved: ReadonlySet<number> | undefined, uid: number): boolean {
  if (set === '$') return saved ? saved.has(uid) : false;
  for (const [a, b] of set) {
    const x = a === STAR ? max : a;
    const y = b === STAR ? max : b;
    if (n >= Math.min(x, y) && n <= Math.max(x, y)) return true;
  }
  return false;
}

const dayOf = (ms: number): Day => Math.floor(ms / 86_400_000);

function compareDay(day: Day, op: 'before' | 'on' | 'since', want: Day): boolean {
  return op === 'before' ? day < want : op === 'on' ? day === want : day >= want;
}

/** Whether `m` matches `key`. */
export function matches(key: SearchKey, m: SearchMessage, ctx: SearchContext): boolean {
  switch (key.type) {
    case 'all':
      return true;
    case 'flag':
      return hasFlag(m.flags, key.flag) === key.set;
    case 'new':
      return hasFlag(m.flags, '\\Recent') && !hasFlag(m.flags, '\\Seen');
    case 'seq':
      return inRaw(key.set, m.seq, ctx.maxSeq, ctx.saved, m.uid);
    case 'uid':
      return inRaw(key.set, m.uid, ctx.maxUid, ctx.saved, m.uid);
    case 'header': {
      if (key.value !== '' && m.indexedHeader) {
        const text = m.indexedHeader(key.field);
        if (text !== null) return contains(text, key.value);
      }
      const values = m.headers.get(key.field);
      if (!values || values.length === 0) return false;
      return key.value === '' || values.some((v) => contains(v, key.value));
    }
    case 'body':
    case 'text': {
      const indexed = m.fullText?.(key.type, key.value) ?? null;
      if (indexed !== null) return indexed;
      return contains(key.type === 'body' ? m.body() : m.text(), key.value);
    }
    case 'date': {
      if (key.field === 'internal') return compareDay(dayOf(m.internalDate.getTime() + (ctx.zoneMinutes ?? 0) * 60_000), key.op, key.day);
      // RFC 3501 6.4.4: the date of the Date header as written, not its UTC day
      const day = m.sentDay !== undefined ? m.sentDay : m.sentDate === null ? null : dayOf(m.sentDate.getTime());
      return day !== null && compareDay(day, key.op, key.day);
    }
    case 'size':
      return key.op === 'larger' ? m.size > key.n : m.size < key.n;
    case 'age': {
      const ageSeconds = ((ctx.now ?? new Date()).getTime() - m.internalDate.getTime()) / 1000;
      return key.op === 'older' ? ageSeconds >= key.seconds : ageSeconds < key.seconds;
    }
    case 'modseq':
      return m.modseq >= key.modseq;
    case 'not':
      return !matches(key.key, m, ctx);
    case 'or':
      return matches(key.a, m, ctx) || matches(key.b, m, ctx);
    case 'and':
      return key.keys.every((k) => matches(k, m, ctx));
  }
}

/** The messages of `all` that match, in the given order. */
export function search(key: SearchKey, all: Iterable<SearchMessage>, ctx: SearchContext): SearchMessage[] {
  const out: SearchMessage[] = [];
  for (const m of all) if (matches(key, m, ctx)) out.push(m);
  return out;
}

// ---- responses ----

/** `* SEARCH 2 3 6` (RFC 3501 7.2.5), with `(MODSEQ n)` when a MODSEQ key was used and something matched. */
export function formatSearch(nums: readonly number[], highestModseq?: number | null): string {
  let s = '* SEARCH';
  for (const n of nums) s += ` ${n}`;
  if (highestModseq !== undefined && highestModseq !== null && nums.length > 0) s += ` (MODSEQ ${highestModseq})`;
  return s;
}

/**
 * `* ESEARCH (TAG "A1") UID MIN 2 COUNT 3` (RFC 4731). `nums` are the matching numbers (UIDs
 * for UID SEARCH). MIN, MAX and ALL are left out when nothing matched; COUNT is always given.
 */
export function formatEsearch(tag: string, uid: boolean, returns: readonly ReturnOption[], nums: readonly number[], highestModseq?: number | null): string {
  let s = `* ESEARCH (TAG ${quoteTag(tag)})`;
  if (uid) s += ' UID';
  const sorted = [...nums].sort((a, b) => a - b);
  for (const opt of returns) {
    if (opt === 'MIN' && sorted.length > 0) s += ` MIN ${sorted[0]}`;
    else if (opt === 'MAX' && sorted.length > 0) s += ` MAX ${sorted[sorted.length - 1]}`;
    else if (opt === 'ALL' && sorted.length > 0) s += ` ALL ${encodeSequenceSet(sorted)}`;
    else if (opt === 'COUNT') s += ` COUNT ${sorted.length}`;
  }
  if (highestModseq !== undefined && highestModseq !== null && sorted.length > 0) s += ` MODSEQ ${highestModseq}`;
  return s;
}

function quoteTag(tag: string): string {
  return '"' + tag.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}
