// Clients that set themselves up: Thunderbird's autoconfig, Outlook's Autodiscover and an Apple
// profile, fetched over verified HTTPS from a running fe (curl, test CA), parsed by Python
// (xml.etree, plistlib) and compared with what fe.yml turns on; turning a listener off removes it
// from all three after SIGHUP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseConfig, type DaemonName } from '../src/config/schema.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { createTestCa, type TestCa } from './helpers/test-ca.js';

const run = promisify(execFile);

let fe: Daemon;
let w: ReturnType<typeof workspace>;
let ca: TestCa;

const LISTEN = { mx: 'off', imaps: '127.0.0.1:0', imap: '127.0.0.1:0', pop3s: 'off', pop3: 'off', submissions: '127.0.0.1:0', submission: '127.0.0.1:0', https: '127.0.0.1:0' };

function configText(listen: Record<string, string>): string {
  const lines = Object.entries(listen).map(([k, v]) => `  ${k}: ${v}`);
  // ports: the numbers clients are told; pop3 has one but does not listen, so it is not advertised.
  return `hostname: mail.example.org\ndata_dir: ./data\ntls:\n  cert: web.crt\n  key: web.key\nports:\n  imap: 143\n  pop3: 110\n  submissions: 4465\nlisten:\n${lines.join('\n')}\n`;
}

before(async () => {
  ca = createTestCa();
  w = workspace();
  const leaf = ca.issue(['mail.example.org', 'example.org', 'autoconfig.example.org', 'autodiscover.example.org', 'autoconfig.example.com']);
  writeFileSync(path.join(w.dir, 'web.crt'), leaf.cert);
  writeFileSync(path.join(w.dir, 'web.key'), leaf.key, { mode: 0o600 });
  w.write(configText(LISTEN));
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox']);
  fe = await startServe(w.config, [], {}, ['https']);
});

after(async () => {
  await fe?.stop();
});

/** curl verifying against the test CA, every name sent to fe on loopback. */
async function curl(url: string, extra: string[] = [], stdin?: string): Promise<{ status: number; type: string; body: string }> {
  const host = new URL(url).hostname;
  const args = ['-sS', '--cacert', ca.caFile, '--connect-to', `${host}:443:127.0.0.1:${fe.ports.https}`, '-w', '\n%{http_code} %{content_type}', ...extra, url];
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = spawn('curl', args, { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`curl exited ${code}`))));
    child.stdin.end(stdin ?? '');
  });
  const cut = stdout.lastIndexOf('\n');
  const [status, type] = stdout.slice(cut + 1).split(' ');
  return { status: Number(status), type: type ?? '', body: stdout.slice(0, cut) };
}

/** Python reads the document; a malformed one makes it fail. */
async function python(script: string, input: string): Promise<unknown> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`python3 failed: ${stderr}\n--- input:\n${input}`))));
    child.stdin.end(input);
  });
  return JSON.parse(out);
}

// Thunderbird's clientConfig 1.1, strictly: element names and their order as Thunderbird documents them.
const THUNDERBIRD = `
import sys, json, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == 'clientConfig' and root.get('version') == '1.1', root.tag
[p] = list(root)
assert p.tag == 'emailProvider'
kids = [c.tag for c in p]
head = kids[:3]
assert head == ['domain', 'displayName', 'displayShortName'], kids
servers = [c for c in p][3:]
seen_out = False
for s in servers:
    assert s.tag in ('incomingServer', 'outgoingServer'), s.tag
    if s.tag == 'outgoingServer': seen_out = True
    else: assert not seen_out, 'incoming servers come before outgoing ones'
    assert [c.tag for c in s] == ['hostname', 'port', 'socketType', 'authentication', 'username'], [c.tag for c in s]
print(json.dumps({'id': p.get('id'), 'domain': p.findtext('domain'), 'servers': [
  {'kind': s.tag, 'type': s.get('type'), 'hostname': s.findtext('hostname'), 'port': int(s.findtext('port')),
   'socketType': s.findtext('socketType'), 'authentication': s.findtext('authentication'), 'username': s.findtext('username')} for s in servers]}))
`;

const AUTODISCOVER = `
import sys, json, xml.etree.ElementTree as ET
R = '{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}'
O = '{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}'
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == R + 'Autodiscover', root.tag
acc = root.find(O + 'Response/' + O + 'Account')
assert acc.findtext(O + 'AccountType') == 'email' and acc.findtext(O + 'Action') == 'settings'
print(json.dumps([{k: p.findtext(O + k) for k in ('Type', 'Server', 'Port', 'SSL', 'Encryption', 'LoginName', 'SPA', 'AuthRequired')} for p in acc.findall(O + 'Protocol')]))
`;

const PLIST = `
import sys, json, plistlib
p = plistlib.loads(sys.stdin.buffer.read())
print(json.dumps(p))
`;

type Service = { key: 'imaps' | 'imap' | 'pop3s' | 'pop3' | 'submissions' | 'submission'; protocol: string; implicit: boolean };
const SERVICES: Service[] = [
  { key: 'imaps', protocol: 'imap', implicit: true },
  { key: 'imap', protocol: 'imap', implicit: false },
  { key: 'pop3s', protocol: 'pop3', implicit: true },
  { key: 'pop3', protocol: 'pop3', implicit: false },
  { key: 'submissions', protocol: 'smtp', implicit: true },
  { key: 'submission', protocol: 'smtp', implicit: false },
];

/** What fe.yml says clients should be told: services that listen, at their public port. */
function expected(): { protocol: string; port: number; implicit: boolean }[] {
  const c = parseConfig(w.read(), w.config).config!;
  return SERVICES.filter((s) => c.listen[s.key as DaemonName] !== null && c.ports[s.key] !== null).map((s) => ({ protocol: s.protocol, port: c.ports[s.key]!, implicit: s.implicit }));
}

type TbServer = { kind: string; type: string; hostname: string; port: number; socketType: string; authentication: string; username: string };

async function thunderbird(url: string): Promise<{ id: string; domain: string; servers: TbServer[] }> {
  const r = await curl(url);
  assert.equal(r.status, 200, `${url}: ${r.body}`);
  assert.match(r.type, /xml/);
  return (await python(THUNDERBIRD, r.body)) as { id: string; domain: string; servers: TbServer[] };
}

function assertThunderbird(doc: { id: string; domain: string; servers: TbServer[] }): void {
  assert.equal(doc.id, 'example.org');
  assert.equal(doc.domain, 'example.org');
  const want = expected().map((s) => ({
    kind: s.protocol === 'smtp' ? 'outgoingServer' : 'incomingServer',
    type: s.protocol,
    hostname: 'mail.example.org',
    port: s.port,
    socketType: s.implicit ? 'SSL' : 'STARTTLS',
    authentication: 'password-cleartext',
    username: '%EMAILADDRESS%',
  }));
  assert.deepEqual(doc.servers, want);
}

const REQUEST = (address: string) => `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>${address}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`;

async function autodiscover(address: string): Promise<Record<string, string>[]> {
  const r = await curl('https://autodiscover.example.org/autodiscover/autodiscover.xml', ['-H', 'Content-Type: text/xml', '--data-binary', '@-'], REQUEST(address));
  assert.equal(r.status, 200, r.body);
  assert.match(r.type, /xml/);
  return (await python(AUTODISCOVER, r.body)) as Record<string, string>[];
}

function assertAutodiscover(protocols: Record<string, string>[]): void {
  assert.deepEqual(
    protocols,
    expected().map((s) => ({ Type: s.protocol.toUpperCase(), Server: 'mail.example.org', Port: String(s.port), SSL: 'on', Encryption: s.implicit ? 'SSL' : 'TLS', LoginName: 'me@example.org', SPA: 'off', AuthRequired: 'on' })),
  );
}

type Profile = { PayloadType: string; PayloadContent: Record<string, unknown>[]; PayloadIdentifier: string; PayloadUUID: string };

function assertProfile(p: Profile): void {
  assert.equal(p.PayloadType, 'Configuration');
  assert.equal(p.PayloadContent.length, 1);
  const mail = p.PayloadContent[0]!;
  const services = expected();
  const incoming = services.find((s) => s.protocol !== 'smtp')!;
  const outgoing = services.find((s) => s.protocol === 'smtp')!;
  assert.equal(mail.PayloadType, 'com.apple.mail.managed');
  assert.equal(mail.EmailAddress, 'me@example.org');
  assert.equal(mail.EmailAccountType, incoming.protocol === 'imap' ? 'EmailTypeIMAP' : 'EmailTypePOP');
  assert.equal(mail.IncomingMailServerHostName, 'mail.example.org');
  assert.equal(mail.IncomingMailServerPortNumber, incoming.port);
  assert.equal(mail.IncomingMailServerUseSSL, incoming.implicit);
  assert.equal(mail.IncomingMailServerUsername, 'me@example.org');
  assert.equal(mail.OutgoingMailServerHostName, 'mail.example.org');
  assert.equal(mail.OutgoingMailServerPortNumber, outgoing.port);
  assert.equal(mail.OutgoingMailServerUseSSL, outgoing.implicit);
  assert.equal(mail.OutgoingMailServerUsername, 'me@example.org');
  assert.equal(mail.IncomingMailServerAuthentication, 'EmailAuthPassword');
  assert.ok(!('IncomingPassword' in mail) && !('OutgoingPassword' in mail), 'no password in the profile: the device asks');
  assert.match(p.PayloadUUID, /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
}

async function servedProfile(): Promise<{ raw: string; profile: Profile }> {
  const r = await curl('https://autoconfig.example.org/mail/apple.mobileconfig?emailaddress=me@example.org');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.type, 'application/x-apple-aspen-config');
  return { raw: r.body, profile: (await python(PLIST, r.body)) as Profile };
}

test('Thunderbird autoconfig at both URLs lists what listens, best first, with %EMAILADDRESS%', async () => {
  const services = expected();
  assert.deepEqual(services.map((s) => `${s.protocol}:${s.port}`), ['imap:993', 'imap:143', 'smtp:4465', 'smtp:587'], 'the config this test means');
  assertThunderbird(await thunderbird('https://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=me%40example.org'));
  assertThunderbird(await thunderbird('https://example.org/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=me@example.org'));
  assertThunderbird(await thunderbird('https://autoconfig.example.org/mail/config-v1.1.xml'));
});

test('Outlook Autodiscover: POST with the 2006 request schema, and GET', async () => {
  assertAutodiscover(await autodiscover('me@example.org'));
  const get = await curl('https://autodiscover.example.org/autodiscover/autodiscover.xml?emailaddress=me@example.org');
  assert.equal(get.status, 200);
  assertAutodiscover((await python(AUTODISCOVER, get.body)) as Record<string, string>[]);
});

test('Apple profile: fe domain profile and the served one are the same plist', async () => {
  const cli = await w.ok(['domain', 'profile', 'me@example.org']);
  const profile = (await python(PLIST, cli)) as Profile;
  assertProfile(profile);
  const served = await servedProfile();
  assert.equal(served.raw, cli);
  const again = (await python(PLIST, await w.ok(['domain', 'profile', 'ME@example.org']))) as Profile;
  assert.equal(again.PayloadUUID, profile.PayloadUUID, 'stable, so installing it again replaces the first');
  const notMailbox = await w.fe(['domain', 'profile', 'nobody@example.org']);
  assert.equal(notMailbox.code, 1);
  assert.match(notMailbox.stderr, /not a mailbox/);
});

test('bad input: other domains, bad requests, wrong methods', async () => {
  assert.equal((await curl('https://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=me@example.com')).status, 404);
  assert.equal((await curl('https://autoconfig.example.com/mail/config-v1.1.xml')).status, 404, 'a domain not served here');
  const url = 'https://autodiscover.example.org/autodiscover/autodiscover.xml';
  const other = await curl(url, ['--data-binary', '@-'], REQUEST('me@example.com'));
  assert.equal(other.status, 404);
  const junk = await curl(url, ['--data-binary', '@-'], '<Autodiscover><Request/></Autodiscover>');
  assert.equal(junk.status, 400);
  assert.match(junk.body, /requestschema 2006/);
  const big = await curl(url, ['--data-binary', '@-'], REQUEST('me@example.org') + ' '.repeat(10_000));
  assert.equal(big.status, 413);
  assert.equal((await curl(url)).status, 400, 'GET needs the address');
  assert.equal((await curl('https://autoconfig.example.org/mail/config-v1.1.xml', ['-X', 'POST', '--data', 'x'])).status, 405);
  assert.equal((await curl('https://autoconfig.example.org/mail/apple.mobileconfig')).status, 400);
  // Still serving after all that.
  assertAutodiscover(await autodiscover('me@example.org'));
});

test('a listener turned off in fe.yml leaves all three documents after SIGHUP', async () => {
  w.write(w.read().replace('  imaps: 127.0.0.1:0\n', '  imaps: off\n').replace('  submissions: 127.0.0.1:0\n', '  submissions: off\n'));
  fe.signal('SIGHUP');
  await fe.waitForLog(/configuration reloaded/);
  assert.deepEqual(expected().map((s) => `${s.protocol}:${s.port}`), ['imap:143', 'smtp:587']);
  assertThunderbird(await thunderbird('https://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=me@example.org'));
  const protocols = await autodiscover('me@example.org');
  assert.deepEqual(protocols.map((p) => `${p.Type}:${p.Port}:${p.Encryption}`), ['IMAP:143:TLS', 'SMTP:587:TLS']);
  assertAutodiscover(protocols);
  const { profile } = await servedProfile();
  assertProfile(profile);
  assert.equal(profile.PayloadContent[0]!.IncomingMailServerPortNumber, 143);
  assert.equal(profile.PayloadContent[0]!.IncomingMailServerUseSSL, false);
  // And the SRV records say the same.
  const zone = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: { name: string; type: string; value: string }[] };
  const srv = Object.fromEntries(zone.records.filter((r) => r.type === 'SRV').map((r) => [r.name, r.value]));
  assert.equal(srv['_imaps._tcp.example.org.'], '0 0 0 .');
  assert.equal(srv['_imap._tcp.example.org.'], '10 1 143 mail.example.org.');
  assert.equal(srv['_pop3._tcp.example.org.'], '0 0 0 .', 'pop3 has a port but does not listen');
});
