// fe mailbox: open a mailbox with its password; mail waiting in the sealed spool is imported.
import type { Command } from 'commander';
import { openMailbox } from '../../admin/mailbox.js';
import { acquireLock } from '../../config/lock.js';
import { keyFilePath, mailboxKeyVersion, upgradeMailboxSeal, WrongPassword } from '../../crypto/mailbox-key.js';
import { sealVersion } from '../../crypto/seal.js';
import { listSpool, spoolDir, spoolFileName } from '../../store/spool.js';
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { MailStoreError } from '../../store/mailbox-db.js';
import { loadConfig } from '../../config/file.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP, mailboxWithKey } from '../context.js';
import { print, printJson, printTable, readStdin } from '../output.js';

/** Spool files still sealed with X25519 alone (format v1): what an upgrade does not reach. */
function x25519OnlyInSpool(dir: string): number {
  let n = 0;
  for (const id of listSpool(dir)) {
    try {
      // The version is byte 5: read the head only, a spool file may be 25 MB.
      const fd = openSync(path.join(spoolDir(dir), spoolFileName(id)), 'r');
      const head = Buffer.alloc(5);
      try {
        readSync(fd, head, 0, 5, 0);
      } finally {
        closeSync(fd);
      }
      if (sealVersion(head) === 1) n++;
    } catch {
      // imported and removed meanwhile
    }
  }
  return n;
}

export function registerMailbox(program: Command): void {
  const mailbox = program.command('mailbox').description("a mailbox's contents, opened with its password");

  mailbox
    .command('status')
    .description('open a mailbox, import mail waiting in its spool, and list its folders (and say when its seal predates ML-KEM-768)')
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
        const hybrid = mailboxKeyVersion(opened.dir) === 2;
        if (opts.json) {
          return printJson({ address: opened.address, seal: hybrid ? 'x25519+ml-kem-768' : 'x25519', imported, failed: failed.length, folders: folders.map((f) => ({ name: f.name, specialUse: f.specialUse, messages: f.messages, unseen: f.unseen })) });
        }
        print(`${opened.address}: ${imported} new message(s) imported from the spool`);
        if (failed.length > 0) print(`${failed.length} spool file(s) could not be opened and were moved to spool/failed/`);
        printTable(['FOLDER', 'MESSAGES', 'UNSEEN'], folders.map((f) => [f.name, String(f.messages), String(f.unseen)]));
        // Made before the post-quantum seal and not logged in to since: say how to move it on.
        if (!hybrid) print(`new mail to ${opened.address} is sealed with X25519 alone; fe mailbox upgrade-seal ${opened.address} --password-stdin adds ML-KEM-768 (so does its owner's next IMAP, POP3 or submission login)`);
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

  mailbox
    .command('upgrade-seal')
    .description('give a mailbox made before the post-quantum seal its ML-KEM-768 key: new mail is then sealed with X25519 + ML-KEM-768')
    .argument('<address>', 'a mailbox alias')
    .requiredOption('--password-stdin', "read the mailbox's password from the first line of standard input")
    .option('--json', JSON_HELP)
    .addHelpText(
      'after',
      `
The password, the mailbox's database key and its X25519 key stay as they are, so mail sealed
before keeps opening; only mail sealed from now on is hybrid. Mail already waiting in the
spool stays X25519-sealed until it is imported (the next login, or fe mailbox status).
Mailboxes added with this version of fe have the hybrid key from the start; an old one
also gets it at its owner's next IMAP, POP3 or submission login, and from fe alias passwd.
IMAP/POP3 sessions open during the upgrade see mail that arrives after it once they log in again.`,
    )
    .action(async (input: string, opts: { json?: boolean }, cmd: Command) => {
      const password = (await readStdin()).toString('utf8').split(/\r?\n/)[0] ?? '';
      if (password === '') throw new UserError('no password on standard input');
      const config = loadConfig(configFile(cmd));
      const { canonical, dir } = mailboxWithKey(config, input);
      const release = await acquireLock(keyFilePath(dir), 10_000);
      let upgraded: boolean;
      try {
        upgraded = upgradeMailboxSeal(dir, password);
      } catch (e) {
        if (e instanceof WrongPassword) throw new UserError(`wrong password for ${canonical}; nothing was changed`);
        throw e;
      } finally {
        release();
      }
      const waiting = x25519OnlyInSpool(dir);
      if (opts.json) return printJson({ address: canonical, upgraded, seal: mailboxKeyVersion(dir) === 2 ? 'x25519+ml-kem-768' : 'x25519', x25519OnlyInSpool: waiting });
      print(upgraded ? `${canonical}: new mail is now sealed with X25519 + ML-KEM-768` : `${canonical} already has the X25519 + ML-KEM-768 seal; nothing was changed`);
      if (waiting > 0) print(`${waiting} message(s) waiting in its spool were sealed with X25519 alone; they stay so until imported (fe mailbox status)`);
    });
}
