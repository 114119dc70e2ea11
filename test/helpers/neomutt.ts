// neomutt, the terminal client, run the way a person runs it: on a pseudo-terminal (util-linux
// `script`), with a clean environment, a debug log of its own, and a time limit.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const NEOMUTT_TIMEOUT_MS = 15_000;

export const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
export const plainScreen = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]/g, ' ').replace(/[^\S\n]+/g, ' ');

export interface MuttRun {
  code: number | string;
  screen: string;
  /** neomutt's debug log (level 5: the whole IMAP exchange). */
  log: string;
}

/** The IMAP lines of a debug log, for assertions and their messages. */
export function exchange(log: string): string {
  const out: string[] = [];
  let direction: string | null = null; // "4>" or "4<" while inside a socket entry
  for (const line of log.split(/\r?\n/)) {
    const entry = /^\[[^\]]+\]<.> (\w+)\(\) (.*)$/.exec(line);
    if (entry) {
      const socket = /^mutt_socket_(write|readln)_d$/.test(entry[1]!);
      direction = socket ? entry[2]!.slice(0, 2) : null;
      if (socket) out.push(entry[2]!);
    } else if (direction && line !== '') {
      out.push(`${direction} ${line}`); // commands neomutt pipelined in one write
    }
  }
  return out.join('\n');
}

let runs = 0;

/**
 * Runs neomutt on a pseudo-terminal (util-linux `script`) with a clean environment and a debug
 * log of its own. `answer` types keys once the screen shows a text (the compose menu of -H does
 * not take keys pushed with -e).
 */
export function neomutt(dir: string, args: string[], answer?: { when: string; keys: string }): Promise<MuttRun> {
  const logBase = path.join(dir, `neomutt-${++runs}.log`);
  const command = ['neomutt', '-n', '-d', '5', '-l', logBase, ...args].map(shellQuote).join(' ');
  const env = { PATH: process.env.PATH ?? '', HOME: path.join(dir, 'home'), TMPDIR: path.join(dir, 'tmp'), TERM: 'xterm', COLUMNS: '120', LINES: '40', LC_ALL: 'C.UTF-8' };
  const readLog = () => {
    // neomutt numbers its log files (name.log0); take whatever it wrote.
    const names = readdirSync(dir).filter((f) => f.startsWith(path.basename(logBase))).sort();
    return names.map((f) => readFileSync(path.join(dir, f), 'utf8')).join('\n');
  };
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['--quiet', '--return', '--command', command, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    let answered = false;
    const onData = (d: Buffer) => {
      screen += d.toString('utf8');
      if (answer && !answered && plainScreen(screen).includes(answer.when)) {
        answered = true;
        child.stdin.write(answer.keys);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    // stdin stays open while neomutt runs: at EOF `script` would pass ^D to it as a keystroke.
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      const log = readLog();
      reject(new Error(`neomutt did not finish in ${NEOMUTT_TIMEOUT_MS} ms\nscreen:\n${plainScreen(screen).slice(-3000)}\nIMAP:\n${exchange(log).slice(-4000)}`));
    }, NEOMUTT_TIMEOUT_MS);
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      child.stdin.end();
      resolve({ code: code ?? sig ?? -1, screen: plainScreen(screen), log: readLog() });
    });
  });
}

