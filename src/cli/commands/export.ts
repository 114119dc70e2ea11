// fe export: a mailbox's mail leaves in standard formats, opened with its owner's password.
import type { Command } from 'commander';
import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { openMailbox } from '../../admin/mailbox.js';
import { loadConfig } from '../../config/file.js';
import { exportMailbox, type ExportFormat, type ExportProgress, type ExportSummary } from '../../export/export.js';
import { SQLITE_README } from '../../export/sqlite-readme.js';
import { refuseExisting } from '../../export/target.js';
import { MIN_PASSWORD } from '../../admin/aliases.js';
import { UsageError, UserError } from '../../util/errors.js';
import { configFile } from '../context.js';
import { readStdin, warn } from '../output.js';

interface ExportOpts {
  mbox?: boolean;
  eml?: boolean;
  maildir?: boolean;
  sqlite?: boolean;
  output?: string;
  single?: boolean;
  zip?: boolean;
  folder?: string[];
  passwordStdin?: boolean;
  plaintext?: boolean;
  yes?: boolean;
  json?: boolean;
}

/** Prompts go to stderr: stdout may be carrying the export itself. */
async function ask(message: string): Promise<string> {
  const { password } = await import('@inquirer/prompts');
  return password({ message, mask: true }, { output: process.stderr });
}

async function confirmPlaintext(yes: boolean): Promise<void> {
  warn('--plaintext writes every message of this mailbox UNENCRYPTED into one file that anyone who can read it can open');
  if (yes) return;
  if (!process.stdin.isTTY) throw new UsageError('--plaintext needs --yes when standard input is not a terminal');
  const { confirm } = await import('@inquirer/prompts');
  if (!(await confirm({ message: 'Write an unencrypted copy?', default: false }, { output: process.stderr }))) throw new UserError('nothing was exported');
}

function progressBar(enabled: boolean): { update: (p: ExportProgress) => void; stop: () => void } {
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {value}/{total} messages | {mb}/{totalMb} MB | {rate} MB/s | ETA {eta_formatted}',
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  let started = false;
  return {
    update(p) {
      const mb = (n: number) => (n / 1048576).toFixed(1);
      const payload = { mb: mb(p.bytes), totalMb: mb(p.totalBytes), rate: mb(p.bytes / Math.max(0.001, (Date.now() - t0) / 1000)) };
      if (!started) {
        bar.start(p.totalMessages, p.messages, payload);
        started = true;
      } else bar.update(p.messages, payload);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

function report(summary: ExportSummary, json: boolean, toStderr: boolean): void {
  const write = (s: string): void => void (toStderr ? process.stderr : process.stdout).write(s + '\n');
  if (json) return write(JSON.stringify(summary, null, 2));
  const mb = (summary.bytes / 1048576).toFixed(1);
  write(`exported ${summary.messages} message(s), ${mb} MB, from ${summary.folders.length} folder(s) of ${summary.address} to ${summary.output === '-' ? 'standard output' : summary.output} in ${summary.seconds} s`);
  for (const w of summary.warnings) warn(w);
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description("write a mailbox's mail out in a standard format (mbox, EML, Maildir, SQLite), opened with its password")
    .argument('<address>', 'a mailbox alias')
    .option('--mbox', 'mboxrd: one .mbox file per folder in a folder tree, or one file with --single or -o -')
    .option('--eml', 'one .eml file per message in a folder tree (or a zip with --zip), with manifest.json for flags and dates')
    .option('--maildir', 'Maildir++ (INBOX at the top, subfolders as .Name), flags in the file names: mbsync, Dovecot and mutt read it as is')
    .option('--sqlite', 'a copy of the encrypted database, keyed to a password you choose (-o DIR gets mailbox.db and README.txt)')
    .option('-o, --output <path>', 'where to write: a new file or directory (never overwritten), or - for standard output')
    .option('--single', 'mbox: all folders in one file, each message with an X-Folder header')
    .option('--zip', 'eml or maildir: one zip archive instead of a directory (works with -o -)')
    .option('--folder <name...>', 'only these folders (default: all)')
    .option('--password-stdin', "read the mailbox's password from the first line of standard input (--sqlite: the copy's password from the second)")
    .option('--plaintext', 'sqlite: write the copy without encryption (asks first; needs --yes without a terminal)')
    .option('--yes', 'do not ask before --plaintext')
    .option('--json', 'print a JSON summary at the end (to standard error with -o -)')
    .addHelpText(
      'after',
      `
Mail waiting in the mailbox's spool is imported first, then everything is read from one
consistent snapshot, so it works while fe serve runs: a message arriving meanwhile is either in
the export or not, never half. Flags and internal dates travel with the mail: Status, X-Status
and X-Keywords headers in mbox; the Maildir file names (keywords in dovecot-keywords) and their
times; manifest.json for EML. Messages are written as stored, except that mbox uses LF line
ends and quotes ">*From " lines (mboxrd). With -o -, nothing is written to this server's disk
(for --sqlite, the copy keyed to your password is staged in the mailbox's own directory).
A progress bar is shown on a terminal, nothing on a pipe.

Examples:
  fe export me@example.org --mbox -o me-mail
  ssh root@mail.example.org fe export me@example.org --mbox -o - > me.mbox
  fe export me@example.org --maildir --zip -o me-maildir.zip
  fe export me@example.org --sqlite -o me-db`,
    )
    .action(async (input: string, opts: ExportOpts, cmd: Command) => {
      const formats = (['mbox', 'eml', 'maildir', 'sqlite'] as const).filter((f) => opts[f]);
      if (formats.length !== 1) throw new UsageError('choose one format: --mbox, --eml, --maildir or --sqlite');
      const format = formats[0]!;
      const output = opts.output;
      if (output === undefined) throw new UsageError('give -o PATH (a new file or directory), or -o - for standard output');
      if (opts.single && format !== 'mbox') throw new UsageError('--single is for --mbox');
      if (opts.zip && format !== 'eml' && format !== 'maildir') throw new UsageError('--zip is for --eml and --maildir');
      if (output === '-' && (format === 'eml' || format === 'maildir') && !opts.zip) throw new UsageError(`-o - needs --zip with --${format} (a folder tree cannot go through a pipe)`);
      if (opts.plaintext && format !== 'sqlite') throw new UsageError('--plaintext is for --sqlite');
      if (opts.plaintext && output === '-') {
        throw new UsageError('--plaintext with -o - would stage an unencrypted copy on this server on its way; export with a password and open it where it lands, or give -o FILE');
      }
      if (output !== '-') refuseExisting(output);
      if (output === '-' && process.stdout.isTTY) throw new UsageError('standard output is a terminal; redirect it to a file (e.g. > me.mbox)');

      const config = loadConfig(configFile(cmd));
      let password: string;
      let copyPassword: string | null = null;
      if (opts.passwordStdin) {
        const lines = (await readStdin()).toString('utf8').split(/\r?\n/);
        password = lines[0] ?? '';
        if (format === 'sqlite' && !opts.plaintext) copyPassword = lines[1] ?? '';
      } else {
        if (!process.stdin.isTTY) throw new UsageError('give --password-stdin, or run on a terminal to be asked for the password');
        password = await ask(`Password of ${input}:`);
        if (format === 'sqlite' && !opts.plaintext) {
          copyPassword = await ask('Password for the exported copy:');
          if ((await ask('The same password again:')) !== copyPassword) throw new UserError('the two passwords differ; nothing was exported');
        }
      }
      if (password === '') throw new UserError('no password given');
      if (copyPassword !== null && copyPassword.length < MIN_PASSWORD) throw new UserError(`the copy's password is shorter than ${MIN_PASSWORD} characters; nothing was exported`);
      if (opts.plaintext) await confirmPlaintext(opts.yes === true);

      const opened = openMailbox(config, input, password);
      const toStderr = output === '-';
      try {
        if (opened.imported.imported > 0) process.stderr.write(`${opened.imported.imported} message(s) waiting in the spool were imported first\n`);
        if (format === 'sqlite') {
          await exportSqlite(opened.store, opened.address, output, copyPassword);
          return;
        }
        const bar = progressBar(process.stderr.isTTY === true && !opts.json);
        let summary: ExportSummary;
        try {
          summary = await exportMailbox(opened.store, opened.address, {
            format: format as ExportFormat,
            output,
            single: opts.single,
            zip: opts.zip,
            folders: opts.folder,
            onProgress: bar.update,
          });
        } finally {
          bar.stop();
        }
        report(summary, opts.json === true, toStderr);
      } finally {
        opened.store.close();
      }
    });
}

async function exportSqlite(store: import('../../store/mailbox-db.js').MailboxStore, address: string, output: string, copyPassword: string | null): Promise<void> {
  if (output === '-') {
    // Staged beside the database (same volume, keyed to the chosen password), streamed, removed.
    const staged = path.join(store.dir, `.export-${randomBytes(6).toString('hex')}.db`);
    try {
      store.exportCopy(staged, copyPassword);
      await pipeline(createReadStream(staged), process.stdout, { end: false });
    } finally {
      rmSync(staged, { force: true });
    }
    process.stderr.write(`exported ${address} as an SQLite database keyed to your password; open it with sqlite3mc (see fe export --help)\n`);
    return;
  }
  const tmp = path.join(path.dirname(path.resolve(output)), `.${path.basename(output)}.partial-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp, { mode: 0o700 });
  try {
    store.exportCopy(path.join(tmp, 'mailbox.db'), copyPassword);
    writeFileSync(path.join(tmp, 'README.txt'), SQLITE_README(address, copyPassword !== null), { mode: 0o600 });
    if (existsSync(output)) throw new UserError(`${output} appeared during the export`);
    renameSync(tmp, output);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  process.stdout.write(`exported ${address} to ${path.join(output, 'mailbox.db')} (${copyPassword === null ? 'NOT encrypted' : 'encrypted with the password you chose'}); ${path.join(output, 'README.txt')} says how to open it\n`);
}
