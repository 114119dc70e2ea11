// Starts the real `fe serve` as a child process and waits until its daemons listen.
import { spawn, type ChildProcess } from 'node:child_process';
import { FE_BIN, ROOT } from './fe.js';

export interface Daemon {
  child: ChildProcess;
  ports: Record<string, number>;
  log(): string;
  /** Resolves when the log matches (or rejects after timeoutMs). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<void>;
  signal(sig: NodeJS.Signals): void;
  /** Sends the signal and resolves with the exit code (or the signal name). */
  stop(sig?: NodeJS.Signals): Promise<number | string>;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

/** `expect`: the daemons whose "<name> listening on host:port" lines to wait for (default: the MX); `nodeArgs`: options for node itself (e.g. --cpu-prof). */
export function startServe(config: string, args: string[] = [], env: Record<string, string> = {}, expect: string[] = ['mx'], nodeArgs: string[] = []): Promise<Daemon> {
  const child = spawn(process.execPath, [...nodeArgs, FE_BIN, '--config', config, 'serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const onData = (d: Buffer) => {
    log += d.toString('utf8');
    for (const w of [...waiters]) {
      if (w.pattern.test(log)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const waitForLog = (pattern: RegExp, timeoutMs = 15_000) =>
    new Promise<void>((resolve, reject) => {
      if (pattern.test(log)) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern} in:\n${log}`)), timeoutMs);
      waiters.push({ pattern, resolve: () => (clearTimeout(timer), resolve()) });
      void exited.then((code) => reject(new Error(`fe serve exited (${code}) before ${pattern}:\n${log}`)));
    });
  const daemon: Daemon = {
    child,
    ports: {},
    log: () => log,
    waitForLog,
    signal: (sig) => child.kill(sig),
    exited,
    async stop(sig = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      return exited;
    },
  };
  // A loaded CI machine can take a while to load the modules; 30 s before calling it a failure.
  // A start that failed kills the child: a test whose before() threw never stops it itself, and a
  // live child would keep the test process from ever exiting.
  return Promise.all(expect.map((name) => waitForLog(new RegExp(`^${name} listening on [^\\s]+:\\d+$`, 'm'), 30_000))).then(
    () => {
      for (const m of log.matchAll(/^(\w+) listening on [^\s]+:(\d+)$/gm)) daemon.ports[m[1]!] = Number(m[2]);
      return daemon;
    },
    (e: unknown) => {
      child.kill('SIGKILL');
      throw e;
    },
  );
}
