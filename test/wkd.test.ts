// WKD on fe-web: GnuPG's own tools find the key `fe key add` stored, over HTTPS on loopback with
// a test CA. gpg makes the key, gpg-wks-client says where to look, curl fetches, a fresh gpg
// home imports; `fe key` changes show after SIGHUP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseConfig } from '../src/config/schema.js';
import { wantedNames } from '../src/acme/renewal.js';
import { wkdHash, zBase32 } from '../src/pgp/wkd-hash.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { FE_BIN, workspace } from './helpers/fe.js';
import { createTestCa, type TestCa } from './helpers/test-ca.js';

const run = promisify(execFile);
const WKS_CLIENT = ['/usr/lib/gnupg/gpg-wks-client', '/usr/libexec/gpg-wks-client'].find((p) => existsSync(p))!;

let fe: Daemon;
let w: ReturnType<typeof workspace>;
let ca: TestCa;
let owner: string; // the key owner's gpg home
let fingerprint: string;
let armoredKey: string;
const homes: string[] = [];

function gpgHome(): string {
  const home = mkdtempSync(path.join(tmpdir(), 'fe-gpg-'));
  homes.push(home);
  return home;
}

const gpg = (home: string, args: string[]) => run('gpg', ['--homedir', home, '--batch', '--no-tty', ...args], { encoding: 'utf8', timeout: 30_000 });

before(async () => {
  ca = createTestCa();
  w = workspace();
  const names = ['mail.example.org', 'example.org', 'openpgpkey.example.org', 'openpgpkey.example.net', 'openpgpkey.example.com'];
  const leaf = ca.issue(names);
  writeFileSync(path.join(w.dir, 'web.crt'), leaf.cert);
  writeFileSync(path.join(w.dir, 'web.key'), leaf.key, { mode: 0o600 });
  w.write('hostname: mail.example.org\ndata_dir: ./data\ntls:\n  cert: web.crt\n  key: web.key\nlisten:\n  mx: off\n  submission: off\n  submissions: off\n  imaps: off\n  pop3s: off\n  https: 127.0.0.1:0\n');
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['domain', 'add', 'example.net']);
  await w.ok(['alias', 'add', 'me@example.org', '--forward', 'me@elsewhere.example']);

  // The owner's key, made by gpg as a user would: a second user ID at another provider, which
  // the directory must not give away.
  owner = gpgHome();
  await gpg(owner, ['--passphrase', '', '--quick-gen-key', 'Me <me@example.org>', 'future-default', 'default', '1y']);
  const listed = (await gpg(owner, ['--with-colons', '--list-keys', 'me@example.org'])).stdout;
  fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(listed)![1]!;
  await gpg(owner, ['--passphrase', '', '--quick-add-uid', fingerprint, 'Me <private@elsewhere.example>']);
  armoredKey = (await gpg(owner, ['--armor', '--export', fingerprint])).stdout;
  await w.ok(['key', 'add', 'me@example.org', '-'], { stdin: armoredKey });

  fe = await startServe(w.config, [], {}, ['https']);
});

after(async () => {
  await fe?.stop();
  for (const home of homes) await run('gpgconf', ['--homedir', home, '--kill', 'all']).catch(() => undefined);
});

/** curl as a WKD client would call it: verified against the test CA, the name sent to fe on loopback. */
async function curl(url: string, extra: string[] = []): Promise<{ status: number; type: string; body: Buffer }> {
  const host = new URL(url).hostname;
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'fe-wkd-')), 'body');
  const r = await run('curl', ['-sS', '--cacert', ca.caFile, '--connect-to', `${host}:443:127.0.0.1:${fe.ports.https}`, '-o', out, '-w', '%{http_code} %{content_type}', ...extra, url], { encoding: 'utf8', timeout: 20_000 });
  const [status, type] = r.stdout.split(' ');
  return { status: Number(status), type: type ?? '', body: readFileSync(out) };
}

async function wkdUrl(address: string): Promise<string> {
  return (await run(WKS_CLIENT, ['--print-wkd-url', address], { encoding: 'utf8' })).stdout.trim();
}

/** Imports into a fresh gpg home; returns its fingerprints and user IDs. */
async function importInto(bytes: Buffer): Promise<{ fingerprints: string[]; uids: string[] }> {
  const home = gpgHome();
  const file = path.join(home, 'key.bin');
  writeFileSync(file, bytes);
  await gpg(home, ['--import', file]);
  const listed = (await gpg(home, ['--with-colons', '--list-keys'])).stdout;
  return {
    fingerprints: [...listed.matchAll(/^fpr:+([0-9A-F]{40}):/gm)].map((m) => m[1]!).filter((f, i, all) => i === 0 || f !== all[0]).slice(0, 1),
    uids: [...listed.matchAll(/^uid:(?:[^:]*:){8}([^:]*):/gm)].map((m) => m[1]!),
  };
}

test('z-base-32 and the WKD hash agree with gpg-wks-client', async () => {
  assert.equal(zBase32(new Uint8Array([])), '');
  assert.equal(zBase32(new Uint8Array([0])), 'yy'); // 8 zero bits: two characters, padded with zero bits
  const printed = (await run(WKS_CLIENT, ['--print-wkd-hash', 'Me@example.org', 'joe.doe@example.org'], { encoding: 'utf8' })).stdout.trim().split('\n');
  assert.deepEqual(printed.map((l) => l.split(' ')[0]), [wkdHash('Me'), wkdHash('joe.doe')]);
  assert.equal(wkdHash('Joe.Doe'), wkdHash('joe.doe'), 'local parts are compared in lower case');
  assert.notEqual(wkdHash('joe'), wkdHash('joe.doe'));
});

test('advanced method: gpg-wks-client names the URL, curl fetches a binary key, gpg imports it with only this address', async () => {
  const url = await wkdUrl('me@example.org');
  assert.match(url, /^https:\/\/openpgpkey\.example\.org\/\.well-known\/openpgpkey\/example\.org\/hu\/[a-z0-9]{32}\?l=me$/);
  const r = await curl(url);
  assert.equal(r.status, 200);
  assert.equal(r.type, 'application/octet-stream');
  assert.ok((r.body[0]! & 0x80) !== 0 && !r.body.toString('latin1').includes('BEGIN PGP'), 'binary, not armored');
  const imported = await importInto(r.body);
  assert.deepEqual(imported.fingerprints, [fingerprint]);
  assert.deepEqual(imported.uids, ['Me <me@example.org>'], 'the other user ID is not published');
  // The address as a correspondent may type it finds the same key.
  const mixed = await curl(await wkdUrl('Me@Example.ORG'));
  assert.equal(mixed.status, 200);
  assert.deepEqual(mixed.body, r.body);
});

test('direct method on the domain itself, and the policy file in both layouts', async () => {
  const hash = wkdHash('me');
  const direct = await curl(`https://example.org/.well-known/openpgpkey/hu/${hash}?l=me`);
  assert.equal(direct.status, 200);
  assert.equal(direct.type, 'application/octet-stream');
  assert.deepEqual((await importInto(direct.body)).fingerprints, [fingerprint]);
  for (const url of ['https://openpgpkey.example.org/.well-known/openpgpkey/example.org/policy', 'https://example.org/.well-known/openpgpkey/policy']) {
    const p = await curl(url);
    assert.equal(p.status, 200, url);
    assert.match(p.type, /^text\/plain/);
  }
});

test('404 for anything else: other addresses, domains, layouts and methods', async () => {
  const hash = wkdHash('me');
  const misses = [
    await wkdUrl('nobody@example.org'), // a served domain, no such key
    await wkdUrl('me@example.net'), // a served domain, the key is for example.org
    `https://openpgpkey.example.org/.well-known/openpgpkey/example.net/hu/${hash}`, // the two domains disagree
    `https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/${hash}/x`,
    `https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/${hash.toUpperCase()}`,
    'https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/',
    'https://openpgpkey.example.org/.well-known/openpgpkey/example.org/../../../fe.yml',
    `https://mail.example.org/.well-known/openpgpkey/hu/${hash}`, // the host name is no mail domain
  ];
  for (const url of misses) assert.equal((await curl(url)).status, 404, url);
  // Every served domain has a policy; a domain not served here has nothing, even with its name on the certificate.
  assert.equal((await curl('https://openpgpkey.example.net/.well-known/openpgpkey/example.net/policy')).status, 200);
  assert.equal((await curl('https://openpgpkey.example.com/.well-known/openpgpkey/example.com/policy')).status, 404);
  const post = await curl(await wkdUrl('me@example.org'), ['-X', 'POST', '--data', 'x']);
  assert.equal(post.status, 405);
});

test('fe key remove and fe key add take effect on SIGHUP', async () => {
  const url = await wkdUrl('me@example.org');
  await w.ok(['key', 'remove', 'me@example.org']);
  assert.equal((await curl(url)).status, 200, 'still published until the daemon reloads');
  fe.signal('SIGHUP');
  await fe.waitForLog(/configuration reloaded/);
  assert.equal((await curl(url)).status, 404);

  await w.ok(['key', 'add', 'me@example.org', '-'], { stdin: armoredKey });
  const reloads = fe.log().match(/configuration reloaded/g)!.length;
  fe.signal('SIGHUP');
  await fe.waitForLog(new RegExp(`(?:configuration reloaded[\\s\\S]*){${reloads + 1}}`));
  const back = await curl(url);
  assert.equal(back.status, 200);
  assert.deepEqual((await importInto(back.body)).fingerprints, [fingerprint]);
});

test('fe domain dns lists openpgpkey.DOMAIN; the ACME order covers it', async () => {
  const zone = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: { name: string; type: string; value: string }[] };
  const wkd = zone.records.filter((r) => r.name === 'openpgpkey.example.org.');
  assert.deepEqual(wkd.map((r) => [r.type, r.value]), [['CNAME', 'mail.example.org.']]);
  const config = parseConfig(w.read(), w.config).config!;
  const names = wantedNames(config);
  for (const d of ['example.org', 'example.net']) {
    for (const n of [`mta-sts.${d}`, `openpgpkey.${d}`, `autoconfig.${d}`, `autodiscover.${d}`]) assert.ok(names.includes(n), n);
  }
  assert.equal(names[0], 'mail.example.org');
});

// dirmngr resolves through /etc/resolv.conf (its nameserver option is for Tor mode only), connects
// to port 443 and trusts the system CA bundle. A user, network and mount namespace gives it all
// three without touching the host: its own loopback, and bind mounts seen only inside it.
const SYSTEM_CAS = '/etc/ssl/certs/ca-certificates.crt';
function namespaceSkip(): string | false {
  if (!existsSync(SYSTEM_CAS)) return `no ${SYSTEM_CAS} to stand in for`;
  try {
    execFileSync('unshare', ['-rnm', 'ip', 'link', 'set', 'lo', 'up'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'needs unprivileged user namespaces (unshare -rnm) and iproute2';
  }
}

test('gpg --auto-key-locate clear,wkd --locate-keys finds the key through dirmngr', { skip: namespaceSkip() }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-wkd-ns-'));
  writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
  // The same fe.yml and data, with fe-web alone on the namespace's own 127.0.0.1:443.
  const nsConfig = path.join(w.dir, 'ns.yml');
  writeFileSync(nsConfig, w.read().replace(/^  https: .*$/m, '  https: 127.0.0.1:443'));
  const dnsHelper = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'dns-server.js');
  const script = `set -e
ip link set lo up
mount --bind "$DIR/resolv.conf" /etc/resolv.conf
mount --bind "$CA" ${SYSTEM_CAS}
node --input-type=module -e "import { startDnsServer } from '$DNS_HELPER'; const here = { A: ['127.0.0.1'] }; await startDnsServer({ 'openpgpkey.example.org': here, 'example.org': here }, { port: 53 }); console.log('dns ready');" > "$DIR/dns.log" 2>&1 &
DNS=$!
node "$FE_BIN" --config "$NS_CONFIG" serve --only https > "$DIR/fe.log" 2>&1 &
FE=$!
trap 'kill $DNS $FE 2>/dev/null || true' EXIT
for i in $(seq 100); do grep -q 'dns ready' "$DIR/dns.log" && grep -q '^https listening' "$DIR/fe.log" && break; sleep 0.1; done
export GNUPGHOME="$DIR/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --no-tty --with-colons --auto-key-locate clear,wkd --locate-keys me@example.org || { cat "$DIR/fe.log" >&2; exit 1; }
gpgconf --kill all
`;
  const r = await run('unshare', ['-rnm', 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, DIR: dir, CA: ca.caFile, DNS_HELPER: dnsHelper, FE_BIN, NS_CONFIG: nsConfig } });
  const primary = /^fpr:+([0-9A-F]{40}):/m.exec(r.stdout)?.[1];
  assert.equal(primary, fingerprint, `gpg printed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^uid:[^\n]*Me <me@example\.org>/m);
  assert.doesNotMatch(r.stdout, /private@elsewhere\.example/);
});
