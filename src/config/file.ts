// Reading fe.yml, and editing it safely: one writer at a time, validated, atomic, comments kept.
import { readFileSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import type { Document } from 'yaml';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { acquireLock } from './lock.js';
import { ConfigError, parseConfig, type FeConfig, type Problem } from './schema.js';

export const DEFAULT_CONFIG = '/etc/fe/fe.yml';

export function configPath(option?: string): string {
  return path.resolve(option ?? process.env.FE_CONFIG ?? DEFAULT_CONFIG);
}

function readText(file: string): { text: string; stat: Stats } {
  try {
    const stat = statSync(file);
    return { text: readFileSync(file, 'utf8'), stat };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new UserError(`${file} does not exist (set --config or FE_CONFIG, run \`fe init\`, or try \`fe dev\`)`);
    }
    throw new UserError(`cannot read ${file}: ${(e as Error).message}`);
  }
}

/** Every problem in the file, errors and warnings, without throwing on invalid content. */
export function checkConfig(file: string): { config: FeConfig | null; problems: Problem[] } {
  const { text } = readText(file);
  const { config, problems } = parseConfig(text, file);
  return { config, problems };
}

export function loadConfig(file: string): FeConfig {
  const { config, problems } = checkConfig(file);
  if (!config) throw new ConfigError(problems.filter((p) => p.severity === 'error'));
  return config;
}

export interface EditContext {
  doc: Document;
  config: FeConfig; // the file as it was when the lock was taken
}

const LOCK_TIMEOUT_MS = Number(process.env.FE_LOCK_TIMEOUT_MS) || 10_000;

/**
 * Runs `change` on the parsed document while holding the lock, then writes the result if it
 * validates. The file is untouched when anything fails, including a hand edit made meanwhile.
 */
export async function editConfig<T>(file: string, change: (ctx: EditContext) => T | Promise<T>): Promise<T> {
  const release = await acquireLock(file, LOCK_TIMEOUT_MS);
  try {
    const before = readText(file);
    const parsed = parseConfig(before.text, file);
    if (!parsed.config) {
      throw new ConfigError(parsed.problems.filter((p) => p.severity === 'error'));
    }
    const result = await change({ doc: parsed.doc, config: parsed.config });
    const text = parsed.doc.toString({ lineWidth: 0, flowCollectionPadding: false });
    const after = parseConfig(text, file);
    if (!after.config) {
      // Our own edit produced something invalid: a bug, but the owner's file must not pay for it.
      throw new ConfigError(after.problems.filter((p) => p.severity === 'error'));
    }
    const now = statSync(file);
    if (now.mtimeMs !== before.stat.mtimeMs || now.size !== before.stat.size || now.ino !== before.stat.ino) {
      throw new UserError(`${file} was changed by someone else while fe was editing it; nothing was written, try again`);
    }
    if (text !== before.text) writeFileAtomic(file, text, before.stat.mode & 0o7777, { uid: before.stat.uid, gid: before.stat.gid });
    return result;
  } finally {
    release();
  }
}
