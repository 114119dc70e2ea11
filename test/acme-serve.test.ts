// The real `fe serve` getting its certificate from an ACME CA (Debian's pebble on loopback):
// fe-web answers HTTP-01 on its port, the certificate lands on disk, IMAPS presents it, a new
// domain whose mta-sts name is not in DNS yet does not cost the host its certificate, and
// `fe cert renew` (another process) orders through the running daemon's port 80.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { loadConfig } from '../src/config/file.js';
import { acmeState } from '../src/acme/renewal.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { freePort, pebbleMissing, startPebble, type Pebble } from './helpers/pebble.js';
import { createTestCa, presentedCertificate } from './helpers/test-ca.js';

const skip = pebbleMissing;
let dns: DnsServer;
let pebble: Pebble;
let fe: Daemon;
let w: ReturnType<typeof workspace>;

before(async () => {
  if (skip) return;
  const ca = createTestCa();
  const caPem = readFileSync(ca.caFile, 'utf8');
  const here = { A: ['127.0.0.1'] };
  dns = await startDnsServer({ 'mail.example.org': here, 'mta-sts.example.org': here, 'openpgpkey.example.org': here, 'autoconfig.example.org': here, 'autodiscover.example.org': here });
  // pebble connects to this port for HTTP-01; fe-web listens on it (port 80 on a real host).
  const httpPort = await freePort();
  pebble = await startPebble({ ca, caPem, dnsServer: dns.address, httpPort });
  w = workspace(`hostname: mail.example.org
data_dir: ./data
listen:
  mx: 127.0.0.1:0
  submission: off
  submissions: off
  imaps: 127.0.0.1:0
  pop3s: off
  http: 127.0.0.1:${httpPort}
  https: 127.0.0.1:0
acme:
  directory: ${pebble.directoryUrl}
  ca_file: ${ca.caFile}
`);
  await w.ok(['domain', 'add', 'example.org']);
  fe = await startServe(w.config, [], {}, ['mx', 'imaps', 'http', 'https']);
});

after(async () => {
  await fe?.stop();
  await pebble?.stop();
  await dns?.close();
});

const imapsCertificate = () => presentedCertificate(fe.ports.imaps!, 'mail.example.org');

const sans = (c: X509Certificate) => (c.subjectAltName ?? '').split(', ').map((n) => n.replace(/^DNS:/, '')).sort();

test('at start, fe-web gets a certificate for the host and the web names of each domain; IMAPS presents it', { skip }, async () => {
  await fe.waitForLog(/certificate issued/, 60_000);
  const cert = await imapsCertificate();
  assert.deepEqual(sans(cert), ['autoconfig.example.org', 'autodiscover.example.org', 'mail.example.org', 'mta-sts.example.org', 'openpgpkey.example.org']);
  assert.match(cert.issuer, /Pebble/, 'issued by the ACME CA, not self-signed');
  // The chain the daemon serves verifies up to the CA's root, as a client checks it.
  const root = await pebble.root();
  const verified = await new Promise<boolean>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: fe.ports.imaps!, servername: 'mail.example.org', ca: root }, () => {
      resolve(s.authorized);
      s.end();
    });
    s.on('error', reject);
  });
  assert.equal(verified, true);
  const files = path.join(w.dataDir, 'tls');
  assert.equal(statSync(path.join(files, 'acme.key')).mode & 0o777, 0o600);
  assert.equal(statSync(path.join(files, 'acme-account.key')).mode & 0o777, 0o600);
  assert.ok(!/PRIVATE KEY/.test(fe.log()), 'no key in the log');

  const status = JSON.parse(await w.ok(['cert', 'status', '--json'])) as { source: string; acme: { due: string | null } };
  assert.equal(status.source, 'acme');
  assert.equal(status.acme.due, null);
  assert.match(await w.ok(['cert', 'renew']), /nothing to do/);
});

test('a new domain whose mta-sts name is not in DNS yet: the order fails, the host keeps its certificate', { skip }, async () => {
  const before = await imapsCertificate();
  await w.ok(['domain', 'add', 'example.net']);
  fe.signal('SIGHUP');
  await fe.waitForLog(/certificate not obtained; the daemons keep the current one/, 60_000);
  assert.match(fe.log(), /mta-sts\.example\.net/, 'the log says which name failed');
  assert.equal((await imapsCertificate()).fingerprint256, before.fingerprint256);
  const status = JSON.parse(await w.ok(['cert', 'status', '--json'])) as { acme: { due: string | null } };
  assert.match(status.acme.due ?? '', /does not cover mta-sts\.example\.net/);
});

test('once the name resolves, `fe cert renew` orders through the running fe-web; the daemons pick it up', { skip }, async () => {
  for (const n of ['mta-sts', 'openpgpkey', 'autoconfig', 'autodiscover']) dns.set(`${n}.example.net`, { A: ['127.0.0.1'] });
  const out = await w.ok(['cert', 'renew']);
  assert.match(out, /issued for mail\.example\.org, mta-sts\.example\.org, mta-sts\.example\.net, openpgpkey\.example\.org/);
  // The daemon checks the files every minute; SIGHUP makes it look now.
  fe.signal('SIGHUP');
  await fe.waitForLog(/certificate loaded.*mta-sts\.example\.net/, 20_000);
  assert.deepEqual(sans(await imapsCertificate()), ['autoconfig.example.net', 'autoconfig.example.org', 'autodiscover.example.net', 'autodiscover.example.org', 'mail.example.org', 'mta-sts.example.net', 'mta-sts.example.org', 'openpgpkey.example.net', 'openpgpkey.example.org']);
  assert.deepEqual(readdirChallenges(), [], 'challenge answers are removed after use');
});

function readdirChallenges(): string[] {
  const dir = path.join(w.dataDir, 'acme', 'challenges');
  return existsSync(dir) ? readdirSync(dir) : [];
}

test('renewal is due 30 days before the end, not before', { skip }, async () => {
  const config = loadConfig(w.config);
  const current = acmeState(config);
  assert.equal(current.due, null);
  const end = current.notAfter!.getTime();
  assert.equal(acmeState(config, new Date(end - 31 * 86_400_000)).due, null);
  assert.match(acmeState(config, new Date(end - 29 * 86_400_000)).due ?? '', /^it expires in 29 days$/);
  assert.match(acmeState(config, new Date(end + 86_400_000)).due ?? '', /^it has expired$/);
});
