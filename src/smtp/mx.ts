// The inbound MX (port 25). Accepts mail only for served domains; forwards aliases in memory
// (SRS + ARC) and seals mailbox mail to the mailbox's public key. 250 is said only once every
// copy is durable on disk or accepted by the next hop: a crash after 250 loses nothing.
import { createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { resolveRecipient } from '../config/resolve.js';
import { answerData, domainOf, readAll, SmtpReply, smtpDaemon } from './daemon.js';
import type { FeConfig } from '../config/schema.js';
import { privateKeyPath } from '../dkim/keys.js';
import { activeSigners, signMessage } from '../dkim/sign.js';
import type { FeResolver } from '../dns/resolver.js';
import { forwardEncryption, protectForForward, storeInMailbox } from '../pgp/store.js';
import type { SubjectMode } from '../pgp/pgp-mime.js';
import { WkdLookup } from '../pgp/wkd-lookup.js';
import { mailboxDir, mailboxDiskUsage } from '../store/paths.js';
import type { Logger } from '../util/log.js';
import { arcSeal, type AuthVerdict } from './auth-check.js';
import { runOnThread } from '../daemon/work-pool.js';
import { MtaStsCache } from './mta-sts.js';
import { protectMessage } from '../protection/pipeline.js';
import { deliverToDomain, type DeliveryResult, type OutboundOptions } from './outbound.js';
import { createSrs } from './srs.js';
import { installPregreet } from './pregreet.js';
import { acceptQuotedLocalParts } from './quoted-local.js';
import { smtpSessionLimits } from './session-limits.js';
import type { TlsSource } from '../tls/source.js';
import { tlsServerOptions } from '../tls/policy.js';

export interface MxOptions {
  config: () => FeConfig; // read on every use, so SIGHUP reloads reach open sessions too
  resolver: () => FeResolver;
  log: Logger;
  srsSecret: Buffer;
  tls: TlsSource | null;
}

const MAX_RECIPIENTS = 100;
const KNOWN_MAIL_PARAMS = ['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID']; // what smtp-server implements (RFC 5321 asks 555 for others)
const MAX_RECEIVED = 30; // more Received headers than this is a mail loop (RFC 5321 6.3)
const MAX_LOCAL_HOPS = 5; // alias -> alias -> ... inside this host

interface Targets {
  mailboxes: Map<string, string>; // mailbox dir -> canonical address (deduplicated)
  forwards: Map<string, { address: string; via: string; encrypt: SubjectMode | null }>; // lower-cased target -> target, alias domain used for SRS, OpenPGP (src/pgp)
  bounces: string[]; // original senders of bounces that came back to an SRS address
}

/** Where each accepted recipient's copy goes; aliases that forward to our own domains are followed here. */
function plan(config: FeConfig, recipients: string[], srsFor: (domain: string) => ReturnType<typeof createSrs>): Targets {
  const t: Targets = { mailboxes: new Map(), forwards: new Map(), bounces: [] };
  const visit = (address: string, depth: number) => {
    const bounce = srsBounce(config, address, srsFor);
    if (bounce) {
      t.bounces.push(bounce);
      return;
    }
    const r = resolveRecipient(config, address);
    if (!r.ok) {
      // only reachable for a local forward target that no longer exists: forwarding it out would loop
      return;
    }
    const { domain, local, alias } = r.resolution;
    if (alias.mailbox) t.mailboxes.set(mailboxDir(config.dataDir, domain.name, local), `${local}@${domain.name}`);
    for (const target of alias.forward) {
      const targetDomain = target.slice(target.lastIndexOf('@') + 1).toLowerCase();
      if (config.domains.has(targetDomain) && depth < MAX_LOCAL_HOPS) visit(target, depth + 1);
      else if (!config.domains.has(targetDomain)) t.forwards.set(target.toLowerCase(), { address: target, via: domain.name, encrypt: forwardEncryption(domain, alias) });
    }
  };
  for (const rcpt of recipients) visit(rcpt, 0);
  return t;
}

/** The SIZE= the client declared on MAIL FROM (RFC 1870), 0 when it gave none. */
function declaredSize(session: SMTPServerSession): number {
  const from = session.envelope.mailFrom;
  const size = from && from.args ? from.args.SIZE : undefined;
  return typeof size === 'string' && /^\d{1,15}$/.test(size) ? Number(size) : 0;
}

/**
 * The mailbox address (if any) this recipient would store into that is over the quota, counting
 * the message's declared SIZE. Deferred, not refused: the owner may free space, senders retry.
 */
function overQuota(config: FeConfig, rcpt: string, declaredSize: number, srsFor: (domain: string) => ReturnType<typeof createSrs>): string | null {
  const t = plan(config, [rcpt], srsFor);
  for (const [dir, address] of t.mailboxes) if (mailboxDiskUsage(dir) + declaredSize > config.limits.mailboxQuota) return address;
  return null;
}

/** A bounce to one of our SRS addresses: the original sender to return it to, if the address is genuine. */
function srsBounce(config: FeConfig, address: string, srsFor: (domain: string) => ReturnType<typeof createSrs>): string | null {
  if (!/^srs[01][=+-]/i.test(address)) return null;
  const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
  if (!config.domains.has(domain)) return null;
  return srsFor(domain).reverse(address);
}

function receivedHeader(session: SMTPServerSession, hostname: string, id: string): string {
  const helo = (session.hostNameAppearsAs || 'unknown').replace(/[^\x21-\x7e]/g, '');
  const proto = session.secure ? 'ESMTPS' : 'ESMTP';
  return `Received: from ${helo} ([${session.remoteAddress}])\r\n\tby ${hostname} (fe) with ${proto} id ${id};\r\n\t${new Date().toUTCString().replace('GMT', '+0000')}\r\n`;
}

function countReceived(message: Buffer): number {
  const end = message.indexOf('\r\n\r\n');
  const head = message.subarray(0, end >= 0 ? end : Math.min(message.length, 256 * 1024)).toString('latin1');
  return (head.match(/^received:/gim) ?? []).length;
}

/**
 * Drops Authentication-Results headers that claim to come from this host (RFC 8601 section 5):
 * a sender could otherwise forge "dkim=pass" in our name.
 */
export function stripOwnAuthResults(message: Buffer, hostname: string): Buffer {
  let end = message.indexOf('\r\n\r\n');
  if (end < 0) end = message.length;
  const head = message.subarray(0, end).toString('latin1');
  const lines = head.split('\r\n');
  const own = new RegExp(`^authentication-results:\\s*${hostname.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*;`, 'i');
  const kept: string[] = [];
  let dropping = false;
  for (const line of lines) {
    if (/^[ \t]/.test(line)) {
      if (!dropping) kept.push(line);
      continue;
    }
    dropping = own.test(line);
    if (!dropping) kept.push(line);
  }
  if (kept.length === lines.length) return message;
  return Buffer.concat([Buffer.from(kept.join('\r\n'), 'latin1'), message.subarray(end)]);
}

/** Postfix's delays= for one message: milliseconds in checks (auth, content, forwards) and in storing. */
function msSince(t0: number, t1: number): string {
  return `${(t1 - t0).toFixed(1)}/${(performance.now() - t1).toFixed(1)}`;
}

export function createMx(opts: MxOptions) {
  const { log } = opts;
  const perIp = new Map<string, number>();
  const counted = new Set<string>(); // sessions counted in perIp
  const recentMessages = new Map<string, number[]>(); // ip -> times of MAIL FROM in the last minute
  const inTransaction = new Set<string>(); // sessions between MAIL FROM and the end of DATA: a drain waits for them
  const mtaSts = new MtaStsCache({ resolver: opts.resolver, port: opts.config().outbound.mtaStsPort });
  const wkd = new WkdLookup({ resolver: opts.resolver, port: () => opts.config().outbound.wkdPort }); // forward targets' keys
  const outbound = (config: FeConfig): OutboundOptions => ({ resolver: opts.resolver(), hostname: config.hostname, port: config.outbound.port, log, mtaSts });
  const srsCache = new Map<string, ReturnType<typeof createSrs>>();
  const srsFor = (domain: string) => {
    let srs = srsCache.get(domain);
    if (!srs) srsCache.set(domain, (srs = createSrs(opts.srsSecret, domain)));
    return srs;
  };

  async function forward(config: FeConfig, message: Buffer, verdict: AuthVerdict, sender: string, t: Targets): Promise<DeliveryResult[]> {
    const jobs: Promise<DeliveryResult>[] = [];
    // Group by target domain and by the alias domain that rewrites the sender.
    // A copy encrypted to one target's key goes to that target alone.
    const groups = new Map<string, { via: string; domain: string; to: string[]; encrypt: SubjectMode | null }>();
    for (const { address, via, encrypt } of t.forwards.values()) {
      const key = `${via} ${domainOf(address)}${encrypt ? ` ${address.toLowerCase()}` : ''}`;
      const g = groups.get(key) ?? { via, domain: domainOf(address), to: [], encrypt };
      g.to.push(address);
      groups.set(key, g);
    }
    for (const g of groups.values()) {
      jobs.push(
        (async () => {
          const encrypted = g.encrypt ? await protectForForward(config, g.to[0]!, g.encrypt, message, log, wkd) : message;
          // Encrypting broke the sender's DKIM signatures; ours vouches for the copy as it leaves.
          const body = encrypted === message ? message : await signForwarded(config, encrypted, g.via);
          const sealed = await sealForForwarding(config, body, verdict, g.via); // ARC seals what goes out: after encrypting and signing
          const from = sender === '' ? '' : srsFor(g.via).forward(sender);
          return deliverToDomain(g.domain, { from, to: g.to }, sealed, outbound(config));
        })(),
      );
    }
    for (const original of t.bounces) {
      // a bounce goes back to the original sender with the null sender, so it can never loop
      jobs.push(deliverToDomain(domainOf(original), { from: '', to: [original] }, message, outbound(config)));
    }
    return Promise.all(jobs);
  }

  /** DKIM-signs a copy fe changed (encrypted) with the alias domain's active keys; unsigned, with a WARN, when it cannot. */
  async function signForwarded(config: FeConfig, message: Buffer, via: string): Promise<Buffer> {
    try {
      const signers = activeSigners(config, via);
      return signers.length === 0 ? message : await signMessage(message, via, signers);
    } catch (e) {
      log.warn('DKIM signing of an encrypted forward failed; forwarding it unsigned', { domain: via, reason: (e as Error).message });
      return message;
    }
  }

  /** ARC-seals with the alias domain's active DKIM key, so receivers can trust our SPF/DKIM results. */
  async function sealForForwarding(config: FeConfig, message: Buffer, verdict: AuthVerdict, via: string): Promise<Buffer> {
    const active = config.domains.get(via)?.dkim.active ?? [];
    if (active.length === 0) return message;
    try {
      // mailauth seals with rsa-sha256 only, so the RSA key when the domain has one.
      const keys = active.map((s) => ({ selector: s, pem: readFileSync(privateKeyPath(config.dataDir, via, s)) }));
      const { selector, pem: privateKey } = keys.find((k) => createPrivateKey(k.pem).asymmetricKeyType === 'rsa') ?? keys[0]!;
      return await arcSeal(message, { authResults: verdict.arc.authResults, domain: via, selector, privateKey, cv: verdict.arc.instance > 0 ? verdict.arc.result : 'none' });
    } catch (e) {
      log.warn('ARC sealing failed; forwarding unsealed', { domain: via, reason: (e as Error).message });
      return message;
    }
  }

  async function onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const config = opts.config();
    const raw = stripOwnAuthResults(await readAll(stream, config.limits.messageSize), config.hostname);
    if (stream.sizeExceeded) throw new SmtpReply(552, `5.3.4 Message too big: the limit here is ${config.limits.messageSize} bytes`);
    if (countReceived(raw) > MAX_RECEIVED) throw new SmtpReply(554, '5.4.6 Too many Received headers: a mail loop');
    const id = randomBytes(8).toString('hex');
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const t0 = performance.now();
    let verdict: AuthVerdict;
    try {
      // on a work thread: DKIM/ARC body hashing is CPU that grows with the message
      verdict = await runOnThread('check-auth', { message: raw, ip: session.remoteAddress, helo: session.hostNameAppearsAs || '', mtaHostname: config.hostname, sender, dnsServers: config.dns.servers });
    } catch (e) {
      log.warn('authentication checks failed', { id, reason: (e as Error).message });
      throw new SmtpReply(451, '4.7.0 Temporary failure while checking the message; try again later');
    }
    if (verdict.action !== 'accept') {
      log.info('rejected by policy', { id, from: log.addr(sender), code: verdict.smtpCode, spf: verdict.spf.result, dmarc: verdict.dmarc.result });
      throw new SmtpReply(verdict.smtpCode ?? (verdict.action === 'reject' ? 550 : 451), verdict.smtpMessage ?? (verdict.action === 'reject' ? '5.7.1 Rejected by policy' : '4.7.0 Try again later'));
    }
    const recipients = session.envelope.rcptTo.map((r) => r.address);
    // Content protection before anything is stored or forwarded (src/protection).
    const protection = await protectMessage(config, { raw, clientIp: session.remoteAddress, helo: session.hostNameAppearsAs || '', mailFrom: sender, rcptTo: recipients, auth: verdict, hostname: config.hostname, ownDomains: [...config.domains.keys()] }, log, id);
    if (protection.code) throw new SmtpReply(protection.code, protection.reply!);
    const message = Buffer.concat([Buffer.from(receivedHeader(session, config.hostname, id) + verdict.authenticationResults + verdict.receivedSpf + protection.header, 'latin1'), raw]);
    const targets = plan(config, recipients, srsFor);

    // Forward first: a deferral there must be answered 451 before any mailbox copy exists,
    // or the sender's retry would store the message twice.
    const results = await forward(config, message, verdict, sender, targets);
    const failed = results.filter((r): r is Extract<DeliveryResult, { ok: false }> => !r.ok);
    const temporary = failed.find((r) => !r.permanent);
    if (temporary) {
      log.info('forward deferred', { id, reason: temporary.message });
      throw new SmtpReply(451, `4.4.0 Forwarding deferred (${temporary.message}); try again later`);
    }
    const delivered = results.length - failed.length;
    if (failed.length > 0 && delivered === 0 && targets.mailboxes.size === 0) {
      const first = failed[0]!;
      log.info('forward refused by next hop', { id, code: first.code, reason: first.message });
      throw new SmtpReply(550, `5.1.0 Forwarding refused by the next hop: ${first.message}`);
    }
    for (const f of failed) log.warn('one forward target refused the message', { id, code: f.code, reason: f.message });

    const t1 = performance.now();
    const receivedAt = new Date();
    for (const [dir, address] of targets.mailboxes) {
      try {
        await storeInMailbox(config, dir, message, { receivedAt, envelopeFrom: sender, envelopeTo: address, ...(protection.action === 'junk' ? { folder: '\\Junk' as const } : {}) }, log);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        log.error('could not store a message', { id, to: log.addr(address), reason: code ?? (e as Error).message });
        if (code === 'ENOSPC' || code === 'EDQUOT') throw new SmtpReply(452, '4.3.1 Insufficient system storage; try again later');
        throw new SmtpReply(451, '4.3.0 Temporary local problem storing the message; try again later');
      }
    }
    log.info('accepted', { id, from: log.addr(sender), rcpts: recipients.length, size: raw.length, stored: targets.mailboxes.size, forwarded: delivered, spf: verdict.spf.result, dkim: verdict.dkim.map((d) => d.result).join(',') || 'none', dmarc: verdict.dmarc.result, ms: msSince(t0, t1) });
    return `2.0.0 Ok: queued as ${id}`;
  }

  const guard = smtpSessionLimits(() => server, () => opts.config().limits, log);
  const server: SMTPServer = new SMTPServer({
    name: opts.config().hostname,
    banner: 'fe ESMTP',
    size: opts.config().limits.messageSize,
    disabledCommands: ['AUTH'], // port 25 takes mail for local users only; submission is elsewhere
    authOptional: true,
    hideSTARTTLS: opts.tls === null,
    ...(opts.tls ? tlsServerOptions(opts.tls.current()) : {}),
    disableReverseLookup: true, // no lookups outside fe's resolver
    logger: false,
    socketTimeout: opts.config().limits.idleTimeoutSeconds * 1000, // RFC 5321 4.5.3.2.7 suggests 5 minutes
    closeTimeout: 30_000,
    maxClients: 10_000, // a backstop only (sockets still in a TLS handshake): limits.max_connections is the guard's

    onConnect(session, callback) {
      const config = opts.config();
      const refused = guard.admit(session);
      if (refused) return callback(refused);
      const n = (perIp.get(session.remoteAddress) ?? 0) + 1;
      if (n > config.limits.connectionsPerIp) {
        log.info('too many connections', { ip: session.remoteAddress });
        return callback(new SmtpReply(421, `4.7.0 Too many connections from your address (limit ${config.limits.connectionsPerIp}); try again later`));
      }
      perIp.set(session.remoteAddress, n);
      counted.add(session.id);
      callback();
    },

    onClose(session) {
      guard.closed(session);
      inTransaction.delete(session.id);
      if (!counted.delete(session.id)) return;
      const n = (perIp.get(session.remoteAddress) ?? 1) - 1;
      if (n <= 0) perIp.delete(session.remoteAddress);
      else perIp.set(session.remoteAddress, n);
    },

    onMailFrom(address: SMTPServerAddress, session, callback) {
      const config = opts.config();
      const unknown = Object.keys(address.args || {}).filter((k) => !KNOWN_MAIL_PARAMS.includes(k));
      if (unknown.length > 0) return callback(new SmtpReply(555, `5.5.4 Unsupported MAIL FROM parameter ${unknown[0]}`));
      const now = Date.now();
      const times = (recentMessages.get(session.remoteAddress) ?? []).filter((t) => now - t < 60_000);
      if (times.length >= config.limits.messagesPerIpPerMinute) {
        log.info('message rate limit', { ip: session.remoteAddress });
        return callback(new SmtpReply(421, `4.7.0 Too many messages from your address (limit ${config.limits.messagesPerIpPerMinute} a minute); try again later`));
      }
      times.push(now);
      recentMessages.set(session.remoteAddress, times);
      inTransaction.add(session.id);
      callback();
    },

    onRcptTo(address: SMTPServerAddress, session, callback) {
      const config = opts.config();
      if (session.envelope.rcptTo.length >= MAX_RECIPIENTS) return callback(new SmtpReply(452, `4.5.3 Too many recipients (at most ${MAX_RECIPIENTS} a message)`));
      if (srsBounce(config, address.address, srsFor)) return callback();
      const r = resolveRecipient(config, address.address);
      if (r.ok) {
        const full = config.limits.mailboxQuota > 0 ? overQuota(config, address.address, declaredSize(session), srsFor) : null;
        if (full) {
          log.info('mailbox over quota; deferred', { to: log.addr(full) });
          return callback(new SmtpReply(452, '4.2.2 Mailbox full; try again later'));
        }
        return callback();
      }
      if (r.reason === 'foreign-domain') return callback(new SmtpReply(554, '5.7.1 Relaying denied: this server accepts mail only for its own domains'));
      if (r.reason === 'invalid') return callback(new SmtpReply(553, '5.1.3 Bad recipient address syntax'));
      log.debug('unknown recipient', { to: log.addr(address.address) });
      return callback(new SmtpReply(550, '5.1.1 No such user here'));
    },

    onData(stream, session, callback) {
      guard.dataStarted(session, stream);
      answerData(onData(stream, session).finally(() => inTransaction.delete(session.id)), callback, log, 'a message');
    },
  });

  installPregreet(server, { log, prepare: acceptQuotedLocalParts });
  return smtpDaemon(server, inTransaction, log, opts.tls);
}

export type Mx = ReturnType<typeof createMx>;
