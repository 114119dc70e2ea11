// fe alias: addresses this host accepts, where their mail goes, and mailbox passwords.
import type { Command } from 'commander';
import { addAlias, describeAlias, MIN_PASSWORD } from '../../admin/aliases.js';
import { purgeMailboxDir } from '../../admin/purge.js';
import { removeAlias, removePgpKey } from '../../config/edit.js';
import { editConfig, loadConfig } from '../../config/file.js';
import { acquireLock } from '../../config/lock.js';
import { aliasAddress, displayDomain, formatAddress, mailboxAddress } from '../../config/names.js';
import { resolveRecipient } from '../../config/resolve.js';
import { changeMailboxPassword, generatePassword, keyFilePath, WrongPassword } from '../../crypto/mailbox-key.js';
import { mailboxDir } from '../../store/paths.js';
import { UsageError, UserError } from '../../util/errors.js';
import { configFile, JSON_HELP, mailboxWithKey, parseName, servedDomain } from '../context.js';
import { print, printJson, printTable, readStdin, style } from '../output.js';

function checkPassword(pw: string): string {
  if (pw.length < MIN_PASSWORD) throw new UserError(`the password is shorter than ${MIN_PASSWORD} characters; nothing was changed`);
  return pw;
}

/** Lines of stdin without their line ends; for --password-stdin. */
async function stdinLines(): Promise<string[]> {
  if (process.stdin.isTTY) process.stderr.write('reading from standard input (end with Ctrl-D)\n');
  return (await readStdin()).toString('utf8').split(/\r?\n/);
}

export function registerAlias(program: Command): void {
  const alias = program
    .command('alias')
    .description('add, list and remove aliases; change mailbox passwords; see where an address goes')
    .addHelpText(
      'after',
      `
An alias forwards, stores in a mailbox, or both. Matching ignores case; me+anything@ reaches
me@ (sub-addressing); *@example.org is the catch-all for names with no alias of their own.
Mailbox passwords unlock the mailbox's encryption key: fe cannot read or reset them.`,
    );

  alias
    .command('add')
    .description('accept mail for an address: forward it, store it in a mailbox, or both')
    .argument('<address>', 'e.g. me@example.org, or *@example.org for the catch-all')
    .option('--forward <targets>', 'comma-separated addresses to forward to')
    .option('--mailbox', 'store mail in an encrypted mailbox (prints its password once)')
    .option('--password-stdin', 'read the mailbox password from standard input instead of generating one')
    .addHelpText('after', '\nExamples:\n  fe alias add me@example.org --mailbox\n  fe alias add shop@example.org --forward me@gmail.example,me@example.org\n  printf "%s\\n" "$PW" | fe alias add you@example.org --mailbox --password-stdin')
    .action(async (input: string, opts: { forward?: string; mailbox?: boolean; passwordStdin?: boolean }, cmd: Command) => {
      const forward = (opts.forward ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      if (!opts.mailbox && forward.length === 0) throw new UsageError('give --forward ADDRESSES, --mailbox, or both');
      if (opts.passwordStdin && !opts.mailbox) throw new UsageError('--password-stdin needs --mailbox');
      parseName(aliasAddress, input); // a bad address is reported before waiting on standard input
      const password = opts.passwordStdin ? ((await stdinLines())[0] ?? '') : null;
      const result = await addAlias(configFile(cmd), { address: input, forward, mailbox: opts.mailbox === true, password });
      const what = describeAlias({ forward: forward.map((f) => parseName(mailboxAddress, f)), mailbox: opts.mailbox === true, sendAs: [] });
      print(`added ${result.address}: ${what}${result.reattached ? ' (its existing mailbox was attached again)' : ''}`);
      if (result.generatedPassword !== null) {
        print(`password for ${result.address} (shown this once; fe keeps no copy and cannot reset it):`);
        print(`  ${style.bold(result.generatedPassword)}`);
      }
    });

  alias
    .command('list')
    .description('list aliases, of one domain or all')
    .argument('[domain]', 'only this domain')
    .option('--json', JSON_HELP)
    .action((input: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const domains = input ? [servedDomain(config, input)] : [...config.domains.values()];
      const rows = domains.flatMap((d) =>
        [...d.aliases.entries()].map(([local, a]) => ({
          address: `${local}@${d.name}`,
          display: `${local}@${displayDomain(d.name)}`,
          mailbox: a.mailbox,
          forward: a.forward,
          pgpFingerprint: config.keys.get(`${local}@${d.name}`)?.fingerprint ?? null,
        })),
      );
      if (opts.json) return printJson(rows.map(({ display: _d, ...r }) => r));
      if (rows.length === 0) return print('no aliases yet: fe alias add me@DOMAIN --mailbox');
      printTable(
        ['ADDRESS', 'MAILBOX', 'FORWARD TO', 'OPENPGP'],
        rows.map((r) => [r.display, r.mailbox ? 'yes' : 'no', r.forward.join(', ') || '-', r.pgpFingerprint ? r.pgpFingerprint.slice(-16) : '-']),
      );
    });

  alias
    .command('remove')
    .description('stop accepting mail for an address (a mailbox stays on disk, unless --purge)')
    .argument('<address>', 'the alias, exactly as listed (e.g. *@example.org for the catch-all)')
    .option('--purge', "also destroy its mailbox: the password-wrapped key first, then the database, its WAL and the spool (asks first)")
    .option('--yes', 'do not ask before --purge')
    .addHelpText(
      'after',
      `
Without --purge the mailbox stays in the data directory and adding the alias again with its
password attaches it again. With --purge it is gone for good: the wrapped key file is
overwritten and removed first (crypto-shredding), so from that instant the database, the
sealed spool and every backup made before are ciphertext no password opens; then the
files are removed. (Flash storage and journaling file systems may keep old blocks of the key
file; the LUKS volume fe init sets up covers those.)`,
    )
    .action(async (input: string, opts: { purge?: boolean; yes?: boolean }, cmd: Command) => {
      const address = parseName(aliasAddress, input);
      const canonical = formatAddress(address);
      if (opts.yes && !opts.purge) throw new UsageError('--yes goes with --purge');
      if (opts.purge && !opts.yes) {
        if (!process.stdin.isTTY) throw new UsageError('--purge destroys the mailbox; add --yes when standard input is not a terminal');
        const { input: ask } = await import('@inquirer/prompts');
        const typed = await ask({ message: `This destroys the mailbox of ${canonical} and its mail for good. Type the address to confirm:` });
        if (typed.trim().toLowerCase() !== canonical.toLowerCase()) throw new UserError('not confirmed; nothing was changed');
      }
      const { wasMailbox, dir } = await editConfig(configFile(cmd), ({ doc, config }) => {
        const domain = servedDomain(config, address.domain);
        const existing = domain.aliases.get(address.local);
        if (!existing) throw new UserError(`${canonical} is not an alias (see fe alias list ${domain.name}); nothing was changed`);
        removeAlias(doc, domain, domain.aliasKeys.get(address.local)!);
        const key = config.keys.get(canonical);
        if (key) removePgpKey(doc, key.key);
        return { wasMailbox: existing.mailbox, dir: mailboxDir(config.dataDir, domain.name, address.local) };
      });
      print(`removed ${canonical}`);
      if (opts.purge) {
        const r = purgeMailboxDir(dir);
        if (r.keyDestroyed) print(`its mailbox key was destroyed and ${r.filesRemoved} file(s) removed from ${dir}`);
        else if (r.filesRemoved > 0) print(`${r.filesRemoved} file(s) removed from ${dir} (there was no key file)`);
        else print('it had no mailbox on disk');
      } else if (wasMailbox) print(`its mailbox stays in ${dir}; adding the alias again with its password attaches it again (fe alias remove --purge destroys it)`);
    });

  alias
    .command('passwd')
    .description("change a mailbox's password (needs the current one: fe cannot read the mailbox without it)")
    .argument('<address>', 'a mailbox alias')
    .requiredOption('--password-stdin', 'read the current password from the first line of standard input and the new one from the second (no second line: a new one is generated and printed)')
    .addHelpText('after', '\nA mailbox made before the post-quantum seal also gets its ML-KEM-768 key here (as with fe mailbox upgrade-seal).')
    .action(async (input: string, _opts: unknown, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const { canonical, dir } = mailboxWithKey(config, input);
      const [current = '', next = ''] = await stdinLines();
      if (current === '') throw new UserError('no current password on standard input');
      const generated = next === '';
      const password = generated ? generatePassword() : checkPassword(next);
      const release = await acquireLock(keyFilePath(dir), 10_000);
      try {
        changeMailboxPassword(dir, current, password);
      } catch (e) {
        if (e instanceof WrongPassword) throw new UserError(`wrong password for ${canonical}; nothing was changed`);
        throw e;
      } finally {
        release();
      }
      print(`changed the password of ${canonical}`);
      if (generated) print(`new password (shown this once):\n  ${style.bold(password)}`);
    });

  alias
    .command('resolve')
    .description('show where mail to an address would go (sub-addressing and catch-all applied)')
    .argument('<address>', 'any address, e.g. Me+News@example.org')
    .option('--json', JSON_HELP)
    .action((input: string, opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const result = resolveRecipient(config, input);
      if (!result.ok) {
        if (opts.json) printJson({ address: input, accepted: false, reason: result.reason, message: result.message });
        else print(`${input}: rejected (${result.message})`);
        process.exitCode = 1;
        return;
      }
      const r = result.resolution;
      const alias = `${r.local}@${r.domain.name}`;
      if (opts.json) {
        printJson({ address: input, accepted: true, alias, via: r.via, tag: r.tag, mailbox: r.alias.mailbox, forward: r.alias.forward });
        return;
      }
      const via = r.via === 'exact' ? '' : r.via === 'subaddress' ? ` (sub-address, tag "${r.tag}")` : r.via === 'postmaster' ? ' (postmaster: the admin)' : ' (catch-all)';
      print(`${input} -> ${alias}${via}: ${describeAlias(r.alias)}`);
    });
}
