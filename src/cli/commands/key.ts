// fe key: OpenPGP public keys that mail to an alias is encrypted to.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { removePgpKey, setPgpKey } from '../../config/edit.js';
import { editConfig, loadConfig } from '../../config/file.js';
import { isForwardTarget } from '../../config/schema.js';
import { aliasAddress, formatAddress } from '../../config/names.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP, parseName, servedDomain } from '../context.js';
import { print, printJson, printTable, readStdin } from '../output.js';

const MAX_KEY_BYTES = 1024 * 1024; // real public keys are a few KB; this refuses a wrong file early

export function registerKey(program: Command): void {
  const key = program.command('key').description('OpenPGP public keys kept in fe.yml: mail stored for the alias is encrypted to its key (PGP/MIME); published by WKD on fe-web');

  key
    .command('add')
    .description('attach a public key to an alias or a forward target (replaces an earlier one); prints the fingerprint')
    .argument('<address>', 'the alias, e.g. me@example.org, or an address an alias forwards to')
    .argument('<file>', 'the key, ASCII-armored or binary; - reads standard input')
    .addHelpText(
      'after',
      `
A forward target's key is used for aliases that forward to it with "encrypt: true".

Refused: private keys, expired or revoked keys, keys without an encryption-capable
subkey, and keys none of whose user IDs is the address.

Example:
  gpg --export --armor me@example.org | fe key add me@example.org -`,
    )
    .action(async (input: string, source: string, _opts: unknown, cmd: Command) => {
      const address = parseName(aliasAddress, input);
      const canonical = formatAddress(address);
      if (address.local === '*') throw new UserError('a key belongs to one address, not the catch-all');
      let data: Buffer;
      try {
        data = source === '-' ? await readStdin() : readFileSync(source);
      } catch (e) {
        throw new UserError(`cannot read ${source}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
      }
      if (data.length > MAX_KEY_BYTES) throw new UserError(`${source} is ${data.length} bytes; an OpenPGP public key is far smaller`);
      const { checkPublicKey, KeyRejected } = await import('../../keys/openpgp.js');
      let accepted;
      try {
        accepted = await checkPublicKey(new Uint8Array(data), canonical);
      } catch (e) {
        if (e instanceof KeyRejected) throw new UserError(`key refused: ${e.message}; nothing was changed`);
        throw e;
      }
      const replaced = await editConfig(configFile(cmd), ({ doc, config }) => {
        // An alias of ours, or the target of a forward alias (its forwarded copies can be encrypted).
        if (!isForwardTarget(config, canonical)) {
          const domain = servedDomain(config, address.domain);
          if (!domain.aliases.has(address.local)) throw new UserError(`${canonical} is not an alias (fe alias add ${canonical} ...) nor the target of a forward; nothing was changed`);
        }
        const old = config.keys.get(canonical);
        if (old && old.key !== canonical) removePgpKey(doc, old.key);
        setPgpKey(doc, canonical, accepted.fingerprint, accepted.armored);
        return old?.fingerprint ?? null;
      });
      print(`${canonical}: key ${accepted.fingerprint} (${accepted.algorithm}${accepted.expires ? `, expires ${accepted.expires.toISOString().slice(0, 10)}` : ''})`);
      if (replaced && replaced !== accepted.fingerprint) print(`replaced the earlier key ${replaced}`);
    });

  key
    .command('list')
    .description('list keys and the addresses they belong to')
    .option('--json', JSON_HELP)
    .action((opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const rows = [...config.keys.values()].map((k) => ({ address: k.address, fingerprint: k.fingerprint }));
      if (opts.json) return printJson(rows);
      if (rows.length === 0) return print('no keys yet: fe key add ADDRESS FILE');
      printTable(['ADDRESS', 'FINGERPRINT'], rows.map((r) => [r.address, r.fingerprint]));
    });

  key
    .command('remove')
    .description("remove an alias's key (its mail is then stored without OpenPGP)")
    .argument('<address>', 'the alias')
    .action(async (input: string, _opts: unknown, cmd: Command) => {
      const canonical = formatAddress(parseName(aliasAddress, input));
      const fingerprint = await editConfig(configFile(cmd), ({ doc, config }) => {
        const k = config.keys.get(canonical);
        if (!k) throw new UserError(`${canonical} has no key; nothing was changed`);
        removePgpKey(doc, k.key);
        return k.fingerprint;
      });
      print(`removed key ${fingerprint} of ${canonical}`);
    });
}
