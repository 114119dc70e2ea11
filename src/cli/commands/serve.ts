// fe serve: run the daemons (systemd runs this). SIGHUP reloads fe.yml, SIGTERM drains and exits.
import type { Command } from 'commander';
import type { Running } from '../../daemon/serve.js';
import { SERVICES, type ServiceName } from '../../daemon/services.js';
import { UsageError } from '../../util/errors.js';
import { configFile } from '../context.js';
import { print } from '../output.js';

function parseOnly(value: string | undefined): ServiceName[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !(SERVICES as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0) throw new UsageError(`--only takes a comma-separated list of: ${SERVICES.join(', ')}`);
  return names as ServiceName[];
}

/** Runs until SIGTERM or SIGINT; SIGHUP reloads. Shared by `fe serve` and `fe dev`. */
export async function runUntilStopped(running: Running): Promise<void> {
  const onHup = () => running.reload();
  process.on('SIGHUP', onHup);
  // Only under `node --expose-gc` (the IMAP bench): SIGUSR2 runs a full GC, so memory figures
  // taken right after are stable, and says where the memory is. Without that flag SIGUSR2 keeps
  // Node's default.
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc)
    process.on('SIGUSR2', () => {
      gc();
      const m = process.memoryUsage();
      const mib = (n: number) => (n / 1048576).toFixed(1);
      process.stderr.write(`gc: rss ${mib(m.rss)} MiB, JS heap ${mib(m.heapUsed)} of ${mib(m.heapTotal)} MiB, external ${mib(m.external)} MiB (array buffers ${mib(m.arrayBuffers)} MiB)\n`);
    });
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (!stopping) return;
    // A second Ctrl-C means "now"; a second SIGTERM changes nothing while messages finish.
    if (sig === 'SIGINT') process.exit(130);
  };
  await new Promise<void>((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      if (stopping) return onSignal(sig);
      stopping = true;
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.off('SIGHUP', onHup);
  await running.close();
  // Whatever still holds the event loop (a file watch, a socket a client never closed) must
  // not keep a stopped server alive: close() has drained and closed everything that matters.
  process.exit(0);
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the mail daemons configured in fe.yml (in the foreground; systemd runs this)')
    .option('--only <daemons>', `run only these, comma-separated: ${SERVICES.join(', ')} (backup: the schedule in fe.yml's backup section)`)
    .addHelpText(
      'after',
      `
Signals: SIGHUP re-reads fe.yml without dropping connections (a broken file is reported and
the running configuration kept); SIGTERM or SIGINT stops accepting, lets sessions in progress
finish for up to limits.shutdown_drain_seconds (default 30), closes the rest, and exits. Logs go to standard error and never contain message content or passwords.`,
    )
    .action(async (opts: { only?: string }, cmd: Command) => {
      const { serve } = await import('../../daemon/serve.js'); // loaded only when serving: other commands stay small
      const running = await serve(configFile(cmd), { only: parseOnly(opts.only) });
      // One write, so a reader of the pipe (systemd, tests) gets every line at once.
      print(Object.entries(running.addresses).map(([name, a]) => `${name} listening on ${a.address}:${a.port}`).join('\n'));
      await runUntilStopped(running);
    });
}
