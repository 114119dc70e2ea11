// fe dev: a local, root-free fe to try things with. Creates a state folder with a config, a test
// domain, a mailbox alias and a forward alias. Safe to run again: it reuses what is there.
import type { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { addAlias } from '../../admin/aliases.js';
import { addDomain } from '../../admin/domains.js';
import { setListen } from '../../config/edit.js';
import { editConfig, loadConfig } from '../../config/file.js';
import { runUntilStopped } from './serve.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { print, style } from '../output.js';
import { renderTemplate } from './config.js';

const DOMAIN = 'fe.test'; // .test is reserved (RFC 2606): it can never leak to a real domain
const HOSTNAME = `mail.${DOMAIN}`;
const DEV_PORTS = { mx: 2525, submission: 1587, submissions: 1465, imap: 1143, imaps: 1993, pop3: 1110, pop3s: 1995 } as const;

export interface DevState {
  dir: string;
  config: string;
  created: boolean;
}

/** Creates (or finds) the dev state folder. Shared with the daemons' dev mode once they exist. */
export async function ensureDevState(dir: string): Promise<DevState> {
  const config = path.join(dir, 'fe.yml');
  if (existsSync(config)) {
    loadConfig(config); // fails loudly if someone broke it
    await devListen(config); // a folder made by an older fe gains the daemons added since
    return { dir, config, created: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(config, renderTemplate(HOSTNAME, './data'), 0o644);
  await devListen(config);
  await addDomain(config, DOMAIN);
  const me = await addAlias(config, { address: `me@${DOMAIN}`, forward: [], mailbox: true });
  await addAlias(config, { address: `shop@${DOMAIN}`, forward: [`me@${DOMAIN}`], mailbox: false });
  // A dev-only convenience, 0600 in the dev folder; a real install never keeps a password.
  writeFileAtomic(path.join(dir, 'credentials.txt'), `# fe dev only: test credentials\nme@${DOMAIN} ${me.generatedPassword}\n`, 0o600);
  return { dir, config, created: true };
}

/** High ports on loopback for every daemon: no root needed, nothing reachable from outside. */
async function devListen(config: string): Promise<void> {
  await editConfig(config, ({ doc }) => {
    for (const [daemon, port] of Object.entries(DEV_PORTS)) if (doc.getIn(['listen', daemon]) === undefined) setListen(doc, daemon, `127.0.0.1:${port}`);
    // Password logins without TLS, from this machine only: what lets a newcomer try any client.
    if (doc.get('loopback_plaintext_auth') === undefined) doc.set('loopback_plaintext_auth', true);
  });
}

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('run fe locally without root: creates a state folder with a test domain and aliases')
    .option('--dir <path>', 'the state folder', '.fe-dev')
    .option('--no-start', 'only create the state folder; do not start the daemons')
    .addHelpText(
      'after',
      `
Everything stays in the state folder (config, keys, mailboxes); delete it to start over.
Use the config with any command: FE_CONFIG=.fe-dev/fe.yml fe alias list`,
    )
    .action(async (opts: { dir: string; start: boolean }) => {
      const dir = path.resolve(opts.dir);
      const state = await ensureDevState(dir);
      const rel = path.relative(process.cwd(), state.config) || state.config;
      print(`${state.created ? 'created' : 'using'} ${style.bold(rel)}: domain ${DOMAIN}, host ${HOSTNAME}`);
      print(`  me@${DOMAIN}    mailbox (password in ${path.join(path.relative(process.cwd(), dir) || '.', 'credentials.txt')})`);
      print(`  shop@${DOMAIN}  forwards to me@${DOMAIN}`);
      if (state.created) print(`  password for me@${DOMAIN}: ${style.bold(readFileSync(path.join(dir, 'credentials.txt'), 'utf8').split('\n')[1]!.split(' ')[1]!)}`);
      print('');
      print('try:');
      print(`  FE_CONFIG=${rel} ./bin/fe alias list`);
      print(`  FE_CONFIG=${rel} ./bin/fe alias resolve me+news@${DOMAIN}`);
      print(`  FE_CONFIG=${rel} ./bin/fe domain dns ${DOMAIN}`);
      if (!opts.start) return;
      const { serve } = await import('../../daemon/serve.js');
      const running = await serve(state.config);
      const mx = running.addresses.mx;
      print('');
      if (mx) {
        print(`MX (port 25's role) on ${mx.address}:${mx.port}, STARTTLS with a self-signed certificate. Send a message:`);
        print(`  swaks --server ${mx.address}:${mx.port} --from you@example.net --to me@${DOMAIN}`);
        print(`  swaks --server ${mx.address}:${mx.port} --from you@example.net --to shop@${DOMAIN}   # forwarded to me@`);
        print(`it is sealed to me@${DOMAIN}'s key and waits in ${path.join(rel === state.config ? dir : path.dirname(rel), 'data', 'mailboxes', DOMAIN, 'me', 'spool')}`);
        // The engine layers are on by default; on a laptop their engines are usually absent.
        print(`content protection: executables and phishing checks run here; viruses (clamd) and spam (rspamd) are skipped with a WARN per message unless those engines run locally (or set protection: {viruses: off, spam: off} in ${rel})`);
      }
      const imap = running.addresses.imap;
      const imaps = running.addresses.imaps;
      if (imap && imaps) {
        print(`IMAP on ${imap.address}:${imap.port} (STARTTLS; plain login allowed from this machine) and ${imaps.address}:${imaps.port} (TLS). Log in as me@${DOMAIN} with the password above, e.g.:`);
        print(`  python3 -c "import imaplib; m = imaplib.IMAP4('${imap.address}', ${imap.port}); m.login('me@${DOMAIN}', open('${path.join(path.relative(process.cwd(), dir) || '.', 'credentials.txt')}').read().split()[-1]); print(m.select('INBOX'))"`);
      }
      const pop3 = running.addresses.pop3;
      const pop3s = running.addresses.pop3s;
      const user = `me@${DOMAIN}`;
      const pass = readFileSync(path.join(dir, 'credentials.txt'), 'utf8').split('\n')[1]!.split(' ')[1]!;
      if (pop3) {
        print(`POP3 on ${pop3.address}:${pop3.port} (STLS; plain login allowed from this machine). Read the mailbox:`);
        print(`  python3 -c 'import poplib; p=poplib.POP3("${pop3.address}",${pop3.port}); p.user("${user}"); p.pass_("${pass}"); print(p.stat()); p.quit()'`);
      }
      if (pop3s) {
        print(`POP3S (TLS) on ${pop3s.address}:${pop3s.port}, self-signed certificate:`);
        print(`  python3 -c 'import poplib,ssl; p=poplib.POP3_SSL("${pop3s.address}",${pop3s.port},context=ssl._create_unverified_context()); p.user("${user}"); p.pass_("${pass}"); print(p.stat()); p.quit()'`);
        print(`  fetchmail --nosyslog -p POP3 -P ${pop3s.port} --ssl --nosslcertck -u ${user} -k --mda 'cat >> mail.txt' ${pop3s.address}   # asks for the password; -k keeps the mail on the server`);
      }
      const sub = running.addresses.submission;
      const subs = running.addresses.submissions;
      if (sub) {
        print(`Submission on ${sub.address}:${sub.port} (STARTTLS; plain login allowed from this machine)${subs ? ` and ${subs.address}:${subs.port} (TLS)` : ''}. Send as me@${DOMAIN}:`);
        print(`  swaks --server ${sub.address}:${sub.port} --auth PLAIN --auth-user ${user} --auth-password '${pass}' --from ${user} --to shop@${DOMAIN}`);
        print(`the copy for the sender goes to Sent; mail for ${DOMAIN} is delivered here, mail for other domains waits in the queue (fe queue list) since fe dev has no route to the internet.`);
        print('A mail client (Thunderbird-style settings):');
        print(`  incoming  IMAP  ${imaps ? `${imaps.address} port ${imaps.port}, SSL/TLS` : 'off'}, user ${user}, normal password`);
        print(`  outgoing  SMTP  ${subs ? `${subs.address} port ${subs.port}, SSL/TLS` : `${sub.address} port ${sub.port}, STARTTLS`}, user ${user}, normal password (accept the self-signed certificate)`);
      }
      print('Ctrl-C stops.');
      await runUntilStopped(running);
    });
}
