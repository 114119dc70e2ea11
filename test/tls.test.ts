// The self-signed certificate made at first start: several daemons starting at once on a new
// host must end up with one key and the certificate that belongs to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { ensureSelfSigned } from '../src/tls/self-signed.js';
import { ROOT } from './helpers/fe.js';

const run = promisify(execFile);
const MODULE = pathToFileURL(path.join(ROOT, 'dist', 'src', 'tls', 'self-signed.js')).href;

test('four processes making the self-signed pair at once agree on one matching key and certificate', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fe-tls-'));
  const script = `const m = await import(${JSON.stringify(MODULE)}); const t = await m.ensureSelfSigned(${JSON.stringify(dataDir)}, 'mail.example.org');
    const c = await import('node:crypto'); console.log(c.createHash('sha256').update(t.key).digest('hex') + ' ' + new c.X509Certificate(t.cert).fingerprint256 + ' ' + new c.X509Certificate(t.cert).checkPrivateKey(c.createPrivateKey(t.key)));`;
  const outs = await Promise.all([1, 2, 3, 4].map(() => run(process.execPath, ['--input-type=module', '-e', script])));
  const lines = outs.map((o) => o.stdout.trim());
  assert.equal(new Set(lines).size, 1, `every process got the same pair:\n${lines.join('\n')}`);
  assert.match(lines[0]!, / true$/, 'the key belongs to the certificate');
  const dir = path.join(dataDir, 'tls');
  assert.deepEqual(readdirSync(dir).sort(), ['self-signed.crt', 'self-signed.key'], 'no temp files left behind');
  assert.equal(statSync(path.join(dir, 'self-signed.key')).mode & 0o777, 0o600);
});

test('a key left without its certificate (a crash at first start) is replaced, not trusted', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fe-tls-'));
  const dir = path.join(dataDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stale = path.join(dir, 'self-signed.key');
  writeFileSync(stale, 'not a key', { mode: 0o600 });
  const old = new Date(Date.now() - 10 * 60_000);
  utimesSync(stale, old, old);
  const t = await ensureSelfSigned(dataDir, 'mail.example.org');
  assert.ok(new X509Certificate(t.cert).checkPrivateKey(createPrivateKey(t.key)));
  assert.notEqual(createHash('sha256').update(t.key).digest('hex'), createHash('sha256').update('not a key').digest('hex'));
});
