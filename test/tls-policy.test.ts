// Every TLS port of one `fe serve` against testssl.sh (Debian's testssl) and openssl s_client:
// TLS 1.2 with forward-secret AEAD suites and TLS 1.3 only, the server's order, no client-initiated
// renegotiation, no finding above LOW.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';

const missing = spawnSync('testssl', ['--version'], { stdio: 'ignore' }).error ? 'testssl (Debian package testssl.sh) is not installed' : false;

// Port name in the serve log → how to reach TLS there (null: implicit TLS).
const PORTS: Record<string, 'smtp' | 'imap' | 'pop3' | null> = { mx: 'smtp', submission: 'smtp', submissions: null, imap: 'imap', imaps: null, pop3: 'pop3', pop3s: null, https: null };

// Findings about the certificate, not the TLS configuration: the test runs on the self-signed one
// fe makes at first start (a real host has an ACME or configured one).
const CERTIFICATE_ONLY = new Set([
  'cert_chain_of_trust', // self-signed: no chain to a trusted root
  'cert_revocation', // self-signed: no CRL or OCSP URI
  'cert_trust', // the test host name is not in public DNS
]);

let fe: Daemon;

before(async () => {
  if (missing) return;
  const ports = Object.keys(PORTS).map((p) => `  ${p}: 127.0.0.1:0`).join('\n');
  const w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n${ports}\n  http: off\nlimits:\n  connections_per_ip: 500\n  imap_connections_per_ip: 500\n  messages_per_ip_per_minute: 1000\n`);
  await w.ok(['domain', 'add', 'example.org']);
  fe = await startServe(w.config, [], {}, Object.keys(PORTS));
});

after(async () => {
  await fe?.stop();
});

interface Finding {
  id: string;
  severity: string;
  finding: string;
}

function testssl(port: number, starttls: string | null, out: string): Promise<Finding[]> {
  // -P tries every suite, one connection each: on STARTTLS ports (a greeting and a command
  // first, smtp-server's 100 ms greeting delay) that takes minutes on a loaded machine, so those
  // get protocols only. Suites and renegotiation on every port are also checked with s_client
  // below; all ports take their options from src/tls/policy.ts.
  const sections = starttls ? ['-p'] : ['-p', '-P'];
  const args = ['--quiet', '--color', '0', '--warnings', 'off', '--nodns', 'none', ...sections, '--jsonfile', out];
  if (starttls) args.push('-t', starttls);
  args.push(`127.0.0.1:${port}`);
  return new Promise((resolve, reject) => {
    execFile('testssl', args, { timeout: 290_000, maxBuffer: 16 << 20 }, (e) => {
      try {
        resolve(JSON.parse(readFileSync(out, 'utf8')) as Finding[]);
      } catch {
        reject(new Error(`testssl gave no JSON for port ${port}: ${(e as Error | null)?.message ?? ''}\nfe log:\n${fe.log().slice(-3000)}`));
      }
    });
  });
}

test('testssl.sh finds nothing above LOW on any TLS port, and only TLS 1.2 ECDHE+AEAD / TLS 1.3 in the server order', { skip: missing, timeout: 330_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-testssl-'));
  const results = await Promise.all(Object.entries(PORTS).map(async ([name, starttls]) => ({ name, findings: await testssl(fe.ports[name]!, starttls, path.join(dir, `${name}.json`)) })));
  const problems: string[] = [];
  for (const { name, findings } of results) {
    const byId = new Map(findings.map((f) => [f.id, f]));
    const expect = (id: string, pattern: RegExp) => {
      const f = byId.get(id);
      if (!f || !pattern.test(f.finding)) problems.push(`${name}: ${id} is ${f ? JSON.stringify(f.finding) : 'missing'}, want ${pattern}`);
    };
    for (const f of findings) {
      if (['MEDIUM', 'HIGH', 'CRITICAL', 'FATAL'].includes(f.severity) && !CERTIFICATE_ONLY.has(f.id)) problems.push(`${name}: ${f.severity} ${f.id}: ${f.finding}`);
    }
    // The scan really ran, and said what the policy promises.
    for (const p of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) expect(p, /^not offered/);
    expect('TLS1_2', /^offered/);
    expect('TLS1_3', /^offered/);
    if (PORTS[name]) continue; // no -P there (see testssl())
    expect('cipher_order', /^server/);
    // Every TLS 1.2 suite the server accepts (-P tries them all): ECDHE with AES-GCM or ChaCha20 only, no CBC.
    const tls12 = byId.get('cipherorder_TLSv1_2')?.finding.split(/\s+/).filter(Boolean) ?? [];
    if (tls12.length === 0 || tls12.some((c) => !/^ECDHE-(RSA|ECDSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/.test(c))) problems.push(`${name}: TLS 1.2 suites ${JSON.stringify(tls12)}`);
  }
  assert.deepEqual(problems, []);
});

/** Runs s_client with `input` lines fed after the handshake; resolves with exit code and output. */
function sClient(args: string[], input: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let i = 0;
    // One line a second; stdin stays open until the end, since s_client quits at EOF.
    const timer = setInterval(() => {
      if (i < input.length) child.stdin.write(input[i++]!);
      else child.stdin.end();
    }, 1000);
    const kill = setTimeout(() => child.kill(), 20_000);
    child.on('close', (code) => {
      clearInterval(timer);
      clearTimeout(kill);
      resolve({ code, out });
    });
  });
}

test('openssl s_client: a CBC suite without forward secrecy is refused on every TLS port', { skip: missing }, async () => {
  await Promise.all(
    Object.entries(PORTS).map(async ([name, starttls]) => {
      const r = await sClient(['-connect', `127.0.0.1:${fe.ports[name]}`, '-tls1_2', '-cipher', 'AES128-SHA', ...(starttls ? ['-starttls', starttls] : [])], []);
      assert.notEqual(r.code, 0, `${name}: AES128-SHA handshake succeeded:\n${r.out}`);
      assert.match(r.out, /handshake failure|no shared cipher|alert/i, name);
    }),
  );
});

test('openssl s_client: renegotiation (R) is refused and the session does not go on with it', { skip: missing }, async () => {
  const cases: [string, 'smtp' | 'imap' | 'pop3' | null, string][] = [
    ['mx', 'smtp', 'NOOP\r\n'],
    ['submission', 'smtp', 'NOOP\r\n'],
    ['submissions', null, 'NOOP\r\n'],
    ['https', null, '\r\n'],
    ['imaps', null, 'a1 NOOP\r\n'],
    ['imap', 'imap', 'a1 NOOP\r\n'],
    ['pop3s', null, 'NOOP\r\n'],
    ['pop3', 'pop3', 'NOOP\r\n'],
  ];
  await Promise.all(
    cases.map(async ([name, starttls, after]) => {
      const r = await sClient(['-connect', `127.0.0.1:${fe.ports[name]}`, '-tls1_2', ...(starttls ? ['-starttls', starttls] : [])], ['', 'R\n', after]);
      assert.match(r.out, /RENEGOTIATING/, `${name}: s_client tried`);
      assert.match(r.out, /no renegotiation/, `${name}: the server refused:\n${r.out.slice(-600)}`);
    }),
  );
});
