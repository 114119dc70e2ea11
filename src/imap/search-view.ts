// The message view SEARCH evaluates: cheap fields from the message list, header and body text
// loaded from the encrypted store only when a key asks for them.
import type { MailboxStore, MessageSummary } from '../store/mailbox-db.js';
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

export function searchView(store: MailboxStore, folder: string, m: MessageSummary, seq: number): SearchMessage {
  let raw: Buffer | null = null;
  let headers: Map<string, string[]> | null = null;
  let sent: Date | null | undefined;
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
    get sentDate() {
      if (sent === undefined) sent = store.getMessage(folder, m.uid)?.sentAt ?? null;
      return sent;
    },
    get headers() {
      return (headers ??= headerFields(split().head));
    },
    // Body text as stored: transfer encodings are not undone yet, so base64 parts do not match.
    body: () => split().body,
    text: () => load().toString('utf8'),
  };
}
