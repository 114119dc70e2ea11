// Terminal output: plain text for people (color only on a terminal, never with NO_COLOR), JSON for scripts.
function colorEnabled(stream: NodeJS.WriteStream): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  if (process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && process.env.TERM !== 'dumb';
}

function paint(code: number, text: string, stream: NodeJS.WriteStream = process.stdout): string {
  return colorEnabled(stream) ? `\x1b[${code}m${text}\x1b[0m` : text;
}

export const style = {
  bold: (s: string, stream?: NodeJS.WriteStream) => paint(1, s, stream),
  red: (s: string, stream?: NodeJS.WriteStream) => paint(31, s, stream),
  green: (s: string, stream?: NodeJS.WriteStream) => paint(32, s, stream),
  yellow: (s: string, stream?: NodeJS.WriteStream) => paint(33, s, stream),
  dim: (s: string, stream?: NodeJS.WriteStream) => paint(2, s, stream),
  enabled: () => colorEnabled(process.stdout),
};

export function print(line = ''): void {
  process.stdout.write(line + '\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function warn(message: string): void {
  process.stderr.write(`${style.yellow('warning:', process.stderr)} ${message}\n`);
}

/** Columns padded to the widest cell; the header in bold on a terminal. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  print(style.bold(line(header)));
  for (const r of rows) print(line(r));
}

/** Reads all of stdin (for --password-stdin and `fe key add ADDRESS -`). */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
