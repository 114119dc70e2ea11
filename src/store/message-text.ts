// The text inside a message, as search reads it: header fields unfolded with their RFC 2047
// encoded words decoded, and every text part with its transfer encoding and charset undone.
// Used by IMAP SEARCH/SORT and by the store's full-text index, so it lives with the parser.
import type { BodyPart } from './message-parse.js';
import { decodeTransferEncoding } from './transfer-encoding.js';

/** RFC 2047 encoded words (=?charset?B|Q?...?=) decoded; unknown charsets are left as they are. */
export function decodeEncodedWords(value: string): string {
  return value.replace(/=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=(\s+(?==\?))?/g, (whole, charset: string, enc: string, text: string) => {
    try {
      const bytes = enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64') : Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_: string, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
      return new TextDecoder(charset.split('*')[0]!.toLowerCase()).decode(bytes);
    } catch {
      return whole;
    }
  });
}

/** Header fields (unfolded, decoded) by lower-case name. */
export function headerFields(header: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  const unfolded = header.replace(/\r?\n[ \t]/g, ' ');
  for (const line of unfolded.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    fields.set(name, [...(fields.get(name) ?? []), decodeEncodedWords(line.slice(colon + 1).trim())]);
  }
  return fields;
}

function decodeCharset(bytes: Buffer, charset: string | undefined): string {
  try {
    return new TextDecoder((charset ?? 'utf-8').toLowerCase(), { fatal: false }).decode(bytes);
  } catch {
    return bytes.toString('utf8'); // a charset TextDecoder does not know
  }
}

/**
 * The text SEARCH BODY looks in: every text part (also inside attached messages), with its
 * transfer encoding and charset undone. Attachments that are not text are skipped.
 */
export function bodyText(raw: Buffer, root: BodyPart): string {
  const out: string[] = [];
  const visit = (p: BodyPart) => {
    if (p.parts) for (const c of p.parts) visit(c);
    else if (p.message) {
      // an attached message's header is part of its parent's body text (RFC 3501 6.4.4 BODY)
      out.push([...headerFields(raw.subarray(p.message.body.headerStart, p.message.body.bodyStart).toString('utf8')).entries()].map(([k, v]) => `${k}: ${v.join(' ')}`).join('\n'));
      visit(p.message.body);
    }
    else if (p.type === 'text') {
      const stored = raw.subarray(p.bodyStart, p.bodyEnd);
      const charset = p.params.find(([k]) => k.toLowerCase() === 'charset')?.[1];
      out.push(decodeCharset(decodeTransferEncoding(stored, p.encoding) ?? stored, charset));
    }
  };
  visit(root);
  return out.join('\n');
}
