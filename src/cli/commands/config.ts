// fe config: create and check fe.yml.
import type { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { checkConfig } from '../../config/file.js';
import { asciiDomain } from '../../config/names.js';
import type { FeConfig, Problem } from '../../config/schema.js';
import { formatProblem } from '../../config/schema.js';
import { dkimKeyType, privateKeyPath, readDkimPublicKey } from '../../dkim/keys.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP, parseName } from '../context.js';
import { print, printJson, style } from '../output.js';

export function renderTemplate(hostname: string, dataDir: string): string {
  const text = readFileSync(new URL('../../../../templates/fe.yml', import.meta.url), 'utf8');
  return text.replace('{{hostname}}', hostname).replace('{{data_dir}}', dataDir);
}

/** Checks that need more than the file: key files on disk, OpenPGP keys still valid today. */
async function deepCheck(config: FeConfig): Promise<Problem[]> {
  const problems: Problem[] = [];
  const add = (field: string, message: string, severity: Problem['severity']) => problems.push({ file: config.file, line: 0, col: 0, field, message, severity });
  for (const d of config.domains.values()) {
    for (const selector of d.dkim.published) {
      if (!readDkimPublicKey(config.dataDir, d.name, selector)) add(`domains.${d.key}.dkim`, `no key file for selector ${selector} under ${config.dataDir}`, 'warning');
    }
    const byType = new Map<string, string[]>();
    for (const selector of d.dkim.active) {
      if (!existsSync(privateKeyPath(config.dataDir, d.name, selector))) {
        add(`domains.${d.key}.dkim.active`, `the signing key for ${selector} is missing (${privateKeyPath(config.dataDir, d.name, selector)}); run \`fe dkim rotate ${d.name}\``, 'error');
      }
      let type: string | null = null;
      try {
        type = dkimKeyType(config.dataDir, d.name, selector);
      } catch (e) {
        add(`domains.${d.key}.dkim.active`, `the key of ${selector} cannot be read: ${(e as Error).message}`, 'error');
      }
      if (type) byType.set(type, [...(byType.get(type) ?? []), selector]);
    }
    // Only the key files say which algorithm a selector is, so the schema cannot check this.
    for (const [type, selectors] of byType) {
      if (selectors.length > 1) {
        add(`domains.${d.key}.dkim.active`, `${selectors.join(' and ')} are both ${type === 'rsa' ? 'RSA' : 'Ed25519'} keys; a domain signs with at most one RSA and one Ed25519 key, so keep one of them in active`, 'error');
      }
    }
  }
  if (config.keys.size > 0) {
    const { checkPublicKey, KeyRejected } = await import('../../keys/openpgp.js');
    for (const k of config.keys.values()) {
      try {
        const accepted = await checkPublicKey(k.armored, k.address);
        if (accepted.fingerprint !== k.fingerprint) add(`keys.${k.key}.fingerprint`, `does not match the key (which is ${accepted.fingerprint})`, 'error');
      } catch (e) {
        if (!(e instanceof KeyRejected)) throw e;
        add(`keys.${k.key}`, `${e.message}; mail to ${k.address} cannot be encrypted to it`, 'warning');
      }
    }
  }
  return problems;
}

export function registerConfig(program: Command): void {
  const config = program.command('config').description('create and check the config file (fe.yml)');

  config
    .command('check')
    .description('validate fe.yml and report every problem with file:line and the field')
    .option('--json', JSON_HELP)
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const file = configFile(cmd);
      const { config: parsed, problems } = checkConfig(file);
      if (parsed) problems.push(...(await deepCheck(parsed)));
      const errors = problems.filter((p) => p.severity === 'error').length;
      if (opts.json) {
        printJson({ file, ok: errors === 0, problems });
      } else {
        for (const p of problems) print(formatProblem(p));
        const warnings = problems.length - errors;
        if (errors === 0) print(`${style.green('OK')} ${file}: ${parsed!.domains.size} domain(s)${warnings ? `, ${warnings} warning(s)` : ''}`);
        else print(`${style.red('FAIL')} ${file}: ${errors} error(s)${warnings ? `, ${warnings} warning(s)` : ''}`);
      }
      if (errors > 0) process.exitCode = 1;
    });

  config
    .command('init')
    .description('write a new, minimal fe.yml (refuses to overwrite an existing one)')
    .requiredOption('--hostname <fqdn>', "the mail host's own name, e.g. mail.example.org")
    .option('--data-dir <dir>', 'where mailboxes and keys are kept', '/var/lib/fe')
    .action((opts: { hostname: string; dataDir: string }, cmd: Command) => {
      const file = configFile(cmd);
      if (existsSync(file)) throw new UserError(`${file} already exists; nothing was changed`);
      const hostname = parseName(asciiDomain, opts.hostname);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileAtomic(file, renderTemplate(hostname, opts.dataDir), 0o644);
      print(`wrote ${file}`);
    });
}
