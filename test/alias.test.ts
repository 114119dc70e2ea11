// fe alias through the real CLI: forwarding and mailbox aliases, matching rules, passwords, limits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { filesUnder, workspace } from './helpers/fe.js';

const BASE = 'hostname: mail.example.org\ndata_dir: ./data\ndomains:\n  example.org:\n    aliases: {}\n';

interface Listed {
  address: string;
  mailbox: boolean;
  forward: string[];
}

function passwordFrom(stdout: string): string {
  const m = /shown this once[^\n]*\n\s+(\S+)/.exec(stdout);
  assert.ok(m, `a password is printed: ${stdout}`);
  return m[1]!;
}

test('forward, mailbox, both and catch-all aliases round trip through list --json', async () => {
  const w = workspace(BASE);
  await w.ok(['alias', 'add', 'shop@example.org', '--forward', 'a@gmail.example, B@Other.Example']);
  await w.ok(['alias', 'add', 'Me@Example.org', '--mailbox']);
  await w.ok(['alias', 'add', 'both@example.org', '--mailbox', '--forward', 'a@gmail.example']);
  await w.ok(['alias', 'add', '*@example.org', '--forward', 'me@example.org']);
  const list = JSON.parse(await w.ok(['alias', 'list', 'example.org', '--json'])) as Listed[];
  assert.deepEqual(
    list.map((a) => [a.address, a.mailbox, a.forward]),
    [
      ['shop@example.org', false, ['a@gmail.example', 'B@other.example']],
      ['me@example.org', true, []],
      ['both@example.org', true, ['a@gmail.example']],
      ['*@example.org', false, ['me@example.org']],
    ],
  );
  const table = await w.ok(['alias', 'list']);
  assert.match(table, /^both@example\.org\s+yes\s+a@gmail\.example\s+-$/m);
  await w.ok(['alias', 'remove', 'SHOP@example.org']);
  await w.ok(['alias', 'remove', '*@example.org']);
  const after = JSON.parse(await w.ok(['alias', 'list', '--json'])) as Listed[];
  assert.deepEqual(after.map((a) => a.address), ['me@example.org', 'both@example.org']);
  const gone = await w.fe(['alias', 'remove', 'shop@example.org']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /shop@example\.org is not an alias/);
});

test('matching: case-insensitive, me+tag reaches me, catch-all takes the rest', async () => {
  const w = workspace(BASE);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox']);
  await w.ok(['alias', 'add', 'me-special@example.org', '--forward', 'x@y.example']);
  const resolve = async (address: string) => JSON.parse((await w.fe(['alias', 'resolve', address, '--json'])).stdout) as { accepted: boolean; alias?: string; via?: string; tag?: string; reason?: string };
  for (const spelling of ['me@example.org', 'ME@EXAMPLE.ORG', 'Me@Example.Org.']) {
    const plain = await resolve(spelling);
    assert.deepEqual([plain.accepted, plain.alias, plain.via], [true, 'me@example.org', 'exact'], spelling);
  }
  const tagged = await resolve('me+Newsletters@example.org');
  assert.deepEqual([tagged.alias, tagged.via, tagged.tag], ['me@example.org', 'subaddress', 'newsletters']);
  const unknown = await w.fe(['alias', 'resolve', 'nobody@example.org']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stdout, /rejected \(no alias nobody@example\.org\)/);
  const foreign = await resolve('me@elsewhere.example');
  assert.deepEqual([foreign.accepted, foreign.reason], [false, 'foreign-domain']);
  await w.ok(['alias', 'add', '*@example.org', '--forward', 'me@example.org']);
  const caught = await resolve('nobody+x@example.org');
  assert.deepEqual([caught.alias, caught.via], ['*@example.org', 'catch-all']);
  assert.match(await w.ok(['alias', 'resolve', 'me-special@example.org']), /-> me-special@example\.org: forward to x@y\.example/);
});

test('bad aliases and targets are refused with a reason, the file untouched', async () => {
  const w = workspace(BASE);
  await w.ok(['alias', 'add', 'me@example.org', '--forward', 'x@y.example']);
  const before = w.read();
  const cases: [string[], number, RegExp][] = [
    [['alias', 'add', 'me+x@example.org', '--mailbox'], 1, /cannot contain it/],
    [['alias', 'add', 'no-at-sign', '--mailbox'], 1, /not an email address/],
    [['alias', 'add', 'a..b@example.org', '--mailbox'], 1, /not a valid local part/],
    [['alias', 'add', `${'x'.repeat(65)}@example.org`, '--mailbox'], 1, /longer than 64/],
    [['alias', 'add', 'a*b@example.org', '--mailbox'], 1, /"\*" is allowed only alone/],
    [['alias', 'add', 'x@unknown.example', '--mailbox'], 1, /unknown\.example is not a domain in/],
    [['alias', 'add', 'x@example.org', '--forward', 'nobody'], 1, /"nobody" is not an email address/],
    [['alias', 'add', 'x@example.org', '--forward', 'ok@a.example,bad@'], 1, /"bad@" is not an email address/],
    [['alias', 'add', 'loop@example.org', '--forward', 'LOOP@example.org'], 1, /cannot forward to itself/],
    [['alias', 'add', 'ME@example.org', '--mailbox'], 1, /me@example\.org already exists \(forward to x@y\.example\)/],
    [['alias', 'add', 'x@example.org'], 2, /give --forward ADDRESSES, --mailbox, or both/],
    [['alias', 'add', 'x@example.org', '--forward', 'a@b.example', '--password-stdin'], 2, /--password-stdin needs --mailbox/],
  ];
  for (const [args, code, message] of cases) {
    const r = await w.fe(args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
  assert.equal(w.read(), before);
});

test('a mailbox password is printed once and stored nowhere in clear', async () => {
  const w = workspace(BASE);
  const out = await w.ok(['alias', 'add', 'me@example.org', '--mailbox']);
  const password = passwordFrom(out);
  assert.ok(password.replace(/-/g, '').length >= 24, 'long random password');
  const keyFile = path.join(w.dataDir, 'mailboxes', 'example.org', 'me', 'key.json');
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(path.dirname(keyFile)).mode & 0o777, 0o700);
  for (const file of [w.config, ...filesUnder(w.dataDir)]) {
    const bytes = readFileSync(file);
    assert.equal(bytes.includes(password), false, `${file} does not hold the password`);
    assert.equal(bytes.includes(password.replace(/-/g, '')), false, `${file} does not hold it without dashes`);
  }
  const second = await w.ok(['alias', 'add', 'you@example.org', '--mailbox']);
  assert.notEqual(passwordFrom(second), password);
  const list = await w.ok(['alias', 'list']);
  assert.equal(list.includes(password), false, 'listing never shows it again');
});

test('--password-stdin sets the password; passwd needs the current one', async () => {
  const w = workspace(BASE);
  const short = await w.fe(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'short\n' });
  assert.equal(short.code, 1);
  assert.match(short.stderr, /shorter than 12 characters/);
  const out = await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
  assert.doesNotMatch(out, /shown this once/, 'a given password is not echoed');
  const keyFile = path.join(w.dataDir, 'mailboxes', 'example.org', 'me', 'key.json');
  const keyBefore = readFileSync(keyFile);

  const wrong = await w.fe(['alias', 'passwd', 'me@example.org', '--password-stdin'], { stdin: 'not the password at all\nanother long password\n' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /wrong password for me@example\.org; nothing was changed/);
  assert.deepEqual(readFileSync(keyFile), keyBefore, 'key file untouched by a wrong password');

  await w.ok(['alias', 'passwd', 'me@example.org', '--password-stdin'], { stdin: 'correct horse battery staple\na brand new passphrase\n' });
  const oldAgain = await w.fe(['alias', 'passwd', 'me@example.org', '--password-stdin'], { stdin: 'correct horse battery staple\nwhatever whatever\n' });
  assert.equal(oldAgain.code, 1, 'the old password no longer works');
  const generated = await w.ok(['alias', 'passwd', 'me@example.org', '--password-stdin'], { stdin: 'a brand new passphrase\n' });
  const fresh = /new password \(shown this once\):\n\s+(\S+)/.exec(generated)![1]!;
  await w.ok(['alias', 'passwd', 'me@example.org', '--password-stdin'], { stdin: `${fresh}\nfinal passphrase 123\n` });
  const dirFiles = filesUnder(path.dirname(keyFile)).map((f) => path.basename(f));
  assert.deepEqual(dirFiles, ['key.json'], 'no staged or temp files left');

  const notMailbox = await w.fe(['alias', 'add', 'fw@example.org', '--forward', 'a@b.example']);
  assert.equal(notMailbox.code, 0);
  const r = await w.fe(['alias', 'passwd', 'fw@example.org', '--password-stdin'], { stdin: 'x\n' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not a mailbox alias/);
});

test('removing and re-adding a mailbox alias never orphans its mail', async () => {
  const w = workspace(BASE);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
  const removed = await w.ok(['alias', 'remove', 'me@example.org']);
  assert.match(removed, /its mailbox stays in .*mailboxes\/example\.org\/me/);
  const fresh = await w.fe(['alias', 'add', 'me@example.org', '--mailbox']);
  assert.equal(fresh.code, 1, 'a new password would orphan the old mail');
  assert.match(fresh.stderr, /a mailbox for me@example\.org already exists .*give its password with --password-stdin/);
  const wrong = await w.fe(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'some other password\n' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /this is not its password/);
  const back = await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
  assert.match(back, /attached again/);
});

test('alias creation is rate limited per domain per day, with a clear message', async () => {
  const w = workspace(BASE.replace('domains:', 'limits:\n  alias_creations_per_domain_per_day: 3\ndomains:') + '  other.example: {}\n');
  for (const n of [1, 2, 3]) await w.ok(['alias', 'add', `a${n}@example.org`, '--forward', 'x@y.example']);
  const before = w.read();
  const r = await w.fe(['alias', 'add', 'a4@example.org', '--forward', 'x@y.example']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /3 aliases were created for example\.org in the last 24 hours, the limit \(limits\.alias_creations_per_domain_per_day: 3\); the next one can be added after \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
  assert.equal(w.read(), before);
  // removing does not give the slot back, and other domains have their own allowance
  await w.ok(['alias', 'remove', 'a1@example.org']);
  assert.equal((await w.fe(['alias', 'add', 'a5@example.org', '--forward', 'x@y.example'])).code, 1);
  await w.ok(['alias', 'add', 'a1@other.example', '--forward', 'x@y.example']);
});

test('the default limit is 50 a day', async () => {
  const w = workspace(BASE);
  const adds = Array.from({ length: 51 }, (_, i) => i);
  const results = [];
  // sequential batches keep the lock contention realistic without a 51-way stampede
  for (let i = 0; i < adds.length; i += 10) {
    results.push(...(await Promise.all(adds.slice(i, i + 10).map((n) => w.fe(['alias', 'add', `u${n}@example.org`, '--forward', 'x@y.example'])))));
  }
  assert.equal(results.filter((r) => r.code === 0).length, 50);
  const refused = results.filter((r) => r.code !== 0);
  assert.equal(refused.length, 1);
  assert.match(refused[0]!.stderr, /limit \(limits\.alias_creations_per_domain_per_day: 50\)/);
});
