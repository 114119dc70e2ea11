// The queue daemon (`fe serve --only queue`): imports handed-off messages, delivers what is due
// (one connection per destination domain for all its messages), retries with back-off, tells
// senders of failures and long delays with DSNs put straight into their own mailbox, and purges
// message bodies once every recipient is done.
import { createSocket } from 'node:dgram';
import { watch, type FSWatcher, existsSync, mkdirSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import type { SealOpener } from '../crypto/seal.js';
import { resolveRecipient } from '../config/resolve.js';
import type { FeConfig } from '../config/schema.js';
import { hasMailboxKey } from '../crypto/mailbox-key.js';
import { storeInMailbox } from '../pgp/store.js';
import type { FeResolver } from '../dns/resolver.js';
import { buildDsn, dsnWanted, type DsnRecipient } from '../dsn/build.js';
import { activeSigners, signMessage } from '../dkim/sign.js';
import { deliverBatch, type OutboundMessage, type RecipientOutcome, type TlsSeen } from '../smtp/outbound.js';
import { reportUris } from '../tlsrpt/record.js';
import { buildReport, gzipReport, postReport, REPORT_SIGNED_HEADERS, reportMessage } from '../tlsrpt/report.js';
import { DAY_MS, resultOf } from '../tlsrpt/results.js';
import { MtaStsCache } from '../smtp/mta-sts.js';
import { mailboxDir } from '../store/paths.js';
import type { Logger } from '../util/log.js';
import { classify } from './classify.js';
import { handOff, incomingDir, queueSealingKeys } from './handoff.js';
import { QueueStore, retentionDays, type AttemptRecord, type QueuedMessage, type RecipientRow } from './store.js';

export interface QueueRunnerOptions {
  config: () => FeConfig;
  resolver: () => FeResolver;
  log: Logger;
  /** Delay before attempt n+1 after n failures; tests shorten it. */
  backoffMs?: (failures: number) => number;
  /** Domains delivered to at once. */
  concurrency?: number;
  /** The clock TLS-RPT days are counted by (UTC day boundaries); tests move it a day on. */
  tlsReportClock?: () => number;
}

const HOUR = 3600_000;

/** Postfix-like: 5 min, doubling to at most 4 h, with ±20% jitter so retries do not bunch up. */
export function defaultBackoffMs(failures: number): number {
  const base = Math.min(4 * HOUR, 5 * 60_000 * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

function headerBlock(message: Buffer): Buffer {
  const end = message.indexOf('\r\n\r\n');
  return end < 0 ? message : message.subarray(0, end + 2);
}

export class QueueRunner {
  private store: QueueStore | null = null;
  private privateKey: SealOpener | null = null;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly storing = new Set<Promise<void>>();
  private mtaSts: MtaStsCache;
  private lastPurge = 0;
  /** Source address per destination IP, for sending-mta-ip. */
  private sourceIps = new Map<string, Promise<string | null>>();
  /** (day, domain) reports whose rua lookup failed, and when to try again. */
  private reportRetryAt = new Map<string, number>();

  constructor(private opts: QueueRunnerOptions) {
    this.mtaSts = new MtaStsCache({ resolver: opts.resolver, port: opts.config().outbound.mtaStsPort });
  }

  start(): void {
    const config = this.opts.config();
    this.privateKey = queueSealingKeys(config.dataDir).privateKey;
    this.store = QueueStore.open(config.dataDir);
    const dir = incomingDir(config.dataDir);
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      this.watcher = watch(dir, () => this.kick());
      this.watcher.on('error', () => undefined);
    } catch (e) {
      this.opts.log.warn('cannot watch queue/incoming; new mail is picked up every minute', { reason: (e as Error).message });
    }
    this.kick();
  }

  /** Runs a round soon (new mail, `fe queue flush`); rounds never overlap. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.round()
        .catch((e: unknown) => this.opts.log.error('queue round failed', { reason: (e as Error).message }))
        .finally(() => {
          this.running = null;
          if (this.again) {
            this.again = false;
            this.kick();
          } else this.schedule();
        });
    }, 20);
  }

  private schedule(): void {
    if (this.stopped || !this.store) return;
    const next = this.store.nextDue();
    // At least once a minute: `fe queue retry` and a missed watch event are noticed.
    const wait = next === null ? 60_000 : Math.max(0, Math.min(60_000, next - Date.now()));
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.kick();
    }, wait);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.watcher?.close();
    await this.running;
    await Promise.all(this.storing); // DSNs on their way into a mailbox
    this.store?.close();
    this.store = null;
  }

  private async round(): Promise<void> {
    const store = this.store!;
    const config = this.opts.config();
    const imported = store.importIncoming(this.privateKey!);
    if (imported.imported.length > 0) this.opts.log.info('queued', { messages: imported.imported.length });
    for (const f of imported.failed) this.opts.log.error('a queue file does not open; moved to queue/incoming/failed', { id: f.id, reason: f.reason });
    const due = store.due();
    const domains = [...due.entries()];
    const limit = this.opts.concurrency ?? 8;
    let index = 0;
    const worker = async () => {
      while (index < domains.length && !this.stopped) {
        const [domain, rows] = domains[index++]!;
        await this.deliverDomain(config, domain, rows);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, domains.length) }, worker));
    this.delayNotices(config);
    await this.tlsReports(config).catch((e: unknown) => this.opts.log.error('TLS reports failed', { reason: (e as Error).message }));
    const redacted = store.redactFinished();
    if (redacted.length > 0) this.opts.log.info('delivered messages purged from the queue', { messages: redacted.length });
    if (Date.now() - this.lastPurge > HOUR) {
      this.lastPurge = Date.now();
      store.tlsResults.purge(Math.max(config.queue.retentionDays, 7), Math.floor(this.tlsClock() / DAY_MS));
      const purged = store.purge(retentionDays(config));
      if (purged > 0) this.opts.log.info('old delivery records removed', { messages: purged });
    }
  }

  private async deliverDomain(config: FeConfig, domain: string, rows: RecipientRow[]): Promise<void> {
    const store = this.store!;
    const byMsg = new Map<string, RecipientRow[]>();
    for (const r of rows) byMsg.set(r.msgId, [...(byMsg.get(r.msgId) ?? []), r]);
    const batch: { msg: QueuedMessage; rows: RecipientRow[]; out: OutboundMessage }[] = [];
    for (const [msgId, list] of byMsg) {
      const msg = store.message(msgId);
      const body = store.body(msgId);
      if (!msg || !body) continue; // deleted meanwhile (`fe queue delete`)
      const notify: Record<string, string[]> = {};
      const orcpt: Record<string, string> = {};
      for (const r of list) {
        if (r.notify) notify[r.address] = r.notify;
        if (r.orcpt) orcpt[r.address] = r.orcpt;
      }
      batch.push({ msg, rows: list, out: { from: msg.sender, to: list.map((r) => r.address), message: body, dsn: { ret: msg.ret, envid: msg.envid, notify, orcpt }, requireTls: msg.requireTls } });
    }
    if (batch.length === 0) return;
    const backoff = this.opts.backoffMs ?? defaultBackoffMs;
    // Called for each message as soon as its answers are in, so its state is committed before
    // the next message goes out on the same connection.
    const settle = (i: number, outcome: RecipientOutcome[]) => {
      const b = batch[i]!;
      const now = Date.now();
      const records: AttemptRecord[] = [];
      const finalFailures: { row: RecipientRow; o: RecipientOutcome; status: string; expired: boolean }[] = [];
      const relayed: { row: RecipientRow; dsn: DsnRecipient }[] = [];
      b.rows.forEach((row, k) => {
        const o = outcome[k]!;
        if (o.ok) {
          records.push({ recipientId: row.id, state: 'delivered', code: o.code, text: o.message, failureClass: null, status: '2.0.0', remoteMta: o.mx, nextAttempt: now });
          this.opts.log.info('delivered', { id: b.msg.id, to: this.opts.log.addr(row.address), mx: o.mx });
          // NOTIFY=SUCCESS travels on with the message; a next hop without DSN cannot honour it,
          // so the sender learns from us that it was relayed there (RFC 3461 6.2.3.1).
          if (o.noDsn && row.notify?.includes('SUCCESS')) relayed.push({ row, dsn: { address: row.address, ...(row.orcpt ? { originalRecipient: row.orcpt } : {}), action: 'relayed', status: '2.0.0', ...(o.mx ? { remoteMta: o.mx } : {}), diagnostic: o.message, lastAttempt: new Date(now) } });
          return;
        }
        let c = classify({ code: o.code, text: o.message, ...(o.stage && o.stage !== 'policy' ? { stage: o.stage } : {}) });
        // A refusal made on our side before sending (no 8BITMIME, no SMTPUTF8) is final too.
        if (o.permanent && !c.permanent) c = { ...c, permanent: true, enhanced: `5${c.enhanced.slice(1)}` };
        // RFC 8689 4.2.1: a REQUIRETLS message that no MX can take over verified TLS (with
        // REQUIRETLS offered) is returned to its sender, not retried in the hope of a downgrade.
        if (b.msg.requireTls && !o.ok && o.code === null && (c.class === 'tls' || o.stage === 'tls')) c = { ...c, class: 'tls', permanent: true, enhanced: '5.7.30', reason: 'no mail server of the destination offers the verified TLS that REQUIRETLS asks for' };
        // A TLS report is retried for a day at most (RFC 8460 5.5), other mail for queue.give_up_after.
        const giveUpAt = b.msg.createdAt + (b.msg.tlsReport ? Math.min(86400, config.queue.giveUpAfterSeconds) : config.queue.giveUpAfterSeconds) * 1000;
        const next = now + backoff(row.attempts + 1);
        if (c.permanent || next > giveUpAt) {
          const expired = !c.permanent;
          const status = expired ? c.enhanced.replace(/^4/, '5') : c.enhanced;
          records.push({ recipientId: row.id, state: expired ? 'expired' : 'bounced', code: o.code, text: o.message, failureClass: c.class, status, remoteMta: o.mx, nextAttempt: now });
          finalFailures.push({ row, o, status, expired });
          this.opts.log.info(expired ? 'gave up' : 'bounced', { id: b.msg.id, to: this.opts.log.addr(row.address), class: c.class, code: o.code });
        } else {
          records.push({ recipientId: row.id, state: 'queued', code: o.code, text: o.message, failureClass: c.class, status: c.enhanced, remoteMta: o.mx, nextAttempt: next });
          this.opts.log.info('deferred', { id: b.msg.id, to: this.opts.log.addr(row.address), class: c.class, code: o.code, retry_in_s: Math.round((next - now) / 1000) });
        }
      });
      // The state is durable before any DSN is made: a crash cannot bounce twice.
      store.record(records, now);
      if (relayed.length > 0) this.notify(config, b.msg, 'delivered', relayed);
      if (finalFailures.length > 0) {
        this.notify(config, b.msg, 'failed', finalFailures.map((f) => ({ row: f.row, dsn: { address: f.row.address, ...(f.row.orcpt ? { originalRecipient: f.row.orcpt } : {}), action: 'failed' as const, status: f.status, ...(f.o.mx ? { remoteMta: f.o.mx } : {}), diagnostic: f.expired ? `gave up after ${Math.round(config.queue.giveUpAfterSeconds / 3600)} hours; last answer: ${f.o.message}` : f.o.message, lastAttempt: new Date(now) } })));
      }
    };
    // REQUIRETLS mail travels on connections of its own: their TLS demands must not hold up the
    // rest. So do TLS reports: their sessions are not counted in reports (RFC 8460 has no reports
    // about reports).
    const outbound = { resolver: this.opts.resolver(), hostname: config.hostname, port: config.outbound.port, log: this.opts.log, mtaSts: this.mtaSts };
    const counted = config.queue.tlsReports ? { ...outbound, onTls: (t: TlsSeen) => this.countTls(t) } : outbound;
    for (const strict of [false, true]) {
      for (const report of [false, true]) {
        const idx = batch.map((b, i) => (b.msg.requireTls === strict && b.msg.tlsReport === report ? i : -1)).filter((i) => i >= 0);
        if (idx.length > 0) await deliverBatch(domain, idx.map((i) => batch[i]!.out), report ? outbound : counted, (k, outcome) => settle(idx[k]!, outcome));
      }
    }
  }

  /** One delay DSN per message, once it has waited longer than queue.delay_notice_after. */
  private delayNotices(config: FeConfig): void {
    if (config.queue.delayNoticeAfterSeconds <= 0) return;
    const store = this.store!;
    const now = Date.now();
    for (const { message, recipients } of store.list()) {
      if (message.delayNotified || now - message.createdAt < config.queue.delayNoticeAfterSeconds * 1000) continue;
      const waiting = recipients.filter((r) => r.state === 'queued' && r.attempts > 0);
      if (waiting.length === 0) continue;
      store.markDelayNotified(message.id);
      const until = new Date(message.createdAt + config.queue.giveUpAfterSeconds * 1000);
      this.notify(
        config,
        message,
        'delayed',
        waiting.map((r) => ({ row: r, dsn: { address: r.address, ...(r.orcpt ? { originalRecipient: r.orcpt } : {}), action: 'delayed' as const, status: r.lastStatus ?? '4.0.0', ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}), ...(r.lastText ? { diagnostic: r.lastText } : {}), ...(r.lastAttempt ? { lastAttempt: new Date(r.lastAttempt) } : {}), willRetryUntil: until } })),
      );
    }
  }

  private tlsClock(): number {
    return (this.opts.tlsReportClock ?? Date.now)();
  }

  /** Counts one TLS outcome under today's (UTC) day. */
  private countTls(t: TlsSeen): void {
    const day = Math.floor(this.tlsClock() / DAY_MS);
    const ip = t.ip;
    const source = ip ? (this.sourceIps.get(ip) ?? this.sourceIps.set(ip, sourceAddress(ip)).get(ip)!) : Promise.resolve(null);
    void source.then((sendingIp) => {
      try {
        this.store?.tlsResults.add(resultOf(t, day, sendingIp));
      } catch (e) {
        this.opts.log.warn('could not count a TLS result', { reason: (e as Error).message });
      }
    });
  }

  /**
   * Once a UTC day is over, one report per policy domain that had sessions that day, to the
   * rua URIs in its _smtp._tls record (none: the counts are dropped). Mail reports go through
   * this queue like other mail, DKIM-signed; HTTPS ones are POSTed, and retried for a day.
   */
  private async tlsReports(config: FeConfig): Promise<void> {
    if (!config.queue.tlsReports) return;
    const store = this.store!;
    const now = this.tlsClock();
    await this.retryReportPosts();
    const pending = store.tlsResults.unreported(Math.floor(now / DAY_MS));
    for (const { day, domain } of pending) {
      if (this.stopped) return;
      const key = `${day}/${domain}`;
      if ((this.reportRetryAt.get(key) ?? 0) > Date.now()) continue;
      let uris;
      try {
        uris = await reportUris(domain, this.opts.resolver());
      } catch (e) {
        this.reportRetryAt.set(key, Date.now() + HOUR);
        this.opts.log.warn('TLS-RPT record lookup failed; trying again in an hour', { domain, reason: (e as Error).message });
        continue;
      }
      this.reportRetryAt.delete(key);
      if (uris.length === 0) {
        store.tlsResults.markSent(day, domain, '');
        continue;
      }
      const fromDomain = reportingDomain(config);
      const report = buildReport({ organization: config.queue.tlsReportOrganization ?? config.hostname, contact: `postmaster@${fromDomain ?? config.hostname}`, submitter: config.hostname, domain, day, results: store.tlsResults.results(day, domain) });
      const done: string[] = [];
      const mailto = uris.flatMap((u) => (u.kind === 'mailto' ? [u.address] : []));
      if (mailto.length > 0 && fromDomain) {
        const from = `postmaster@${fromDomain}`;
        let message = reportMessage({ from, to: mailto, submitter: config.hostname, domain, report, now: new Date() });
        try {
          const signers = activeSigners(config, fromDomain);
          if (signers.length > 0) message = await signMessage(message, fromDomain, signers, { headerList: REPORT_SIGNED_HEADERS });
        } catch (e) {
          this.opts.log.warn('TLS report goes unsigned', { domain: fromDomain, reason: (e as Error).message });
        }
        // NOTIFY=NEVER and Auto-Submitted: a report that cannot be delivered makes no DSN.
        handOff(config.dataDir, queueSealingKeys(config.dataDir).publicKey, { from, recipients: mailto.map((address) => ({ address, notify: ['NEVER'] })), owner: null, tlsReport: true, submittedAt: new Date() }, message);
        done.push(...mailto.map((a) => `mailto:${a} (queued)`));
      } else if (mailto.length > 0) {
        this.opts.log.warn('TLS report by mail needs a served domain to send from', { domain });
      }
      for (const u of uris) {
        if (u.kind !== 'https') continue;
        try {
          const code = await postReport(u.url, gzipReport(report), this.opts.resolver());
          done.push(`${u.url.origin}${u.url.pathname} (HTTP ${code})`);
        } catch (e) {
          done.push(`${u.url.origin}${u.url.pathname} (failed: ${(e as Error).message}; retrying)`);
          store.tlsResults.addPost({ day, domain, url: u.url.href, body: gzipReport(report), firstAt: Date.now(), nextAt: Date.now() + this.reportBackoff(1) });
          this.opts.log.warn('TLS report POST failed; trying again later', { domain, url: u.url.origin, reason: (e as Error).message });
        }
      }
      store.tlsResults.markSent(day, domain, done.join(', '));
      this.opts.log.info('TLS report sent', { domain, day: new Date(day * DAY_MS).toISOString().slice(0, 10), to: done.join(', ') });
      if (mailto.length > 0) this.kick();
    }
  }

  /** Back-off between tries of a failed report POST: the queue's (tests shorten it). */
  private reportBackoff(attempts: number): number {
    return (this.opts.backoffMs ?? defaultBackoffMs)(attempts);
  }

  /** Failed HTTPS reports, again with back-off, for up to a day after the first try (RFC 8460 5.5). */
  private async retryReportPosts(): Promise<void> {
    const store = this.store!;
    for (const p of store.tlsResults.duePosts(Date.now())) {
      if (this.stopped) return;
      const url = new URL(p.url);
      const where = `${url.origin}${url.pathname}`;
      try {
        const code = await postReport(url, p.body, this.opts.resolver());
        store.tlsResults.postDone(p.id);
        store.tlsResults.noteSent(p.day, p.domain, `${where} (HTTP ${code} on try ${p.attempts + 1})`);
        this.opts.log.info('TLS report sent', { domain: p.domain, to: where, try: p.attempts + 1 });
      } catch (e) {
        const next = Date.now() + this.reportBackoff(p.attempts + 1);
        if (next - p.firstAt > DAY_MS) {
          store.tlsResults.postDone(p.id);
          store.tlsResults.noteSent(p.day, p.domain, `${where} (given up after ${p.attempts + 1} tries: ${(e as Error).message})`);
          this.opts.log.warn('TLS report POST given up', { domain: p.domain, url: url.origin, reason: (e as Error).message });
        } else store.tlsResults.postRetry(p.id, next);
      }
    }
  }

  /** Builds the DSN and puts it in the sender's own mailbox (or queues it to the sender elsewhere). */
  private notify(config: FeConfig, msg: QueuedMessage, kind: 'failed' | 'delayed' | 'delivered', list: { row: RecipientRow; dsn: DsnRecipient }[]): void {
    if (msg.tlsReport) return; // fe's own report: nobody to tell
    const store = this.store!;
    const body = store.body(msg.id);
    if (!body) return;
    const wanted = list.filter((l) => dsnWanted({ envelopeFrom: msg.sender, headers: headerBlock(body), notify: l.row.notify, kind }));
    if (wanted.length === 0) return;
    const senderDomain = msg.sender.slice(msg.sender.lastIndexOf('@') + 1).toLowerCase();
    const from = config.domains.has(senderDomain) ? `postmaster@${senderDomain}` : `mailer-daemon@${config.hostname}`;
    const dsn = buildDsn({ reportingMta: config.hostname, from, to: msg.sender, envelopeId: msg.envid, arrivalDate: new Date(msg.createdAt), recipients: wanted.map((w) => w.dsn), original: body, ret: msg.ret ?? 'HDRS' });
    try {
      const r = resolveRecipient(config, msg.sender);
      if (r.ok && r.resolution.alias.mailbox && (r.resolution.via === 'exact' || r.resolution.via === 'subaddress')) {
        const dir = mailboxDir(config.dataDir, r.resolution.domain.name, r.resolution.local);
        if (hasMailboxKey(dir)) {
          // Through the same door as other mail for the mailbox: a mailbox with an OpenPGP key
          // gets the DSN (which quotes the message) encrypted to it.
          const address = `${r.resolution.local}@${r.resolution.domain.name}`;
          const stored = storeInMailbox(config, dir, dsn, { receivedAt: new Date(), envelopeFrom: '', envelopeTo: address }, this.opts.log).then(
            () => this.opts.log.info(`${kind === 'failed' ? 'bounce' : kind === 'delayed' ? 'delay notice' : 'success notice'} put in the sender's mailbox`, { id: msg.id, to: this.opts.log.addr(msg.sender) }),
            (e: Error) => this.opts.log.error('could not deliver a DSN', { id: msg.id, reason: e.message }),
          );
          this.storing.add(stored);
          void stored.finally(() => this.storing.delete(stored));
          return;
        }
      }
      // Not one of our mailboxes: the DSN travels like any other mail, from the null sender.
      handOff(config.dataDir, queueSealingKeys(config.dataDir).publicKey, { from: '', recipients: [{ address: msg.sender, notify: ['NEVER'] }], owner: null, submittedAt: new Date() }, dsn);
    } catch (e) {
      this.opts.log.error('could not deliver a DSN', { id: msg.id, reason: (e as Error).message });
    }
  }
}

/** The served domain TLS reports come from: the host name's own (or a parent of it), else the first. */
function reportingDomain(config: FeConfig): string | null {
  const host = config.hostname.toLowerCase();
  const names = [...config.domains.keys()].sort();
  return names.find((d) => host === d || host.endsWith(`.${d}`)) ?? names[0] ?? null;
}

/** The local address the system would send from to `ip` (a UDP connect sends nothing). */
function sourceAddress(ip: string): Promise<string | null> {
  return new Promise((resolve) => {
    const s = createSocket(isIPv6(ip) ? 'udp6' : 'udp4');
    s.on('error', () => {
      s.close();
      resolve(null);
    });
    s.connect(25, ip, () => {
      const a = s.address().address;
      s.close();
      resolve(a);
    });
  });
}
