// fe domain: which domains this host serves, and the DNS records each needs.
import type { Command } from 'commander';
import { editConfig, loadConfig } from '../../config/file.js';
import { addDomain } from '../../admin/domains.js';
import { removeDomain, removePgpKey } from '../../config/edit.js';
import { aliasAddress, asciiDomain, displayDomain, formatAddress } from '../../config/names.js';
import type { FeConfig } from '../../config/schema.js';
import { advertisedPorts } from '../../config/advertised.js';
import { domainRecords, renderZone, type DomainDns } from '../../dns/records.js';
import { readDkimPublicKey } from '../../dkim/keys.js';
import { dkimDir } from '../../store/paths.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP, parseName, servedDomain } from '../context.js';
import { print, printJson, printTable, warn } from '../output.js';

export function dnsFor(config: FeConfig, domainName: string): DomainDns {
  const domain = config.domains.get(domainName)!;
  const dkim = domain.dkim.published.flatMap((selector) => {
    const key = readDkimPublicKey(config.dataDir, domain.name, selector);
    if (!key) warn(`selector ${selector} of ${domain.name} has no key under ${dkimDir(config.dataDir, domain.name)}; its record is left out`);
    return key ? [key] : [];
  });
  return domainRecords({
    domain: domain.name,
    hostname: config.hostname,
    dkim,
    mtaSts: config.mtaSts,
    reportAddress: config.admin ?? `postmaster@${domain.name}`,
    ports: advertisedPorts(config), // SRV records name only what listens
  });
}

export function registerDomain(program: Command): void {
  const domain = program.command('domain').description('add, list and remove served domains; print their DNS records and Apple mail profiles');

  domain
    .command('add')
    .description('serve a domain: adds it to fe.yml and creates its first DKIM key')
    .argument('<name>', 'the domain, e.g. example.org (internationalised names are fine)')
    .action(async (input: string, _opts: unknown, cmd: Command) => {
      const { name, written, selector } = await addDomain(configFile(cmd), input);
      print(`added ${written}${written !== name ? ` (${name} in DNS)` : ''} with DKIM selector ${selector}`);
      print(`next: publish its records (fe domain dns ${name}), then add aliases (fe alias add me@${name} --mailbox)`);
    });

  domain
    .command('list')
    .description('list served domains')
    .option('--json', JSON_HELP)
    .action((opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const rows = [...config.domains.values()].map((d) => ({
        domain: d.name,
        display: displayDomain(d.name),
        aliases: d.aliases.size,
        mailboxes: [...d.aliases.values()].filter((a) => a.mailbox).length,
        dkimSelectors: d.dkim.active,
      }));
      if (opts.json) return printJson(rows);
      if (rows.length === 0) return print('no domains yet: fe domain add example.org');
      printTable(
        ['DOMAIN', 'ALIASES', 'MAILBOXES', 'DKIM'],
        rows.map((r) => [r.display === r.domain ? r.domain : `${r.display} (${r.domain})`, String(r.aliases), String(r.mailboxes), r.dkimSelectors.join(', ') || '-']),
      );
    });

  domain
    .command('remove')
    .description('stop serving a domain (its stored mail and keys stay on disk)')
    .argument('<name>', 'the domain')
    .option('--force', 'remove it even though it still has aliases')
    .action(async (input: string, opts: { force?: boolean }, cmd: Command) => {
      const file = configFile(cmd);
      const dataDir = await editConfig(file, ({ doc, config }) => {
        const d = servedDomain(config, input);
        if (d.aliases.size > 0 && !opts.force) {
          throw new UserError(`${d.name} still has ${d.aliases.size} alias(es); remove them first or pass --force; nothing was changed`);
        }
        for (const k of config.keys.values()) if (k.address.endsWith(`@${d.name}`)) removePgpKey(doc, k.key);
        removeDomain(doc, d);
        return config.dataDir;
      });
      print(`removed ${parseName(asciiDomain, input)}; mail received from now on is refused`);
      print(`its mailboxes and DKIM keys stay under ${dataDir} until you delete them`);
    });

  domain
    .command('dns')
    .description('print every DNS record the domain needs (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, autoconfig, WKD, SRV)')
    .argument('<name>', 'the domain')
    .option('--json', JSON_HELP)
    .action((input: string, opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const d = servedDomain(config, input);
      const dns = dnsFor(config, d.name);
      if (opts.json) printJson({ domain: d.name, ...dns });
      else process.stdout.write(renderZone(d.name, dns));
    });

  domain
    .command('profile')
    .description('print an Apple configuration profile (.mobileconfig) that sets up a mailbox in iOS/macOS Mail')
    .argument('<address>', 'the mailbox, e.g. me@example.org')
    .addHelpText(
      'after',
      `
The profile names the best IMAP (or POP3) and submission service that fe.yml turns on (listen:
and ports:), with the whole address as user name. It holds no password (the device asks) and is
not signed, so the device shows it as unverified. fe-web also serves it, for the same address, at
https://autoconfig.DOMAIN/mail/apple.mobileconfig?emailaddress=ADDRESS

Example:
  fe domain profile me@example.org > me.mobileconfig`,
    )
    .action(async (input: string, _opts: unknown, cmd: Command) => {
      const address = parseName(aliasAddress, input);
      const canonical = formatAddress(address);
      const config = loadConfig(configFile(cmd));
      const alias = servedDomain(config, address.domain).aliases.get(address.local);
      if (!alias?.mailbox) throw new UserError(`${canonical} is not a mailbox (fe alias add ${canonical} --mailbox); a profile sets up a login to one`);
      const { appleProfile, ProfileError } = await import('../../web/apple-profile.js');
      try {
        process.stdout.write(appleProfile(config, canonical));
      } catch (e) {
        if (e instanceof ProfileError) throw new UserError(e.message);
        throw e;
      }
    });
}
