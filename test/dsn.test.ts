// DSN building checked by parsing every report with Python's email package (an independent MIME
// parser), plus the rules for when no DSN may be sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { buildDsn, chooseBoundary, decodeXtext, dsnWanted, foldField, quotedPrintable, type DsnInput } from '../src/dsn/build.js';

// Python reads the DSN on stdin and prints what it understood as JSON.
const PY = String.raw`
import sys, json, email, email.policy
data = sys.stdin.buffer.read()
msg = email.message_from_bytes(data, policy=email.policy.default)
defects = [type(d).__name__ for d in msg.defects]
out = {
  'contentType': msg.get_content_type(),
  'reportType': msg.get_param('report-type'),
  'boundary': msg.get_boundary(),
  'headers': {k.lower(): str(v) for k, v in msg.items()},
  'parts': [],
}
parts = msg.get_payload() if msg.is_multipart() else []
for p in parts:
  defects += [type(d).__name__ for d in p.defects]
  info = {'type': p.get_content_type(), 'cte': p.get('content-transfer-encoding')}
  if p.get_content_type() == 'text/plain':
    info['text'] = p.get_content()
    info['charset'] = p.get_content_charset()
  elif p.get_content_type() == 'message/delivery-status':
    info['groups'] = [[[k, str(v)] for k, v in block.items()] for block in p.get_payload()]
  elif p.get_content_type() == 'message/rfc822':
    inner = p.get_payload(0)
    info['subject'] = str(inner['subject'])
    info['body'] = inner.get_payload(decode=True).decode('utf-8', 'replace') if not inner.is_multipart() else None
  elif p.get_content_type() == 'text/rfc822-headers':
    info['text'] = p.get_content()
  out['parts'].append(info)
out['defects'] = defects
print(json.dumps(out))
`;

interface Parsed {
  contentType: string;
  reportType: string | null;
  boundary: string | null;
  headers: Record<string, string>;
  parts: Array<{ type: string; cte: string | null; text?: string; charset?: string; groups?: Array<Array<[string, string]>>; subject?: string; body?: string | null }>;
  defects: string[];
}

function python(dsn: Buffer): Promise<Parsed> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', PY], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`python3 exited ${code}: ${Buffer.concat(err).toString()}`));
      else resolve(JSON.parse(Buffer.concat(out).toString('utf8')) as Parsed);
    });
    child.stdin.end(dsn);
  });
}

/** Fields of one per-recipient (or per-message) block as a map, names lower-cased. */
function fields(group: Array<[string, string]>): Map<string, string> {
  return new Map(group.map(([k, v]) => [k.toLowerCase(), v]));
}

/** Structural checks every DSN must pass, whatever it reports. */
function assertWellFormed(dsn: Buffer, p: Parsed): void {
  assert.deepEqual(p.defects, [], 'Python found MIME defects');
  assert.equal(p.contentType, 'multipart/report');
  assert.equal(p.reportType, 'delivery-status');
  assert.equal(p.parts.length, 3);
  assert.equal(p.parts[0]!.type, 'text/plain');
  assert.equal(p.parts[1]!.type, 'message/delivery-status');
  // only CRLF line ends, none longer than 998 octets
  const s = dsn.toString('latin1');
  assert.doesNotMatch(s, /\r(?!\n)|(?<!\r)\n/, 'bare CR or LF');
  for (const line of s.split('\r\n')) assert.ok(line.length <= 998, `line of ${line.length}`);
  assert.equal(p.headers['auto-submitted'], 'auto-replied');
  assert.equal(p.headers['mime-version'], '1.0');
  assert.match(p.headers['message-id']!, /^<[^@<>\s]+@mta\.example\.org>$/);
  assert.match(p.headers['date']!, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
  assert.equal(p.headers['from'], 'Mail Delivery System <postmaster@example.org>');
}

const ORIGINAL = Buffer.from(
  [
    'From: Alice <alice@example.org>',
    'To: bob@example.net, carol@example.com',
    'Subject: Quarterly figures',
    'Message-ID: <orig-1@example.org>',
    'Date: Sun, 01 Mar 2026 11:00:00 +0000',
    '',
    'Here are the figures.',
    'BODY-MARKER line two.',
    '',
  ].join('\r\n'),
);

const T_ARRIVAL = new Date(Date.UTC(2026, 2, 1, 11, 0, 5));
const T_NOW = new Date(Date.UTC(2026, 2, 1, 12, 0, 0));

function base(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mta.example.org',
    from: 'postmaster@example.org',
    to: 'alice@example.org',
    arrivalDate: T_ARRIVAL,
    recipients: [],
    original: ORIGINAL,
    ret: 'FULL',
    now: T_NOW,
    ...over,
  };
}

test('failed to two recipients with different statuses: subject, groups, human text, original attached', async () => {
  const dsn = buildDsn(
    base({
      recipients: [
        { address: 'bob@example.net', action: 'failed', status: '5.1.1', remoteMta: 'mx.example.net', diagnostic: '550 5.1.1 User unknown', lastAttempt: T_NOW },
        { address: 'carol@example.com', action: 'failed', status: '5.2.2', remoteMta: 'mx.example.com', diagnostic: '552 5.2.2 Mailbox full' },
      ],
    }),
  );
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  assert.equal(p.headers['subject'], 'Undelivered Mail Returned to Sender');
  assert.equal(p.headers['to'], 'alice@example.org');
  assert.equal(p.headers['date'], 'Sun, 01 Mar 2026 12:00:00 +0000');

  const groups = p.parts[1]!.groups!;
  assert.equal(groups.length, 3, 'one per-message block and two recipient blocks');
  const msg = fields(groups[0]!);
  assert.equal(msg.get('reporting-mta'), 'dns; mta.example.org');
  assert.equal(msg.get('arrival-date'), 'Sun, 01 Mar 2026 11:00:05 +0000');
  assert.equal(msg.has('original-envelope-id'), false, 'no ENVID given, none reported');
  const bob = fields(groups[1]!);
  assert.equal(bob.get('final-recipient'), 'rfc822; bob@example.net');
  assert.equal(bob.get('action'), 'failed');
  assert.equal(bob.get('status'), '5.1.1');
  assert.equal(bob.get('remote-mta'), 'dns; mx.example.net');
  assert.equal(bob.get('diagnostic-code'), 'smtp; 550 5.1.1 User unknown');
  assert.equal(bob.get('last-attempt-date'), 'Sun, 01 Mar 2026 12:00:00 +0000');
  assert.equal(bob.has('will-retry-until'), false);
  const carol = fields(groups[2]!);
  assert.equal(carol.get('final-recipient'), 'rfc822; carol@example.com');
  assert.equal(carol.get('status'), '5.2.2');
  assert.equal(carol.get('diagnostic-code'), 'smtp; 552 5.2.2 Mailbox full');

  const human = p.parts[0]!.text!;
  assert.equal(p.parts[0]!.charset, 'utf-8');
  assert.match(human, /<bob@example\.net>/);
  assert.match(human, /mailbox does not exist/);
  assert.match(human, /<carol@example\.com>/);
  assert.match(human, /mailbox is full/);
  assert.match(human, /550 5\.1\.1 User unknown/);

  const att = p.parts[2]!;
  assert.equal(att.type, 'message/rfc822');
  assert.equal(att.subject, 'Quarterly figures');
  assert.match(att.body!, /BODY-MARKER/);
  // the original is carried byte for byte
  assert.ok(dsn.includes(ORIGINAL));
});

test('delayed: subject, Will-Retry-Until and the give-up time in the human part', async () => {
  const until = new Date(Date.UTC(2026, 2, 6, 11, 0, 5));
  const dsn = buildDsn(
    base({
      recipients: [{ address: 'bob@example.net', action: 'delayed', status: '4.4.1', remoteMta: 'mx.example.net', diagnostic: 'connection timed out', lastAttempt: T_NOW, willRetryUntil: until }],
    }),
  );
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  assert.equal(p.headers['subject'], 'Delayed Mail (still being retried)');
  const bob = fields(p.parts[1]!.groups![1]!);
  assert.equal(bob.get('action'), 'delayed');
  assert.equal(bob.get('status'), '4.4.1');
  assert.equal(bob.get('will-retry-until'), 'Fri, 06 Mar 2026 11:00:05 +0000');
  const human = p.parts[0]!.text!.replace(/\s+/g, ' ');
  assert.match(human, /still trying/);
  assert.match(human, /give up/);
  assert.match(human, /Fri, 06 Mar 2026 11:00:05 \+0000/);
  assert.match(human, /did not answer/);
});

test('ENVID and ORCPT are echoed; a success report has its own subject', async () => {
  const dsn = buildDsn(
    base({
      envelopeId: 'QQ314159',
      recipients: [{ address: 'bob@example.net', originalRecipient: 'rfc822;Bob@Example.NET', action: 'delivered', status: '2.0.0', remoteMta: 'mx.example.net' }],
    }),
  );
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  assert.equal(p.headers['subject'], 'Successful Mail Delivery Report');
  const groups = p.parts[1]!.groups!;
  assert.equal(fields(groups[0]!).get('original-envelope-id'), 'QQ314159');
  const bob = fields(groups[1]!);
  assert.equal(bob.get('original-recipient'), 'rfc822; Bob@Example.NET');
  assert.equal(bob.get('final-recipient'), 'rfc822; bob@example.net');
  assert.equal(bob.get('action'), 'delivered');
  // Original-Recipient comes before Final-Recipient (RFC 3464 §2.3)
  assert.deepEqual(groups[1]!.slice(0, 2).map(([k]) => k.toLowerCase()), ['original-recipient', 'final-recipient']);
});

test('RET=HDRS attaches text/rfc822-headers with no body', async () => {
  const dsn = buildDsn(base({ ret: 'HDRS', recipients: [{ address: 'bob@example.net', action: 'failed', status: '5.1.1' }] }));
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  const att = p.parts[2]!;
  assert.equal(att.type, 'text/rfc822-headers');
  assert.match(att.text!, /^Subject: Quarterly figures$/m);
  assert.match(att.text!, /^Message-ID: <orig-1@example\.org>$/m);
  assert.doesNotMatch(att.text!, /BODY-MARKER|Here are the figures/);
  assert.ok(!dsn.includes('BODY-MARKER'));
});

test('RET=FULL of an original above maxFull falls back to headers and says so', async () => {
  const big = Buffer.concat([ORIGINAL, Buffer.from(('x'.repeat(70) + '\r\n').repeat(200))]);
  const input = base({ maxFull: 4096, recipients: [{ address: 'bob@example.net', action: 'failed', status: '5.3.4' }], original: big });
  const dsn = buildDsn(input);
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  assert.equal(p.parts[2]!.type, 'text/rfc822-headers');
  assert.match(p.parts[2]!.text!, /^Subject: Quarterly figures$/m);
  assert.ok(!dsn.includes('BODY-MARKER'));
  assert.match(p.parts[0]!.text!.replace(/\s+/g, ' '), /larger than 4096 bytes, so only its header is attached/);
  // at exactly the limit, the whole message still goes
  const atLimit = await python(buildDsn({ ...input, maxFull: big.length }));
  assert.equal(atLimit.parts[2]!.type, 'message/rfc822');
});

test('a diagnostic with CRLF and non-ASCII cannot break the structure', async () => {
  const evil = '550 5.7.1 Rejected\r\nX-Injected: yes\r\n\r\n--fake-boundary\r\nUtilisateur inconnu: müller 日本';
  const dsn = buildDsn(
    base({
      recipients: [
        { address: 'bob@example.net', action: 'failed', status: '5.7.1', remoteMta: 'mx.example.net\r\nX-Bad: 1', diagnostic: evil },
        { address: 'carol@example.com', action: 'failed', status: '5.1.1' },
      ],
    }),
  );
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  const groups = p.parts[1]!.groups!;
  assert.equal(groups.length, 3, 'the CRLFs did not create extra groups');
  const bob = fields(groups[1]!);
  assert.equal(bob.has('x-injected'), false);
  assert.equal(bob.has('x-bad'), false);
  const diag = bob.get('diagnostic-code')!;
  assert.ok(diag.startsWith('smtp; 550 5.7.1 Rejected X-Injected: yes --fake-boundary'), diag);
  assert.ok(diag.endsWith('m\\x{FC}ller \\x{65E5}\\x{672C}'), diag);
  // the delivery-status part stays 7-bit
  const statusStart = dsn.indexOf('Content-Type: message/delivery-status');
  const statusEnd = dsn.indexOf('Content-Type: message/rfc822');
  assert.ok(statusStart > 0 && statusEnd > statusStart);
  assert.ok(dsn.subarray(statusStart, statusEnd).every((b) => b < 0x80));
  // the human part has the real text, in UTF-8
  assert.match(p.parts[0]!.text!, /müller 日本/);
  assert.doesNotMatch(p.parts[0]!.text!, /^X-Injected/m);
  assert.equal(fields(groups[2]!).get('final-recipient'), 'rfc822; carol@example.com');
});

test('a non-ASCII recipient is reported with the RFC 6533 utf-8 address type', async () => {
  const dsn = buildDsn(base({ recipients: [{ address: 'jörg+x@exämple.de', originalRecipient: 'utf-8;jörg+x@exämple.de', action: 'failed', status: '5.1.1' }] }));
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  const g = fields(p.parts[1]!.groups![1]!);
  assert.equal(g.get('final-recipient'), 'utf-8; j\\x{F6}rg\\x{2B}x@ex\\x{E4}mple.de');
  assert.equal(g.get('original-recipient'), 'utf-8; j\\x{F6}rg\\x{2B}x@ex\\x{E4}mple.de');
});

test('an 8-bit original is labelled 8bit, and a long diagnostic is folded within limits', async () => {
  const orig = Buffer.from('Subject: Grüße\r\nFrom: a@example.org\r\n\r\nHallo Jürgen\r\n', 'utf8');
  const long = '550 ' + Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ') + ' ' + 'z'.repeat(1500);
  const dsn = buildDsn(base({ original: orig, recipients: [{ address: 'bob@example.net', action: 'failed', status: '5.0.0', diagnostic: long }] }));
  const p = await python(dsn);
  assertWellFormed(dsn, p);
  assert.equal(p.parts[2]!.cte, '8bit');
  assert.equal(p.headers['content-transfer-encoding'], '8bit');
  assert.equal(p.parts[2]!.subject, 'Grüße');
  const diag = fields(p.parts[1]!.groups![1]!).get('diagnostic-code')!;
  assert.ok(diag.startsWith('smtp; 550 word0 word1'), diag);
  assert.match(diag, /word59 z{900} z{600}$/);
});

test('the boundary never occurs in the original', () => {
  const bodies = [Buffer.from('text mentioning =_fe-dsn-aaaa in passing')];
  const seq = ['aaaa', 'aaaa', 'bbbb'];
  let i = 0;
  const b = chooseBoundary(bodies, () => seq[i++]!);
  assert.equal(b, '=_fe-dsn-bbbb');
  assert.equal(i, 3, 'the clashing candidates were tried and refused');
  assert.throws(() => chooseBoundary(bodies, () => 'aaaa'), /boundary/);
});

test('the boundary in a built DSN is absent from an original that quotes earlier DSNs', async () => {
  const dsn1 = buildDsn(base({ recipients: [{ address: 'bob@example.net', action: 'failed', status: '5.1.1' }] }));
  // a DSN about a DSN: the original already contains a =_fe-dsn- boundary
  const dsn2 = buildDsn(base({ original: dsn1, recipients: [{ address: 'alice@example.org', action: 'failed', status: '5.1.1' }] }));
  const p = await python(dsn2);
  assertWellFormed(dsn2, p);
  assert.ok(!dsn1.includes(p.boundary!));
  assert.equal(p.parts[2]!.subject, 'Undelivered Mail Returned to Sender');
});

test('building refuses the null sender, no recipients and a malformed status', () => {
  const r = [{ address: 'bob@example.net', action: 'failed' as const, status: '5.1.1' }];
  assert.throws(() => buildDsn(base({ to: '', recipients: r })), /null sender/);
  assert.throws(() => buildDsn(base({ to: '<>', recipients: r })), /null sender/);
  assert.throws(() => buildDsn(base({ recipients: [] })), /no recipients/);
  assert.throws(() => buildDsn(base({ recipients: [{ ...r[0]!, status: '550' }] })), /bad status/);
});

test('xtext decoding of ENVID/ORCPT values from SMTP', () => {
  assert.equal(decodeXtext('bob+2Btag@example.org'), 'bob+tag@example.org');
  assert.equal(decodeXtext('id+3Done+20two'), 'id=one two');
  // lower-case or short escapes are not xtext; left alone
  assert.equal(decodeXtext('a+2b+4'), 'a+2b+4');
});

test('quoted-printable and folding helpers keep lines short', () => {
  const qp = quotedPrintable('ä'.repeat(60) + ' end \n=x');
  for (const line of qp.split('\r\n')) assert.ok(line.length <= 76, line);
  assert.ok(qp.endsWith('end=20\r\n=3Dx'), qp);
  const folded = foldField('Diagnostic-Code', 'smtp; ' + 'abc '.repeat(50));
  for (const line of folded.split('\r\n')) assert.ok(line.length <= 78, line);
  assert.equal(folded.replace(/\r\n /g, ' '), 'Diagnostic-Code: smtp; ' + 'abc '.repeat(50).trim() + '\r\n');
});

const HDR = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'));
// the body quotes header lines; only the header block may count
const PLAIN = HDR('From: a@example.org\nSubject: hi\n\nAuto-Submitted: auto-replied\nList-Id: <l.example.org>\nPrecedence: bulk\n');

test('dsnWanted: defaults without NOTIFY are failure and delay, not success', () => {
  assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: PLAIN, notify: null, kind: 'failed' }), true);
  assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: PLAIN, kind: 'delayed' }), true);
  assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: PLAIN, notify: null, kind: 'delivered' }), false);
});

test('dsnWanted: never to the null sender', () => {
  for (const from of ['', '<>', ' <> ']) {
    assert.equal(dsnWanted({ envelopeFrom: from, headers: PLAIN, notify: ['FAILURE'], kind: 'failed' }), false, JSON.stringify(from));
  }
});

test('dsnWanted: Auto-Submitted other than "no" suppresses every kind', () => {
  const auto = HDR('From: a@example.org\nAuto-Submitted: auto-replied\nSubject: away\n\n');
  const folded = HDR('From: a@example.org\nAuto-Submitted:\n  Auto-Generated; owner-email="x@example.org"\n\n');
  const no = HDR('From: a@example.org\nAuto-Submitted: no (a person wrote this)\n\n');
  // a folded "no" is still "no": the value is on the continuation line
  const foldedNo = HDR('From: a@example.org\nAuto-Submitted:\n no\nSubject: hi\n\n');
  for (const kind of ['failed', 'delayed', 'delivered'] as const) {
    assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: auto, notify: ['SUCCESS', 'FAILURE', 'DELAY'], kind }), false, kind);
    assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: folded, notify: ['SUCCESS', 'FAILURE', 'DELAY'], kind }), false, kind);
    assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: no, notify: ['SUCCESS', 'FAILURE', 'DELAY'], kind }), true, kind);
    assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: foldedNo, notify: ['SUCCESS', 'FAILURE', 'DELAY'], kind }), true, kind);
  }
  // header-looking lines in the body are not headers
  assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: PLAIN, kind: 'failed' }), true);
});

test('dsnWanted: list mail gets no failure or delay DSN, but an asked-for success DSN', () => {
  const listId = HDR('From: a@example.org\nList-Id: Friends <friends.example.org>\n\n');
  const unsub = HDR('From: a@example.org\nList-Unsubscribe: <mailto:leave@example.org>\n\n');
  const bulk = HDR('From: a@example.org\nPrecedence: bulk\n\n');
  const junk = HDR('From: a@example.org\nprecedence: JUNK\n\n');
  const first = HDR('From: a@example.org\nPrecedence: first-class\n\n');
  for (const h of [listId, unsub, bulk, junk]) {
    assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: h, kind: 'failed' }), false);
    assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: h, notify: ['DELAY'], kind: 'delayed' }), false);
    assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: h, notify: ['SUCCESS'], kind: 'delivered' }), true);
  }
  assert.equal(dsnWanted({ envelopeFrom: 'a@example.org', headers: first, kind: 'failed' }), true);
});

test('dsnWanted: NOTIFY=NEVER and NOTIFY lists are honoured per kind', () => {
  const w = (notify: string[], kind: 'failed' | 'delayed' | 'delivered') => dsnWanted({ envelopeFrom: 'a@example.org', headers: PLAIN, notify, kind });
  for (const kind of ['failed', 'delayed', 'delivered'] as const) assert.equal(w(['NEVER'], kind), false, kind);
  // NEVER beside other values is malformed (RFC 3461 §4.1); NEVER wins
  assert.equal(w(['NEVER', 'FAILURE'], 'failed'), false);
  assert.equal(w(['SUCCESS'], 'failed'), false);
  assert.equal(w(['SUCCESS'], 'delayed'), false);
  assert.equal(w(['SUCCESS'], 'delivered'), true);
  assert.equal(w(['FAILURE'], 'delayed'), false);
  assert.equal(w(['failure', 'delay'], 'delayed'), true);
  assert.equal(w(['FAILURE', 'DELAY'], 'failed'), true);
  assert.equal(w(['FAILURE', 'DELAY', 'SUCCESS'], 'delivered'), true);
});
