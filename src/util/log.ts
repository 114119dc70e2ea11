// Daemon logging: one line per event on stderr (journald adds the time). Never message content
// or passwords; at the default level addresses are masked, so a log leaks no correspondents.
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** An address as it may appear in logs at this level. */
  addr(address: string): string;
  child(component: string): Logger;
}

function maskAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address ? '***' : '<>';
  const local = address.slice(0, at);
  return `${local.slice(0, 1)}***@${address.slice(at + 1)}`;
}

// Characters that must not reach a terminal or a log viewer raw: C0/DEL/C1 controls (escape
// sequences, fake line breaks), format characters (bidi overrides), line/paragraph separators.
// Client-supplied strings (login names, EHLO names, addresses, mailbox names) end up in fields
// and messages, so the logger escapes everything it writes rather than trusting each call site.
const UNSAFE = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;
const hex = (c: string) => {
  const n = c.codePointAt(0)!;
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
};

/** A string with every unsafe character escaped as \xHH or \u{H...}. */
export function escapeForLog(s: string): string {
  return s.replace(UNSAFE, hex);
}

// JSON.stringify escapes C0 controls, quotes and backslashes; the rest of UNSAFE gets a JSON escape too.
const jsonSafe = (v: unknown) => (JSON.stringify(v) ?? String(v)).replace(UNSAFE, (c) => [...Array(c.length).keys()].map((i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''));

function format(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${escapeForLog(k)}=${typeof v === 'string' && /^[^\s"=\\\p{C}\p{Z}]+$/u.test(v) ? v : jsonSafe(v)}`)
    .join(' ');
}

export function createLogger(level: Level = 'info', component = 'fe', write: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const at = (l: Level) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[l] < ORDER[level]) return;
    const extra = format(fields);
    write(`${l} ${component}: ${escapeForLog(msg)}${extra ? ' ' + extra : ''}`);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    addr: (a) => (level === 'debug' ? a || '<>' : maskAddress(a)),
    child: (c) => createLogger(level, `${component}/${c}`, write),
  };
}
