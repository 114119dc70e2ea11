// Delivery status notifications: RFC 3464 multipart/report with a message/delivery-status part,
// RFC 3461 ENVID/ORCPT/RET echoed back, RFC 6533 "utf-8" address type for non-ASCII addresses.
import { randomBytes } from 'node:crypto';

export { dsnWanted } from './policy.js';

export interface DsnRecipient {
  /** Final recipient (reported as rfc822; ..., or utf-8; ... when it is not ASCII). */
  address: string;
  /** From ORCPT, already typed and xtext-decoded, e.g. 'rfc822;Bob@example.org'. */
  originalRecipient?: string;
  action: 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';
  /** RFC 3463 status, e.g. '5.1.1'. */
  status: string;
  /** Host name of the remote MTA -> Remote-MTA: dns; host. */
  remoteMta?: string;
  /** The remote's reply, e.g. '550 5.1.1 User unknown'. */
  diagnostic?: string;
  /** Diagnostic-Code type; 'smtp' unless the text is not an SMTP reply. */
  diagnosticType?: string;
  lastAttempt?: Date;
  /** For delayed: when we give up. */
  willRetryUntil?: Date;
}

export interface DsnInput {
  /** Our host name (Reporting-MTA, Message-ID domain). */
  reportingMta: string;
  /** Address for the From header, e.g. 'postmaster@example.org'. */
  from: string;
  /** The original envelope sender; must not be the null sender. */
  to: string;
  /** ENVID, xtext-decoded -> Original-Envelope-Id. */
  envelopeId?: string | null;
  arrivalDate: Date;
  recipients: DsnRecipient[];
  /** The original message, CRLF line ends. */
  original: Buffer;
  ret: 'FULL' | 'HDRS';
  /** Above this many bytes RET=FULL falls back to headers only. Default 10 MiB. */
  maxFull?: number;
  now?: Date;
}

const CRLF = '\r\n';
export const DEFAULT_MAX_FULL = 10 * 1024 * 1024;
// diagnostics come from remote servers: keep a hostile one from bloating the report
const MAX_DIAGNOSTIC = 2000;

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC, e.g. 'Sun, 01 Mar 2026 12:00:00 +0000'. */
export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  );
}

/** One line of text: CR, LF, tabs and other controls become spaces, runs of space collapse. */
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').replace(/ {2,}/g, ' ').trim();
}

/** RFC 6533 EmbeddedUnicodeChar: \x{HEX}, upper-case, no leading zeros beyond two digits. */
function embedded(cp: number): string {
  return `\\x{${cp.toString(16).toUpperCase().padStart(2, '0')}}`;
}

/** A single ASCII line; non-ASCII characters are written as \x{HEX} so they stay readable and reversible. */
function asciiLine(s: string): string {
  let out = '';
  for (const ch of oneLine(s)) {
    const cp = ch.codePointAt(0)!;
    out += cp < 0x80 ? ch : embedded(cp);
  }
  return out;
}

/** RFC 6533 utf-8-addr-xtext: QCHAR as is, everything else (incl. space, '+', '=', '\') as \x{HEX}. */
export function utf8AddrXtext(address: string): string {
  let out = '';
  for (const ch of address) {
    const cp = ch.codePointAt(0)!;
    const qchar = cp >= 0x21 && cp <= 0x7e && cp !== 0x2b && cp !== 0x3d && cp !== 0x5c;
    out += qchar ? ch : embedded(cp);
  }
  return out;
}

/**
 * RFC 3461 §4 xtext decoding ('+2B' -> '+'), for ENVID and the address of ORCPT as they arrive
 * over SMTP. Malformed escapes are kept literally rather than guessed at.
 */
export function decodeXtext(s: string): string {
  return s.replace(/\+([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

const isAscii = (s: string) => /^[\x00-\x7f]*$/.test(s);

/** address-type; address for Final-Recipient. */
function typedAddress(address: string): string {
  const a = oneLine(address).replace(/^<(.*)>$/, '$1');
  return isAscii(a) ? `rfc822; ${a}` : `utf-8; ${utf8AddrXtext(a)}`;
}

/** The ORCPT as given ('type;address'); a bare address is taken as rfc822. */
function typedOriginal(orcpt: string): string {
  const s = oneLine(orcpt);
  const semi = s.indexOf(';');
  const type = semi > 0 ? s.slice(0, semi).trim() : 'rfc822';
  const value = semi > 0 ? s.slice(semi + 1).trim() : s;
  if (isAscii(value)) return `${asciiLine(type)}; ${value}`;
  // an 8-bit address cannot go into message/delivery-status as it is; RFC 6533 gives the 7-bit form
  return `utf-8; ${utf8AddrXtext(value)}`;
}

/** A header field folded at spaces near 78 columns; no line ever exceeds 998 (RFC 5322 §2.1.1). */
export function foldField(name: string, value: string): string {
  const words: string[] = [];
  for (const w of value.split(' ')) {
    if (w === '') continue;
    // a word too long for any line is cut; unfolding then shows a space at the cut, which is harmless
    for (let i = 0; i < w.length; i += 900) words.push(w.slice(i, i + 900));
  }
  let out = `${name}:`;
  let lineLen = out.length;
  for (const w of words) {
    if (lineLen + 1 + w.length > 78 && lineLen > name.length + 1) {
      out += `${CRLF} ${w}`;
      lineLen = 1 + w.length;
    } else {
      out += ` ${w}`;
      lineLen += 1 + w.length;
    }
  }
  return out + CRLF;
}

/** Quoted-printable (RFC 2045 §6.7) of UTF-8 text given with '\n' line ends; output lines at most 76. */
export function quotedPrintable(text: string): string {
  const lines = text.split('\n');
  const out: string[] = [];
  for (const line of lines) {
    const bytes = Buffer.from(line, 'utf8');
    let cur = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      const last = i === bytes.length - 1;
      const literal = (b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !last);
      const tok = literal ? String.fromCharCode(b) : '=' + b.toString(16).toUpperCase().padStart(2, '0');
      // leave room for the soft-break '='
      if (cur.length + tok.length > 75) {
        out.push(cur + '=');
        cur = '';
      }
      cur += tok;
    }
    out.push(cur);
  }
  return out.join(CRLF);
}

/** The least transfer encoding a MIME body can be labelled with (RFC 2045 §2.7-2.9). */
function transferClass(body: Buffer): '7bit' | '8bit' | 'binary' {
  let eight = false;
  let lineLen = 0;
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (b === 0x0a) {
      if (i === 0 || body[i - 1] !== 0x0d) return 'binary';
      lineLen = 0;
      continue;
    }
    if (b === 0x0d) {
      if (body[i + 1] !== 0x0a) return 'binary';
      continue;
    }
    if (b === 0) return 'binary';
    if (b >= 0x80) eight = true;
    if (++lineLen > 998) return 'binary';
  }
  return eight ? '8bit' : '7bit';
}

const RANK = { '7bit': 0, '8bit': 1, binary: 2 } as const;

/**
 * A boundary found in none of the bodies. '=_' cannot appear in quoted-printable text, and
 * the random part makes a clash with the original unlikely; the check makes it impossible.
 */
export function chooseBoundary(bodies: Buffer[], random: () => string = () => randomBytes(12).toString('hex')): string {
  for (let tries = 0; tries < 100; tries++) {
    const b = `=_fe-dsn-${random()}`;
    if (!bodies.some((body) => body.includes(b))) return b;
  }
  throw new Error('dsn: could not find a MIME boundary absent from the message');
}

/** The header block of a message, ending in CRLF, without the blank line. */
export function headerBlock(message: Buffer): Buffer {
  if (message.subarray(0, 2).equals(Buffer.from(CRLF))) return Buffer.alloc(0);
  const end = message.indexOf('\r\n\r\n');
  if (end >= 0) return message.subarray(0, end + 2);
  const lf = message.indexOf('\n\n');
  if (lf >= 0) return message.subarray(0, lf + 1);
  return withFinalCrlf(message);
}

function withFinalCrlf(b: Buffer): Buffer {
  return b.length === 0 || b.subarray(-2).equals(Buffer.from(CRLF)) ? b : Buffer.concat([b, Buffer.from(CRLF)]);
}

const STATUS_RE = /^([245])\.(\d{1,3})\.(\d{1,3})$/;

const DETAIL: Record<string, string> = {
  '1.1': 'the mailbox does not exist',
  '1.2': "the recipient's domain does not exist or cannot take mail",
  '1.3': 'the address is not valid',
  '1.6': 'the mailbox has moved and has no forwarding address',
  '1.10': "the recipient's domain says it accepts no mail",
  '2.1': 'the mailbox is disabled',
  '2.2': 'the mailbox is full',
  '2.3': 'the message is larger than the recipient accepts',
  '3.4': 'the message is too large for the receiving system',
  '4.1': 'the receiving server did not answer',
  '4.2': 'the connection to the receiving server broke off',
  '4.4': "no mail server could be found for the recipient's domain",
  '4.7': 'the message waited too long and expired',
  '5.3': 'the message had too many recipients',
  '7.1': 'the receiving server refused the message (policy)',
  '7.7': 'the message failed an integrity check',
};
const SUBJECT = [
  'an unspecified problem',
  'a problem with the address',
  'a problem with the mailbox',
  'a problem with the receiving mail system',
  'a network or routing problem',
  'a mail protocol problem',
  'a problem with the message content',
  'a security or policy problem',
];

/** The status in plain words. */
export function statusInWords(status: string): string {
  const m = STATUS_RE.exec(status);
  if (!m) return 'an unknown problem';
  if (m[1] === '2') return 'delivered';
  return DETAIL[`${m[2]}.${m[3]}`] ?? SUBJECT[Number(m[2])] ?? 'an unspecified problem';
}

/** Greedy word wrap to `width`, keeping an indent on continuation lines. */
function wrap(text: string, width: number, indent = ''): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const w of text.split(' ')) {
    if (w === '') continue;
    if (cur !== '' && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = indent + w;
    } else {
      cur = cur === '' ? (lines.length ? indent : '') + w : `${cur} ${w}`;
    }
  }
  if (cur !== '') lines.push(cur);
  return lines;
}

function humanText(input: DsnInput, headersOnlyBecauseLarge: boolean, maxFull: number): string {
  const host = oneLine(input.reportingMta);
  const out: string[] = [];
  const para = (s: string) => out.push(...wrap(s, 72), '');
  const by = (a: DsnRecipient['action'][]) => input.recipients.filter((r) => a.includes(r.action));
  const rcptLines = (r: DsnRecipient) => {
    out.push(`  <${oneLine(r.address)}>`);
    const details: string[] = [];
    if (r.action === 'failed' || r.action === 'delayed') details.push(`Reason: ${statusInWords(r.status)} (status ${r.status}).`);
    if (r.diagnostic) {
      const who = r.remoteMta ? `The server ${oneLine(r.remoteMta)}` : 'The receiving side';
      details.push(`${who} said: ${oneLine(r.diagnostic).slice(0, MAX_DIAGNOSTIC)}`);
    }
    if (r.action === 'delayed' && r.willRetryUntil) details.push(`We will keep trying until ${rfc5322Date(r.willRetryUntil)}.`);
    if (r.action === 'relayed') details.push('Handed on to a system that does not send delivery reports.');
    if (r.action === 'expanded') details.push('Delivered to a list or alias, which passes the message on.');
    for (const d of details) out.push(...wrap(d, 72, '      ').map((l) => (l.startsWith(' ') ? l : '    ' + l)));
    out.push('');
  };

  para(`This is an automatic report from the mail server ${host} about a message sent from your address.`);
  const failed = by(['failed']);
  const delayed = by(['delayed']);
  const delivered = by(['delivered', 'relayed', 'expanded']);
  if (failed.length) {
    para(
      failed.length === 1
        ? 'The message could not be delivered to this recipient, and we have stopped trying:'
        : 'The message could not be delivered to these recipients, and we have stopped trying:',
    );
    failed.forEach(rcptLines);
  }
  if (delayed.length) {
    para('The message has not been delivered yet to the following, but we are still trying. You do not need to send it again:');
    delayed.forEach(rcptLines);
    const until = delayed.map((r) => r.willRetryUntil).filter((d): d is Date => d instanceof Date);
    if (until.length) {
      const last = new Date(Math.max(...until.map((d) => d.getTime())));
      para(`If it still cannot be delivered by ${rfc5322Date(last)}, we will give up and send you another report.`);
    }
  }
  if (delivered.length) {
    para('The message was delivered as requested to:');
    delivered.forEach(rcptLines);
  }
  if (headersOnlyBecauseLarge) {
    para(`The message is larger than ${maxFull} bytes, so only its header is attached below, not the whole message.`);
  } else if (input.ret === 'HDRS') {
    para('The header of your message is attached below.');
  } else {
    para('Your message is attached below.');
  }
  return out.join('\n').replace(/\n+$/, '\n');
}

function statusBody(input: DsnInput): string {
  const per: string[] = [];
  per.push(foldField('Reporting-MTA', `dns; ${asciiLine(input.reportingMta)}`));
  if (input.envelopeId != null && input.envelopeId !== '') per.push(foldField('Original-Envelope-Id', asciiLine(input.envelopeId)));
  per.push(foldField('Arrival-Date', rfc5322Date(input.arrivalDate)));
  const groups = [per.join('')];
  for (const r of input.recipients) {
    const g: string[] = [];
    if (r.originalRecipient) g.push(foldField('Original-Recipient', typedOriginal(r.originalRecipient)));
    g.push(foldField('Final-Recipient', typedAddress(r.address)));
    g.push(foldField('Action', r.action));
    g.push(foldField('Status', r.status));
    if (r.remoteMta) g.push(foldField('Remote-MTA', `dns; ${asciiLine(r.remoteMta)}`));
    if (r.diagnostic) {
      const type = asciiLine(r.diagnosticType ?? 'smtp').replace(/[;\s]/g, '') || 'smtp';
      g.push(foldField('Diagnostic-Code', `${type}; ${asciiLine(r.diagnostic.slice(0, MAX_DIAGNOSTIC))}`));
    }
    if (r.lastAttempt) g.push(foldField('Last-Attempt-Date', rfc5322Date(r.lastAttempt)));
    if (r.willRetryUntil) g.push(foldField('Will-Retry-Until', rfc5322Date(r.willRetryUntil)));
    groups.push(g.join(''));
  }
  // groups are separated by one blank line (RFC 3464 §2.1)
  return groups.join(CRLF);
}

const ACTIONS = new Set(['failed', 'delayed', 'delivered', 'relayed', 'expanded']);

/** A complete DSN message (RFC 5322, CRLF line ends) to send with the null sender to input.to. */
export function buildDsn(input: DsnInput): Buffer {
  if (input.recipients.length === 0) throw new Error('dsn: no recipients to report on');
  const to = oneLine(input.to).replace(/^<(.*)>$/, '$1');
  if (to === '') throw new Error('dsn: never report to the null sender');
  for (const r of input.recipients) {
    if (!ACTIONS.has(r.action)) throw new Error(`dsn: unknown action ${String(r.action)}`);
    if (!STATUS_RE.exec(r.status)) throw new Error(`dsn: bad status ${JSON.stringify(r.status)}`);
  }
  const now = input.now ?? new Date();
  const maxFull = input.maxFull ?? DEFAULT_MAX_FULL;
  const tooLarge = input.ret === 'FULL' && input.original.length > maxFull;
  const full = input.ret === 'FULL' && !tooLarge;

  const human = Buffer.from(quotedPrintable(humanText(input, tooLarge, maxFull)) + CRLF, 'ascii');
  const status = Buffer.from(statusBody(input), 'ascii');
  const third = full ? withFinalCrlf(input.original) : headerBlock(input.original);
  const thirdType = full ? 'message/rfc822' : 'text/rfc822-headers';
  const thirdCte = transferClass(third);
  const boundary = chooseBoundary([human, status, third]);

  const subject = input.recipients.some((r) => r.action === 'failed')
    ? 'Undelivered Mail Returned to Sender'
    : input.recipients.some((r) => r.action === 'delayed')
      ? 'Delayed Mail (still being retried)'
      : 'Successful Mail Delivery Report';
  const host = asciiLine(input.reportingMta).replace(/[^A-Za-z0-9.\-[\]:]/g, '') || 'localhost';
  const msgId = `<${now.getTime().toString(36)}.${randomBytes(8).toString('hex')}@${host}>`;
  const from = asciiLine(input.from).replace(/[<>"]/g, '');

  const head =
    foldField('Date', rfc5322Date(now)) +
    foldField('From', `"Mail Delivery System" <${from}>`) +
    // To may carry UTF-8 (RFC 6532): such a sender can only be reached over SMTPUTF8 anyway
    foldField('To', `<${to.replace(/[<>]/g, '')}>`) +
    foldField('Subject', subject) +
    foldField('Message-ID', msgId) +
    foldField('Auto-Submitted', 'auto-replied') +
    foldField('MIME-Version', '1.0') +
    foldField('Content-Type', `multipart/report; report-type=delivery-status; boundary="${boundary}"`) +
    foldField('Content-Transfer-Encoding', RANK[thirdCte] > 0 ? thirdCte : '7bit');

  const delim = `${CRLF}--${boundary}${CRLF}`;
  const parts: Buffer[] = [
    Buffer.from(head, 'utf8'),
    Buffer.from(`${CRLF}This is a MIME-encapsulated delivery status report.${CRLF}--${boundary}${CRLF}`),
    Buffer.from(
      'Content-Type: text/plain; charset=utf-8' + CRLF + 'Content-Transfer-Encoding: quoted-printable' + CRLF + CRLF,
    ),
    human,
    Buffer.from(delim + 'Content-Type: message/delivery-status' + CRLF + 'Content-Transfer-Encoding: 7bit' + CRLF + CRLF),
    status,
    Buffer.from(delim + `Content-Type: ${thirdType}` + CRLF + `Content-Transfer-Encoding: ${thirdCte}` + CRLF + CRLF),
    third,
    Buffer.from(`${CRLF}--${boundary}--${CRLF}`),
  ];
  return Buffer.concat(parts);
}
