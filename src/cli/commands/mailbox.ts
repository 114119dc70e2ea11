// fe mailbox: open a mailbox with its password; mail waiting in the sealed spool is imported.
import type { Command } from 'commander';
import { openMailbox } from '../../admin/mailbox.js';
import { MailStoreError } from '../../store/mailbox-db.js';
import { loadConfig } from '../../config/file.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP } from '../context.js';
import { print, printJson, printTable, readStdin } from '../output.js';

export function registerMailbox(program: Command): void {
  const mailbox = program.command('mailbox').description("a mailbox's contents, opened with its password");

  mailbox
    .command('status')
    .description('open a mailbox, import mail waiting in its spool, and list its folders')
    .argument('<address>', 'a mailbox alias')
    .requiredOption('--password-stdin', "read the mailbox's password from the first line of standard input")
    .option('--json', JSON_HELP)
    .action(async (input: string, opts: { json?: boolean }, cmd: Command) => {
      const password = (await readStdin()).toString('utf8').split(/\r?\n/)[0] ?? '';
      if (password === '') throw new UserError('no password on standard input');
      const opened = openMailbox(loadConfig(configFile(cmd)), input, password);
      try {
        const folders = opened.store.listFolders();
        const { imported, failed } = opened.imported;
        if (opts.json) {
          return printJson({ address: opened.address, imported, failed: failed.length, folders: folders.map((f) => ({ name: f.name, specialUse: f.specialUse, messages: f.messages, unseen: f.unseen })) });
        }
        print(`${opened.address}: ${imported} new message(s) imported from the spool`);
        if (failed.length > 0) print(`${failed.length} spool file(s) could not be opened and were moved to spool/failed/`);
        printTable(['FOLDER', 'MESSAGES', 'UNSEEN'], folders.map((f) => [f.name, String(f.messages), String(f.unseen)]));
      } finally {
        opened.store.close();
      }
    });

  mailbox
    .command('delete-folder')
    .description('delete a folder and its messages from a mailbox (the bytes are overwritten in the file, not only unlinked)')
    .argument('<address>', 'a mailbox alias')
    .argument('<folder>', 'the folder, e.g. Archive/2019 (INBOX cannot be deleted; subfolders first)')
    .requiredOption('--password-stdin', "read the mailbox's password from the first line of standard input")
    .action(async (input: string, folder: string, _opts: unknown, cmd: Command) => {
      const password = (await readStdin()).toString('utf8').split(/\r?\n/)[0] ?? '';
      if (password === '') throw new UserError('no password on standard input');
      const opened = openMailbox(loadConfig(configFile(cmd)), input, password);
      try {
        const info = opened.store.getFolder(folder);
        if (!info) throw new UserError(`${opened.address} has no folder ${JSON.stringify(folder)} (fe mailbox status lists them)`);
        try {
          opened.store.deleteFolder(info.name);
        } catch (e) {
          if (e instanceof MailStoreError) throw new UserError(e.message);
          throw e;
        }
        print(`deleted ${info.name} (${info.messages} message(s)) from ${opened.address}`);
      } finally {
        opened.store.close();
      }
    });
}
