// Wraps a message as PGP/MIME (RFC 3156 section 4) with header protection (RFC 9788): the
// encrypted part is the original message's root part carrying all its header fields and
// hp="cipher"; outside stay the trace fields and what IMAP ENVELOPE and SEARCH need.
import { randomBytes } from 'node:crypto';
import * as openpgp from 'openpgp';
import type { Key } from 'openpgp';
import { splitHeader, type HeaderField } from '../submission/headers.js';
import { armorMessage } from './armor.js';

export type SubjectMode = 'keep' | 'hide';

/** RFC 9788 hcp_baseline: what a hidden Subject reads as outside. */
export const HIDDEN_SUBJECT = '[...]';

// Added on the way by MTAs (fe among them): they describe the transport, not the message.
const TRACE = new Set(['received', 'return-path', 'authentication-results', 'received-spf', 'arc-seal', 'arc-message-signature', 'arc-authentication-results']);
// What mail clients list and search by; copied outside unchanged.
const OUTER = new Set(['from', 'to', 'cc', 'date', 'message-id', 'in-reply-to', 'references']);

/** Content-Type with hp="cipher" (an earlier hp parameter is dropped): this part is the protected header's home. */
function withHp(f: HeaderField | undefined): Buffer {
  if (!f) return Buffer.from('Content-Type: text/plain; charset=us-ascii; hp="cipher"\r\n');
  const text = f.raw.toString('latin1').replace(/\r\n$/, '');
  const cleaned = text.replace(/;[ \t\r\n]*hp[ \t]*=[ \t]*("[^"]*"|[^;\s]*)/gi, '');
  return Buffer.from(`${cleaned};\r\n hp="cipher"\r\n`, 'latin1');
}

/** The HP-Outer field that tells the reader's client what the outer header said (RFC 9788 2.2). */
function hpOuter(f: HeaderField, value?: string): Buffer {
  const raw = value === undefined ? f.raw.toString('latin1') : `${f.name}: ${value}\r\n`;
  return Buffer.from(`HP-Outer: ${raw}`, 'latin1');
}

/**
 * The header section with CRLF line ends, and the body after the blank line as it came. A
 * header ended by bare LFs must still split into fields: read as one field, it would be copied
 * outside whole, body and all.
 */
function splitCanonical(message: Buffer): { fields: HeaderField[]; body: Buffer } {
  let head = message.subarray(0, Math.min(message.length, 1 << 20)).toString('latin1');
  let blank = /\r?\n\r?\n/.exec(head);
  if (!blank && head.length < message.length) {
    head = message.toString('latin1'); // a header over 1 MB, or no body at all: read it whole
    blank = /\r?\n\r?\n/.exec(head);
  }
  const headerText = (blank ? head.slice(0, blank.index) : head).replace(/\r?\n/g, '\r\n');
  const rest = blank ? message.subarray(blank.index + blank[0].length) : Buffer.alloc(0);
  const { fields } = splitHeader(Buffer.from(`${headerText}\r\n\r\n`, 'latin1'));
  return { fields, body: Buffer.concat([Buffer.from('\r\n'), rest]) };
}

/** The cleartext to encrypt and the header fields to show outside. */
export function protectHeaders(message: Buffer, subject: SubjectMode): { inner: Buffer; outer: Buffer[] } {
  const split = splitCanonical(message);
  const outer: Buffer[] = [];
  const inner: Buffer[] = [];
  const outerCopies: Buffer[] = [];
  let contentType: HeaderField | undefined;
  for (const f of split.fields) {
    if (f.name === '') {
      inner.push(f.raw); // not a header field: kept, inside only
      continue;
    }
    if (TRACE.has(f.lower)) {
      outer.push(f.raw);
      continue;
    }
    if (f.lower === 'content-type' && !contentType) {
      contentType = f;
      continue; // written below, with hp="cipher"
    }
    inner.push(f.raw);
    if (OUTER.has(f.lower)) {
      outer.push(f.raw);
      outerCopies.push(hpOuter(f));
    } else if (f.lower === 'subject') {
      const shown = subject === 'keep' ? f.raw : Buffer.from(`Subject: ${HIDDEN_SUBJECT}\r\n`);
      outer.push(shown);
      outerCopies.push(subject === 'keep' ? hpOuter(f) : hpOuter(f, HIDDEN_SUBJECT));
    }
  }
  return { inner: Buffer.concat([...inner, withHp(contentType), ...outerCopies, split.body]), outer };
}

/** `armored` ends in CRLF and holds only armor lines, so no boundary can occur in it. */
export function pgpMime(outer: Buffer[], armored: Buffer): Buffer {
  const boundary = `fe-pgp-${randomBytes(12).toString('hex')}`;
  return Buffer.concat([
    ...outer,
    Buffer.from(
      'MIME-Version: 1.0\r\n' +
        `Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n boundary="${boundary}"\r\n` +
        '\r\n' +
        'This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n' +
        `--${boundary}\r\n` +
        'Content-Type: application/pgp-encrypted\r\n' +
        'Content-Description: PGP/MIME version identification\r\n' +
        '\r\n' +
        'Version: 1\r\n' +
        '\r\n' +
        `--${boundary}\r\n` +
        'Content-Type: application/octet-stream; name="encrypted.asc"\r\n' +
        'Content-Description: OpenPGP encrypted message\r\n' +
        'Content-Disposition: inline; filename="encrypted.asc"\r\n' +
        '\r\n',
    ),
    armored,
    Buffer.from(`--${boundary}--\r\n`),
  ]);
}

/** The whole message encrypted to `key` (or to each of several; valid at `now`) as a PGP/MIME message. */
export async function encryptMessage(message: Buffer, key: Key | Key[], subject: SubjectMode, now: Date = new Date()): Promise<Buffer> {
  const { inner, outer } = protectHeaders(message, subject);
  const binary = await openpgp.encrypt({
    message: await openpgp.createMessage({ binary: new Uint8Array(inner.buffer, inner.byteOffset, inner.length) }),
    encryptionKeys: key,
    date: now,
    format: 'binary',
  });
  return pgpMime(outer, armorMessage(binary));
}

