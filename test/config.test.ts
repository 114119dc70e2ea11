// fe.yml: validation messages with file:line, comment-preserving edits, atomic and serialised writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { workspace } from './helpers/fe.js';
import { loadConfig } from '../src/config/file.js';

const COMMENTED = `# My mail host. Hand-written, please keep my notes.
hostname: mail.example.org   # the MX name

data_dir: ./data

# Domains I serve
domains:
  # my main domain
  example.org:
    aliases:
      # the one I read
      me: {mailbox: true}

      # shopping, goes to the old account
      shop:
        forward: [old@mail.example]   # do not change
`;

async function check(yaml: string) {
  const w = workspace(yaml);
  const r = await w.fe(['config', 'check']);
  return { ...r, w };
}

test('config check accepts a valid file and says so', async () => {
  const { code, stdout } = await check(COMMENTED);
  assert.equal(code, 0);
  assert.match(stdout, /^OK .*fe\.yml: 1 domain\(s\)/m);
});

test('a YAML syntax error names file and line, and exits 1', async () => {
  const { code, stdout, w } = await check('hostname: mail.example.org\ndomains:\n  example.org: [unclosed\n');
  assert.equal(code, 1);
  assert.match(stdout, new RegExp(`^${w.config.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: YAML syntax:`, 'm'));
});

test('an unknown key gets file:line, the field and a did-you-mean', async () => {
  const { code, stdout } = await check('hostname: mail.example.org\ndomains:\n  example.org:\n    aliases:\n      me:\n        mailbx: true\n');
  assert.equal(code, 1);
  assert.match(stdout, /fe\.yml:6:9: domains\.example\.org\.aliases\.me\.mailbx: unknown key "mailbx" \(did you mean "mailbox"\?\)/);
  const top = await check('hostnme: mail.example.org\n');
  assert.match(top.stdout, /fe\.yml:1:1: hostnme: unknown key "hostnme" \(did you mean "hostname"\?\)/);
  assert.match(top.stdout, /hostname: is required/);
});

test('invalid addresses and domains are reported at their line', async () => {
  const yaml = [
    'hostname: mail.example.org',
    'domains:',
    '  example.org:',
    '    aliases:',
    '      shop:',
    '        forward: [ok@a.example, "not an address"]',
    '      "me+x": {mailbox: true}',
    '  "bad domain": {}',
    '  EXAMPLE.org.: {}',
    '',
  ].join('\n');
  const { code, stdout } = await check(yaml);
  assert.equal(code, 1);
  assert.match(stdout, /:6:\d+: domains\.example\.org\.aliases\.shop\.forward\[1\]: "not an address" is not an email address/);
  assert.match(stdout, /:7:\d+: domains\.example\.org\.aliases\.me\+x: .*"\+"/);
  assert.match(stdout, /:8:\d+: domains\.bad domain: .*not a domain name/);
  assert.match(stdout, /:9:\d+: domains\.EXAMPLE\.org\.: is the same domain as "example\.org"/);
});

test('banner: a multi-line notice is kept; escapes, template markers, control characters and huge text are refused', async () => {
  const ok = await check('hostname: mail.example.org\nbanner: |\n  Private mail host.\n  Authorized access only.\n');
  assert.equal(ok.code, 0, ok.stdout);
  assert.equal(loadConfig(ok.w.config).banner, 'Private mail host.\nAuthorized access only.');
  const cases: Array<[string, RegExp]> = [
    ['banner: "Kernel \\\\r on \\\\m"', /banner: contains a backslash/],
    ['banner: "Hi {{ ansible_user }}"', /banner: contains \{\{, \{% or \{#/],
    ['banner: "bell\\a"', /banner: contains a tab or a control character/],
    ['banner: "tab\\there"', /banner: contains a tab or a control character/],
    ['banner: "   "', /banner: (is empty|must be a non-empty string)/],
    [`banner: "${'x'.repeat(2001)}"`, /banner: is longer than 2000 characters/],
    [`banner: "${Array(21).fill('line').join('\\n')}"`, /banner: has more than 20 lines/],
  ];
  for (const [line, want] of cases) {
    const r = await check(`hostname: mail.example.org\n${line}\n`);
    assert.equal(r.code, 1, line);
    assert.match(r.stdout, want, line);
    assert.match(r.stdout, /fe\.yml:2:\d+: /, 'the problem is shown at its line');
  }
});

test('sending settings: send_as only for mailboxes and served domains; save_sent, queue durations and send limits are checked', async () => {
  const yaml = [
    'hostname: mail.example.org',
    'submission: { save_sent: sometimes }',
    'queue: { give_up_after: 5 days, delay_notice_after: 4h, retention_days: 30 }',
    'limits: { send_recipients_per_message: 0 }',
    'domains:',
    '  example.org:',
    '    aliases:',
    '      me: { mailbox: true, send_as: [shop@example.org, "*@example.org", boss@elsewhere.example, "not an address"] }',
    '      shop: { forward: [me@example.org], send_as: [me@example.org] }',
    '',
  ].join('\n');
  const { code, stdout } = await check(yaml);
  assert.equal(code, 1);
  assert.match(stdout, /:2:\d+: submission\.save_sent: must be auto or never/);
  assert.match(stdout, /:3:\d+: queue\.give_up_after: must be a duration such as 90m, 4h or 5d/);
  assert.match(stdout, /:4:\d+: limits\.send_recipients_per_message: must be a whole number from 1 to 1000/);
  assert.match(stdout, /:8:\d+: domains\.example\.org\.aliases\.me\.send_as\[2\]: elsewhere\.example is not in domains/);
  assert.match(stdout, /:8:\d+: domains\.example\.org\.aliases\.me\.send_as\[3\]: "not an address" is not an address or "\*@domain"/);
  assert.match(stdout, /:9:\d+: domains\.example\.org\.aliases\.shop\.send_as: only a mailbox logs in to send mail/);
  assert.doesNotMatch(stdout, /send_as\[[01]\]/, 'an address and a wildcard of a served domain are fine');
  const good = await check(yaml.replace('save_sent: sometimes', 'save_sent: never').replace('5 days', '5d').replace('send_recipients_per_message: 0', 'send_recipients_per_message: 50').replace(', boss@elsewhere.example, "not an address"', '').replace(', send_as: [me@example.org]', ''));
  assert.equal(good.code, 0, good.stdout);
});

test('a mailbox\'s own sending limits and a domain\'s retention_days are checked like the global ones', async () => {
  const yaml = [
    'hostname: mail.example.org',
    'domains:',
    '  example.org:',
    '    retention_days: 4000',
    '    aliases:',
    '      me: { mailbox: true, limits: { send_messages_per_hour: 0, send_recipients_per_day: 5000, send_per_week: 3 } }',
    '      you: { mailbox: true, limits: { send_recipients_per_message: 2000 } }',
    '      shop: { forward: [me@example.org], limits: { send_messages_per_hour: 10 } }',
    '',
  ].join('\n');
  const { code, stdout } = await check(yaml);
  assert.equal(code, 1);
  assert.match(stdout, /:4:\d+: domains\.example\.org\.retention_days: must be a whole number from 0 to 3650/);
  assert.match(stdout, /:6:\d+: domains\.example\.org\.aliases\.me\.limits\.send_messages_per_hour: must be a whole number from 1 to 1000000/);
  assert.match(stdout, /:6:\d+: domains\.example\.org\.aliases\.me\.limits\.send_per_week: unknown key "send_per_week"; known keys: send_messages_per_hour, send_recipients_per_day, send_recipients_per_message/);
  assert.doesNotMatch(stdout, /aliases\.me\.limits\.send_recipients_per_day/, 'a day of 5000 is within range');
  assert.match(stdout, /:7:\d+: domains\.example\.org\.aliases\.you\.limits\.send_recipients_per_message: must be a whole number from 1 to 1000/);
  assert.match(stdout, /:8:\d+: domains\.example\.org\.aliases\.shop\.limits: only a mailbox sends mail/);
  const good = await check(yaml.replace('4000', '7').replace('send_messages_per_hour: 0, ', '').replace(', send_per_week: 3', '').replace('2000', '20').replace(', limits: { send_messages_per_hour: 10 }', ''));
  assert.equal(good.code, 0, good.stdout);
});

test('config check --json gives problems with line, field and severity', async () => {
  const w = workspace('hostname: mail.example.org\nmta_sts: {mode: strict}\n');
  const r = await w.fe(['config', 'check', '--json']);
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout) as { ok: boolean; problems: { line: number; field: string; severity: string; message: string }[] };
  assert.equal(out.ok, false);
  assert.deepEqual(
    out.problems.map((p) => [p.line, p.field, p.severity]),
    [[2, 'mta_sts.mode', 'error']],
  );
  assert.match(out.problems[0]!.message, /enforce, testing, none/);
});

test('edits keep comments, key order and blank lines', async () => {
  const w = workspace(COMMENTED);
  await w.ok(['alias', 'add', 'news@example.org', '--forward', 'me@example.org']);
  await w.ok(['domain', 'add', 'second.example']);
  await w.ok(['alias', 'remove', 'news@example.org']);
  const after = w.read();
  // Every comment line and every blank line of the original is still there, in the same order.
  const kept = COMMENTED.split('\n').filter((l) => l.trim().startsWith('#') || l.trim() === '');
  let at = 0;
  const lines = after.split('\n');
  for (const line of kept) {
    const found = lines.indexOf(line, at);
    assert.ok(found >= at, `line ${JSON.stringify(line)} kept in order\n${after}`);
    at = found + (line === '' ? 1 : 0);
  }
  assert.match(after, /hostname: mail\.example\.org +# the MX name/);
  assert.match(after, /forward: \[old@mail\.example\] +# do not change/);
  assert.match(after, /me: \{mailbox: true\}/, 'untouched entries keep their own style');
  assert.ok(after.indexOf('example.org:') < after.indexOf('second.example:'), 'new domain appended after existing ones');
  assert.ok(after.indexOf('hostname:') < after.indexOf('data_dir:') && after.indexOf('data_dir:') < after.indexOf('domains:'));
});

test('a failed edit leaves the file byte for byte as it was', async () => {
  const w = workspace(COMMENTED);
  const before = w.read();
  for (const args of [
    ['alias', 'add', 'me@example.org', '--mailbox'], // exists
    ['alias', 'add', 'x@nowhere.example', '--mailbox'], // not served
    ['alias', 'add', 'x@example.org', '--forward', 'not-an-address'],
    ['domain', 'remove', 'example.org'], // has aliases
    ['domain', 'add', 'EXAMPLE.ORG'], // already there
  ]) {
    const r = await w.fe(args);
    assert.equal(r.code, 1, `${args.join(' ')} fails: ${r.stderr}`);
    assert.match(r.stderr, /fe: error: /);
    assert.equal(w.read(), before, `${args.join(' ')} left fe.yml unchanged`);
  }
});

test('a broken file is never edited: the error points at the problem', async () => {
  const broken = COMMENTED.replace('me: {mailbox: true}', 'me: {mailbox: yes please}');
  const w = workspace(broken);
  const r = await w.fe(['domain', 'add', 'other.example']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /config file has problems; nothing was changed/);
  assert.match(r.stderr, /fe\.yml:12:\d+: domains\.example\.org\.aliases\.me\.mailbox: must be true or false/);
  assert.equal(w.read(), broken);
});

test('edits are atomic: no temp files left, mode kept', async () => {
  const w = workspace(COMMENTED);
  chmodSync(w.config, 0o640);
  await w.ok(['alias', 'add', 'a@example.org', '--forward', 'me@example.org']);
  assert.equal(statSync(w.config).mode & 0o777, 0o640);
  assert.deepEqual(readdirSync(w.dir).filter((n) => n !== 'data').sort(), ['fe.yml']);
});

test('concurrent writers are serialised: every change lands, the file stays valid', async () => {
  const w = workspace(COMMENTED);
  const names = Array.from({ length: 10 }, (_, i) => `user${i}`);
  const results = await Promise.all(names.map((n) => w.fe(['alias', 'add', `${n}@example.org`, '--forward', 'me@example.org'])));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(await w.ok(['alias', 'list', '--json'])) as { address: string }[];
  for (const n of names) assert.ok(list.some((a) => a.address === `${n}@example.org`), `${n} present`);
  assert.equal((await w.fe(['config', 'check'])).code, 0);
  assert.ok(w.read().startsWith('# My mail host.'));
});

test('a writer holding the lock makes others wait, then fail cleanly', async () => {
  const w = workspace(COMMENTED);
  // A live process that owns the lock (our own pid stands in for a second fe).
  writeFileSync(`${w.config}.lock`, `${process.pid}\n`);
  const before = w.read();
  const r = await w.fe(['alias', 'add', 'x@example.org', '--forward', 'me@example.org'], { env: { FE_LOCK_TIMEOUT_MS: '300' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`being changed by another fe process \\(pid ${process.pid}\\); nothing was changed`));
  assert.equal(w.read(), before);
});

test('a lock left by a killed fe is broken', async () => {
  const w = workspace(COMMENTED);
  const dead = spawn(process.execPath, ['-e', '']);
  const pid = dead.pid!;
  await new Promise((r) => dead.on('close', r));
  writeFileSync(`${w.config}.lock`, `${pid}\n`);
  await w.ok(['alias', 'add', 'x@example.org', '--forward', 'me@example.org']);
  assert.match(w.read(), /x:\n\s+forward: \[me@example\.org\]/);
  assert.equal(existsSync(`${w.config}.lock`), false);
});

test('config init writes a commented skeleton that checks clean, and never overwrites', async () => {
  const w = workspace();
  const fresh = path.join(w.dir, 'new', 'fe.yml');
  const made = await w.fe(['--config', fresh, 'config', 'init', '--hostname', 'mail.example.net', '--data-dir', './state']);
  assert.equal(made.code, 0, made.stderr);
  assert.equal((await w.fe(['--config', fresh, 'config', 'check'])).code, 0);
  const again = await w.fe(['--config', fresh, 'config', 'init', '--hostname', 'other.example.net']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists; nothing was changed/);
  // the skeleton's comments, including the commented-out examples under an empty `domains:`, survive edits
  const template = readFileSync(fresh, 'utf8');
  await w.ok(['--config', fresh, 'domain', 'add', 'example.net']);
  await w.ok(['--config', fresh, 'alias', 'add', 'me@example.net', '--forward', 'x@y.example']);
  const edited = readFileSync(fresh, 'utf8');
  for (const line of template.split('\n').filter((l) => l.trim().startsWith('#'))) assert.ok(edited.includes(line), `kept: ${line}`);
  assert.ok(edited.indexOf('#   aliases:') < edited.indexOf('  example.net:'), 'examples stay above the new domain');
});
