// fe init / fe unlock: turn a fresh VPS into a hardened mail host; open its volume after a reboot.
import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { loadConfig } from '../../config/file.js';
import { asciiDomain } from '../../config/names.js';
import { DEFAULT_BACKUP_DIR } from '../../config/schema.js';
import { generateIdentity, isRecipient } from '../../backup/age.js';
import { renderZone } from '../../dns/records.js';
import { ansibleAvailable, runPlaybook, type PlaybookEvent } from '../../provision/ansible.js';
import { currentVolume, defaultSshKeys, ensureConfig, installAnsible, luksSource, newPassphrase, passphraseFile, playbookVars, preflight, sshKeyLines, type InitPlan, type LuksChoice } from '../../provision/init.js';
import { readVolumeInfo, startServices, unlockVolume, volumeState, waitForPorts } from '../../provision/volume.js';
import { listeningPorts } from '../../provision/status.js';
import { UsageError, UserError } from '../../util/errors.js';
import { configFile, parseName } from '../context.js';
import { print, style } from '../output.js';
import { renderTemplate } from './config.js';
import { dnsFor } from './domain.js';

interface InitFlags {
  yes?: boolean;
  dryRun?: boolean;
  hostname?: string;
  domain?: string;
  admin?: string;
  dataDir: string;
  luksDevice?: string;
  luksFile?: string;
  luks: boolean; // --no-luks sets false
  luksKeyfile?: boolean;
  luksWipe?: boolean;
  luksPbkdfMemory?: string;
  luksIterTime?: string;
  sshPort?: string;
  adminUser: string;
  sshKey: string[];
  filtering?: boolean;
  web: boolean; // --no-web sets false
  backup: boolean; // --no-backup sets false
  backupRecipient?: string;
}

const SIZE = /^\d+[MGT]$/;

/** Asks what the flags did not say (interactive), or insists on the flags (--yes / no terminal). */
async function collect(flags: InitFlags, file: string): Promise<InitPlan> {
  const interactive = !flags.yes && process.stdin.isTTY === true;
  const prompts = interactive ? await import('@inquirer/prompts') : null;
  const need = (what: string, flag: string): never => {
    throw new UsageError(`${what} is needed: pass ${flag} (or run fe init on a terminal without --yes to be asked)`);
  };
  const validDomain = (v: string) => {
    try {
      asciiDomain(v);
      return true;
    } catch (e) {
      return (e as Error).message;
    }
  };
  const guess = osHostname().includes('.') ? osHostname() : '';
  const hostname = flags.hostname ?? (prompts ? await prompts.input({ message: 'Mail host name (its MX and certificate name)', default: guess || undefined, validate: validDomain }) : need('the host name', '--hostname mail.example.org'));
  const host = parseName(asciiDomain, hostname);
  const domainGuess = host.split('.').slice(1).join('.');
  const domain = flags.domain ?? (prompts ? await prompts.input({ message: 'First mail domain', default: domainGuess, validate: validDomain }) : need('the first domain', '--domain example.org'));
  const dom = parseName(asciiDomain, domain);
  const admin = flags.admin ?? (prompts ? await prompts.input({ message: 'Admin address (gets DMARC and TLS reports)', default: `postmaster@${dom}` }) : `postmaster@${dom}`);

  let luks: LuksChoice;
  if (!flags.luks) luks = { mode: 'none' };
  else if (flags.luksDevice) luks = { mode: 'device', device: flags.luksDevice };
  else if (flags.luksFile) luks = { mode: 'file', size: flags.luksFile, path: '/var/lib/fe.luks' };
  else if (prompts) {
    const choice = await prompts.select({
      message: 'Where should the encrypted mail volume live?',
      choices: [
        { name: 'a second disk (block device)', value: 'device' },
        { name: 'a container file on this disk (single-disk VPS)', value: 'file' },
        { name: 'no encryption (not recommended)', value: 'none' },
      ],
    });
    if (choice === 'device') luks = { mode: 'device', device: await prompts.input({ message: 'Block device (all data on it is replaced)', default: '/dev/vdb', validate: (v) => (existsSync(v) ? true : `${v} does not exist`) }) };
    else if (choice === 'file') luks = { mode: 'file', size: await prompts.input({ message: 'Container size', default: '10G', validate: (v) => SIZE.test(v) || 'a size like 10G' }), path: '/var/lib/fe.luks' };
    else luks = { mode: 'none' };
  } else return need('the data volume', '--luks-device /dev/vdb, --luks-file 10G or --no-luks');
  if (luks.mode === 'file' && !SIZE.test(luks.size)) throw new UsageError(`--luks-file takes a size like 10G, not "${luks.size}"`);
  if (luks.mode === 'device' && !existsSync(luks.device)) throw new UserError(`${luks.device} does not exist`);

  const validPort = (v: string) => (/^\d+$/.test(v.trim()) && Number(v) >= 1 && Number(v) <= 65535) || 'a port number, 1 to 65535';
  const portText = flags.sshPort ?? (prompts ? await prompts.input({ message: 'SSH port (the firewall opens only this one for SSH)', default: '22', validate: validPort }) : '22');
  const sshPort = Number(portText.trim());
  if (validPort(portText) !== true) throw new UsageError(`--ssh-port must be a port number, not "${portText}"`);
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(flags.adminUser) || flags.adminUser === 'root') throw new UsageError(`--admin-user must be a plain user name other than root, not "${flags.adminUser}"`);
  const sshKeys = flags.sshKey.length > 0 ? flags.sshKey.flatMap((f) => (existsSync(f) ? sshKeyLines(readFileSync(f, 'utf8')) : sshKeyLines(f))) : defaultSshKeys();
  if (sshKeys.length === 0) throw new UserError('no SSH public key for the admin user: fe init turns password logins off, so pass --ssh-key FILE (root has no authorized_keys to copy)');
  const filtering = flags.filtering ?? (prompts ? await prompts.confirm({ message: 'Install spam and virus filtering (rspamd, ClamAV; needs ~2 GB RAM)?', default: false }) : false);
  const pbkdf = flags.luksPbkdfMemory === undefined ? null : Number(flags.luksPbkdfMemory);
  if (pbkdf !== null && (!Number.isInteger(pbkdf) || pbkdf < 32 * 1024)) throw new UsageError('--luks-pbkdf-memory takes KiB, at least 32768');
  const iterTime = flags.luksIterTime === undefined ? null : Number(flags.luksIterTime);
  if (iterTime !== null && (!Number.isInteger(iterTime) || iterTime < 1)) throw new UsageError('--luks-iter-time takes milliseconds, a whole number of at least 1');

  // Plain IMAP/POP3 ports are opened only if an existing fe.yml turns them on; the same file says
  // whether the web daemon runs (a new one gets it unless --no-web).
  let openPlainImap = false;
  let openPlainPop3 = false;
  let web = flags.web;
  let backupDir = DEFAULT_BACKUP_DIR;
  let banner: string | null = null;
  let backupRecipient = flags.backupRecipient?.trim();
  if (backupRecipient !== undefined && !isRecipient(backupRecipient)) throw new UsageError(`--backup-recipient takes an age public key (age1…), not "${flags.backupRecipient}"`);
  if (prompts && flags.backup && backupRecipient === undefined && !existsSync(file)) {
    const answer = await prompts.input({
      message: 'Your age public key for backups (age1…; empty: make a key pair now and show its secret once)',
      validate: (v) => v.trim() === '' || isRecipient(v.trim()) || 'an age public key (age1…), or empty',
    });
    if (answer.trim()) backupRecipient = answer.trim();
  }
  if (existsSync(file)) {
    const config = loadConfig(file);
    openPlainImap = config.listen.imap !== null;
    openPlainPop3 = config.listen.pop3 !== null;
    web = config.listen.http !== null || config.listen.https !== null;
    backupDir = config.backup.dir;
    banner = config.banner;
  }
  return {
    hostname: host,
    domain: dom,
    admin,
    dataDir: flags.dataDir,
    configFile: file,
    luks,
    luksKeyfile: flags.luksKeyfile === true,
    luksWipe: flags.luksWipe === true,
    luksPbkdfMemoryKiB: pbkdf,
    luksIterTimeMs: iterTime,
    sshPort,
    adminUser: flags.adminUser,
    sshKeys,
    filtering,
    openPlainImap,
    openPlainPop3,
    web,
    backup: flags.backup,
    backupDir,
    backupRecipient: backupRecipient ?? null,
    banner,
  };
}

/** One line per task, as it finishes: "  changed  firewall : IPv4 rules". */
function progress(): (e: PlaybookEvent) => void {
  const mark = { ok: style.green('ok     '), changed: style.yellow('changed'), skipping: style.dim('skipped'), failed: style.red('FAILED '), fatal: style.red('FAILED '), included: style.dim('       ') };
  return (e) => {
    if (e.kind === 'result' && e.task !== 'Gathering Facts') {
      print(`  ${mark[e.status]}  ${e.task}${e.message ? `\n           ${style.red(e.message)}` : ''}`);
    } else if (e.kind === 'diff') print(`           ${style.dim(e.line)}`);
  };
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('turn this fresh Debian/Ubuntu host into a hardened fe mail host (as root)')
    .option('-y, --yes', 'ask nothing: take the flags and the defaults')
    .option('--dry-run', 'show what would change (ansible --check --diff) and change nothing')
    .option('--hostname <fqdn>', "the mail host's name (MX target, certificate name)")
    .option('--domain <name>', 'the first mail domain')
    .option('--admin <address>', 'who gets DMARC/TLS reports (default postmaster@DOMAIN)')
    .option('--data-dir <dir>', 'where mail lives; the encrypted volume is mounted here', '/var/lib/fe')
    .option('--luks-device <dev>', 'encrypt this whole block device for the data (e.g. /dev/vdb)')
    .option('--luks-file <size>', 'encrypt a container file of this size instead (e.g. 10G), for single-disk hosts')
    .option('--no-luks', 'no encrypted volume (mail is still encrypted per mailbox; not recommended)')
    .option('--luks-keyfile', 'unlock the volume at boot with a key file on the root disk (unattended reboots; weaker: see README)')
    .option('--luks-wipe', 'allow formatting a device that already holds a file system')
    .addOption(new Option('--luks-pbkdf-memory <KiB>', 'argon2id memory for the LUKS key slot (default: cryptsetup decides)'))
    .addOption(new Option('--luks-iter-time <ms>', 'time cryptsetup aims for to unlock the key slot (its --iter-time; default: cryptsetup\'s 2000)'))
    .option('--ssh-port <port>', 'SSH port (default 22)')
    .option('--admin-user <name>', 'the non-root admin user (sudo, SSH keys only)', 'admin')
    .option('--ssh-key <file-or-key>', "the admin's SSH public key; repeatable (default: root's authorized_keys)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--filtering', 'install spam and virus filtering (rspamd, ClamAV)')
    .option('--no-filtering', 'do not install spam and virus filtering')
    .option('--no-web', 'no web daemon: no ACME certificate (port 80) and no MTA-STS policy host (443); bring tls.cert yourself')
    .option('--backup-recipient <age1key>', 'encrypt backups to this age public key (yours, from age-keygen); default: fe init makes a key pair and shows the secret once')
    .option('--no-backup', 'no fe-backup unit (no scheduled backups)')
    .addHelpText(
      'after',
      `
What it does: writes /etc/fe/fe.yml (kept if it exists), installs ansible-core if missing, then
runs fe's playbook on this host: a LUKS2 data volume, an iptables firewall (v4 and v6), no
USB storage, no swap, no core dumps, SSH keys only for a non-root admin, kernel hardening,
unattended security upgrades, the fe user and systemd units (fe-mx; fe-submission, ports 587
and 465; fe-queue, the only one that connects out to port 25; fe-mailstore; fe-web, which gets
the certificate from Let's Encrypt and serves the MTA-STS policy; fe-backup, nightly encrypted
backups to /var/backups/fe). It prints every task as it
finishes and, at the end, the DNS records to publish. Running it again is safe: it reports
what changed. The LUKS passphrase and the backup key are shown once and never stored; after a reboot,
\`fe unlock\` opens the volume and starts fe.

Examples:
  sudo fe init                                            ask for everything
  sudo fe init --yes --hostname mail.example.org --domain example.org --luks-device /dev/vdb
  sudo fe init --yes --hostname mail.example.org --domain example.org --luks-file 20G --dry-run`,
    )
    .action(async (flags: InitFlags, cmd: Command) => {
      const system = preflight();
      const file = configFile(cmd);
      const plan = await collect(flags, file);
      print(`fe init on ${system}: ${plan.hostname}, domain ${plan.domain}, data in ${plan.dataDir}${plan.luks.mode === 'none' ? ' (not encrypted)' : ` on LUKS (${luksSource(plan.luks)})`}`);
      if (!(await ansibleAvailable())) {
        if (flags.dryRun) throw new UserError('ansible-playbook is not installed and --dry-run installs nothing: apt-get install ansible-core, then run it again');
        print('installing ansible-core from the distribution ...');
        await installAnsible();
      }
      const volume = await currentVolume(plan);
      let secret: ReturnType<typeof passphraseFile> | null = null;
      if (plan.luks.mode !== 'none' && !volume.isLuks && !flags.dryRun) {
        const passphrase = newPassphrase();
        secret = passphraseFile(passphrase);
        print('');
        print(style.bold('LUKS passphrase for the mail volume (shown once, stored nowhere; write it down now):'));
        print(`  ${passphrase}`);
        print('You need it after every reboot: fe unlock');
        print('');
      }
      if (plan.luks.mode !== 'none' && volume.isLuks && !volume.open) {
        throw new UserError(`the data volume ${luksSource(plan.luks)} is locked: run fe unlock first, then fe init again`);
      }
      // A new fe.yml gets a backup key: the owner's public key, or a pair made here whose secret
      // half is shown once, like the passphrase, and stored nowhere on this host.
      if (plan.backup && !plan.backupRecipient && !existsSync(plan.configFile) && !flags.dryRun) {
        const pair = generateIdentity();
        plan.backupRecipient = pair.recipient;
        print('');
        print(style.bold('Backup key (shown once, not kept on this host; store it with the passphrase):'));
        print(`  ${pair.identity}`);
        print('Backups are encrypted to its public half; only this key opens them: fe backup --help');
        print('');
      }
      try {
        if (!flags.dryRun) print(`${ensureConfig(plan, renderTemplate) === 'written' ? 'wrote' : 'kept'} ${plan.configFile}`);
        print(flags.dryRun ? 'what would change (nothing is changed):' : 'configuring this host:');
        const result = await runPlaybook({ vars: playbookVars(plan, secret?.file ?? null), check: flags.dryRun === true, onEvent: progress() });
        if (!result.ok) {
          const failed = result.failedTasks.map((f) => `${f.task}${f.message ? `: ${f.message}` : ''}`).join('\n  ');
          throw new UserError(`the playbook stopped (exit ${result.exitCode})${failed ? `:\n  ${failed}` : ''}\nFix the cause and run fe init again; it continues where it stopped.`);
        }
        const r = result.recap;
        print(`${flags.dryRun ? 'would change' : 'changed'} ${r?.changed ?? result.changedTasks.length} task(s), ${r?.ok ?? 0} ok, ${r?.skipped ?? 0} skipped`);
      } finally {
        secret?.dispose();
      }
      if (flags.dryRun) return;
      const config = loadConfig(plan.configFile);
      if (config.domains.has(plan.domain)) {
        print('');
        print(style.bold(`DNS records to publish for ${plan.domain}:`));
        process.stdout.write(renderZone(plan.domain, dnsFor(config, plan.domain)));
      }
      print('');
      print('next steps:');
      print(`  1. publish the records above; set the reverse DNS (PTR) of this host's address to ${plan.hostname}`);
      print(`  2. fe alias add me@${plan.domain} --mailbox        (a mailbox; its password is printed once)`);
      print('  3. fe status                                        (checks services, firewall, DNS, certificates)');
      print(`  4. log in as ${plan.adminUser} over SSH${plan.sshPort !== 22 ? ` on port ${plan.sshPort}` : ''} from now on: root and passwords are refused`);
    });

  program
    .command('unlock')
    .description('after a reboot: open the encrypted mail volume with its passphrase, mount it and start fe')
    .option('--passphrase-stdin', 'read the passphrase from standard input instead of asking')
    .addHelpText('after', '\nThe passphrase is the one fe init showed. It goes to cryptsetup on a pipe, never on a command line.')
    .option('--wait <seconds>', 'how long to wait for the daemons to listen on their ports', '180')
    .action(async (opts: { passphraseStdin?: boolean; wait: string }, cmd: Command) => {
      if (process.getuid?.() !== 0) throw new UserError('fe unlock opens a disk: run it as root (sudo fe unlock)');
      const info = readVolumeInfo();
      if (!info) throw new UserError('this host has no fe volume (/etc/fe/volume.json is missing): run fe init first');
      let passphrase: string | null = null;
      const state = info.mode === 'none' ? null : await volumeState(info.source, info.name, info.mountpoint);
      if (state && !state.open) {
        if (opts.passphraseStdin) passphrase = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
        else if (process.stdin.isTTY) passphrase = await (await import('@inquirer/prompts')).password({ message: `Passphrase for ${info.source}`, mask: false });
        else throw new UsageError('no terminal to ask on: pass --passphrase-stdin');
      }
      const did = await unlockVolume(info, passphrase);
      for (const line of did) print(line);
      await startServices();
      // Started is not yet listening: say so only once every configured port accepts connections.
      const ports = Object.values(loadConfig(configFile(cmd)).listen).flatMap((l) => (l && l.port > 0 ? [l.port] : []));
      const closed = await waitForPorts(ports, Math.max(0, Number(opts.wait) || 0) * 1000, () => listeningPorts());
      if (closed.length > 0) throw new UserError(`fe.target started, but nothing listens on ${closed.join(', ')} yet: journalctl -u fe-mx -u fe-submission -u fe-mailstore -u fe-web`);
      print(`fe is running, listening on ${[...new Set(ports)].sort((a, b) => a - b).join(', ')} (systemctl status fe.target)`);
    });
}
