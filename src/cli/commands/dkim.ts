// fe dkim: rotate a domain's DKIM keys without breaking signatures in flight. A domain signs with
// one key, or with one RSA and one Ed25519 key side by side (RFC 8463 section 4).
import { Option, type Command } from 'commander';
import { existsSync } from 'node:fs';
import { editConfig, loadConfig } from '../../config/file.js';
import { setDkim } from '../../config/edit.js';
import { activeWith, createDkimKey, dkimKeyType, nextSelector, privateKeyPath, retireDkimKey, usedSelectors, type DkimKeyType } from '../../dkim/keys.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP, servedDomain } from '../context.js';
import { print, printJson, printTable } from '../output.js';
import { dnsFor } from './domain.js';

const ALGORITHM_NAME: Record<DkimKeyType, string> = { rsa: 'RSA', ed25519: 'Ed25519' };

/** What changed in the active list, in words: who signs now, and what the caller may retire later. */
function switched(domain: string, selector: string, before: readonly string[], after: readonly string[], dataDir: string): string {
  const replaced = before.filter((s) => !after.includes(s));
  const beside = after.filter((s) => s !== selector);
  let line = `signing with ${selector} from now on`;
  if (beside.length > 0) line += `, beside ${beside.join(', ')}`;
  if (replaced.length > 0) line += `; ${replaced.join(', ')} stays published until: ${replaced.map((s) => `fe dkim retire ${domain} ${s}`).join(' and ')}`;
  // Receivers that predate RFC 8463 ignore Ed25519 signatures; RSA beside it keeps them covered.
  if (!after.some((s) => dkimKeyType(dataDir, domain, s) === 'rsa')) line += `\nnote: no RSA key signs, so receivers without Ed25519 support see unsigned mail; add one: fe dkim rotate ${domain}`;
  return line;
}

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

A domain signs with one RSA key, and may add one Ed25519 key (RFC 8463) beside it:
  fe dkim rotate example.org --algorithm ed25519
Each algorithm rotates on its own: a new key, or activate, replaces only the active key of its
own algorithm. Receivers that do not know Ed25519 still check the RSA signature.
Private keys are 0600 files under the data directory, never in fe.yml.`,
    );

  dkim
    .command('rotate')
    .description('create a new dated selector (e.g. fe202611) and sign with it in place of the active one of its algorithm; the old one stays published until retired')
    .argument('<domain>', 'the domain')
    .addOption(new Option('--algorithm <alg>', 'the key type: rsa (2048 bits) or ed25519 (signs beside the RSA key)').choices(['rsa', 'ed25519']).default('rsa'))
    .option('--stage', 'publish the new selector but keep signing as now (a domain that signs with nothing starts with it)')
    .action(async (input: string, opts: { stage?: boolean; algorithm: DkimKeyType }, cmd: Command) => {
      const file = configFile(cmd);
      const { name, selector, before, after, dataDir } = await editConfig(file, ({ doc, config }) => {
        const d = servedDomain(config, input);
        const selector = nextSelector([...d.dkim.published, ...usedSelectors(config.dataDir, d.name)]);
        createDkimKey(config.dataDir, d.name, selector, opts.algorithm);
        const after = opts.stage && d.dkim.active.length > 0 ? d.dkim.active : activeWith(config.dataDir, d.name, d.dkim.active, selector);
        setDkim(doc, d.key, { active: after, published: [...d.dkim.published, selector] });
        return { name: d.name, selector, before: d.dkim.active, after, dataDir: config.dataDir };
      });
      const config = loadConfig(file);
      const record = dnsFor(config, name).records.find((r) => r.name === `${selector}._domainkey.${name}.`);
      print(`new ${ALGORITHM_NAME[opts.algorithm]} DKIM selector ${selector} for ${name}; publish this record:`);
      if (record) print(`${record.name} ${record.ttl} IN TXT ${record.value}`);
      if (!after.includes(selector)) print(`still signing with ${after.join(', ')}; once the record is visible: fe dkim activate ${name} ${selector}`);
      else print(switched(name, selector, before, after, dataDir));
    });

  dkim
    .command('activate')
    .description('sign with a published selector from now on, in place of the active one of its algorithm')
    .argument('<domain>', 'the domain')
    .argument('<selector>', 'a published selector')
    .action(async (input: string, selector: string, _opts: unknown, cmd: Command) => {
      const { name, before, after, dataDir } = await editConfig(configFile(cmd), ({ doc, config }) => {
        const d = servedDomain(config, input);
        if (!d.dkim.published.includes(selector)) throw new UserError(`${selector} is not a published selector of ${d.name} (published: ${d.dkim.published.join(', ') || 'none'})`);
        if (!existsSync(privateKeyPath(config.dataDir, d.name, selector))) throw new UserError(`the key file for ${selector} is missing: ${privateKeyPath(config.dataDir, d.name, selector)}`);
        const after = activeWith(config.dataDir, d.name, d.dkim.active, selector);
        setDkim(doc, d.key, { active: after, published: d.dkim.published });
        return { name: d.name, before: d.dkim.active, after, dataDir: config.dataDir };
      });
      print(switched(name, selector, before, after, dataDir));
    });

  dkim
    .command('retire')
    .description('unpublish an old selector and delete its key')
    .argument('<domain>', 'the domain')
    .argument('<selector>', 'the selector to retire (not the active one)')
    .action(async (input: string, selector: string, _opts: unknown, cmd: Command) => {
      const { name, dataDir } = await editConfig(configFile(cmd), ({ doc, config }) => {
        const d = servedDomain(config, input);
        if (d.dkim.active.includes(selector)) throw new UserError(`${selector} is the selector signing mail for ${d.name}; rotate first (fe dkim rotate ${d.name}${dkimKeyType(config.dataDir, d.name, selector) === 'ed25519' ? ' --algorithm ed25519' : ''}); nothing was changed`);
        if (!d.dkim.published.includes(selector)) throw new UserError(`${selector} is not a published selector of ${d.name} (published: ${d.dkim.published.join(', ') || 'none'})`);
        setDkim(doc, d.key, { active: d.dkim.active, published: d.dkim.published.filter((s) => s !== selector) });
        return { name: d.name, dataDir: config.dataDir };
      });
      retireDkimKey(dataDir, name, selector); // only once fe.yml no longer names it
      print(`retired ${selector}: remove ${selector}._domainkey.${name} from DNS`);
    });

  dkim
    .command('list')
    .description("list a domain's selectors: algorithm, whether it signs, whether its key file is there")
    .argument('<domain>', 'the domain')
    .option('--json', JSON_HELP)
    .action((input: string, opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const d = servedDomain(config, input);
      const rows = d.dkim.published.map((selector) => ({
        selector,
        algorithm: dkimKeyType(config.dataDir, d.name, selector), // null: no key file to tell
        active: d.dkim.active.includes(selector),
        keyFile: existsSync(privateKeyPath(config.dataDir, d.name, selector)),
      }));
      if (opts.json) return printJson(rows);
      printTable(['SELECTOR', 'ALGORITHM', 'SIGNING', 'KEY FILE'], rows.map((r) => [r.selector, r.algorithm ?? '-', r.active ? 'yes' : 'no', r.keyFile ? 'present' : 'MISSING']));
    });
}
