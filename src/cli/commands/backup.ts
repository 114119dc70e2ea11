// fe backup: encrypted backups of fe.yml and the data directory. The host encrypts to the
// owner's age public key and cannot read its own backups; restoring needs the secret half.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { editConfig, loadConfig } from '../../config/file.js';
import { setBackupRecipients } from '../../config/edit.js';
import { AgeError, generateIdentity, isRecipient, recipientOf } from '../../backup/age.js';
import { BackupError, listBackups, readBackupState, runBackup, verifyBackup } from '../../backup/archive.js';
import { restoreBackup } from '../../backup/restore.js';
import { createLogger } from '../../util/log.js';
import { UsageError, UserError } from '../../util/errors.js';
import { configFile, JSON_HELP } from '../context.js';
import { print, printJson, printTable, readStdin } from '../output.js';

/** Identities from an age identity file (or stdin with "-"): AGE-SECRET-KEY-1… lines, # comments. */
async function readIdentities(file: string): Promise<string[]> {
  const text = file === '-' ? (await readStdin()).toString('utf8') : readFileSync(file, 'utf8');
  const ids = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (ids.length === 0) throw new UserError(`no identity in ${file === '-' ? 'standard input' : file} (expected a line AGE-SECRET-KEY-1…)`);
  for (const id of ids) {
    try {
      recipientOf(id);
    } catch {
      throw new UserError(`${file === '-' ? 'standard input' : file}: a line is not an age identity (AGE-SECRET-KEY-1…)`);
    }
  }
  return ids;
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** Backup errors are the user's to act on: print the message, not a stack. */
async function asUserError<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof BackupError || e instanceof AgeError) throw new UserError(e.message);
    throw e;
  }
}

export function registerBackup(program: Command): void {
  const backup = program
    .command('backup')
    .description('encrypted backups: make one now, list, verify, restore; set the key they are encrypted to')
    .addHelpText(
      'after',
      `
A backup is one file, fe-HOST-TIME.tar.age, in backup.to (default /var/backups/fe): fe.yml and the
whole data directory, encrypted with age (age-encryption.org) to backup.recipients. Mailboxes stay
encrypted with their owners' passwords inside it as well. The fe-backup unit makes one on
backup.schedule (default every night at 03:30), verifies it by reading it back, keeps the newest
backup.keep (default 14) and writes FILE.sha256 beside it.

Keep the identity (AGE-SECRET-KEY-1…) off this host: whoever holds it can read the backups; without
it nobody can, fe included. Copy the backups off the host too, e.g. pull them from another machine:
  rsync -a admin@mail.example.org:/var/backups/fe/ ./fe-backups/

Outside fe, a backup opens with the standard tools:
  age -d -i key.txt fe-HOST-TIME.tar.age | tar x`,
    );

  backup
    .command('key')
    .description('make a new key pair for backups and add its public half to backup.recipients (prints the secret once)')
    .option('--recipient <age1key>', 'add this existing public key (age1…) instead (made with age-keygen on your own machine: the safest choice)')
    .option('--out <file>', 'write the new identity to this file (0600) instead of printing it')
    .option('--replace', 'replace the recipients in fe.yml instead of adding to them')
    .action(async (opts: { recipient?: string; out?: string; replace?: boolean }, cmd: Command) => {
      const file = configFile(cmd);
      let recipient: string;
      let identity: string | null = null;
      if (opts.recipient) {
        if (!isRecipient(opts.recipient.trim())) throw new UsageError(`"${opts.recipient}" is not an age public key (age1…)`);
        recipient = opts.recipient.trim();
      } else {
        const pair = generateIdentity();
        identity = pair.identity;
        recipient = pair.recipient;
      }
      const created = new Date().toISOString();
      // Write the secret before fe.yml changes: a crash in between leaves an unused key, never
      // backups nobody can open.
      if (identity && opts.out) writeFileSync(path.resolve(opts.out), `# fe backup identity, created ${created}\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600, flag: 'wx' });
      const list = await editConfig(file, ({ doc, config }) => {
        const next = opts.replace ? [recipient] : [...config.backup.recipients.filter((r) => r !== recipient), recipient];
        setBackupRecipients(doc, next);
        return next;
      });
      print(`backup.recipients in ${file}: ${list.join(', ')}`);
      if (identity && !opts.out) {
        print('');
        print('The secret key for your backups, shown once. Store it off this host (password manager, paper):');
        print('');
        print(`  ${identity}`);
        print('');
        print('Without it the backups cannot be read, by anyone.');
      } else if (identity) print(`identity written to ${opts.out}: move it off this host`);
      print('The running fe-backup picks this up on reload: systemctl reload fe-backup');
    });

  backup
    .command('run')
    .description('make a backup now, verify it, and remove the oldest beyond backup.keep')
    .option('--json', JSON_HELP)
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const r = await asUserError(() => runBackup(config, createLogger(config.logLevel, 'backup')));
      if (opts.json) return printJson(r);
      print(`${r.file}: ${human(r.bytes)}, ${r.files} files, verified in ${(r.durationMs / 1000).toFixed(1)} s`);
      if (r.pruned.length > 0) print(`removed (beyond keep=${config.backup.keep}): ${r.pruned.join(', ')}`);
      if (r.busy.length > 0) {
        print(`incomplete: these kept changing and were left out: ${r.busy.join(', ')}`);
        process.exitCode = 1;
      }
    });

  backup
    .command('list')
    .description('the backups in backup.to, oldest first, and the last run')
    .option('--json', JSON_HELP)
    .action((opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const all = listBackups(config.backup.dir);
      const state = readBackupState(config.dataDir);
      if (opts.json) return printJson({ dir: config.backup.dir, backups: all.map((b) => ({ ...b, created: b.created.toISOString() })), last_run: state.lastRun, last_success: state.lastSuccess });
      if (all.length === 0) print(`no backups in ${config.backup.dir}`);
      else printTable(['CREATED', 'SIZE', 'FILE'], all.map((b) => [b.created.toISOString(), human(b.bytes), b.name + (b.sha256 ? '' : ' (no .sha256)')]));
      if (state.lastRun && !state.lastRun.ok) print(`last run failed at ${state.lastRun.at}: ${state.lastRun.error}`);
    });

  backup
    .command('verify')
    .description('check a backup (default: the newest): its .sha256 always; every file inside when given the identity')
    .argument('[file]', 'a backup file')
    .option('--identity <file>', 'age identity file ("-": standard input): decrypt and check every member against the manifest')
    .option('--json', JSON_HELP)
    .action(async (fileArg: string | undefined, opts: { identity?: string; json?: boolean }, cmd: Command) => {
      let file = fileArg;
      if (!file) {
        const config = loadConfig(configFile(cmd));
        const newest = listBackups(config.backup.dir).at(-1);
        if (!newest) throw new UserError(`no backups in ${config.backup.dir}`);
        file = newest.file;
      }
      const identities = opts.identity ? await readIdentities(opts.identity) : [];
      const r = await asUserError(() => verifyBackup(path.resolve(file), identities));
      if (opts.json) return printJson(r);
      print(`${r.file}: checksum ${r.checksum === 'ok' ? 'ok' : 'not checked (no .sha256 beside it)'}`);
      if (r.contents) print(`contents ok: ${r.contents.files} files from ${r.contents.hostname}, made ${r.contents.created}${r.contents.busy.length ? `; left out: ${r.contents.busy.join(', ')}` : ''}`);
      else print('contents not checked: give --identity to decrypt and check every file');
    });

  backup
    .command('restore')
    .description('restore a backup onto this host: fe.yml and the data directory (both must not exist yet)')
    .argument('<file>', 'the backup file')
    .requiredOption('--identity <file>', 'age identity file with the secret key ("-": standard input)')
    .option('--data-dir <dir>', 'where the data goes (default: where it was); must be empty or missing')
    .addHelpText(
      'after',
      `
fe.yml goes to the path of -c/--config (default /etc/fe/fe.yml), which must not exist; with
--data-dir, its data_dir is changed to match. Nothing is moved into place until every file
decrypted and matched the backup's manifest. On a new host: fe init, systemctl stop fe.target,
move /etc/fe/fe.yml and the contents of /var/lib/fe away, restore, systemctl start fe.target.
Mailbox passwords are those at the time of the backup.`,
    )
    .action(async (file: string, opts: { identity: string; dataDir?: string }, cmd: Command) => {
      const identities = await readIdentities(opts.identity);
      const r = await asUserError(() => restoreBackup(path.resolve(file), { identities, configFile: configFile(cmd), ...(opts.dataDir ? { dataDir: opts.dataDir } : {}) }));
      print(`restored ${r.files} files from ${r.manifest.hostname} (made ${r.manifest.created})`);
      print(`config: ${r.configFile}`);
      print(`data:   ${r.dataDir}`);
      if (r.manifest.busy.length > 0) print(`note: this backup left out files that kept changing: ${r.manifest.busy.join(', ')}`);
    });
}
