// `fe init`: checks this host, records the choices in /etc/fe/fe.yml, then runs the bundled
// playbook. Each step is a function here so the CLI (prompts or flags) stays a thin face.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { UserError } from '../util/errors.js';
import { DEFAULT_BACKUP_DIR } from '../config/schema.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { parseOsRelease, unsupportedReason } from './os.js';
import { volumeState, type VolumeState } from './volume.js';

export const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');

export type LuksChoice = { mode: 'device'; device: string } | { mode: 'file'; size: string; path: string } | { mode: 'none' };

export interface InitPlan {
  hostname: string;
  domain: string;
  admin: string;
  dataDir: string;
  configFile: string;
  luks: LuksChoice;
  luksKeyfile: boolean;
  luksWipe: boolean;
  luksPbkdfMemoryKiB: number | null;
  luksIterTimeMs?: number | null;
  sshPort: number;
  adminUser: string;
  sshKeys: string[];
  filtering: boolean;
  openPlainImap: boolean;
  openPlainPop3: boolean;
  /** The web daemon: ACME HTTP-01 on 80, the MTA-STS policy on 443. */
  web: boolean;
  /** The fe-backup unit and its folder (backup.to). */
  backup: boolean;
  backupDir: string;
  /** An age public key for a new fe.yml's backup.recipients (the owner's, or one fe init made). */
  backupRecipient: string | null;
  /** fe.yml's `banner:` for /etc/issue and /etc/issue.net; null: the playbook's default notice. */
  banner?: string | null;
}

/** Throws UserError unless this is root on a supported system. */
export function preflight(osReleaseFile = '/etc/os-release'): string {
  if (process.getuid?.() !== 0) throw new UserError('fe init changes the whole host: run it as root (sudo fe init)');
  if (!existsSync(osReleaseFile)) throw new UserError(`${osReleaseFile} is missing: cannot tell which system this is`);
  const os = parseOsRelease(readFileSync(osReleaseFile, 'utf8'));
  const reason = unsupportedReason(os);
  if (reason) throw new UserError(reason);
  return os.prettyName;
}

const KEY_LINE = /^(?:(?:[a-z0-9-]+(?:="[^"]*")?,?)+\s+)?(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)\s+[A-Za-z0-9+/=]+(\s.*)?$/;

/** OpenSSH public key lines from authorized_keys-style text (comments and blanks dropped). */
export function sshKeyLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .filter((l) => KEY_LINE.test(l));
}

/** Keys the admin gets by default: root's, and the sudo caller's, authorized_keys. */
export function defaultSshKeys(): string[] {
  const files = ['/root/.ssh/authorized_keys'];
  const sudoUser = process.env.SUDO_USER;
  if (sudoUser && /^[a-z_][a-z0-9_-]*$/.test(sudoUser)) files.push(`/home/${sudoUser}/.ssh/authorized_keys`);
  const keys = files.flatMap((f) => (existsSync(f) ? sshKeyLines(readFileSync(f, 'utf8')) : []));
  return [...new Set(keys)];
}

/** A passphrase people can copy by hand: 8 groups of 5 from an alphabet without look-alikes (~190 bits). */
export function newPassphrase(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = randomBytes(40);
  const chars = [...bytes].map((b) => alphabet[b % alphabet.length]);
  return Array.from({ length: 8 }, (_, i) => chars.slice(i * 5, i * 5 + 5).join('')).join('-');
}

export function luksSource(luks: LuksChoice): string {
  return luks.mode === 'device' ? luks.device : luks.mode === 'file' ? luks.path : '';
}

export async function currentVolume(plan: InitPlan): Promise<VolumeState> {
  return volumeState(luksSource(plan.luks), 'fe-data', plan.dataDir);
}

/** The variables the playbook reads (each role's defaults/main.yml names its own). */
export function playbookVars(plan: InitPlan, passphraseFile: string | null, node = process.execPath): Record<string, unknown> {
  const open = [25, 465, 587, 993, 995];
  if (plan.openPlainImap) open.push(143);
  if (plan.openPlainPop3) open.push(110);
  if (plan.web) open.push(80, 443);
  return {
    fe_hostname: plan.hostname,
    fe_domain: plan.domain,
    fe_config: plan.configFile,
    fe_data_dir: plan.dataDir,
    fe_luks_mode: plan.luks.mode,
    fe_luks_device: plan.luks.mode === 'device' ? plan.luks.device : '',
    fe_luks_file: plan.luks.mode === 'file' ? plan.luks.path : '/var/lib/fe.luks',
    fe_luks_file_size: plan.luks.mode === 'file' ? plan.luks.size : '10G',
    fe_luks_passphrase_file: passphraseFile ?? '',
    fe_luks_keyfile: plan.luksKeyfile,
    fe_luks_wipe: plan.luksWipe,
    fe_luks_pbkdf_memory: plan.luksPbkdfMemoryKiB ?? '',
    fe_luks_iter_time: plan.luksIterTimeMs ?? '',
    fe_ssh_port: plan.sshPort,
    fe_admin_user: plan.adminUser,
    fe_admin_ssh_keys: plan.sshKeys,
    fe_open_tcp: open,
    fe_units: ['fe-mx', 'fe-submission', 'fe-queue', 'fe-mailstore', ...(plan.web ? ['fe-web'] : []), ...(plan.backup ? ['fe-backup'] : [])],
    fe_backup_dir: plan.backupDir,
    fe_filtering: plan.filtering,
    fe_source: PROJECT_ROOT,
    fe_node: node,
    ...(plan.banner ? { fe_banner: plan.banner } : {}),
  };
}

/** Writes fe.yml from the template unless one exists (then it is kept as the owner left it). */
export function ensureConfig(plan: InitPlan, render: (hostname: string, dataDir: string) => string): 'written' | 'kept' {
  if (existsSync(plan.configFile)) return 'kept';
  mkdirSync(path.dirname(plan.configFile), { recursive: true, mode: 0o750 });
  let text = render(plan.hostname, plan.dataDir);
  if (plan.admin) text = text.replace(/^# admin: .*$/m, `admin: ${plan.admin}`);
  if (plan.web) {
    text += [
      '',
      '# fe-web: port 80 answers the ACME CA (Let\'s Encrypt) for the certificate of the host name and',
      '# of mta-sts.DOMAIN; port 443 serves each domain\'s MTA-STS policy. See `fe cert --help`.',
      'listen:',
      '  http: "0.0.0.0:80"',
      '  https: "0.0.0.0:443"',
      '',
    ].join('\n');
  }
  if (plan.backup && plan.backupRecipient) {
    text += [
      '',
      '# fe-backup: encrypted backups to this public key; its secret half is NOT on this host.',
      'backup:',
      `  recipients: [${plan.backupRecipient}]`,
      ...(plan.backupDir !== DEFAULT_BACKUP_DIR ? [`  to: ${plan.backupDir}`] : []),
      '',
    ].join('\n');
  }
  writeFileAtomic(plan.configFile, text, 0o640);
  return 'written';
}

/**
 * Holds the LUKS passphrase in a 0600 file on a tmpfs (/run) for the playbook's run only.
 * `dispose` removes it; it is never written anywhere else.
 */
export function passphraseFile(passphrase: string): { file: string; dispose: () => void } {
  const base = existsSync('/run') ? '/run' : tmpdir();
  const dir = mkdtempSync(path.join(base, 'fe-init-'));
  const file = path.join(dir, 'passphrase');
  writeFileSync(file, passphrase, { mode: 0o600 });
  return { file, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Installs ansible-core from the distribution when ansible-playbook is missing. */
export async function installAnsible(): Promise<void> {
  const update = await execa('apt-get', ['update', '-qq'], { reject: false, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  if (update.exitCode !== 0) throw new UserError(`apt-get update failed: ${update.stderr.trim().slice(-500)}`);
  const r = await execa('apt-get', ['install', '-y', '-qq', 'ansible-core'], { reject: false, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.exitCode !== 0) throw new UserError(`could not install ansible-core: ${r.stderr.trim().slice(-500)}`);
}
