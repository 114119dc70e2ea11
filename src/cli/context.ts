// Shared plumbing for the command modules: which config file to use.
import type { Command } from 'commander';
import { configPath } from '../config/file.js';

export { mailboxWithKey, parseName, servedDomain } from '../admin/lookup.js';

export function configFile(cmd: Command): string {
  return configPath((cmd.optsWithGlobals() as { config?: string }).config);
}

export const JSON_HELP = 'print JSON for scripts instead of a table';
