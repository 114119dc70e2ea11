// What submission fixes in a message before it is signed (RFC 6409 section 8): a missing
// Message-ID or Date is added, Bcc is removed so no recipient learns of the others. Header bytes
// are kept as they came otherwise: the DKIM signature covers them.
import { randomBytes } from 'node:crypto';
import { parseAddressList } from '../store/message-parse.js';

export interface HeaderField {
  name: string; // as written
  lower: string;
  raw: Buffer; // the whole field with its folded lines and the final CRLF
}

export interface SplitMessage {
  fields: HeaderField[];
  body: Buffer; // from the blank line on (CRLF CRLF included), or empty when there is none
}

/** Splits the header block into fields (continuation lines stay with their field). */
export function splitHeader(message: Buffer): SplitMessage {
  let end = message.indexOf('\r\n\r\n');
  let bodyStart: number;
  if (end < 0) {
    end = message.length;
    bodyStart = message.length;
  } else {
    end += 2; // keep the last field's CRLF with the fields
    bodyStart = end;
  }
  const fields: HeaderField[] = [];
  let pos = 0;
  while (pos < end) {
    let next = message.indexOf('\r\n', pos);
    if (next < 0 || next >= end) next = end;
    else next += 2;
    // continuation lines start with space or tab
    while (next < end && (message[next] === 0x20 || message[next] === 0x09)) {
      const n = message.indexOf('\r\n', next);
      next = n < 0 || n >= end ? end : n + 2;
    }
    const raw = message.subarray(pos, next);
    const colon = raw.indexOf(0x3a);
    const name = colon > 0 ? raw.subarray(0, colon).toString('latin1').trim() : '';
    fields.push({ name, lower: name.toLowerCase(), raw });
    pos = next;
  }
  return { fields, body: message.subarray(bodyStart) };
}

export function fieldValue(f: HeaderField): string {
  const text = f.raw.toString('utf8');
  return text.slice(text.indexOf(':') + 1).replace(/\r\n([ \t])/g, '$1').trim();
}

/** The addresses (lower-cased local@domain as written) of every From field. */
export function fromAddresses(split: SplitMessage): string[] {
  const out: string[] = [];
  for (const f of split.fields) {
    if (f.lower !== 'from') continue;
    for (const a of parseAddressList(fieldValue(f)) ?? []) if (a.mailbox !== null && a.host !== null) out.push(`${a.mailbox}@${a.host}`);
  }
  return out;
}

export function rfc5322Date(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${d.getUTCDate()} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/**
 * The message as it leaves: Bcc removed, Message-ID and Date added when missing. Returns the
 * Message-ID it carries (with angle brackets).
 */
export function prepareOutgoing(message: Buffer, idDomain: string, now = new Date()): { message: Buffer; messageId: string; bcc: boolean } {
  const split = splitHeader(message);
  const kept = split.fields.filter((f) => f.lower !== 'bcc');
  const added: string[] = [];
  let messageId = kept.find((f) => f.lower === 'message-id');
  let id = messageId ? fieldValue(messageId) : '';
  if (!messageId || !/^<[^<>\s]+@[^<>\s]+>$/.test(id)) {
    if (messageId) kept.splice(kept.indexOf(messageId), 1); // an unusable one: replaced, so threading and dedupe work
    id = `<${randomBytes(12).toString('base64url')}@${idDomain}>`;
    added.push(`Message-ID: ${id}\r\n`);
    messageId = undefined;
  }
  if (!kept.some((f) => f.lower === 'date')) added.push(`Date: ${rfc5322Date(now)}\r\n`);
  const body = split.body.length > 0 ? split.body : Buffer.from('\r\n');
  return { message: Buffer.concat([...kept.map((f) => f.raw), Buffer.from(added.join(''), 'latin1'), body]), messageId: id, bcc: kept.length !== split.fields.length };
}
