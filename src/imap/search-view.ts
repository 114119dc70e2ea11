// The message view SEARCH evaluates: cheap fields from the message list, header and body text
// loaded from the encrypted store only when a key asks for them.
import type { MailboxStore, MessageSummary } from '../store/mailbox-db.js';
import type { BodyPart, Envelope } from '../store/message-parse.js';
import { bodyText, headerFields } from '../store/message-text.js';
import type { SearchMessage } from './search.js';

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
