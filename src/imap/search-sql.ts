// SEARCH keys that SQL answers exactly from the stored columns: system flags and keywords, sizes,
// internal dates, OLDER/YOUNGER, UIDs, MODSEQ, and the header text kept at delivery (SUBJECT,
// FROM, TO, CC, BCC), and BODY/TEXT once the full-text index covers the folder. One query then
// replaces a view per message. Keys that need the session (sequence numbers, \Recent, "$") or
// the message itself (other headers, Date header days) have no SQL form: toSql returns null and
// the caller evaluates them in JS.
import { STAR } from './parser.js';
import type { SearchContext, SearchKey } from './search.js';
import { fold } from '../store/fulltext.js';

export interface SqlFilter {
  where: string;
  params: (string | number)[];
  /** The condition reads `body_search b` (stored header text). */
  joinBodies: boolean;
}

// Bits of messages.system_flags (mailbox-db.ts)
const FLAG_BITS: Record<string, number> = { '\\seen': 1, '\\answered': 2, '\\flagged': 4, '\\deleted': 8, '\\draft': 16 };
const HEADER_COLUMNS: Record<string, string> = { subject: 'b.subject', from: 'b."from"', to: 'b."to"', cc: 'b.cc', bcc: 'b.bcc' };
const DAY_MS = 86_400_000;

/**
 * BODY/TEXT through the full-text index: the matching UIDs when every message of the folder is
 * indexed, else null.
 */
export type TextLookup = (kind: 'body' | 'text', value: string) => readonly number[] | null;

/** The exact SQL form of `key` over `messages m` / `body_search b`, or null. */
export function toSql(key: SearchKey, ctx: SearchContext, text?: TextLookup): SqlFilter | null {
  const params: (string | number)[] = [];
  let joinBodies = false;
  const walk = (k: SearchKey): string | null => {
    switch (k.type) {
      case 'all':
        return '1';
      case 'flag': {
        const f = k.flag.toLowerCase();
        if (f === '\\recent') return null;
        const bit = FLAG_BITS[f];
        if (bit !== undefined) return `(m.system_flags & ${bit}) ${k.set ? '<>' : '='} 0`;
        if (f.startsWith('\\')) return k.set ? '0' : '1'; // no such flag is ever stored
        // keywords are ASCII atoms stored as " a b " in their first spelling
        params.push(` ${f} `);
        return `instr(lower(m.keywords), ?) ${k.set ? '>' : '='} 0`;
      }
      case 'uid': {
        if (k.set === '$') return null;
        const parts = k.set.map(([a, b]) => {
          const x = a === STAR ? ctx.maxUid : a;
          const y = b === STAR ? ctx.maxUid : b;
          params.push(Math.min(x, y), Math.max(x, y));
          return 'm.uid BETWEEN ? AND ?';
        });
        return parts.length === 0 ? '0' : `(${parts.join(' OR ')})`;
      }
      case 'header': {
        const column = HEADER_COLUMNS[k.field];
        if (!column || k.value === '') return null; // empty value: "has the field", read from the message
        joinBodies = true;
        params.push(fold(k.value));
        return `fe_contains(${column}, ?)`;
      }
      case 'date': {
        if (k.field !== 'internal') return null;
        const z = (ctx.zoneMinutes ?? 0) * 60_000;
        const start = k.day * DAY_MS - z;
        if (k.op === 'before') {
          params.push(start);
          return 'm.internal_date < ?';
        }
        if (k.op === 'since') {
          params.push(start);
          return 'm.internal_date >= ?';
        }
        params.push(start, start + DAY_MS);
        return '(m.internal_date >= ? AND m.internal_date < ?)';
      }
      case 'size':
        params.push(k.n);
        return k.op === 'larger' ? 'm.size > ?' : 'm.size < ?';
      case 'age': {
        params.push((ctx.now ?? new Date()).getTime() - k.seconds * 1000);
        return k.op === 'older' ? 'm.internal_date <= ?' : 'm.internal_date > ?';
      }
      case 'modseq':
        params.push(k.modseq);
        return 'm.modseq >= ?';
      case 'not': {
        const a = walk(k.key);
        return a === null ? null : `NOT (${a})`;
      }
      case 'or': {
        const a = walk(k.a);
        if (a === null) return null;
        const b = walk(k.b);
        return b === null ? null : `((${a}) OR (${b}))`;
      }
      case 'and': {
        const parts: string[] = [];
        for (const c of k.keys) {
          const w = walk(c);
          if (w === null) return null;
          parts.push(`(${w})`);
        }
        return parts.join(' AND ');
      }
      case 'body':
      case 'text': {
        const hits = text?.(k.type, k.value) ?? null;
        if (hits === null) return null;
        params.push(JSON.stringify(hits));
        return 'm.uid IN (SELECT value FROM json_each(?))';
      }
      default:
        return null; // seq, new
    }
  };
  const where = walk(key);
  return where === null ? null : { where, params, joinBodies };
}

/**
 * The SQL form of the conjuncts of `key` that have one, or null: a candidate filter for a key
 * that as a whole has none (every match of `key` satisfies it).
 */
export function candidateSql(key: SearchKey, ctx: SearchContext, text?: TextLookup): SqlFilter | null {
  if (key.type !== 'and') return null;
  const exact = key.keys.filter((k) => toSql(k, ctx, text) !== null);
  if (exact.length === 0) return null;
  return toSql(exact.length === 1 ? exact[0]! : { type: 'and', keys: exact }, ctx, text);
}
