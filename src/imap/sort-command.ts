// The SORT and THREAD commands (RFC 5256) with ESORT's RETURN options and PARTIAL (RFC 5267):
// argument parsing, the facts read from the store for the matching messages, and the response.
import type { MailboxStore } from '../store/mailbox-db.js';
import type { Envelope } from '../store/message-parse.js';
import { headerFields } from '../store/message-text.js';
import { ImapSyntaxError, type Token } from './parser.js';
import { parseSearch, SearchError, type SearchCommand } from './search.js';
import { orderedSequenceSet, parseSortCriteria, sortKey, sortMessages, type SortCriterion, type SortFacts, type SortKeyName } from './sort.js';
import { formatThreads, messageIds, threadOrderedSubject, threadReferences, type ThreadFacts } from './thread.js';

export type SortReturn = { kind: 'MIN' | 'MAX' | 'ALL' | 'COUNT' } | { kind: 'PARTIAL'; low: number; high: number };

export type SortOrThread =
  | { type: 'sort'; criteria: SortCriterion[]; returns: SortReturn[] | null; search: SearchCommand }
  | { type: 'thread'; algorithm: 'REFERENCES' | 'ORDEREDSUBJECT'; search: SearchCommand };

export const THREAD_ALGORITHMS = ['ORDEREDSUBJECT', 'REFERENCES'] as const;

function atomValue(t: Token | undefined): string | null {
  return t?.type === 'atom' && t.section === undefined ? t.value : null;
}

/** The charset (required here, RFC 5256) and search keys, parsed as SEARCH parses them. */
function searchPart(args: Token[], utf8: boolean): SearchCommand {
  if (!args[0] || args[0].type === 'list') throw new ImapSyntaxError('a charset must come before the search keys');
  return parseSearch([{ type: 'atom', value: 'CHARSET' } as Token, ...args], { utf8 });
}

function parseReturns(list: Token | undefined): SortReturn[] {
  if (list?.type !== 'list') throw new SearchError('RETURN needs a list');
  const out: SortReturn[] = [];
  for (let i = 0; i < list.items.length; i++) {
    const name = (atomValue(list.items[i]) ?? '').toUpperCase();
    if (name === 'MIN' || name === 'MAX' || name === 'ALL' || name === 'COUNT') {
      if (!out.some((r) => r.kind === name)) out.push({ kind: name });
    } else if (name === 'PARTIAL') {
      // RFC 5267 4.4: PARTIAL low:high, 1-based positions in the sorted result
      const m = /^(\d{1,10}):(\d{1,10})$/.exec(atomValue(list.items[++i]) ?? '');
      const a = m ? Number(m[1]) : 0;
      const b = m ? Number(m[2]) : 0;
      if (!m || a === 0 || b === 0) throw new SearchError('PARTIAL needs a range low:high of positions from 1');
      out.push({ kind: 'PARTIAL', low: Math.min(a, b), high: Math.max(a, b) });
    } else throw new SearchError(`unknown RETURN option ${name.slice(0, 20)}`);
  }
  if (out.length === 0) out.push({ kind: 'ALL' }); // as for ESEARCH: RETURN () is RETURN (ALL)
  return out;
}

/** `[RETURN (...)] (criteria) charset keys...` (SORT / UID SORT). */
export function parseSort(args: Token[], opts: { utf8: boolean }): SortOrThread {
  let i = 0;
  let returns: SortReturn[] | null = null;
  if ((atomValue(args[0]) ?? '').toUpperCase() === 'RETURN') {
    returns = parseReturns(args[1]);
    i = 2;
  }
  const criteria = parseSortCriteria(args[i]);
  return { type: 'sort', criteria, returns, search: searchPart(args.slice(i + 1), opts.utf8) };
}

/** `algorithm charset keys...` (THREAD / UID THREAD). */
export function parseThread(args: Token[], opts: { utf8: boolean }): SortOrThread {
  const name = (atomValue(args[0]) ?? '').toUpperCase();
  if (!(THREAD_ALGORITHMS as readonly string[]).includes(name)) throw new SearchError(`unknown threading algorithm ${name.slice(0, 20)}; fe has ${THREAD_ALGORITHMS.join(' and ')}`);
  return { type: 'thread', algorithm: name as 'REFERENCES' | 'ORDEREDSUBJECT', search: searchPart(args.slice(1), opts.utf8) };
}

/** The References field of a stored header (read only for THREAD REFERENCES). */
function referencesOf(header: Buffer | null): string[] {
  if (!header) return [];
  const head = header.toString('utf8');
  if (!/^references:/im.test(head)) return [];
  return messageIds((headerFields(head).get('references') ?? []).join(' '));
}

const EMPTY_ENVELOPE: Envelope = { date: null, subject: null, from: null, sender: null, replyTo: null, to: null, cc: null, bcc: null, inReplyTo: null, messageId: null };
const DATE_ONLY = new Set(['ARRIVAL', 'DATE', 'SIZE']);

// SORT keys and THREAD facts by UID, per open mailbox and folder (name and UIDVALIDITY: a UID
// names one message for good there, RFC 3501 2.3.1.1, and its envelope, dates and header never
// change). Reading and parsing every envelope was most of a SORT (SUBJECT) of 10,000 messages,
// ~130 ms each time; a repeated SORT or THREAD, by the same client or another session of the
// mailbox, reads nothing. Entries of expunged messages stay until the mailbox closes; a folder
// past CACHE_LIMIT messages is not kept.
interface CachedFacts {
  size: number;
  internalDate: number;
  sentDate: number;
  keys: Map<SortKeyName, string | number>;
  /** The envelope fields THREAD compares (the rest of the envelope is not kept). */
  thread?: Pick<Envelope, 'subject' | 'messageId' | 'inReplyTo'>;
  /** Message ids of the References header (THREAD=REFERENCES). */
  references?: string[];
}
interface Needs {
  keys: readonly SortKeyName[];
  thread: boolean;
  references: boolean;
}
const CACHE_LIMIT = 200_000;
const sortCache = new WeakMap<MailboxStore, Map<string, Map<number, CachedFacts>>>();

function folderCache(store: MailboxStore, folder: string): Map<number, CachedFacts> | null {
  const state = store.folderState(folder);
  if (!state) return null;
  let byFolder = sortCache.get(store);
  if (!byFolder) sortCache.set(store, (byFolder = new Map()));
  const id = `${state.uidValidity} ${state.name}`;
  let entries = byFolder.get(id);
  if (!entries) byFolder.set(id, (entries = new Map()));
  return entries;
}

/** What the keys compare, for the matching messages (`found`: sequence number and UID). */
export function sortFacts(store: MailboxStore, folder: string, found: readonly { seq: number; uid: number }[], cmd: SortOrThread): ThreadFacts[] {
  // THREAD compares subjects and message ids, REFERENCES also the References header
  const needs: Needs = cmd.type === 'sort' ? { keys: [...new Set(cmd.criteria.map((c) => c.key))], thread: false, references: false } : { keys: [], thread: true, references: cmd.algorithm === 'REFERENCES' };
  const complete = (e: CachedFacts | undefined): e is CachedFacts =>
    e !== undefined && needs.keys.every((k) => e.keys.has(k)) && (!needs.thread || e.thread !== undefined) && (!needs.references || e.references !== undefined);
  const kept = folderCache(store, folder);
  let cache = kept ?? new Map<number, CachedFacts>();
  if (!found.every((f) => complete(cache.get(f.uid)))) {
    const rows = store.sortRows(folder, { envelope: needs.thread || needs.keys.some((k) => !DATE_ONLY.has(k)), header: needs.references });
    if (rows.size > CACHE_LIMIT) {
      kept?.clear();
      cache = new Map(); // this command's only
    }
    for (const [uid, d] of rows) {
      let entry = cache.get(uid);
      if (complete(entry)) continue;
      const facts: SortFacts = { seq: 0, uid, size: d.size, internalDate: d.internalDate, sentDate: d.sentAt ?? d.internalDate, envelope: d.envelope === null ? EMPTY_ENVELOPE : (JSON.parse(d.envelope) as Envelope) };
      if (!entry) cache.set(uid, (entry = { size: facts.size, internalDate: facts.internalDate, sentDate: facts.sentDate, keys: new Map() }));
      for (const k of needs.keys) if (!entry.keys.has(k)) entry.keys.set(k, sortKey(facts, k));
      if (needs.thread) entry.thread = { subject: facts.envelope.subject, messageId: facts.envelope.messageId, inReplyTo: facts.envelope.inReplyTo };
      if (needs.references) entry.references = referencesOf(d.header);
    }
  }
  const out: ThreadFacts[] = [];
  for (const { seq, uid } of found) {
    const e = cache.get(uid);
    if (!complete(e)) continue; // expunged by another session meanwhile
    out.push({ seq, uid, size: e.size, internalDate: e.internalDate, sentDate: e.sentDate, envelope: e.thread ? { ...EMPTY_ENVELOPE, ...e.thread } : EMPTY_ENVELOPE, references: e.references ?? [], keys: e.keys });
  }
  return out;
}

/** The untagged response: `* SORT ...`, `* ESEARCH ...` (ESORT) or `* THREAD ...`. */
export function sortOrThreadResponse(cmd: SortOrThread, facts: ThreadFacts[], o: { tag: string; byUid: boolean; highestModseq: number | null }): string {
  const num = (m: ThreadFacts) => (o.byUid ? m.uid : m.seq);
  if (cmd.type === 'thread') {
    const roots = cmd.algorithm === 'REFERENCES' ? threadReferences(facts) : threadOrderedSubject(facts);
    return `* THREAD ${formatThreads(roots, num)}`.trimEnd();
  }
  const nums = sortMessages(facts, cmd.criteria).map(num);
  const modseq = o.highestModseq !== null && nums.length > 0 ? o.highestModseq : null;
  if (!cmd.returns) return `* SORT${nums.map((n) => ' ' + n).join('')}${modseq !== null ? ` (MODSEQ ${modseq})` : ''}`;
  let s = `* ESEARCH (TAG "${o.tag.replace(/[\\"]/g, (c) => '\\' + c)}")${o.byUid ? ' UID' : ''}`;
  for (const r of cmd.returns) {
    // RFC 5267 3.2: MIN and MAX are the first and last in sort order; ALL keeps that order
    if (r.kind === 'MIN' && nums.length) s += ` MIN ${nums[0]}`;
    else if (r.kind === 'MAX' && nums.length) s += ` MAX ${nums.at(-1)}`;
    else if (r.kind === 'ALL' && nums.length) s += ` ALL ${orderedSequenceSet(nums)}`;
    else if (r.kind === 'COUNT') s += ` COUNT ${nums.length}`;
    else if (r.kind === 'PARTIAL') {
      const part = nums.slice(r.low - 1, r.high);
      s += ` PARTIAL (${r.low}:${r.high} ${part.length ? orderedSequenceSet(part) : 'NIL'})`;
    }
  }
  if (modseq !== null) s += ` MODSEQ ${modseq}`;
  return s;
}
