// IMAP command reader (RFC 3501 section 9 grammar, plus LITERAL+ RFC 7888, literal8 RFC 3516/4466,
// UTF8=ACCEPT RFC 6855). Pure: no sockets. Fed with Buffers as they arrive, it frames commands
// (lines plus the literals they announce), tokenises them and reports what the server must answer.
//
// Memory is bounded: a line segment (text outside literals) never grows beyond maxLineLength, a
// literal is refused from its announcement alone before any of its octets are kept, and a
// command's total size is capped. After any error the reader skips to the end of the offending
// command (including the octets of a non-synchronising literal it refused) and carries on.

export type Token =
  | AtomToken
  | { type: 'string'; bytes: Buffer; literal: null | 'sync' | 'nonsync'; binary: boolean }
  | { type: 'nil' }
  | { type: 'list'; items: Token[] };

export interface AtomToken {
  type: 'atom';
  value: string;
  /** Present for fetch attributes such as BODY[...], BODY.PEEK[...], BINARY[...]: the tokens between the brackets. */
  section?: Token[];
  /** `<offset.length>` after a section (`length` is null for the `<offset>` form). */
  partial?: { offset: number; length: number | null };
}

export interface Command {
  tag: string;
  /** Upper case; `UID FETCH`, `UID STORE` etc. for the UID forms. */
  command: string;
  args: Token[];
}

export type ReaderEvent =
  | { kind: 'command'; command: Command }
  /** A synchronising literal was accepted: send `+ Ready` (any text) now, its octets follow. */
  | { kind: 'continue'; tag: string; size: number }
  /** Answer `tag status [code] text` (tag `*` when none could be read). The command is dropped. */
  | { kind: 'error'; tag: string | null; status: 'BAD' | 'NO'; code: string | null; text: string }
  /** A raw line requested with nextLine() (AUTHENTICATE responses, IDLE's DONE), without its CRLF. */
  | { kind: 'line'; line: Buffer };

export interface LiteralInfo {
  tag: string;
  command: string;
  size: number;
  nonSync: boolean;
  binary: boolean;
}

export interface ReaderOptions {
  /** Octets of one line outside literals, CRLF excluded. */
  maxLineLength?: number;
  /** Octets of one literal (the APPEND limit). */
  maxLiteralSize?: number;
  /** Octets of one literal in commands other than APPEND. */
  maxOtherLiteralSize?: number;
  /** Octets of a whole command, lines and literals together. */
  maxCommandSize?: number;
  /** Nesting of parenthesised lists (and sections). */
  maxDepth?: number;
  /** Tokens in one command, nested ones included. */
  maxTokens?: number;
  /** UTF-8 in quoted strings and atoms (after ENABLE UTF8=ACCEPT). */
  utf8?: boolean;
  /**
   * Extra check before a literal is accepted (e.g. APPENDLIMIT of the target mailbox): return a
   * refusal to answer instead. Called after the size limits above passed.
   */
  checkLiteral?: (info: LiteralInfo) => { status: 'BAD' | 'NO'; code: string | null; text: string } | null;
}

export class ImapSyntaxError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ImapSyntaxError';
  }
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const MAX_NUMBER = 0xffffffff;

const DEFAULTS = {
  maxLineLength: 64 * 1024,
  maxLiteralSize: 64 * 1024 * 1024,
  maxOtherLiteralSize: 64 * 1024,
  maxDepth: 16,
  maxTokens: 10_000,
};

type Part = { text: Buffer } | { literal: Buffer; kind: 'sync' | 'nonsync'; binary: boolean };

type State =
  | { s: 'line' }
  // octets are kept as they arrive, never reserved from the announcement: a client that announces
  // 25 MiB and sends nothing costs nothing
  | { s: 'literal'; size: number; chunks: Buffer[]; filled: number; kind: 'sync' | 'nonsync'; binary: boolean }
  | { s: 'skip'; left: number } // octets of a refused non-synchronising literal, then discard the rest of the command
  | { s: 'discard' }; // to the end of the current line (and any non-synchronising literal it announces)

/** Announced literal at the end of a line segment: `{n}`, `{n+}`, `~{n}`, `~{n+}`. */
const LITERAL_TAIL = /(~?)\{(\d+)(\+?)\}$/;

function isAtomChar(c: number, utf8: boolean): boolean {
  if (c >= 0x80) return utf8;
  if (c <= 0x20 || c === 0x7f) return false; // SP and CTL
  // atom-specials that end an atom here: ( ) { " ; \ % * ] are allowed (flags, list wildcards,
  // sequence sets, resp-specials in list-mailbox) and are validated by whoever uses the atom.
  return c !== 0x28 && c !== 0x29 && c !== 0x7b && c !== DQUOTE;
}

/** ASTRING-CHAR minus "+": valid in a tag. */
function isTagChar(c: number): boolean {
  if (c <= 0x20 || c >= 0x7f) return false;
  return !'(){%*"\\+'.includes(String.fromCharCode(c));
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

function validUtf8(b: Buffer): boolean {
  try {
    utf8Decoder.decode(b);
    return true;
  } catch {
    return false;
  }
}

export class CommandReader {
  private readonly opts: Required<Omit<ReaderOptions, 'checkLiteral' | 'utf8' | 'maxCommandSize'>> & { maxCommandSize: number };
  private readonly checkLiteral: ReaderOptions['checkLiteral'];
  private utf8: boolean;
  private input: Buffer[] = [];
  private state: State = { s: 'line' };
  private line: Buffer[] = [];
  private lineLen = 0;
  private parts: Part[] = [];
  private commandSize = 0;
  private tag: string | null = null;
  private name: string | null = null;
  private discardTail = Buffer.alloc(0);

  constructor(options: ReaderOptions = {}) {
    const maxLiteralSize = options.maxLiteralSize ?? DEFAULTS.maxLiteralSize;
    this.opts = {
      maxLineLength: options.maxLineLength ?? DEFAULTS.maxLineLength,
      maxLiteralSize,
      maxOtherLiteralSize: options.maxOtherLiteralSize ?? Math.min(DEFAULTS.maxOtherLiteralSize, maxLiteralSize),
      maxCommandSize: options.maxCommandSize ?? maxLiteralSize + 16 * (options.maxLineLength ?? DEFAULTS.maxLineLength),
      maxDepth: options.maxDepth ?? DEFAULTS.maxDepth,
      maxTokens: options.maxTokens ?? DEFAULTS.maxTokens,
    };
    this.checkLiteral = options.checkLiteral;
    this.utf8 = options.utf8 ?? false;
  }

  /** Turn UTF-8 in quoted strings on (ENABLE UTF8=ACCEPT). */
  setUtf8(on: boolean): void {
    this.utf8 = on;
  }

  /** Queue octets from the connection. Nothing is parsed until next() is called. */
  push(chunk: Buffer | Uint8Array | string): void {
    const b = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    if (b.length > 0) this.input.push(b);
  }

  /** All events the queued octets give, in order. Handy when no command changes how the stream is read. */
  drain(): ReaderEvent[] {
    const out: ReaderEvent[] = [];
    for (let e = this.next(); e !== null; e = this.next()) out.push(e);
    return out;
  }

  /** Octets queued by push() and not yet read: the session stops reading its socket above a cap. */
  get pending(): number {
    let n = 0;
    for (const b of this.input) n += b.length;
    return n;
  }

  /** True between commands (nothing of a command read yet). */
  get idle(): boolean {
    return this.state.s === 'line' && this.parts.length === 0 && this.lineLen === 0;
  }

  /** The announced size of the literal being read (0 outside one): a command's deadline grows with it. */
  get literalSize(): number {
    return this.state.s === 'literal' ? this.state.size : 0;
  }

  /**
   * Octets queued but not yet read, removed from the reader: after STARTTLS or COMPRESS the
   * following octets belong to the new layer. Only between commands.
   */
  takeBuffered(): Buffer {
    const b = Buffer.concat(this.input);
    this.input = [];
    return b;
  }

  /** The next event, or null when more input is needed. */
  next(): ReaderEvent | null {
    for (;;) {
      const st = this.state;
      if (st.s === 'literal') {
        if (!this.fillLiteral(st)) return null;
        continue;
      }
      if (!this.skipOrDiscard()) return null;
      const got = this.readLine();
      if (got === null) return null;
      if (got.tooLong) return this.tooLong(got);
      const ev = this.segment(got.line);
      if (ev) return ev;
    }
  }

  /**
   * The next raw line (for AUTHENTICATE continuations and IDLE's DONE), or null when more input is
   * needed. Only between commands.
   */
  nextLine(): ReaderEvent | null {
    if (this.parts.length > 0 || this.state.s === 'literal') throw new Error('nextLine() in the middle of a command');
    if (!this.skipOrDiscard()) return null;
    const got = this.readLine();
    if (got === null) return null;
    if (got.tooLong) return this.tooLong(got);
    this.reset();
    return { kind: 'line', line: got.line };
  }

  // ---- framing ----

  /** Works through skip and discard states; true when the reader is at the start of a line. */
  private skipOrDiscard(): boolean {
    for (;;) {
      const st = this.state;
      if (st.s === 'skip') {
        while (st.left > 0 && this.input.length > 0) {
          const head = this.input[0]!;
          if (head.length <= st.left) {
            st.left -= head.length;
            this.input.shift();
          } else {
            this.input[0] = head.subarray(st.left);
            st.left = 0;
          }
        }
        if (st.left > 0) return false;
        this.state = { s: 'discard' };
        this.discardTail = Buffer.alloc(0);
        continue;
      }
      if (st.s === 'discard') {
        if (!this.discardLine()) return false;
        continue;
      }
      return true;
    }
  }

  /** Error for an over-long line; the rest of it (and what it announces) is skipped. */
  private tooLong(got: { line: Buffer; complete: boolean }): ReaderEvent {
    const ev = this.error('BAD', null, `line longer than ${this.opts.maxLineLength} octets`, got.line);
    if (got.complete) {
      const lit = literalAtEnd(got.line.subarray(-32));
      if (lit?.nonSync) this.state = { s: 'skip', left: lit.size };
    } else {
      // the rest of the line is skipped; its end may announce a literal that began before the cut
      this.state = { s: 'discard' };
      this.discardTail = Buffer.from(got.line.subarray(-32));
    }
    return ev;
  }

  // ---- framing ----

  private reset(): void {
    this.parts = [];
    this.commandSize = 0;
    this.tag = null;
    this.name = null;
    this.line = [];
    this.lineLen = 0;
  }

  private error(status: 'BAD' | 'NO', code: string | null, text: string, line: Buffer | null = null): ReaderEvent {
    const ev: ReaderEvent = { kind: 'error', tag: this.tag ?? this.peekTag(line), status, code, text };
    this.reset();
    return ev;
  }

  /** The tag of a command whose first line was too long to keep. */
  private peekTag(line: Buffer | null): string | null {
    const first = this.parts[0];
    const b = first && 'text' in first ? first.text : line;
    if (!b) return null;
    const sp = b.indexOf(SP);
    const t = b.subarray(0, sp < 0 ? Math.min(b.length, 64) : sp);
    if (t.length === 0 || t.length > 64) return null;
    for (const c of t) if (!isTagChar(c)) return null;
    return t.toString('latin1');
  }

  /**
   * A complete line without its CRLF (a lone LF ends a line too), or null for more input. An
   * over-long line is cut short: `tooLong` with `complete` telling whether its end was read.
   */
  private readLine(): { line: Buffer; tooLong: boolean; complete: boolean } | null {
    const max = this.opts.maxLineLength;
    while (this.input.length > 0) {
      const head = this.input[0]!;
      const nl = head.indexOf(LF);
      const take = nl < 0 ? head.length : nl;
      // +1 allows for the CR of a CRLF split from its LF
      if (this.lineLen + take > max + 1) {
        const room = max + 1 - this.lineLen;
        this.line.push(head.subarray(0, room));
        const line = Buffer.concat(this.line); // at most max + 1 octets
        this.line = [];
        this.lineLen = 0;
        this.input[0] = head.subarray(room);
        if (this.input[0]!.length === 0) this.input.shift();
        return { line, tooLong: true, complete: false };
      }
      this.line.push(head.subarray(0, take));
      this.lineLen += take;
      if (nl < 0) {
        this.input.shift();
        continue;
      }
      this.input[0] = head.subarray(nl + 1);
      if (this.input[0]!.length === 0) this.input.shift();
      let line = Buffer.concat(this.line); // own copy: the caller may reuse its chunks
      this.line = [];
      this.lineLen = 0;
      if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
      return { line, tooLong: line.length > max, complete: true };
    }
    return null;
  }

  /** Skips to the end of the current line; follows non-synchronising literals it announces. */
  private discardLine(): boolean {
    while (this.input.length > 0) {
      const head = this.input[0]!;
      const nl = head.indexOf(LF);
      const upto = nl < 0 ? head.length : nl;
      if (upto > 0) this.discardTail = Buffer.concat([this.discardTail, head.subarray(Math.max(0, upto - 32), upto)]).subarray(-32);
      if (nl < 0) {
        this.input.shift();
        continue;
      }
      this.input[0] = head.subarray(nl + 1);
      if (this.input[0]!.length === 0) this.input.shift();
      let tail = this.discardTail;
      if (tail.length > 0 && tail[tail.length - 1] === CR) tail = tail.subarray(0, tail.length - 1);
      this.discardTail = Buffer.alloc(0);
      const m = LITERAL_TAIL.exec(tail.toString('latin1'));
      if (m && m[3] === '+') {
        // The client sends these octets without waiting: they are part of the dropped command.
        this.state = { s: 'skip', left: Number(m[2]) };
        return true;
      }
      this.state = { s: 'line' };
      this.reset();
      return true;
    }
    return false;
  }

  private fillLiteral(st: { size: number; chunks: Buffer[]; filled: number; kind: 'sync' | 'nonsync'; binary: boolean }): boolean {
    while (st.filled < st.size && this.input.length > 0) {
      const head = this.input[0]!;
      const n = Math.min(head.length, st.size - st.filled);
      st.chunks.push(head.subarray(0, n));
      st.filled += n;
      this.input[0] = head.subarray(n);
      if (this.input[0]!.length === 0) this.input.shift();
    }
    if (st.filled < st.size) return false;
    const literal = Buffer.concat(st.chunks, st.size); // own copy: the caller may reuse its chunks
    st.chunks = [];
    this.parts.push({ literal, kind: st.kind, binary: st.binary });
    this.state = { s: 'line' };
    return true;
  }

  /** Handles one complete line segment; returns an event or null to read on. */
  private segment(text: Buffer): ReaderEvent | null {
    if (this.parts.length === 0) {
      if (text.length === 0) return null; // a stray empty line between commands is ignored
      const sp = text.indexOf(SP);
      const tagBytes = text.subarray(0, sp < 0 ? text.length : sp);
      if (tagBytes.length === 0 || !tagBytes.every(isTagChar)) {
        this.tag = null;
        return this.finishWithError(text, 'BAD', null, 'missing or invalid tag');
      }
      this.tag = tagBytes.toString('latin1');
      const rest = sp < 0 ? Buffer.alloc(0) : text.subarray(sp + 1);
      const nameEnd = rest.indexOf(SP);
      const name = rest.subarray(0, nameEnd < 0 ? rest.length : nameEnd).toString('latin1').toUpperCase();
      this.name = /^[A-Z0-9][A-Z0-9._-]*$/.test(name) ? name : null;
    }
    this.commandSize += text.length + 2;
    this.parts.push({ text });
    const lit = literalAtEnd(text);
    if (lit === null) {
      if (this.commandSize > this.opts.maxCommandSize) return this.error('BAD', 'TOOBIG', 'command too long');
      const parts = this.parts;
      const tag = this.tag!;
      this.reset();
      try {
        return { kind: 'command', command: tokenize(tag, parts, this.opts, this.utf8) };
      } catch (e) {
        if (!(e instanceof ImapSyntaxError)) throw e;
        return { kind: 'error', tag, status: 'BAD', code: e.code, text: e.message };
      }
    }
    const isAppend = this.name === 'APPEND';
    const limit = isAppend ? this.opts.maxLiteralSize : this.opts.maxOtherLiteralSize;
    const refuse = (status: 'BAD' | 'NO', code: string | null, msg: string): ReaderEvent => {
      const ev = this.error(status, code, msg);
      // The client does not send a synchronising literal we refuse; a non-synchronising one is
      // on its way and is skipped without being kept.
      this.state = lit.nonSync ? { s: 'skip', left: lit.size } : { s: 'line' };
      return ev;
    };
    if (lit.size > limit) return refuse(isAppend ? 'NO' : 'BAD', 'TOOBIG', `literal of ${lit.size} octets exceeds the limit of ${limit}`);
    if (this.commandSize + lit.size > this.opts.maxCommandSize) return refuse('BAD', 'TOOBIG', 'command too long');
    if (this.checkLiteral) {
      const r = this.checkLiteral({ tag: this.tag!, command: this.name ?? '', size: lit.size, nonSync: lit.nonSync, binary: lit.binary });
      if (r) return refuse(r.status, r.code, r.text);
    }
    this.commandSize += lit.size;
    this.state = { s: 'literal', size: lit.size, chunks: [], filled: 0, kind: lit.nonSync ? 'nonsync' : 'sync', binary: lit.binary };
    if (!lit.nonSync) return { kind: 'continue', tag: this.tag!, size: lit.size };
    return null;
  }

  /** Error on a line that may announce a literal: skip that literal's octets if they come anyway. */
  private finishWithError(text: Buffer, status: 'BAD' | 'NO', code: string | null, msg: string): ReaderEvent {
    const lit = literalAtEnd(text);
    const ev = this.error(status, code, msg);
    if (lit?.nonSync) this.state = { s: 'skip', left: lit.size };
    return ev;
  }
}

/** A literal announced at the end of a line segment, outside a quoted string. */
function literalAtEnd(text: Buffer): { size: number; nonSync: boolean; binary: boolean } | null {
  if (text.length < 3 || text[text.length - 1] !== 0x7d) return null;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === BACKSLASH) i++;
      else if (c === DQUOTE) quoted = false;
    } else if (c === DQUOTE) quoted = true;
  }
  if (quoted) return null;
  const m = LITERAL_TAIL.exec(text.subarray(Math.max(0, text.length - 24)).toString('latin1'));
  if (!m) return null;
  // Sizes beyond 32 bits are refused through the size limit, never parsed exactly.
  const size = m[2]!.length > 15 ? Number.MAX_SAFE_INTEGER : Number(m[2]);
  return { size, nonSync: m[3] === '+', binary: m[1] === '~' };
}

// ---- tokeniser over the framed command ----

class Cursor {
  idx = 0;
  pos = 0;
  tokens = 0;
  constructor(
    readonly parts: Part[],
    readonly opts: { maxDepth: number; maxTokens: number },
    readonly utf8: boolean,
  ) {}
  get text(): Buffer {
    const p = this.parts[this.idx];
    return p && 'text' in p ? p.text : Buffer.alloc(0);
  }
  peek(): number | undefined {
    return this.text[this.pos];
  }
  atEnd(): boolean {
    return this.idx >= this.parts.length - 1 && this.pos >= this.text.length;
  }
  count(): void {
    if (++this.tokens > this.opts.maxTokens) throw new ImapSyntaxError(`more than ${this.opts.maxTokens} tokens`);
  }
}

function tokenize(tag: string, parts: Part[], opts: { maxDepth: number; maxTokens: number }, utf8: boolean): Command {
  const cur = new Cursor(parts, opts, utf8);
  // tag SP command: the tag was validated while framing
  cur.pos = Buffer.byteLength(tag, 'latin1');
  if (cur.peek() !== SP) throw new ImapSyntaxError('missing command');
  cur.pos++;
  const nameTok = readAtomRaw(cur);
  if (!nameTok || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(nameTok)) throw new ImapSyntaxError('missing or invalid command name');
  let command = nameTok.toUpperCase();
  const args: Token[] = [];
  if (command === 'UID') {
    if (cur.peek() !== SP) throw new ImapSyntaxError('UID needs a command');
    cur.pos++;
    const sub = readAtomRaw(cur);
    if (!sub || !/^[A-Za-z]+$/.test(sub)) throw new ImapSyntaxError('UID needs a command');
    command = `UID ${sub.toUpperCase()}`;
  }
  while (!cur.atEnd()) {
    if (cur.peek() !== SP) throw new ImapSyntaxError('expected a space between arguments');
    cur.pos++;
    if (cur.atEnd()) break; // tolerate one trailing space
    args.push(readToken(cur, 0, null));
  }
  return { tag, command, args };
}

function readAtomRaw(cur: Cursor): string {
  const t = cur.text;
  const start = cur.pos;
  while (cur.pos < t.length && isAtomChar(t[cur.pos]!, false)) cur.pos++;
  return t.subarray(start, cur.pos).toString('latin1');
}

const SECTION_ATOM = /^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)$/i;

function readToken(cur: Cursor, depth: number, closer: number | null): Token {
  cur.count();
  const t = cur.text;
  const c = t[cur.pos];
  if (c === undefined) throw new ImapSyntaxError('unexpected end of command');
  if (c === 0x28) {
    if (depth + 1 > cur.opts.maxDepth) throw new ImapSyntaxError(`lists nested deeper than ${cur.opts.maxDepth}`);
    cur.pos++;
    return { type: 'list', items: readSequence(cur, depth + 1, 0x29) };
  }
  if (c === DQUOTE) return readQuoted(cur);
  if (c === 0x7b || (c === 0x7e && t[cur.pos + 1] === 0x7b)) return readLiteral(cur);
  if (c === 0x29 || c === 0x5d) throw new ImapSyntaxError(`unexpected "${String.fromCharCode(c)}"`);
  return readAtom(cur, depth, closer);
}

/** Tokens separated by SP up to `close` (not included), which is consumed. */
function readSequence(cur: Cursor, depth: number, close: number): Token[] {
  const items: Token[] = [];
  for (;;) {
    const c = cur.peek();
    if (c === close) {
      cur.pos++;
      return items;
    }
    if (c === undefined) throw new ImapSyntaxError(close === 0x29 ? 'unterminated list' : 'unterminated section');
    if (items.length > 0) {
      if (c !== SP) throw new ImapSyntaxError('expected a space in list');
      cur.pos++;
      if (cur.peek() === close) throw new ImapSyntaxError('space before the end of a list');
    }
    items.push(readToken(cur, depth, close));
  }
}

function readQuoted(cur: Cursor): Token {
  const t = cur.text;
  cur.pos++;
  const out: number[] = [];
  let eightBit = false;
  for (;;) {
    const c = t[cur.pos];
    if (c === undefined) throw new ImapSyntaxError('unterminated quoted string');
    cur.pos++;
    if (c === DQUOTE) break;
    if (c === BACKSLASH) {
      const d = t[cur.pos];
      if (d !== DQUOTE && d !== BACKSLASH) throw new ImapSyntaxError('invalid escape in quoted string');
      out.push(d);
      cur.pos++;
      continue;
    }
    if (c === 0 || c === CR || c === LF) throw new ImapSyntaxError('invalid character in quoted string');
    if (c >= 0x80) {
      if (!cur.utf8) throw new ImapSyntaxError('8-bit character in quoted string');
      eightBit = true;
    }
    out.push(c);
  }
  const bytes = Buffer.from(out);
  if (eightBit && !validUtf8(bytes)) throw new ImapSyntaxError('invalid UTF-8 in quoted string');
  return { type: 'string', bytes, literal: null, binary: false };
}

function readLiteral(cur: Cursor): Token {
  const t = cur.text;
  const m = LITERAL_TAIL.exec(t.subarray(cur.pos).toString('latin1'));
  const part = cur.parts[cur.idx + 1];
  // A literal announcement must end its line segment; framing put the octets in the next part.
  if (!m || m.index !== 0 || !part || !('literal' in part)) throw new ImapSyntaxError('literal not at the end of a line');
  if (part.literal.length > MAX_NUMBER) throw new ImapSyntaxError('literal too long');
  if (!part.binary && part.literal.includes(0)) throw new ImapSyntaxError('NUL in a literal (use literal8)');
  cur.idx += 2;
  cur.pos = 0;
  return { type: 'string', bytes: part.literal, literal: part.kind, binary: part.binary };
}

function readAtom(cur: Cursor, depth: number, closer: number | null): Token {
  const t = cur.text;
  const start = cur.pos;
  while (cur.pos < t.length) {
    const c = t[cur.pos]!;
    if (!isAtomChar(c, cur.utf8)) break;
    if (c === 0x5d && closer === 0x5d) break; // "]" ends a section
    if (c === 0x5b && SECTION_ATOM.test(t.subarray(start, cur.pos).toString('latin1'))) break;
    cur.pos++;
  }
  if (cur.pos === start) {
    const c = t[cur.pos]!;
    throw new ImapSyntaxError(c >= 0x80 ? '8-bit character outside a string' : `unexpected character 0x${c.toString(16).padStart(2, '0')}`);
  }
  const raw = t.subarray(start, cur.pos);
  if (cur.utf8 && raw.some((b) => b >= 0x80) && !validUtf8(raw)) throw new ImapSyntaxError('invalid UTF-8 in atom');
  const value = raw.toString(cur.utf8 ? 'utf8' : 'latin1');
  if (t[cur.pos] === 0x5b) {
    if (depth + 1 > cur.opts.maxDepth) throw new ImapSyntaxError(`lists nested deeper than ${cur.opts.maxDepth}`);
    cur.pos++;
    const section = readSequence(cur, depth + 1, 0x5d);
    const tok: AtomToken = { type: 'atom', value, section };
    if (cur.peek() === 0x3c) {
      const rest = cur.text.subarray(cur.pos, cur.pos + 32).toString('latin1');
      const m = /^<(\d+)(?:\.(\d+))?>/.exec(rest);
      if (!m) throw new ImapSyntaxError('invalid partial');
      const offset = parseNumber(m[1]!);
      const length = m[2] === undefined ? null : parseNumber(m[2]);
      if (length === 0) throw new ImapSyntaxError('partial length must not be zero');
      tok.partial = { offset, length };
      cur.pos += m[0].length;
    }
    const after = cur.peek();
    if (after !== undefined && after !== SP && after !== 0x29 && after !== closer) throw new ImapSyntaxError('unexpected character after section');
    return tok;
  }
  if (value.length === 3 && value.toUpperCase() === 'NIL') return { type: 'nil' };
  return { type: 'atom', value };
}

function parseNumber(s: string): number {
  if (!/^\d{1,10}$/.test(s)) throw new ImapSyntaxError(`invalid number "${s.slice(0, 20)}"`);
  const n = Number(s);
  if (n > MAX_NUMBER) throw new ImapSyntaxError(`number out of range: ${s}`);
  return n;
}

// ---- helpers for command handlers ----

/** The text of a string, atom (astring) or NIL token ("NIL" as an astring is the mailbox NIL). */
export function asAString(tok: Token | undefined): string | null {
  if (!tok) return null;
  if (tok.type === 'atom') return tok.section === undefined ? tok.value : null;
  if (tok.type === 'nil') return 'NIL';
  if (tok.type === 'string') return tok.bytes.toString('utf8');
  return null;
}

/** The text of a string token only (quoted or literal). */
export function asString(tok: Token | undefined): string | null {
  return tok?.type === 'string' ? tok.bytes.toString('utf8') : null;
}

/** nz-number or number from an atom. */
export function asNumber(tok: Token | undefined, allowZero = false): number | null {
  if (tok?.type !== 'atom' || tok.section || !/^\d{1,20}$/.test(tok.value)) return null;
  const n = Number(tok.value);
  if (!Number.isSafeInteger(n) || (!allowZero && n === 0)) return null;
  return n;
}

// ---- sequence sets (RFC 3501 9: sequence-set) ----

/** `*` in a sequence set; resolved with the largest number in use. */
export const STAR = '*';
export type SeqNumber = number | typeof STAR;
export type RawSequenceSet = Array<[SeqNumber, SeqNumber]>;

export const DEFAULT_MAX_RANGES = 1000;

/** Parses a sequence set without resolving `*`. `$` (SEARCHRES) is returned as the string '$'. */
export function parseRawSequenceSet(text: string, maxRanges = DEFAULT_MAX_RANGES): RawSequenceSet | '$' {
  if (text === '$') return '$';
  if (text.length === 0) throw new ImapSyntaxError('empty sequence set');
  const items = text.split(',');
  if (items.length > maxRanges) throw new ImapSyntaxError(`more than ${maxRanges} ranges in a sequence set`);
  const out: RawSequenceSet = [];
  const num = (s: string): SeqNumber => {
    if (s === '*') return STAR;
    if (!/^[1-9]\d{0,9}$/.test(s)) throw new ImapSyntaxError(`invalid sequence number "${s.slice(0, 20)}"`);
    const n = Number(s);
    if (n > MAX_NUMBER) throw new ImapSyntaxError(`sequence number out of range: ${s}`);
    return n;
  };
  for (const item of items) {
    const colon = item.indexOf(':');
    if (colon < 0) {
      const n = num(item);
      out.push([n, n]);
    } else {
      out.push([num(item.slice(0, colon)), num(item.slice(colon + 1))]);
    }
  }
  return out;
}

/** Resolves `*` to `max` and orders each range low:high ("3:1" is "1:3"). */
export function resolveSequenceSet(raw: RawSequenceSet, max: number): Array<[number, number]> {
  return raw.map(([a, b]) => {
    const x = a === STAR ? max : a;
    const y = b === STAR ? max : b;
    return x <= y ? [x, y] : [y, x];
  });
}

/**
 * `1:*,5,7:9` -> [[1, max], [5, 5], [7, 9]]. `*` is the largest number in use (`max`; 0 in an
 * empty mailbox, which no message matches). Throws ImapSyntaxError beyond `maxRanges` ranges.
 */
export function parseSequenceSet(text: string, max: number, maxRanges = DEFAULT_MAX_RANGES): Array<[number, number]> {
  const raw = parseRawSequenceSet(text, maxRanges);
  if (raw === '$') throw new ImapSyntaxError('"$" needs a saved search result');
  return resolveSequenceSet(raw, max);
}

export function inSequenceSet(set: ReadonlyArray<readonly [number, number]>, n: number): boolean {
  for (const [a, b] of set) if (n >= a && n <= b) return true;
  return false;
}

// ---- FETCH attributes (RFC 3501 6.4.5, 9: fetch-att) ----

export type SectionText = '' | 'HEADER' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT' | 'TEXT' | 'MIME';

export interface SectionSpec {
  /** Part numbers, e.g. [1, 2] for "1.2"; empty for the whole message. */
  path: number[];
  text: SectionText;
  /** Header field names for HEADER.FIELDS and HEADER.FIELDS.NOT, as given. */
  fields: string[];
}

export type FetchItem =
  | { name: 'FLAGS' | 'ENVELOPE' | 'INTERNALDATE' | 'RFC822.SIZE' | 'UID' | 'MODSEQ' | 'BODYSTRUCTURE' | 'BODY' | 'RFC822' | 'RFC822.HEADER' | 'RFC822.TEXT' }
  | { name: 'BODY[]'; peek: boolean; section: SectionSpec; partial: { offset: number; length: number | null } | null }
  | { name: 'BINARY[]' | 'BINARY.SIZE[]'; peek: boolean; path: number[]; partial: { offset: number; length: number | null } | null };

const SIMPLE_ITEMS = new Set(['FLAGS', 'ENVELOPE', 'INTERNALDATE', 'RFC822.SIZE', 'UID', 'MODSEQ', 'BODYSTRUCTURE', 'BODY', 'RFC822', 'RFC822.HEADER', 'RFC822.TEXT']);

const MACROS: Record<string, string[]> = {
  ALL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'],
  FAST: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  FULL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
};

/** The section between brackets: `1.2.HEADER.FIELDS (From To)` as tokens. */
export function parseSection(tokens: Token[]): SectionSpec {
  if (tokens.length === 0) return { path: [], text: '', fields: [] };
  const head = tokens[0]!;
  if (head.type !== 'atom' || head.section) throw new ImapSyntaxError('invalid section');
  const pieces = head.value.toUpperCase().split('.');
  const path: number[] = [];
  while (pieces.length > 0 && /^\d+$/.test(pieces[0]!)) {
    const p = pieces.shift()!;
    if (!/^[1-9]\d{0,9}$/.test(p) || Number(p) > MAX_NUMBER) throw new ImapSyntaxError('invalid section part number');
    path.push(Number(p));
  }
  const text = pieces.join('.');
  const spec: SectionSpec = { path, text: '', fields: [] };
  if (text === '') {
    if (tokens.length !== 1) throw new ImapSyntaxError('invalid section');
    return spec;
  }
  if (text === 'HEADER' || text === 'TEXT' || text === 'MIME') {
    if (tokens.length !== 1) throw new ImapSyntaxError('invalid section');
    if (text === 'MIME' && path.length === 0) throw new ImapSyntaxError('MIME needs a part number');
    spec.text = text;
    return spec;
  }
  if (text === 'HEADER.FIELDS' || text === 'HEADER.FIELDS.NOT') {
    const list = tokens[1];
    if (tokens.length !== 2 || list?.type !== 'list' || list.items.length === 0) throw new ImapSyntaxError(`${text} needs a list of field names`);
    spec.text = text;
    for (const item of list.items) {
      const name = asAString(item);
      if (name === null || item.type === 'nil' || !/^[\x21-\x39\x3b-\x7e]+$/.test(name)) throw new ImapSyntaxError('invalid header field name');
      spec.fields.push(name);
    }
    return spec;
  }
  throw new ImapSyntaxError(`invalid section "${text.slice(0, 40)}"`);
}

function fetchItem(tok: Token): FetchItem {
  if (tok.type !== 'atom') throw new ImapSyntaxError('invalid fetch attribute');
  const name = tok.value.toUpperCase();
  if (tok.section === undefined) {
    if (SIMPLE_ITEMS.has(name)) return { name } as FetchItem;
    throw new ImapSyntaxError(`unknown fetch attribute ${tok.value.slice(0, 40)}`);
  }
  const partial = tok.partial ?? null;
  if (partial && partial.length === null) throw new ImapSyntaxError('partial needs <offset.length>');
  if (name === 'BODY' || name === 'BODY.PEEK') return { name: 'BODY[]', peek: name === 'BODY.PEEK', section: parseSection(tok.section), partial };
  const spec = parseSection(tok.section);
  if (spec.text !== '') throw new ImapSyntaxError('BINARY takes part numbers only');
  if (name === 'BINARY.SIZE') {
    if (partial) throw new ImapSyntaxError('BINARY.SIZE takes no partial');
    return { name: 'BINARY.SIZE[]', peek: true, path: spec.path, partial: null };
  }
  return { name: 'BINARY[]', peek: name === 'BINARY.PEEK', path: spec.path, partial };
}

/** The fetch attribute argument of FETCH: a macro (ALL, FAST, FULL), one attribute, or a list. */
export function parseFetchItems(tok: Token | undefined): FetchItem[] {
  if (!tok) throw new ImapSyntaxError('missing fetch attributes');
  if (tok.type === 'atom' && tok.section === undefined) {
    const macro = MACROS[tok.value.toUpperCase()];
    if (macro) return macro.map((name) => ({ name }) as FetchItem);
  }
  if (tok.type === 'list') {
    if (tok.items.length === 0) throw new ImapSyntaxError('empty fetch attribute list');
    return tok.items.map(fetchItem);
  }
  return [fetchItem(tok)];
}

// ---- mailbox names (RFC 3501 5.1.3 modified UTF-7; RFC 6855 UTF-8) ----

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,';

/**
 * Decodes a mailbox name as the client sent it: modified UTF-7, or UTF-8 when UTF8=ACCEPT is
 * enabled. "INBOX" in any case is INBOX. Throws ImapSyntaxError for malformed names.
 */
export function decodeMailboxName(name: string | Buffer, utf8 = false): string {
  const bytes = typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
  let out: string;
  if (utf8) {
    if (!validUtf8(bytes)) throw new ImapSyntaxError('mailbox name is not valid UTF-8');
    out = bytes.toString('utf8');
  } else {
    out = decodeModifiedUtf7(bytes);
  }
  return out.toUpperCase() === 'INBOX' ? 'INBOX' : out;
}

export function decodeModifiedUtf7(bytes: Buffer): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const c = bytes[i]!;
    if (c < 0x20 || c > 0x7e) throw new ImapSyntaxError('mailbox name has a character outside printable US-ASCII');
    if (c !== 0x26) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    const end = bytes.indexOf(0x2d, i + 1);
    if (end < 0) throw new ImapSyntaxError('unterminated "&" sequence in mailbox name');
    if (end === i + 1) {
      out += '&';
      i += 2;
      continue;
    }
    const b64 = bytes.subarray(i + 1, end).toString('latin1');
    let bits = 0;
    let acc = 0;
    const units: number[] = [];
    for (const ch of b64) {
      const v = B64.indexOf(ch);
      if (v < 0) throw new ImapSyntaxError('invalid modified BASE64 in mailbox name');
      acc = (acc << 6) | v;
      bits += 6;
      if (bits >= 16) {
        bits -= 16;
        units.push((acc >> bits) & 0xffff);
        acc &= (1 << bits) - 1;
      }
    }
    // Leftover bits are padding: fewer than 6 and zero.
    if (bits >= 6 || acc !== 0 || units.length === 0) throw new ImapSyntaxError('invalid modified BASE64 padding in mailbox name');
    let s = '';
    for (let k = 0; k < units.length; k++) {
      const u = units[k]!;
      if (u >= 0xd800 && u <= 0xdbff) {
        const lo = units[k + 1];
        if (lo === undefined || lo < 0xdc00 || lo > 0xdfff) throw new ImapSyntaxError('unpaired surrogate in mailbox name');
        s += String.fromCharCode(u, lo);
        k++;
      } else if (u >= 0xdc00 && u <= 0xdfff) {
        throw new ImapSyntaxError('unpaired surrogate in mailbox name');
      } else {
        if (u >= 0x20 && u <= 0x7e) throw new ImapSyntaxError('printable US-ASCII encoded in modified BASE64');
        s += String.fromCharCode(u);
      }
    }
    out += s;
    i = end + 1;
  }
  return out;
}

// ---- date-time (APPEND, RFC 3501 9) ----

export const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `"17-Jul-1996 02:44:25 -0700"` (without the quotes; day may be space-padded) -> Date, or null. */
export function parseDateTime(s: string): Date | null {
  const m = /^( \d|\d{2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(s);
  if (!m) return null;
  const month = MONTHS.findIndex((x) => x.toLowerCase() === m[2]!.toLowerCase());
  const day = Number(m[1]!.trim());
  const [y, hh, mm, ss, zh, zm] = [m[3], m[4], m[5], m[6], m[8], m[9]].map(Number) as [number, number, number, number, number, number];
  if (month < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59) return null;
  const utc = Date.UTC(y, month, day, hh, mm, ss);
  const check = new Date(Date.UTC(y, month, day));
  if (check.getUTCDate() !== day) return null; // 31-Feb
  const offset = (zh * 60 + zm) * (m[7] === '-' ? -1 : 1);
  return new Date(utc - offset * 60_000);
}
