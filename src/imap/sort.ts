// SORT (RFC 5256) with DISPLAYFROM/DISPLAYTO (RFC 5957): criteria parsing, the per-message facts
// the keys compare, and the ordering. Ties are broken by sequence number, as RFC 5256 3 requires.
import { decodeWords, type Address, type Envelope } from '../store/message-parse.js';
import { baseSubject } from './base-subject.js';
import { ImapSyntaxError, type Token } from './parser.js';

export type SortKeyName = 'ARRIVAL' | 'CC' | 'DATE' | 'FROM' | 'SIZE' | 'SUBJECT' | 'TO' | 'DISPLAYFROM' | 'DISPLAYTO';
export interface SortCriterion {
  key: SortKeyName;
  reverse: boolean;
}

const KEYS = new Set<string>(['ARRIVAL', 'CC', 'DATE', 'FROM', 'SIZE', 'SUBJECT', 'TO', 'DISPLAYFROM', 'DISPLAYTO']);

/** `(REVERSE DATE SUBJECT)` -> criteria; BAD on an unknown key, a dangling REVERSE or an empty list. */
export function parseSortCriteria(tok: Token | undefined): SortCriterion[] {
  if (tok?.type !== 'list' || tok.items.length === 0) throw new ImapSyntaxError('SORT needs a parenthesised list of sort criteria');
  const out: SortCriterion[] = [];
  let reverse = false;
  for (const t of tok.items) {
    const name = t.type === 'atom' ? t.value.toUpperCase() : '';
    if (name === 'REVERSE') {
      if (reverse) throw new ImapSyntaxError('REVERSE twice');
      reverse = true;
      continue;
    }
    if (!KEYS.has(name)) throw new ImapSyntaxError(`unknown sort criterion ${name.slice(0, 20) || '(not an atom)'}`);
    out.push({ key: name as SortKeyName, reverse });
    reverse = false;
  }
  if (reverse) throw new ImapSyntaxError('REVERSE must precede a sort key');
  return out;
}

/** What SORT and THREAD know of one message; strings are computed once per command. */
export interface SortFacts {
  seq: number;
  uid: number;
  size: number;
  internalDate: number;
  /** Date: header in ms, or the internal date when it is missing or does not parse (RFC 5256 2.2). */
  sentDate: number;
  envelope: Envelope;
  /** Keys computed before (sort-command.ts keeps them per open mailbox); the envelope is not read for these. */
  keys?: ReadonlyMap<SortKeyName, string | number>;
}

function firstAddress(list: Address[] | null): Address | null {
  // group markers have no host; the first real mailbox counts
  return list?.find((a) => a.host !== null && a.mailbox !== null) ?? null;
}

/** addr-mailbox of the first address (RFC 5256: the local part), compared ASCII case-insensitively. */
function mailboxKey(list: Address[] | null): string {
  return asciiUpper(firstAddress(list)?.mailbox ?? '');
}

/** RFC 5957: the display name if there is one, else the addr-spec. */
function displayKey(list: Address[] | null): string {
  const a = firstAddress(list);
  if (!a) return '';
  const name = a.name ? decodeWords(a.name).trim() : '';
  return (name || `${a.mailbox}@${a.host}`).toLowerCase();
}

function asciiUpper(s: string): string {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

/** What criterion `key` compares for this message. */
export function sortKey(m: SortFacts, key: SortKeyName): string | number {
  const known = m.keys?.get(key);
  if (known !== undefined) return known;
  switch (key) {
    case 'ARRIVAL':
      return m.internalDate;
    case 'DATE':
      return m.sentDate;
    case 'SIZE':
      return m.size;
    case 'CC':
      return mailboxKey(m.envelope.cc);
    case 'FROM':
      return mailboxKey(m.envelope.from);
    case 'TO':
      return mailboxKey(m.envelope.to);
    case 'SUBJECT':
      return baseSubject(m.envelope.subject).key;
    case 'DISPLAYFROM':
      return displayKey(m.envelope.from);
    case 'DISPLAYTO':
      return displayKey(m.envelope.to);
  }
}

function compare(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The messages in the order the criteria give (a new array). */
export function sortMessages<T extends SortFacts>(messages: readonly T[], criteria: readonly SortCriterion[]): T[] {
  // keys computed once per message, not once per comparison
  const keyed = messages.map((m) => ({ m, k: criteria.map((c) => sortKey(m, c.key)) }));
  keyed.sort((x, y) => {
    for (let i = 0; i < criteria.length; i++) {
      const c = compare(x.k[i]!, y.k[i]!);
      if (c !== 0) return criteria[i]!.reverse ? -c : c;
    }
    return x.m.seq - y.m.seq;
  });
  return keyed.map((e) => e.m);
}

/**
 * A list of numbers in the order given, as a sequence-set whose ranges only join ascending
 * neighbours (RFC 5267 ESORT: ALL keeps the sort order).
 */
export function orderedSequenceSet(nums: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < nums.length; ) {
    let j = i;
    while (j + 1 < nums.length && nums[j + 1] === nums[j]! + 1) j++;
    parts.push(j > i ? `${nums[i]}:${nums[j]}` : String(nums[i]));
    i = j + 1;
  }
  return parts.join(',');
}
