// The message view SEARCH evaluates: cheap fields from the message list, header and body text
// loaded from the encrypted store only when a key asks for them.
import type { MailboxStore, MessageSummary } from '../store/mailbox-db.js';
import type { BodyPart, Envelope } from '../store/message-parse.js';
import { decodeTransferEncoding } from '../store/transfer-encoding.js';
import type { SearchMessage } from './search.js';

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

type SearchIndex = ReturnType<MailboxStore['searchIndex']>;
const INDEXED = new Set(['subject', 'from', 'to', 'cc', 'bcc']);

/** Per-folder data a SEARCH reads at most once, whichever message first needs it. */
export interface SearchShared {
  headerIndex: () => SearchIndex;
  structures: () => Map<number, { structure: BodyPart; envelope: Envelope }>;
  /** The full-text index's answer for one message (see SearchMessage.fullText), if there is an index. */
  fullText?: (kind: 'body' | 'text', value: string, uid: number) => boolean | null;
}

const MONTH_NAMES = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/** The day a Date header value names ("Tue, 1 Jul 2003 23:30:00 -0700" -> 2003-07-01), or null. */
export function dayWritten(value: string | null | undefined): number | null {
  const m = /(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{2,4})\b/.exec(value ?? '');
  if (!m) return null;
  const month = MONTH_NAMES.indexOf(m[2]!.toLowerCase());
  if (month < 0) return null;
  let year = Number(m[3]);
  if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900; // RFC 5322 4.3
  else if (m[3]!.length === 3) year += 1900;
  const day = Number(m[1]);
  const ms = Date.UTC(year, month, day);
  return new Date(ms).getUTCDate() === day ? Math.floor(ms / 86_400_000) : null;
}

export function searchView(store: MailboxStore, folder: string, m: MessageSummary, seq: number, shared: SearchShared): SearchMessage {
  let raw: Buffer | null = null;
  let headers: Map<string, string[]> | null = null;
  let sent: Date | null | undefined;
  let body: string | undefined;
  const decodedBody = () => {
    const structure = shared.structures().get(m.uid)?.structure;
    return structure ? bodyText(load(), structure) : split().body;
  };
  const load = () => (raw ??= store.getRaw(folder, m.uid) ?? Buffer.alloc(0));
  const split = () => {
    const r = load();
    const end = r.indexOf('\r\n\r\n');
    return end < 0 ? { head: r.toString('utf8'), body: '' } : { head: r.subarray(0, end).toString('utf8'), body: r.subarray(end + 4).toString('utf8') };
  };
  return {
    seq,
    uid: m.uid,
    flags: m.flags,
    internalDate: m.internalDate,
    size: m.size,
    modseq: m.modseq,
    get sentDay() {
      const written = dayWritten(shared.structures().get(m.uid)?.envelope.date);
      if (written !== null) return written;
      const d = this.sentDate;
      return d === null ? null : Math.floor(d.getTime() / 86_400_000);
    },
    get sentDate() {
      if (sent === undefined) sent = store.getMessage(folder, m.uid)?.sentAt ?? null;
      return sent;
    },
    indexedHeader(field: string): string | null {
      if (!INDEXED.has(field)) return null;
      const row = shared.headerIndex().get(m.uid);
      return row ? row[field as keyof typeof row] : null;
    },
    get headers() {
      return (headers ??= headerFields(split().head));
    },
    fullText: (kind, value) => shared.fullText?.(kind, value, m.uid) ?? null,
    body: () => (body ??= decodedBody()),
    text: () => split().head + '\n' + (body ??= decodedBody()),
  };
}
