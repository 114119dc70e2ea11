// DNSSEC on loopback for the DANE tests: zones signed here with BIND's dnssec-keygen and
// dnssec-signzone (bind9-utils), served by NSD, and Debian's unbound as the validating resolver
// fe asks, with the signed zone's key as its only trust anchor. Both daemons run in the
// foreground on high loopback ports with configs in a temp dir, and stop() ends them.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { lookupValidated } from '../../src/dns/dnssec.js';

export interface ZoneSpec {
  origin: string; // e.g. dane.example
  records: string[]; // zone file lines, relative to the origin ($ORIGIN is set)
  signed: boolean;
  /** Owner names (relative) whose TLSA data is changed after signing: their signatures no longer verify (bogus). */
  tamper?: string[];
}

export interface ValidatingDns {
  /** unbound's 'host:port', for fe.yml dns.servers. */
  address: string;
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const free = await new Promise<boolean>((resolve) => {
      const tcp = createServer();
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => {
        const udp = createSocket('udp4');
        udp.once('error', () => tcp.close(() => resolve(false)));
        udp.bind(port, '127.0.0.1', () => udp.close(() => tcp.close(() => resolve(true))));
      });
    });
    if (free) return port;
  }
}

interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<void>;
}

function run(cmd: string, args: string[]): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, output: () => out, exited };
}

async function stopProc(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(timer);
}

/** Polls until `name` A answers through host:port (validated when asked), or the daemon dies. */
async function ready(p: Proc, what: string, port: number, name: string, validated: boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  let dead = false;
  void p.exited.then(() => (dead = true));
  for (;;) {
    if (dead) throw new Error(`${what} exited:\n${p.output()}`);
    try {
      const r = await lookupValidated([{ host: '127.0.0.1', port }], name, 'A', 1000);
      if (r.records.length > 0 && (!validated || r.validated)) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${what} did not answer for ${name} in 30 s:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startValidatingDns(zones: ZoneSpec[]): Promise<ValidatingDns> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-dnssec-'));
  const anchors: string[] = [];
  const files: { origin: string; file: string }[] = [];
  for (const z of zones) {
    const text = [`$ORIGIN ${z.origin}.`, '$TTL 300', `@ IN SOA ns.${z.origin}. hostmaster.${z.origin}. 1 3600 600 86400 300`, `@ IN NS ns.${z.origin}.`, 'ns IN A 127.0.0.1', ...z.records, ''].join('\n');
    const zoneFile = path.join(dir, `${z.origin}.zone`);
    writeFileSync(zoneFile, text);
    if (!z.signed) {
      files.push({ origin: z.origin, file: zoneFile });
      continue;
    }
    // One ECDSA P-256 key signs everything (-z); its DNSKEY is unbound's trust anchor for the zone.
    const keyDir = path.join(dir, `keys-${z.origin}`);
    mkdirSync(keyDir);
    execFileSync('dnssec-keygen', ['-q', '-K', keyDir, '-a', 'ECDSAP256SHA256', '-f', 'KSK', z.origin], { stdio: ['ignore', 'ignore', 'pipe'] });
    const signed = path.join(dir, `${z.origin}.signed`);
    execFileSync('dnssec-signzone', ['-q', '-K', keyDir, '-d', keyDir, '-S', '-z', '-O', 'full', '-o', z.origin, '-f', signed, zoneFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (z.tamper) {
      // -O full writes one record per line: flip the last hex digit of each named TLSA record.
      const owners = new Set(z.tamper.map((t) => `${t}.${z.origin}.`));
      const lines = readFileSync(signed, 'utf8').split('\n').map((l) => {
        const f = l.split(/\s+/);
        if (!owners.has(f[0]!) || f[3] !== 'TLSA') return l;
        return l.replace(/([0-9A-Fa-f])\s*$/, (d) => (d.trim().toLowerCase() === '0' ? '1' : '0'));
      });
      writeFileSync(signed, lines.join('\n'));
    }
    const keyFile = readdirSync(keyDir).find((f) => f.endsWith('.key'))!;
    anchors.push(readFileSync(path.join(keyDir, keyFile), 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith(';')).join(' ').replace(/\s+/g, ' ').trim());
    files.push({ origin: z.origin, file: signed });
  }

  const nsdPort = await freePort();
  const nsdConf = path.join(dir, 'nsd.conf');
  writeFileSync(
    nsdConf,
    [
      'server:',
      '  ip-address: 127.0.0.1',
      `  port: ${nsdPort}`,
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      '  database: ""',
      `  zonelistfile: "${dir}/zone.list"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  xfrdir: "${dir}"`,
      `  pidfile: "${dir}/nsd.pid"`,
      '  server-count: 1',
      '  verbosity: 1',
      'remote-control:',
      '  control-enable: no',
      ...files.flatMap((f) => ['zone:', `  name: ${f.origin}`, `  zonefile: "${f.file}"`]),
      '',
    ].join('\n'),
  );
  const nsd = run('/usr/sbin/nsd', ['-d', '-c', nsdConf]);
  const unboundPort = await freePort();
  const unboundConf = path.join(dir, 'unbound.conf');
  writeFileSync(
    unboundConf,
    [
      'server:',
      '  interface: 127.0.0.1',
      `  port: ${unboundPort}`,
      '  do-daemonize: no',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      `  pidfile: "${dir}/unbound.pid"`,
      '  use-syslog: no',
      '  logfile: ""',
      '  verbosity: 1',
      '  val-log-level: 2', // says why an answer is bogus, for the failure output
      '  do-ip6: no',
      '  do-not-query-localhost: no', // the authoritative server is on loopback
      '  access-control: 127.0.0.0/8 allow',
      '  module-config: "validator iterator"',
      ...anchors.map((a) => `  trust-anchor: "${a}"`),
      // Nothing leaves the machine: every other name is refused.
      '  local-zone: "." refuse',
      ...zones.map((z) => `  local-zone: "${z.origin}." transparent`),
      ...zones.flatMap((z) => ['stub-zone:', `  name: "${z.origin}."`, `  stub-addr: 127.0.0.1@${nsdPort}`]),
      'remote-control:',
      '  control-enable: no',
      '',
    ].join('\n'),
  );
  const unbound = run('/usr/sbin/unbound', ['-d', '-c', unboundConf]);
  const stop = async () => {
    await stopProc(unbound);
    await stopProc(nsd);
  };
  try {
    await ready(nsd, 'nsd', nsdPort, `ns.${zones[0]!.origin}`, false);
    await ready(unbound, 'unbound', unboundPort, `ns.${zones[0]!.origin}`, zones[0]!.signed);
  } catch (e) {
    await stop();
    throw e;
  }
  return { address: `127.0.0.1:${unboundPort}`, log: () => `-- unbound\n${unbound.output()}\n-- nsd\n${nsd.output()}`, stop };
}
