// fe import: mail from an mbox, a Maildir, .eml files or a live IMAP server into a mailbox.
import { createReadStream } from 'node:fs';
import type { Command } from 'commander';
import { Option } from 'commander';
import { loadConfig } from '../../config/file.js';
import { MBOX_FORMATS, type MboxFormat } from '../../import/mbox.js';
import type { ImportSource } from '../../import/run.js';
import { UsageError, UserError } from '../../util/errors.js';
import { configFile, JSON_HELP } from '../context.js';
import { print, printJson, warn } from '../output.js';

interface Opts {
  mbox?: string;
  mboxFormat?: MboxFormat;
  maildir?: string;
  eml?: string;
  imap?: string;
  imapPasswordStdin?: boolean;
  imapPasswordFd?: string;
  imapInsecure?: boolean;
  passwordStdin?: boolean;
  folder?: string;
  json?: boolean;
}

/** Standard input as lines first (passwords), then the rest as a byte stream (an mbox on "-"). */
class Stdin {
  private rest: Buffer = Buffer.alloc(0);
  private readonly it = process.stdin[Symbol.asyncIterator]();
  private ended = false;

  async line(what: string): Promise<string> {
    for (;;) {
      const nl = this.rest.indexOf(0x0a);
      if (nl !== -1) {
        const line = this.rest.subarray(0, nl).toString('utf8').replace(/\r$/, '');
        this.rest = this.rest.subarray(nl + 1);
        return line;
      }
      const r = this.ended ? { done: true as const, value: undefined } : await this.it.next();
      if (r.done) {
        this.ended = true;
        if (this.rest.length === 0) throw new UserError(`no ${what} on standard input`);
        const line = this.rest.toString('utf8');
        this.rest = Buffer.alloc(0);
        return line;
      }
      this.rest = Buffer.concat([this.rest, r.value as Buffer]);
    }
  }

  async *bytes(): AsyncGenerator<Buffer> {
    if (this.rest.length > 0) yield this.rest;
    this.rest = Buffer.alloc(0);
    if (this.ended) return;
    for (;;) {
      const r = await this.it.next();
      if (r.done) return;
      yield r.value as Buffer;
    }
  }
}

async function readFdLine(fd: number): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of createReadStream('', { fd, autoClose: true })) {
    chunks.push(c as Buffer);
    if ((c as Buffer).includes(0x0a)) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

async function prompt(message: string): Promise<string> {
  if (!process.stdin.isTTY) throw new UserError(`${message}: not on a terminal; use the --...-stdin option`);
  const { password } = await import('@inquirer/prompts');
  return password({ message, mask: true });
}

export function registerImport(program: Command): void {
  program
    .command('import')
    .description('import mail into a mailbox from an mbox, a Maildir, .eml files or an IMAP server')
    .argument('<address>', 'a mailbox alias')
    .option('--mbox <file>', 'an mbox file (mboxo, mboxrd or mboxcl2, detected), a folder tree of mbox files, or - for standard input')
    .addOption(new Option('--mbox-format <format>', 'read the mbox as this format instead of detecting it (standard input is read as mboxrd)').choices([...MBOX_FORMATS]))
    .option('--maildir <dir>', 'a Maildir or Maildir++ (subfolders .A.B; flags from file names; keywords from dovecot-keywords)')
    .option('--eml <path>', 'one .eml file, or a folder tree of .eml/.msg files (with manifest.json from fe export: folders, flags and dates from it)')
    .option('--imap <url>', 'a live IMAP server: imaps://user@host[:port] (TLS), or imap://... with STARTTLS')
    .option('--imap-password-stdin', "read the IMAP server's password from standard input (after the mailbox password with --password-stdin)")
    .option('--imap-password-fd <n>', "read the IMAP server's password from file descriptor N")
    .option('--imap-insecure', "do not verify the IMAP server's certificate (a self-signed test server)")
    .option('--password-stdin', "read the mailbox's password from the first line of standard input (with --mbox -, the mbox follows it)")
    .option('--folder <name>', 'mbox and one .eml file: the folder to import into (default INBOX, or X-Folder); other sources: import only this folder')
    .option('--json', JSON_HELP)
    .addHelpText(
      'after',
      `
Flags and internal dates are kept; folders are created as needed. A message already imported into
the same folder (same Message-ID and SHA-256 of its bytes) is not added again, so an import that was
interrupted can simply be run again. Messages that cannot be read (over limits.message_size, cut
off, not mail) are skipped and listed; everything else is kept. Works while fe serve runs: logged-in
IMAP clients see the new mail.

Examples:
  fe import me@example.org --mbox old.mbox
  (cat password.txt; ssh old-host cat mail.mbox) | fe import me@example.org --mbox - --password-stdin
  fe import me@example.org --maildir ~/Maildir
  fe import me@example.org --imap imaps://me%40gmail.example@imap.gmail.example`,
    )
    .action(async (input: string, opts: Opts, cmd: Command) => {
      const chosen = (['mbox', 'maildir', 'eml', 'imap'] as const).filter((k) => opts[k] !== undefined);
      if (chosen.length !== 1) throw new UsageError('give exactly one of --mbox, --maildir, --eml, --imap');
      if (opts.mboxFormat && !opts.mbox) throw new UsageError('--mbox-format goes with --mbox');
      if ((opts.imapPasswordStdin || opts.imapPasswordFd || opts.imapInsecure) && !opts.imap) throw new UsageError('--imap-password-stdin, --imap-password-fd and --imap-insecure go with --imap');
      if (opts.imapPasswordStdin && opts.imapPasswordFd) throw new UsageError('give --imap-password-stdin or --imap-password-fd, not both');
      if (opts.mbox === '-' && !opts.passwordStdin) throw new UsageError('--mbox - reads standard input: give the password first on it with --password-stdin');
      const config = loadConfig(configFile(cmd));
      const stdin = new Stdin();
      const password = opts.passwordStdin ? await stdin.line('mailbox password') : await prompt(`Password of ${input}`);
      if (password === '') throw new UserError('the mailbox password is empty');
      let source: ImportSource;
      if (opts.mbox !== undefined) source = { kind: 'mbox', path: opts.mbox, format: opts.mboxFormat, stream: opts.mbox === '-' ? stdin.bytes() : undefined };
      else if (opts.maildir !== undefined) source = { kind: 'maildir', path: opts.maildir };
      else if (opts.eml !== undefined) source = { kind: 'eml', path: opts.eml };
      else {
        const imapPassword = opts.imapPasswordStdin ? await stdin.line('IMAP password') : opts.imapPasswordFd !== undefined ? await readFdLine(Number(opts.imapPasswordFd)) : await prompt(`Password for ${opts.imap}`);
        source = { kind: 'imap', url: opts.imap!, password: imapPassword, insecure: opts.imapInsecure };
      }
      const tty = process.stderr.isTTY === true && !opts.json;
      const { runImport } = await import('../../import/run.js'); // its IMAP client loads only when importing
      const report = await runImport({
        config,
        address: input,
        password,
        source,
        folder: opts.folder,
        onFormat: opts.json ? undefined : (file, format) => process.stderr.write(`${file}: ${format}\n`),
        onBatch: tty ? (s) => process.stderr.write(`\r${s.imported} imported, ${s.duplicates} already there, ${s.skipped.length} skipped`) : undefined,
      });
      if (tty) process.stderr.write('\n');
      const peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
      if (opts.json) {
        const byReason: Record<string, number> = {};
        for (const s of report.skipped) byReason[s.reason] = (byReason[s.reason] ?? 0) + 1;
        return printJson({
          address: report.address,
          source: chosen[0],
          formats: report.formats,
          read: report.read,
          imported: report.imported,
          duplicates: report.duplicates,
          skipped: report.skipped.length,
          skippedByReason: byReason,
          skippedMessages: report.skipped.slice(0, 1000),
          mimeProblems: report.mimeProblems,
          folders: report.folders,
          bytes: report.bytes,
          peakRssMiB,
        });
      }
      const where = Object.entries(report.folders).map(([f, n]) => `${f} (${n})`).join(', ');
      print(`${report.address}: ${report.imported} message(s) imported${where ? ` into ${where}` : ''}; ${report.duplicates} already there; ${report.skipped.length} skipped`);
      if (report.mimeProblems > 0) print(`${report.mimeProblems} imported message(s) have a MIME structure that does not parse; they are kept as they are`);
      for (const s of report.skipped.slice(0, 50)) warn(`skipped ${s.where}: ${s.reason}`);
      if (report.skipped.length > 50) warn(`... and ${report.skipped.length - 50} more skipped (--json lists them)`);
    });
}
