// fe dkim: rotate a domain's DKIM key without breaking signatures in flight.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { editConfig, loadConfig } from '../../config/file.js';
import { setDkim } from '../../config/edit.js';
import { createDkimKey, nextSelector, privateKeyPath, retireDkimKey, usedSelectors } from '../../dkim/keys.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP, servedDomain } from '../context.js';
import { print, printJson, printTable } from '../output.js';
import { dnsFor } from './domain.js';

export function registerDkim(program: Command): void {
  const dkim = program
    .command('dkim')
    .description('DKIM signing keys: rotate, activate, retire, list')
    .addHelpText(
      'after',
      `
A rotation, step by step:
  fe dkim rotate example.org --stage   new selector, published but not yet signing
  (publish its TXT record: fe domain dns example.org; wait for it to be visible)
  fe dkim activate example.org fe202612
  (a few days later, once mail signed with the old key has been delivered)
  fe dkim retire example.org fe202611

Without --stage, rotate signs with the new key at once: publish its record first thing.
Private keys are 0600 files under the data directory, never in fe.yml.`,
    );

  dkim
    .command('rotate')
    .description('create a new dated selector (e.g. fe202611); the old one stays published until retired')
    .argument('<domain>', 'the domain')
    .option('--stage', 'publish the new selector but keep signing with the current one')
    .action(async (input: string, opts: { stage?: boolean }, cmd: Command) => {
      const file = configFile(cmd);
      const { name, selector, previous } = await editConfig(file, ({ doc, config }) => {
        const d = servedDomain(config, input);
        const selector = nextSelector([...d.dkim.published, ...usedSelectors(config.dataDir, d.name)]);
        createDkimKey(config.dataDir, d.name, selector);
        const active = opts.stage && d.dkim.active ? d.dkim.active : selector;
        setDkim(doc, d.key, { active, published: [...d.dkim.published, selector] });
        return { name: d.name, selector, previous: d.dkim.active };
      });
      const config = loadConfig(file);
      const record = dnsFor(config, name).records.find((r) => r.name === `${selector}._domainkey.${name}.`);
      print(`new DKIM selector ${selector} for ${name}; publish this record:`);
      if (record) print(`${record.name} ${record.ttl} IN TXT ${record.value}`);
      if (opts.stage && previous) print(`still signing with ${previous}; once the record is visible: fe dkim activate ${name} ${selector}`);
      else print(`signing with ${selector} from now on${previous ? `; ${previous} stays published until: fe dkim retire ${name} ${previous}` : ''}`);
    });

  dkim
    .command('activate')
    .description('sign with a published selector from now on')
    .argument('<domain>', 'the domain')
    .argument('<selector>', 'a published selector')
    .action(async (input: string, selector: string, _opts: unknown, cmd: Command) => {
      await editConfig(configFile(cmd), ({ doc, config }) => {
        const d = servedDomain(config, input);
        if (!d.dkim.published.includes(selector)) throw new UserError(`${selector} is not a published selector of ${d.name} (published: ${d.dkim.published.join(', ') || 'none'})`);
        if (!existsSync(privateKeyPath(config.dataDir, d.name, selector))) throw new UserError(`the key file for ${selector} is missing: ${privateKeyPath(config.dataDir, d.name, selector)}`);
        setDkim(doc, d.key, { active: selector, published: d.dkim.published });
      });
      print(`signing with ${selector} from now on`);
    });

  dkim
    .command('retire')
    .description('unpublish an old selector and delete its key')
    .argument('<domain>', 'the domain')
    .argument('<selector>', 'the selector to retire (not the active one)')
    .action(async (input: string, selector: string, _opts: unknown, cmd: Command) => {
      const { name, dataDir } = await editConfig(configFile(cmd), ({ doc, config }) => {
        const d = servedDomain(config, input);
        if (d.dkim.active === selector) throw new UserError(`${selector} is the selector signing mail for ${d.name}; rotate first (fe dkim rotate ${d.name}); nothing was changed`);
        if (!d.dkim.published.includes(selector)) throw new UserError(`${selector} is not a published selector of ${d.name} (published: ${d.dkim.published.join(', ') || 'none'})`);
        setDkim(doc, d.key, { active: d.dkim.active, published: d.dkim.published.filter((s) => s !== selector) });
        return { name: d.name, dataDir: config.dataDir };
      });
      retireDkimKey(dataDir, name, selector); // only once fe.yml no longer names it
      print(`retired ${selector}: remove ${selector}._domainkey.${name} from DNS`);
    });

  dkim
    .command('list')
    .description("list a domain's selectors")
    .argument('<domain>', 'the domain')
    .option('--json', JSON_HELP)
    .action((input: string, opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const d = servedDomain(config, input);
      const rows = d.dkim.published.map((selector) => ({
        selector,
        active: selector === d.dkim.active,
        keyFile: existsSync(privateKeyPath(config.dataDir, d.name, selector)),
      }));
      if (opts.json) return printJson(rows);
      printTable(['SELECTOR', 'SIGNING', 'KEY FILE'], rows.map((r) => [r.selector, r.active ? 'yes' : 'no', r.keyFile ? 'present' : 'MISSING']));
    });
}
