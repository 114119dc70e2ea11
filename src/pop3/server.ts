// POP3 (RFC 1939) with CAPA and response codes (RFC 2449, 3206), STLS (RFC 2595), AUTH PLAIN
// (RFC 5034, RFC 4616) and implicit TLS on 995 (RFC 8314), serving a mailbox's INBOX.
//
// - Logging in unlocks the mailbox through the shared MailboxRegistry; a wrong password touches
//   nothing on disk. Logins are throttled per client address (LoginThrottle).
// - The maildrop is INBOX as it was at login: message numbers are fixed for the session.
//   DELE only marks; the marked messages are expunged at QUIT (the UPDATE state), messages
//   retrieved with RETR are then flagged \Seen. A dropped connection changes nothing.
// - UIDL is "<UIDVALIDITY>.<UID>" of INBOX, the same UID an IMAP client sees, so it is stable
//   across sessions and across deletions of other messages.
// - One POP3 session per mailbox at a time (RFC 1939's exclusive maildrop lock): a second
//   login to a mailbox that has a POP3 session gets "-ERR [IN-USE]". IMAP sessions are not
//   locked out; a message an IMAP client expunges meanwhile answers "-ERR" to RETR/TOP.
// - Octet counts (STAT, LIST, RETR) are the stored message sizes; messages received by SMTP
//   already have CRLF line ends, so they are exact. A message stored with bare LFs is sent with
//   CRLF and its count is then a little low (clients use it as a hint).
// - Bounded memory: command lines are at most maxLineBytes (longer ones are answered -ERR and
//   skipped, never buffered); reading pauses while pipelined commands wait; message text is
//   written in slices that wait for the socket to drain, so a client that never reads holds at
//   most one message in memory until the idle timeout (default 10 minutes, RFC 1939 3) drops it.
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, TLSSocket, type SecureContext, type Server as TlsServer } from 'node:tls';
import type { LoginThrottle } from '../auth/throttle.js';
import type { MailboxStore } from '../store/mailbox-db.js';
import type { MailboxHandle, MailboxRegistry } from '../store/registry.js';
import type { TlsSource } from '../tls/source.js';
import { tlsServerOptions } from '../tls/policy.js';
import type { Logger } from '../util/log.js';
import { boundAddress, listenOn } from '../daemon/listen.js';
import { ConnectionGate } from '../daemon/connection-gate.js';
import type { FeConfig } from '../config/schema.js';

export interface Pop3Options {
  registry: MailboxRegistry;
  log: Logger;
  tls: TlsSource | null;
  /** true: TLS from the first byte (995); false: plain with STLS (110). */
  implicitTls: boolean;
  /** Whether USER/PASS and AUTH PLAIN may be used without TLS from this client address. */
  allowPlaintextAuth: (remoteAddress: string) => boolean;
  throttle: LoginThrottle;
  /** Autologout timer (RFC 1939: at least 10 minutes; tests shorten it). */
  idleTimeoutMs?: number;
  /** Longest command line accepted, CRLF included. */
  maxLineBytes?: number;
  /** Simultaneous connections from one address (read at each connection). */
  connectionsPerIp?: () => number;
  /** Failed logins in one session before it is closed. */
  maxAuthFailures?: number;
  /** limits: (read per connection): the connection caps, the login and command deadlines. Absent: none. */
  limits?: () => FeConfig['limits'];
}

const CRLF = Buffer.from('\r\n');
const DOT = Buffer.from('.');
const END = Buffer.from('.\r\n');
const SLICE = 64 * 1024; // message text is written in slices of about this size
const MAX_QUEUED_BYTES = 64 * 1024; // pipelined input waiting to be handled before reading pauses
const INBOX = 'INBOX';

/** Mailboxes with a POP3 session in this process (both the pop3 and pop3s servers). */
const maildropLocks = new WeakSet<MailboxStore>();

interface Entry {
  uid: number;
  size: number;
  deleted: boolean;
  retrieved: boolean;
}

type QueueItem = { line: string; bytes: number } | { tooLong: true; bytes: 0 };
type State = 'authorization' | 'transaction' | 'closed';

export function isLoopback(address: string): boolean {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

function parseNumber(s: string | undefined): number | null {
  if (s === undefined || !/^\d{1,9}$/.test(s)) return null;
  return Number(s);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function createPop3Server(opts: Pop3Options) {
  const { log, registry, throttle } = opts;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 10 * 60_000;
  const maxLineBytes = opts.maxLineBytes ?? 4096;
  const maxAuthFailures = opts.maxAuthFailures ?? 3;
  const source = opts.tls;
  const secureContext = source ? (): SecureContext => source.context() : null;
  if (opts.implicitTls && !source) throw new Error('POP3S needs TLS material');
  const sessions = new Set<Session>();
  const perIp = new Map<string, number>();
  const limits = opts.limits;
  const gate = limits ? new ConnectionGate(() => ({ maxConnections: limits().maxConnections, perPrefix: limits().connectionsPerPrefix })) : null;
  let closing = false;

  class Session {
    private sock: Socket;
    private readonly raw: Socket;
    readonly ip: string;
    private secure: boolean;
    private state: State = 'authorization';
    private user: string | null = null;
    private handle: MailboxHandle | null = null;
    private entries: Entry[] = [];
    private uidValidity = 0;
    private failures = 0;
    private saslPending = false; // AUTH PLAIN sent "+ ", waiting for the client's response
    private partial: Buffer[] = [];
    private partialBytes = 0;
    private discarding = false;
    private queue: QueueItem[] = [];
    private queuedBytes = 0;
    private pausedForQueue = false;
    busy = false;
    private readonly onData = (chunk: Buffer) => this.receive(chunk);
    private readonly onTimeout = () => {
      log.debug('idle timeout', { ip: this.ip });
      this.destroy(); // RFC 1939 3: no response, no UPDATE
    };
    private readonly onError = (e: Error) => log.debug('connection error', { ip: this.ip, reason: e.message });

    constructor(sock: Socket, raw: Socket, secure: boolean, private readonly releaseSlot: () => void) {
      this.sock = sock;
      this.raw = raw;
      this.secure = secure;
      this.ip = raw.remoteAddress ?? '';
      this.attach(sock);
      if (sock !== raw) raw.on('error', this.onError);
      raw.once('close', () => this.cleanup());
    }

    private attach(sock: Socket): void {
      sock.on('data', this.onData);
      sock.on('error', this.onError);
      sock.on('drain', this.touch);
    }

    // The autologout timer runs on our own clock: a socket's own timeout does not fire while a
    // write waits for a client that has stopped reading. Activity is input, or output draining.
    private lastActivity = Date.now();
    private idleTimer: NodeJS.Timeout | null = null;
    private readonly touch = () => {
      this.lastActivity = Date.now();
    };
    private armIdleTimer(): void {
      const left = this.lastActivity + idleTimeoutMs - Date.now();
      if (left <= 0) return this.onTimeout();
      this.idleTimer = setTimeout(() => this.armIdleTimer(), left);
    }

    start(): void {
      this.armIdleTimer();
      const l = limits?.();
      if (l) {
        // Deadlines no input extends: a byte now and then restarts only the idle timer.
        this.loginTimer = setTimeout(() => {
          if (this.state === 'authorization') this.cut(`login not completed within ${l.loginTimeoutSeconds} s`);
        }, l.loginTimeoutSeconds * 1000).unref();
        this.commandMs = l.commandTimeoutSeconds * 1000;
      }
      void this.reply('+OK fe POP3 server ready');
    }

    private loginTimer: NodeJS.Timeout | null = null;
    private commandTimer: NodeJS.Timeout | null = null;
    private saslTimer: NodeJS.Timeout | null = null;
    private commandMs = 0;

    /** After input: a line partly read must be complete within commandMs of its first octet. */
    private watchLine(): void {
      if (this.commandMs === 0) return;
      if (this.partialBytes === 0 && !this.discarding) {
        if (this.commandTimer) clearTimeout(this.commandTimer);
        this.commandTimer = null;
      } else if (!this.commandTimer) {
        this.commandTimer = setTimeout(() => this.cut(`command line not completed within ${this.commandMs / 1000} s`), this.commandMs).unref();
      }
    }

    /** A deadline passed: said, and the connection goes whatever the client does; nothing is deleted. */
    private cut(text: string): void {
      if (this.isClosed()) return;
      log.info('session cut', { ip: this.ip, reason: text });
      void this.reply(`-ERR [SYS/TEMP] ${text}`).then(() => this.end());
      setTimeout(() => this.destroy(), 2000).unref();
    }

    // ---- input ----

    private receive(chunk: Buffer): void {
      this.lastActivity = Date.now();
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(10, start);
        if (nl < 0) break;
        if (this.discarding) {
          this.discarding = false;
        } else {
          const piece = chunk.subarray(start, nl);
          if (this.partialBytes + piece.length + 1 > maxLineBytes) {
            this.push({ tooLong: true, bytes: 0 });
          } else {
            let line = this.partial.length > 0 ? Buffer.concat([...this.partial, piece]) : piece;
            if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
            this.push({ line: line.toString('utf8'), bytes: line.length });
          }
          this.partial = [];
          this.partialBytes = 0;
        }
        start = nl + 1;
      }
      if (start < chunk.length && !this.discarding) {
        const rest = chunk.subarray(start);
        if (this.partialBytes + rest.length > maxLineBytes) {
          // Never buffered: the rest of this line is skipped as it arrives.
          this.partial = [];
          this.partialBytes = 0;
          this.discarding = true;
          this.push({ tooLong: true, bytes: 0 });
        } else {
          this.partial.push(Buffer.from(rest)); // a copy: the chunk may be large
          this.partialBytes += rest.length;
        }
      }
      this.watchLine();
      if (this.queuedBytes > MAX_QUEUED_BYTES || this.queue.length > 1000) {
        this.pausedForQueue = true;
        this.sock.pause();
      }
      void this.pump();
    }

    private push(item: QueueItem): void {
      this.queue.push(item);
      this.queuedBytes += item.bytes;
    }

    private async pump(): Promise<void> {
      if (this.busy) return;
      this.busy = true;
      try {
        while (this.queue.length > 0 && !this.isClosed()) {
          const item = this.queue.shift()!;
          this.queuedBytes -= item.bytes;
          if ('tooLong' in item) await this.reply(`-ERR Line too long (at most ${maxLineBytes} octets)`);
          else await this.command(item.line);
          if (this.pausedForQueue && this.queuedBytes < MAX_QUEUED_BYTES / 2 && this.queue.length < 500 && !this.isClosed()) {
            this.pausedForQueue = false;
            this.sock.resume();
          }
        }
      } catch (e) {
        log.error('unexpected failure in a POP3 session', { ip: this.ip, reason: (e as Error).message });
        await this.reply('-ERR [SYS/TEMP] Internal error; try again later');
        this.end();
      } finally {
        this.busy = false;
      }
      if (closing && !this.isClosed()) this.shutdown();
    }

    // ---- output ----

    private write(data: string | Buffer): Promise<void> {
      if (this.isClosed() || this.sock.destroyed) return Promise.resolve();
      if (this.sock.write(data)) {
        this.lastActivity = Date.now();
        return Promise.resolve();
      }
      return new Promise((resolve) => {
        const done = () => {
          this.sock.off('drain', done);
          this.raw.off('close', done);
          resolve();
        };
        this.sock.on('drain', done);
        this.raw.on('close', done);
      });
    }

    private reply(line: string): Promise<void> {
      return this.write(line + '\r\n');
    }

    /** A multi-line response body: byte-stuffed, CRLF line ends, then the terminating ".". */
    private async sendText(raw: Buffer, bodyLines: number | null): Promise<void> {
      let batch: Buffer[] = [];
      let batchBytes = 0;
      let pos = 0;
      let inBody = false;
      let bodyCount = 0;
      while (pos < raw.length) {
        const nl = raw.indexOf(10, pos);
        const next = nl < 0 ? raw.length : nl + 1;
        let end = nl < 0 ? raw.length : nl;
        if (end > pos && raw[end - 1] === 13) end--;
        if (bodyLines !== null) {
          if (inBody) {
            if (bodyCount >= bodyLines) break;
            bodyCount++;
          } else if (end === pos) {
            inBody = true; // the empty line that ends the header is sent too
          }
        }
        if (raw[pos] === 0x2e) batch.push(DOT);
        batch.push(raw.subarray(pos, end), CRLF);
        batchBytes += end - pos + 3;
        pos = next;
        if (batchBytes >= SLICE) {
          await this.write(Buffer.concat(batch));
          batch = [];
          batchBytes = 0;
          if (this.isClosed()) return;
        }
      }
      batch.push(END);
      await this.write(Buffer.concat(batch));
    }

    // ---- commands ----

    /** A method, not a field test: the state changes while commands await. */
    private isClosed(): boolean {
      return this.state === 'closed';
    }

    private plaintextOk(): boolean {
      return this.secure || opts.allowPlaintextAuth(this.ip);
    }

    private capabilities(): string[] {
      const caps = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
      if (this.state === 'authorization') {
        if (this.plaintextOk()) caps.push('USER', 'SASL PLAIN');
        if (!this.secure && secureContext) caps.push('STLS');
      }
      caps.push('IMPLEMENTATION fe');
      return caps;
    }

    private async command(line: string): Promise<void> {
      if (this.saslPending) {
        this.saslPending = false;
        if (this.saslTimer) clearTimeout(this.saslTimer);
        this.saslTimer = null;
        return this.authPlainResponse(line);
      }
      const sp = line.indexOf(' ');
      const keyword = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
      const rest = sp < 0 ? '' : line.slice(sp + 1);
      const args = rest === '' ? [] : rest.split(' ');
      if (keyword === 'CAPA') return this.multi('+OK Capability list follows', this.capabilities());
      if (keyword === 'QUIT') return this.quit();
      if (this.state === 'authorization') {
        switch (keyword) {
          case 'STLS':
            return this.stls();
          case 'USER':
            if (!this.plaintextOk()) return this.reply('-ERR [AUTH] Plaintext authentication is not allowed before STLS');
            if (rest === '') return this.reply('-ERR USER needs a name');
            this.user = rest.trim();
            return this.reply('+OK Send your password');
          case 'PASS': {
            if (!this.plaintextOk()) return this.reply('-ERR [AUTH] Plaintext authentication is not allowed before STLS');
            if (this.user === null) return this.reply('-ERR USER first');
            const user = this.user;
            this.user = null;
            return this.login(user, rest);
          }
          case 'AUTH':
            return this.auth(args);
          case 'APOP':
            return this.reply('-ERR APOP is not offered here; use USER/PASS or AUTH PLAIN over TLS');
          default:
            return this.reply(keyword === '' ? '-ERR Empty command' : '-ERR Unknown command or not valid before login');
        }
      }
      switch (keyword) {
        case 'STAT': {
          const live = this.entries.filter((e) => !e.deleted);
          return this.reply(`+OK ${live.length} ${live.reduce((n, e) => n + e.size, 0)}`);
        }
        case 'LIST':
          return this.listOrUidl(args, (i, e) => `${i} ${e.size}`, 'octets');
        case 'UIDL':
          return this.listOrUidl(args, (i, e) => `${i} ${this.uidValidity}.${e.uid}`, 'unique-ids');
        case 'RETR':
          return this.retr(args);
        case 'TOP':
          return this.top(args);
        case 'DELE': {
          const found = this.lookup(args[0]);
          if (typeof found === 'string') return this.reply(found);
          found.entry.deleted = true;
          return this.reply(`+OK Message ${found.n} deleted`);
        }
        case 'NOOP':
          return this.reply('+OK');
        case 'RSET': {
          for (const e of this.entries) e.deleted = false;
          return this.reply(`+OK Maildrop has ${this.entries.length} messages (${this.entries.reduce((n, e) => n + e.size, 0)} octets)`);
        }
        case 'USER':
        case 'PASS':
        case 'AUTH':
        case 'STLS':
        case 'APOP':
          return this.reply('-ERR Already logged in');
        default:
          return this.reply(keyword === '' ? '-ERR Empty command' : '-ERR Unknown command');
      }
    }

    private async multi(first: string, lines: string[]): Promise<void> {
      await this.write([first, ...lines, '.', ''].join('\r\n'));
    }

    private lookup(arg: string | undefined): { n: number; entry: Entry } | string {
      const n = parseNumber(arg);
      if (n === null) return '-ERR A message number is needed';
      const entry = this.entries[n - 1];
      if (n < 1 || !entry) return `-ERR No such message (the maildrop has ${this.entries.length})`;
      if (entry.deleted) return `-ERR Message ${n} is already deleted`;
      return { n, entry };
    }

    private async listOrUidl(args: string[], format: (n: number, e: Entry) => string, what: string): Promise<void> {
      if (args.length > 0) {
        const found = this.lookup(args[0]);
        if (typeof found === 'string') return this.reply(found);
        return this.reply(`+OK ${format(found.n, found.entry)}`);
      }
      const lines: string[] = [];
      this.entries.forEach((e, i) => {
        if (!e.deleted) lines.push(format(i + 1, e));
      });
      return this.multi(`+OK ${lines.length} messages (${what} follow)`, lines);
    }

    private fetchRaw(entry: Entry): Buffer | null {
      return this.handle!.store.getRaw(INBOX, entry.uid);
    }

    private async retr(args: string[]): Promise<void> {
      const found = this.lookup(args[0]);
      if (typeof found === 'string') return this.reply(found);
      const raw = this.fetchRaw(found.entry);
      if (!raw) return this.reply(`-ERR Message ${found.n} was removed by another session`);
      found.entry.retrieved = true;
      await this.reply(`+OK ${found.entry.size} octets`);
      await this.sendText(raw, null);
    }

    private async top(args: string[]): Promise<void> {
      const found = this.lookup(args[0]);
      if (typeof found === 'string') return this.reply(found);
      const lines = parseNumber(args[1]);
      if (lines === null || args.length !== 2) return this.reply('-ERR TOP needs a message number and a number of lines');
      const raw = this.fetchRaw(found.entry);
      if (!raw) return this.reply(`-ERR Message ${found.n} was removed by another session`);
      await this.reply('+OK Top of message follows');
      await this.sendText(raw, lines);
    }

    private async stls(): Promise<void> {
      if (this.secure) return this.reply('-ERR Already using TLS');
      if (!secureContext) return this.reply('-ERR STLS is not available');
      // RFC 2595 / plaintext injection: nothing the client sent after STLS may be acted on.
      this.queue = [];
      this.queuedBytes = 0;
      this.partial = [];
      this.partialBytes = 0;
      this.discarding = false;
      const plain = this.sock;
      plain.pause(); // keep what arrives now (the client's hello) for the TLS layer
      plain.off('data', this.onData);
      plain.off('drain', this.touch);
      await new Promise<void>((resolve) => plain.write('+OK Begin TLS negotiation\r\n', () => resolve()));
      if (this.isClosed()) return;
      const secure = new TLSSocket(plain, { isServer: true, secureContext: secureContext() });
      this.sock = secure;
      this.pausedForQueue = false;
      this.attach(secure);
      const ok = await new Promise<boolean>((resolve) => {
        secure.once('secure', () => resolve(true));
        secure.once('error', () => resolve(false));
        secure.once('close', () => resolve(false));
      });
      if (!ok) {
        log.debug('STLS handshake failed', { ip: this.ip });
        this.destroy();
        return;
      }
      this.secure = true;
      this.user = null;
    }

    private async auth(args: string[]): Promise<void> {
      if (!this.plaintextOk()) return this.reply('-ERR [AUTH] Authentication is not allowed before STLS');
      if (args.length === 0) return this.multi('+OK Mechanisms follow', ['PLAIN']);
      if (args[0]!.toUpperCase() !== 'PLAIN') return this.reply('-ERR Unsupported mechanism; PLAIN is offered');
      if (args.length > 2) return this.reply('-ERR Too many arguments');
      if (args.length === 2) return this.authPlainResponse(args[1]!);
      this.saslPending = true;
      // The exchange is one command: its continuation is due within the command deadline, not
      // just before the login deadline (an AUTH left waiting would otherwise hold a slot for it).
      if (this.commandMs > 0) this.saslTimer = setTimeout(() => this.cut(`authentication not completed within ${this.commandMs / 1000} s`), this.commandMs).unref();
      return this.reply('+ ');
    }

    /** RFC 4616: base64 of authzid NUL authcid NUL passwd; "*" cancels (RFC 5034). */
    private async authPlainResponse(line: string): Promise<void> {
      const text = line.trim();
      if (text === '*') return this.reply('-ERR Authentication cancelled');
      if (text !== '=' && !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return this.reply('-ERR Invalid base64');
      const parts = text === '=' ? [] : Buffer.from(text, 'base64').toString('utf8').split('\0');
      if (parts.length !== 3 || parts[1] === '' || parts[2] === '') return this.reply('-ERR Malformed PLAIN response');
      const [authzid, authcid, password] = parts as [string, string, string];
      if (authzid !== '' && authzid.toLowerCase() !== authcid.toLowerCase()) return this.reply('-ERR [AUTH] Acting as another user is not supported');
      return this.login(authcid, password);
    }

    private async login(username: string, password: string): Promise<void> {
      const check = throttle.check(this.ip);
      if (!check.allowed && !check.busy) {
        log.info('login refused: too many failures', { ip: this.ip });
        const minutes = Math.max(1, Math.ceil(check.retryAfterMs / 60_000));
        await this.reply(`-ERR [LOGIN-DELAY] Too many failed logins from your address; try again in ${minutes} minute${minutes === 1 ? '' : 's'}`);
        return this.end();
      }
      let handle: MailboxHandle | null;
      try {
        const r = await throttle.login(this.ip, () => !this.isClosed(), () => registry.login(username, password), () => registry.quickLogin(username, password));
        if (r.kind === 'busy' || r.kind === 'blocked') return this.reply('-ERR [SYS/TEMP] Too many logins waiting; try again in a moment');
        if (r.kind === 'gone') return;
        handle = r.kind === 'ok' ? r.value : null;
      } catch (e) {
        log.error('mailbox could not be opened', { user: log.addr(username), reason: (e as Error).message });
        return this.reply('-ERR [SYS/TEMP] The mailbox cannot be opened right now; try again later');
      }
      if (!handle) {
        this.failures++;
        log.info('login failed', { user: log.addr(username), ip: this.ip });
        await this.reply('-ERR [AUTH] Invalid user name or password');
        if (this.failures >= maxAuthFailures) this.end();
        return;
      }
      if (this.isClosed()) {
        handle.release(); // the client left while its password was checked
        return;
      }
      if (maildropLocks.has(handle.store)) {
        handle.release();
        log.info('maildrop in use', { user: log.addr(handle.address), ip: this.ip });
        return this.reply('-ERR [IN-USE] Another POP3 session has this mailbox open; try again when it ends');
      }
      try {
        const folder = handle.store.getFolder(INBOX);
        if (!folder) throw new Error('no INBOX');
        this.entries = handle.store.listMessages(INBOX).map((m) => ({ uid: m.uid, size: m.size, deleted: false, retrieved: false }));
        this.uidValidity = folder.uidValidity;
      } catch (e) {
        handle.release();
        log.error('mailbox could not be read', { user: log.addr(handle.address), reason: (e as Error).message });
        return this.reply('-ERR [SYS/TEMP] The mailbox cannot be read right now; try again later');
      }
      maildropLocks.add(handle.store);
      this.handle = handle;
      this.state = 'transaction';
      log.info('logged in', { user: log.addr(handle.address), ip: this.ip, tls: this.secure, messages: this.entries.length });
      await this.reply(`+OK Maildrop has ${this.entries.length} messages (${this.entries.reduce((n, e) => n + e.size, 0)} octets)`);
    }

    /** QUIT: in the TRANSACTION state this is the UPDATE state (RFC 1939 6). */
    private async quit(): Promise<void> {
      if (this.state !== 'transaction' || !this.handle) {
        await this.reply('+OK Bye');
        return this.end();
      }
      const store = this.handle.store;
      const deleted = this.entries.filter((e) => e.deleted).map((e) => e.uid);
      const seen = this.entries.filter((e) => e.retrieved && !e.deleted).map((e) => e.uid);
      let removed = 0;
      try {
        const folder = store.getFolder(INBOX);
        if (!folder || folder.uidValidity !== this.uidValidity) throw new Error('INBOX was replaced during the session');
        if (seen.length > 0) store.setFlags(INBOX, seen, ['\\Seen'], 'add');
        if (deleted.length > 0) {
          store.setFlags(INBOX, deleted, ['\\Deleted'], 'add');
          removed = store.expunge(INBOX, deleted).length;
        }
        if (seen.length > 0 || deleted.length > 0) this.handle.changed(INBOX, this);
      } catch (e) {
        log.error('UPDATE failed', { user: log.addr(this.handle.address), reason: (e as Error).message });
        await this.reply('-ERR [SYS/TEMP] Some deleted messages were not removed');
        return this.end();
      }
      log.info('logged out', { user: log.addr(this.handle.address), deleted: removed });
      await this.reply(`+OK Bye (${removed} message${removed === 1 ? '' : 's'} deleted)`);
      this.end();
    }

    // ---- ending ----

    /** Server shutdown: idle sessions are told and closed; nothing is deleted. */
    shutdown(): void {
      if (this.isClosed()) return;
      void this.reply('-ERR [SYS/TEMP] Server shutting down; try again shortly').then(() => this.end());
    }

    private end(): void {
      if (this.isClosed()) return;
      this.release();
      this.state = 'closed';
      this.sock.end();
      setTimeout(() => this.raw.destroy(), 5000).unref();
    }

    destroy(): void {
      this.release();
      this.state = 'closed';
      this.sock.destroy();
      this.raw.destroy();
    }

    private release(): void {
      if (this.handle) {
        maildropLocks.delete(this.handle.store);
        this.handle.release();
        this.handle = null;
      }
    }

    private cleanup(): void {
      if (this.idleTimer) clearTimeout(this.idleTimer);
      if (this.loginTimer) clearTimeout(this.loginTimer);
      if (this.commandTimer) clearTimeout(this.commandTimer);
      if (this.saslTimer) clearTimeout(this.saslTimer);
      this.releaseSlot();
      this.release();
      this.state = 'closed';
      this.queue = [];
      this.partial = [];
      sessions.delete(this);
      const n = (perIp.get(this.ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(this.ip);
      else perIp.set(this.ip, n);
    }
  }

  function accept(sock: Socket, raw: Socket, secure: boolean): void {
    raw.setNoDelay(true); // multi-line replies end with a short line that Nagle would hold back
    const ip = raw.remoteAddress ?? '';
    const limit = opts.connectionsPerIp?.() ?? Infinity;
    const n = (perIp.get(ip) ?? 0) + 1;
    const admitted = closing ? null : (gate?.admit(ip) ?? { ok: true as const, release: () => undefined });
    if (admitted && !admitted.ok) {
      sock.on('error', () => undefined);
      log.info('connection refused', { ip, reason: admitted.reason });
      sock.end(admitted.reason === 'prefix' ? `-ERR [SYS/TEMP] Too many connections from your network (limit ${admitted.limit})\r\n` : '-ERR [SYS/TEMP] Too many connections; try again later\r\n');
      setTimeout(() => raw.destroy(), 2000).unref();
      return;
    }
    if (closing || n > limit) {
      admitted?.release();
      sock.on('error', () => undefined);
      sock.end(closing ? '-ERR [SYS/TEMP] Server shutting down; try again shortly\r\n' : `-ERR [SYS/TEMP] Too many connections from your address (limit ${limit})\r\n`);
      setTimeout(() => raw.destroy(), 2000).unref();
      if (!closing) log.info('too many connections', { ip });
      return;
    }
    perIp.set(ip, n);
    const session = new Session(sock, raw, secure, admitted!.release);
    sessions.add(session);
    session.start();
  }

  let server: NetServer | TlsServer;
  if (opts.implicitTls) {
    const tlsServer = createTlsServer({ ...tlsServerOptions(source!.current()), handshakeTimeout: Math.min(idleTimeoutMs, 30_000) }, (sock) => accept(sock, sock, true));
    source!.onChange((m) => tlsServer.setSecureContext(tlsServerOptions(m)));
    tlsServer.on('tlsClientError', (e) => log.debug('TLS handshake failed', { reason: e.message }));
    server = tlsServer;
  } else {
    server = createNetServer((sock) => accept(sock, sock, false));
  }
  server.on('error', (e: Error) => log.warn('server error', { reason: e.message }));

  return {
    listen: (port: number, host: string) => listenOn(server, port, host),
    address: () => boundAddress(server),
    /**
     * Drains: stops accepting at once, lets commands under way finish (a RETR being sent, an
     * UPDATE), tells idle sessions and closes them (nothing is deleted for them), then resolves.
     */
    async close(drainMs = 30_000): Promise<void> {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) if (!s.busy) s.shutdown();
      const deadline = Date.now() + drainMs;
      while (sessions.size > 0 && Date.now() < deadline) await sleep(50);
      for (const s of sessions) s.destroy();
      await closed;
    },
  };
}

export type Pop3Server = ReturnType<typeof createPop3Server>;
