// fe queue: what the outbound queue holds, and retrying or removing it. Works beside a running
// queue daemon: reads share the database, changes are small transactions it sees next round.
import { rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../../config/file.js';
import { incomingDir, listIncoming } from '../../queue/handoff.js';
import { QueueStore, type QueuedMessage, type RecipientRow } from '../../queue/store.js';
import { UserError } from '../../util/errors.js';
import { configFile, JSON_HELP } from '../context.js';
import { print, printJson } from '../output.js';

function withStore<T>(cmd: Command, fn: (store: QueueStore, dataDir: string) => T, empty: () => T): T {
  const config = loadConfig(configFile(cmd));
  if (!QueueStore.exists(config.dataDir)) return empty();
  const store = QueueStore.open(config.dataDir);
  try {
    return fn(store, config.dataDir);
  } finally {
    store.close();
  }
}

/** Wakes a running queue daemon (it watches queue/incoming/). */
function kick(dataDir: string): void {
  const dir = incomingDir(dataDir);
  if (!existsSync(dir)) return;
  const f = path.join(dir, `.kick-${process.pid}`);
  writeFileSync(f, '');
  rmSync(f, { force: true });
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

function recipientJson(r: RecipientRow) {
  return { address: r.address, state: r.state, attempts: r.attempts, next_attempt: r.state === 'queued' ? iso(r.nextAttempt) : null, last_attempt: iso(r.lastAttempt), last_reply: r.lastText, class: r.lastClass, status: r.lastStatus, remote_mta: r.remoteMta };
}

function messageJson(m: QueuedMessage, rcpts: RecipientRow[]) {
  return { id: m.id, created: iso(m.createdAt), from: m.sender, owner: m.owner, size: m.size, redacted: m.redacted, recipients: rcpts.map(recipientJson) };
}

function describe(r: RecipientRow): string {
  if (r.state === 'queued') return r.attempts === 0 ? 'waiting for its first attempt' : `deferred (${r.lastClass ?? 'other'}), next try ${iso(r.nextAttempt)}: ${r.lastText ?? ''}`;
  if (r.state === 'delivered') return `delivered to ${r.remoteMta ?? '?'}`;
  return `${r.state === 'expired' ? 'gave up' : 'bounced'} (${r.lastStatus ?? ''}): ${r.lastText ?? ''}`;
}

export function registerQueue(program: Command): void {
  const queue = program
    .command('queue')
    .description('the outbound queue: mail submitted for other hosts that is waiting, and why')
    .addHelpText(
      'after',
      `
Submitted mail for other hosts waits here until their MX accepts it. A temporary failure is
retried after 5 minutes, doubling to at most 4 hours between tries, for queue.give_up_after
(default 5d); then the sender gets a bounce in their own mailbox. A sender whose mail waited
longer than queue.delay_notice_after (default 4h) is told once that it is still being tried.
Once every recipient is done, the message body is purged from the queue; its delivery record
stays for queue.retention_days (default 30).`,
    );

  queue
    .command('list')
    .description('messages waiting (with --all: also finished ones still on record)')
    .option('--all', 'include delivered and bounced messages whose records are kept')
    .option('--json', JSON_HELP)
    .action((opts: { all?: boolean; json?: boolean }, cmd: Command) => {
      const config = loadConfig(configFile(cmd));
      const incoming = listIncoming(config.dataDir).length;
      const rows = withStore(cmd, (s) => s.list(opts.all === true), () => []);
      if (opts.json) return printJson({ incoming, messages: rows.map((r) => messageJson(r.message, r.recipients)) });
      if (rows.length === 0 && incoming === 0) return print('the queue is empty');
      if (incoming > 0) print(`${incoming} message(s) handed to the queue and not yet picked up (is the queue daemon running?)`);
      for (const { message: m, recipients } of rows) {
        print(`${m.id}  ${iso(m.createdAt)}  from ${m.sender || '<>'}  ${m.size} bytes${m.redacted ? '  (content purged)' : ''}`);
        for (const r of recipients) print(`    ${r.address}: ${describe(r)}`);
      }
    });

  queue
    .command('show')
    .description('one message: every recipient, its attempts and the last answer')
    .argument('<id>', 'the message id from fe queue list')
    .option('--json', JSON_HELP)
    .action((id: string, opts: { json?: boolean }, cmd: Command) => {
      const found = withStore(cmd, (s) => {
        const m = s.message(id);
        return m ? { m, r: s.recipients(id) } : null;
      }, () => null);
      if (!found) throw new UserError(`no message ${id} in the queue`);
      if (opts.json) return printJson(messageJson(found.m, found.r));
      print(`id:        ${found.m.id}`);
      print(`created:   ${iso(found.m.createdAt)}`);
      print(`from:      ${found.m.sender || '<>'}${found.m.owner ? ` (mailbox ${found.m.owner})` : ''}`);
      print(`size:      ${found.m.size} bytes${found.m.redacted ? ' (content purged)' : ''}`);
      for (const r of found.r) print(`  ${r.address}: ${describe(r)} [${r.attempts} attempt(s)]`);
    });

  queue
    .command('retry')
    .description('try a waiting message again now (all waiting messages with --all)')
    .argument('[id]', 'the message id')
    .option('--all', 'every waiting message')
    .action((id: string | undefined, opts: { all?: boolean }, cmd: Command) => {
      if (!id && !opts.all) throw new UserError('name a message id, or give --all');
      const n = withStore(cmd, (s, dataDir) => {
        const changed = s.retryNow(opts.all ? null : id!);
        kick(dataDir);
        return changed;
      }, () => 0);
      if (n === 0 && id) throw new UserError(`no waiting recipients for ${id}`);
      print(`${n} recipient(s) will be tried now`);
    });

  queue
    .command('flush')
    .description('try every waiting message now (same as retry --all)')
    .action((_opts: unknown, cmd: Command) => {
      const n = withStore(cmd, (s, dataDir) => {
        const changed = s.retryNow(null);
        kick(dataDir);
        return changed;
      }, () => 0);
      print(`${n} recipient(s) will be tried now`);
    });

  queue
    .command('delete')
    .description('remove a message from the queue; its waiting recipients never get it and no bounce is sent')
    .argument('<id>', 'the message id')
    .action((id: string, _opts: unknown, cmd: Command) => {
      const ok = withStore(cmd, (s) => s.delete(id), () => false);
      if (!ok) throw new UserError(`no message ${id} in the queue`);
      print(`removed ${id}`);
    });
}
