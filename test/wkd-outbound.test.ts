// encrypt_outbound: wkd. A sender's fe looks up each recipient's key in that domain's Web Key
// Directory (a second fe's fe-web, over HTTPS with a test CA, names from a loopback DNS server),
// encrypts when every recipient has one, signs after encrypting; gpg at the recipient decrypts
// what the peer MX received, and python3-dkim verifies it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { startPeerMx, type PeerMx, type Received } from './helpers/peer-mx.js';
import { pythonDkimVerify } from './helpers/python-dkim.js';
import { createTestCa } from './helpers/test-ca.js';

const run = promisify(execFile);
const PASSWORD = 'a long enough sender password';

let dns: DnsServer;
let peer: PeerMx;
let keyHost: Daemon; // the correspondents' fe: only fe-web, publishing their keys
let fe: Daemon; // the sender's fe
let dkimRecords: Record<string, string> = {};
const homes = new Map<string, string>(); // address -> gpg home holding its secret key

const gpg = (home: string, args: string[], input?: string) =>
  new Promise<string>((resolve, reject) => {
    const child = execFile('gpg', ['--homedir', home, '--batch', '--no-tty', ...args], { encoding: 'utf8', timeout: 30_000 }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout)));
    if (input !== undefined) child.stdin!.end(input);
  });

async function makeKey(address: string): Promise<string> {
  const home = mkdtempSync(path.join(tmpdir(), 'fe-gpg-'));
  homes.set(address, home);
  await gpg(home, ['--passphrase', '', '--quick-gen-key', `Someone <${address}>`, 'future-default', 'default', '1y']);
  return gpg(home, ['--armor', '--export', address]);
}

before(async () => {
  // gpg makes each key in a home of its own; all three at once.
  const armored = new Map(await Promise.all(['bob@peer.example', 'dora@direct.example', 'alice@example.org'].map(async (a) => [a, await makeKey(a)] as const)));
  const ca = createTestCa();
  peer = await startPeerMx(ca.issue(['mx.peer.example']));
  dns = await startDnsServer({
    // peer.example publishes on openpgpkey.peer.example (advanced method) ...
    'peer.example': { MX: [{ priority: 10, exchange: 'mx.peer.example' }] },
    'openpgpkey.peer.example': { A: ['127.0.0.1'] },
    // ... direct.example has no openpgpkey. name, so its keys are asked of the domain itself.
    'direct.example': { MX: [{ priority: 10, exchange: 'mx.peer.example' }], A: ['127.0.0.1'] },
    'nokey.example': { MX: [{ priority: 10, exchange: 'mx.peer.example' }], A: ['127.0.0.1'] },
    'mx.peer.example': { A: ['127.0.0.1'] },
  });

  // The correspondents' side: bob@peer.example and dora@direct.example publish keys; nokey.example
  // runs the same directory but has nobody in it.
  const k = workspace();
  const leaf = ca.issue(['mail.peer.example', 'openpgpkey.peer.example', 'direct.example', 'nokey.example']);
  writeFileSync(path.join(k.dir, 'web.crt'), leaf.cert);
  writeFileSync(path.join(k.dir, 'web.key'), leaf.key, { mode: 0o600 });
  k.write('hostname: mail.peer.example\ndata_dir: ./data\ntls:\n  cert: web.crt\n  key: web.key\nlisten:\n  mx: off\n  submission: off\n  submissions: off\n  imaps: off\n  pop3s: off\n  https: 127.0.0.1:0\n');
  for (const d of ['peer.example', 'direct.example', 'nokey.example']) await k.ok(['domain', 'add', d]);
  for (const a of ['bob@peer.example', 'dora@direct.example']) {
    await k.ok(['alias', 'add', a, '--forward', 'somewhere@else.example']);
    await k.ok(['key', 'add', a, '-'], { stdin: armored.get(a)! });
  }
  keyHost = await startServe(k.config, [], {}, ['https']);

  const w = workspace(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'loopback_plaintext_auth: true',
      'listen:',
      '  mx: 127.0.0.1:0',
      '  submission: 127.0.0.1:0',
      '  submissions: off',
      '  imaps: off',
      '  pop3s: off',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'outbound:',
      `  port: ${peer.port}`,
      `  wkd_port: ${keyHost.ports.https}`,
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'alice@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  await w.ok(['alias', 'add', 'carl@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  // A forward alias that opted in: its target has no key in this fe.yml, only in its WKD.
  await w.ok(['alias', 'add', 'fwd@example.org', '--forward', 'bob@peer.example']);
  w.write(w.read().replace('      fwd:\n', '      fwd:\n        encrypt: true\n'));
  assert.match(w.read(), /fwd:\n        encrypt: true\n/, 'the test edits fe.yml as intended');
  // alice has a key of her own too: what she sends is encrypted to it as well.
  await w.ok(['key', 'add', 'alice@example.org', '-'], { stdin: armored.get('alice@example.org')! });
  w.write(w.read().replace('      alice:\n        mailbox: true\n', '      alice:\n        mailbox: true\n        encrypt_outbound: wkd\n'));
  assert.match(w.read(), /encrypt_outbound: wkd/, 'the test edits fe.yml as intended');
  await w.ok(['config', 'check']);
  const ours = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: { name: string; type: string; text?: string }[] };
  dkimRecords = Object.fromEntries(ours.records.filter((r) => r.type === 'TXT' && r.name.includes('._domainkey.')).map((r) => [r.name, r.text!]));
  fe = await startServe(w.config, [], { FE_TEST_QUEUE_RETRY_MS: '300', NODE_EXTRA_CA_CERTS: ca.caFile }, ['submission', 'mx']);
});

after(async () => {
  await fe?.stop();
  await keyHost?.stop();
  await peer?.close();
  await dns?.close();
  for (const home of homes.values()) await run('gpgconf', ['--homedir', home, '--kill', 'all']).catch(() => undefined);
});

let sent = 0;
/** Sends as `from` to `to` through fe's submission port; resolves with what the peer MX got (one message per recipient domain). */
async function send(from: string, to: string[]): Promise<{ copies: string[]; marker: string }> {
  const marker = `wkd-test-${++sent}-${Date.now()}`;
  const before = peer.messages.length;
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.submission}`, '--hide-informational', '--auth', 'PLAIN', '--auth-user', from, '--auth-password', PASSWORD, '--from', from, '--to', to.join(','), '--header', `Subject: secret plans ${marker}`, '--body', `The body ${marker}.`], { timeout: 30_000 });
  assert.match(stdout, /<[-~] {1,2}250 2\.0\.0 Ok: queued/);
  const deadline = Date.now() + 20_000;
  let got: Received[] = [];
  const covered = () => new Set(got.flatMap((m) => m.to)).size === to.length;
  while (!covered() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    got = peer.messages.slice(before).filter((m) => m.from === from);
  }
  assert.ok(covered(), `the peer received it for every recipient within 20 s\n${fe.log()}`);
  return { copies: got.map((m) => m.raw.toString('latin1')), marker };
}

/** The armored part of a PGP/MIME message, decrypted in `address`'s gpg home. */
async function decrypt(text: string, address: string): Promise<string> {
  const armored = /-----BEGIN PGP MESSAGE-----[^]*?-----END PGP MESSAGE-----/.exec(text);
  assert.ok(armored, 'the message carries an OpenPGP message');
  return gpg(homes.get(address)!, ['--decrypt'], armored[0]);
}

test('every recipient publishes a key (advanced and direct WKD): PGP/MIME, readable by each recipient and the sender, DKIM valid', async () => {
  const { copies, marker } = await send('alice@example.org', ['bob@peer.example', 'dora@direct.example']);
  assert.equal(copies.length, 2, 'one copy per recipient domain');
  assert.equal(copies[0], copies[1], 'encrypted once, to every key; both domains get the same bytes');
  const text = copies[0]!;
  assert.match(text, /^Content-Type: multipart\/encrypted;[^]*?protocol="application\/pgp-encrypted"/im);
  assert.ok(!text.includes(`The body ${marker}`), 'the body does not leave in the clear');
  assert.ok(!text.includes(`secret plans ${marker}`), 'neither does the Subject (hidden by default, RFC 9788)');
  assert.match(text, /^Subject: \[\.\.\.\]\r$/m);
  for (const reader of ['bob@peer.example', 'dora@direct.example', 'alice@example.org']) {
    const inner = await decrypt(text, reader);
    assert.ok(inner.includes(`The body ${marker}`), `${reader} reads the body`);
    assert.ok(inner.includes(`secret plans ${marker}`), `${reader} sees the real Subject inside`);
  }
  const verdicts = await pythonDkimVerify(text, dkimRecords);
  assert.ok(verdicts.length >= 1 && verdicts.every(Boolean), `signed after encrypting, so DKIM verifies: ${JSON.stringify(verdicts)}`);
  assert.match(fe.log(), /encrypted to every recipient/);
});

test('one recipient without a key: the message goes as written, and the log says why', async () => {
  const { copies, marker } = await send('alice@example.org', ['bob@peer.example', 'nobody@nokey.example']);
  for (const text of copies) {
    assert.ok(text.includes(`The body ${marker}`), 'sent in the clear');
    assert.doesNotMatch(text, /multipart\/encrypted/i);
  }
  assert.match(fe.log(), /sent without OpenPGP: not every recipient publishes a key .*without=1 .*no key published at nokey\.example/);
});

test('a mailbox without encrypt_outbound sends as written, even to recipients with keys', async () => {
  const { copies, marker } = await send('carl@example.org', ['bob@peer.example']);
  assert.ok(copies[0]!.includes(`The body ${marker}`));
  assert.doesNotMatch(copies[0]!, /multipart\/encrypted/i);
});

test('a forward alias with encrypt: true encrypts to the key its target publishes in WKD', async () => {
  const before = peer.messages.length;
  const marker = `forwarded-${Date.now()}`;
  const { stdout } = await run('swaks', ['--server', `127.0.0.1:${fe.ports.mx}`, '--hide-informational', '--from', 'someone@sender.example', '--to', 'fwd@example.org', '--body', `The body ${marker}.`], { timeout: 30_000 });
  assert.match(stdout, /<- {1,2}250 /);
  const deadline = Date.now() + 20_000;
  while (!peer.messages.slice(before).some((m) => m.to.includes('bob@peer.example')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const got = peer.messages.slice(before).find((m) => m.to.includes('bob@peer.example'));
  assert.ok(got, `forwarded within 20 s\n${fe.log()}`);
  const text = got.raw.toString('latin1');
  assert.ok(!text.includes(`The body ${marker}`), 'not in the clear');
  assert.ok((await decrypt(text, 'bob@peer.example')).includes(`The body ${marker}`), 'bob decrypts it');
});

test('encrypt_outbound takes only wkd, and only on a mailbox', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'fwd@example.org', '--forward', 'x@else.example']);
  w.write(w.read().replace('      fwd:\n', '      fwd:\n        encrypt_outbound: wkd\n'));
  const notMailbox = await w.fe(['config', 'check']);
  assert.notEqual(notMailbox.code, 0);
  assert.match(notMailbox.stdout + notMailbox.stderr, /encrypt_outbound.*only a mailbox sends mail/);
  w.write(w.read().replace('encrypt_outbound: wkd', 'encrypt_outbound: always'));
  const badValue = await w.fe(['config', 'check']);
  assert.notEqual(badValue.code, 0);
  assert.match(badValue.stdout + badValue.stderr, /encrypt_outbound.*must be wkd/);
});
