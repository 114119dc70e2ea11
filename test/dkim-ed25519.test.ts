// Ed25519 DKIM (RFC 8463) beside RSA: key files, DNS records, the active list in fe.yml, fe config
// check, and signatures from src/dkim/sign.ts checked by an independent verifier (Debian's
// python3-dkim, fed the TXT records directly instead of DNS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config/file.js';
import { activeSigners, dkimRecord, signMessage, type DkimSigner } from '../src/dkim/sign.js';
import { workspace } from './helpers/fe.js';

interface JsonRecord {
  name: string;
  type: string;
  text?: string;
}
interface ListRow {
  selector: string;
  algorithm: string | null;
  active: boolean;
  keyFile: boolean;
}

function thisMonthSelector(): string {
  const now = new Date();
  return `fe${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
}

const first = thisMonthSelector();

async function list(w: ReturnType<typeof workspace>): Promise<[string, string | null, boolean][]> {
  const rows = JSON.parse(await w.ok(['dkim', 'list', 'example.org', '--json'])) as ListRow[];
  return rows.map((r) => [r.selector, r.algorithm, r.active]);
}

/** The domain's DKIM TXT records from `fe domain dns`, keyed by owner name without the root dot. */
async function dkimRecords(w: ReturnType<typeof workspace>): Promise<Record<string, string>> {
  const dns = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: JsonRecord[] };
  const out: Record<string, string> = {};
  for (const r of dns.records) if (r.name.includes('._domainkey.')) out[r.name.replace(/\.$/, '')] = r.text!;
  return out;
}

test('rotate --algorithm ed25519 publishes the raw 32-byte key and signs beside RSA', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  const ed = `${first}b`;
  const out = await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']);
  assert.match(out, new RegExp(`new Ed25519 DKIM selector ${ed} for example\\.org`));
  assert.match(out, new RegExp(`^${ed}\\._domainkey\\.example\\.org\\. 3600 IN TXT "v=DKIM1; k=ed25519; p=`, 'm'));
  assert.match(out, new RegExp(`signing with ${ed} from now on, beside ${first}$`, 'm'), 'RSA keeps signing');

  // The key files: PKCS#8 private key 0600, SPKI public key, and the record carries the raw key (RFC 8463 4.2).
  const dir = path.join(w.dataDir, 'dkim', 'example.org');
  const keyPem = readFileSync(path.join(dir, `${ed}.key`), 'utf8');
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.equal(statSync(path.join(dir, `${ed}.key`)).mode & 0o777, 0o600);
  assert.equal(createPrivateKey(keyPem).asymmetricKeyType, 'ed25519');
  const pub = createPublicKey(readFileSync(path.join(dir, `${ed}.pub`), 'utf8'));
  assert.equal(pub.asymmetricKeyType, 'ed25519');
  const records = await dkimRecords(w);
  const text = records[`${ed}._domainkey.example.org`];
  assert.ok(text, JSON.stringify(records));
  const p = /^v=DKIM1; k=ed25519; p=([A-Za-z0-9+/]+=*)$/.exec(text)?.[1];
  assert.ok(p, text);
  const raw = Buffer.from(p, 'base64');
  assert.equal(raw.length, 32, 'the bare key, not its 44-byte SPKI');
  assert.deepEqual(raw, Buffer.from(pub.export({ format: 'jwk' }).x!, 'base64url'), 'p= is the key in the .pub file');
  assert.match(records[`${first}._domainkey.example.org`]!, /^v=DKIM1; k=rsa; p=/, 'the RSA record is still there');

  // Written as a flow list, read back the same by every command.
  assert.match(w.read(), new RegExp(`dkim:\\n {6}active: \\[${first}, ${ed}\\]\\n {6}published: \\[${first}, ${ed}\\]\\n`));
  assert.deepEqual(await list(w), [
    [first, 'rsa', true],
    [ed, 'ed25519', true],
  ]);
  const table = await w.ok(['dkim', 'list', 'example.org']);
  assert.match(table, /^SELECTOR\s+ALGORITHM\s+SIGNING\s+KEY FILE$/m);
  assert.match(table, new RegExp(`^${ed}\\s+ed25519\\s+yes\\s+present$`, 'm'));
  const domains = JSON.parse(await w.ok(['domain', 'list', '--json'])) as { dkimSelectors: string[] }[];
  assert.deepEqual(domains[0]!.dkimSelectors, [first, ed]);
  assert.match(await w.ok(['config', 'check']), /^OK /m);
  const config = loadConfig(w.config);
  assert.deepEqual(config.domains.get('example.org')!.dkim.active, [first, ed]);

  // An active Ed25519 key is not retired from under the signer either.
  const refuse = await w.fe(['dkim', 'retire', 'example.org', ed]);
  assert.equal(refuse.code, 1);
  assert.match(refuse.stderr, /is the selector signing mail .* --algorithm ed25519/);
  const bad = await w.fe(['dkim', 'rotate', 'example.org', '--algorithm', 'dsa']);
  assert.equal(bad.code, 2, 'an unknown algorithm is a usage error');
});

test('each algorithm rotates on its own; activate replaces the same algorithm only', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  const [b, c, d, e] = ['b', 'c', 'd', 'e'].map((s) => `${first}${s}`) as [string, string, string, string];
  await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']); // b
  const again = await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']); // c replaces b
  assert.match(again, new RegExp(`signing with ${c} from now on, beside ${first}; ${b} stays published until: fe dkim retire example\\.org ${b}`));
  assert.deepEqual(await list(w), [
    [first, 'rsa', true],
    [b, 'ed25519', false],
    [c, 'ed25519', true],
  ]);
  await w.ok(['dkim', 'rotate', 'example.org']); // d: RSA replaces the first RSA key, Ed25519 stays
  assert.deepEqual((await list(w)).filter((r) => r[2]).map((r) => r[0]), [c, d], 'in published order');
  assert.match(w.read(), new RegExp(`active: \\[${d}, ${c}\\]`), 'RSA listed first');

  const staged = await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519', '--stage']); // e
  assert.match(staged, new RegExp(`still signing with ${d}, ${c}; once the record is visible: fe dkim activate example\\.org ${e}`));
  assert.deepEqual((await list(w)).filter((r) => r[2]).map((r) => r[0]), [c, d]);

  assert.match(await w.ok(['dkim', 'activate', 'example.org', first]), new RegExp(`signing with ${first} from now on, beside ${c}; ${d} stays published`));
  assert.deepEqual((await list(w)).filter((r) => r[2]).map((r) => r[0]), [first, c]);
  await w.ok(['dkim', 'activate', 'example.org', e]);
  assert.deepEqual((await list(w)).filter((r) => r[2]).map((r) => r[0]), [first, e]);
  await w.ok(['dkim', 'activate', 'example.org', b]);
  assert.deepEqual((await list(w)).filter((r) => r[2]).map((r) => r[0]), [first, b]);
  assert.equal((await dkimRecords(w))[`${e}._domainkey.example.org`]?.startsWith('v=DKIM1; k=ed25519; p='), true, 'the replaced key stays published');

  // Retiring the Ed25519 keys and going back to one active selector writes a plain scalar again.
  await w.ok(['dkim', 'retire', 'example.org', c]);
  await w.ok(['dkim', 'retire', 'example.org', e]);
  w.write(w.read().replace(`active: [${first}, ${b}]`, `active: ${first}`));
  await w.ok(['dkim', 'activate', 'example.org', d]);
  assert.match(w.read(), new RegExp(`^ {6}active: ${d}$`, 'm'));
});

test('switching active between one selector and a list keeps the comment on it', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  w.write(w.read().replace(/(active: fe\d{6})\n/, '$1 # who signs\n'));
  await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']);
  assert.match(w.read(), new RegExp(`^ {6}active: \\[${first}, ${first}b\\] # who signs$`, 'm'));
  w.write(w.read().replace(`[${first}, ${first}b]`, `[${first}b]`)); // a one-item list, written by hand
  await w.ok(['dkim', 'activate', 'example.org', first]);
  assert.match(w.read(), new RegExp(`^ {6}active: \\[${first}, ${first}b\\] # who signs$`, 'm'), 'RSA first');
  w.write(w.read().replace(`[${first}, ${first}b]`, `[${first}]`));
  await w.ok(['dkim', 'rotate', 'example.org']);
  assert.match(w.read(), new RegExp(`^ {6}active: ${first}c # who signs$`, 'm'), 'one selector: a plain scalar again');
});

test('Ed25519 alone signs, with a note that RSA-only receivers see unsigned mail', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  w.write(w.read().replace(/active: fe\d{6}\n/, 'active: null\n'));
  const out = await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519', '--stage']);
  assert.match(out, new RegExp(`signing with ${first}b from now on`), 'a domain that signed with nothing starts with the staged key');
  assert.match(out, /note: no RSA key signs/);
  assert.match(w.read(), new RegExp(`^ {6}active: ${first}b$`, 'm'));
});

test('config check: two active keys of one algorithm, and what the schema refuses', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['dkim', 'rotate', 'example.org', '--stage']); // a second RSA key, published only
  await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519', '--stage']);
  const good = w.read();
  const b = `${first}b`;
  const c = `${first}c`;

  w.write(good.replace(`active: ${first}`, `active: [${first}, ${b}]`));
  let r = await w.fe(['config', 'check']);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, new RegExp(`domains\\.example\\.org\\.dkim\\.active: ${first} and ${b} are both RSA keys; a domain signs with at most one RSA and one Ed25519 key`));

  w.write(good.replace(`active: ${first}`, `active: [${first}, ${c}]`));
  r = await w.fe(['config', 'check']);
  assert.equal(r.code, 0, r.stdout);

  for (const [active, reason] of [
    [`[${first}, ${b}, ${c}]`, /3 selectors sign; at most two may/],
    [`[${first}, ${first}]`, new RegExp(`"${first}" is listed twice`)],
    [`[${first}, other]`, /selector "other" signs mail but is not in published/],
    [`[${first}, Bad_Sel]`, /"Bad_Sel" is not a valid selector/],
  ] as const) {
    w.write(good.replace(`active: ${first}`, `active: ${active}`));
    r = await w.fe(['config', 'check']);
    assert.equal(r.code, 1, active);
    assert.match(r.stdout, reason, active);
  }
});

// ---- signing, checked by python3-dkim ---------------------------------------------------------

/** The Python that has Debian's dkim module: the one its dkimverify script runs under. */
function dkimPython(): string {
  const script = execFileSync('sh', ['-c', 'command -v dkimverify'], { encoding: 'utf8' }).trim();
  const shebang = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(readFileSync(script, 'utf8'))!;
  return shebang[1]!.endsWith('/env') ? shebang[2]! : shebang[1]!;
}

// Verifies every DKIM-Signature of the message on stdin; DNS answers come from $FE_DKIM_TXT.
const VERIFY = `
import dkim, json, os, sys
records = json.loads(os.environ['FE_DKIM_TXT'])
def dnsfunc(name, timeout=5):
    key = (name.decode() if isinstance(name, bytes) else name).rstrip('.').lower()
    return records.get(key, '').encode()
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
count = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
out = []
for i in range(count):
    try:
        ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
    except dkim.DKIMException as e:
        ok = False
    out.append([d.signature_fields[b's'].decode(), d.signature_fields[b'a'].decode(), ok])
print(json.dumps(out))
`;

function pythonVerify(message: Buffer, records: Record<string, string>): [string, string, boolean][] {
  const out = execFileSync(dkimPython(), ['-c', VERIFY], { input: message, env: { ...process.env, FE_DKIM_TXT: JSON.stringify(records) }, encoding: 'utf8' });
  return JSON.parse(out) as [string, string, boolean][];
}

const MESSAGE = Buffer.from(
  [
    'From: Me <me@example.org>',
    'To: You <you@example.net>,',
    '  Other <other@example.net>',
    'Subject: signed  twice',
    'Date: Mon, 01 Dec 2025 10:00:00 +0000',
    'Message-ID: <sign-test@example.org>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'X-Not-Signed: anything',
    '',
    'Hello there,',
    '',
    'one RSA and one Ed25519 signature.  ',
    '',
    '',
  ].join('\r\n'),
);

test('signMessage: RSA and Ed25519 signatures that python3-dkim verifies; tampering breaks both', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']);
  const config = loadConfig(w.config);
  const signers = activeSigners(config, 'example.org');
  assert.deepEqual(signers.map((s) => [s.selector, s.algorithm]), [
    [first, 'rsa-sha256'],
    [`${first}b`, 'ed25519-sha256'],
  ]);
  const records = await dkimRecords(w);

  // Given Ed25519 first, the RSA signature still goes on top.
  const signed = await signMessage(MESSAGE, 'example.org', [signers[1]!, signers[0]!], { now: new Date('2025-12-01T10:00:05Z') });
  const head = signed.subarray(0, signed.indexOf('\r\n\r\n')).toString('latin1');
  const sigs = head.split(/\r\n(?=\S)/).filter((l) => /^DKIM-Signature:/i.test(l));
  assert.equal(sigs.length, 2);
  assert.match(sigs[0]!, /a=rsa-sha256;/);
  assert.match(sigs[1]!, /a=ed25519-sha256;/);
  assert.ok(signed.subarray(signed.length - MESSAGE.length).equals(MESSAGE), 'the message itself is untouched');
  for (const sig of sigs) {
    assert.match(sig, /c=relaxed\/relaxed;/);
    assert.match(sig, /d=example\.org;/);
    assert.match(sig, /t=1764583205;/);
    const h = /h=([^;]+);/.exec(sig.replace(/\r\n\s+/g, ' '))![1]!.split(':').map((n) => n.trim().toLowerCase());
    assert.equal(h.filter((n) => n === 'from').length, 2, `From is oversigned: ${h.join(':')}`);
    for (const n of ['to', 'subject', 'date', 'message-id', 'mime-version', 'content-type']) assert.ok(h.includes(n), n);
    assert.ok(!h.includes('x-not-signed'));
  }

  assert.deepEqual(pythonVerify(signed, records), [
    [first, 'rsa-sha256', true],
    [`${first}b`, 'ed25519-sha256', true],
  ]);

  // A changed body, a changed signed header, or a From added on top all fail both signatures.
  const tampered = [
    Buffer.from(signed.toString('latin1').replace('Hello there', 'Hello their'), 'latin1'),
    Buffer.from(signed.toString('latin1').replace('Subject: signed  twice', 'Subject: signed thrice'), 'latin1'),
    Buffer.concat([Buffer.from('From: Someone Else <boss@example.org>\r\n'), signed]),
  ];
  for (const [i, m] of tampered.entries()) {
    assert.deepEqual(pythonVerify(m, records).map((r) => r[2]), [false, false], `tampering ${i}`);
  }
  // An unsigned header may change; the signatures still hold.
  const harmless = Buffer.from(signed.toString('latin1').replace('X-Not-Signed: anything', 'X-Not-Signed: something else'), 'latin1');
  assert.deepEqual(pythonVerify(harmless, records).map((r) => r[2]), [true, true]);
  // And a record with another key does not verify it.
  const otherKey = { ...records, [`${first}b._domainkey.example.org`]: records[`${first}._domainkey.example.org`]!.replace('k=rsa', 'k=ed25519') };
  assert.deepEqual(pythonVerify(signed, otherKey).map((r) => r[2]), [true, false]);
});

test('signMessage and activeSigners refuse what would go out badly signed', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  const config = loadConfig(w.config);
  const [rsa] = activeSigners(config, 'example.org') as [DkimSigner];
  await assert.rejects(signMessage(MESSAGE, 'example.org', []), /no signing key for example\.org/);
  await assert.rejects(signMessage(MESSAGE, 'example.org', [rsa, { ...rsa, selector: 'other' }]), /two rsa-sha256 signers/);
  await assert.rejects(signMessage(MESSAGE, 'example.org', [{ ...rsa, algorithm: 'ed25519-sha256' }]), /failed: .*key type/i);
  await assert.rejects(signMessage(Buffer.from('From: me@example.org'), 'example.org', [rsa]), /made 0 of 1 signatures/);
  assert.throws(() => activeSigners(config, 'other.example'), /other\.example is not a domain fe serves/);
  rmSync(path.join(w.dataDir, 'dkim', 'example.org', `${first}.key`));
  assert.throws(() => activeSigners(config, 'example.org'), new RegExp(`signing key of example\\.org selector ${first} is missing`));
});

test('activeSigners keeps parsed keys only while the key file is unchanged: a key replaced in place signs the next message', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  const config = loadConfig(w.config);
  const file = path.join(w.dataDir, 'dkim', 'example.org', `${first}.key`);
  const [before] = activeSigners(config, 'example.org') as [DkimSigner];
  assert.equal(activeSigners(config, 'example.org')[0], before, 'an unchanged file is not parsed again');
  const publicOf = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('base64');
  assert.equal(dkimRecord(before), `v=DKIM1; k=rsa; p=${publicOf(before.privateKey)}`);
  // Another RSA key written over the same selector's file (as a restore from backup would).
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeFileSync(`${file}.new`, other, { mode: 0o600 });
  renameSync(`${file}.new`, file);
  const [after] = activeSigners(config, 'example.org') as [DkimSigner];
  assert.equal(after.privateKey, other, 'the new key is the one that signs');
  assert.equal(dkimRecord(after), `v=DKIM1; k=rsa; p=${publicOf(other)}`, 'and the self-check uses its public half');
  assert.notEqual(dkimRecord(after), dkimRecord(before));
});

test('signMessage without a given time: t= is the one signed even when the clock crosses a rounded second mid-signing', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['dkim', 'rotate', 'example.org', '--algorithm', 'ed25519']);
  const signers = activeSigners(loadConfig(w.config), 'example.org');
  const records = await dkimRecords(w);
  // mailauth rounds Date.now() to seconds each time it writes t=; a clock that reads x.499 s and
  // then x.500 s is the moment a signature used to go bad (about 1 signature in 400).
  const realNow = Date.now;
  let reads = 0;
  const base = Math.floor(realNow() / 1000) * 1000 + 499;
  Date.now = () => base + (reads++ % 2);
  let signed: Buffer;
  try {
    signed = await signMessage(MESSAGE, 'example.org', signers);
  } finally {
    Date.now = realNow;
  }
  assert.deepEqual(pythonVerify(signed, records).map((r) => r[2]), [true, true], 'both signatures verify');
});
