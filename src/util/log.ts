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

function format(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
}

export function createLogger(level: Level = 'info', component = 'fe', write: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const at = (l: Level) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[l] < ORDER[level]) return;
    const extra = format(fields);
    write(`${l} ${component}: ${msg}${extra ? ' ' + extra : ''}`);
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
