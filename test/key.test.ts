// fe key through the real CLI: accepted keys land in fe.yml with their fingerprint; bad ones never do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as openpgp from 'openpgp';
import { workspace } from './helpers/fe.js';
import { expiredKey, goodKey, keyWithExpiredEncryptionSubkey, revokedKey, signOnlyKey, twoKeysArmored } from './helpers/pgp-fixtures.js';

const BASE = 'hostname: mail.example.org\ndata_dir: ./data\ndomains:\n  example.org:\n    aliases:\n      me: {mailbox: true}\n      you: {forward: [x@y.example]}\n';

async function fingerprintOf(armored: string): Promise<string> {
  return (await openpgp.readKey({ armoredKey: armored })).getFingerprint().toUpperCase();
}

test('key add from a file prints the fingerprint and stores the public key in fe.yml', async () => {
  const w = workspace(BASE);
  const key = await goodKey('Me@Example.org');
  const file = path.join(w.dir, 'me.asc');
  writeFileSync(file, key.publicArmored);
  const fpr = await fingerprintOf(key.publicArmored);
  const out = await w.ok(['key', 'add', 'me@example.org', file]);
  assert.match(out, new RegExp(`^me@example\\.org: key ${fpr} \\(`, 'm'));
  const yaml = w.read();
  assert.match(yaml, new RegExp(`keys:\\n  me@example\\.org:\\n    fingerprint: ${fpr}\\n    key: \\|\\n      -----BEGIN PGP PUBLIC KEY BLOCK-----`));
  assert.doesNotMatch(yaml, /PRIVATE KEY/);
  const list = JSON.parse(await w.ok(['key', 'list', '--json'])) as { address: string; fingerprint: string }[];
  assert.deepEqual(list, [{ address: 'me@example.org', fingerprint: fpr }]);
  assert.match(await w.ok(['alias', 'list']), new RegExp(`^me@example\\.org\\s+yes\\s+-\\s+${fpr.slice(-16)}$`, 'm'));
  // the stored key reads back as the same key
  const stored = (await import('yaml')).parse(yaml) as { keys: Record<string, { key: string }> };
  assert.equal(await fingerprintOf(stored.keys['me@example.org']!.key), fpr);
  assert.equal((await w.fe(['config', 'check'])).code, 0);
});

test('key add reads standard input with -, armored or binary, and replaces an earlier key', async () => {
  const w = workspace(BASE);
  const first = await goodKey('me@example.org');
  await w.ok(['key', 'add', 'me@example.org', '-'], { stdin: first.publicArmored });
  const second = await goodKey('me@example.org');
  const out = await w.ok(['key', 'add', 'ME@example.org', '-'], { stdin: second.publicBinary });
  const fpr2 = await fingerprintOf(second.publicArmored);
  assert.match(out, new RegExp(`key ${fpr2}`));
  assert.match(out, new RegExp(`replaced the earlier key ${await fingerprintOf(first.publicArmored)}`));
  const list = JSON.parse(await w.ok(['key', 'list', '--json'])) as { fingerprint: string }[];
  assert.deepEqual(list.map((k) => k.fingerprint), [fpr2]);
});

test('key add refuses private, expired, revoked, sign-only and wrong-address keys, leaving fe.yml alone', async () => {
  const w = workspace(BASE);
  const before = w.read();
  const good = await goodKey('me@example.org');
  const cases: [string | Uint8Array, RegExp][] = [
    [good.privateArmored, /private key/i],
    [(await expiredKey('me@example.org')).publicArmored, /expired/i],
    [(await revokedKey('me@example.org')).publicArmored, /revoked/i],
    [(await signOnlyKey('me@example.org')).publicArmored, /encrypt/i],
    [(await keyWithExpiredEncryptionSubkey('me@example.org')).publicArmored, /encrypt|expired/i],
    [(await goodKey('someone@else.example')).publicArmored, /someone@else\.example/],
    [await twoKeysArmored('me@example.org', 'me@example.org'), /exactly one|more than one|2 keys/i],
    ['this is not a key\n', /OpenPGP|not a key|could not read/i],
    ['', /empty|no key|nothing/i],
  ];
  for (const [input, reason] of cases) {
    const r = await w.fe(['key', 'add', 'me@example.org', '-'], { stdin: input });
    assert.equal(r.code, 1, `${reason}: ${r.stdout}`);
    assert.match(r.stderr, /^fe: error: key refused: /);
    assert.match(r.stderr, reason);
    assert.doesNotMatch(r.stderr, /-----BEGIN|\n\s+at /, 'no key material, no stack trace');
  }
  assert.equal(w.read(), before);
});

test('key add needs an existing alias and a readable file; key remove round trip', async () => {
  const w = workspace(BASE);
  const key = await goodKey(['nobody@example.org', 'me@example.org']);
  const noAlias = await w.fe(['key', 'add', 'nobody@example.org', '-'], { stdin: key.publicArmored });
  assert.equal(noAlias.code, 1);
  assert.match(noAlias.stderr, /nobody@example\.org is not an alias/);
  const missing = await w.fe(['key', 'add', 'me@example.org', path.join(w.dir, 'nope.asc')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read .*nope\.asc: no such file/);
  const catchAll = await w.fe(['key', 'add', '*@example.org', '-'], { stdin: key.publicArmored });
  assert.equal(catchAll.code, 1);
  assert.match(catchAll.stderr, /not the catch-all/);

  await w.ok(['key', 'add', 'me@example.org', '-'], { stdin: key.publicArmored });
  const removed = await w.ok(['key', 'remove', 'me@example.org']);
  assert.match(removed, new RegExp(`removed key ${await fingerprintOf(key.publicArmored)} of me@example\\.org`));
  assert.doesNotMatch(w.read(), /keys:\s*\n\s+me@/);
  const again = await w.fe(['key', 'remove', 'me@example.org']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /has no key/);

  // removing the alias takes its key with it, so fe.yml never names a key for a missing alias
  await w.ok(['key', 'add', 'me@example.org', '-'], { stdin: key.publicArmored });
  await w.ok(['alias', 'remove', 'me@example.org']);
  assert.deepEqual(JSON.parse(await w.ok(['key', 'list', '--json'])), []);
});

test('config check flags a stored key whose fingerprint was edited by hand', async () => {
  const w = workspace(BASE);
  const key = await goodKey('me@example.org');
  await w.ok(['key', 'add', 'me@example.org', '-'], { stdin: key.publicArmored });
  const fpr = await fingerprintOf(key.publicArmored);
  w.write(w.read().replace(fpr, 'A'.repeat(40)));
  const r = await w.fe(['config', 'check']);
  assert.equal(r.code, 1);
  assert.match(r.stdout, new RegExp(`keys\\.me@example\\.org\\.fingerprint: does not match the key \\(which is ${fpr}\\)`));
});
