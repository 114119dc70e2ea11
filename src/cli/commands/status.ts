// fe status: is this mail host healthy? Each check prints OK / WARN / FAIL and, when not OK, the fix.
import type { Command } from 'commander';
import { loadConfig } from '../../config/file.js';
import { createResolver } from '../../dns/resolver.js';
import { CHECK_GROUPS, runStatus, type CheckGroup, type CheckResult } from '../../provision/status.js';
import { UsageError } from '../../util/errors.js';
import { configFile, JSON_HELP } from '../context.js';
import { print, printJson, style } from '../output.js';
import { dnsFor } from './domain.js';

function line(r: CheckResult): string {
  const level = r.level === 'OK' ? style.green('OK  ') : r.level === 'WARN' ? style.yellow('WARN') : style.red('FAIL');
  return `${level}  ${r.check.padEnd(11)} ${r.subject}: ${r.detail}${r.fix ? `\n${' '.repeat(18)}fix: ${r.fix}` : ''}`;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('check this mail host: services, ports, firewall, volume, swap, USB, SSH, DNS, PTR, port 25, certificate, backups, queue, content protection engines')
    .option('--json', JSON_HELP)
    .option('--checks <list>', `only these checks, comma-separated: ${CHECK_GROUPS.join(',')}`)
    .option('--probe-mx <host[:port]>', "an outside MX to test outgoing port 25 with (default: the admin address's MX)")
    .addHelpText(
      'after',
      `
Every check only reads: fe status changes nothing. DNS is checked, never served: fe expects
your DNS provider to hold the records \`fe domain dns\` prints, and reports what differs.
Exit status: 0 when nothing FAILs (WARNs are fine), 1 when something does.`,
    )
    .action(async (opts: { json?: boolean; checks?: string; probeMx?: string }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      let groups: CheckGroup[] = [...CHECK_GROUPS];
      if (opts.checks) {
        groups = opts.checks.split(',').map((s) => s.trim()) as CheckGroup[];
        const unknown = groups.filter((g) => !CHECK_GROUPS.includes(g));
        if (unknown.length) throw new UsageError(`unknown check ${unknown.join(', ')}; choose from ${CHECK_GROUPS.join(', ')}`);
      }
      const results = await runStatus({ config, resolver: createResolver({ servers: config.dns.servers }), dnsFor: (d) => dnsFor(config, d), probeMx: opts.probeMx ?? null }, groups);
      if (opts.json) printJson(results);
      else for (const r of results) print(line(r));
      const failed = results.filter((r) => r.level === 'FAIL').length;
      if (!opts.json) print(`\n${results.length} checks: ${results.length - failed - results.filter((r) => r.level === 'WARN').length} OK, ${results.filter((r) => r.level === 'WARN').length} WARN, ${failed} FAIL`);
      process.exitCode = failed > 0 ? 1 : 0;
    });
}
