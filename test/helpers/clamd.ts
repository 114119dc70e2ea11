// Starts Debian's clamd on a unix socket in a temp dir, with a throw-away config and a database
// of one signature (EICAR's bytes, anywhere in any file): no network, no freshclam.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

export interface Clamd {
  socket: string;
  /** How long clamd took from spawn to an open socket. */
  startMs: number;
  stop(): Promise<void>;
}

export function startClamd(dir = mkdtempSync(path.join(tmpdir(), 'fe-clamd-'))): Promise<Clamd> {
  const socket = path.join(dir, 'clamd.sock');
  mkdirSync(path.join(dir, 'db'), { recursive: true });
  // .ndb: name:target:offset:hex-signature (target 0: any file; offset *: anywhere)
  writeFileSync(path.join(dir, 'db', 'fe-test.ndb'), `FE-Test.EICAR:0:*:${Buffer.from(EICAR).toString('hex')}\n`);
  writeFileSync(path.join(dir, 'clamd.conf'), [`Foreground yes`, `LocalSocket ${socket}`, `DatabaseDirectory ${dir}/db`, `TemporaryDirectory ${dir}`, `PidFile ${dir}/clamd.pid`, 'StreamMaxLength 30M', ''].join('\n'));
  rmSync(socket, { force: true });
  const started = Date.now();
  const child: ChildProcess = spawn('clamd', ['-c', path.join(dir, 'clamd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err: Error | null) => {
      if (settled) return;
      settled = true;
      watcher.close();
      clearTimeout(timer);
      if (err) return reject(err);
      resolve({
        socket,
        startMs: Date.now() - started,
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill('SIGTERM');
          await exited;
        },
      });
    };
    // clamd creates its socket once the database is loaded, and listens right after
    const watcher = watch(dir, () => {
      if (existsSync(socket)) done(null);
    });
    const timer = setTimeout(() => done(new Error(`clamd did not open its socket in 20 s: ${out}`)), 20_000);
    child.on('error', (e) => done(e));
    child.on('exit', (code) => done(new Error(`clamd exited ${code}: ${out}`)));
    if (existsSync(socket)) done(null);
  });
}
