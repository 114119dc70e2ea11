// fe domain and fe dkim through the real CLI: round trips, DNS output record by record, key files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { readFileSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { filesUnder, workspace } from './helpers/fe.js';

interface JsonRecord {
  name: string;
  ttl: number;
  type: string;
  value: string;
  text?: string;
}

function thisMonthSelector(): string {
  const now = new Date();
  return `fe${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
}

test('domain add / list / remove round trip, with --json', async () => {
  const w = workspace();
  const out = await w.ok(['domain', 'add', 'Example.ORG']);
  assert.match(out, new RegExp(`added example\\.org with DKIM selector ${thisMonthSelector()}`));
  await w.ok(['domain', 'add', 'second.example']);
  const list = JSON.parse(await w.ok(['domain', 'list', '--json'])) as { domain: string; aliases: number; dkimSelectors: string[] }[];
  assert.deepEqual(
    list.map((d) => [d.domain, d.aliases, d.dkimSelectors]),
    [
      ['example.org', 0, [thisMonthSelector()]],
      ['second.example', 0, [thisMonthSelector()]],
    ],
  );
  const table = await w.ok(['domain', 'list']);
  assert.match(table, /^DOMAIN\s+ALIASES\s+MAILBOXES\s+DKIM$/m);
  assert.match(table, /^second\.example\s+0\s+0\s+fe\d{6}$/m);
  const removed = await w.ok(['domain', 'remove', 'second.example']);
  assert.match(removed, /stay under .*data/);
  const after = JSON.parse(await w.ok(['domain', 'list', '--json'])) as { domain: string }[];
  assert.deepEqual(after.map((d) => d.domain), ['example.org']);
  const again = await w.fe(['domain', 'remove', 'second.example']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /second\.example is not a domain in .* \(served: example\.org\)/);
});

test('bad domain names are refused with a reason', async () => {
  const w = workspace();
  for (const [name, reason] of [
    ['localhost', /at least two labels/],
    ['bad-.example', /invalid label "bad-"/],
    ['a..example', /not a valid domain name|invalid label/],
    ['me@example.org', /not a domain name/],
    ['192.0.2.1', /looks like an IP address/],
    [`${'a'.repeat(64)}.example`, /invalid label/],
  ] as const) {
    const r = await w.fe(['domain', 'add', name]);
    assert.equal(r.code, 1, name);
    assert.match(r.stderr, reason, name);
  }
  assert.equal(w.read(), 'hostname: mail.example.org\ndata_dir: ./data\n');
});

test('an IDN domain is stored as written and published in punycode', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'Bücher.example']);
  assert.match(w.read(), /^  bücher\.example:$/m);
  const dup = await w.fe(['domain', 'add', 'xn--bcher-kva.example']);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /already served \(as "bücher\.example"\)/);
  const dns = JSON.parse(await w.ok(['domain', 'dns', 'bücher.example', '--json'])) as { domain: string; records: JsonRecord[] };
  assert.equal(dns.domain, 'xn--bcher-kva.example');
  assert.ok(dns.records.every((r) => /^[\x21-\x7e]+$/.test(r.name)), 'all owner names ASCII');
  assert.ok(dns.records.some((r) => r.type === 'MX' && r.name === 'xn--bcher-kva.example.'));
  // and an alias under it resolves whichever spelling is used
  await w.ok(['alias', 'add', 'me@bücher.example', '--forward', 'x@y.example']);
  assert.match(await w.ok(['alias', 'resolve', 'ME@xn--bcher-kva.example']), /-> me@xn--bcher-kva\.example: forward to x@y\.example/);
});

test('domain dns prints every record the domain needs, checked record by record', async () => {
  const w = workspace('hostname: mail.example.org\ndata_dir: ./data\nadmin: ops@example.net\nports:\n  imap: 143\n  pop3s: off\nlisten:\n  imap: 0.0.0.0:143\n');
  await w.ok(['domain', 'add', 'example.org']);
  const selector = thisMonthSelector();
  const dns = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: JsonRecord[]; mtaStsPolicy: string; mtaStsPolicyUrl: string };
  const find = (name: string, type: string) => dns.records.filter((r) => r.name === name && r.type === type);
  const one = (name: string, type: string) => {
    const found = find(name, type);
    assert.equal(found.length, 1, `${type} ${name}: ${JSON.stringify(dns.records)}`);
    return found[0]!;
  };
  assert.equal(one('example.org.', 'MX').value, '10 mail.example.org.');
  assert.equal(one('example.org.', 'TXT').text, 'v=spf1 mx -all');
  assert.equal(one('_dmarc.example.org.', 'TXT').text, 'v=DMARC1; p=quarantine; rua=mailto:ops@example.net');
  assert.match(one('_mta-sts.example.org.', 'TXT').text!, /^v=STSv1; id=[A-Za-z0-9]{1,32}$/);
  assert.equal(one('mta-sts.example.org.', 'CNAME').value, 'mail.example.org.');
  assert.equal(one('_smtp._tls.example.org.', 'TXT').text, 'v=TLSRPTv1; rua=mailto:ops@example.net');
  assert.equal(one('autoconfig.example.org.', 'CNAME').value, 'mail.example.org.');
  assert.equal(one('autodiscover.example.org.', 'CNAME').value, 'mail.example.org.');
  assert.match(one('_imaps._tcp.example.org.', 'SRV').value, /^\d+ 1 993 mail\.example\.org\.$/);
  assert.match(one('_imap._tcp.example.org.', 'SRV').value, /^\d+ 1 143 mail\.example\.org\.$/);
  assert.equal(one('_pop3s._tcp.example.org.', 'SRV').value, '0 0 0 .', 'pop3s turned off in fe.yml');
  assert.equal(one('_pop3._tcp.example.org.', 'SRV').value, '0 0 0 .');
  assert.match(one('_submissions._tcp.example.org.', 'SRV').value, /^\d+ 1 465 mail\.example\.org\.$/);
  assert.match(one('_submission._tcp.example.org.', 'SRV').value, /^\d+ 1 587 mail\.example\.org\.$/);
  assert.equal(dns.mtaStsPolicyUrl, 'https://mta-sts.example.org/.well-known/mta-sts.txt');
  assert.match(dns.mtaStsPolicy, /version: STSv1\r?\nmode: testing\r?\nmx: mail\.example\.org\r?\nmax_age: 604800/);

  // DKIM: the published key is the one whose private half sits 0600 in the data dir, and it verifies.
  const dkim = one(`${selector}._domainkey.example.org.`, 'TXT');
  const p = /(?:^|;\s*)p=([A-Za-z0-9+/=]+)/.exec(dkim.text!)![1]!;
  assert.match(dkim.text!, /^v=DKIM1; k=rsa; /);
  const keyFile = path.join(w.dataDir, 'dkim', 'example.org', `${selector}.key`);
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const privateKey = createPrivateKey(readFileSync(keyFile));
  const publicKey = createPublicKey({ key: Buffer.from(p, 'base64'), format: 'der', type: 'spki' });
  const signature = sign('sha256', Buffer.from('headers to sign'), privateKey);
  assert.ok(verify('sha256', Buffer.from('headers to sign'), publicKey, signature));
  assert.doesNotMatch(w.read(), /PRIVATE KEY|BEGIN/, 'no key material in fe.yml');

  // The zone text carries the same records.
  const zone = await w.ok(['domain', 'dns', 'example.org']);
  for (const r of dns.records) {
    const line = zone.split('\n').find((l) => l.startsWith(r.name + ' ') && l.includes(` ${r.type} `) && l.includes(r.value));
    assert.ok(line, `zone has ${r.type} ${r.name} ${r.value}`);
  }
  assert.match(zone, /^; MTA-STS policy: serve .* at https:\/\/mta-sts\.example\.org\/\.well-known\/mta-sts\.txt$/m);
});

test('dkim rotate keeps the old selector published until retired', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  const first = thisMonthSelector();
  const rotated = await w.ok(['dkim', 'rotate', 'example.org']);
  const second = `${first}b`;
  assert.match(rotated, new RegExp(`new RSA DKIM selector ${second} for example\\.org`));
  assert.match(rotated, new RegExp(`^${second}\\._domainkey\\.example\\.org\\. 3600 IN TXT "v=DKIM1; k=rsa; p=`, 'm'));
  assert.match(rotated, new RegExp(`${first} stays published until: fe dkim retire example\\.org ${first}`));
  let list = JSON.parse(await w.ok(['dkim', 'list', 'example.org', '--json'])) as { selector: string; algorithm: string; active: boolean; keyFile: boolean }[];
  assert.deepEqual(list, [
    { selector: first, algorithm: 'rsa', active: false, keyFile: true },
    { selector: second, algorithm: 'rsa', active: true, keyFile: true },
  ]);
  const dns = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: JsonRecord[] };
  assert.equal(dns.records.filter((r) => r.name.includes('._domainkey.')).length, 2, 'both selectors published');

  const refuse = await w.fe(['dkim', 'retire', 'example.org', second]);
  assert.equal(refuse.code, 1);
  assert.match(refuse.stderr, /is the selector signing mail/);
  await w.ok(['dkim', 'retire', 'example.org', first]);
  assert.equal(existsSync(path.join(w.dataDir, 'dkim', 'example.org', `${first}.key`)), false, 'retired key deleted');
  list = JSON.parse(await w.ok(['dkim', 'list', 'example.org', '--json']));
  assert.deepEqual(list.map((s) => s.selector), [second]);

  // staged rotation: published first, signing switches only on activate
  const staged = await w.ok(['dkim', 'rotate', 'example.org', '--stage']);
  const third = `${first}c`;
  assert.match(staged, new RegExp(`still signing with ${second}; once the record is visible: fe dkim activate example\\.org ${third}`));
  list = JSON.parse(await w.ok(['dkim', 'list', 'example.org', '--json']));
  assert.deepEqual(list.map((s) => [s.selector, s.active]), [[second, true], [third, false]]);
  await w.ok(['dkim', 'activate', 'example.org', third]);
  list = JSON.parse(await w.ok(['dkim', 'list', 'example.org', '--json']));
  assert.deepEqual(list.map((s) => [s.selector, s.active]), [[second, false], [third, true]]);
  const unknown = await w.fe(['dkim', 'activate', 'example.org', 'nosuch']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /nosuch is not a published selector/);
});

test('config check reports a signing key that went missing', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  const keyFile = filesUnder(w.dataDir).find((f) => f.endsWith('.key'))!;
  const { rmSync } = await import('node:fs');
  rmSync(keyFile);
  const r = await w.fe(['config', 'check']);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /domains\.example\.org\.dkim\.active: the signing key for fe\d{6} is missing/);
});
