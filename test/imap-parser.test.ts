// The IMAP command reader: framing (lines, literals, LITERAL+), tokens, limits, recovery after
// errors, chunk-boundary independence, sequence sets, FETCH attributes, mailbox names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CommandReader,
  ImapSyntaxError,
  asAString,
  asNumber,
  decodeMailboxName,
  inSequenceSet,
  parseDateTime,
  parseFetchItems,
  parseRawSequenceSet,
  parseSequenceSet,
  type Command,
  type ReaderEvent,
  type ReaderOptions,
  type Token,
} from '../src/imap/parser.js';
import { encodeModifiedUtf7 } from '../src/imap/encode.js';

function events(input: string | Buffer, opts: ReaderOptions = {}): ReaderEvent[] {
  const r = new CommandReader(opts);
  r.push(typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
  return r.drain();
}

/** Feeds the input in the given pieces, draining after each. */
function eventsSplit(input: Buffer, cuts: number[], opts: ReaderOptions = {}): ReaderEvent[] {
  const r = new CommandReader(opts);
  const out: ReaderEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    r.push(input.subarray(prev, c));
    out.push(...r.drain());
    prev = c;
  }
  return out;
}

function commands(input: string, opts: ReaderOptions = {}): Command[] {
  const ev = events(input, opts);
  for (const e of ev) if (e.kind === 'error') assert.fail(`unexpected error: ${e.text}`);
  return ev.filter((e): e is Extract<ReaderEvent, { kind: 'command' }> => e.kind === 'command').map((e) => e.command);
}

function one(input: string, opts: ReaderOptions = {}): Command {
  const c = commands(input, opts);
  assert.equal(c.length, 1);
  return c[0]!;
}

const atom = (value: string): Token => ({ type: 'atom', value });
const str = (s: string, literal: null | 'sync' | 'nonsync' = null, binary = false): Token => ({ type: 'string', bytes: Buffer.from(s, 'latin1'), literal, binary });
const list = (...items: Token[]): Token => ({ type: 'list', items });
const NIL: Token = { type: 'nil' };

function errorOf(ev: ReaderEvent | undefined): Extract<ReaderEvent, { kind: 'error' }> {
  assert.ok(ev && ev.kind === 'error', `expected an error, got ${JSON.stringify(ev)}`);
  return ev;
}

test('simple commands: tag, upper-cased command, no args; LF-only lines and stray empty lines', () => {
  assert.deepEqual(one('a1 noop\r\n'), { tag: 'a1', command: 'NOOP', args: [] });
  assert.deepEqual(commands('\r\nx.1 Capability\n\r\n'), [{ tag: 'x.1', command: 'CAPABILITY', args: [] }]);
  // "]" is an ASTRING-CHAR and so valid in a tag
  assert.equal(one('a]1 NOOP\r\n').tag, 'a]1');
});

test('quoted strings: escapes, empty string, specials inside', () => {
  const c = one('A2 LOGIN "us er" "p\\\\a\\"ss(){}%*"\r\n');
  assert.deepEqual(c.args, [str('us er'), str('p\\a"ss(){}%*')]);
  assert.deepEqual(one('A3 SELECT ""\r\n').args, [str('')]);
  // a literal announcement inside a quoted string is text, not a literal
  const ev = events('A4 SEARCH SUBJECT "x {3}"\r\n');
  assert.equal(ev.length, 1);
  assert.deepEqual((ev[0] as { command: Command }).command.args, [atom('SUBJECT'), str('x {3}')]);
});

test('synchronising literal: continuation requested, then the rest of the command', () => {
  const r = new CommandReader();
  r.push('A5 LOGIN {4}\r\n');
  assert.deepEqual(r.drain(), [{ kind: 'continue', tag: 'A5', size: 4 }]);
  r.push('fred {6}\r\n');
  assert.deepEqual(r.drain(), [{ kind: 'continue', tag: 'A5', size: 6 }]);
  r.push('sec\r\nt\r\n');
  assert.deepEqual(r.drain(), [{ kind: 'command', command: { tag: 'A5', command: 'LOGIN', args: [str('fred', 'sync'), str('sec\r\nt', 'sync')] } }]);
  assert.ok(r.idle);
});

test('non-synchronising literal (LITERAL+) and literal8: no continuation', () => {
  const ev = events('A6 APPEND Drafts (\\Seen) {11+}\r\nHello\r\nYou!\r\n');
  assert.deepEqual(ev, [{ kind: 'command', command: { tag: 'A6', command: 'APPEND', args: [atom('Drafts'), list(atom('\\Seen')), str('Hello\r\nYou!', 'nonsync')] } }]);
  const bin = events(Buffer.concat([Buffer.from('A7 APPEND Drafts ~{4}\r\n'), Buffer.from([0, 1, 0xff, 0x0a]), Buffer.from('\r\n')]));
  assert.equal(bin[0]!.kind, 'continue');
  assert.deepEqual((bin[1] as { command: Command }).command.args[1], { type: 'string', bytes: Buffer.from([0, 1, 0xff, 0x0a]), literal: 'sync', binary: true });
  // NUL is only allowed in literal8
  const nul = events(Buffer.concat([Buffer.from('A8 APPEND Drafts {2+}\r\n'), Buffer.from([0x61, 0]), Buffer.from('\r\nA9 NOOP\r\n')]));
  assert.equal(errorOf(nul[0]).tag, 'A8');
  assert.equal(nul[1]!.kind, 'command');
  // a zero-length literal is a literal too
  assert.deepEqual(one('A10 LOGIN {0+}\r\n {0+}\r\n\r\n').args, [str('', 'nonsync'), str('', 'nonsync')]);
});

test('literals mid-command and inside lists', () => {
  const c = one('A11 X (a {3+}\r\nb c d (e {1+}\r\n))) f\r\n');
  assert.deepEqual(c.args, [list(atom('a'), str('b c', 'nonsync'), atom('d'), list(atom('e'), str(')', 'nonsync'))), atom('f')]);
});

test('nested lists, empty lists, NIL in any case', () => {
  const c = one('A12 X (a (b (c NIL)) ()) nil Nil\r\n');
  assert.deepEqual(c.args, [list(atom('a'), list(atom('b'), list(atom('c'), NIL)), list()), NIL, NIL]);
  assert.equal(asAString(NIL), 'NIL'); // the mailbox named NIL
});

test('atoms with flags, list wildcards, sequence sets and resp-specials', () => {
  assert.deepEqual(one('A13 STORE 1:*,5 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n').args, [atom('1:*,5'), atom('+FLAGS.SILENT'), list(atom('\\Seen'), atom('\\Deleted'), atom('$Junk'))]);
  assert.deepEqual(one('A14 LIST "" %/*\r\n').args, [str(''), atom('%/*')]);
  assert.deepEqual(one('A15 LIST "" foo]bar\r\n').args, [str(''), atom('foo]bar')]);
  assert.deepEqual(one('A16 SELECT foo[bar]\r\n').args, [atom('foo[bar]')]); // "[" only opens a section after BODY etc.
  assert.deepEqual(one('A17 X \\*\r\n').args, [atom('\\*')]);
  assert.deepEqual(one('A18 uid fetch 1 FLAGS\r\n'), { tag: 'A18', command: 'UID FETCH', args: [atom('1'), atom('FLAGS')] });
});

test('FETCH attributes with sections and partials', () => {
  const c = one('A19 FETCH 1:3 (FLAGS BODY.PEEK[HEADER.FIELDS (From "To")]<0.100> BODY[] body[1.2.mime] BINARY.PEEK[1]<5.10>)\r\n');
  const l = c.args[1]!;
  assert.equal(l.type, 'list');
  const items = (l as { items: Token[] }).items;
  assert.deepEqual(items[1], { type: 'atom', value: 'BODY.PEEK', section: [atom('HEADER.FIELDS'), list(atom('From'), str('To'))], partial: { offset: 0, length: 100 } });
  assert.deepEqual(items[2], { type: 'atom', value: 'BODY', section: [] });
  // the <origin> form (as in responses) is read, but FETCH needs <offset.length>
  const originOnly = one('A20 X BODY[1]<7>\r\n').args[0]!;
  assert.deepEqual(originOnly, { type: 'atom', value: 'BODY', section: [atom('1')], partial: { offset: 7, length: null } });
  assert.throws(() => parseFetchItems(originOnly), /offset\.length/);
  const f = parseFetchItems(l);
  assert.deepEqual(f, [
    { name: 'FLAGS' },
    { name: 'BODY[]', peek: true, section: { path: [], text: 'HEADER.FIELDS', fields: ['From', 'To'] }, partial: { offset: 0, length: 100 } },
    { name: 'BODY[]', peek: false, section: { path: [], text: '', fields: [] }, partial: null },
    { name: 'BODY[]', peek: false, section: { path: [1, 2], text: 'MIME', fields: [] }, partial: null },
    { name: 'BINARY[]', peek: true, path: [1], partial: { offset: 5, length: 10 } },
  ]);
  assert.deepEqual(
    parseFetchItems(atom('fast')).map((x) => x.name),
    ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  );
  assert.deepEqual(
    parseFetchItems(atom('FULL')).map((x) => x.name),
    ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
  );
  const sec = (s: string): Token => (one(`T FETCH 1 ${s}\r\n`).args[1] as Token);
  assert.deepEqual(parseFetchItems(sec('BODY[3.HEADER.FIELDS.NOT (X-A)]')), [{ name: 'BODY[]', peek: false, section: { path: [3], text: 'HEADER.FIELDS.NOT', fields: ['X-A'] }, partial: null }]);
  assert.deepEqual(parseFetchItems(sec('BODY[2.TEXT]')), [{ name: 'BODY[]', peek: false, section: { path: [2], text: 'TEXT', fields: [] }, partial: null }]);
  for (const bad of ['BODY[MIME]', 'BODY[0]', 'BODY[1.X]', 'BODY[HEADER.FIELDS]', 'BODY[HEADER.FIELDS ()]', 'BODY[TEXT (a)]', 'BODY[]<5>', 'BINARY[1.TEXT]', 'ENVELOPES', '()']) {
    assert.throws(() => parseFetchItems(sec(bad)), ImapSyntaxError, bad);
  }
  // section syntax errors are found by the reader
  for (const bad of ['BODY[1', 'BODY[1]<0.0>', 'BODY[1]<a>', 'BODY[1]x', 'BODY[1]<99999999999.1>']) {
    const ev = events(`T1 FETCH 1 ${bad}\r\n`);
    assert.equal(errorOf(ev[0]).tag, 'T1', bad);
  }
});

test('syntax errors answer BAD with the tag, and the next command is read', () => {
  const cases: Array<[string, string | null]> = [
    ['* NOOP', null],
    ['+ NOOP', null],
    ['a{b NOOP', null],
    ['A1', 'A1'],
    ['A1 ', 'A1'],
    ['A1 (NOOP', 'A1'],
    ['A1 X (a b', 'A1'],
    ['A1 X a)', 'A1'],
    ['A1 X ( a)', 'A1'],
    ['A1 X (a )', 'A1'],
    ['A1 X  a', 'A1'],
    ['A1 X a"b"', 'A1'],
    ['A1 X "abc', 'A1'],
    ['A1 X "a\\qb"', 'A1'],
    ['A1 X "nul\x00"', 'A1'],
    ['A1 X "caf\xe9"', 'A1'],
    ['A1 X caf\xe9', 'A1'],
    ['A1 X {3}x', 'A1'],
    ['A1 X {3} a', 'A1'],
    ['A1 UID', 'A1'],
    ['A1 UID (', 'A1'],
    ['A1 X ]', 'A1'],
  ];
  for (const [line, tag] of cases) {
    const ev = events(line + '\r\nZ9 NOOP\r\n');
    const e = errorOf(ev[0]);
    assert.equal(e.tag, tag, line);
    assert.equal(e.status, 'BAD', line);
    assert.deepEqual(ev.slice(1), [{ kind: 'command', command: { tag: 'Z9', command: 'NOOP', args: [] } }], line);
  }
  // an invalid tag on a line announcing a non-synchronising literal: the literal is skipped too
  const ev0 = events('* X {9+}\r\nZ0 NOOP\r\n\r\nZ1 NOOP\r\n');
  assert.equal(errorOf(ev0[0]).tag, null);
  assert.deepEqual(ev0.slice(1), [{ kind: 'command', command: { tag: 'Z1', command: 'NOOP', args: [] } }]);
  // a refused command with a non-synchronising literal: its octets ("Z1 ") are part of it
  const ev = events('A1 X a{3+}\r\nZ1 NOOP\r\nZ2 NOOP\r\n');
  assert.equal(errorOf(ev[0]).tag, 'A1');
  assert.deepEqual(ev.slice(1), [{ kind: 'command', command: { tag: 'Z2', command: 'NOOP', args: [] } }]);
});

test('UTF-8 in quoted strings and atoms only when enabled, and only valid UTF-8', () => {
  const c = one('A1 SELECT "Entw\xc3\xbcrfe" Entw\xc3\xbcrfe\r\n', { utf8: true });
  assert.equal(asAString(c.args[0]), 'Entwürfe');
  assert.equal(asAString(c.args[1]), 'Entwürfe');
  errorOf(events('A1 SELECT "\xc3"\r\n', { utf8: true })[0]);
  const r = new CommandReader();
  r.push('A1 SELECT "\xc3\xbc"\r\n');
  errorOf(r.next() ?? undefined);
  r.setUtf8(true);
  r.push(Buffer.from('A2 SELECT "\xc3\xbc"\r\n', 'latin1'));
  assert.equal(r.next()?.kind, 'command');
});

test('line length limit: BAD with the tag, the rest of the line skipped, next command read', () => {
  const long = 'A1 X ' + 'a'.repeat(200);
  const ev = events(long + '\r\nA2 NOOP\r\n', { maxLineLength: 100 });
  const e = errorOf(ev[0]);
  assert.equal(e.tag, 'A1');
  assert.match(e.text, /longer than 100/);
  assert.deepEqual(ev.slice(1), [{ kind: 'command', command: { tag: 'A2', command: 'NOOP', args: [] } }]);
  // exactly at the limit is fine (CRLF not counted)
  const ok = 'A3 X ' + 'a'.repeat(95);
  assert.equal(ok.length, 100);
  assert.equal(one(ok + '\r\n', { maxLineLength: 100 }).tag, 'A3');
  errorOf(events(ok + 'b\r\n', { maxLineLength: 100 })[0]);
  // a line without end does not grow memory: the error comes before the line ends
  const r = new CommandReader({ maxLineLength: 1000 });
  r.push('A4 X ');
  for (let i = 0; i < 100; i++) r.push('x'.repeat(1000));
  const got = r.drain();
  assert.equal(got.length, 1);
  assert.equal(errorOf(got[0]).tag, 'A4');
  r.push('yyy\r\nA5 NOOP\r\n');
  assert.deepEqual(r.drain(), [{ kind: 'command', command: { tag: 'A5', command: 'NOOP', args: [] } }]);
  // an over-long line that ends by announcing a non-synchronising literal: its octets are skipped
  const ev2 = events(long + ' {12+}\r\nB1 NOOP\r\nxx\r\nA6 NOOP\r\n', { maxLineLength: 100 });
  assert.equal(ev2.length, 2);
  assert.deepEqual(ev2[1], { kind: 'command', command: { tag: 'A6', command: 'NOOP', args: [] } });
  // ... also when the over-long line is complete in the buffer (one octet over the limit)
  const exact = 'A9 X ' + 'a'.repeat(92) + '{5+}';
  assert.equal(exact.length, 100 + 1);
  const ev4 = events(exact + '\r\nB1 NO\r\nA10 NOOP\r\n', { maxLineLength: 100 });
  assert.equal(errorOf(ev4[0]).tag, 'A9');
  assert.deepEqual(ev4.slice(1), [{ kind: 'command', command: { tag: 'A10', command: 'NOOP', args: [] } }]);
  const ev5 = events(exact + '\nB1 NO\r\nA11 NOOP\r\n', { maxLineLength: 100 }); // LF only: the whole line is read
  assert.equal(errorOf(ev5[0]).tag, 'A9');
  assert.deepEqual(ev5.slice(1), [{ kind: 'command', command: { tag: 'A11', command: 'NOOP', args: [] } }]);
  // ... also when the over-long part is a continuation line after a literal
  const ev3 = events('A7 X {1+}\r\nz ' + 'a'.repeat(200) + '\r\nA8 NOOP\r\n', { maxLineLength: 100 });
  assert.equal(errorOf(ev3[0]).tag, 'A7');
  assert.equal(ev3[1]!.kind, 'command');
});

test('oversized synchronising literal: refused before its octets, no continuation, next line is a command', () => {
  const r = new CommandReader({ maxLiteralSize: 1000 });
  r.push('A1 APPEND INBOX {1001}\r\n');
  const ev = r.drain();
  assert.equal(ev.length, 1);
  const e = errorOf(ev[0]);
  assert.deepEqual([e.tag, e.status, e.code], ['A1', 'NO', 'TOOBIG']);
  r.push('A2 NOOP\r\n');
  assert.deepEqual(r.drain(), [{ kind: 'command', command: { tag: 'A2', command: 'NOOP', args: [] } }]);
  // a huge announcement is refused the same way, not allocated
  const e2 = errorOf(events('A3 APPEND INBOX {99999999999999999999}\r\n')[0]);
  assert.equal(e2.code, 'TOOBIG');
  // other commands have their own, smaller literal limit and answer BAD
  const e3 = errorOf(events('A4 LOGIN {2000}\r\n', { maxLiteralSize: 1_000_000, maxOtherLiteralSize: 1000 })[0]);
  assert.deepEqual([e3.status, e3.code], ['BAD', 'TOOBIG']);
  assert.equal(events('A5 APPEND INBOX {2000}\r\n', { maxLiteralSize: 1_000_000, maxOtherLiteralSize: 1000 })[0]!.kind, 'continue');
});

test('oversized non-synchronising literal: its octets are skipped without being kept, then the reader resynchronises', () => {
  const body = 'B1 NOOP\r\n'.repeat(200); // looks like commands: must not be read as such
  const ev = events(`A1 APPEND INBOX {${body.length}+}\r\n${body} more {3+}\r\nB2 \r\nA2 NOOP\r\n`, { maxLiteralSize: 100 });
  assert.equal(ev.length, 2);
  assert.deepEqual([errorOf(ev[0]).tag, errorOf(ev[0]).code], ['A1', 'TOOBIG']);
  assert.deepEqual(ev[1], { kind: 'command', command: { tag: 'A2', command: 'NOOP', args: [] } });
  // skipping works across many small chunks too
  const r = new CommandReader({ maxLiteralSize: 10 });
  r.push('A3 APPEND INBOX {5000+}\r\n');
  assert.equal(errorOf(r.drain()[0]).code, 'TOOBIG');
  for (let i = 0; i < 50; i++) {
    r.push('x'.repeat(100));
    assert.deepEqual(r.drain(), []);
  }
  r.push('\r\nA4 NOOP\r\n');
  assert.deepEqual(r.drain(), [{ kind: 'command', command: { tag: 'A4', command: 'NOOP', args: [] } }]);
});

test('checkLiteral can refuse a literal (APPENDLIMIT of one mailbox) before it is read', () => {
  const seen: unknown[] = [];
  const opts: ReaderOptions = {
    checkLiteral: (info) => {
      seen.push(info);
      return info.size > 10 ? { status: 'NO', code: 'TOOBIG', text: 'mailbox limit' } : null;
    },
  };
  const ev = events('A1 APPEND Small {11}\r\nA2 APPEND Small {10}\r\n0123456789\r\n', opts);
  assert.deepEqual(ev.map((e) => e.kind), ['error', 'continue', 'command']);
  assert.deepEqual(seen, [
    { tag: 'A1', command: 'APPEND', size: 11, nonSync: false, binary: false },
    { tag: 'A2', command: 'APPEND', size: 10, nonSync: false, binary: false },
  ]);
});

test('command size limit counts lines and literals together', () => {
  const ev = events('A1 X {40+}\r\n' + 'a'.repeat(40) + ' {40+}\r\n' + 'b'.repeat(40) + '\r\nA2 NOOP\r\n', { maxCommandSize: 100 });
  assert.deepEqual([errorOf(ev[0]).tag, errorOf(ev[0]).code], ['A1', 'TOOBIG']);
  assert.deepEqual(ev.slice(1), [{ kind: 'command', command: { tag: 'A2', command: 'NOOP', args: [] } }]);
});

test('nesting depth and token count limits', () => {
  const nest = (n: number): string => '('.repeat(n) + 'a' + ')'.repeat(n);
  assert.equal(one(`A1 X ${nest(16)}\r\n`).tag, 'A1');
  const e = errorOf(events(`A2 X ${nest(17)}\r\nA3 NOOP\r\n`)[0]);
  assert.match(e.text, /deeper than 16/);
  assert.match(errorOf(events(`A4 X ${nest(3)}\r\n`, { maxDepth: 2 })[0]).text, /deeper/);
  assert.equal(one('A5 X ' + Array(99).fill('a').join(' ') + '\r\n', { maxTokens: 99 }).args.length, 99);
  assert.match(errorOf(events('A6 X ' + Array(100).fill('a').join(' ') + '\r\n', { maxTokens: 99 })[0]).text, /more than 99 tokens/);
  // nested tokens count too
  assert.match(errorOf(events('A7 X (' + Array(100).fill('a').join(' ') + ')\r\n', { maxTokens: 99 })[0]).text, /tokens/);
});

test('nextLine reads raw lines between commands (IDLE DONE, AUTHENTICATE), takeBuffered hands over the rest', () => {
  const r = new CommandReader();
  r.push('A1 IDLE\r\nDO');
  assert.equal((r.next() as { command: Command }).command.command, 'IDLE');
  assert.equal(r.nextLine(), null);
  r.push('NE\r\nA2 AUTHENTICATE PLAIN\r\nAGZyZWQAc2VjcmV0\r\nA3 STARTTLS\r\n\x16\x03\x01');
  assert.deepEqual(r.nextLine(), { kind: 'line', line: Buffer.from('DONE') });
  assert.equal((r.next() as { command: Command }).command.command, 'AUTHENTICATE');
  assert.deepEqual(r.nextLine(), { kind: 'line', line: Buffer.from('AGZyZWQAc2VjcmV0') });
  assert.equal((r.next() as { command: Command }).command.command, 'STARTTLS');
  assert.deepEqual(r.takeBuffered(), Buffer.from([0x16, 0x03, 0x01]));
  assert.equal(r.next(), null);
  // nextLine in the middle of a command is a programming error
  const r2 = new CommandReader();
  r2.push('A1 LOGIN {3}\r\n');
  r2.drain();
  assert.throws(() => r2.nextLine());
});

test('the reader keeps its own copies: reusing a pushed buffer does not change a command', () => {
  const r = new CommandReader();
  const chunk = Buffer.from('A1 LOGIN "ab" {2+}\r\ncd\r\n');
  r.push(chunk);
  const ev = r.drain();
  chunk.fill(0x7a);
  assert.deepEqual((ev[0] as { command: Command }).command.args, [str('ab'), str('cd', 'nonsync')]);
});

test('chunk boundaries anywhere give identical results', () => {
  const input = Buffer.concat([
    Buffer.from('A1 LOGIN {4}\r\nfred "p\\"w"\r\n'),
    Buffer.from('\r\nA2 APPEND Drafts (\\Seen) " 7-Jul-1996 02:44:25 -0700" {12+}\r\nHello\r\nWorld\r\n'),
    Buffer.from('A3 UID FETCH 1:*,5 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n'),
    Buffer.from('A4 X (a {3}\r\nb c d (e NIL ""))\n'),
    Buffer.from('A5 X ' + 'z'.repeat(90) + '\r\n'), // too long (limit 80)
    Buffer.from('A6 APPEND INBOX {300+}\r\n' + 'q'.repeat(300) + '\r\n'), // too big (limit 200)
    Buffer.from('A7 APPEND INBOX {300}\r\n'), // too big, synchronising: nothing follows
    Buffer.from('A8 X (a b\r\n'), // unterminated list
    Buffer.from('A9 APPEND INBOX ~{3}\r\n'),
    Buffer.from([0, 1, 2]),
    Buffer.from('\r\nB1 NOOP\r\n'),
  ]);
  const opts: ReaderOptions = { maxLineLength: 80, maxLiteralSize: 200 };
  const whole = events(input, opts);
  assert.deepEqual(
    whole.map((e) => (e.kind === 'command' ? e.command.tag : `${e.kind}:${'tag' in e ? e.tag : ''}`)),
    ['continue:A1', 'A1', 'A2', 'A3', 'continue:A4', 'A4', 'error:A5', 'error:A6', 'error:A7', 'error:A8', 'continue:A9', 'A9', 'B1'],
  );
  for (let i = 1; i < input.length; i++) assert.deepEqual(eventsSplit(input, [i], opts), whole, `split at ${i}`);
  const bytes = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
  assert.deepEqual(eventsSplit(input, bytes, opts), whole, 'byte by byte');
  // pseudo-random three-way splits
  let seed = 7;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let k = 0; k < 300; k++) {
    const cuts = [Math.floor(rnd() * input.length), Math.floor(rnd() * input.length)].sort((a, b) => a - b);
    assert.deepEqual(eventsSplit(input, cuts, opts), whole, `cuts ${cuts}`);
  }
});

test('parseSequenceSet: ranges, *, reversed ranges, caps and errors', () => {
  assert.deepEqual(parseSequenceSet('1:*,5,7:9', 20), [[1, 20], [5, 5], [7, 9]]);
  assert.deepEqual(parseSequenceSet('*:3', 20), [[3, 20]]);
  assert.deepEqual(parseSequenceSet('9:7', 20), [[7, 9]]);
  assert.deepEqual(parseSequenceSet('*', 0), [[0, 0]]); // empty mailbox: matches nothing
  assert.deepEqual(parseSequenceSet('4294967295', 1), [[4294967295, 4294967295]]);
  assert.deepEqual(parseRawSequenceSet('2,*'), [[2, 2], ['*', '*']]);
  assert.equal(parseRawSequenceSet('$'), '$');
  for (const bad of ['', '0', '1:0', '01', '1:', ':1', '1,,2', '1:2:3', 'a', '-1', '4294967296', '1 2', '$', '1,$']) {
    assert.throws(() => parseSequenceSet(bad, 10), ImapSyntaxError, JSON.stringify(bad));
  }
  const many = Array.from({ length: 1001 }, (_, i) => String(i * 2 + 1)).join(',');
  assert.throws(() => parseSequenceSet(many, 10), /more than 1000 ranges/);
  assert.equal(parseSequenceSet(many.split(',').slice(0, 1000).join(','), 10).length, 1000);
  assert.throws(() => parseSequenceSet('1,2,3', 10, 2), /more than 2 ranges/);
  const set = parseSequenceSet('2:4,10', 10);
  assert.deepEqual([1, 2, 4, 5, 10, 11].map((n) => inSequenceSet(set, n)), [false, true, true, false, true, false]);
  assert.equal(asNumber(atom('42')), 42);
  assert.equal(asNumber(atom('0')), null);
  assert.equal(asNumber(atom('0'), true), 0);
  assert.equal(asNumber(str('42')), null);
});

test('mailbox names: modified UTF-7 (RFC 3501 5.1.3) and UTF-8', () => {
  // the RFC's example
  assert.equal(decodeMailboxName('~peter/mail/&U,BTFw-/&ZeVnLIqe-'), '~peter/mail/台北/日本語');
  assert.equal(encodeModifiedUtf7('~peter/mail/台北/日本語'), '~peter/mail/&U,BTFw-/&ZeVnLIqe-');
  assert.equal(decodeMailboxName('Tom &- Jerry'), 'Tom & Jerry');
  assert.equal(encodeModifiedUtf7('Tom & Jerry'), 'Tom &- Jerry');
  assert.equal(decodeMailboxName('Entw&APw-rfe'), 'Entwürfe');
  assert.equal(decodeMailboxName('inbox'), 'INBOX');
  assert.equal(decodeMailboxName('InBox/sub'), 'InBox/sub');
  for (const name of ['Ünïcödé/🎉 party', '&&&', 'a\u00e9\u00e9\u00e9b', '日本語', '😀', 'x😀😀y']) {
    const enc = encodeModifiedUtf7(name);
    assert.match(enc, /^[\x20-\x7e]*$/);
    assert.equal(decodeMailboxName(enc), name, name);
  }
  for (const bad of ['a&Jjo', '&AGE-', '&2D3-', '&2D0A6Q-', '&AOk', '&A-', '&AOkA-', '&AOl-', 'caf\xe9', 'a\x01b', '&U/BTFw-']) {
    assert.throws(() => decodeMailboxName(Buffer.from(bad, 'latin1')), ImapSyntaxError, bad);
  }
  // UTF8=ACCEPT: names are UTF-8 and "&" is just a character
  assert.equal(decodeMailboxName(Buffer.from('Entwürfe &AOk-'), true), 'Entwürfe &AOk-');
  assert.throws(() => decodeMailboxName(Buffer.from([0x61, 0xc3]), true), ImapSyntaxError);
});

test('parseDateTime (APPEND date-time)', () => {
  assert.equal(parseDateTime('17-Jul-1996 02:44:25 -0700')?.toISOString(), '1996-07-17T09:44:25.000Z');
  assert.equal(parseDateTime(' 7-jul-1996 02:44:25 +0130')?.toISOString(), '1996-07-07T01:14:25.000Z');
  for (const bad of ['7-Jul-1996 02:44:25 -0700', '31-Feb-2020 00:00:00 +0000', '17-Jux-1996 02:44:25 -0700', '17-Jul-1996 24:00:00 +0000', '17-Jul-1996 02:44:25', '17-Jul-1996 02:44:25 +0060']) {
    assert.equal(parseDateTime(bad), null, bad);
  }
});
