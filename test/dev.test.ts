// fe dev: a newcomer's first command works without root and can be run again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer } from './helpers/dns-server.js';
import { FE_BIN, runFe } from './helpers/fe.js';

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

test('fe dev starts the MX and submission on loopback; mail sent as it suggests lands in the mailbox, the sender\'s copy in Sent', async () => {
  const cwd = mkdtempSync(path.join(tmpdir(), 'fe-dev-'));
  assert.equal((await runFe(['dev', '--no-start'], { cwd })).code, 0);
  const config = path.join(cwd, '.fe-dev', 'fe.yml');
  // Tests never query the internet: point the dev setup at a DNS server on loopback, and a free port.
  const dns = await startDnsServer({});
  writeFileSync(config, readFileSync(config, 'utf8').replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:0') + `dns:\n  servers: ["${dns.address}"]\n`);
  const child = spawn(process.execPath, [FE_BIN, 'dev'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    const deadline = Date.now() + 20_000;
    while (!/swaks --server (\S+) --from you@example\.net --to me@fe\.test\n/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const server = /swaks --server (\S+) --from you@example\.net --to me@fe\.test\n/.exec(out)?.[1];
    assert.ok(server, `fe dev printed a swaks line:\n${out}`);
    const { stdout } = await promisify(execFile)('swaks', ['--server', server, '--from', 'you@example.net', '--to', 'me@fe.test', '--hide-informational']);
    assert.match(stdout, /<- +250 /);
    const { stdout: viaShop } = await promisify(execFile)('swaks', ['--server', server, '--from', 'you@example.net', '--to', 'shop@fe.test', '--hide-informational']);
    assert.match(viaShop, /<- +250 /);
    const password = readFileSync(path.join(cwd, '.fe-dev', 'credentials.txt'), 'utf8').split('\n')[1]!.split(' ')[1]!;
    const status = await runFe(['mailbox', 'status', 'me@fe.test', '--password-stdin', '--json'], { cwd, env: { FE_CONFIG: config }, stdin: `${password}\n` });
    assert.equal((JSON.parse(status.stdout) as { imported: number }).imported, 2, 'both messages are in me@fe.test');
    // The printed POP3 one-liners read them too: plain POP3 with a password is allowed on loopback in fe dev only.
    const plain = /^ {2}(python3 -c .*poplib\.POP3\(.*)$/m.exec(out)?.[1];
    const secure = /^ {2}(python3 -c .*poplib\.POP3_SSL\(.*)$/m.exec(out)?.[1];
    assert.ok(plain && secure, `fe dev printed how to read with poplib:\n${out}`);
    for (const line of [plain, secure]) {
      const { stdout: read } = await promisify(execFile)('sh', ['-c', line], { cwd, timeout: 20_000 });
      assert.match(read, /^\(2, \d+\)$/m, line);
    }
    assert.match(out, /fetchmail .*--ssl/);
    assert.match(out, /Ctrl-C stops/);
    // and the IMAP line it prints works as printed (plain login is allowed from this machine in dev)
    const py = /python3 -c "(.*)"\n/.exec(out)?.[1];
    assert.ok(py, out);
    const { stdout: selected } = await promisify(execFile)('python3', ['-c', py], { cwd });
    assert.match(selected, /\('OK', \[b'2'\]\)/, 'INBOX holds the two messages');
    // Sending as printed: submission with a password in the clear is allowed on loopback in fe dev only.
    const send = /^ {2}(swaks --server \S+ --auth PLAIN .*)$/m.exec(out)?.[1];
    assert.ok(send, `fe dev printed how to send:\n${out}`);
    const { stdout: sent } = await promisify(execFile)('sh', ['-c', `${send} --header 'Subject: from fe dev' --hide-informational`], { cwd, timeout: 20_000 });
    assert.match(sent, /<[-~] +250 2\.0\.0 Ok: queued as/);
    const after = await runFe(['mailbox', 'status', 'me@fe.test', '--password-stdin', '--json'], { cwd, env: { FE_CONFIG: config }, stdin: `${password}\n` });
    const folders = (JSON.parse(after.stdout) as { folders: { name: string; messages: number }[] }).folders;
    assert.equal(folders.find((f) => f.name === 'Sent')?.messages, 1, `the sender's copy is in Sent: ${after.stdout}`);
    assert.equal(folders.find((f) => f.name === 'INBOX')?.messages, 3, 'and the message itself reached me@ through shop@');
  } finally {
    child.kill('SIGINT');
    await new Promise((r) => child.on('exit', r));
    await dns.close();
  }
});
