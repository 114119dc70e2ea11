import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { domainRecords, renderZone, type DnsRecord, type DomainDnsInput } from '../src/dns/records.js';

function rsaKey(bits: number): string {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
}

function ed25519Key(): { spki: string; raw: string } {
  const { publicKey } = generateKeyPairSync('ed25519');
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // Ed25519 SPKI is a fixed 12-byte header followed by the 32-byte key.
  return { spki: spki.toString('base64'), raw: spki.subarray(12).toString('base64') };
}

const rsa2048 = rsaKey(2048);
const ed = ed25519Key();

function input(overrides: Partial<DomainDnsInput> = {}): DomainDnsInput {
  return {
    domain: 'example.org',
    hostname: 'mail.example.org',
    dkim: [
      { selector: 'fe202611', publicKeyDerBase64: rsa2048, keyType: 'rsa' },
      { selector: 'fe202611e', publicKeyDerBase64: ed.spki, keyType: 'ed25519' },
    ],
    mtaSts: { mode: 'enforce', maxAgeSeconds: 604800 },
    reportAddress: 'postmaster@example.org',
    ports: { imap: 143, imaps: 993, pop3: null, pop3s: null, submission: 587, submissions: 465 },
    ipv4: ['192.0.2.25'],
    ipv6: ['2001:db8::25'],
    ...overrides,
  };
}

/** The quoted character-strings of a TXT value, unescaped (base64 and our tags never need escapes). */
function txtStrings(value: string): string[] {
  const strings = [...value.matchAll(/"([^"\\]*)"/g)].map((m) => m[1] ?? '');
  assert.equal(strings.map((s) => `"${s}"`).join(' '), value, 'value is only quoted strings');
  return strings;
}

function find(records: DnsRecord[], name: string, type: string): DnsRecord[] {
  return records.filter((r) => r.name === name && r.type === type);
}

function only(records: DnsRecord[], name: string, type: string): DnsRecord {
  const found = find(records, name, type);
  assert.equal(found.length, 1, `exactly one ${type} at ${name}`);
  return found[0]!;
}

test('realistic domain: every record, one by one', () => {
  const dns = domainRecords(input());
  const r = dns.records;
  const expected: [string, string, string][] = [
    ['example.org.', 'MX', '10 mail.example.org.'],
    ['mail.example.org.', 'A', '192.0.2.25'],
    ['mail.example.org.', 'AAAA', '2001:db8::25'],
    ['example.org.', 'TXT', '"v=spf1 mx -all"'],
    ['_dmarc.example.org.', 'TXT', '"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"'],
    ['mta-sts.example.org.', 'CNAME', 'mail.example.org.'],
    ['autoconfig.example.org.', 'CNAME', 'mail.example.org.'],
    ['autodiscover.example.org.', 'CNAME', 'mail.example.org.'],
    ['openpgpkey.example.org.', 'CNAME', 'mail.example.org.'],
    ['_smtp._tls.example.org.', 'TXT', '"v=TLSRPTv1; rua=mailto:postmaster@example.org"'],
    ['_imaps._tcp.example.org.', 'SRV', '0 1 993 mail.example.org.'],
    ['_imap._tcp.example.org.', 'SRV', '10 1 143 mail.example.org.'],
    ['_pop3s._tcp.example.org.', 'SRV', '0 0 0 .'],
    ['_pop3._tcp.example.org.', 'SRV', '0 0 0 .'],
    ['_submissions._tcp.example.org.', 'SRV', '0 1 465 mail.example.org.'],
    ['_submission._tcp.example.org.', 'SRV', '10 1 587 mail.example.org.'],
  ];
  for (const [name, type, value] of expected) {
    const rec = only(r, name, type);
    assert.equal(rec.value, value, `${name} ${type}`);
    assert.equal(rec.ttl, 3600);
    assert.ok(rec.purpose.length > 0);
  }

  const rsaRec = only(r, 'fe202611._domainkey.example.org.', 'TXT');
  assert.equal(rsaRec.text, `v=DKIM1; k=rsa; p=${rsa2048}`);
  assert.equal(rsaRec.purpose, 'DKIM selector fe202611');
  // Ed25519 keys are published raw (RFC 8463), not as SubjectPublicKeyInfo.
  const edRec = only(r, 'fe202611e._domainkey.example.org.', 'TXT');
  assert.equal(edRec.value, `"v=DKIM1; k=ed25519; p=${ed.raw}"`);

  const sts = only(r, '_mta-sts.example.org.', 'TXT');
  assert.match(sts.value, /^"v=STSv1; id=[A-Za-z0-9]{1,32}"$/);

  // Nothing beyond the list above: 16 fixed records, 2 DKIM, 1 MTA-STS id.
  assert.equal(r.length, expected.length + 3);
  for (const rec of r) {
    assert.match(rec.name, /^[a-z0-9_.-]+\.$/, 'absolute ASCII owner');
    if (rec.type === 'TXT') assert.equal(txtStrings(rec.value).join(''), rec.text);
    else assert.equal(rec.text, undefined);
  }
  assert.equal(dns.mtaStsPolicyUrl, 'https://mta-sts.example.org/.well-known/mta-sts.txt');
  assert.equal(dns.mtaStsPolicy, 'version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n');
});

for (const [bits, strings] of [[2048, 2], [4096, 3]] as const) {
  test(`DKIM TXT with a ${bits}-bit RSA key is split into <=255-byte strings that join back`, () => {
    const key = bits === 2048 ? rsa2048 : rsaKey(bits);
    const dns = domainRecords(input({ dkim: [{ selector: 'big', publicKeyDerBase64: key, keyType: 'rsa' }] }));
    const rec = only(dns.records, 'big._domainkey.example.org.', 'TXT');
    const parts = txtStrings(rec.value);
    assert.equal(parts.length, strings);
    for (const part of parts) assert.ok(Buffer.byteLength(part) <= 255, `string of ${part.length} bytes`);
    // Every string but the last is filled, so nothing is split needlessly.
    for (const part of parts.slice(0, -1)) assert.equal(part.length, 255);
    const joined = parts.join('');
    assert.equal(joined, rec.text);
    const p = /; p=([A-Za-z0-9+/=]+)$/.exec(joined)?.[1];
    assert.equal(p, key);
  });
}

test('MTA-STS id is stable for the same policy and changes with it', () => {
  const id = (i: DomainDnsInput): string => only(domainRecords(i).records, '_mta-sts.example.org.', 'TXT').text ?? '';
  const base = id(input());
  assert.equal(id(input()), base);
  assert.equal(id(input({ ttl: 60, ipv4: [] })), base, 'unrelated settings leave the id alone');
  const testing = id(input({ mtaSts: { mode: 'testing', maxAgeSeconds: 604800 } }));
  const none = id(input({ mtaSts: { mode: 'none', maxAgeSeconds: 604800 } }));
  const shorter = id(input({ mtaSts: { mode: 'enforce', maxAgeSeconds: 86400 } }));
  const otherMx = id(input({ hostname: 'mx2.example.org' }));
  assert.equal(new Set([base, testing, none, shorter, otherMx]).size, 5);
  for (const txt of [base, testing, none]) assert.match(txt, /^v=STSv1; id=[A-Za-z0-9]{1,32}$/);
});

test('MTA-STS mode none is still published, to withdraw a policy', () => {
  const dns = domainRecords(input({ mtaSts: { mode: 'none', maxAgeSeconds: 86400 } }));
  assert.match(dns.mtaStsPolicy, /\r\nmode: none\r\n/);
  assert.equal(find(dns.records, '_mta-sts.example.org.', 'TXT').length, 1);
  assert.equal(find(dns.records, 'mta-sts.example.org.', 'CNAME').length, 1);
  assert.throws(() => domainRecords(input({ mtaSts: { mode: 'enforce', maxAgeSeconds: 31557601 } })), /max_age/);
});

test('disabled services get the RFC 6186 "not available" SRV form', () => {
  const none = { imap: null, imaps: null, pop3: null, pop3s: null, submission: null, submissions: null };
  const dns = domainRecords(input({ ports: none }));
  const srv = dns.records.filter((r) => r.type === 'SRV');
  assert.equal(srv.length, 6);
  for (const rec of srv) assert.equal(rec.value, '0 0 0 .', rec.name);

  const some = domainRecords(input({ ports: { ...none, imaps: 10993, pop3: 110 } })).records;
  assert.equal(only(some, '_imaps._tcp.example.org.', 'SRV').value, '0 1 10993 mail.example.org.');
  assert.equal(only(some, '_pop3._tcp.example.org.', 'SRV').value, '10 1 110 mail.example.org.');
  assert.equal(only(some, '_imap._tcp.example.org.', 'SRV').value, '0 0 0 .');
  assert.throws(() => domainRecords(input({ ports: { ...none, imap: 70000 } })), /port/);
});

test('A/AAAA only for a host inside the domain', () => {
  const outside = domainRecords(input({ hostname: 'mx.provider.net' })).records;
  assert.equal(outside.filter((r) => r.type === 'A' || r.type === 'AAAA').length, 0);
  assert.equal(only(outside, 'example.org.', 'MX').value, '10 mx.provider.net.');
  assert.equal(only(outside, 'autoconfig.example.org.', 'CNAME').value, 'mx.provider.net.');

  const noAddresses = domainRecords(input({ ipv4: undefined, ipv6: undefined })).records;
  assert.equal(noAddresses.filter((r) => r.type === 'A' || r.type === 'AAAA').length, 0);

  assert.throws(() => domainRecords(input({ ipv4: ['2001:db8::1'] })), /IPv4/);
});

test('no CNAME is made at the mail host\'s own name', () => {
  const r = domainRecords(input({ hostname: 'autoconfig.example.org' })).records;
  assert.equal(find(r, 'autoconfig.example.org.', 'CNAME').length, 0);
  assert.equal(only(r, 'autoconfig.example.org.', 'A').value, '192.0.2.25');
  assert.equal(only(r, 'autodiscover.example.org.', 'CNAME').value, 'autoconfig.example.org.');
});

test('invalid input is refused', () => {
  assert.throws(() => domainRecords(input({ domain: 'exämple.org' })), /domain/);
  assert.throws(() => domainRecords(input({ hostname: 'mail_host.example.org' })), /hostname/);
  assert.throws(() => domainRecords(input({ dkim: [{ selector: 's', publicKeyDerBase64: 'not base64!', keyType: 'rsa' }] })), /base64/);
  assert.throws(() => domainRecords(input({ dkim: [{ selector: 's', publicKeyDerBase64: ed.spki, keyType: 'rsa' }] })), /expected rsa/);
  assert.throws(() => domainRecords(input({ dkim: [{ selector: 's', publicKeyDerBase64: rsa2048, keyType: 'ed25519' }] })), /expected ed25519/);
  // The input is SPKI for both types; 32 bare bytes are not taken on trust.
  assert.throws(() => domainRecords(input({ dkim: [{ selector: 's', publicKeyDerBase64: ed.raw, keyType: 'ed25519' }] })), /not a DER SubjectPublicKeyInfo/);
  assert.throws(() => domainRecords(input({ dkim: [{ selector: 'bad_sel', publicKeyDerBase64: rsa2048, keyType: 'rsa' }] })), /selector/);
  const twice = { selector: 'a', publicKeyDerBase64: rsa2048, keyType: 'rsa' as const };
  assert.throws(() => domainRecords(input({ dkim: [twice, twice] })), /twice/);
  assert.throws(() => domainRecords(input({ reportAddress: 'nobody' })), /report address/);
  assert.throws(() => domainRecords(input({ ttl: -1 })), /TTL/);
});

test('report address characters that would break the tag list are percent-encoded', () => {
  const r = domainRecords(input({ reportAddress: 'dmarc,reports!x@example.org' })).records;
  assert.equal(only(r, '_dmarc.example.org.', 'TXT').text, 'v=DMARC1; p=quarantine; rua=mailto:dmarc%2Creports%21x@example.org');
  assert.equal(only(r, '_smtp._tls.example.org.', 'TXT').text, 'v=TLSRPTv1; rua=mailto:dmarc%2Creports%21x@example.org');
});

test('renderZone: absolute names, aligned columns, comment headers, policy at the end', () => {
  const dns = domainRecords(input());
  const text = renderZone('example.org', dns);
  assert.doesNotMatch(text, /\$ORIGIN/);
  const recordLines = text.split('\n').filter((l) => l !== '' && !l.startsWith(';'));
  assert.equal(recordLines.length, dns.records.length, 'one record a line');
  // The TTL column starts at the same offset on every line.
  const ttlColumns = new Set(recordLines.map((l) => l.search(/ 3600 /)));
  assert.equal(ttlColumns.size, 1);
  for (const rec of dns.records) {
    assert.ok(recordLines.some((l) => l.startsWith(rec.name) && l.endsWith(` ${rec.type.padEnd(5)}  ${rec.value}`)), rec.name);
  }
  for (const header of ['; inbound mail', '; SPF', '; DKIM selector fe202611', '; DMARC', '; MTA-STS', '; TLS-RPT']) {
    assert.ok(text.split('\n').includes(header), header);
  }
  const tail = text.slice(text.indexOf('; MTA-STS policy:'));
  assert.match(tail, /https:\/\/mta-sts\.example\.org\/\.well-known\/mta-sts\.txt/);
  assert.match(tail, /^;\s+mode: enforce$/m);
  assert.match(tail, /^;\s+max_age: 604800$/m);
  assert.throws(() => renderZone('example.net', dns), /outside zone/);
});

test('renderZone output is accepted by named-checkzone', (t) => {
  if (spawnSync('named-checkzone', ['-v']).error) {
    t.skip('named-checkzone not installed');
    return;
  }
  const dns = domainRecords(input({ dkim: [...input().dkim, { selector: 'big', publicKeyDerBase64: rsaKey(4096), keyType: 'rsa' }] }));
  const soa = [
    '$TTL 3600',
    'example.org. 3600 IN SOA ns1.example.org. hostmaster.example.org. 2026112301 7200 3600 1209600 3600',
    'example.org. 3600 IN NS ns1.example.org.',
    'ns1.example.org. 3600 IN A 192.0.2.53',
    '',
  ].join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'fe-dns-'));
  try {
    const file = join(dir, 'example.org.zone');
    writeFileSync(file, soa + renderZone('example.org', dns));
    // Strict checks: bad names, MX/SRV targets without addresses, CNAME misuse all fail the load.
    const strict = ['-k', 'fail', '-m', 'fail', '-M', 'fail', '-n', 'fail', '-S', 'fail', '-i', 'full'];
    const out = execFileSync('named-checkzone', [...strict, 'example.org', file], { encoding: 'utf8' });
    assert.match(out, /loaded serial 2026112301/);
    assert.match(out, /^OK$/m);

    // Read the zone back the way named parsed it and compare with the data we meant.
    const dump = execFileSync('named-checkzone', ['-D', '-o', '-', 'example.org', file], { encoding: 'utf8' });
    const parsed = dump.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';'));
    assert.equal(parsed.length, dns.records.length + 3, 'no record lost or merged');
    for (const rec of dns.records.filter((r) => r.type === 'TXT')) {
      const line = parsed.find((l) => l.split(/\s+/)[0] === rec.name && /\sTXT\s/.test(l));
      assert.ok(line, `TXT ${rec.name} present`);
      const rdata = line.slice(line.indexOf('"'));
      assert.equal(txtStrings(rdata).join(''), rec.text, rec.name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
