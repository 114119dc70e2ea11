// Debian's pebble (an ACME test CA, RFC 8555) on loopback. It validates HTTP-01 by connecting to
// the name's address (from the test's DNS server) on `httpPort`; its own HTTPS uses a certificate
// from the test CA, so clients trust it through that CA. Its root is made anew at each start.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestCa } from './test-ca.js';

export const PEBBLE_BIN = '/usr/bin/pebble';
export const pebbleMissing = existsSync(PEBBLE_BIN) ? false : `${PEBBLE_BIN} is missing (apt-get install pebble)`;

export interface Pebble {
  directoryUrl: string;
  /** PEM of the root that signs what this pebble issues (GET /roots/0 on the management port). */
  root(): Promise<string>;
  stop(): Promise<void>;
}

/** n distinct free loopback ports: all are held open together, so none is handed out twice. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

export interface PebbleOptions {
  ca: TestCa;
  caPem: string;
  dnsServer: string;
  httpPort: number;
  env?: Record<string, string>;
}

export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  // Another process may take a port between the probe and pebble's bind; then try fresh ones.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startPebbleOnce(opts);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test(String(e))) throw e;
    }
  }
}

async function startPebbleOnce(opts: PebbleOptions): Promise<Pebble> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-pebble-'));
  const [listen, mgmt, tlsPort] = (await freePorts(3)) as [number, number, number];
  const own = opts.ca.issue(['localhost']);
  writeFileSync(path.join(dir, 'server.crt'), own.cert);
  writeFileSync(path.join(dir, 'server.key'), own.key, { mode: 0o600 });
  const config = path.join(dir, 'pebble.json');
  writeFileSync(config, JSON.stringify({ pebble: { listenAddress: `127.0.0.1:${listen}`, managementListenAddress: `127.0.0.1:${mgmt}`, certificate: path.join(dir, 'server.crt'), privateKey: path.join(dir, 'server.key'), httpPort: opts.httpPort, tlsPort, ocspResponderURL: '', externalAccountBindingRequired: false } }));
  // No random sleeps before validation, no random nonce rejections (the client test covers those).
  const child = spawn(PEBBLE_BIN, ['-config', config, '-dnsserver', opts.dnsServer], { env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => rmSync(dir, { recursive: true, force: true }));
  // The certificate names "localhost": the URLs use that name.
  const directoryUrl = `https://localhost:${listen}/dir`;
  const pebble: Pebble = {
    directoryUrl,
    root: async () => (await get(`https://localhost:${mgmt}/roots/0`, opts.caPem)).body,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  const until = Date.now() + 15_000;
  for (;;) {
    try {
      if ((await get(directoryUrl, opts.caPem)).status === 200) return pebble;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > until) {
      await pebble.stop();
      throw new Error(`pebble did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
