// The `fe` command: a thin face over the config, crypto and daemon modules.
import { Command, CommanderError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { configPath, loadConfig } from '../config/file.js';
import { adoptDataDirOwner } from '../util/data-owner.js';
import { ConfigError } from '../config/schema.js';
import { UsageError, UserError } from '../util/errors.js';
import { style } from './output.js';

// Each command's module, loaded only when needed: `fe alias list` loads the alias code, not the
// daemons, the ACME client and mailauth (all of them cost ~0.45 s and ~70 MiB per invocation).
// In help order; `fe --help`, `fe help` and an unknown word load them all.
type Register = (program: Command) => void;
// Keyed by the command words each module registers (init.ts has `fe init` and `fe unlock`).
const COMMANDS: readonly [string, () => Promise<Register>][] = [
  ['config', async () => (await import('./commands/config.js')).registerConfig],
  ['domain', async () => (await import('./commands/domain.js')).registerDomain],
  ['dkim', async () => (await import('./commands/dkim.js')).registerDkim],
  ['alias', async () => (await import('./commands/alias.js')).registerAlias],
  ['key', async () => (await import('./commands/key.js')).registerKey],
  ['mailbox', async () => (await import('./commands/mailbox.js')).registerMailbox],
  ['import', async () => (await import('./commands/import.js')).registerImport],
  ['serve', async () => (await import('./commands/serve.js')).registerServe],
  ['dev', async () => (await import('./commands/dev.js')).registerDev],
  ['init unlock', async () => (await import('./commands/init.js')).registerInit],
  ['status', async () => (await import('./commands/status.js')).registerStatus],
  ['cert', async () => (await import('./commands/cert.js')).registerCert],
  ['backup', async () => (await import('./commands/backup.js')).registerBackup],
  ['queue', async () => (await import('./commands/queue.js')).registerQueue],
  ['export', async () => (await import('./commands/export.js')).registerExport],
];

// `fe --version` without a command word needs no command at all
const VERSION_ONLY = '\0version';

/** The command word of argv: the first argument that is not a global option (or its value). */
function commandWord(argv: readonly string[]): string | null {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-c' || a === '--config') i++;
    else if (!a.startsWith('-')) return a;
  }
  return argv.includes('-V') || argv.includes('--version') ? VERSION_ONLY : null;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The program with every command, or with just `only` when argv names one (see COMMANDS). */
export async function buildProgram(only: string | null = null): Promise<Command> {
  const program = new Command('fe');
  program
    .description('fe: a self-hosted, privacy-first mail appliance.\nDomains, aliases and keys live in fe.yml; these commands edit it safely.')
    .version(version(), '-V, --version', 'print the fe version')
    .addOption(new Option('-c, --config <path>', 'the config file (default: $FE_CONFIG, else /etc/fe/fe.yml)'))
    .helpOption('-h, --help', 'show help for a command')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) => write(s.replace(/^error:/, `${style.red('error:', process.stderr)}`)),
    })
    .addHelpText(
      'after',
      `
Exit status: 0 success, 1 a problem with the input or the system, 2 a usage error.
Colour is used only on a terminal and never when NO_COLOR is set.

Examples:
  fe domain add example.org          serve a domain (creates its DKIM key)
  fe domain dns example.org          the DNS records to publish
  fe alias add me@example.org --mailbox
  fe alias add shop@example.org --forward me@gmail.example
  fe key add me@example.org key.asc  keep me@'s OpenPGP public key in fe.yml`,
    );
  const wanted = only === VERSION_ONLY ? [] : COMMANDS.filter(([names]) => names.split(' ').includes(only ?? ''));
  for (const register of await Promise.all((wanted.length > 0 || only === VERSION_ONLY ? wanted : COMMANDS).map(([, load]) => load()))) register(program);
  return program;
}

/** As root: files a command created under the data directory go to its owner (the fe user). */
function handOverToDataOwner(program: Command): void {
  try {
    const file = configPath((program.opts() as { config?: string }).config);
    if (existsSync(file)) adoptDataDirOwner(loadConfig(file).dataDir);
  } catch {
    // no readable config (fe init before it wrote one, fe --help ...): nothing to hand over
  }
}

/** Runs the CLI; returns the exit code instead of exiting so tests and the launcher share it. */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(commandWord(argv));
  if (argv.length === 0) {
    program.outputHelp({ error: true });
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    if (process.getuid?.() === 0) handOverToDataOwner(program);
    return typeof process.exitCode === 'number' ? process.exitCode : 0; // a check that found problems sets 1

  } catch (e) {
    const err = (s: string) => process.stderr.write(`${style.red('fe: error:', process.stderr)} ${s}\n`);
    if (e instanceof CommanderError) {
      // --help and --version end here with exit code 0; commander already printed any message
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof UsageError) {
      err(e.message);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`${style.red('fe: error:', process.stderr)} the config file has problems; nothing was changed\n${e.message}\n`);
      return 1;
    }
    if (e instanceof UserError) {
      err(e.message);
      return 1;
    }
    err(`unexpected failure: ${(e as Error).message}`);
    if (process.env.FE_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    return 1;
  }
}
