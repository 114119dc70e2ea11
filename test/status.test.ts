// fe status against real things on loopback: DNS answers from a loopback DNS server, an MX
// (smtp-server) for the outgoing port 25 check, certificates made by openssl. Host checks
// (firewall, LUKS, swap, sshd, units) run for real in the VM test.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { loadConfig } from '../src/config/file.js';
import { createResolver } from '../src/dns/resolver.js';
import { ptr, runStatus, updatesCheck, type CheckResult } from '../src/provision/status.js';
import { handOff, queuePublicKey } from '../src/queue/handoff.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { workspace } from './helpers/fe.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';
import { createTestCa } from './helpers/test-ca.js';

let dns: DnsServer;
let peer: PeerMx;
let w: ReturnType<typeof workspace>;
interface Rec {
  name: string;
  type: string;
  text?: string;
  value: string;
  purpose: string;
}
let records: Rec[];

const host = (name: string) => name.replace(/\.$/, '');

before(async () => {
  dns = await startDnsServer({});
  peer = await startPeerMx();
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  records = (JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: Rec[] }).records;
  // publish MX, SPF and the DKIM key with a wrong p=; DMARC and the rest are missing
  dns.set('example.org', { MX: [{ priority: 10, exchange: 'mail.example.org' }], TXT: ['v=spf1 mx -all'] });
  const dkim = records.find((r) => r.purpose.startsWith('DKIM'))!;
  dns.set(host(dkim.name), { TXT: [dkim.text!.replace(/p=.{10}/, 'p=AAAAAAAAAA')] });
});

after(async () => {
  await dns?.close();
  await peer?.close();
});

async function status(args: string[]): Promise<{ code: number; results: CheckResult[] }> {
  const r = await w.fe(['status', '--json', ...args]);
  return { code: r.code, results: JSON.parse(r.stdout) as CheckResult[] };
}

const level = (results: CheckResult[], subject: string) => results.find((r) => r.subject === subject)?.level;

test('DNS: what is published is compared with what fe domain dns prints; essentials FAIL, extras WARN, with the record to publish', async () => {
  const dkim = records.find((r) => r.purpose.startsWith('DKIM'))!;
  const first = await status(['--checks', 'dns']);
  assert.equal(first.code, 1, 'a FAIL gives exit status 1');
  assert.equal(level(first.results, 'MX example.org'), 'OK');
  assert.equal(level(first.results, 'TXT example.org'), 'OK', 'SPF');
  const dkimResult = first.results.find((r) => r.subject === `TXT ${host(dkim.name)}`)!;
  assert.equal(dkimResult.level, 'FAIL');
  assert.match(dkimResult.detail, /^differs: v=DKIM1; k=rsa; p=AAAAAAAAAA/);
  assert.ok(dkimResult.fix!.includes(dkim.value), 'the fix is the exact record to publish');
  const dmarc = first.results.find((r) => r.subject === 'TXT _dmarc.example.org')!;
  assert.equal(dmarc.level, 'FAIL');
  assert.match(dmarc.detail, /^missing \(DMARC\)/);
  assert.equal(level(first.results, 'TXT _smtp._tls.example.org'), 'WARN', 'TLS-RPT is nice to have');
  assert.equal(level(first.results, 'CNAME autoconfig.example.org'), 'WARN');

  // publish the rest: essentials OK, exit status 0
  dns.set(host(dkim.name), { TXT: [dkim.text!] });
  for (const r of records.filter((x) => x.type === 'TXT' && !['example.org.', dkim.name].includes(x.name))) dns.set(host(r.name), { TXT: [r.text!] });
  for (const r of records.filter((x) => x.type === 'CNAME')) dns.set(host(r.name), { CNAME: host(r.value) });
  const second = await status(['--checks', 'dns']);
  const bad = second.results.filter((r) => r.level !== 'OK');
  assert.ok(bad.every((r) => r.subject.startsWith('SRV ')), `only SRV (which this DNS server cannot serve) is left: ${JSON.stringify(bad)}`);
  assert.equal(second.code, 0);

  // a resolver that answers nothing: one WARN for the domain, not one per record
  const dead = workspace(`hostname: mail.example.org\ndata_dir: ./data\ndns:\n  servers: ["127.0.0.1:9"]\n`);
  await dead.ok(['domain', 'add', 'example.org']);
  const r = await dead.fe(['status', '--json', '--checks', 'dns']);
  const results = JSON.parse(r.stdout) as CheckResult[];
  assert.equal(results.length, 1);
  assert.match(results[0]!.detail, /lookups fail .*records not checked/);
});

test('outbound port 25: an MX that greets is OK; a refused connection FAILs with the provider hint', async () => {
  const good = await status(['--checks', 'outbound', '--probe-mx', `127.0.0.1:${peer.port}`]);
  assert.equal(good.results[0]!.level, 'OK');
  assert.match(good.results[0]!.detail, /answers 220/);
  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
  const bad = await status(['--checks', 'outbound', '--probe-mx', `127.0.0.1:${closed}`]);
  assert.equal(bad.code, 1);
  assert.equal(bad.results[0]!.level, 'FAIL');
  assert.match(bad.results[0]!.fix!, /provider may block outgoing port 25/);
});

test('certificate: self-signed WARNs, close to expiry WARNs, expired or for another name FAILs', async () => {
  const tlsDir = path.join(w.dataDir, 'tls');
  mkdirSync(tlsDir, { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(tlsDir, 'self-signed.key'), '-out', path.join(tlsDir, 'self-signed.crt'), '-days', '90', '-subj', '/CN=mail.example.org', '-addext', 'subjectAltName=DNS:mail.example.org'], { stdio: 'ignore' });
  const self = await status(['--checks', 'certificate']);
  assert.equal(self.results[0]!.level, 'WARN');
  assert.match(self.results[0]!.detail, /self-signed, (89|90) days left/);

  const ca = createTestCa();
  const issue = (names: string[], file: string) => {
    const { key, cert } = ca.issue(names);
    writeFileSync(path.join(w.dir, `${file}.key`), key);
    writeFileSync(path.join(w.dir, `${file}.crt`), cert);
  };
  issue(['mail.example.org'], 'real');
  issue(['other.example.net'], 'other');
  const base = `hostname: mail.example.org\ndata_dir: ./data\ndns:\n  servers: ["${dns.address}"]\n`;
  w.write(`${base}tls:\n  cert: ./real.crt\n  key: ./real.key\n`);
  const soon = await status(['--checks', 'certificate']);
  assert.equal(soon.results[0]!.level, 'WARN');
  assert.match(soon.results[0]!.detail, /expires in [01] days/);
  const config = loadConfig(w.config);
  const later = await runStatus({ config, resolver: createResolver({ servers: [dns.address] }), dnsFor: () => ({ records: [], mtaStsPolicy: '', mtaStsPolicyUrl: '' }), probeMx: null, now: new Date(Date.now() + 10 * 86_400_000) }, ['certificate']);
  assert.equal(later[0]!.level, 'FAIL');
  assert.match(later[0]!.detail, /expired/);
  w.write(`${base}tls:\n  cert: ./other.crt\n  key: ./other.key\n`);
  const wrong = await status(['--checks', 'certificate']);
  assert.equal(wrong.results[0]!.level, 'FAIL');
  assert.match(wrong.results[0]!.detail, /does not name mail\.example\.org/);
  w.write(base);
});

test('PTR: forward-confirmed reverse DNS passes; a PTR elsewhere or a host name pointing elsewhere fails', async () => {
  const config = loadConfig(w.config);
  const resolver = createResolver({ servers: [dns.address] });
  dns.set('10.2.0.192.in-addr.arpa', { PTR: ['mail.example.org'] });
  dns.set('mail.example.org', { A: ['192.0.2.10'] });
  const good = await ptr(config, resolver, ['192.0.2.10']);
  assert.equal(good[0]!.level, 'OK');
  dns.set('mail.example.org', { A: ['192.0.2.99'] });
  const forward = await ptr(config, resolver, ['192.0.2.10']);
  assert.equal(forward[0]!.level, 'FAIL');
  assert.match(forward[0]!.fix!, /publish mail\.example\.org A 192\.0\.2\.10/);
  dns.set('10.2.0.192.in-addr.arpa', { PTR: ['vps-1234.provider.example'] });
  const reverse = await ptr(config, resolver, ['192.0.2.10']);
  assert.equal(reverse[0]!.level, 'FAIL');
  assert.match(reverse[0]!.detail, /PTR is vps-1234\.provider\.example, not mail\.example\.org/);
  const none = await ptr(config, resolver, []);
  assert.equal(none[0]!.level, 'WARN');
});

test('fe status prints one line per check with the fix under it, and --checks rejects unknown names', async () => {
  const r = await w.fe(['status', '--checks', 'swap,backup']);
  assert.match(r.stdout, /^(OK|FAIL) +swap +swap: /m);
  assert.match(r.stdout, /^WARN +backup +backup: backups are off \(backup.recipients is empty\)\n +fix: fe backup key/m);
  assert.match(r.stdout, /\n2 checks: /);
  // The queue: empty before anything was sent; handed-off mail nobody picks up is a FAIL with the fix.
  assert.match((await w.fe(['status', '--checks', 'queue'])).stdout, /^OK +queue +queue: empty$/m);
  const stale = handOff(w.dataDir, queuePublicKey(w.dataDir), { from: 'me@example.org', recipients: [{ address: 'x@remote.example' }], owner: null, submittedAt: new Date() }, Buffer.from('Subject: x\r\n\r\nx\r\n'));
  const old = path.join(w.dataDir, 'queue', 'incoming', `${stale}.sealed`);
  const renamed = path.join(path.dirname(old), `${String(Date.now() - 3_600_000).padStart(14, '0')}${stale.slice(14)}.sealed`);
  renameSync(old, renamed);
  const q = await w.fe(['status', '--checks', 'queue']);
  assert.equal(q.code, 1);
  assert.match(q.stdout, /^FAIL +queue +queue: 1 message\(s\) handed to the queue and not picked up; the oldest 1 h ago\n +fix: systemctl status fe-queue/m);
  const bad = await w.fe(['status', '--checks', 'swap,nonsense']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown check nonsense/);
});

test('updates: a CODENAME-security apt source is OK (one-line or deb822); none, a commented one or a disabled stanza FAILs with the fix', () => {
  const debian = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n';
  const ubuntu = 'ID=ubuntu\nVERSION_CODENAME=noble\n';
  const mirrorOnly = { file: '/etc/apt/sources.list', text: 'deb http://mirror.invalid/debian bookworm main\n' };
  const one = (osRelease: string, sources: { file: string; text: string }[]) => {
    const r = updatesCheck({ osRelease, sources });
    assert.equal(r.length, 1);
    return r[0]!;
  };
  const none = one(debian, [mirrorOnly]);
  assert.equal(none.level, 'FAIL');
  assert.match(none.detail, /no bookworm-security source/);
  assert.match(none.fix ?? '', /bookworm-security .*debian-security.*sources\.list\.d/);
  assert.equal(one(debian, [mirrorOnly, { file: '/etc/apt/sources.list.d/s.list', text: '# deb http://mirror.invalid/debian-security bookworm-security main\n' }]).level, 'FAIL');
  assert.equal(one(debian, [mirrorOnly, { file: '/etc/apt/sources.list.d/s.list', text: 'deb [signed-by=/k.gpg] http://mirror.invalid/debian-security bookworm-security main\n' }]).level, 'OK');
  const stanza = 'Types: deb\nURIs: http://mirror.invalid/ubuntu\nSuites: noble noble-updates noble-security\nComponents: main\n';
  assert.equal(one(ubuntu, [{ file: '/etc/apt/sources.list.d/ubuntu.sources', text: stanza }]).level, 'OK');
  assert.equal(one(ubuntu, [{ file: '/etc/apt/sources.list.d/ubuntu.sources', text: `${stanza}Enabled: no\n` }]).level, 'FAIL');
  // Another release's security suite does not count.
  assert.equal(one(ubuntu, [{ file: '/etc/apt/sources.list.d/ubuntu.sources', text: stanza.replace(/noble/g, 'jammy') }]).level, 'FAIL');
  assert.equal(one('ID=alpine\n', []).level, 'WARN');
});
