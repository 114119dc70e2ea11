// fe cert: which TLS certificate the daemons present, and getting a new one from the ACME CA now.
import type { Command } from 'commander';
import { loadConfig } from '../../config/file.js';
import { acmeState, renewOnce, wantedNames } from '../../acme/renewal.js';
import { currentCertificateFiles, readMatchingPair } from '../../tls/source.js';
import { createLogger } from '../../util/log.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP } from '../context.js';
import { print, printJson } from '../output.js';

export function registerCert(program: Command): void {
  const cert = program
    .command('cert')
    .description('TLS certificate: show it, or get a new one from the ACME CA (Let\'s Encrypt by default)')
    .addHelpText(
      'after',
      `
Where the certificate comes from, in order:
  tls.cert / tls.key in fe.yml      your own files; fe never touches them
  ACME (acme.directory in fe.yml)   kept by the daemon on listen.http (port 80, HTTP-01);
                                    renewed 30 days before it expires, checked every 12 hours
  self-signed                       made at first start so TLS works until one of the above exists

The ACME certificate names the host and mta-sts.DOMAIN of every domain (the MTA-STS policy host);
all of them must resolve to this host. fe-mx and fe-mailstore pick up a new one within a minute.`,
    );

  cert
    .command('status')
    .description('the certificate in use: where it comes from, its names, when it expires')
    .option('--json', JSON_HELP)
    .action((opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const files = currentCertificateFiles(config);
      let info: { names: string; notAfter: Date } | null = null;
      let problem: string | null = null;
      try {
        info = readMatchingPair(files);
      } catch (e) {
        problem = (e as Error).message;
      }
      const acme = config.tls || !config.acme.directory ? null : acmeState(config);
      const out = {
        source: files.kind,
        cert: files.cert,
        names: info ? info.names.split(', ').map((n) => n.replace(/^DNS:/, '')) : [],
        not_after: info?.notAfter.toISOString() ?? null,
        problem,
        acme: acme ? { directory: config.acme.directory, wanted: wantedNames(config), due: acme.due } : null,
      };
      if (opts.json) return printJson(out);
      print(`source:    ${files.kind} (${files.cert})`);
      if (problem) print(`problem:   ${problem}`);
      if (info) {
        print(`names:     ${out.names.join(', ')}`);
        print(`not after: ${out.not_after}`);
      }
      if (acme) print(`acme:      ${acme.due ? `a new certificate is due: ${acme.due}` : 'up to date'} (${config.acme.directory})`);
      else print(`acme:      off (${config.tls ? 'tls.cert is set' : 'acme.directory: off'})`);
    });

  cert
    .command('renew')
    .description('get a certificate from the ACME CA now if one is due (needs the web daemon answering on port 80)')
    .option('--force', 'even when the current one is valid and covers every name')
    .action(async (opts: { force?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      if (config.tls) throw new UserError('tls.cert is set in fe.yml: that certificate is yours to renew');
      if (!config.acme.directory) throw new UserError('acme.directory is off in fe.yml');
      if (!config.listen.http) throw new UserError('listen.http is off: nothing answers the CA on port 80 (fe init turns it on)');
      const log = createLogger(config.logLevel, 'acme');
      try {
        const r = await renewOnce(config, log, { force: opts.force ?? false });
        print(r.message);
        if (r.renewed) print('fe-mx, fe-mailstore and fe-web pick it up within a minute');
      } catch (e) {
        throw new UserError(`no certificate: ${(e as Error).message}`);
      }
    });
}
