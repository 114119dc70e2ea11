// fe dev: a newcomer's first command works without root and can be run again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runFe } from './helpers/fe.js';

test('fe dev creates a working local state folder, and reuses it on the next run', async () => {
  const cwd = mkdtempSync(path.join(tmpdir(), 'fe-dev-'));
  const first = await runFe(['dev', '--no-start'], { cwd });
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /created \.fe-dev\/fe\.yml: domain fe\.test/);
  const password = /password for me@fe\.test: (\S+)/.exec(first.stdout)![1]!;
  const config = path.join(cwd, '.fe-dev', 'fe.yml');
  assert.equal(statSync(path.join(cwd, '.fe-dev')).mode & 0o777, 0o700);
  assert.equal(statSync(path.join(cwd, '.fe-dev', 'credentials.txt')).mode & 0o777, 0o600);
  assert.ok(readFileSync(path.join(cwd, '.fe-dev', 'credentials.txt'), 'utf8').includes(password));
  assert.equal(readFileSync(config, 'utf8').includes(password), false, 'no password in fe.yml');

  // The suggested commands work as printed.
  const check = await runFe(['config', 'check'], { cwd, env: { FE_CONFIG: config } });
  assert.equal(check.code, 0, check.stdout);
  const resolved = await runFe(['alias', 'resolve', 'me+news@fe.test'], { cwd, env: { FE_CONFIG: config } });
  assert.match(resolved.stdout, /-> me@fe\.test \(sub-address, tag "news"\): mailbox/);
  const shop = await runFe(['alias', 'resolve', 'shop@fe.test'], { cwd, env: { FE_CONFIG: config } });
  assert.match(shop.stdout, /forward to me@fe\.test/);

  const before = readFileSync(config, 'utf8');
  const second = await runFe(['dev', '--no-start'], { cwd });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /using \.fe-dev\/fe\.yml/);
  assert.doesNotMatch(second.stdout, /password for/, 'the password is shown only when created');
  assert.equal(readFileSync(config, 'utf8'), before);
});
