// SEARCH: key parsing (RFC 3501 6.4.4, RFC 7162 MODSEQ, RFC 4731 RETURN, RFC 5182 "$", RFC 5032),
// evaluation over message views, and SEARCH / ESEARCH response formatting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandReader, ImapSyntaxError, type Token } from '../src/imap/parser.js';
import { SearchError, formatEsearch, formatSearch, matches, parseSearch, parseSearchDate, search, type SearchContext, type SearchMessage } from '../src/imap/search.js';

function args(line: string | Buffer, utf8 = false): Token[] {
  const r = new CommandReader({ utf8 });
  r.push(Buffer.concat([Buffer.from('T SEARCH '), Buffer.isBuffer(line) ? line : Buffer.from(line, 'utf8'), Buffer.from('\r\n')]));
  const ev = r.drain().filter((e) => e.kind !== 'continue');
  assert.equal(ev.length, 1);
  const e = ev[0]!;
  assert.ok(e.kind === 'command', JSON.stringify(e));
  return e.command.args;
}

const parse = (line: string, utf8 = false): ReturnType<typeof parseSearch> => parseSearch(args(line, utf8), { utf8 });

function msg(seq: number, o: Partial<Omit<SearchMessage, 'headers' | 'body' | 'text'>> & { headers?: Record<string, string[]>; body?: string } = {}): SearchMessage {
  const headers = new Map(Object.entries(o.headers ?? {}));
  const body = o.body ?? '';
  return {
    seq,
    uid: o.uid ?? seq * 10,
    flags: o.flags ?? [],
    internalDate: o.internalDate ?? new Date('2024-02-01T12:00:00Z'),
    sentDate: o.sentDate === undefined ? new Date('2024-02-01T10:00:00Z') : o.sentDate,
    size: o.size ?? 1000,
    modseq: o.modseq ?? 1,
    headers,
    body: () => body,
    text: () => [...headers].map(([k, v]) => v.map((x) => `${k}: ${x}`).join('\n')).join('\n') + '\n\n' + body,
  };
}

const BOX: SearchMessage[] = [
  msg(1, { flags: ['\\Seen', '\\Flagged'], headers: { from: ['John Smith <smith@example.com>'], subject: ['Quarterly report'], to: ['me@example.org'] }, body: 'Numbers attached.', internalDate: new Date('1994-01-31T23:30:00Z'), size: 500, modseq: 5 }),
  msg(2, { flags: ['\\Flagged', '\\Recent'], headers: { from: ['Alice <alice@example.net>'], subject: ['Grüße aus Köln'], cc: ['Bob <bob@example.net>'] }, body: 'Hallo Welt', internalDate: new Date('1994-02-01T00:30:00Z'), size: 1500, modseq: 9 }),
  msg(3, { flags: ['\\Answered', '$Work'], headers: { from: ['carol@example.com'], subject: ['re: lunch'], 'x-priority': ['1'] }, body: 'Pizza?', internalDate: new Date('1994-02-02T08:00:00Z'), sentDate: null, size: 1000, modseq: 12 }),
  msg(4, { flags: ['\\Deleted', '\\Seen', '\\Recent'], headers: { from: ['SMITHERS <s@example.com>'], bcc: ['hidden@example.com'] }, body: 'Excellent.', internalDate: new Date('1994-03-01T10:00:00Z'), size: 1001, modseq: 3 }),
  msg(5, { flags: ['\\Draft', '$work'], headers: { subject: [''] }, body: 'draft text with SMITH inside', internalDate: new Date('2024-06-01T10:00:00Z'), size: 10, modseq: 20 }),
];

const CTX: SearchContext = { maxSeq: 5, maxUid: 50, saved: new Set([20, 40]), now: new Date('2024-06-01T11:00:00Z') };

const hits = (line: string, ctx: SearchContext = CTX, utf8 = false): number[] => search(parse(line, utf8).key, BOX, ctx).map((m) => m.seq);

test('RFC 3501 example keys parse into the expected AST', () => {
  assert.deepEqual(parse('FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'), {
    returns: null,
    charset: 'US-ASCII',
    usesModseq: false,
    key: {
      type: 'and',
      keys: [
        { type: 'flag', flag: '\\Flagged', set: true },
        { type: 'date', field: 'internal', op: 'since', day: parseSearchDate('1-Feb-1994') },
        { type: 'not', key: { type: 'header', field: 'from', value: 'Smith' } },
      ],
    },
  });
  assert.deepEqual(parse('OR (DELETED 2:*) UID 1,3').key, {
    type: 'or',
    a: { type: 'and', keys: [{ type: 'flag', flag: '\\Deleted', set: true }, { type: 'seq', set: [[2, '*']] }] },
    b: { type: 'uid', set: [[1, 1], [3, 3]] },
  });
  assert.deepEqual(parse('UID $').key, { type: 'uid', set: '$' });
  assert.deepEqual(parse('(SEEN)').key, { type: 'flag', flag: '\\Seen', set: true });
  assert.deepEqual(parse('HEADER X-Priority 1').key, { type: 'header', field: 'x-priority', value: '1' });
  assert.deepEqual(parse('MODSEQ "/flags/\\\\draft" all 620162338'), {
    returns: null,
    charset: 'US-ASCII',
    usesModseq: true,
    key: { type: 'modseq', modseq: 620162338, entry: { name: '/flags/\\draft', kind: 'all' } },
  });
  assert.equal(parse('OR SEEN (NOT MODSEQ 5)').usesModseq, true);
  assert.deepEqual(parse('RETURN (MIN COUNT min) ALL').returns, ['MIN', 'COUNT']);
  assert.deepEqual(parse('RETURN () ALL').returns, ['ALL']);
  assert.deepEqual(parse('RETURN (SAVE) CHARSET UTF-8 ALL').returns, ['SAVE']);
  assert.equal(parseSearchDate('1-Jan-1970'), 0);
  assert.equal(parseSearchDate('02-jan-1970'), 1);
});

test('flags, NEW/OLD/RECENT, keywords (case-insensitive)', () => {
  assert.deepEqual(hits('ALL'), [1, 2, 3, 4, 5]);
  assert.deepEqual(hits('SEEN'), [1, 4]);
  assert.deepEqual(hits('UNSEEN'), [2, 3, 5]);
  assert.deepEqual(hits('ANSWERED'), [3]);
  assert.deepEqual(hits('UNANSWERED'), [1, 2, 4, 5]);
  assert.deepEqual(hits('DELETED'), [4]);
  assert.deepEqual(hits('UNDELETED'), [1, 2, 3, 5]);
  assert.deepEqual(hits('DRAFT'), [5]);
  assert.deepEqual(hits('UNDRAFT'), [1, 2, 3, 4]);
  assert.deepEqual(hits('FLAGGED'), [1, 2]);
  assert.deepEqual(hits('UNFLAGGED'), [3, 4, 5]);
  assert.deepEqual(hits('RECENT'), [2, 4]);
  assert.deepEqual(hits('OLD'), [1, 3, 5]);
  assert.deepEqual(hits('NEW'), [2]);
  assert.deepEqual(hits('KEYWORD $Work'), [3, 5]);
  assert.deepEqual(hits('UNKEYWORD $WORK'), [1, 2, 4]);
});

test('sequence sets, UID sets with *, and the saved result $', () => {
  assert.deepEqual(hits('2:3'), [2, 3]);
  assert.deepEqual(hits('*'), [5]);
  assert.deepEqual(hits('4:*'), [4, 5]);
  assert.deepEqual(hits('*:4,1'), [1, 4, 5]);
  assert.deepEqual(hits('UID 20,40:*'), [2, 4, 5]);
  assert.deepEqual(hits('UID 31:39'), []);
  assert.deepEqual(hits('$'), [2, 4]);
  assert.deepEqual(hits('UID $'), [2, 4]);
  assert.deepEqual(hits('$', { ...CTX, saved: undefined }), []);
  assert.deepEqual(hits('NOT 1:3'), [4, 5]);
});

test('string keys: case-insensitive substrings of headers, body and text', () => {
  assert.deepEqual(hits('FROM smith'), [1, 4]); // SMITHERS too: substring
  assert.deepEqual(hits('FROM "John Smith <"'), [1]);
  assert.deepEqual(hits('TO me@'), [1]);
  assert.deepEqual(hits('CC BOB'), [2]);
  assert.deepEqual(hits('BCC hidden'), [4]);
  assert.deepEqual(hits('SUBJECT RE:'), [3]);
  assert.deepEqual(hits('SUBJECT ""'), [1, 2, 3, 5]); // every message with a Subject field
  assert.deepEqual(hits('HEADER X-PRIORITY ""'), [3]);
  assert.deepEqual(hits('HEADER x-priority 2'), []);
  assert.deepEqual(hits('BODY smith'), [5]);
  assert.deepEqual(hits('BODY "hallo welt"'), [2]);
  assert.deepEqual(hits('TEXT smith'), [1, 4, 5]); // header or body
  assert.deepEqual(hits('TEXT "quarterly REPORT"'), [1]);
  // UTF-8 text (CHARSET UTF-8 with a literal, or quoted once UTF8=ACCEPT is enabled)
  assert.deepEqual(hits('CHARSET UTF-8 SUBJECT {5+}\r\nKÖLN'), [2]);
  assert.deepEqual(hits('SUBJECT "GRÜSSE"', CTX, true), []); // no ß/ss folding: i;ascii-casemap-like plus Unicode lower case
  assert.deepEqual(hits('SUBJECT "GRÜßE"', CTX, true), [2]);
  assert.deepEqual(hits('OR FROM alice SUBJECT lunch'), [2, 3]);
  assert.deepEqual(hits('OR OR FROM alice SUBJECT lunch DRAFT'), [2, 3, 5]);
});

test('dates (day granularity, zone of the internal date), sizes, OLDER/YOUNGER, MODSEQ', () => {
  // message 1 is 1994-01-31 23:30 UTC, message 2 1994-02-01 00:30 UTC
  assert.deepEqual(hits('SINCE 1-Feb-1994'), [2, 3, 4, 5]);
  assert.deepEqual(hits('BEFORE 1-Feb-1994'), [1]);
  assert.deepEqual(hits('ON 1-Feb-1994'), [2]);
  assert.deepEqual(hits('ON "01-Feb-1994"'), [2]);
  // one hour east of UTC, message 1 falls on the 1st and message 2 stays there
  assert.deepEqual(hits('ON 1-Feb-1994', { ...CTX, zoneMinutes: 60 }), [1, 2]);
  assert.deepEqual(hits('ON 31-Jan-1994', { ...CTX, zoneMinutes: -60 }), [1, 2]);
  assert.deepEqual(hits('SENTON 1-Feb-2024'), [1, 2, 4, 5]); // message 3 has no Date
  assert.deepEqual(hits('SENTBEFORE 1-Feb-2024'), []);
  assert.deepEqual(hits('SENTSINCE 2-Feb-2024'), []);
  assert.deepEqual(hits('NOT SENTSINCE 1-Feb-2024'), [3]);
  assert.deepEqual(hits('LARGER 1000'), [2, 4]);
  assert.deepEqual(hits('SMALLER 1000'), [1, 5]);
  // message 5 is exactly 3600 s old: OLDER 3600, not YOUNGER 3600
  assert.deepEqual(hits('YOUNGER 3601'), [5]);
  assert.deepEqual(hits('YOUNGER 3600'), []);
  assert.deepEqual(hits('OLDER 3600'), [1, 2, 3, 4, 5]);
  assert.deepEqual(hits('OLDER 3601'), [1, 2, 3, 4]);
  assert.deepEqual(hits('MODSEQ 9'), [2, 3, 5]);
  assert.deepEqual(hits('MODSEQ "/flags/\\\\seen" priv 12'), [3, 5]);
});

test('charset handling and syntax errors', () => {
  const code = (line: string | Buffer, utf8 = false): string | null => {
    try {
      parseSearch(args(line, utf8), { utf8 });
    } catch (e) {
      assert.ok(e instanceof ImapSyntaxError, String(e));
      return e.code ?? 'BAD';
    }
    assert.fail(`no error for ${line}`);
  };
  assert.equal(code('CHARSET KOI8-R SUBJECT x'), 'BADCHARSET');
  assert.equal(code(Buffer.from('CHARSET US-ASCII SUBJECT {2+}\r\n\xc3\xbc', 'latin1')), 'BADCHARSET');
  assert.equal(code(Buffer.from('SUBJECT {2+}\r\n\xc3\xbc', 'latin1')), 'BADCHARSET'); // default US-ASCII
  assert.equal(code(Buffer.from('CHARSET UTF-8 SUBJECT {1+}\r\n\xfc', 'latin1')), 'BADCHARSET'); // not UTF-8
  assert.deepEqual(parseSearch(args(Buffer.from('SUBJECT {2+}\r\n\xc3\xbc', 'latin1')), { utf8: true }).key, { type: 'header', field: 'subject', value: 'ü' });
  for (const bad of ['', 'FOO', 'FROM', 'OR SEEN', 'NOT', 'SINCE 1-Foo-1994', 'SINCE 31-Feb-1994', 'SINCE 1994-02-01', 'LARGER x', 'LARGER 99999999999', '()', 'KEYWORD \\Seen', 'UID', 'UID 0', '1:x', 'RETURN MIN ALL', 'RETURN (FIRST) ALL', 'CHARSET', 'HEADER "a b" c', 'MODSEQ "/x" bogus 5', 'YOUNGER 0', 'BODY[1]']) {
    assert.equal(code(bad), 'BAD', JSON.stringify(bad));
  }
  // deeply nested keys are refused, not a stack overflow
  assert.throws(() => parse('NOT '.repeat(40) + 'ALL'), SearchError);
  assert.equal(matches(parse('NOT '.repeat(30) + 'ALL').key, BOX[0]!, CTX), true);
});

test('SEARCH and ESEARCH responses (RFC 3501, RFC 4731, RFC 7162 examples)', () => {
  assert.equal(formatSearch([2, 84, 882]), '* SEARCH 2 84 882');
  assert.equal(formatSearch([]), '* SEARCH');
  assert.equal(formatSearch([2, 5, 6, 7, 11, 12, 18, 19, 20, 23], 917162500), '* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)');
  assert.equal(formatSearch([], 5), '* SEARCH');
  assert.equal(formatEsearch('A282', false, ['MIN', 'COUNT'], [2, 10, 11]), '* ESEARCH (TAG "A282") MIN 2 COUNT 3');
  assert.equal(formatEsearch('A283', false, ['ALL'], [11, 2, 10]), '* ESEARCH (TAG "A283") ALL 2,10:11');
  assert.equal(formatEsearch('A284', false, ['MIN'], []), '* ESEARCH (TAG "A284")');
  assert.equal(formatEsearch('A285', true, ['MIN', 'MAX'], [7, 3800, 100]), '* ESEARCH (TAG "A285") UID MIN 7 MAX 3800');
  assert.equal(formatEsearch('A286', false, ['COUNT'], []), '* ESEARCH (TAG "A286") COUNT 0');
  assert.equal(formatEsearch('a"1', true, ['ALL', 'SAVE'], [1, 2, 3], 42), '* ESEARCH (TAG "a\\"1") UID ALL 1:3 MODSEQ 42');
  // end to end: the RFC 4731 example command over our mailbox
  const cmd = parse('RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"');
  const found = search(cmd.key, BOX, CTX).map((m) => m.seq);
  assert.equal(formatEsearch('A282', false, cmd.returns!, found), '* ESEARCH (TAG "A282") MIN 2 COUNT 1');
});
