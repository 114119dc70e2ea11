// IMAP response encoding: strings, mailbox names, flags, dates, ENVELOPE, BODY/BODYSTRUCTURE from
// the store's parse of real messages (checked against RFC 3501's examples), and BODY[section].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  astring,
  encodeBodyStructure,
  encodeEnvelope,
  encodeFlags,
  encodeInternalDate,
  encodeMailbox,
  encodeSequenceSet,
  encodeString,
  formatSection,
  literal,
  literalBytes,
  nstring,
  quoted,
  resolvePart,
  sectionBytes,
  sectionLabel,
} from '../src/imap/encode.js';
import { CommandReader, parseFetchItems, parseSection, type SectionSpec, type Token } from '../src/imap/parser.js';
import { parseMessage } from '../src/store/message-parse.js';

const crlf = (s: string): Buffer => Buffer.from(s.replace(/\r?\n/g, '\r\n'), 'utf8');

/** `lines` CRLF-separated lines of filler text, `octets` long in all, with or without a final CRLF. */
function filler(lines: number, octets: number, finalCrlf: boolean): string {
  const breaks = (finalCrlf ? lines : lines - 1) * 2;
  const text = octets - breaks;
  const base = Math.floor(text / lines);
  let extra = text - base * lines;
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const n = base + (extra-- > 0 ? 1 : 0);
    out.push(String.fromCharCode(0x61 + (i % 26)).repeat(n));
  }
  const s = out.join('\r\n') + (finalCrlf ? '\r\n' : '');
  assert.equal(s.length, octets);
  return s;
}

const spec = (s: string): SectionSpec => {
  const r = new CommandReader();
  r.push(`T FETCH 1 BODY[${s}]\r\n`);
  const ev = r.next();
  assert.ok(ev?.kind === 'command');
  const item = parseFetchItems(ev.command.args[1] as Token)[0]!;
  assert.ok(item.name === 'BODY[]');
  return item.section;
};

const section = (raw: Buffer, s: string, partial?: { offset: number; length: number | null }): string | null => {
  const b = sectionBytes(raw, parseMessage(raw).structure, spec(s), partial);
  return b === null ? null : b.toString('latin1');
};

// RFC 3501 7.4.2 / 8: the FETCH example's message, rebuilt to the sizes the example shows.
const RFC_HEADER = `Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
`;

test('quoted or literal: 8-bit, CR/LF, NUL and long strings become literals', () => {
  assert.equal(quoted('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(encodeString(''), '""');
  assert.equal(encodeString('plain text (with) {specials} %*'), '"plain text (with) {specials} %*"');
  assert.equal(encodeString('two\r\nlines'), '{10}\r\ntwo\r\nlines');
  assert.equal(encodeString('caf\u00e9'), '{5}\r\ncafé'); // octets, not characters
  assert.equal(encodeString('caf\u00e9', { utf8: true }), '"café"');
  assert.equal(encodeString('😀', { utf8: true }), '"😀"');
  assert.equal(encodeString('a\0b'), '"ab"');
  assert.equal(encodeString('x'.repeat(1024)), `"${'x'.repeat(1024)}"`);
  assert.equal(encodeString('x'.repeat(1025)), `{1025}\r\n${'x'.repeat(1025)}`);
  assert.equal(encodeString('x'.repeat(20), { maxQuoted: 10 }), `{20}\r\n${'x'.repeat(20)}`);
  assert.equal(literal('ab'), '{2}\r\nab');
  assert.equal(nstring(null), 'NIL');
  assert.equal(nstring('NIL'), '"NIL"');
  assert.equal(astring('INBOX.Sent]'), 'INBOX.Sent]');
  for (const s of ['', 'NIL', 'nil', 'a b', 'a%', 'a*', 'a(', 'a{', 'a"', 'a\\']) assert.equal(astring(s), quoted(s), s);
  assert.equal(astring('a\r\n'), '{3}\r\na\r\n');
});

test('mailbox names in responses: modified UTF-7 unless UTF8=ACCEPT', () => {
  assert.equal(encodeMailbox('~peter/mail/台北/日本語'), '~peter/mail/&U,BTFw-/&ZeVnLIqe-');
  assert.equal(encodeMailbox('Entwürfe'), 'Entw&APw-rfe');
  assert.equal(encodeMailbox('Entwürfe', { utf8: true }), '"Entwürfe"');
  assert.equal(encodeMailbox('Tom & Jerry'), '"Tom &- Jerry"');
  assert.equal(encodeMailbox('inbox'), 'INBOX');
  assert.equal(encodeMailbox('Sent'), 'Sent');
  assert.equal(encodeMailbox('NIL'), '"NIL"');
});

test('flags, INTERNALDATE, sequence sets', () => {
  assert.equal(encodeFlags(['\\Seen', '\\Answered', '$Forwarded']), '(\\Seen \\Answered $Forwarded)');
  assert.equal(encodeFlags([]), '()');
  assert.equal(encodeFlags(['\\Deleted', '\\*']), '(\\Deleted \\*)');
  for (const bad of ['a b', '', '\\', 'a(', 'x]', 'a*']) assert.throws(() => encodeFlags([bad]), TypeError, bad);
  // RFC 3501's example: INTERNALDATE "17-Jul-1996 02:44:25 -0700"
  const d = new Date('1996-07-17T09:44:25Z');
  assert.equal(encodeInternalDate(d, -7 * 60), '"17-Jul-1996 02:44:25 -0700"');
  assert.equal(encodeInternalDate(d), '"17-Jul-1996 09:44:25 +0000"');
  assert.equal(encodeInternalDate(new Date('2024-01-05T23:30:00Z'), 330), '" 6-Jan-2024 05:00:00 +0530"'); // date-day-fixed
  assert.equal(encodeInternalDate(new Date('2024-03-01T00:00:00Z'), -90), '"29-Feb-2024 22:30:00 -0130"');
  assert.throws(() => encodeInternalDate(new Date(NaN)));
  assert.equal(encodeSequenceSet([11, 2, 10, 4, 3, 2, 20]), '2:4,10:11,20');
  assert.equal(encodeSequenceSet([]), '');
  assert.equal(encodeSequenceSet([7]), '7');
});

test('RFC 3501 example: ENVELOPE and BODY of a plain text message', () => {
  const raw = crlf(RFC_HEADER + 'Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\n') ;
  const msg = Buffer.concat([raw, Buffer.from(filler(92, 3028, true))]);
  const p = parseMessage(msg);
  assert.equal(
    encodeEnvelope(p.envelope),
    '("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>")',
  );
  assert.equal(encodeBodyStructure(p.structure, false), '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)');
  assert.equal(encodeBodyStructure(p.structure, true), '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)');
});

test('RFC 3501 example: BODY of multipart/mixed with a base64 text attachment', () => {
  const msg = crlf(
    RFC_HEADER +
      'Content-Type: MULTIPART/MIXED; BOUNDARY="xyz"\n\nThis is a MIME message.\n--xyz\nContent-Type: text/plain; charset=US-ASCII\n\n' +
      filler(23, 1152, false) +
      '\n--xyz\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\nContent-ID: <960723163407.20117h@cac.washington.edu>\nContent-Description: Compiler diff\nContent-Transfer-Encoding: BASE64\n\n' +
      filler(73, 4554, false) +
      '\n--xyz--\nepilogue\n',
  );
  const p = parseMessage(msg);
  assert.equal(
    encodeBodyStructure(p.structure, false),
    '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")',
  );
  assert.equal(
    encodeBodyStructure(p.structure, true),
    '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "xyz") NIL NIL NIL)',
  );
});

const ALTERNATIVE = crlf(`From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <jm@example.de>
To: "Doe, Jane" <jane@example.org>, undisclosed-recipients:;
Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus =?UTF-8?Q?K=C3=B6ln?=
Date: Mon, 2 Jun 2025 10:00:00 +0200
Message-ID: <alt@example.de>
In-Reply-To: <prev@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe
--b1
Content-Type: text/html; charset=utf-8
Content-Language: de, en

<p>Gr&uuml;&szlig;e</p>
--b1--
`);

test('multipart/alternative with encoded-word headers: raw header values, both BODY forms', () => {
  const p = parseMessage(ALTERNATIVE);
  assert.equal(
    encodeEnvelope(p.envelope),
    '("Mon, 2 Jun 2025 10:00:00 +0200" "=?ISO-8859-1?Q?Gr=FC=DFe?= aus =?UTF-8?Q?K=C3=B6ln?=" (("=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?=" NIL "jm" "example.de")) (("=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?=" NIL "jm" "example.de")) (("=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?=" NIL "jm" "example.de")) (("Doe, Jane" NIL "jane" "example.org")(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL "<prev@example.org>" "<alt@example.de>")',
  );
  assert.equal(
    encodeBodyStructure(p.structure, false),
    '(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 15 1)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 23 1) "ALTERNATIVE")',
  );
  assert.equal(
    encodeBodyStructure(p.structure, true),
    '(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 15 1 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 23 1 NIL NIL ("de" "en") NIL) "ALTERNATIVE" ("BOUNDARY" "b1") NIL NIL NIL)',
  );
  assert.equal(section(ALTERNATIVE, '1'), 'Gr=C3=BC=C3=9Fe');
  assert.equal(section(ALTERNATIVE, '2.MIME'), 'Content-Type: text/html; charset=utf-8\r\nContent-Language: de, en\r\n\r\n');
  assert.equal(section(ALTERNATIVE, '3'), null);
  assert.equal(section(ALTERNATIVE, '1.1'), null); // a leaf part has no subparts
  assert.equal(section(ALTERNATIVE, '1.HEADER'), null); // HEADER only for message/rfc822 parts
});

test('raw UTF-8 (RFC 6532) header values: literals, or quoted with UTF8=ACCEPT', () => {
  const raw = crlf('From: Jürgen <j@example.de>\nSubject: Grüße\n\nhi\n');
  const p = parseMessage(raw);
  const j = '(({7}\r\nJürgen NIL "j" "example.de"))';
  assert.equal(encodeEnvelope(p.envelope), `(NIL {7}\r\nGrüße ${j} ${j} ${j} NIL NIL NIL NIL NIL)`);
  assert.equal(encodeEnvelope(p.envelope, { utf8: true }), '(NIL "Grüße" (("Jürgen" NIL "j" "example.de")) (("Jürgen" NIL "j" "example.de")) (("Jürgen" NIL "j" "example.de")) NIL NIL NIL NIL NIL)');
});

const ATTACHMENT = crlf(`From: a@example.com
To: b@example.com
Subject: report
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

See attached.
--inner
Content-Type: text/html

<p>See attached.</p>
--inner--

--outer
Content-Type: application/pdf; name="report 2025.pdf"
Content-Disposition: attachment; filename="report 2025.pdf"; size=9
Content-Transfer-Encoding: base64
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Location: http://example.com/r.pdf

JVBERi0x
--outer--
`);

test('multipart/mixed with a nested alternative and an attachment', () => {
  const p = parseMessage(ATTACHMENT);
  assert.equal(
    encodeBodyStructure(p.structure, true),
    // "Content-Type: text/plain" without parameters: the store keeps none, so NIL (valid; us-ascii is implied)
    '((("TEXT" "PLAIN" NIL NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)("TEXT" "HTML" NIL NIL NIL "7BIT" 20 1 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)' +
      '("APPLICATION" "PDF" ("NAME" "report 2025.pdf") NIL NIL "BASE64" 8 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("ATTACHMENT" ("FILENAME" "report 2025.pdf" "SIZE" "9")) NIL "http://example.com/r.pdf") "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)',
  );
  assert.equal(
    encodeBodyStructure(p.structure, false),
    '((("TEXT" "PLAIN" NIL NIL NIL "7BIT" 13 1)("TEXT" "HTML" NIL NIL NIL "7BIT" 20 1) "ALTERNATIVE")("APPLICATION" "PDF" ("NAME" "report 2025.pdf") NIL NIL "BASE64" 8) "MIXED")',
  );
  assert.equal(section(ATTACHMENT, '1.1'), 'See attached.');
  assert.equal(section(ATTACHMENT, '1.2'), '<p>See attached.</p>');
  assert.equal(section(ATTACHMENT, '1'), '--inner\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>See attached.</p>\r\n--inner--\r\n');
  assert.equal(section(ATTACHMENT, '2'), 'JVBERi0x');
  assert.equal(section(ATTACHMENT, '1.MIME'), 'Content-Type: multipart/alternative; boundary=inner\r\n\r\n');
  assert.equal(section(ATTACHMENT, '2', { offset: 2, length: 3 }), 'BER');
  assert.equal(section(ATTACHMENT, '1.3'), null);
});

const FORWARD = crlf(`From: fwd@example.com
To: me@example.org
Subject: Fwd: hello
Content-Type: multipart/mixed; boundary=zz

--zz
Content-Type: text/plain

Forwarded below.
--zz
Content-Type: message/rfc822
Content-Description: original

From: Orig Sender <orig@example.net>
To: fwd@example.com
Subject: hello
Date: Sun, 1 Jun 2025 08:00:00 +0000
Message-ID: <orig@example.net>
Content-Type: multipart/mixed; boundary=yy

--yy
Content-Type: text/plain

inner one
--yy
Content-Type: message/rfc822

Subject: deepest

deep body
--yy--
--zz--
`);

test('message/rfc822 attachment: envelope and body inside, lines, and its sections', () => {
  const p = parseMessage(FORWARD);
  const innerEnv = '(("Sun, 1 Jun 2025 08:00:00 +0000" "hello" (("Orig Sender" NIL "orig" "example.net")) (("Orig Sender" NIL "orig" "example.net")) (("Orig Sender" NIL "orig" "example.net")) ((NIL NIL "fwd" "example.com")) NIL NIL NIL "<orig@example.net>")'.slice(1);
  const part2 = p.structure.parts![1]!;
  const deepest = '("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 29 (NIL "deepest" NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 9 1) 3)';
  assert.equal(
    encodeBodyStructure(p.structure, false),
    `(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 16 1)("MESSAGE" "RFC822" NIL NIL "original" "7BIT" ${part2.size} ${innerEnv} (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 9 1)${deepest} "MIXED") ${part2.lines}) "MIXED")`,
  );
  assert.equal(part2.lines, 18);
  assert.match(encodeBodyStructure(p.structure, true), /^\(\("TEXT" "PLAIN" NIL NIL NIL "7BIT" 16 1 NIL NIL NIL NIL\)\("MESSAGE" "RFC822" NIL NIL "original" "7BIT" \d+ \(.*\) \(\("TEXT".* "MIXED" \("BOUNDARY" "yy"\) NIL NIL NIL\) 18 NIL NIL NIL NIL\) "MIXED" \("BOUNDARY" "zz"\) NIL NIL NIL\)$/);
  const inner = section(FORWARD, '2')!;
  assert.ok(inner.startsWith('From: Orig Sender') && inner.endsWith('--yy--'));
  assert.equal(section(FORWARD, '2.HEADER'), 'From: Orig Sender <orig@example.net>\r\nTo: fwd@example.com\r\nSubject: hello\r\nDate: Sun, 1 Jun 2025 08:00:00 +0000\r\nMessage-ID: <orig@example.net>\r\nContent-Type: multipart/mixed; boundary=yy\r\n\r\n');
  assert.ok(section(FORWARD, '2.TEXT')!.startsWith('--yy\r\nContent-Type: text/plain'));
  assert.equal(section(FORWARD, '2.MIME'), 'Content-Type: message/rfc822\r\nContent-Description: original\r\n\r\n');
  assert.equal(section(FORWARD, '2.1'), 'inner one');
  assert.equal(section(FORWARD, '2.2'), 'Subject: deepest\r\n\r\ndeep body');
  assert.equal(section(FORWARD, '2.2.HEADER'), 'Subject: deepest\r\n\r\n');
  assert.equal(section(FORWARD, '2.2.TEXT'), 'deep body');
  assert.equal(section(FORWARD, '2.2.1'), 'deep body'); // a non-multipart encapsulated message: its body is part 1
  assert.equal(section(FORWARD, '2.2.1.MIME'), 'Subject: deepest\r\n\r\n');
  assert.equal(section(FORWARD, '2.2.2'), null);
  assert.equal(section(FORWARD, '2.HEADER.FIELDS (subject)'), 'Subject: hello\r\n\r\n');
  assert.equal(section(FORWARD, '2.1.TEXT'), null);
});

const PLAIN = crlf(`Received: from a
  by b; Mon, 2 Jun 2025 10:00:00 +0200
From: x@example.com
Subject: first line
 continued
X-Dup: one
To: y@example.com
x-dup: two

body line 1
body line 2
`);

test('BODY[] sections of a single-part message (RFC 3501 6.4.5)', () => {
  const header = 'Received: from a\r\n  by b; Mon, 2 Jun 2025 10:00:00 +0200\r\nFrom: x@example.com\r\nSubject: first line\r\n continued\r\nX-Dup: one\r\nTo: y@example.com\r\nx-dup: two\r\n\r\n';
  const body = 'body line 1\r\nbody line 2\r\n';
  assert.equal(section(PLAIN, ''), header + body);
  assert.equal(section(PLAIN, 'HEADER'), header);
  assert.equal(section(PLAIN, 'TEXT'), body);
  assert.equal(section(PLAIN, '1'), body); // BODY[1] of a non-multipart message is its body
  assert.equal(section(PLAIN, '1.MIME'), header);
  assert.equal(section(PLAIN, '2'), null);
  assert.equal(section(PLAIN, '1.1'), null);
  // HEADER.FIELDS: matching fields in message order, case-insensitive, folded lines kept, blank line at the end
  assert.equal(section(PLAIN, 'HEADER.FIELDS (SUBJECT x-DUP)'), 'Subject: first line\r\n continued\r\nX-Dup: one\r\nx-dup: two\r\n\r\n');
  assert.equal(section(PLAIN, 'HEADER.FIELDS (Nope)'), '\r\n');
  assert.equal(section(PLAIN, 'HEADER.FIELDS.NOT (Received X-Dup subject)'), 'From: x@example.com\r\nTo: y@example.com\r\n\r\n');
  // partials: offset past the end is empty, a length past the end is cut
  assert.equal(section(PLAIN, 'TEXT', { offset: 5, length: 4 }), 'line');
  assert.equal(section(PLAIN, 'TEXT', { offset: 20, length: 100 }), 'ne 2\r\n');
  assert.equal(section(PLAIN, 'TEXT', { offset: 1000, length: 10 }), '');
  assert.equal(sectionLabel(spec('HEADER.FIELDS (From "X-A")'), { offset: 0, length: 10 }), 'BODY[HEADER.FIELDS (From X-A)]<0>');
  assert.equal(sectionLabel(spec('1.2.mime')), 'BODY[1.2.MIME]');
  assert.equal(formatSection(parseSection([])), '');
  assert.deepEqual(literalBytes(Buffer.from('ab')), Buffer.from('{2}\r\nab'));
  assert.deepEqual(literalBytes(null), Buffer.from('NIL'));
});

test('LF-only messages: HEADER.FIELDS lines get CRLF, the rest is the stored octets', () => {
  const raw = Buffer.from('From: x@example.com\nSubject: s\n\nbody\n');
  assert.equal(section(raw, 'HEADER.FIELDS (Subject)'), 'Subject: s\n\r\n');
  assert.equal(section(raw, 'TEXT'), 'body\n');
  assert.equal(section(raw, 'HEADER'), 'From: x@example.com\nSubject: s\n\n');
});

test('broken MIME degrades to valid BODYSTRUCTURE', () => {
  // multipart without a boundary parameter: one text part
  const noBoundary = parseMessage(crlf('Content-Type: multipart/mixed\n\nwhatever\n'));
  assert.equal(encodeBodyStructure(noBoundary.structure, false), '(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1) "MIXED")');
  // an unparseable Content-Type is text/plain; us-ascii (RFC 2045 5.2)
  const badType = parseMessage(crlf('Content-Type: garbage\n\nx\n'));
  assert.equal(encodeBodyStructure(badType.structure, true), '("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)');
  // no closing delimiter: the last part runs to the end
  const unclosed = crlf('Content-Type: multipart/mixed; boundary=q\n\n--q\n\none\n--q\nContent-Type: image/png\n\nAAAA');
  const u = parseMessage(unclosed);
  assert.equal(encodeBodyStructure(u.structure, false), '(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1)("IMAGE" "PNG" NIL NIL NIL "7BIT" 4) "MIXED")');
  assert.equal(section(unclosed, '2'), 'AAAA');
  // a base64 message/rfc822 is not parsed by the store: still body-type-msg, with an empty envelope
  const encoded = crlf('Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA==\n--q--\n');
  assert.equal(
    encodeBodyStructure(parseMessage(encoded).structure, false),
    '(("MESSAGE" "RFC822" NIL NIL NIL "BASE64" 16 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 16 0) 0) "MIXED")',
  );
  assert.equal(section(encoded, '1.HEADER'), null);
  // a message with no header at all
  const bare = parseMessage(Buffer.from('\r\njust a body\r\n'));
  assert.equal(encodeEnvelope(bare.envelope), '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)');
  assert.equal(encodeBodyStructure(bare.structure, false), '("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1)');
  // header strings with CR/LF or quotes survive as literals / escaped quoted strings
  const odd = parseMessage(crlf('Subject: say "hi" \\o/\n\nx\n'));
  assert.match(encodeEnvelope(odd.envelope), /^\(NIL "say \\"hi\\" \\\\o\/" /);
});

test('resolvePart follows RFC 3501 part numbering', () => {
  const p = parseMessage(FORWARD).structure;
  assert.equal(resolvePart(p, [])?.part, p);
  assert.equal(resolvePart(p, [1])?.part, p.parts![0]);
  assert.equal(resolvePart(p, [2])?.message, p.parts![1]!.message!.body);
  assert.equal(resolvePart(p, [2, 1])?.part, p.parts![1]!.message!.body.parts![0]);
  assert.equal(resolvePart(p, [0]), null);
  assert.equal(resolvePart(p, [3]), null);
});
