// `fe status`: what a mail host owner should look at, each check OK / WARN / FAIL with the fix.
// Every check only reads; none changes the host. Host checks read the live system (systemctl,
// iptables, sshd -T, /proc); DNS checks go through fe's resolver (dns.servers).
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { FeConfig } from '../config/schema.js';
import type { DnsRecord, DomainDns } from '../dns/records.js';
import { isDnsNotFound, type FeResolver } from '../dns/resolver.js';
import { readVolumeInfo, volumeState } from './volume.js';
import { currentCertificateFiles } from '../tls/source.js';
import { readBackupState } from '../backup/archive.js';
import { listIncoming } from '../queue/handoff.js';
import { QueueStore } from '../queue/store.js';
import { schedulePeriodMs } from '../backup/schedule.js';
import { protectionChecks } from '../protection/status.js';

export type Level = 'OK' | 'WARN' | 'FAIL';

export interface CheckResult {
  check: string; // group: services, ports, firewall, volume, swap, usb-storage, ssh, updates, dns, ptr, outbound, certificate, backup, queue, openpgp, protection
  subject: string;
  level: Level;
  detail: string;
  fix: string | null;
}

export const CHECK_GROUPS = ['services', 'ports', 'firewall', 'volume', 'swap', 'usb-storage', 'ssh', 'updates', 'dns', 'ptr', 'outbound', 'certificate', 'backup', 'queue', 'openpgp', 'protection'] as const;
export type CheckGroup = (typeof CHECK_GROUPS)[number];

export interface StatusContext {
  config: FeConfig;
  resolver: FeResolver;
  /** The records each domain should have (what `fe domain dns` prints). */
  dnsFor: (domain: string) => DomainDns;
  /** host:port of an MX to test outbound port 25 against; null: the admin domain's MX. */
  probeMx: string | null;
  now?: Date;
}

/** The units fe init installs for this fe.yml (fe-web only when a web listener is on, fe-backup when backups are on). */
function units(config: FeConfig): string[] {
  const out = ['fe-mx', 'fe-submission', 'fe-queue', 'fe-mailstore'];
  if (config.listen.http || config.listen.https) out.push('fe-web');
  if (config.backup.recipients.length > 0) out.push('fe-backup');
  return out;
}

const ok = (check: string, subject: string, detail: string): CheckResult => ({ check, subject, level: 'OK', detail, fix: null });
const warn = (check: string, subject: string, detail: string, fix: string | null): CheckResult => ({ check, subject, level: 'WARN', detail, fix });
const fail = (check: string, subject: string, detail: string, fix: string | null): CheckResult => ({ check, subject, level: 'FAIL', detail, fix });

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string } | null> {
  try {
    const r = await execa(cmd, args, { reject: false, timeout: 15_000 });
    if (r.exitCode === undefined) return null; // could not be started (not installed)
    return { code: r.exitCode, out: `${r.stdout}\n${r.stderr}`.trim() };
  } catch {
    return null; // not installed
  }
}

async function services(config: FeConfig): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const unit of units(config)) {
    const r = await run('systemctl', ['is-active', `${unit}.service`]);
    if (r === null || /not been booted with systemd|Failed to connect to bus/.test(r.out)) return [warn('services', 'systemd', 'systemd is not running here: not a systemd host', 'fe init installs the units on Debian/Ubuntu hosts')];
    if (r.out === 'active') out.push(ok('services', unit, 'running'));
    else out.push(fail('services', unit, `not running (${r.out.split('\n')[0] || 'unknown'})`, `fe unlock if the volume is locked; else journalctl -u ${unit} and systemctl restart ${unit}`));
  }
  return out;
}

/** Local TCP ports in LISTEN state, from /proc/net/tcp and tcp6. */
export function listeningPorts(procRoot = '/proc'): Set<number> {
  const ports = new Set<number>();
  for (const f of ['net/tcp', 'net/tcp6']) {
    const file = path.join(procRoot, f);
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A') ports.add(parseInt(cols[1]!.split(':').pop()!, 16));
    }
  }
  return ports;
}

function ports(config: FeConfig): CheckResult[] {
  const listening = listeningPorts();
  return Object.entries(config.listen).flatMap(([name, l]) => {
    if (!l) return [];
    if (l.port === 0) return [warn('ports', name, 'configured with port 0 (any free port)', 'give it a fixed port in fe.yml listen')];
    return [listening.has(l.port) ? ok('ports', name, `listening on ${l.port}`) : fail('ports', name, `nothing listens on ${l.port}`, 'check the services above (systemctl status fe.target)')];
  });
}

/** Policy and open TCP ports of an iptables-save style chain listing (`iptables -S INPUT`). */
export function parseInputChain(text: string): { policy: string | null; openPorts: number[] } {
  const policy = /^-P INPUT (\w+)/m.exec(text)?.[1] ?? null;
  const open = new Set<number>();
  for (const line of text.split('\n')) {
    if (!/-j ACCEPT\s*$/.test(line) || !/-p tcp/.test(line)) continue;
    const one = /--dport (\d+)/.exec(line);
    if (one) open.add(Number(one[1]));
    const many = /--dports ([\d,:]+)/.exec(line);
    if (many) for (const p of many[1]!.split(',')) if (/^\d+$/.test(p)) open.add(Number(p));
  }
  return { policy, openPorts: [...open].sort((a, b) => a - b) };
}

async function sshPort(): Promise<number> {
  const r = await run('sshd', ['-T']);
  const m = r ? /^port (\d+)$/m.exec(r.out) : null;
  return m ? Number(m[1]) : 22;
}

async function firewall(config: FeConfig): Promise<CheckResult[]> {
  const expected = new Set([await sshPort(), 25, 465, 587, 993, 995]);
  if (config.listen.imap) expected.add(143);
  if (config.listen.pop3) expected.add(110);
  const out: CheckResult[] = [];
  for (const [tool, label] of [['iptables', 'IPv4'], ['ip6tables', 'IPv6']] as const) {
    const r = await run(tool, ['-S', 'INPUT']);
    if (r === null || r.code !== 0) {
      out.push(fail('firewall', label, `${tool} could not be read${r ? ` (exit ${r.code}${r.out ? `: ${r.out.split('\n')[0]}` : ''})` : ' (not installed)'}`, 'fe init installs and loads the rules'));
      continue;
    }
    const chain = parseInputChain(r.out);
    if (chain.policy !== 'DROP') {
      out.push(fail('firewall', label, `inbound policy is ${chain.policy ?? 'unknown'}, not DROP`, 'fe init (or netfilter-persistent reload) restores the rules'));
      continue;
    }
    const extra = chain.openPorts.filter((p) => !expected.has(p) && p !== 80 && p !== 443);
    const missing = [...expected].filter((p) => !chain.openPorts.includes(p));
    if (extra.length) out.push(warn('firewall', label, `policy DROP, but also open: ${extra.join(', ')}`, 'remove rules you did not mean to add (iptables -S INPUT)'));
    else if (missing.length) out.push(warn('firewall', label, `policy DROP; not open: ${missing.join(', ')}`, 'fe init opens the mail ports'));
    else out.push(ok('firewall', label, `policy DROP, open: ${chain.openPorts.join(', ')}`));
  }
  return out;
}

async function volume(config: FeConfig): Promise<CheckResult[]> {
  let info;
  try {
    info = readVolumeInfo();
  } catch (e) {
    return [fail('volume', 'data', (e as Error).message, 'fe init')];
  }
  if (!info) return [warn('volume', config.dataDir, 'no encrypted volume recorded (/etc/fe/volume.json)', 'fe init sets one up')];
  if (info.mode === 'none') return [warn('volume', config.dataDir, 'mail is kept without a LUKS volume (fe init --no-luks)', 'fe init --luks-device DEV or --luks-file SIZE')];
  const s = await volumeState(info.source, info.name, info.mountpoint);
  if (!s.isLuks) return [fail('volume', info.source, 'is not a LUKS volume', 'fe init')];
  if (!s.open || !s.mounted) return [fail('volume', info.source, `locked${s.open ? ' (open, not mounted)' : ''}`, 'fe unlock')];
  return [ok('volume', info.mountpoint, `LUKS ${info.source} open and mounted${info.keyfile ? ' (unlocks at boot with a key file)' : ''}`)];
}

function swap(): CheckResult[] {
  const lines = existsSync('/proc/swaps') ? readFileSync('/proc/swaps', 'utf8').trim().split('\n').slice(1).filter(Boolean) : [];
  if (lines.length === 0) return [ok('swap', 'swap', 'off')];
  return [fail('swap', 'swap', `on: ${lines.map((l) => l.split(/\s+/)[0]).join(', ')}`, 'swapoff -a, then fe init keeps it off')];
}

async function usbStorage(): Promise<CheckResult[]> {
  const r = await run('modprobe', ['-n', '-v', 'usb-storage']);
  if (r && /install \/bin\/(true|false)/.test(r.out)) return [ok('usb-storage', 'usb-storage', 'cannot be loaded')];
  const loaded = existsSync('/proc/modules') && /^usb_storage /m.test(readFileSync('/proc/modules', 'utf8'));
  return [fail('usb-storage', 'usb-storage', loaded ? 'loaded' : 'can be loaded', 'fe init blocks it (/etc/modprobe.d/fe-usb-storage.conf)')];
}

/** The `os-release` fields and the apt source files (path and text) an updates check reads. */
export interface AptView {
  osRelease: string;
  sources: { file: string; text: string }[];
}

function readAptView(): AptView {
  const read = (f: string): string => (existsSync(f) ? readFileSync(f, 'utf8') : '');
  const files = ['/etc/apt/sources.list'];
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) if (f.endsWith('.list') || f.endsWith('.sources')) files.push(path.join(dir, f));
  }
  return { osRelease: read('/etc/os-release'), sources: files.map((file) => ({ file, text: read(file) })) };
}

/**
 * Unattended upgrades only bring security fixes when apt has the distribution's security suite
 * (CODENAME-security, Debian and Ubuntu alike). Enabled entries only: `#` lines and deb822
 * stanzas with `Enabled: no` do not count.
 */
export function updatesCheck(view: AptView): CheckResult[] {
  const field = (k: string): string => new RegExp(`^${k}=\"?([^"\n]*)\"?$`, 'm').exec(view.osRelease)?.[1] ?? '';
  const id = field('ID');
  const codename = field('VERSION_CODENAME');
  if ((id !== 'debian' && id !== 'ubuntu') || codename === '') return [warn('updates', 'apt', `not Debian or Ubuntu (${id || 'unknown'}): security sources not checked`, null)];
  const suite = `${codename}-security`;
  for (const { file, text } of view.sources) {
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const lines = stanza.split('\n').filter((l) => !l.trimStart().startsWith('#'));
        if (lines.some((l) => /^Enabled:\s*no\b/i.test(l))) continue;
        const suites = lines.find((l) => /^Suites:/i.test(l));
        if (suites && suites.split(/\s+/).slice(1).includes(suite)) return [ok('updates', 'apt', `${suite} is configured (${file})`)];
      }
    } else {
      for (const line of text.split('\n')) {
        // deb [options] URI SUITE COMPONENT...
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?\S+\s+(\S+)/.exec(line);
        if (m && m[1] === suite) return [ok('updates', 'apt', `${suite} is configured (${file})`)];
      }
    }
  }
  const archive = id === 'debian' ? 'the Debian security archive (debian-security)' : "the Ubuntu archive's security pocket";
  return [fail('updates', 'apt', `no ${suite} source: unattended-upgrades finds no security fixes`, `add ${suite} from ${archive} to /etc/apt/sources.list.d/, then apt update`)];
}

async function ssh(): Promise<CheckResult[]> {
  const r = await run('sshd', ['-T']);
  if (r === null || r.code !== 0) return [warn('ssh', 'sshd', 'sshd -T could not be read', 'install openssh-server; fe init configures it')];
  const get = (k: string) => new RegExp(`^${k} (.+)$`, 'm').exec(r.out)?.[1] ?? '';
  const bad: string[] = [];
  if (get('permitrootlogin') !== 'no') bad.push(`PermitRootLogin ${get('permitrootlogin')}`);
  if (get('passwordauthentication') !== 'no') bad.push('PasswordAuthentication yes');
  if (get('kbdinteractiveauthentication') === 'yes') bad.push('KbdInteractiveAuthentication yes');
  if (bad.length) return [fail('ssh', 'sshd', bad.join(', '), 'fe init writes /etc/ssh/sshd_config.d/00-fe.conf')];
  return [ok('ssh', 'sshd', `keys only, no root (port ${get('port')})`)];
}

/** What DNS holds for one expected record, compared like a resolver would (TXT strings joined). */
async function checkRecord(resolver: FeResolver, r: DnsRecord): Promise<'ok' | 'missing' | { differs: string }> {
  const name = r.name.replace(/\.$/, '');
  try {
    switch (r.type) {
      case 'MX': {
        const [, exchange = ''] = r.value.split(/\s+/);
        const got = await resolver.mx(name);
        return got.some((m) => m.exchange.toLowerCase() === exchange.replace(/\.$/, '').toLowerCase()) ? 'ok' : got.length ? { differs: got.map((m) => `${m.priority} ${m.exchange}`).join(', ') } : 'missing';
      }
      case 'TXT': {
        const want = r.text ?? r.value;
        const got = await resolver.txt(name);
        if (got.includes(want)) return 'ok';
        // same kind of record (v=spf1, v=DKIM1, v=DMARC1, ...) but other content
        const kind = /^v=[^;\s]+/.exec(want)?.[0];
        const same = kind ? got.filter((g) => g.startsWith(kind)) : [];
        return same.length ? { differs: same.join(' | ') } : 'missing';
      }
      default: {
        const got = (await resolver.mailauthResolver(name, r.type)) as unknown[];
        const text = got.map((g) => (typeof g === 'string' ? g : JSON.stringify(g))).join(', ');
        if (r.type === 'CNAME') return got.some((g) => String(g).toLowerCase() === r.value.replace(/\.$/, '').toLowerCase()) ? 'ok' : { differs: text };
        if (r.type === 'SRV') {
          const [prio, weight, port, target = ''] = r.value.split(/\s+/);
          const match = got.some((g) => {
            const s = g as { priority: number; weight: number; port: number; name: string };
            return String(s.priority) === prio && String(s.weight) === weight && String(s.port) === port && s.name.toLowerCase() === target.replace(/\.$/, '').toLowerCase();
          });
          return match ? 'ok' : { differs: text };
        }
        return got.length ? 'ok' : 'missing';
      }
    }
  } catch (e) {
    if (isDnsNotFound(e)) return 'missing';
    throw e;
  }
}

// Records a domain cannot receive or authenticate mail without; the rest improve it.
const ESSENTIAL = /^(MX|SPF|DKIM|DMARC)/i;

async function dns(ctx: StatusContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const domain of ctx.config.domains.values()) {
    records: for (const r of ctx.dnsFor(domain.name).records) {
      const subject = `${r.type} ${r.name.replace(/\.$/, '')}`;
      const essential = ESSENTIAL.test(r.purpose) || r.type === 'MX';
      try {
        const got = await checkRecord(ctx.resolver, r);
        if (got === 'ok') out.push(ok('dns', subject, r.purpose));
        else if (got === 'missing') out.push((essential ? fail : warn)('dns', subject, `missing (${r.purpose})`, `publish: ${r.name} ${r.type} ${r.value}`));
        else out.push((essential ? fail : warn)('dns', subject, `differs: ${got.differs}`, `publish: ${r.name} ${r.type} ${r.value}`));
      } catch (e) {
        // The resolver itself is failing: one line for the domain, not one per record.
        out.push(warn('dns', domain.name, `lookups fail (${(e as Error).message}); records not checked`, 'check dns.servers in fe.yml and the network'));
        break records;
      }
    }
  }
  if (out.length === 0) out.push(warn('dns', 'domains', 'no domains served yet', 'fe domain add example.org'));
  return out;
}

/** Global unicast addresses of this host's interfaces (what the world connects to, without NAT). */
export function publicAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4' && !/^(10\.|127\.|169\.254\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.)/.test(a.address)) out.push(a.address);
      if (a.family === 'IPv6' && /^[23]/.test(a.address)) out.push(a.address);
    }
  }
  return out;
}

/** PTR of each address names the host, and the host name resolves back to it (FCrDNS). */
export async function ptr(config: FeConfig, resolver: FeResolver, addresses = publicAddresses()): Promise<CheckResult[]> {
  if (addresses.length === 0) return [warn('ptr', config.hostname, 'no public address on any interface (behind NAT?)', "set the PTR of the public address to the host name at your provider")];
  const out: CheckResult[] = [];
  for (const ip of addresses) {
    let names: string[] = [];
    try {
      names = await resolver.ptr(ip);
    } catch (e) {
      if (!isDnsNotFound(e)) {
        out.push(warn('ptr', ip, `lookup failed: ${(e as Error).message}`, null));
        continue;
      }
    }
    const host = config.hostname.toLowerCase();
    if (!names.map((n) => n.toLowerCase().replace(/\.$/, '')).includes(host)) {
      out.push(fail('ptr', ip, names.length ? `PTR is ${names.join(', ')}, not ${host}` : 'no PTR record', `set the reverse DNS of ${ip} to ${host} at your provider`));
      continue;
    }
    let forward: string[] = [];
    try {
      forward = net.isIPv6(ip) ? await resolver.aaaa(host) : await resolver.a(host);
    } catch (e) {
      if (!isDnsNotFound(e)) throw e;
    }
    if (forward.includes(ip)) out.push(ok('ptr', ip, `${host}, and ${host} resolves back to it`));
    else out.push(fail('ptr', ip, `PTR is ${host}, but ${host} resolves to ${forward.join(', ') || 'nothing'}`, `publish ${host} ${net.isIPv6(ip) ? 'AAAA' : 'A'} ${ip}`));
  }
  return out;
}

/** Can this host open a connection to port 25 elsewhere (many VPS providers block it)? */
async function outbound(ctx: StatusContext): Promise<CheckResult[]> {
  let target = ctx.probeMx;
  if (!target) {
    const adminDomain = ctx.config.admin?.split('@')[1]?.toLowerCase();
    if (!adminDomain || ctx.config.domains.has(adminDomain)) return [warn('outbound', 'port 25', 'no outside MX to try (admin is one of our own addresses)', 'fe status --probe-mx HOST')];
    try {
      const mx = (await ctx.resolver.mx(adminDomain)).sort((a, b) => a.priority - b.priority)[0];
      if (!mx) return [warn('outbound', 'port 25', `${adminDomain} has no MX to try`, 'fe status --probe-mx HOST')];
      target = mx.exchange;
    } catch (e) {
      return [warn('outbound', 'port 25', `MX lookup for ${adminDomain} failed: ${(e as Error).message}`, null)];
    }
  }
  const [host, portText] = target.includes(':') && !target.includes('::') ? target.split(':') : [target, '25'];
  const port = Number(portText ?? 25);
  const greeting = await new Promise<string | Error>((resolve) => {
    const s = net.connect({ host: host!, port, timeout: 10_000 });
    let data = '';
    s.on('data', (d) => {
      data += d.toString('latin1');
      if (data.includes('\n')) {
        s.end('QUIT\r\n');
        resolve(data.split('\r\n')[0]!);
      }
    });
    s.on('timeout', () => {
      s.destroy();
      resolve(new Error('timed out'));
    });
    s.on('error', (e) => resolve(e));
  });
  if (greeting instanceof Error) return [fail('outbound', 'port 25', `${host}:${port}: ${greeting.message}`, 'your provider may block outgoing port 25: ask them to open it')];
  if (!greeting.startsWith('220')) return [warn('outbound', 'port 25', `${host}:${port} answered "${greeting.slice(0, 80)}"`, null)];
  return [ok('outbound', 'port 25', `${host}:${port} answers ${greeting.slice(0, 60)}`)];
}

function certificate(config: FeConfig, now: Date): CheckResult[] {
  const { kind, cert: file } = currentCertificateFiles(config);
  // How this certificate gets replaced, for the hints below.
  const how = kind === 'configured' ? 'replace tls.cert / tls.key in fe.yml' : config.acme.directory && config.listen.http ? 'fe cert renew (and fe cert status)' : 'turn on listen.http and acme.directory, or set tls.cert / tls.key in fe.yml';
  if (!existsSync(file)) return [warn('certificate', config.hostname, `no certificate yet (${file})`, `fe serve makes a self-signed one at start; for a real one: ${how}`)];
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(file));
  } catch (e) {
    return [fail('certificate', file, `unreadable: ${(e as Error).message}`, 'replace it')];
  }
  const days = Math.floor((new Date(cert.validTo).getTime() - now.getTime()) / 86_400_000);
  const names = cert.subjectAltName ?? '';
  const selfSigned = cert.issuer === cert.subject;
  if (days < 0) return [fail('certificate', config.hostname, `expired ${-days} days ago`, how)];
  if (!names.toLowerCase().includes(`dns:${config.hostname.toLowerCase()}`)) return [fail('certificate', config.hostname, `does not name ${config.hostname} (${names})`, 'get a certificate for the host name')];
  if (selfSigned) return [warn('certificate', config.hostname, `self-signed, ${days} days left: mail clients will warn`, how)];
  if (days < 14) return [warn('certificate', config.hostname, `expires in ${days} days`, how)];
  return [ok('certificate', config.hostname, `${kind === 'acme' ? 'from ACME, ' : ''}valid for ${days} more days`)];
}

function hoursAgo(ms: number): string {
  const h = ms / 3_600_000;
  return h < 48 ? `${Math.max(0, Math.round(h))} h ago` : `${Math.round(h / 24)} days ago`;
}

/** The last good backup must be younger than one schedule period (plus an hour of slack). */
function backup(config: FeConfig, now: Date): CheckResult[] {
  const subject = config.backup.dir;
  if (config.backup.recipients.length === 0) return [warn('backup', 'backup', 'backups are off (backup.recipients is empty)', 'fe backup key   (then: systemctl reload fe-backup, or re-run fe init)')];
  const state = readBackupState(config.dataDir);
  const period = schedulePeriodMs(config.backup.schedule);
  const out: CheckResult[] = [];
  const last = state.lastSuccess;
  if (!last) {
    if (state.lastRun && !state.lastRun.ok) return [fail('backup', subject, `no backup yet; the last attempt failed ${hoursAgo(now.getTime() - Date.parse(state.lastRun.at))}: ${state.lastRun.error}`, 'fix the cause, then: fe backup run')];
    return [warn('backup', subject, `no backup yet (schedule "${config.backup.schedule}")`, 'fe backup run')];
  }
  const age = now.getTime() - Date.parse(last.at);
  const file = last.file ? path.basename(last.file) : 'backup';
  if (last.file && !existsSync(last.file)) out.push(fail('backup', subject, `the last good backup ${file} is gone`, 'fe backup run; fe backup list'));
  else if (age > period * 3 + 3_600_000) out.push(fail('backup', subject, `the last good backup is ${hoursAgo(age)} (${file})`, 'journalctl -u fe-backup; fe backup run'));
  else if (age > period + 3_600_000) out.push(warn('backup', subject, `the last good backup is ${hoursAgo(age)} (${file})`, 'journalctl -u fe-backup; fe backup run'));
  else out.push(ok('backup', subject, `last good backup ${hoursAgo(age)}: ${file}${last.busy?.length ? ` (left out, busy: ${last.busy.join(', ')})` : ''}`));
  if (state.lastRun && !state.lastRun.ok && Date.parse(state.lastRun.at) > Date.parse(last.at)) {
    out.push(warn('backup', subject, `the latest attempt failed ${hoursAgo(now.getTime() - Date.parse(state.lastRun.at))}: ${state.lastRun.error}`, 'fix the cause, then: fe backup run'));
  }
  return out;
}

/**
 * The outbound queue: how much waits and for how long. WARN once the oldest message has waited
 * longer than queue.delay_notice_after (its sender has been told); FAIL when handed-off mail is
 * not being picked up (the queue daemon is not running).
 */
function queueCheck(config: FeConfig, now: Date): CheckResult[] {
  const incoming = listIncoming(config.dataDir);
  const out: CheckResult[] = [];
  const oldestIncoming = incoming.length > 0 ? spoolIdTime(incoming[0]!) : null;
  if (oldestIncoming !== null && now.getTime() - oldestIncoming > 5 * 60_000) {
    out.push(fail('queue', 'queue', `${incoming.length} message(s) handed to the queue and not picked up; the oldest ${hoursAgo(now.getTime() - oldestIncoming)}`, 'systemctl status fe-queue; journalctl -u fe-queue'));
  }
  if (!QueueStore.exists(config.dataDir)) return out.length > 0 ? out : [ok('queue', 'queue', 'empty')];
  const store = QueueStore.open(config.dataDir);
  try {
    const s = store.stats();
    if (s.queued === 0) out.push(ok('queue', 'queue', 'empty'));
    else {
      const age = now.getTime() - (s.oldest ?? now.getTime());
      const detail = `${s.queued} message(s) waiting, ${s.deferred} recipient(s) deferred at least once; the oldest since ${hoursAgo(age)}`;
      out.push(age > config.queue.delayNoticeAfterSeconds * 1000 ? warn('queue', 'queue', detail, 'fe queue list (why), fe queue retry --all') : ok('queue', 'queue', detail));
    }
    if (!config.queue.tlsReports) out.push(ok('queue', 'tls-rpt', 'TLS reports are off (queue.tls_reports)'));
    else {
      const last = store.tlsResults.lastSent();
      out.push(ok('queue', 'tls-rpt', last ? `last TLS-RPT sent ${hoursAgo(now.getTime() - last.sentAt)}: ${last.domain}, ${new Date(last.day * 86400_000).toISOString().slice(0, 10)}, to ${last.detail}` : 'no TLS-RPT sent yet (reports go out after each UTC day to domains that publish _smtp._tls)'));
    }
  } finally {
    store.close();
  }
  return out;
}

/**
 * The OpenPGP keys of fe.yml as delivery sees them now (src/pgp): WARN when one no longer works
 * (its mail is stored without OpenPGP) or stops working within 14 days.
 */
async function openpgpKeys(config: FeConfig, now: Date): Promise<CheckResult[]> {
  if (config.keys.size === 0) return [];
  const { keyState } = await import('../pgp/key-state.js');
  const out: CheckResult[] = [];
  for (const k of config.keys.values()) {
    const s = await keyState(k.armored, now);
    const fix = `ask the owner for a renewed key, then fe key add ${k.address} KEY.asc`;
    if (!s.usable) out.push(warn('openpgp', k.address, `key ${s.fingerprint} is not used: ${s.reason}; its mail is stored WITHOUT OpenPGP (sealed as usual)`, fix));
    else if (s.expiresSoon && s.expires) out.push(warn('openpgp', k.address, `key ${s.fingerprint} expires on ${s.expires.toISOString().slice(0, 10)}; after that its mail is stored without OpenPGP`, fix));
    else out.push(ok('openpgp', k.address, `mail is encrypted to key ${s.fingerprint}${s.expires ? ` (expires ${s.expires.toISOString().slice(0, 10)})` : ''}`));
  }
  return out;
}

/** The arrival time a spool-style id starts with (milliseconds), or null. */
function spoolIdTime(id: string): number | null {
  const m = /^(\d{14})/.exec(id);
  return m ? Number(m[1]) : null;
}

export async function runStatus(ctx: StatusContext, groups: readonly CheckGroup[] = CHECK_GROUPS): Promise<CheckResult[]> {
  const now = ctx.now ?? new Date();
  const out: CheckResult[] = [];
  for (const g of groups) {
    switch (g) {
      case 'services':
        out.push(...(await services(ctx.config)));
        break;
      case 'ports':
        out.push(...ports(ctx.config));
        break;
      case 'firewall':
        out.push(...(await firewall(ctx.config)));
        break;
      case 'volume':
        out.push(...(await volume(ctx.config)));
        break;
      case 'swap':
        out.push(...swap());
        break;
      case 'usb-storage':
        out.push(...(await usbStorage()));
        break;
      case 'ssh':
        out.push(...(await ssh()));
        break;
      case 'updates':
        out.push(...updatesCheck(readAptView()));
        break;
      case 'dns':
        out.push(...(await dns(ctx)));
        break;
      case 'ptr':
        out.push(...(await ptr(ctx.config, ctx.resolver)));
        break;
      case 'outbound':
        out.push(...(await outbound(ctx)));
        break;
      case 'certificate':
        out.push(...certificate(ctx.config, now));
        break;
      case 'backup':
        out.push(...backup(ctx.config, now));
        break;
      case 'queue':
        out.push(...queueCheck(ctx.config, now));
        break;
      case 'openpgp':
        out.push(...(await openpgpKeys(ctx.config, now)));
        break;
      case 'protection':
        out.push(...(await protectionChecks(ctx.config, now)));
        break;
    }
  }
  return out;
}
