// The encrypted data volume: what `fe init` recorded about it (/etc/fe/volume.json), its state,
// and `fe unlock` (open with the passphrase, mount, start fe). The passphrase goes to cryptsetup
// on stdin, never on a command line.
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { UserError } from '../util/errors.js';

export interface VolumeInfo {
  mode: 'device' | 'file' | 'none';
  source: string; // block device or container file
  name: string; // device-mapper name
  mountpoint: string;
  keyfile: boolean;
}

export const VOLUME_FILE = '/etc/fe/volume.json';

export function readVolumeInfo(file = VOLUME_FILE): VolumeInfo | null {
  if (!existsSync(file)) return null;
  const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<VolumeInfo>;
  if (!v.mode || typeof v.mountpoint !== 'string' || typeof v.name !== 'string') throw new UserError(`${file} is not what fe init writes; re-run fe init`);
  return { mode: v.mode, source: v.source ?? '', name: v.name, mountpoint: v.mountpoint, keyfile: v.keyfile === true };
}

export interface VolumeState {
  isLuks: boolean;
  open: boolean;
  mounted: boolean;
}

export async function isMountPoint(dir: string): Promise<boolean> {
  return (await execa('mountpoint', ['-q', dir], { reject: false })).exitCode === 0;
}

export async function volumeState(source: string, name: string, mountpoint: string): Promise<VolumeState> {
  const isLuks = source !== '' && existsSync(source) && (await execa('cryptsetup', ['isLuks', source], { reject: false })).exitCode === 0;
  return { isLuks, open: existsSync(`/dev/mapper/${name}`), mounted: await isMountPoint(mountpoint) };
}

/** Opens and mounts the volume with `passphrase`; says what it did. Throws UserError on a wrong passphrase. */
export async function unlockVolume(v: VolumeInfo, passphrase: string | null): Promise<string[]> {
  const did: string[] = [];
  if (v.mode === 'none') return ['this host keeps mail without an encrypted volume (fe init --no-luks); nothing to unlock'];
  const state = await volumeState(v.source, v.name, v.mountpoint);
  if (!state.isLuks) throw new UserError(`${v.source} is not a LUKS volume; was it replaced? Re-run fe init`);
  if (!state.open) {
    if (passphrase === null) throw new UserError('the volume is locked and no passphrase was given');
    const r = await execa('cryptsetup', ['open', '--key-file=-', v.source, v.name], { input: passphrase, reject: false });
    if (r.exitCode !== 0) {
      if (r.exitCode === 2) throw new UserError('wrong passphrase; the volume stays locked');
      throw new UserError(`cryptsetup could not open ${v.source}: ${r.stderr.trim()}`);
    }
    did.push(`opened ${v.source} as /dev/mapper/${v.name}`);
  }
  if (!state.mounted) {
    const r = await execa('mount', ['-o', 'nodev,nosuid,noexec', `/dev/mapper/${v.name}`, v.mountpoint], { reject: false });
    if (r.exitCode !== 0) throw new UserError(`could not mount /dev/mapper/${v.name} on ${v.mountpoint}: ${r.stderr.trim()}`);
    did.push(`mounted it on ${v.mountpoint}`);
    if (await reloadAuditRules()) did.push('loaded the audit rules again (they watch the DKIM keys on the volume)');
  }
  return did;
}

/** fe init's audit rules name paths on the volume; the kernel resolves a watch when the rules load, so they load again after the mount. */
const AUDIT_RULES = '/etc/audit/rules.d/50-fe.rules';
async function reloadAuditRules(): Promise<boolean> {
  if (!existsSync(AUDIT_RULES)) return false;
  const r = await execa('augenrules', ['--load'], { reject: false });
  return r.exitCode === 0;
}

export async function startServices(): Promise<void> {
  const r = await execa('systemctl', ['start', 'fe.target'], { reject: false });
  if (r.exitCode !== 0) throw new UserError(`systemctl start fe.target failed: ${r.stderr.trim()}`);
}

/**
 * Waits until every port in `ports` is listening (the units are Type=simple: "started" means the
 * process exists, not that it accepts connections yet). Returns the ports still closed at the end.
 */
export async function waitForPorts(ports: number[], timeoutMs: number, listening: () => Set<number>): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = listening();
    const closed = ports.filter((p) => !open.has(p));
    if (closed.length === 0 || Date.now() >= deadline) return closed;
    await new Promise((r) => setTimeout(r, 500));
  }
}
