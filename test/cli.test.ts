// The command line as a user meets it: help, version, exit codes, colour.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, runFe, workspace } from './helpers/fe.js';

const COMMANDS: Record<string, string[]> = {
  config: ['check', 'init'],
  domain: ['add', 'list', 'remove', 'dns'],
  dkim: ['rotate', 'activate', 'retire', 'list'],
  alias: ['add', 'list', 'remove', 'passwd', 'resolve'],
  key: ['add', 'list', 'remove'],
  mailbox: ['status'],
};

test('fe --help lists every command group and explains exit codes', async () => {
  const r = await runFe(['--help']);
  assert.equal(r.code, 0);
  for (const group of [...Object.keys(COMMANDS), 'serve', 'dev']) assert.match(r.stdout, new RegExp(`^  ${group}\\b`, 'm'), group);
  assert.match(r.stdout, /--config <path>/);
  assert.match(r.stdout, /Exit status: 0 success, 1 .*, 2 a usage error/);
  assert.match(r.stdout, /NO_COLOR/);
});

test('every subcommand has --help with a usage line, a description and its arguments', async () => {
  const runs: (readonly [string, string])[] = Object.entries(COMMANDS).flatMap(([group, subs]) => subs.map((sub) => [group, sub] as const));
  await Promise.all(
    runs.map(async ([group, sub]) => {
      const r = await runFe([group, sub, '--help']);
      assert.equal(r.code, 0, `${group} ${sub}`);
      assert.match(r.stdout, new RegExp(`^Usage: fe ${group} ${sub}`, 'm'), `${group} ${sub}`);
      const description = r.stdout.split('\n')[2] ?? '';
      assert.ok(description.trim().length > 15, `${group} ${sub} has a description: ${r.stdout}`);
      // every <argument> in the usage line is explained under Arguments:
      const usage = r.stdout.split('\n')[0]!;
      for (const [, arg] of usage.matchAll(/<([a-z]+)>/g)) assert.match(r.stdout, new RegExp(`^  ${arg}\\s+\\S`, 'm'), `${group} ${sub} explains ${arg}`);
    }),
  );
});

test('each command loads on its own: its help after a global option, fe help NAME, and a misspelling still suggests', async () => {
  // fe loads only the module of the command named (main.ts); every word must still find its command
  const words = ['config', 'domain', 'dkim', 'alias', 'key', 'mailbox', 'import', 'serve', 'dev', 'init', 'unlock', 'status', 'cert', 'backup', 'queue', 'export'];
  await Promise.all(
    words.map(async (word) => {
      const r = await runFe(['-c', '/nonexistent/fe.yml', word, '--help']);
      assert.equal(r.code, 0, `${word}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: fe ${word}\\b`, 'm'), word);
    }),
  );
  const help = await runFe(['help', 'unlock']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: fe unlock/m);
  const typo = await runFe(['alais', 'list']);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /Did you mean alias\?/);
});

test('fe --version prints the package version', async () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const r = await runFe(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), pkg.version);
});

test('usage errors exit 2, user errors exit 1', async () => {
  const w = workspace();
  const cases: [string[], number, RegExp][] = [
    [[], 2, /Usage: fe/],
    [['frobnicate'], 2, /unknown command 'frobnicate'/],
    [['domian'], 2, /Did you mean domain\?/],
    [['domain'], 2, /Usage: fe domain/],
    [['domain', 'add'], 2, /missing required argument 'name'/],
    [['domain', 'list', '--bogus'], 2, /unknown option '--bogus'/],
    [['alias', 'add', 'x@example.org'], 2, /give --forward ADDRESSES, --mailbox, or both/],
    [['domain', 'add', 'not a domain'], 1, /is not a domain name/],
    [['alias', 'list', 'nowhere.example'], 1, /nowhere.example is not a domain in/],
  ];
  for (const [args, code, message] of cases) {
    const r = await w.fe(args);
    assert.equal(r.code, code, `fe ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, `fe ${args.join(' ')}`);
  }
});

test('a missing config file is a clear user error', async () => {
  const r = await runFe(['--config', '/nonexistent/fe.yml', 'domain', 'list']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\/nonexistent\/fe.yml does not exist/);
});

test('FE_CONFIG is used when --config is absent, and --config wins over it', async () => {
  const a = workspace('hostname: mail.a.example\ndata_dir: ./data\ndomains:\n  a.example: {aliases: {x: {mailbox: true}}}\n');
  const b = workspace('hostname: mail.b.example\ndata_dir: ./data\ndomains:\n  b.example: {aliases: {y: {mailbox: true}}}\n');
  const viaEnv = await runFe(['domain', 'list', '--json'], { env: { FE_CONFIG: a.config } });
  assert.deepEqual((JSON.parse(viaEnv.stdout) as { domain: string }[]).map((d) => d.domain), ['a.example']);
  const viaFlag = await runFe(['--config', b.config, 'domain', 'list', '--json'], { env: { FE_CONFIG: a.config } });
  assert.deepEqual((JSON.parse(viaFlag.stdout) as { domain: string }[]).map((d) => d.domain), ['b.example']);
});

test('colour only when asked for, and never with NO_COLOR', async () => {
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  const plain = await w.fe(['domain', 'list']);
  assert.doesNotMatch(plain.stdout, /\x1b\[/, 'no escapes when not a terminal');
  const forced = await w.fe(['domain', 'list'], { env: { FORCE_COLOR: '1' } });
  assert.match(forced.stdout, /\x1b\[1mDOMAIN/);
  const noColor = await w.fe(['domain', 'list'], { env: { FORCE_COLOR: '1', NO_COLOR: '1' } });
  assert.doesNotMatch(noColor.stdout, /\x1b\[/);
  const err = await w.fe(['domain', 'add', 'example.org'], { env: { FORCE_COLOR: '1', NO_COLOR: '1' } });
  assert.equal(err.code, 1);
  assert.doesNotMatch(err.stderr, /\x1b\[/);
});
