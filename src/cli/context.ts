// Shared plumbing for the command modules: which config file, and turning bad names into user errors.
import type { Command } from 'commander';
import { configPath } from '../config/file.js';
import { asciiDomain, NameError } from '../config/names.js';
import type { DomainConfig, FeConfig } from '../config/schema.js';
import { UserError } from '../util/errors.js';

export function configFile(cmd: Command): string {
  return configPath((cmd.optsWithGlobals() as { config?: string }).config);
}

/** Runs a name parser, reporting a bad name as a user error (exit 1). */
export function parseName<T>(parse: (s: string) => T, input: string): T {
  try {
    return parse(input);
  } catch (e) {
    if (e instanceof NameError) throw new UserError(e.message);
    throw e;
  }
}

export function servedDomain(config: FeConfig, input: string): DomainConfig {
  const name = parseName(asciiDomain, input);
  const domain = config.domains.get(name);
  if (!domain) {
    const served = [...config.domains.keys()];
    throw new UserError(`${name} is not a domain in ${config.file}` + (served.length ? ` (served: ${served.join(', ')})` : ' (no domains yet: `fe domain add NAME`)'));
  }
  return domain;
}

export const JSON_HELP = 'print JSON for scripts instead of a table';
