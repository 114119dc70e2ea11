// Message submission (RFC 6409) on 587 with STARTTLS and 465 with implicit TLS (RFC 8314).
// A mailbox logs in with its own password; what it sends is checked (who it may send as, its
// limits), completed (Message-ID, Date, no Bcc), DKIM-signed and self-verified, then made
// durable before 250: local recipients straight into their sealed spools, the rest handed to
// the queue, and the sender's copy sealed into its own spool for Sent.
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { authenticate, type MailauthResolver } from 'mailauth';
import type { LoginThrottle } from '../auth/throttle.js';
import { resolveRecipient } from '../config/resolve.js';
import type { FeConfig } from '../config/schema.js';
import { decoyUnlockAsync, hasMailboxKey, sealingPublicKey, unlockMailboxKeyWithSalt, WrongPassword } from '../crypto/mailbox-key.js';
import { answerData, domainOf, readAll, SmtpReply, smtpDaemon } from '../smtp/daemon.js';
import { activeSigners, dkimRecord, signMessage, type DkimSigner } from '../dkim/sign.js';
import { handOff, queuePublicKey, type QueueRecipient } from '../queue/handoff.js';
import { mailboxDir, mailboxDiskUsage } from '../store/paths.js';
import { encryptOutbound } from '../pgp/outbound.js';
import { protectForMailbox } from '../pgp/store.js';
import type { WkdLookup } from '../pgp/wkd-lookup.js';
import { upgradeSealAtLogin } from '../store/registry.js';
import { appendToSpool } from '../store/spool.js';
import type { TlsSource } from '../tls/source.js';
import { tlsServerOptions } from '../tls/policy.js';
import type { Logger } from '../util/log.js';
import { fromAddresses, prepareOutgoing, splitHeader } from './headers.js';
import { maySendAs, sendLimitsFor } from './policy.js';
import { SendLimits } from './send-limits.js';
import { smtpSessionLimits } from '../smtp/session-limits.js';
import { acceptQuotedLocalPartsOn } from '../smtp/quoted-local.js';

export interface SubmissionOptions {
  config: () => FeConfig;
  log: Logger;
  throttle: LoginThrottle;
  /** Mailboxes this process has open (IMAP/POP3): a password that opened one is checked without scrypt. */
  openMailboxes?: { quickCheck(username: string, password: string): string | null };
  tls: TlsSource | null;
  implicitTls: boolean;
  /** Password logins without TLS from loopback (fe dev only). */
  allowPlaintextAuth: (ip: string) => boolean;
  /** Called after a hand-off to the queue (the queue in this process can start at once). */
  onQueued?: () => void;
  /** Correspondents' keys for mailboxes with `encrypt_outbound: wkd` (absent: nothing is looked up). */
  wkd?: WkdLookup;
  /** Sending counts shared with the other submission port (absent: this server's own, in memory). */
  sendLimits?: SendLimits;
}

const MAX_LOCAL_HOPS = 5;

interface Route {
  mailboxes: Map<string, string>; // mailbox dir -> address
  remote: Map<string, QueueRecipient>; // lower-cased address -> recipient for the queue
}

/** Where each recipient goes: local mailboxes directly (forwards followed), everything else to the queue. */
function route(config: FeConfig, rcpts: SMTPServerAddress[]): Route {
  const r: Route = { mailboxes: new Map(), remote: new Map() };
  const visit = (address: string, dsn: { notify?: string[]; orcpt?: string }, depth: number) => {
    const res = resolveRecipient(config, address);
    if (!res.ok) {
      if (res.reason === 'foreign-domain') r.remote.set(address.toLowerCase(), { address, ...dsn });
      return; // an unknown local user was refused at RCPT already; a stale local forward target is dropped
    }
    const { domain, local, alias } = res.resolution;
    if (alias.mailbox) r.mailboxes.set(mailboxDir(config.dataDir, domain.name, local), `${local}@${domain.name}`);
    for (const target of alias.forward) {
      if (depth < MAX_LOCAL_HOPS) visit(target, {}, depth + 1);
    }
  };
  for (const rcpt of rcpts) {
    const dsn = (rcpt as SMTPServerAddress & { dsn?: { notify?: string[]; orcpt?: string } }).dsn ?? {};
    visit(rcpt.address, { ...(dsn.notify ? { notify: dsn.notify } : {}), ...(dsn.orcpt ? { orcpt: dsn.orcpt } : {}) }, 0);
  }
  return r;
}

/** DNS as mailauth asks it, answered from our own key files: the check must not depend on what is published yet. */
function ownKeyResolver(domain: string, signers: DkimSigner[]): MailauthResolver {
  const records = new Map<string, string>();
  for (const s of signers) records.set(`${s.selector}._domainkey.${domain}`.toLowerCase(), dkimRecord(s));
  return async (name: string, type: string) => {
    const txt = type === 'TXT' ? records.get(name.toLowerCase().replace(/\.$/, '')) : undefined;
    if (txt) return [[txt]];
    throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
  };
}

export function createSubmissionServer(opts: SubmissionOptions) {
  const { log } = opts;
  const limits = opts.sendLimits ?? new SendLimits();
  const inTransaction = new Set<string>();
  // Each session's transaction holds its share of the sending allowance until it ends: DATA
  // done, connection closed, or its envelope reset (RSET, EHLO, STARTTLS give the session a new
  // envelope object; smtp-server has no hook for them, so stale holds are dropped before a check).
  const holds = new Map<string, { user: string; recipients: number; session: SMTPServerSession; envelope: object }>();
  const releaseHold = (id: string): void => {
    const h = holds.get(id);
    if (!h) return;
    holds.delete(id);
    limits.release(h.user, h.recipients);
  };
  const dropStaleHolds = (): void => {
    for (const [id, h] of holds) if (h.session.envelope !== h.envelope) releaseHold(id);
  };

  async function onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<string> {
    if (!session.secure && !opts.allowPlaintextAuth(session.remoteAddress)) throw new SmtpReply(538, '5.7.11 Encryption required: use STARTTLS first (or port 465)');
    const config = opts.config();
    const r = await opts.throttle.login(session.remoteAddress, () => true, () => checkPassword(config, auth.username ?? '', auth.password ?? '', log), opts.openMailboxes ? () => opts.openMailboxes!.quickCheck(auth.username ?? '', auth.password ?? '') : undefined);
    if (r.kind === 'blocked') throw new SmtpReply(454, `4.7.0 Too many failed logins from your address; try again in ${Math.ceil(r.retryAfterMs / 60_000)} minutes`);
    if (r.kind === 'busy' || r.kind === 'gone') throw new SmtpReply(454, '4.7.0 Too many logins waiting; try again in a moment');
    const user = r.kind === 'ok' ? r.value : null;
    if (!user) {
      log.info('login failed', { ip: session.remoteAddress });
      throw new SmtpReply(535, '5.7.8 Authentication credentials invalid');
    }
    log.info('login', { user: log.addr(user), ip: session.remoteAddress });
    return user;
  }

  async function onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const config = opts.config();
    const user = String(session.user);
    const raw = await readAll(stream, config.limits.messageSize);
    if (stream.sizeExceeded) throw new SmtpReply(552, `5.3.4 Message too big: the limit here is ${config.limits.messageSize} bytes`);
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const froms = fromAddresses(splitHeader(raw));
    if (froms.length === 0) throw new SmtpReply(550, '5.6.0 The message has no From address');
    const foreign = froms.find((f) => !maySendAs(config, user, f));
    if (foreign) throw new SmtpReply(550, `5.7.1 ${user} may not send as ${foreign} (From header); see send_as in fe.yml`);
    const signDomain = domainOf(froms[0]!);
    const { message: prepared, messageId } = prepareOutgoing(raw, config.domains.has(domainOf(sender)) ? domainOf(sender) : signDomain);
    let signers: DkimSigner[];
    try {
      signers = activeSigners(config, signDomain);
    } catch (e) {
      log.error('cannot read the DKIM key', { domain: signDomain, reason: (e as Error).message });
      throw new SmtpReply(451, '4.3.0 Temporary local problem (DKIM key); try again later');
    }
    const sign = async (message: Buffer): Promise<Buffer> => {
      if (signers.length === 0) return message;
      const signed = await signMessage(message, signDomain, signers);
      // Our own signature must verify before anything leaves: a broken key or a header we
      // mangled would otherwise reach every recipient as a DKIM failure.
      const check = await authenticate(signed, { ip: '127.0.0.1', helo: config.hostname, mta: config.hostname, sender, resolver: ownKeyResolver(signDomain, signers) });
      const passed = new Set(check.dkim.results.filter((r) => r.status.result === 'pass').map((r) => r.selector));
      const failed = signers.filter((s) => !passed.has(s.selector));
      if (failed.length > 0) {
        const why = check.dkim.results.map((r) => `${r.selector ?? '?'}=${r.status.result}${r.status.comment ? ` (${r.status.comment})` : ''}`).join(', ');
        log.error('our own DKIM signature does not verify; message refused', { domain: signDomain, selectors: failed.map((s) => s.selector).join(','), results: why });
        throw new SmtpReply(451, '4.7.5 Our DKIM signature did not verify; the administrator has been told. Try again later');
      }
      return signed;
    };
    const plan = route(config, session.envelope.rcptTo);
    const receivedAt = new Date();
    const signed = await sign(prepared);
    // encrypt_outbound: the copy that leaves may be ciphertext, signed after encrypting; local
    // copies stay as written (a local mailbox with a key encrypts its own below).
    const remoteBytes = plan.remote.size > 0 ? await encryptOutbound(config, user, prepared, [...plan.remote.values()].map((r) => r.address), opts.wkd ?? null, log, receivedAt) : prepared;
    const outgoing = remoteBytes === prepared ? signed : await sign(remoteBytes);
    // OpenPGP encryption (src/pgp) before anything is queued, so a failure there leaves nothing half done.
    const localCopies = await Promise.all([...plan.mailboxes].map(async ([dir, address]) => ({ dir, address, bytes: await protectForMailbox(config, address, signed, log, receivedAt) })));
    const own = config.submission.saveSent !== 'never' ? ownMailboxDir(config, user) : null;
    // The sender's copy keeps its Bcc: it is the owner's own record of whom it went to.
    const sentCopy = own ? await protectForMailbox(config, user, withIdAndDate(raw, prepared), log, receivedAt) : null;
    const envelope = session.envelope as SMTPServerSession['envelope'] & { dsn?: { ret?: string | null; envid?: string | null }; requireTLS?: boolean };
    try {
      if (plan.remote.size > 0) {
        handOff(
          config.dataDir,
          queuePublicKey(config.dataDir),
          {
            from: sender,
            recipients: [...plan.remote.values()],
            owner: user,
            envid: envelope.dsn?.envid ?? null,
            ret: envelope.dsn?.ret === 'FULL' || envelope.dsn?.ret === 'HDRS' ? envelope.dsn.ret : null,
            requireTls: envelope.requireTLS === true,
            submittedAt: receivedAt,
          },
          outgoing,
        );
      }
      for (const c of localCopies) appendToSpool(c.dir, sealingPublicKey(c.dir), c.bytes, { receivedAt, envelopeFrom: sender, envelopeTo: c.address });
      if (own && sentCopy) appendToSpool(own, sealingPublicKey(own), sentCopy, { receivedAt, envelopeFrom: sender, envelopeTo: user, folder: '\\Sent' });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      log.error('could not store a submitted message', { reason: code ?? (e as Error).message });
      if (code === 'ENOSPC' || code === 'EDQUOT') throw new SmtpReply(452, '4.3.1 Insufficient system storage; try again later');
      throw new SmtpReply(451, '4.3.0 Temporary local problem storing the message; try again later');
    }
    releaseHold(session.id); // before record(), so the message is not counted twice for a moment
    limits.record(user, session.envelope.rcptTo.length);
    if (plan.remote.size > 0) opts.onQueued?.();
    log.info('submitted', { user: log.addr(user), rcpts: session.envelope.rcptTo.length, local: plan.mailboxes.size, queued: plan.remote.size, size: signed.length, dkim: signers.map((s) => s.selector).join(',') || 'none' });
    return `2.0.0 Ok: queued as ${messageId}`;
  }

  const config0 = opts.config();
  const guard = smtpSessionLimits(() => server, () => opts.config().limits, log);
  const server: SMTPServer = new SMTPServer({
    name: config0.hostname,
    banner: 'fe ESMTP submission',
    secure: opts.implicitTls,
    needsUpgrade: false,
    size: config0.limits.messageSize,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: false,
    // smtp-server would hide AUTH before STARTTLS; onAuth itself refuses it unless fe dev's loopback rule allows.
    allowInsecureAuth: config0.loopbackPlaintextAuth,
    hideSTARTTLS: opts.tls === null || opts.implicitTls,
    hideDSN: false,
    hideREQUIRETLS: false,
    ...(opts.tls ? tlsServerOptions(opts.tls.current()) : {}),
    disableReverseLookup: true,
    logger: false,
    socketTimeout: config0.limits.idleTimeoutSeconds * 1000,
    closeTimeout: 30_000,

    onConnect(session, callback) {
      callback(guard.admit(session) ?? undefined);
    },

    onAuth(auth, session, callback) {
      onAuth(auth, session).then(
        (user) => callback(null, { user }),
        (e: unknown) => {
          if (e instanceof SmtpReply) return callback(e);
          log.error('login check failed', { reason: (e as Error).message });
          callback(new SmtpReply(454, '4.7.0 Temporary authentication failure'));
        },
      );
    },

    onClose(session) {
      guard.closed(session);
      inTransaction.delete(session.id);
      releaseHold(session.id);
    },

    onMailFrom(address, session, callback) {
      const config = opts.config();
      const user = String(session.user);
      if (address.address === '') return callback(new SmtpReply(550, '5.7.1 The null sender <> is for bounces; submit with your own address'));
      if (!maySendAs(config, user, address.address)) return callback(new SmtpReply(550, `5.7.1 ${user} may not send as ${address.address} (MAIL FROM); see send_as in fe.yml`));
      dropStaleHolds();
      const busy = limits.checkMessage(user, sendLimitsFor(config, user).messagesPerHour);
      if (busy) return callback(new SmtpReply(451, busy));
      limits.hold(user);
      holds.set(session.id, { user, recipients: 0, session, envelope: session.envelope });
      inTransaction.add(session.id);
      callback();
    },

    onRcptTo(address, session, callback) {
      const config = opts.config();
      const user = String(session.user);
      const count = session.envelope.rcptTo.length + 1;
      const allowed = sendLimitsFor(config, user);
      if (count > allowed.recipientsPerMessage) return callback(new SmtpReply(452, `4.5.3 Too many recipients (at most ${allowed.recipientsPerMessage} a message; send_recipients_per_message)`));
      dropStaleHolds();
      const daily = limits.checkRecipients(user, 1, allowed.recipientsPerDay); // this session's earlier ones are held
      if (daily) return callback(new SmtpReply(452, daily));
      const r = resolveRecipient(config, address.address);
      if (!r.ok && r.reason === 'invalid') return callback(new SmtpReply(553, '5.1.3 Bad recipient address syntax'));
      if (!r.ok && r.reason === 'no-such-user') return callback(new SmtpReply(550, `5.1.1 No such user here: ${address.address}`));
      if (r.ok && r.resolution.alias.mailbox && config.limits.mailboxQuota > 0) {
        const dir = mailboxDir(config.dataDir, r.resolution.domain.name, r.resolution.local);
        if (mailboxDiskUsage(dir) > config.limits.mailboxQuota) return callback(new SmtpReply(452, `4.2.2 Mailbox ${address.address} is full; try again later`));
      }
      const h = holds.get(session.id);
      if (h) {
        h.recipients++;
        limits.holdRecipient(h.user);
      }
      callback();
    },

    onData(stream, session, callback) {
      guard.dataStarted(session, stream);
      answerData(
        onData(stream, session).finally(() => {
          inTransaction.delete(session.id);
          releaseHold(session.id);
        }),
        callback,
        log,
        'a submitted message',
      );
    },
  });

  // RCPT TO:<"john doe"@example.com> is valid (RFC 5321 4.1.2); smtp-server alone answers 501
  acceptQuotedLocalPartsOn(server);
  return smtpDaemon(server, inTransaction, log, opts.tls);
}

/** The canonical address of the mailbox this login names, if the password opens it. */
async function checkPassword(config: FeConfig, username: string, password: string, log: Logger): Promise<string | null> {
  const r = resolveRecipient(config, username.trim());
  const dir = r.ok && r.resolution.via === 'exact' && r.resolution.alias.mailbox ? mailboxDir(config.dataDir, r.resolution.domain.name, r.resolution.local) : null;
  if (!r.ok || !dir || !hasMailboxKey(dir)) return decoyUnlockAsync(password).then(() => null); // as slow as a wrong password
  const address = `${r.resolution.local}@${r.resolution.domain.name}`;
  try {
    const opened = await unlockMailboxKeyWithSalt(dir, password);
    const { secrets } = await upgradeSealAtLogin(dir, address, password, opened, log);
    secrets.masterKey.fill(0); // only the password check is needed here
  } catch (e) {
    if (e instanceof WrongPassword) return null;
    throw e;
  }
  return address;
}

function ownMailboxDir(config: FeConfig, user: string): string | null {
  const at = user.lastIndexOf('@');
  const dir = mailboxDir(config.dataDir, user.slice(at + 1), user.slice(0, at));
  return hasMailboxKey(dir) ? dir : null;
}

/**
 * The sender's own copy: the message as the client wrote it (Bcc included), with the Message-ID
 * and Date the sent one carries, so the copy and what recipients got are one message.
 */
function withIdAndDate(raw: Buffer, sent: Buffer): Buffer {
  const sentFields = splitHeader(sent).fields;
  const own = splitHeader(raw);
  const add = ['message-id', 'date'].filter((n) => !own.fields.some((f) => f.lower === n)).map((n) => sentFields.find((f) => f.lower === n)?.raw).filter((b): b is Buffer => b !== undefined);
  const keep = own.fields.filter((f) => f.lower !== 'message-id' || sentFields.some((s) => s.lower === 'message-id' && s.raw.equals(f.raw)));
  if (keep.length !== own.fields.length) add.unshift(sentFields.find((f) => f.lower === 'message-id')!.raw);
  return Buffer.concat([...keep.map((f) => f.raw), ...add, own.body.length > 0 ? own.body : Buffer.from('\r\n')]);
}
