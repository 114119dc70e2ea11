// The `fe` command: a thin face over the config, crypto and daemon modules.
import { Command, CommanderError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { configPath, loadConfig } from '../config/file.js';
import { adoptDataDirOwner } from '../util/data-owner.js';
import { ConfigError } from '../config/schema.js';
import { UsageError, UserError } from '../util/errors.js';
import { style } from './output.js';
import { registerConfig } from './commands/config.js';
import { registerDomain } from './commands/domain.js';
import { registerDkim } from './commands/dkim.js';
import { registerAlias } from './commands/alias.js';
import { registerKey } from './commands/key.js';
import { registerDev } from './commands/dev.js';
import { registerServe } from './commands/serve.js';
import { registerMailbox } from './commands/mailbox.js';
import { registerInit } from './commands/init.js';
import { registerStatus } from './commands/status.js';
import { registerCert } from './commands/cert.js';
import { registerBackup } from './commands/backup.js';
import { registerQueue } from './commands/queue.js';
import { registerExport } from './commands/export.js';
import { registerImport } from './commands/import.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
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
  registerConfig(program);
  registerDomain(program);
  registerDkim(program);
  registerAlias(program);
  registerKey(program);
  registerMailbox(program);
  registerImport(program);
  registerServe(program);
  registerDev(program);
  registerInit(program);
  registerStatus(program);
  registerCert(program);
  registerBackup(program);
  registerQueue(program);
  registerExport(program);
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
  const program = buildProgram();
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
