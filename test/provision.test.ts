// fe init's parts that can be proven without changing this machine: the playbook passes
// ansible's syntax check and ansible-lint, the units render (with ansible's own template module)
// and pass systemd-analyze verify, shell passes shellcheck, the progress reader understands a
// real ansible-playbook run, and fe init / fe unlock refuse bad input before touching anything.
// The playbook itself runs for real in the VM test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, statSync, readdirSync, readFileSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ANSIBLE_DIR, PlaybookOutputReader, runPlaybook, type PlaybookEvent } from '../src/provision/ansible.js';
import { newPassphrase, playbookVars, sshKeyLines, type InitPlan } from '../src/provision/init.js';
import { parseOsRelease, unsupportedReason } from '../src/provision/os.js';
import { parseInputChain } from '../src/provision/status.js';
import { filesUnder, ROOT, runFe, workspace } from './helpers/fe.js';

const run = promisify(execFile);
const ansibleEnv = { ...process.env, ANSIBLE_CONFIG: path.join(ANSIBLE_DIR, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1' };

test('the playbook passes ansible-playbook --syntax-check and ansible-lint (production profile)', async () => {
  const syntax = await run('ansible-playbook', ['-i', 'localhost,', '--syntax-check', 'site.yml'], { cwd: ANSIBLE_DIR, env: ansibleEnv });
  assert.match(syntax.stdout, /playbook: site\.yml/);
  const lint = await run('ansible-lint', ['--nocolor', '--profile', 'production', 'site.yml'], { cwd: ANSIBLE_DIR, env: ansibleEnv, timeout: 600_000 }).catch((e: { stdout: string; stderr: string }) => {
    throw new Error(`ansible-lint failed:\n${e.stdout}\n${e.stderr}`);
  });
  assert.match(lint.stdout + lint.stderr, /Passed with production profile: 0 failure\(s\), 0 warning\(s\)/);
});

test('the systemd units render with the playbook variables and pass systemd-analyze verify; systemd-analyze security rates each within its cap', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-units-'));
  const prefix = path.join(dir, 'opt', 'fe');
  mkdirSync(`${prefix}-node/bin`, { recursive: true });
  mkdirSync(`${prefix}/bin`, { recursive: true });
  symlinkSync(process.execPath, `${prefix}-node/bin/node`);
  writeFileSync(`${prefix}/bin/fe`, '');
  const out = path.join(dir, 'units');
  mkdirSync(out);
  const units = readdirSync(path.join(ROOT, 'systemd')).filter((f) => /\.(service|target)$/.test(f));
  assert.deepEqual(units.sort(), ['fe-backup.service', 'fe-mailstore.service', 'fe-mx.service', 'fe-queue.service', 'fe-submission.service', 'fe-web.service', 'fe.target']);
  for (const u of units) {
    await run('ansible', ['localhost', '-c', 'local', '-i', 'localhost,', '-m', 'ansible.builtin.template', '-a', `src=${path.join(ROOT, 'systemd', u)} dest=${path.join(out, u)}`, '-e', `fe_data_dir=${dir}/data`, '-e', `fe_prefix=${prefix}`, '-e', `fe_config=${dir}/fe.yml`, '-e', `fe_backup_dir=${dir}/backups`], { env: ansibleEnv });
  }
  const verify = await run('systemd-analyze', ['verify', '--man=no', ...units.map((u) => path.join(out, u))]).catch((e: { stderr: string; code: number }) => e);
  assert.equal(verify.stderr.trim(), '', 'no warnings about the units');
  const mx = readFileSync(path.join(out, 'fe-mx.service'), 'utf8');
  assert.match(mx, new RegExp(`^ExecStart=${prefix}-node/bin/node ${prefix}/bin/fe serve --only mx$`, 'm'));
  assert.match(mx, /^User=fe$/m);
  assert.match(mx, /^NoNewPrivileges=yes$/m);
  assert.match(mx, /^ProtectSystem=strict$/m);
  assert.match(mx, /^PrivateTmp=yes$/m);
  assert.match(mx, new RegExp(`^ReadWritePaths=${dir}/data$`, 'm'));
  assert.match(mx, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
  assert.match(mx, new RegExp(`^ConditionPathIsMountPoint=${dir}/data$`, 'm'), 'never starts on the bare directory under the mount point');
  const submission = readFileSync(path.join(out, 'fe-submission.service'), 'utf8');
  assert.match(submission, /serve --only submission,submissions$/m);
  assert.match(submission, /^User=fe$/m);
  assert.match(submission, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m, '587 and 465 are below 1024');
  const queue = readFileSync(path.join(out, 'fe-queue.service'), 'utf8');
  assert.match(queue, /serve --only queue$/m);
  assert.match(queue, /^User=fe$/m);
  assert.match(queue, /^CapabilityBoundingSet=$/m, 'the queue binds no port: no capabilities');
  assert.match(queue, new RegExp(`^ReadWritePaths=${dir}/data$`, 'm'));
  const store = readFileSync(path.join(out, 'fe-mailstore.service'), 'utf8');
  assert.match(store, /serve --only imap,imaps,pop3,pop3s$/m, 'IMAP and POP3 share the one process that writes mailboxes');
  const web = readFileSync(path.join(out, 'fe-web.service'), 'utf8');
  assert.match(web, /serve --only http,https$/m, 'fe-web answers ACME on 80 and serves MTA-STS on 443');
  assert.match(web, /^User=fe$/m);
  assert.match(web, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
  const backup = readFileSync(path.join(out, 'fe-backup.service'), 'utf8');
  assert.match(backup, /serve --only backup$/m);
  assert.match(backup, /^User=fe$/m);
  assert.match(backup, /^CapabilityBoundingSet=$/m, 'no capabilities at all');
  assert.match(backup, /^PrivateNetwork=yes$/m, 'no network: backups are pulled off the host, never pushed');
  assert.match(backup, new RegExp(`^ReadWritePaths=${dir}/data -${dir}/backups$`, 'm'));

  // systemd's own rating of each sandbox (0 is fully confined, 10 is none). The caps are what
  // the units reach today; a change that loosens a sandbox fails here. systemd/README.md says
  // which of the remaining items each job needs.
  const caps: Record<string, number> = {
    'fe-mx.service': 1.6, 'fe-submission.service': 1.6, 'fe-mailstore.service': 1.6, 'fe-web.service': 1.6,
    'fe-queue.service': 1.4, 'fe-backup.service': 0.5,
  };
  for (const [unit, cap] of Object.entries(caps)) {
    const r = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', path.join(out, unit)]).catch((e: { stdout: string; stderr: string }) => e);
    const m = /Overall exposure level for \S+: (\d+\.\d+) (\w+)/.exec(r.stdout);
    assert.ok(m, `systemd-analyze security rated ${unit}:\n${r.stdout}\n${r.stderr}`);
    assert.ok(Number(m[1]) <= cap, `${unit}: exposure ${m[1]} ${m[2]}, above ${cap}`);
  }
});

test('shell in the repository passes shellcheck', async () => {
  const vmDir = path.join(ROOT, 'test', 'vm');
  const files = ['.ci/run', ...(existsSync(vmDir) ? readdirSync(vmDir).filter((f) => f.endsWith('.sh')).map((f) => `test/vm/${f}`) : [])];
  const r = await run('shellcheck', ['-x', ...files], { cwd: ROOT }).catch((e: { stdout: string }) => {
    throw new Error(`shellcheck:\n${e.stdout}`);
  });
  assert.equal(r.stdout, '');
});

test('os-release: Debian 12/13 and Ubuntu 22.04/24.04 are supported, others are refused with a reason', () => {
  const debian = parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n');
  assert.deepEqual(debian, { id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' });
  assert.equal(unsupportedReason(debian), null);
  assert.equal(unsupportedReason(parseOsRelease('ID=ubuntu\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"')), null);
  assert.equal(unsupportedReason(parseOsRelease('ID=ubuntu\nVERSION_ID="22.04"')), null);
  assert.match(unsupportedReason(parseOsRelease('ID=ubuntu\nVERSION_ID="20.04"\nPRETTY_NAME="Ubuntu 20.04.6 LTS"'))!, /Ubuntu 20\.04\.6 LTS/);
  assert.match(unsupportedReason(parseOsRelease('ID=fedora\nVERSION_ID=41\nPRETTY_NAME="Fedora Linux 41"'))!, /supports Debian 12\/13 and Ubuntu 22\.04\/24\.04; this is Fedora Linux 41/);
  assert.match(unsupportedReason(parseOsRelease(''))!, /unknown system/);
});

test('SSH keys, passphrases and playbook variables', () => {
  const keys = sshKeyLines('# comment\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1x me@laptop\nnot a key\nfrom="10.0.0.1" ssh-rsa AAAAB3NzaC1yc2E= other\n');
  assert.deepEqual(keys, ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1x me@laptop', 'from="10.0.0.1" ssh-rsa AAAAB3NzaC1yc2E= other']);
  const p = newPassphrase();
  assert.match(p, /^([a-km-z2-9]{5}-){7}[a-km-z2-9]{5}$/);
  assert.notEqual(newPassphrase(), p);
  const plan: InitPlan = {
    hostname: 'mail.example.org', domain: 'example.org', admin: 'postmaster@example.org', dataDir: '/var/lib/fe', configFile: '/etc/fe/fe.yml',
    luks: { mode: 'device', device: '/dev/vdb' }, luksKeyfile: false, luksWipe: false, luksPbkdfMemoryKiB: null,
    sshPort: 2222, adminUser: 'admin', sshKeys: keys, filtering: false, openPlainImap: true, openPlainPop3: false, web: false,
    backup: false, backupDir: '/var/backups/fe', backupRecipient: null,
  };
  const vars = playbookVars(plan, '/run/fe-init-x/passphrase', '/usr/bin/node');
  assert.deepEqual(vars.fe_open_tcp, [25, 465, 587, 993, 995, 143]);
  assert.deepEqual(vars.fe_units, ['fe-mx', 'fe-submission', 'fe-queue', 'fe-mailstore']);
  const withWeb = playbookVars({ ...plan, web: true }, null);
  assert.deepEqual(withWeb.fe_open_tcp, [25, 465, 587, 993, 995, 143, 80, 443], 'the web daemon opens 80 (ACME) and 443 (MTA-STS)');
  assert.deepEqual(withWeb.fe_units, ['fe-mx', 'fe-submission', 'fe-queue', 'fe-mailstore', 'fe-web']);
  const withBackup = playbookVars({ ...plan, web: true, backup: true, backupDir: '/srv/backups' }, null);
  assert.deepEqual(withBackup.fe_units, ['fe-mx', 'fe-submission', 'fe-queue', 'fe-mailstore', 'fe-web', 'fe-backup']);
  assert.equal(withBackup.fe_backup_dir, '/srv/backups');
  assert.equal(vars.fe_luks_device, '/dev/vdb');
  assert.equal(vars.fe_ssh_port, 2222);
  assert.equal(vars.fe_luks_passphrase_file, '/run/fe-init-x/passphrase');
  assert.ok(!JSON.stringify(vars).includes(p), 'the passphrase itself is never a variable');
  assert.equal(vars.fe_banner, undefined, 'no banner in fe.yml: the role default stands');
  assert.equal(playbookVars({ ...plan, banner: 'Private host of example.org.' }, null).fe_banner, 'Private host of example.org.');
  // every variable the CLI sets is one some role declares in its defaults
  const defaults = readdirSync(path.join(ANSIBLE_DIR, 'roles')).map((r) => {
    try {
      return readFileSync(path.join(ANSIBLE_DIR, 'roles', r, 'defaults', 'main.yml'), 'utf8');
    } catch {
      return '';
    }
  }).join('\n');
  const varNames = Object.keys(playbookVars({ ...plan, banner: 'x' }, null));
  for (const name of varNames) if (!['fe_hostname', 'fe_filtering'].includes(name)) assert.match(defaults, new RegExp(`^${name}:`, 'm'), `${name} has a default in a role`);
});

test('iptables -S INPUT is read for policy and open ports', () => {
  const chain = parseInputChain('-P INPUT DROP\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m multiport --dports 25,993 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 8080 -j DROP\n');
  assert.deepEqual(chain, { policy: 'DROP', openPorts: [22, 25, 993] });
});

test('the progress reader follows a real ansible-playbook run: ok, changed, skipped, failed, diff, recap', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-pb-'));
  const target = path.join(dir, 'target.txt');
  const playbook = path.join(dir, 'play.yml');
  writeFileSync(
    playbook,
    `- hosts: all
  gather_facts: false
  tasks:
    - name: Write a file
      ansible.builtin.copy:
        dest: ${target}
        content: "hello\\n"
        mode: "0600"
    - name: Nothing to do
      ansible.builtin.command: "true"
      changed_when: false
    - name: Skipped on purpose
      ansible.builtin.debug:
        msg: never
      when: false
    - name: Fails with a message
      ansible.builtin.fail:
        msg: the reason it stopped
`,
  );
  const events: PlaybookEvent[] = [];
  const first = await runPlaybook({ vars: {}, playbook, onEvent: (e) => events.push(e) });
  assert.equal(first.ok, false);
  assert.deepEqual(first.changedTasks, ['Write a file']);
  assert.deepEqual(first.failedTasks, [{ task: 'Fails with a message', message: 'the reason it stopped' }]);
  assert.deepEqual(first.recap, { ok: 2, changed: 1, failed: 1, skipped: 1, unreachable: 0 });
  const results = events.filter((e) => e.kind === 'result').map((e) => (e.kind === 'result' ? `${e.task}=${e.status}` : ''));
  assert.deepEqual(results, ['Write a file=changed', 'Nothing to do=ok', 'Skipped on purpose=skipping', 'Fails with a message=fatal']);
  assert.equal(readFileSync(target, 'utf8'), 'hello\n');

  // --check --diff: a change is shown and not made
  writeFileSync(target, 'changed by hand\n');
  const diff: string[] = [];
  const check = await runPlaybook({ vars: {}, playbook, check: true, onEvent: (e) => e.kind === 'diff' && diff.push(e.line) });
  assert.deepEqual(check.changedTasks, ['Write a file']);
  assert.ok(diff.includes('-changed by hand') && diff.includes('+hello'), diff.join('\n'));
  assert.equal(readFileSync(target, 'utf8'), 'changed by hand\n', 'check mode changed nothing');

  const reader = new PlaybookOutputReader();
  assert.deepEqual(reader.line('RUNNING HANDLER [ssh : Reload sshd] ****'), [{ kind: 'task', name: 'ssh : Reload sshd', handler: true }]);
});

/** A PATH where ansible-playbook and apt-get cannot run: if validation ever let a bad call through, nothing would change. */
function guardedEnv(): Record<string, string> {
  const bin = mkdtempSync(path.join(tmpdir(), 'fe-guard-'));
  for (const tool of ['ansible-playbook', 'apt-get', 'cryptsetup', 'mount', 'systemctl']) {
    writeFileSync(path.join(bin, tool), '#!/bin/sh\necho "guard: $0 must not run in this test" >&2\nexit 97\n');
    chmodSync(path.join(bin, tool), 0o755);
  }
  return { PATH: `${bin}:${process.env.PATH ?? ''}` };
}

test('fe init refuses incomplete or bad input before changing anything', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('fe init checks for root first; these cases need root');
  const env = guardedEnv();
  const cfg = ['--config', path.join(mkdtempSync(path.join(tmpdir(), 'fe-init-')), 'fe.yml')];
  const noHost = await runFe([...cfg, 'init', '--yes'], { env });
  assert.equal(noHost.code, 2);
  assert.match(noHost.stderr, /the host name is needed: pass --hostname/);
  const noVolume = await runFe([...cfg, 'init', '--yes', '--hostname', 'mail.example.org', '--domain', 'example.org'], { env });
  assert.equal(noVolume.code, 2);
  assert.match(noVolume.stderr, /--luks-device \/dev\/vdb, --luks-file 10G or --no-luks/);
  const badSize = await runFe([...cfg, 'init', '--yes', '--hostname', 'mail.example.org', '--domain', 'example.org', '--luks-file', 'lots'], { env });
  assert.match(badSize.stderr, /--luks-file takes a size like 10G/);
  const noDevice = await runFe([...cfg, 'init', '--yes', '--hostname', 'mail.example.org', '--domain', 'example.org', '--luks-device', '/dev/fe-no-such-disk'], { env });
  assert.equal(noDevice.code, 1);
  assert.match(noDevice.stderr, /\/dev\/fe-no-such-disk does not exist/);
  const badHost = await runFe([...cfg, 'init', '--yes', '--hostname', 'not a host', '--domain', 'example.org', '--no-luks'], { env });
  assert.notEqual(badHost.code, 0);
  assert.match(badHost.stderr, /not a domain name/);
  const noKey = await runFe([...cfg, 'init', '--yes', '--hostname', 'mail.example.org', '--domain', 'example.org', '--no-luks', '--ssh-key', 'not-a-key'], { env });
  assert.equal(noKey.code, 1);
  assert.match(noKey.stderr, /no SSH public key for the admin user/);
  for (const r of [noHost, noVolume, badSize, noDevice, badHost, noKey]) assert.doesNotMatch(r.stderr + r.stdout, /guard:/);
});

test('fe unlock without an fe volume says to run fe init', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root');
  const r = await runFe(['unlock', '--passphrase-stdin'], { env: guardedEnv(), stdin: 'x\n' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /run fe init first/);
});

test('fe init on a terminal asks its questions (inquirer) and goes on with the answers', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root');
  const env = guardedEnv();
  const cfg = path.join(mkdtempSync(path.join(tmpdir(), 'fe-init-')), 'fe.yml');
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1x me@laptop';
  // util-linux `script` gives fe a pseudo-terminal, as a person at a console would have
  const child = spawn('script', ['-qfec', `${process.execPath} ${path.join(ROOT, 'bin', 'fe')} --config ${cfg} init --ssh-key '${key}'`, '/dev/null'], {
    env: { ...process.env, ...env, TERM: 'xterm', COLUMNS: '120', LINES: '40', NO_COLOR: '1' },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const answer = async (prompt: RegExp, keys: string) => {
    const end = Date.now() + 15_000;
    while (!prompt.test(out)) {
      if (Date.now() > end) {
        child.kill('SIGKILL');
        throw new Error(`no prompt ${prompt}; the screen was:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.stdin.write(keys);
  };
  await answer(/Mail host name/, 'mail.example.org\r');
  await answer(/First mail domain \(example\.org\)/, '\r'); // the default comes from the host name
  await answer(/Admin address.*\(postmaster@example\.org\)/, '\r');
  await answer(/encrypted mail volume/, '\x1b[B'); // arrow down: the container file
  await new Promise((r) => setTimeout(r, 300));
  child.stdin.write('\r');
  await answer(/Container size/, '\r');
  await answer(/SSH port.*\(22\)/, '2222\r');
  await answer(/spam and virus filtering/, 'n\r');
  await answer(/age public key for backups/, 'age1nonsense\r');
  await answer(/an age public key \(age1…\), or empty/, '\x15\r'); // refused; Ctrl-U clears it, empty: make a pair
  await exited;
  const screen = out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  assert.match(screen, /fe init on .*: mail\.example\.org, domain example\.org, data in \/var\/lib\/fe on LUKS \(\/var\/lib\/fe\.luks\)/);
  // with the answers collected it goes on to install ansible, which the guard stops
  assert.match(screen, /installing ansible-core from the distribution/);
  assert.match(screen, /apt-get update failed: guard: .*apt-get must not run/);
});

test('fe run as root hands what it creates in the data directory to the directory\'s owner (the fe user on a server)', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root');
  const w = workspace();
  await w.ok(['domain', 'add', 'example.org']);
  chownSync(w.dataDir, 65534, 65534); // as the playbook leaves it: owned by the service user
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'a long enough password\n' });
  await w.ok(['dkim', 'rotate', 'example.org']);
  const rootOwned = filesUnder(w.dataDir).concat(dirsUnder(w.dataDir)).filter((p) => statSync(p).uid === 0);
  assert.deepEqual(rootOwned, [], 'the MX (user fe) can spool into the new mailbox and read the new DKIM key');
  assert.equal(statSync(path.join(w.dataDir, 'mailboxes', 'example.org', 'me')).uid, 65534);
});

function dirsUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? [path.join(dir, e.name), ...dirsUnder(path.join(dir, e.name))] : []));
}
