// fe-web (listen.http / listen.https) and certificate changes reaching running daemons:
// the MTA-STS policy a sending MTA fetches, HTTP-01 answers, and a new certificate on disk picked
// up by IMAPS, SMTP STARTTLS and HTTPS without a restart.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { parseConfig } from '../src/config/schema.js';
import { ensureConfig, type InitPlan } from '../src/provision/init.js';
import { generateIdentity } from '../src/backup/age.js';
import { renderTemplate } from '../src/cli/commands/config.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { createTestCa, presentedCertificate, type TestCa } from './helpers/test-ca.js';

const run = promisify(execFile);

let fe: Daemon;
let w: ReturnType<typeof workspace>;
let ca: TestCa;

before(async () => {
  ca = createTestCa();
  w = workspace('hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\n  submission: off\n  submissions: off\n  imaps: 127.0.0.1:0\n  pop3s: off\n  http: 127.0.0.1:0\n  https: 127.0.0.1:0\nacme:\n  directory: off\n');
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['domain', 'add', 'example.net']);
  fe = await startServe(w.config, [], {}, ['mx', 'imaps', 'http', 'https']);
});

after(async () => {
  await fe?.stop();
});

function get(opts: { secure: boolean; host: string; path: string; method?: string; servername?: string }): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders; cert: X509Certificate | null }> {
  const port = opts.secure ? fe.ports.https! : fe.ports.http!;
  return new Promise((resolve, reject) => {
    const req = (opts.secure ? https : http).request(
      { host: '127.0.0.1', port, path: opts.path, method: opts.method ?? 'GET', headers: { host: opts.host }, agent: false, ...(opts.secure ? { servername: opts.servername ?? opts.host, rejectUnauthorized: false } : {}) },
      (res) => {
        // The socket goes back to the agent when the body ends: take the certificate now.
        const peer = opts.secure ? (res.socket as tls.TLSSocket).getPeerX509Certificate() ?? null : null;
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers, cert: peer }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('https: the MTA-STS policy of each domain, the one whose id `fe domain dns` publishes', async () => {
  for (const domain of ['example.org', 'example.net']) {
    const r = await get({ secure: true, host: `mta-sts.${domain}`, path: '/.well-known/mta-sts.txt' });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    assert.equal(r.body, 'version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\nmax_age: 604800\r\n');
    const zone = JSON.parse(await w.ok(['domain', 'dns', domain, '--json'])) as { records: { name: string; type: string; value: string }[]; mtaStsPolicy: string };
    assert.equal(zone.mtaStsPolicy, r.body, 'what is served is what the DNS id was computed from');
  }
  // Other names, other paths, other methods: nothing.
  assert.equal((await get({ secure: true, host: 'mta-sts.example.com', path: '/.well-known/mta-sts.txt' })).status, 404);
  assert.equal((await get({ secure: true, host: 'mta-sts.example.org', path: '/' })).status, 404);
  assert.equal((await get({ secure: true, host: 'mta-sts.example.org', path: '/.well-known/mta-sts.txt', method: 'POST' })).status, 405);
});

test('https: a policy change in fe.yml is served after SIGHUP', async () => {
  w.write(w.read().replace('acme:', 'mta_sts:\n  mode: enforce\nacme:'));
  fe.signal('SIGHUP');
  await fe.waitForLog(/configuration reloaded/);
  const r = await get({ secure: true, host: 'mta-sts.example.org', path: '/.well-known/mta-sts.txt' });
  assert.match(r.body, /^mode: enforce\r$/m);
  w.write(w.read().replace('mta_sts:\n  mode: enforce\n', ''));
  fe.signal('SIGHUP');
});

test('http: ACME challenge answers come from DATA/acme/challenges; names of ours go to https', async () => {
  const dir = path.join(w.dataDir, 'acme', 'challenges');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'tok_EN-123'), 'tok_EN-123.thumbprint');
  const hit = await get({ secure: false, host: 'mail.example.org', path: '/.well-known/acme-challenge/tok_EN-123' });
  assert.equal(hit.status, 200);
  assert.equal(hit.body, 'tok_EN-123.thumbprint');
  assert.equal((await get({ secure: false, host: 'mail.example.org', path: '/.well-known/acme-challenge/unknown' })).status, 404);
  // Nothing outside the challenge folder is reachable, however the token is spelled.
  writeFileSync(path.join(w.dataDir, 'acme', 'secret'), 'secret-content');
  for (const p of ['/.well-known/acme-challenge/../secret', '/.well-known/acme-challenge/..%2fsecret', '/.well-known/acme-challenge/%2e%2e%2fsecret']) {
    const r = await get({ secure: false, host: 'mail.example.org', path: p });
    assert.notEqual(r.status, 200, p);
    assert.ok(!r.body.includes('secret-content'), p);
  }
  const redirect = await get({ secure: false, host: 'mta-sts.example.org', path: '/.well-known/mta-sts.txt' });
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.location, 'https://mta-sts.example.org/.well-known/mta-sts.txt');
  assert.equal((await get({ secure: false, host: 'elsewhere.example', path: '/' })).status, 404);
});

const imapsCert = () => presentedCertificate(fe.ports.imaps!, 'mail.example.org');

/** The certificate the MX offers after STARTTLS (openssl s_client, as a sending MTA would see it). */
async function smtpCert(): Promise<X509Certificate> {
  // stdin at end of file: s_client hangs up right after the handshake.
  const r = await run('sh', ['-c', `openssl s_client -connect 127.0.0.1:${fe.ports.mx} -starttls smtp -servername mail.example.org </dev/null`], { timeout: 20_000 }).catch((e: { stdout: string }) => e);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
  assert.ok(pem, `openssl s_client printed a certificate:\n${r.stdout}`);
  return new X509Certificate(pem);
}

test('a new certificate under DATA/tls reaches IMAPS, SMTP STARTTLS and HTTPS without a restart; a broken pair is ignored', async () => {
  const before = await imapsCert();
  assert.equal(before.issuer, before.subject, 'self-signed to begin with');
  assert.equal((await smtpCert()).fingerprint256, before.fingerprint256);

  // What the renewal writes: DATA/tls/acme.key, then DATA/tls/acme.crt. First a key that does not
  // match (a renewal caught half way): the daemons keep what they have.
  const tlsDir = path.join(w.dataDir, 'tls');
  const first = ca.issue(['mail.example.org', 'mta-sts.example.org', 'mta-sts.example.net']);
  const other = ca.issue(['mail.example.org']);
  writeFileSync(path.join(tlsDir, 'acme.key'), other.key, { mode: 0o600 });
  writeFileSync(path.join(tlsDir, 'acme.crt'), first.cert);
  fe.signal('SIGHUP');
  await fe.waitForLog(/new certificate not usable yet/);
  assert.equal((await imapsCert()).fingerprint256, before.fingerprint256);

  writeFileSync(path.join(tlsDir, 'acme.key'), first.key, { mode: 0o600 });
  fe.signal('SIGHUP');
  await fe.waitForLog(/certificate loaded/);
  const want = new X509Certificate(first.cert).fingerprint256;
  assert.equal((await imapsCert()).fingerprint256, want, 'IMAPS');
  assert.equal((await smtpCert()).fingerprint256, want, 'SMTP STARTTLS');
  const policy = await get({ secure: true, host: 'mta-sts.example.net', path: '/.well-known/mta-sts.txt' });
  assert.equal(policy.cert?.fingerprint256, want, 'HTTPS');

  // Verified as a sending MTA verifies an MTA-STS host: against the CA, by name.
  const verified = await new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: fe.ports.https!, path: '/.well-known/mta-sts.txt', servername: 'mta-sts.example.net', headers: { host: 'mta-sts.example.net' }, ca: readFileSync(ca.caFile) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
  assert.equal(verified, 200);

  const status = JSON.parse(await w.ok(['cert', 'status', '--json'])) as { source: string; names: string[] };
  assert.equal(status.source, 'acme');
  assert.deepEqual(status.names, ['mail.example.org', 'mta-sts.example.org', 'mta-sts.example.net']);
});

test('fe init writes listen.http and listen.https unless --no-web', () => {
  const w2 = workspace();
  const plan = { hostname: 'mail.example.org', dataDir: '/var/lib/fe', configFile: path.join(w2.dir, 'new.yml'), admin: '', web: true } as unknown as InitPlan;
  ensureConfig(plan, renderTemplate);
  const parsed = parseConfig(readFileSync(plan.configFile, 'utf8'), plan.configFile);
  assert.deepEqual(parsed.problems, []);
  assert.deepEqual(parsed.config!.listen.http, { host: '0.0.0.0', port: 80 });
  assert.deepEqual(parsed.config!.listen.https, { host: '0.0.0.0', port: 443 });
  const noWeb = { ...plan, configFile: path.join(w2.dir, 'noweb.yml'), web: false } as InitPlan;
  ensureConfig(noWeb, renderTemplate);
  assert.equal(parseConfig(readFileSync(noWeb.configFile, 'utf8'), noWeb.configFile).config!.listen.http, null);
  assert.deepEqual(parsed.config!.backup.recipients, [], 'no backup section unless fe init has a key for it');
});

test('fe init writes backup.recipients from the key it was given or made, and backup.to when not the default', () => {
  const w2 = workspace();
  const { recipient } = generateIdentity();
  const plan = { hostname: 'mail.example.org', dataDir: '/var/lib/fe', configFile: path.join(w2.dir, 'b.yml'), admin: '', web: false, backup: true, backupDir: '/var/backups/fe', backupRecipient: recipient } as unknown as InitPlan;
  ensureConfig(plan, renderTemplate);
  const text = readFileSync(plan.configFile, 'utf8');
  const parsed = parseConfig(text, plan.configFile);
  assert.deepEqual(parsed.problems, []);
  assert.deepEqual(parsed.config!.backup, { dir: '/var/backups/fe', recipients: [recipient], schedule: '30 3 * * *', keep: 14 });
  assert.ok(!/AGE-SECRET-KEY/.test(text), 'never the secret half');
  const elsewhere = { ...plan, configFile: path.join(w2.dir, 'c.yml'), backupDir: '/srv/fe-backups' } as InitPlan;
  ensureConfig(elsewhere, renderTemplate);
  assert.equal(parseConfig(readFileSync(elsewhere.configFile, 'utf8'), elsewhere.configFile).config!.backup.dir, '/srv/fe-backups');
});

test('acme.directory must be an https URL or off', () => {
  const bad = parseConfig('hostname: mail.example.org\nacme:\n  directory: http://ca.example/dir\n', 'fe.yml');
  assert.match(bad.problems.map((p) => p.message).join('\n'), /not an https:\/\/ URL of an ACME directory/);
  assert.equal(parseConfig('hostname: mail.example.org\nacme:\n  directory: off\n', 'fe.yml').config!.acme.directory, null);
});
