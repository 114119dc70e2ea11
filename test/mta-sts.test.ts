// MTA-STS when forwarding: policies fetched over verified HTTPS, "enforce" honoured, "testing" not.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import https from 'node:https';
import { promisify } from 'node:util';
import { mxMatches, parsePolicy } from '../src/smtp/mta-sts.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';
import { createTestCa } from './helpers/test-ca.js';

const run = promisify(execFile);

test('mx patterns match as RFC 8461 says: exact, or one leftmost label for "*."', () => {
  assert.ok(mxMatches('mx.example.net', 'MX.example.net.'));
  assert.ok(mxMatches('*.example.net', 'mx1.example.net'));
  assert.ok(!mxMatches('*.example.net', 'a.b.example.net'), 'the wildcard covers one label only');
  assert.ok(!mxMatches('*.example.net', 'example.net'));
  assert.ok(!mxMatches('mx.example.net', 'mx.example.net.evil.test'));
});

test('policy text is parsed strictly', () => {
  const ok = parsePolicy('version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\nmx: *.example.net\r\nmax_age: 86400\r\n', 'abc');
  assert.deepEqual(ok, { id: 'abc', mode: 'enforce', mx: ['mx1.example.net', '*.example.net'], maxAge: 86400 });
  assert.equal(parsePolicy('version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n', 'x'), null);
  assert.equal(parsePolicy('version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n', 'x'), null);
  assert.equal(parsePolicy('version: STSv1\nmode: enforce\nmax_age: 1\n', 'x'), null, 'enforce needs mx lines');
  assert.equal(parsePolicy('version: STSv1\nmode: enforce\nmx: a\nmax_age: 99999999999\n', 'x'), null);
  assert.deepEqual(parsePolicy('version: STSv1\nmode: none\nmax_age: 60\n', 'x')?.mode, 'none');
});

let dns: DnsServer;
let peer: PeerMx;
let policyServer: https.Server;
let fe: Daemon;
let mxPort: number;

const POLICIES: Record<string, string> = {
  'mta-sts.enforced.example': 'version: STSv1\nmode: enforce\nmx: mx.peer.example\nmax_age: 86400\n',
  'mta-sts.mismatch.example': 'version: STSv1\nmode: enforce\nmx: mx.elsewhere.example\nmax_age: 86400\n',
  'mta-sts.badcert.example': 'version: STSv1\nmode: enforce\nmx: *.badcert.example\nmax_age: 86400\n',
  'mta-sts.testing.example': 'version: STSv1\nmode: testing\nmx: *.testing.example\nmax_age: 86400\n',
};

before(async () => {
  const ca = createTestCa();
  // The peer MX's certificate is valid for mx.peer.example only.
  peer = await startPeerMx(ca.issue(['mx.peer.example']));
  const web = ca.issue(Object.keys(POLICIES));
  policyServer = https.createServer({ key: web.key, cert: web.cert }, (req, res) => {
    const policy = POLICIES[(req.headers.host ?? '').split(':')[0]!];
    if (!policy || req.url !== '/.well-known/mta-sts.txt') return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/plain' }).end(policy);
  });
  await new Promise<void>((r) => policyServer.listen(0, '127.0.0.1', () => r()));
  const httpsPort = (policyServer.address() as { port: number }).port;
  const zone: Parameters<typeof startDnsServer>[0] = { 'mx.peer.example': { A: ['127.0.0.1'] }, 'mx.badcert.example': { A: ['127.0.0.1'] }, 'mx.testing.example': { A: ['127.0.0.1'] } };
  for (const [domain, mx] of [['enforced.example', 'mx.peer.example'], ['mismatch.example', 'mx.peer.example'], ['badcert.example', 'mx.badcert.example'], ['testing.example', 'mx.testing.example']] as const) {
    zone[domain] = { MX: [{ priority: 10, exchange: mx }] };
    zone[`_mta-sts.${domain}`] = { TXT: ['v=STSv1; id=20261123'] };
    zone[`mta-sts.${domain}`] = { A: ['127.0.0.1'] };
  }
  dns = await startDnsServer(zone);
  const w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\ndns:\n  servers: ["${dns.address}"]\noutbound:\n  port: ${peer.port}\n  mta_sts_port: ${httpsPort}\n`);
  await w.ok(['domain', 'add', 'example.org']);
  for (const name of ['enforced', 'mismatch', 'badcert', 'testing']) await w.ok(['alias', 'add', `${name}@example.org`, '--forward', `user@${name}.example`]);
  fe = await startServe(w.config, ['--only', 'mx'], { NODE_EXTRA_CA_CERTS: ca.caFile });
  mxPort = fe.ports.mx!;
});

after(async () => {
  await fe?.stop();
  await peer?.close();
  await dns?.close();
  await new Promise((r) => policyServer?.close(r));
});

async function send(to: string): Promise<string> {
  try {
    return (await run('swaks', ['--server', `127.0.0.1:${mxPort}`, '--hide-informational', '--from', 'alice@sender.example', '--to', to], { timeout: 30_000 })).stdout;
  } catch (e) {
    return (e as { stdout: string }).stdout;
  }
}

test('enforce: delivered over TLS verified against the MX name', async () => {
  const before = peer.messages.length;
  assert.match(await send('enforced@example.org'), /<- +250 /);
  assert.equal(peer.messages.length, before + 1);
  assert.deepEqual(peer.messages.at(-1)!.to, ['user@enforced.example']);
  assert.ok(peer.messages.at(-1)!.secure);
});

test('enforce: an MX the policy does not name is not used; the sender is told to retry', async () => {
  const before = peer.messages.length;
  assert.match(await send('mismatch@example.org'), /<\*\* +451 4\.4\.0 Forwarding deferred \(no MX of mismatch\.example matches its MTA-STS policy\)/);
  assert.equal(peer.messages.length, before);
});

test('enforce: a certificate that does not match the MX name defers instead of falling back to plain TLS', async () => {
  const before = peer.messages.length;
  assert.match(await send('badcert@example.org'), /<\*\* +451 4\.4\.0 Forwarding deferred \(MTA-STS: .*(altnames|certificate|Hostname)/i);
  assert.equal(peer.messages.length, before);
});

test('testing: the same bad certificate is still used, as opportunistic TLS', async () => {
  const before = peer.messages.length;
  assert.match(await send('testing@example.org'), /<- +250 /);
  assert.equal(peer.messages.length, before + 1);
});
