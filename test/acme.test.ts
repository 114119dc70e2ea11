// The ACME client against Debian's pebble on loopback: issuance for two names, account reuse,
// challenge clean-up, failed validations, badNonce retries and the overall timeout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AcmeError, obtainCertificate, type AcmeChallengeStore, type AcmeOptions } from '../src/acme/client.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { pebbleMissing, startPebble as startPebbleServer, type Pebble } from './helpers/pebble.js';
import { createTestCa, type TestCa } from './helpers/test-ca.js';

const run = promisify(execFile);
const skip = pebbleMissing;
const NAMES = ['mail.fe-acme.test', 'mta-sts.fe-acme.test'];

/** The test's HTTP-01 responder: a Map that is also the challenge store. */
class MapStore implements AcmeChallengeStore {
  readonly tokens = new Map<string, string>();
  readonly published: string[] = [];
  async set(token: string, keyAuthorization: string): Promise<void> {
    this.tokens.set(token, keyAuthorization);
    this.published.push(token);
  }
  async remove(token: string): Promise<void> {
    this.tokens.delete(token);
  }
}

interface LogLine {
  level: 'info' | 'warn';
  msg: string;
  fields: Record<string, unknown>;
}

let work: string;
let ca: TestCa;
let caPem: Buffer;
let dns: DnsServer;
let responder: http.Server;
let httpPort: number;
let store: MapStore;
/** When set, the responder answers every challenge request with this status and no body. */
let responderFails: number | null = null;
const pebbles: Pebble[] = [];
let main: Pebble;
let nonceRejecting: Pebble;

async function startPebble(env: Record<string, string>): Promise<Pebble> {
  const p = await startPebbleServer({ ca, caPem: caPem.toString('utf8'), dnsServer: dns.address, httpPort, env });
  pebbles.push(p);
  return p;
}

function options(over: Partial<AcmeOptions> & { logs?: LogLine[] } = {}): AcmeOptions {
  const logs = over.logs ?? [];
  return {
    directoryUrl: main.directoryUrl,
    accountKeyFile: path.join(work, 'account.key'),
    email: 'postmaster@fe-acme.test',
    names: NAMES,
    challenges: store,
    ca: caPem,
    timeoutMs: 20_000,
    log: {
      info: (msg, fields = {}) => logs.push({ level: 'info', msg, fields }),
      warn: (msg, fields = {}) => logs.push({ level: 'warn', msg, fields }),
    },
    ...over,
  };
}

function accountUrl(logs: LogLine[]): { url: unknown; created: boolean } {
  const line = logs.find((l) => l.msg === 'acme account created' || l.msg === 'acme account reused');
  assert.ok(line, 'the client logs which account it used');
  return { url: line.fields['account'], created: line.msg === 'acme account created' };
}

before(async () => {
  if (skip) return;
  work = mkdtempSync(path.join(tmpdir(), 'fe-acme-test-'));
  ca = createTestCa();
  caPem = readFileSync(ca.caFile);

  dns = await startDnsServer({
    'mail.fe-acme.test': { A: ['127.0.0.1'] },
    'mta-sts.fe-acme.test': { A: ['127.0.0.1'] },
    'refused.fe-acme.test': { A: ['127.0.0.1'] },
  });
  store = new MapStore();
  responder = http.createServer((req, res) => {
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
    const value = m ? store.tokens.get(m[1]!) : undefined;
    if (responderFails !== null) return res.writeHead(responderFails).end();
    if (value === undefined) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(value);
  });
  await new Promise<void>((r) => responder.listen(0, '127.0.0.1', () => r()));
  httpPort = (responder.address() as net.AddressInfo).port;

  // Reusing valid authorizations always makes the account-reuse run deterministic (no challenges).
  // One after the other: two parallel port probes could pick the same free port.
  main = await startPebble({ PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '100' });
  nonceRejecting = await startPebble({ PEBBLE_WFE_NONCEREJECT: '50', PEBBLE_AUTHZREUSE: '0' });
});

after(async () => {
  await Promise.all(pebbles.map((p) => p.stop()));
  if (responder) await new Promise<void>((r) => responder.close(() => r()));
  if (dns) await dns.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a certificate for two names is issued, chains to pebble\'s root, and the account is reused', { skip }, async () => {
  const logs: LogLine[] = [];
  const keyFile = path.join(work, 'account.key');
  const issued = await obtainCertificate(options({ logs }));

  const pems = issued.certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  assert.ok(pems.length >= 2, 'leaf and intermediate');
  const leaf = new X509Certificate(pems[0]!);
  const root = await main.root();
  const leafFile = path.join(work, 'leaf.pem');
  const interFile = path.join(work, 'inter.pem');
  const rootFile = path.join(work, 'root.pem');
  writeFileSync(leafFile, pems[0]! + '\n');
  writeFileSync(interFile, pems.slice(1).join('\n') + '\n');
  writeFileSync(rootFile, root);
  const verify = await run('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', rootFile, '-untrusted', interFile, leafFile]);
  assert.match(verify.stdout, /: OK/);

  const sans = (leaf.subjectAltName ?? '').split(', ').map((s) => s.replace(/^DNS:/, '')).sort();
  assert.deepEqual(sans, [...NAMES].sort());
  assert.ok(leaf.checkPrivateKey(createPrivateKey(issued.keyPem)), 'the returned key matches the certificate');
  assert.match(issued.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  assert.equal(issued.notAfter.getTime(), new Date(leaf.validTo).getTime());
  assert.ok(issued.notAfter.getTime() > Date.now());
  assert.equal(statSync(keyFile).mode & 0o777, 0o600, 'account key is private');
  assert.ok(!JSON.stringify(logs).includes('PRIVATE KEY'), 'keys are never logged');
  assert.deepEqual(logs.filter((l) => l.level === 'warn'), [], 'no warnings: the certificate key reached openssl through a pipe, not a file');
  const first = accountUrl(logs);
  assert.equal(first.created, true);
  assert.equal(store.published.length, 2, 'one challenge per name');

  const keyBefore = readFileSync(keyFile, 'utf8');
  const logs2: LogLine[] = [];
  const publishedBefore = store.published.length;
  const again = await obtainCertificate(options({ logs: logs2 }));
  assert.equal(readFileSync(keyFile, 'utf8'), keyBefore, 'the account key file is reused, not rewritten');
  const second = accountUrl(logs2);
  assert.equal(second.created, false);
  assert.equal(second.url, first.url, 'same account');
  assert.equal(store.published.length, publishedBefore, 'pebble reused the valid authorizations, so nothing was published');
  assert.notEqual(again.keyPem, issued.keyPem, 'a fresh certificate key each time');
});

test('the challenge store is empty after issuance', { skip }, async () => {
  const before = store.published.length;
  await obtainCertificate(options({ names: ['mta-sts.fe-acme.test', 'refused.fe-acme.test'], accountKeyFile: path.join(work, 'account2.key') }));
  assert.equal(store.published.length - before, 2, 'a new account gets fresh challenges');
  assert.equal(store.tokens.size, 0, 'no tokens left');
});

test('a name without an A record fails with an AcmeError naming the problem', { skip }, async () => {
  const t0 = Date.now();
  await assert.rejects(obtainCertificate(options({ names: ['mail.fe-acme.test', 'nowhere.fe-acme.test'] })), (e: unknown) => {
    assert.ok(e instanceof AcmeError, String(e));
    assert.match(e.message, /^acme: validation of nowhere\.fe-acme\.test failed: urn:ietf:params:acme:error:connection: .*could not resolve/);
    assert.ok(e.type?.startsWith('urn:ietf:params:acme:error:'));
    return true;
  });
  assert.ok(Date.now() - t0 < 15_000);
  assert.equal(store.tokens.size, 0, 'the published token was removed');
});

test('a responder that answers 404 fails with the server\'s unauthorized problem', { skip }, async () => {
  responderFails = 404;
  try {
    await assert.rejects(obtainCertificate(options({ names: ['refused.fe-acme.test'], accountKeyFile: path.join(work, 'account3.key') })), (e: unknown) => {
      assert.ok(e instanceof AcmeError, String(e));
      assert.match(e.message, /refused\.fe-acme\.test failed: urn:ietf:params:acme:error:unauthorized: .*404/);
      assert.equal(e.type, 'urn:ietf:params:acme:error:unauthorized');
      return true;
    });
  } finally {
    responderFails = null;
  }
  assert.equal(store.tokens.size, 0);
});

test('server problems surface type, detail and status', { skip }, async () => {
  // Pebble refuses a contact that is no e-mail address; its problem document must reach the admin.
  await assert.rejects(obtainCertificate(options({ email: 'not an address', accountKeyFile: path.join(work, 'account4.key') })), (e: unknown) => {
    assert.ok(e instanceof AcmeError, String(e));
    assert.equal(e.message, 'acme: urn:ietf:params:acme:error:invalidContact: contact email "not an address" is invalid (HTTP 400, newAccount)');
    assert.equal(e.type, 'urn:ietf:params:acme:error:invalidContact');
    assert.equal(e.status, 400);
    return true;
  });
});

test('badNonce rejections are retried with the fresh nonce', { skip }, async () => {
  const logs: LogLine[] = [];
  const issued = await obtainCertificate(options({ directoryUrl: nonceRejecting.directoryUrl, accountKeyFile: path.join(work, 'account-nonce.key'), logs }));
  assert.ok(new X509Certificate(issued.certPem).checkPrivateKey(createPrivateKey(issued.keyPem)));
  const retries = logs.filter((l) => l.msg.includes('rejected the nonce')).length;
  assert.ok(retries > 0, 'pebble rejected at least one nonce and the client retried');
  assert.equal(store.tokens.size, 0);
});

test('the overall timeout bounds a server that never answers', { skip }, async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const t0 = Date.now();
    await assert.rejects(obtainCertificate(options({ directoryUrl: `https://127.0.0.1:${port}/dir`, timeoutMs: 500 })), (e: unknown) => {
      assert.ok(e instanceof AcmeError, String(e));
      assert.match(e.message, /^acme: timed out after 0\.5 s during GET https:\/\/127\.0\.0\.1:\d+\/dir$/);
      return true;
    });
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  }
});
