// One IMAP connection (RFC 3501 states: not authenticated -> authenticated -> selected -> logout).
// Commands run one at a time in arrival order; responses respect socket backpressure, so a client
// that never reads cannot make the server buffer without bound.
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import zlib from 'node:zlib';
import { TLSSocket, type SecureContext } from 'node:tls';
import { FlagTable } from './flag-table.js';
import type { LoginThrottle } from '../auth/throttle.js';
import type { MailboxHandle, MailboxRegistry, ChangeEvent } from '../store/registry.js';
import { FolderExists, FolderLimitReached, InvalidFlag, InvalidFolderName, MailStoreError, NoSuchFolder, type FolderInfo, type MessageSummary } from '../store/mailbox-db.js';
import type { Logger } from '../util/log.js';
import { asAString, asNumber, CommandReader, decodeMailboxName, ImapSyntaxError, parseDateTime, parseFetchItems, parseRawSequenceSet, resolveSequenceSet, type Command, type FetchItem, type Token } from './parser.js';
import { flagsOnly, formatEsearch, formatSearch, matchesFlags, parseSearch, search as runSearch, SearchError, type SearchCommand, type SearchContext, type SearchKey } from './search.js';
import { createSpecialUse } from './create-special-use.js';
import { parseSort, parseThread, sortFacts, sortOrThreadResponse, THREAD_ALGORITHMS } from './sort-command.js';
import { searchView } from './search-view.js';
import { TimeSlice } from '../util/time-slice.js';
import { candidateSql, toSql } from './search-sql.js';
import { FetchChunk } from './fetch-chunk.js';
import { ChangeDigest, queueIdleUpdate, type IdleListener } from './idle-round.js';
import { encodeBodyStructure, encodeEnvelope, encodeFlags, encodeInternalDate, encodeMailbox, encodeSequenceSet, applyPartial, literal8Bytes, literalBytes, binarySection, sectionBytes, sectionLabel } from './encode.js';

export interface SessionOptions {
  registry: MailboxRegistry;
  log: Logger;
  throttle: LoginThrottle;
  secureContext: (() => SecureContext) | null; // for STARTTLS, read at each use (renewals); null: not offered
  allowPlaintextAuth: (remoteAddress: string) => boolean;
  hostname: string;
  appendLimit: number;
  /** Storage limit of each mailbox in octets, 0 for none (read per use: SIGHUP may change it). */
  quota: () => number;
  idleTimeoutMs: number;
  /** Deadlines no input extends (limits.login_timeout_seconds, command_timeout_seconds, imap_idle_timeout_seconds). */
  deadlines?: () => DeadlineLimits;
  /** The session said BYE: its connection no longer counts against the client's limit. */
  onLogout?: () => void;
  /**
   * Spam learning: called when the owner copies or moves messages into Junk ('spam') or out of it
   * ('ham'), with their bytes as decrypted in this session's memory (the only moment the server
   * may read them). The reply waits for it at most `learnWaitMs`; failures are the learner's to log.
   */
  learn?: (kind: 'spam' | 'ham', messages: Buffer[]) => Promise<void>;
  learnWaitMs?: number;
  onClose: () => void;
}

type State = 'notauth' | 'auth' | 'selected' | 'logout';

/** Input read ahead of the command being run; above it the socket is not read until the session catches up. */
const MAX_QUEUED_INPUT = 256 * 1024;
/** Literals a client may send before it has logged in (a LOGIN password, not a message). */
export const PRELOGIN_LITERAL_LIMIT = 8 * 1024;

class No extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
    readonly status: 'NO' | 'BAD' = 'NO',
  ) {
    super(message);
  }
}

interface Selected {
  name: string;
  readOnly: boolean;
  uids: Uint32Array; // sequence number - 1 -> UID: flags.uidView(), taken again after UIDs come or go
  flags: FlagTable; // uid -> flags as last told to the client
  uidValidity: number;
  dirty: boolean;
  /** Changes up to this MODSEQ have been told to the client (new mail, flags). */
  seenModseq: number;
  /** Expunges up to this MODSEQ have been told (lags behind while EXPUNGE may not be sent). */
  expungedModseq: number;
  /** UIDs that are \Recent in this session (RFC 3501 2.3.2: one session sees a message as new). */
  recent: Set<number>;
  /** Keywords told in FLAGS/PERMANENTFLAGS, by lower-case form. */
  keywords: Map<string, string>;
  /** MODSEQ last told per UID, where a change after SELECT was told (CONDSTORE updates). */
  modseqs: Map<number, number>;
}

/** Messages one COPY/MOVE into or out of Junk trains on, at most. */
const MAX_LEARN_PER_COMMAND = 50;

const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'];

/** Sequence number of a UID in the ascending UID list (binary search). */
function seqOfUid(uids: ArrayLike<number>, uid: number): number {
  let lo = 0;
  let hi = uids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (uids[mid] === uid) return mid + 1;
    if (uids[mid]! < uid) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

function listOf(tok: Token | undefined): Token[] | null {
  return tok?.type === 'list' ? tok.items : null;
}

function atom(tok: Token | undefined): string | null {
  return tok?.type === 'atom' && tok.section === undefined ? tok.value : null;
}

/** A flag as the client wrote it; NIL is an atom here (flag-keyword = atom), not nothing. */
function flagAtom(tok: Token): string {
  return tok.type === 'nil' ? 'NIL' : (atom(tok) ?? '');
}

export class ImapSession implements IdleListener {
  private state: State = 'notauth';
  private reader: CommandReader;
  /** Reading paused: input is queued beyond MAX_QUEUED_INPUT (resumed as the session reads it). */
  private inputPaused = false;
  /** After COMPRESS: the inflate stream the session reads from (pausing it holds the socket back too). */
  private inflate: zlib.InflateRaw | null = null;
  private busy = false;
  private closed = false;
  private handle: MailboxHandle | null = null;
  private selected: Selected | null = null;
  private idling: { tag: string } | null = null;
  private condstore = false;
  private qresync = false; // ENABLE QRESYNC (RFC 7162): VANISHED instead of EXPUNGE, SELECT (QRESYNC ...)
  private utf8 = false; // ENABLE UTF8=ACCEPT (RFC 6855): UTF-8 in strings and mailbox names
  private readonly onChange = (e: ChangeEvent) => this.changed(e);
  private timer: NodeJS.Timeout | null = null;
  private deadlines: SessionDeadlines;
  /** Where responses go: the socket, or the deflate stream in front of it after COMPRESS. */
  private out: Writable;
  private deflate: zlib.DeflateRaw | null = null;
  private flushScheduled = false;
  /** Called after input arrives (AUTHENTICATE waits for its continuation line this way). */
  private onInput: (() => void) | null = null;

  constructor(
    private socket: Socket,
    private opts: SessionOptions,
  ) {
    this.out = socket;
    this.reader = this.newReader();
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('close', () => this.cleanup());
    socket.on('error', () => undefined);
    this.armTimer();
    this.deadlines = new SessionDeadlines(this, opts.deadlines?.() ?? null);
    this.send(`* OK [CAPABILITY ${this.capabilities()}] ${opts.hostname} fe IMAP ready`);
  }

  private newReader(): CommandReader {
    return new CommandReader({
      maxLiteralSize: this.opts.appendLimit, // APPENDLIMIT as advertised
      checkLiteral: (info) =>
        this.state === 'notauth' && info.size > PRELOGIN_LITERAL_LIMIT
          ? { status: 'BAD', code: 'TOOBIG', text: `literals over ${PRELOGIN_LITERAL_LIMIT} octets need a login first` }
          : null,
    });
  }

  private get secure(): boolean {
    return this.socket instanceof TLSSocket;
  }

  private capabilities(): string {
    const caps = ['IMAP4rev1', 'LITERAL+', 'SASL-IR', 'ID', 'ENABLE', 'IDLE', 'NAMESPACE', 'UNSELECT', 'UIDPLUS', 'MOVE', 'SPECIAL-USE', 'CHILDREN', 'LIST-EXTENDED', 'LIST-STATUS', 'CONDSTORE', 'QRESYNC', 'ESEARCH', 'UTF8=ACCEPT', 'BINARY', 'QUOTA', 'QUOTA=RES-STORAGE', 'STATUS=SIZE', 'COMPRESS=DEFLATE', `APPENDLIMIT=${this.opts.appendLimit}`, 'SORT', 'SORT=DISPLAY', ...THREAD_ALGORITHMS.map((t) => `THREAD=${t}`), 'ESORT', 'MULTIAPPEND', 'CREATE-SPECIAL-USE'];
    if (this.state === 'notauth') {
      if (!this.secure && this.opts.secureContext) caps.push('STARTTLS');
      if (this.secure || this.opts.allowPlaintextAuth(this.socket.remoteAddress ?? '')) caps.push('AUTH=PLAIN', 'AUTH=LOGIN');
      else caps.push('LOGINDISABLED');
    }
    return caps.join(' ');
  }

  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    // RFC 3501 5.4: an autologout timer of at least 30 minutes (IDLE clients re-issue within 29).
    this.timer = setTimeout(() => {
      this.send('* BYE Autologout; idle for too long');
      this.out.end();
    }, this.opts.idleTimeoutMs);
    this.timer.unref();
  }

  private send(line: string | Buffer): boolean {
    if (this.closed) return false;
    const ok = this.out.write(typeof line === 'string' ? line + '\r\n' : line);
    if (this.deflate && !this.flushScheduled) {
      // One sync flush per burst of responses, not per line: the client sees whole responses
      // without paying a deflate block for each FETCH line.
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        if (!this.closed) this.deflate?.flush(zlib.constants.Z_SYNC_FLUSH);
      });
    }
    return ok;
  }

  /** Waits until the client has read what was sent (backpressure). */
  private async flush(): Promise<void> {
    const out = this.out;
    if (this.closed || !out.writableNeedDrain) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        out.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      out.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private onData(chunk: Buffer): void {
    this.armTimer();
    this.reader.push(chunk);
    this.onInput?.();
    if (!this.inputPaused && this.reader.pending > MAX_QUEUED_INPUT) {
      this.inputPaused = true;
      (this.inflate ?? this.socket).pause();
    }
    if (!this.busy) void this.pump();
  }

  /** Reads the socket again once the queued input is down to half the cap. */
  private resumeInput(): void {
    if (!this.inputPaused || this.closed || this.reader.pending > MAX_QUEUED_INPUT / 2) return;
    this.inputPaused = false;
    (this.inflate ?? this.socket).resume();
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      while (!this.closed) {
        if (this.idling) {
          const ev = this.reader.nextLine();
          if (!ev || ev.kind !== 'line') break;
          const line = ev.line.toString('latin1').trim().toUpperCase();
          const tag = this.idling.tag;
          this.idling = null;
          this.deadlines.idleEnded();
          if (line === 'DONE') this.send(`${tag} OK IDLE terminated`);
          else this.send(`${tag} BAD expected DONE`);
          continue;
        }
        const ev = this.reader.next();
        this.deadlines.commandProgress(this.reader.idle);
        if (!ev) break;
        if (ev.kind === 'continue') this.send('+ Ready for literal data');
        else if (ev.kind === 'error') this.send(`${ev.tag ?? '*'} ${ev.status} ${ev.code ? `[${ev.code}] ` : ''}${ev.text}`);
        else if (ev.kind === 'command') await this.run(ev.command);
        await this.flush();
        this.resumeInput();
      }
    } finally {
      this.busy = false;
      if (this.closed) this.releaseMailbox(); // the client left during a command: it has ended now
      this.resumeInput();
    }
  }

  private async run(cmd: Command): Promise<void> {
    try {
      const text = await this.dispatch(cmd);
      if (text === null) return; // the command answers for itself (IDLE, LOGOUT, STARTTLS)
      this.sendUpdates(cmd.command);
      this.send(`${cmd.tag} OK ${text}`);
    } catch (e) {
      if (e instanceof No) return void this.send(`${cmd.tag} ${e.status} ${e.code ? `[${e.code}] ` : ''}${e.message}`);
      if (e instanceof ImapSyntaxError) return void this.send(`${cmd.tag} BAD ${e.message}`);
      if (e instanceof NoSuchFolder) return void this.send(`${cmd.tag} NO [NONEXISTENT] ${e.message}`);
      if (e instanceof FolderExists) return void this.send(`${cmd.tag} NO [ALREADYEXISTS] ${e.message}`);
      if (e instanceof FolderLimitReached) return void this.send(`${cmd.tag} NO [LIMIT] ${e.message}`);
      if (e instanceof InvalidFolderName) return void this.send(`${cmd.tag} NO ${e.message}`); // a valid astring no folder may have (RFC 3501 5.1.3)
      if (e instanceof InvalidFlag) return void this.send(`${cmd.tag} BAD ${e.message}`);
      if (e instanceof MailStoreError) return void this.send(`${cmd.tag} NO ${e.message}`);
      // The client left while the command waited on it (a FETCH held back by backpressure):
      // its mailbox is closed under the command, and there is nobody to answer.
      if (this.closed) return;
      this.opts.log.error('IMAP command failed', { command: cmd.command, reason: (e as Error).message });
      this.send(`${cmd.tag} NO [SERVERBUG] internal error; the mailbox is unchanged`);
    }
  }

  private need(...states: State[]): void {
    if (states.includes(this.state)) return;
    if (this.state === 'notauth') throw new No('log in first', null, 'BAD');
    if (states.includes('selected')) throw new No('select a mailbox first', null, 'BAD');
    throw new No('not allowed now', null, 'BAD');
  }

  private async dispatch(cmd: Command): Promise<string | null> {
    const a = cmd.args;
    switch (cmd.command) {
      case 'CAPABILITY':
        this.send(`* CAPABILITY ${this.capabilities()}`);
        return 'CAPABILITY completed';
      case 'NOOP':
      case 'CHECK':
        return `${cmd.command} completed`;
      case 'LOGOUT':
        this.send('* BYE logging out');
        this.send(`${cmd.tag} OK LOGOUT completed`);
        this.state = 'logout';
        this.out.end();
        this.opts.onLogout?.();
        // a client that never closes its end after LOGOUT does not keep the socket forever
        setTimeout(() => this.socket.destroy(), 10_000).unref();
        return null;
      case 'ID':
        this.send(`* ID ("name" "fe" "vendor" "fe")`);
        return 'ID completed';
      case 'STARTTLS':
        return this.startTls(cmd);
      case 'COMPRESS':
        this.need('auth', 'selected');
        return this.compress(cmd);
      case 'LOGIN': {
        this.need('notauth');
        const user = asAString(a[0]);
        const pass = asAString(a[1]);
        if (user === null || pass === null || a.length !== 2) throw new No('LOGIN needs a user name and a password', null, 'BAD');
        return this.login(user, pass);
      }
      case 'AUTHENTICATE':
        this.need('notauth');
        try {
          return await this.authenticate(cmd);
        } finally {
          this.deadlines.exchangeDone();
        }
      case 'ENABLE': {
        this.need('auth', 'selected');
        const enabled: string[] = [];
        for (const t of a) {
          const name = (atom(t) ?? '').toUpperCase();
          if (name === 'CONDSTORE') {
            this.enableCondstore();
            enabled.push(name);
          } else if (name === 'QRESYNC') {
            this.enableCondstore();
            this.qresync = true; // QRESYNC implies CONDSTORE (RFC 7162 3.2.3)
            enabled.push(name);
          } else if (name === 'UTF8=ACCEPT') {
            this.utf8 = true;
            this.reader.setUtf8(true);
            enabled.push(name);
          }
        }
        this.send(`* ENABLED${enabled.map((e) => ' ' + e).join('')}`);
        return 'ENABLE completed';
      }
      case 'NAMESPACE':
        this.need('auth', 'selected');
        this.send('* NAMESPACE (("" "/")) NIL NIL');
        return 'NAMESPACE completed';
      case 'LIST':
      case 'LSUB':
        this.need('auth', 'selected');
        return this.list(cmd);
      case 'STATUS':
        this.need('auth', 'selected');
        return this.status(a);
      case 'SELECT':
      case 'EXAMINE':
        this.need('auth', 'selected');
        return this.select(a, cmd.command === 'EXAMINE');
      case 'CREATE': {
        this.need('auth', 'selected');
        // "foo/" declares that names will be created under foo: create foo (RFC 3501 6.3.3)
        let name = this.mailboxArg(a[0]);
        if (name.length > 1 && name.endsWith('/')) name = name.slice(0, -1);
        this.handle!.store.createFolder(name, { specialUse: createSpecialUse(a.slice(1), this.handle!.store) });
        this.handle!.changed(null, this);
        return 'CREATE completed';
      }
      case 'DELETE': {
        this.need('auth', 'selected');
        const name = this.mailboxArg(a[0]);
        if (name.toUpperCase() === 'INBOX') throw new No('INBOX cannot be deleted');
        this.handle!.store.deleteFolder(name);
        this.handle!.changed(null, this);
        return 'DELETE completed';
      }
      case 'RENAME': {
        this.need('auth', 'selected');
        this.handle!.store.renameFolder(this.mailboxArg(a[0]), this.mailboxArg(a[1]));
        this.handle!.changed(null, this);
        return 'RENAME completed';
      }
      case 'SUBSCRIBE':
      case 'UNSUBSCRIBE':
        this.need('auth', 'selected');
        this.handle!.store.setSubscribed(this.mailboxArg(a[0]), cmd.command === 'SUBSCRIBE');
        return `${cmd.command} completed`;
      case 'APPEND':
        this.need('auth', 'selected');
        return this.append(a);
      case 'IDLE':
        this.need('auth', 'selected');
        this.idling = { tag: cmd.tag };
        this.deadlines.idleStarted();
        this.send('+ idling');
        this.sendUpdates('IDLE');
        return null;
      case 'CLOSE':
      case 'UNSELECT': {
        this.need('selected');
        const sel = this.selected!;
        if (cmd.command === 'CLOSE' && !sel.readOnly) {
          const gone = this.handle!.store.expunge(sel.name);
          if (gone.length) this.handle!.changed(sel.name, this);
        }
        this.selected = null;
        this.state = 'auth';
        return `${cmd.command} completed`;
      }
      case 'EXPUNGE':
      case 'UID EXPUNGE': {
        this.need('selected');
        this.writable();
        const sel = this.selected!;
        const uids = cmd.command === 'UID EXPUNGE' ? this.uidSet(a[0]) : undefined;
        const gone = this.handle!.store.expunge(sel.name, uids);
        if (gone.length) this.handle!.changed(sel.name, this);
        this.reportExpunged(new Set(gone));
        return `${cmd.command} completed`;
      }
      case 'FETCH':
      case 'UID FETCH':
        this.need('selected');
        return this.fetch(cmd);
      case 'STORE':
      case 'UID STORE':
        this.need('selected');
        return this.store(cmd);
      case 'COPY':
      case 'UID COPY':
      case 'MOVE':
      case 'UID MOVE':
        this.need('selected');
        return await this.copy(cmd);
      case 'SEARCH':
      case 'UID SEARCH':
        this.need('selected');
        return this.search(cmd);
      case 'SORT':
      case 'UID SORT':
      case 'THREAD':
      case 'UID THREAD':
        this.need('selected');
        return this.sortOrThread(cmd);
      case 'GETQUOTAROOT': {
        this.need('auth', 'selected');
        const name = this.mailboxArg(a[0]);
        if (!this.handle!.store.getFolder(name)) throw new NoSuchFolder(name);
        const limited = this.opts.quota() > 0;
        this.send(`* QUOTAROOT ${encodeMailbox(name, { utf8: this.utf8 })}${limited ? ' ""' : ''}`);
        if (limited) this.send(this.quotaLine());
        return 'GETQUOTAROOT completed';
      }
      case 'GETQUOTA': {
        this.need('auth', 'selected');
        // One root, "", covers every folder of the mailbox; there is none when no limit is set.
        if (asAString(a[0]) !== '' || this.opts.quota() === 0) throw new No('no such quota root', 'NONEXISTENT');
        this.send(this.quotaLine());
        return 'GETQUOTA completed';
      }
      case 'SETQUOTA':
        this.need('auth', 'selected');
        throw new No('quotas are set by the administrator in fe.yml (limits.mailbox_quota)', 'NOPERM');
      default:
        throw new No(`unknown command ${cmd.command.slice(0, 30)}`, null, 'BAD');
    }
  }

  // ---- authentication ----

  private async startTls(cmd: Command): Promise<null> {
    if (this.state !== 'notauth') throw new No('STARTTLS only before login', null, 'BAD');
    if (this.secure || !this.opts.secureContext) throw new No('TLS is not available here (or already on)', null, 'BAD');
    const leftover = this.reader.takeBuffered();
    if (leftover.length > 0) throw new No('no pipelining after STARTTLS', null, 'BAD');
    this.send(`${cmd.tag} OK begin TLS now`);
    const plain = this.socket;
    plain.removeAllListeners('data');
    if (this.inputPaused) plain.resume(); // nothing is queued (checked above): read the handshake
    this.inputPaused = false;
    const secured = new TLSSocket(plain, { isServer: true, secureContext: this.opts.secureContext() });
    this.socket = secured;
    this.out = secured;
    this.reader = this.newReader();
    secured.on('data', (d: Buffer) => this.onData(d));
    secured.on('error', () => plain.destroy());
    return null;
  }

  /** COMPRESS=DEFLATE (RFC 4978): raw deflate both ways from the octet after the tagged OK. */
  private compress(cmd: Command): null {
    if ((atom(cmd.args[0]) ?? '').toUpperCase() !== 'DEFLATE' || cmd.args.length !== 1) throw new No('only COMPRESS DEFLATE is supported', null, 'BAD');
    if (this.deflate) throw new No('compression is already on', 'COMPRESSIONACTIVE');
    if (this.reader.takeBuffered().length > 0) throw new No('no pipelining after COMPRESS', null, 'BAD');
    this.send(`${cmd.tag} OK DEFLATE active`);
    const socket = this.socket;
    const inflate = zlib.createInflateRaw();
    const deflate = zlib.createDeflateRaw({ level: 6 });
    socket.removeAllListeners('data');
    // pipe(): the socket is read only as fast as inflate is, and inflate only as fast as the
    // session reads (pausing it stops inflating), so a small bomb never inflates in one go
    this.inputPaused = false; // nothing is queued (checked above); pipe() resumes the socket
    socket.pipe(inflate);
    this.inflate = inflate;
    inflate.on('data', (d: Buffer) => this.onData(d));
    inflate.on('error', () => socket.destroy()); // not a deflate stream: nothing sensible to answer
    deflate.on('error', () => socket.destroy());
    deflate.pipe(socket);
    this.deflate = deflate;
    this.out = deflate;
    return null;
  }

  private async login(user: string, pass: string): Promise<string> {
    const ip = this.socket.remoteAddress ?? '';
    if (!this.secure && !this.opts.allowPlaintextAuth(ip)) throw new No('use TLS (STARTTLS or port 993) before logging in', 'PRIVACYREQUIRED');
    const r = await this.opts.throttle.login(ip, () => !this.closed, () => this.opts.registry.login(user, pass), () => this.opts.registry.quickLogin(user, pass));
    if (r.kind === 'blocked') throw new No(`too many failed logins from your address; try again in ${Math.ceil(r.retryAfterMs / 60000)} minutes`, 'UNAVAILABLE');
    if (r.kind === 'busy' || r.kind === 'gone') throw new No('too many logins waiting; try again in a moment', 'UNAVAILABLE');
    const handle = r.kind === 'ok' ? r.value : null;
    if (handle && this.closed) {
      handle.release(); // the client left while its password was checked
      throw new No('the connection closed');
    }
    if (!handle) {
      this.opts.log.info('IMAP login failed', { ip, user: this.opts.log.addr(user) });
      throw new No('wrong user name or password', 'AUTHENTICATIONFAILED');
    }
    this.handle = handle;
    handle.events.on('change', this.onChange);
    this.state = 'auth';
    this.opts.log.info('IMAP login', { user: this.opts.log.addr(handle.address) });
    return `[CAPABILITY ${this.capabilities()}] logged in`;
  }

  /** AUTHENTICATE PLAIN (RFC 4616, with SASL-IR) or LOGIN (the old two-prompt mechanism some clients still pick). */
  private async authenticate(cmd: Command): Promise<string> {
    const mech = (atom(cmd.args[0]) ?? '').toUpperCase();
    if (mech !== 'PLAIN' && mech !== 'LOGIN') throw new No('supported mechanisms: PLAIN, LOGIN', null, 'NO');
    if (!this.secure && !this.opts.allowPlaintextAuth(this.socket.remoteAddress ?? '')) throw new No('use TLS (STARTTLS or port 993) before logging in', 'PRIVACYREQUIRED');
    // The continuations are part of the command: due within the command deadline (not only the
    // login deadline), and the password check that follows is not the client's time.
    const ask = async (prompt: string): Promise<string | null> => {
      this.deadlines.exchangeStarted();
      this.send(`+ ${prompt}`);
      await this.flush();
      const line = await this.readLine();
      this.deadlines.exchangeEnded();
      if (line === '*') throw new No('authentication cancelled', null, 'BAD');
      return line;
    };
    const decode = (b64: string) => (b64 === '=' ? '' : Buffer.from(b64, 'base64').toString('utf8'));
    if (mech === 'LOGIN') {
      const user = await ask(Buffer.from('Username:').toString('base64'));
      if (user === null) return '';
      const pass = await ask(Buffer.from('Password:').toString('base64'));
      if (pass === null) return '';
      return this.login(decode(user), decode(pass));
    }
    const initial = asAString(cmd.args[1]);
    const response = initial ?? (await ask(''));
    if (response === null) return '';
    if (response === '*') throw new No('authentication cancelled', null, 'BAD');
    const [authz = '', user = '', pass = ''] = decode(response).split('\u0000');
    if (!user || (authz && authz.toLowerCase() !== user.toLowerCase())) throw new No('invalid PLAIN response', null, 'BAD');
    return this.login(user, pass);
  }

  private readLine(): Promise<string | null> {
    return new Promise((resolve) => {
      const attempt = () => {
        const ev = this.reader.nextLine();
        if (ev && ev.kind === 'line') {
          this.onInput = null;
          this.resumeInput();
          this.socket.off('close', gone);
          resolve(ev.line.toString('utf8'));
        }
      };
      const gone = () => {
        this.onInput = null;
        resolve(null);
      };
      this.onInput = attempt;
      this.socket.on('close', gone);
      attempt();
    });
  }

  // ---- mailboxes ----

  private mailboxArg(tok: Token | undefined): string {
    const raw = tok?.type === 'string' ? tok.bytes : tok?.type === 'atom' && !tok.section ? Buffer.from(tok.value, 'latin1') : null;
    if (!raw) throw new No('missing mailbox name', null, 'BAD');
    let name: string;
    try {
      name = decodeMailboxName(raw, this.utf8);
    } catch (e) {
      // well-formed command, a name no mailbox can have: NO, not BAD (RFC 3501 5.1.3)
      if (e instanceof ImapSyntaxError) throw new No(e.message, 'NONEXISTENT');
      throw e;
    }
    return name.toUpperCase() === 'INBOX' ? 'INBOX' : name;
  }

  /** LIST and LSUB, with LIST-EXTENDED (RFC 5258), SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819). */
  private async list(cmd: Command): Promise<string> {
    const a = cmd.args;
    let i = 0;
    const selection = new Set<string>();
    const sel = cmd.command === 'LIST' ? listOf(a[0]) : null;
    if (sel) {
      for (const t of sel) {
        const o = (atom(t) ?? '').toUpperCase();
        if (!['SUBSCRIBED', 'REMOTE', 'RECURSIVEMATCH', 'SPECIAL-USE'].includes(o)) throw new No(`unknown LIST selection option ${o.slice(0, 20)}`, null, 'BAD');
        selection.add(o);
      }
      // RFC 5258 3.1: RECURSIVEMATCH only refines another selection option
      if (selection.has('RECURSIVEMATCH') && !selection.has('SUBSCRIBED') && !selection.has('SPECIAL-USE')) throw new No('RECURSIVEMATCH needs another selection option', null, 'BAD');
      i = 1;
    }
    const ref = asAString(a[i]);
    const patternList = listOf(a[i + 1]);
    const patterns = patternList ? patternList.map((t) => asAString(t)) : [asAString(a[i + 1])];
    if (ref === null || patterns.length === 0 || patterns.some((p) => p === null)) throw new No('LIST needs a reference and a pattern', null, 'BAD');
    const returns = new Set<string>();
    let statusItems: string[] | null = null;
    if (cmd.command === 'LIST' && a.length > i + 2) {
      if ((atom(a[i + 2]) ?? '').toUpperCase() !== 'RETURN') throw new No('unexpected LIST argument', null, 'BAD');
      const opts = listOf(a[i + 3]);
      if (!opts) throw new No('RETURN needs a list', null, 'BAD');
      for (let j = 0; j < opts.length; j++) {
        const name = (atom(opts[j]) ?? '').toUpperCase();
        if (name === 'STATUS') {
          statusItems = (listOf(opts[++j]) ?? []).map((t) => (atom(t) ?? '').toUpperCase());
          if (statusItems.length === 0) throw new No('STATUS needs a list of items', null, 'BAD');
        } else if (['SUBSCRIBED', 'CHILDREN', 'SPECIAL-USE'].includes(name)) returns.add(name);
        else throw new No(`unknown LIST return option ${name.slice(0, 20)}`, null, 'BAD');
      }
    }
    if (patterns.length === 1 && patterns[0] === '' && !sel) {
      this.send(`* ${cmd.command} (\\Noselect) "/" ""`);
      return `${cmd.command} completed`;
    }
    // Names are case-sensitive, except INBOX (RFC 3501 5.1). Patterns arrive in the same form as
    // names: modified UTF-7 unless UTF8=ACCEPT is on.
    const matchers = (patterns as string[]).map((p) => {
      const bytes = Buffer.from(ref + p, 'utf8');
      const full = decodeMailboxName(bytes, this.utf8 || bytes.some((b) => b >= 0x80)); // 8-bit: taken as UTF-8, as before
      const re = new RegExp('^' + full.split('').map((c) => (c === '*' ? '.*' : c === '%' ? '[^/]*' : c.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))).join('') + '$');
      const inbox = new RegExp(re.source, 'i');
      return (name: string) => (name === 'INBOX' ? inbox.test(name) : re.test(name));
    });
    const matches = (name: string) => matchers.some((m) => m(name));
    const store = this.handle!.store;
    const folders = new Map(store.listFolderNames().map((f) => [f.name, f]));
    const subscribed = new Set(store.subscriptions());
    const subscribedOnly = cmd.command === 'LSUB' || selection.has('SUBSCRIBED');
    const specialOnly = selection.has('SPECIAL-USE');
    const selected = (name: string) => (!subscribedOnly || subscribed.has(name)) && (!specialOnly || !!folders.get(name)?.specialUse);
    // Subscribed names are listed even when their folder is gone (\NonExistent, RFC 5258)
    const names = new Set([...folders.keys(), ...(subscribedOnly ? subscribed : [])]);
    // RECURSIVEMATCH: a name that does not qualify itself is listed when a descendant does (CHILDINFO)
    const childInfo = new Set<string>();
    if (selection.has('RECURSIVEMATCH')) {
      for (const n of names) {
        if (!selected(n)) continue;
        const parts = n.split('/');
        for (let k = 1; k < parts.length; k++) childInfo.add(parts.slice(0, k).join('/'));
      }
    }
    const order = [...new Set([...names, ...childInfo])].sort((x, y) => (x === 'INBOX' ? -1 : y === 'INBOX' ? 1 : x < y ? -1 : x > y ? 1 : 0));
    // \HasChildren from one pass over the names (linear, not a scan of all names per folder)
    const parents = new Set<string>();
    for (const n of folders.keys()) for (let k = n.indexOf('/'); k > 0; k = n.indexOf('/', k + 1)) parents.add(n.slice(0, k));
    const slice = new TimeSlice();
    const criteria = [...(subscribedOnly ? ['"SUBSCRIBED"'] : []), ...(specialOnly ? ['"SPECIAL-USE"'] : [])].join(' ');
    for (const n of order) {
      if (!matches(n)) continue;
      const self = selected(n);
      const viaChild = childInfo.has(n);
      if (!self && !viaChild) continue;
      const f = folders.get(n);
      const attrs: string[] = [];
      if (!f) attrs.push(cmd.command === 'LSUB' ? '\\Noselect' : '\\NonExistent');
      else attrs.push(parents.has(n) ? '\\HasChildren' : '\\HasNoChildren');
      if (subscribed.has(n) && (selection.has('SUBSCRIBED') || returns.has('SUBSCRIBED'))) attrs.push('\\Subscribed');
      if (f?.specialUse && cmd.command === 'LIST') attrs.push(f.specialUse);
      const name = encodeMailbox(n, { utf8: this.utf8 });
      this.send(`* ${cmd.command} (${attrs.join(' ')}) "/" ${name}${viaChild ? ` ("CHILDINFO" (${criteria}))` : ''}`);
      const info = statusItems && f ? store.getFolder(n) : null;
      if (info) this.send(this.statusLine(info, statusItems!));
      await slice.yield();
      await this.flush();
      if (this.closed) break;
    }
    return `${cmd.command} completed`;
  }

  private statusLine(f: FolderInfo, items: string[]): string {
    const values: string[] = [];
    for (const item of items) {
      switch (item) {
        case 'MESSAGES':
          values.push(`MESSAGES ${f.messages}`);
          break;
        case 'UNSEEN':
          values.push(`UNSEEN ${f.unseen}`);
          break;
        case 'UIDNEXT':
          values.push(`UIDNEXT ${f.uidNext}`);
          break;
        case 'UIDVALIDITY':
          values.push(`UIDVALIDITY ${f.uidValidity}`);
          break;
        case 'RECENT': // not yet seen by any session, plus what is recent in this one
          values.push(`RECENT ${f.recent + (this.selected?.name === f.name ? this.selected.recent.size : 0)}`);
          break;
        case 'HIGHESTMODSEQ':
          this.enableCondstore(); // a CONDSTORE-enabling command (RFC 7162 3.1)
          values.push(`HIGHESTMODSEQ ${f.highestModseq}`);
          break;

        case 'DELETED':
          values.push(`DELETED ${f.deleted}`);
          break;
        case 'DELETED-STORAGE': // RFC 9208 4.2: what EXPUNGE would free, in units of 1024 octets
          values.push(`DELETED-STORAGE ${Math.ceil(f.deletedSize / 1024)}`);
          break;
        case 'SIZE': // RFC 8438
          values.push(`SIZE ${f.size}`);
          break;
        default:
          throw new No(`unknown STATUS item ${item.slice(0, 20)}`, null, 'BAD');
      }
    }
    return `* STATUS ${encodeMailbox(f.name, { utf8: this.utf8 })} (${values.join(' ')})`;
  }

  /** RFC 9208 QUOTA response for the root "": STORAGE in units of 1024 octets, and MESSAGE. */
  private quotaLine(): string {
    const u = this.handle!.store.usage();
    const limit = this.opts.quota();
    return `* QUOTA "" (STORAGE ${Math.ceil(u.octets / 1024)} ${Math.floor(limit / 1024)})`;
  }

  /** Refuses an APPEND or COPY that would take the mailbox over its quota (RFC 9208 4.3). */
  private checkQuota(adding: number): void {
    const limit = this.opts.quota();
    if (limit > 0 && this.handle!.store.usage().octets + adding > limit) throw new No('the mailbox is over its storage quota; delete or expunge mail first', 'OVERQUOTA');
  }

  private status(a: Token[]): string {
    const name = this.mailboxArg(a[0]);
    const items = listOf(a[1])?.map((t) => (atom(t) ?? '').toUpperCase());
    if (!items || items.length === 0) throw new No('STATUS needs a list of items', null, 'BAD');
    const f = this.handle!.store.getFolder(name);
    if (!f) throw new NoSuchFolder(name);
    this.send(this.statusLine(f, items));
    return 'STATUS completed';
  }

  private select(a: Token[], readOnly: boolean): string {
    const name = this.mailboxArg(a[0]);
    const params = listOf(a[1]) ?? [];
    let resync: { uidValidity: number; modseq: number; knownUids: Array<[number, number]> | null } | null = null;
    for (let j = 0; j < params.length; j++) {
      const p = (atom(params[j]) ?? '').toUpperCase();
      if (p === 'CONDSTORE') this.condstore = true;
      else if (p === 'QRESYNC') {
        if (!this.qresync) throw new No('ENABLE QRESYNC first', null, 'BAD');
        const q = listOf(params[++j]);
        const uidValidity = asNumber(q?.[0]);
        const modseq = asNumber(q?.[1], true);
        if (!q || uidValidity === null || modseq === null || q.length > 4) throw new No('QRESYNC needs (uidvalidity modseq [known-uids] [seq-match-data])', null, 'BAD');
        let knownUids: Array<[number, number]> | null = null;
        if (q[2] && q[2].type !== 'list') {
          const raw = parseRawSequenceSet(atom(q[2]) ?? '');
          if (raw === '$' || raw.some(([x, y]) => x === '*' || y === '*')) throw new No('known-uids must not use * or $', null, 'BAD');
          knownUids = resolveSequenceSet(raw, 0);
        }
        // seq-match-data lets a server without a full expunge history narrow VANISHED; fe keeps
        // that history, so the list is checked for form and otherwise not needed.
        resync = { uidValidity, modseq, knownUids };
      } else throw new No(`unknown ${readOnly ? 'EXAMINE' : 'SELECT'} parameter ${p.slice(0, 20)}`, null, 'BAD');
    }
    if (this.selected) this.send('* OK [CLOSED] previous mailbox closed'); // RFC 7162 3.2.11
    this.selected = null;
    this.state = 'auth';
    const f = this.handle!.store.getFolder(name);
    if (!f) throw new NoSuchFolder(name);
    const store = this.handle!.store;
    const rows = store.folderFlagText(f.name);
    // EXAMINE sees recent mail without taking \Recent away from the next session that selects
    const recentFrom = store.recentFrom(f.name, !readOnly);
    const recent = new Set<number>();
    let firstUnseen = -1;
    rows.forEach(([uid, flags], i) => {
      if (uid >= recentFrom) recent.add(uid);
      if (firstUnseen < 0 && !flags.split(' ').includes('\\Seen')) firstUnseen = i; // until the first unseen only
    });
    const known = FlagTable.from(rows);
    this.selected = { name: f.name, readOnly, uids: known.uidView(), flags: known, uidValidity: f.uidValidity, dirty: false, seenModseq: f.highestModseq, expungedModseq: f.highestModseq, recent, keywords: new Map(), modseqs: new Map() };
    this.state = 'selected';
    for (const k of store.folderKeywords(f.name)) this.selected.keywords.set(k.toLowerCase(), k);
    this.sendFlagsLines();
    this.send(`* ${rows.length} EXISTS`);
    this.send(`* ${recent.size} RECENT`);
    if (firstUnseen >= 0) this.send(`* OK [UNSEEN ${firstUnseen + 1}] first unseen`);
    this.send(`* OK [UIDVALIDITY ${f.uidValidity}] UIDs valid`);
    this.send(`* OK [UIDNEXT ${f.uidNext}] predicted next UID`);
    this.send(`* OK [HIGHESTMODSEQ ${f.highestModseq}] modseq`);
    if (resync && resync.uidValidity === f.uidValidity) {
      // What the client missed since its modseq: UIDs gone, then every message changed or added.
      const known = resync.knownUids;
      const gone = store.vanishedSince(f.name, resync.modseq).filter((u) => !known || known.some(([lo, hi]) => u >= lo && u <= hi));
      if (gone.length > 0) this.send(`* VANISHED (EARLIER) ${encodeSequenceSet(gone)}`);
      for (const m of store.listMessages(f.name, { changedSince: resync.modseq })) {
        const seq = seqOfUid(this.selected.uids, m.uid);
        if (seq > 0) this.send(`* ${seq} FETCH (UID ${m.uid} FLAGS ${encodeFlags(m.flags)} MODSEQ (${m.modseq}))`);
      }
    }
    return `[READ-${readOnly ? 'ONLY' : 'WRITE'}] ${readOnly ? 'EXAMINE' : 'SELECT'} completed`;
  }

  /** FLAGS and PERMANENTFLAGS: the system flags and every keyword in use (RFC 3501 7.2.6). */
  private sendFlagsLines(): void {
    const sel = this.selected!;
    const all = [...SYSTEM_FLAGS, ...sel.keywords.values()].join(' ');
    this.send(`* FLAGS (${all})`);
    this.send(`* OK [PERMANENTFLAGS (${sel.readOnly ? '' : all + ' \\*'})] flags allowed`);
  }

  /** Before flags with a keyword the client was not told of go out, a new FLAGS says it exists. */
  private noteKeywords(flags: readonly string[]): void {
    const sel = this.selected!;
    let added = false;
    for (const f of flags) {
      if (f.startsWith('\\') || sel.keywords.has(f.toLowerCase())) continue;
      sel.keywords.set(f.toLowerCase(), f);
      added = true;
    }
    if (added) this.sendFlagsLines();
  }

  /** A message's flags as this session tells them: the stored ones, plus \Recent if it is new here. */
  private sessionFlags(uid: number, flags: readonly string[]): string[] {
    return this.selected!.recent.has(uid) ? [...flags, '\\Recent'] : [...flags];
  }

  /** APPEND, with MULTIAPPEND (RFC 3502): each message `[flags] [date-time] literal`, all or none. */
  private append(a: Token[]): string {
    const name = this.mailboxArg(a[0]);
    const items: { raw: Buffer; flags: string[]; internalDate?: Date }[] = [];
    for (let i = 1; i < a.length || items.length === 0; ) {
      let flags: string[] = [];
      let date: Date | undefined;
      const fl = listOf(a[i]);
      if (fl) {
        flags = fl.map(flagAtom);
        i++;
      }
      const d = a[i];
      if (d?.type === 'string' && d.literal === null && a[i + 1]) {
        const parsed = parseDateTime(d.bytes.toString('latin1'));
        if (!parsed) throw new No('invalid date-time', null, 'BAD');
        date = parsed;
        i++;
      }
      const msg = a[i];
      if (msg?.type !== 'string') throw new No('APPEND needs a message literal', null, 'BAD');
      items.push({ raw: msg.bytes, flags, ...(date ? { internalDate: date } : {}) });
      i++;
    }
    const f = this.handle!.store.folderState(name); // no message count: APPEND must not scan the folder
    if (!f) throw new No(`no mailbox ${name}`, 'TRYCREATE');
    this.checkQuota(items.reduce((n, it) => n + it.raw.length, 0));
    const added = this.handle!.store.appendMessages(f.name, items);
    this.handle!.changed(f.name, this);
    if (this.selected?.name === f.name) this.selected.dirty = true;
    return `[APPENDUID ${added[0]!.uidValidity} ${encodeSequenceSet(added.map((x) => x.uid))}] APPEND completed`;
  }

  // ---- selected state ----

  private writable(): void {
    if (this.selected!.readOnly) throw new No('the mailbox is read-only (EXAMINE)', 'READ-ONLY');
  }

  /** UIDs named by a UID set (those that exist). */
  private uidSet(tok: Token | undefined): number[] {
    const text = atom(tok);
    if (text === null) throw new No('missing UID set', null, 'BAD');
    const raw = parseRawSequenceSet(text);
    if (raw === '$') throw new No('saved search results are not supported', null, 'BAD');
    const uids = this.selected!.uids;
    const ranges = resolveSequenceSet(raw, uids.length ? uids[uids.length - 1]! : 0);
    return Array.from(uids.filter((u) => ranges.some(([lo, hi]) => u >= lo && u <= hi)));
  }

  /** [seq, uid] pairs named by a sequence set (or a UID set for UID commands). */
  private targets(tok: Token | undefined, byUid: boolean): [number, number][] {
    const sel = this.selected!;
    if (byUid) {
      const wanted = new Set(this.uidSet(tok));
      const out: [number, number][] = [];
      sel.uids.forEach((u, i) => void (wanted.has(u) && out.push([i + 1, u])));
      return out;
    }
    const text = atom(tok);
    if (text === null) throw new No('missing sequence set', null, 'BAD');
    const raw = parseRawSequenceSet(text);
    if (raw === '$') throw new No('saved search results are not supported', null, 'BAD');
    const ranges = resolveSequenceSet(raw, sel.uids.length);
    for (const [, hi] of ranges) if (hi > sel.uids.length) throw new No(`no message ${hi} (there are ${sel.uids.length})`, null, 'BAD');
    const out: [number, number][] = [];
    for (let i = 0; i < sel.uids.length; i++) if (ranges.some(([lo, hi]) => i + 1 >= lo && i + 1 <= hi)) out.push([i + 1, sel.uids[i]!]);
    return out;
  }

  private async fetch(cmd: Command): Promise<string> {
    const byUid = cmd.command === 'UID FETCH';
    const items = parseFetchItems(cmd.args[1]);
    let changedSince: number | null = null;
    let vanished = false;
    const mods = listOf(cmd.args[2]) ?? [];
    for (let j = 0; j < mods.length; j++) {
      const mod = (atom(mods[j]) ?? '').toUpperCase();
      if (mod === 'CHANGEDSINCE' && asNumber(mods[j + 1], true) !== null) {
        changedSince = asNumber(mods[++j], true);
        this.enableCondstore();
      } else if (mod === 'VANISHED') vanished = true;
      else throw new No('unknown FETCH modifier', null, 'BAD');
    }
    // RFC 7162 3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE, after ENABLE QRESYNC.
    if (vanished && (!byUid || changedSince === null || !this.qresync)) throw new No('VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC', null, 'BAD');
    const sel = this.selected!;
    const store = this.handle!.store;
    const targets = this.targets(cmd.args[0], byUid);
    if (vanished) {
      const raw = parseRawSequenceSet(atom(cmd.args[0]) ?? '');
      const ranges = raw === '$' ? [] : resolveSequenceSet(raw, Math.max(sel.uids.at(-1) ?? 0, store.getFolder(sel.name)?.uidNext ?? 1));
      const gone = store.vanishedSince(sel.name, changedSince!).filter((u) => ranges.some(([lo, hi]) => u >= lo && u <= hi));
      if (gone.length > 0) this.send(`* VANISHED (EARLIER) ${encodeSequenceSet(gone)}`);
    }
    // FETCH MODSEQ is a CONDSTORE-enabling command (RFC 7162 3.1)
    if (items.some((i) => i.name === 'MODSEQ')) this.enableCondstore();
    const wantModseq = this.condstore && (changedSince !== null || items.some((i) => i.name === 'MODSEQ'));
    const summaries = new Map(store.listMessages(sel.name).map((m) => [m.uid, m] as [number, MessageSummary]));
    let markSeen: number[] = [];
    // ENVELOPE comes in the wire form stored at delivery, unless UTF8=ACCEPT changes the encoding
    const wireEnvelope = !this.utf8 && items.some((i) => i.name === 'ENVELOPE');
    const needsDetails = items.some((i) => !['UID', 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'MODSEQ', 'RFC822', ...(wireEnvelope ? ['ENVELOPE'] : [])].includes(i.name));
    let envelopes = new Map<number, string>();
    // Details come from the store in batches of 500 (one query each), not one query per message.
    const BATCH = 500;
    const slice = new TimeSlice();
    let batch = new Map<number, NonNullable<ReturnType<typeof store.getMessage>>>();
    let index = -1;
    const detailsOf = (uid: number) => batch.get(uid);
    // Responses go out in chunks of about 64 KiB, not one write (and one await) per message.
    const chunk = new FetchChunk((b) => this.send(b));
    try {
      for (const [seq, uid] of targets) {
        if (this.closed) break; // the client left: \Seen goes only on what was built for its socket
        if (++index % BATCH === 0) {
          const slice = targets.slice(index, index + BATCH).map(([, u]) => u);
          if (needsDetails) batch = store.getMessages(sel.name, slice);
          if (wireEnvelope) envelopes = store.envelopesWire(sel.name, slice);
        }
        const m = summaries.get(uid);
        if (!m) continue; // expunged by another session; its EXPUNGE is reported later
        if (changedSince !== null && m.modseq <= changedSince) continue;
        const parts: (string | Buffer)[] = [];
        const add = (s: string | Buffer) => parts.push(s);
        let first = true;
        const item = (name: string, value: string | Buffer) => {
          add(`${first ? '' : ' '}${name} `);
          add(value);
          first = false;
        };
        const details = needsDetails ? (detailsOf(uid) ?? null) : null;
        const envelope = wireEnvelope ? envelopes.get(uid) : undefined;
        if ((needsDetails && !details) || (wireEnvelope && envelope === undefined)) continue; // expunged by another session meanwhile; reported later
        let raw: Buffer | null = null;
        const getRaw = () => (raw ??= store.getRaw(sel.name, uid) ?? Buffer.alloc(0));
        let seenNow = false;
        if (byUid) item('UID', String(uid));
        for (const it of items) {
          switch (it.name) {
            case 'UID':
              if (!byUid) item('UID', String(uid));
              break;
            case 'FLAGS':
              break; // added last, after \Seen may have been set
            case 'INTERNALDATE':
              item('INTERNALDATE', encodeInternalDate(m.internalDate));
              break;
            case 'RFC822.SIZE':
              item('RFC822.SIZE', String(m.size));
              break;
            case 'MODSEQ':
              break;
            case 'ENVELOPE':
              item('ENVELOPE', envelope ?? encodeEnvelope(details!.envelope, { utf8: this.utf8 }));
              break;
            case 'BODYSTRUCTURE':
              item('BODYSTRUCTURE', encodeBodyStructure(details!.structure, true, { utf8: this.utf8 }));
              break;
            case 'BODY':
              item('BODY', encodeBodyStructure(details!.structure, false, { utf8: this.utf8 }));
              break;
            case 'RFC822':
              item('RFC822', literalBytes(getRaw()));
              seenNow = true;
              break;
            case 'RFC822.HEADER':
              item('RFC822.HEADER', literalBytes(sectionBytes(getRaw(), details!.structure, { path: [], text: 'HEADER', fields: [] })));
              break;
            case 'RFC822.TEXT':
              item('RFC822.TEXT', literalBytes(sectionBytes(getRaw(), details!.structure, { path: [], text: 'TEXT', fields: [] })));
              seenNow = true;
              break;
            case 'BODY[]':
              item(sectionLabel(it.section, it.partial), literalBytes(sectionBytes(getRaw(), details!.structure, it.section, it.partial)));
              if (!it.peek) seenNow = true;
              break;
            case 'BINARY[]':
            case 'BINARY.SIZE[]': {
              const bin = binarySection(getRaw(), details!.structure, it.path);
              if (bin === 'unknown-cte') throw new No(`part ${it.path.join('.')} has a transfer encoding fe cannot decode; fetch it with BODY[]`, 'UNKNOWN-CTE');
              const label = it.path.join('.');
              if (it.name === 'BINARY.SIZE[]') {
                item(`BINARY.SIZE[${label}]`, String(bin?.length ?? 0));
                break;
              }
              item(`BINARY[${label}]${it.partial ? `<${it.partial.offset}>` : ''}`, literal8Bytes(bin && applyPartial(bin, it.partial)));
              if (!it.peek) seenNow = true;
              break;
            }
            default:
              throw new No(`${(it as { name: string }).name} is not supported`, null, 'BAD');
          }
        }
        let flags = m.flags;
        let modseq = m.modseq;
        if (seenNow && !sel.readOnly && !flags.includes('\\Seen')) {
          markSeen.push(uid);
          flags = [...flags, '\\Seen'];
          modseq = -1; // filled below
        }
        if (items.some((i) => i.name === 'FLAGS') || (seenNow && flags !== m.flags)) {
          this.noteKeywords(flags);
          item('FLAGS', encodeFlags(this.sessionFlags(uid, flags)));
          sel.flags.set(uid, flags.join(' '));
        }
        if (wantModseq && modseq !== -1) item('MODSEQ', `(${modseq})`);
        if (chunk.add(`* ${seq} FETCH (`, parts, ')\r\n')) await this.flush();
        await slice.yield(); // other sessions get their turn during a long FETCH
      }
    } finally {
      chunk.end(); // also what was built before an error: those responses were complete
    }
    if (markSeen.length > 0) {
      for (const c of store.setFlags(sel.name, markSeen, ['\\Seen'], 'add').changed) sel.modseqs.set(c.uid, c.modseq);
      this.handle!.changed(sel.name, this);
      markSeen = [];
    }
    return `${cmd.command} completed`;
  }

  private store(cmd: Command): string {
    this.writable();
    const byUid = cmd.command === 'UID STORE';
    const sel = this.selected!;
    let i = 1;
    let unchangedSince: number | undefined;
    const mods = listOf(cmd.args[1]);
    if (mods) {
      if ((atom(mods[0]) ?? '').toUpperCase() !== 'UNCHANGEDSINCE' || asNumber(mods[1], true) === null) throw new No('unknown STORE modifier', null, 'BAD');
      unchangedSince = asNumber(mods[1], true)!;
      this.enableCondstore();
      i = 2;
    }
    const what = (atom(cmd.args[i]) ?? '').toUpperCase();
    const m = /^([+-]?)FLAGS(\.SILENT)?$/.exec(what);
    if (!m) throw new No('STORE needs FLAGS, +FLAGS or -FLAGS', null, 'BAD');
    const flagToks = listOf(cmd.args[i + 1]) ?? cmd.args.slice(i + 1);
    const flags = flagToks.map(flagAtom);
    const targets = this.targets(cmd.args[0], byUid);
    const mode = m[1] === '+' ? 'add' : m[1] === '-' ? 'remove' : 'set';
    const { changed, unchanged, modified } = this.handle!.store.setFlags(sel.name, targets.map(([, u]) => u), flags, mode, unchangedSince === undefined ? {} : { unchangedSince });
    const seqOf = new Map(targets.map(([s, u]) => [u, s]));
    const changedUids = new Set(changed.map((c) => c.uid));
    // Without .SILENT every message named gets its flags back, changed or not (RFC 3501 6.4.6);
    // with CONDSTORE, .SILENT still reports the ones that changed (their MODSEQ moved).
    for (const c of [...changed, ...unchanged].sort((x, y) => x.uid - y.uid)) {
      sel.flags.set(c.uid, c.flags.join(' '));
      const isChange = changedUids.has(c.uid);
      if (isChange) sel.modseqs.set(c.uid, c.modseq);
      if (!m[2] || (this.condstore && isChange)) {
        this.noteKeywords(c.flags);
        const extra = [byUid || this.condstore ? `UID ${c.uid}` : '', this.condstore ? `MODSEQ (${c.modseq})` : ''].filter(Boolean).join(' ');
        this.send(`* ${seqOf.get(c.uid)} FETCH (${extra ? extra + ' ' : ''}FLAGS ${encodeFlags(this.sessionFlags(c.uid, c.flags))})`);
      }
    }
    if (changed.length) this.handle!.changed(sel.name, this);
    if (modified.length > 0) {
      const ids = byUid ? modified : modified.map((u) => seqOf.get(u)!);
      return `[MODIFIED ${ids.join(',')}] conditional STORE failed for some`;
    }
    return `${cmd.command} completed`;
  }

  /** 'spam' into Junk, 'ham' out of it (not into Trash: deleting is no opinion), else null. */
  private learnKind(from: string, to: string): 'spam' | 'ham' | null {
    const use = (name: string) => this.handle!.store.getFolder(name)?.specialUse ?? null;
    const fromJunk = use(from) === '\\Junk';
    const toJunk = use(to) === '\\Junk';
    if (toJunk && !fromJunk) return 'spam';
    if (fromJunk && !toJunk && use(to) !== '\\Trash') return 'ham';
    return null;
  }

  /** Hands the messages to the learner; waits for it only a short while, never fails the command. */
  private async learnFrom(kind: 'spam' | 'ham', folder: string, uids: number[]): Promise<void> {
    const messages: Buffer[] = [];
    // one command trains on at most this many: a whole folder dragged into Junk is not a reason to stall
    for (const uid of uids.slice(0, MAX_LEARN_PER_COMMAND)) {
      const raw = this.handle!.store.getRaw(folder, uid);
      if (raw) messages.push(raw);
    }
    if (messages.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.opts.learnWaitMs ?? 1500)));
    await Promise.race([this.opts.learn!(kind, messages).catch(() => undefined), waited]);
    clearTimeout(timer);
  }

  private async copy(cmd: Command): Promise<string> {
    const byUid = cmd.command.startsWith('UID ');
    const move = cmd.command.endsWith('MOVE');
    if (move) this.writable();
    const sel = this.selected!;
    const dest = this.mailboxArg(cmd.args[1]);
    const target = this.handle!.store.folderState(dest);
    if (!target) throw new No(`no mailbox ${dest}`, 'TRYCREATE');
    const pairs = this.targets(cmd.args[0], byUid);
    if (pairs.length === 0) return `${cmd.command} completed (nothing to do)`;
    const uids = pairs.map(([, u]) => u);
    if (!move && this.opts.quota() > 0) {
      const wanted = new Set(uids);
      this.checkQuota(this.handle!.store.listMessages(sel.name).reduce((n, m) => n + (wanted.has(m.uid) ? m.size : 0), 0));
    }
    const kind = this.opts.learn ? this.learnKind(sel.name, target.name) : null;
    // read before a MOVE takes them out of this folder
    const learning = kind ? this.learnFrom(kind, sel.name, uids) : null;
    const result = move ? this.handle!.store.moveMessages(sel.name, uids, target.name) : this.handle!.store.copyMessages(sel.name, uids, target.name);
    const code = `COPYUID ${result.uidValidity} ${result.mapping.map(([s]) => s).join(',')} ${result.mapping.map(([, d]) => d).join(',')}`;
    this.handle!.changed(target.name, this);
    // Copies into the selected mailbox itself are new mail here too: EXISTS (and RECENT) follow
    if (target.name === sel.name) sel.dirty = true;
    if (move) {
      this.send(`* OK [${code}] moved`);
      this.handle!.changed(sel.name, this);
      this.reportExpunged(new Set(uids));
    }
    // the store and this session's view are settled; only the tagged reply waits for the learner
    if (learning) await learning;
    return move ? `${cmd.command} completed` : `[${code}] ${cmd.command} completed`;
  }

  private search(cmd: Command): string {
    const byUid = cmd.command === 'UID SEARCH';
    let parsed;
    try {
      parsed = parseSearch(cmd.args, { utf8: this.utf8 });
    } catch (e) {
      if (e instanceof SearchError && e.code === 'BADCHARSET') throw new No(e.message, 'BADCHARSET (US-ASCII UTF-8)');
      throw e;
    }
    if (parsed.returns?.includes('SAVE')) throw new No('SEARCHRES (SAVE) is not supported', null, 'BAD');
    const found = this.matching(parsed);
    const nums = found.map((m) => (byUid ? m.uid : m.seq));
    if (parsed.usesModseq) this.enableCondstore();
    // RFC 4731 3.2: with only MIN and/or MAX asked, the MODSEQ is that of the message(s) returned
    let reported = found;
    const r = parsed.returns;
    if (r && found.length > 0 && !r.includes('ALL') && !r.includes('COUNT') && (r.includes('MIN') || r.includes('MAX'))) {
      const byNum = [...found].sort((x, y) => (byUid ? x.uid - y.uid : x.seq - y.seq));
      reported = [...(r.includes('MIN') ? [byNum[0]!] : []), ...(r.includes('MAX') ? [byNum.at(-1)!] : [])];
    }
    const highest = parsed.usesModseq ? Math.max(0, ...reported.map((m) => m.modseq)) : null;
    this.send(parsed.returns ? formatEsearch(cmd.tag, byUid, parsed.returns, nums, highest) : formatSearch(nums, highest));
    return `${cmd.command} completed`;
  }

  /** SORT and THREAD (RFC 5256), ESORT (RFC 5267): the search as SEARCH runs it, then the order. */
  private sortOrThread(cmd: Command): string {
    let parsed;
    try {
      parsed = cmd.command.endsWith('SORT') ? parseSort(cmd.args, { utf8: this.utf8 }) : parseThread(cmd.args, { utf8: this.utf8 });
    } catch (e) {
      if (e instanceof SearchError && e.code === 'BADCHARSET') throw new No(e.message, 'BADCHARSET (US-ASCII UTF-8)');
      throw e;
    }
    const found = this.matching(parsed.search);
    if (parsed.search.usesModseq) this.enableCondstore();
    const facts = sortFacts(this.handle!.store, this.selected!.name, found, parsed);
    const highestModseq = parsed.search.usesModseq ? Math.max(0, ...found.map((m) => m.modseq)) : null;
    this.send(sortOrThreadResponse(parsed, facts, { tag: cmd.tag, byUid: cmd.command.startsWith('UID '), highestModseq }));
    return `${cmd.command} completed`;
  }

  /** The messages of the selected mailbox a parsed SEARCH matches, in sequence order. */
  private matching(parsed: SearchCommand): { uid: number; seq: number; modseq: number }[] {
    const sel = this.selected!;
    return this.searchMatches(parsed.key, { maxSeq: sel.uids.length, maxUid: sel.uids.at(-1) ?? 0 });
  }

  /**
   * A SEARCH of flags alone (UNSEEN, FLAGGED UNDELETED, ...) from the session's flag table, each
   * distinct flag string judged once: no query, no row per message. Only when no other session
   * changed the folder since this one was told (not dirty): the table then holds what the database
   * does. MODSEQ is not read here (a flags-only key has none; ESEARCH reports it only for MODSEQ keys).
   */
  private flagSearch(key: SearchKey): { uid: number; seq: number; modseq: number }[] | null {
    const sel = this.selected!;
    if (sel.dirty || !flagsOnly(key)) return null;
    const split = (flags: string) => (flags === '' ? [] : flags.split(' '));
    const table = sel.flags;
    const plain: boolean[] = [];
    const recent: boolean[] = [];
    for (let id = 0; id < table.distinct; id++) {
      const flags = split(table.flagsOf(id));
      plain.push(matchesFlags(key, flags));
      if (sel.recent.size > 0) recent.push(matchesFlags(key, [...flags, '\\Recent']));
    }
    const ids = table.idView();
    const uids = table.uidView();
    const out: { uid: number; seq: number; modseq: number }[] = [];
    for (let i = 0; i < ids.length; i++) {
      const uid = uids[i]!;
      if ((sel.recent.size > 0 && sel.recent.has(uid) ? recent : plain)[ids[i]!]) out.push({ uid, seq: i + 1, modseq: sel.modseqs.get(uid) ?? 0 });
    }
    return out;
  }

  /** The selected messages matching `key`, in sequence order: in SQL when it can, else per message. */
  private searchMatches(key: SearchKey, ctx: SearchContext): { uid: number; seq: number; modseq: number }[] {
    const sel = this.selected!;
    const store = this.handle!.store;
    const inSession = (rows: { uid: number; modseq: number }[]) =>
      rows.flatMap((r) => {
        const seq = seqOfUid(sel.uids, r.uid); // not yet announced here: not in this session's view
        return seq > 0 ? [{ uid: r.uid, seq, modseq: r.modseq }] : [];
      });
    // BODY/TEXT answers of the full-text index, once per SEARCH
    const fullText = new Map<string, ReturnType<typeof store.searchText>>();
    const lookup = (kind: 'body' | 'text', value: string) => {
      if (kind === 'text' && /[\r\n]/.test(value)) return null; // could span header and body: per message
      let r = fullText.get(`${kind} ${value}`);
      if (!r) {
        r = store.searchText(sel.name, kind, value);
        fullText.set(`${kind} ${value}`, r);
        if (r.unindexed.size > 0) store.buildFullText(); // older mail: index it for next time
      }
      return r;
    };
    const allIndexed = (kind: 'body' | 'text', value: string) => {
      const r = lookup(kind, value);
      return r && r.unindexed.size === 0 ? [...r.hits] : null;
    };
    const fromTable = this.flagSearch(key);
    if (fromTable) return fromTable;
    const exact = toSql(key, ctx, allIndexed);
    if (exact) return inSession(store.queryMessages(sel.name, exact));
    const candidates = candidateSql(key, ctx, allIndexed);
    const only = candidates ? new Set(store.queryMessages(sel.name, candidates).map((r) => r.uid)) : null;
    const summaries = new Map(store.listMessages(sel.name).map((m) => [m.uid, m] as [number, MessageSummary]));
    // read once per SEARCH, and only if a key asks: header search text, MIME structures for BODY/TEXT
    let index: ReturnType<typeof store.searchIndex> | null = null;
    let structures: ReturnType<typeof store.getMessages> | null = null;
    const shared = {
      headerIndex: () => (index ??= store.searchIndex(sel.name)),
      structures: () => (structures ??= store.getMessages(sel.name, Array.from(sel.uids))),
      fullText: (kind: 'body' | 'text', value: string, uid: number) => {
        const r = lookup(kind, value);
        return !r || r.unindexed.has(uid) ? null : r.hits.has(uid);
      },
    };
    const views = Array.from(sel.uids).flatMap((uid, i) => {
      const m = summaries.get(uid);
      if (!m || (only && !only.has(uid))) return [];
      return [searchView(store, sel.name, sel.recent.has(uid) ? { ...m, flags: this.sessionFlags(uid, m.flags) } : m, i + 1, shared)];
    });
    return runSearch(key, views, ctx);
  }

  // ---- other sessions' changes ----

  private changed(e: ChangeEvent): void {
    if (e.origin === this) return;
    if (this.selected && (e.folder === null || e.folder === this.selected.name)) this.selected.dirty = true;
    // Idle clients hear of it after the command that made the change has answered, and a burst
    // of changes becomes one update: the change's author never waits for every idler.
    if (this.idling && this.handle) queueIdleUpdate(this.handle.store, this);
  }

  /** An idle round (idle-round.ts): the change is read once for all idlers of the mailbox. */
  idleUpdate(digest: ChangeDigest): void {
    if (this.idling && !this.closed && this.handle?.store === digest.store) this.sendUpdates('IDLE', digest);
  }

  private forget(uid: number): void {
    const sel = this.selected!;
    sel.flags.delete(uid);
    sel.recent.delete(uid);
    sel.modseqs.delete(uid);
  }

  /** CONDSTORE on (RFC 7162 3.1); the first enabling command with a mailbox selected tells its HIGHESTMODSEQ. */
  private enableCondstore(): void {
    if (this.condstore) return;
    this.condstore = true;
    const state = this.selected && this.handle?.store.folderState(this.selected.name);
    if (state) this.send(`* OK [HIGHESTMODSEQ ${state.highestModseq}] modseq`);
  }

  /** EXPUNGE responses for removed UIDs, highest sequence number first so numbers stay valid. */
  private reportExpunged(gone: Set<number>): void {
    const sel = this.selected!;
    if (this.qresync) {
      // RFC 7162 3.2.10: one VANISHED response by UID instead of EXPUNGE by sequence number
      const uids = Array.from(sel.uids.filter((u) => gone.has(u)));
      if (uids.length === 0) return;
      this.send(`* VANISHED ${encodeSequenceSet(uids)}`);
      for (const u of uids) this.forget(u);
      sel.uids = sel.flags.uidView();
      return;
    }
    // highest first: removing a message renumbers only those above it, already told
    for (let i = sel.uids.length - 1; i >= 0; i--) {
      if (gone.has(sel.uids[i]!)) {
        this.send(`* ${i + 1} EXPUNGE`);
        this.forget(sel.uids[i]!);
      }
    }
    sel.uids = sel.flags.uidView();
  }

  /**
   * Tells the client what other sessions (or new mail) changed since it last heard, reading only
   * what changed (by MODSEQ), not the whole folder. EXPUNGE is not sent while a FETCH, STORE or
   * SEARCH by sequence number runs (RFC 3501 7.4.1): numbers must not shift then.
   */
  private sendUpdates(command: string, digest?: ChangeDigest): void {
    const sel = this.selected;
    if (!sel || !sel.dirty || !this.handle) return;
    const store = this.handle.store;
    const read = digest ?? new ChangeDigest(store);
    const state = read.folderState(sel.name);
    if (!state) return; // deleted or renamed away by another session; the next SELECT says so
    const mayExpunge = !['FETCH', 'STORE', 'SEARCH', 'SORT', 'THREAD'].includes(command);
    let expungePending = false;
    if (state.highestModseq > sel.expungedModseq) {
      const gone = read.vanishedSince(sel.name, sel.expungedModseq);
      if (gone.length > 0 && !mayExpunge) expungePending = gone.some((u) => sel.flags.has(u));
      else {
        if (gone.length > 0) this.reportExpunged(new Set(gone));
        sel.expungedModseq = state.highestModseq;
      }
    }
    if (state.highestModseq > sel.seenModseq) {
      const last = sel.uids.at(-1) ?? 0;
      const added: number[] = [];
      for (const m of read.changedSince(sel.name, sel.seenModseq)) {
        const flags = m.flags.join(' ');
        if (m.uid > last) {
          sel.flags.set(m.uid, flags); // UIDs only grow, so new mail goes at the end (of uids, below)
          this.noteKeywords(m.flags);
          added.push(m.uid);
        } else if (sel.flags.has(m.uid) && (sel.flags.get(m.uid) !== flags || (this.condstore && (sel.modseqs.get(m.uid) ?? 0) < m.modseq))) {
          // With CONDSTORE a change undone by another session still moved MODSEQ: the client hears of it
          sel.flags.set(m.uid, flags);
          sel.modseqs.set(m.uid, m.modseq);
          this.noteKeywords(m.flags);
          this.send(`* ${seqOfUid(sel.uids, m.uid)} FETCH (UID ${m.uid} FLAGS ${encodeFlags(this.sessionFlags(m.uid, m.flags))}${this.condstore ? ` MODSEQ (${m.modseq})` : ''})`);
        }
      }
      if (added.length > 0) {
        sel.uids = sel.flags.uidView();
        // The first session told of new mail has it \Recent (a read-write one takes it for itself)
        const from = store.recentFrom(sel.name, !sel.readOnly);
        for (const u of added) if (u >= from) sel.recent.add(u);
        this.send(`* ${sel.uids.length} EXISTS\r\n* ${sel.recent.size} RECENT`); // one write, not two: 500 idlers hear of it at once
      }
      sel.seenModseq = state.highestModseq;
    }
    sel.dirty = expungePending;
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.deadlines.stop();
    // A command still running keeps the mailbox open until it ends (pump releases it then): the
    // last session closing must not close the database under its FETCH or STORE.
    if (!this.busy) this.releaseMailbox();
    this.opts.onClose();
  }

  private releaseMailbox(): void {
    this.handle?.events.off('change', this.onChange);
    this.handle?.release();
    this.handle = null;
  }

  /** What SessionDeadlines looks at and does. */
  get loggedIn(): boolean {
    return this.state !== 'notauth';
  }
  get readingCommand(): { literalSize: number } | null {
    return this.closed || this.busy || this.reader.idle ? null : { literalSize: this.reader.literalSize };
  }
  /** A deadline passed: BYE, and the connection goes even if the client never closes its end. */
  cut(text: string): void {
    if (this.closed) return;
    this.opts.log.info('session cut', { reason: text });
    this.send(`* BYE ${text}`);
    this.out.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** For a server past its drain: the connection goes now. */
  destroy(): void {
    this.socket.destroy();
  }

  /** For a draining server: say goodbye now unless a command is running. */
  bye(): void {
    if (this.closed) return;
    this.send('* BYE server shutting down');
    this.out.end();
  }
}

interface DeadlineLimits {
  loginMs: number;
  commandMs: number;
  /** One IDLE, from its continuation to DONE. */
  idleMs?: number;
}

/**
 * A session's deadlines that input does not extend (a byte every few seconds restarts the idle
 * timer, not these): logging in within loginMs of connecting, and each command line with its
 * literals within commandMs of its first octet, plus a second per 64 KiB of literal announced;
 * an AUTHENTICATE's continuations within commandMs together; one IDLE within idleMs.
 */
class SessionDeadlines {
  private login: NodeJS.Timeout | null = null;
  private command: NodeJS.Timeout | null = null;
  private commandStarted = 0;
  private idle: NodeJS.Timeout | null = null;
  private exchange: NodeJS.Timeout | null = null;
  private exchangeStartedAt = 0;

  constructor(
    private readonly session: ImapSession,
    private readonly limits: DeadlineLimits | null,
  ) {
    if (!limits) return;
    this.login = setTimeout(() => {
      if (!session.loggedIn) session.cut(`login not completed within ${limits.loginMs / 1000} s`);
    }, limits.loginMs);
    this.login.unref();
  }

  /** After each read of the command reader: `idle` when no command is partly read. */
  commandProgress(idle: boolean): void {
    if (!this.limits) return;
    if (idle) return this.clearCommand();
    if (this.command) return;
    this.commandStarted = Date.now();
    this.armCommand(this.limits.commandMs);
  }

  private armCommand(ms: number): void {
    this.command = setTimeout(() => {
      this.command = null;
      const reading = this.session.readingCommand;
      if (!reading) return; // done, or the server is the slow one (commandProgress re-arms)
      const due = this.commandStarted + this.limits!.commandMs + Math.ceil(reading.literalSize / 65536) * 1000;
      if (Date.now() < due) return this.armCommand(due - Date.now());
      this.session.cut(`command not completed within ${(due - this.commandStarted) / 1000} s`);
    }, ms);
    this.command.unref();
  }

  /** RFC 2177 lets a server log off a client whose IDLE outlasts its timeout; re-IDLE is the client's job. */
  idleStarted(): void {
    const ms = this.limits?.idleMs;
    if (!ms) return;
    this.idleEnded();
    this.idle = setTimeout(() => {
      this.idle = null;
      this.session.cut(`IDLE not renewed within ${ms / 1000} s`);
    }, ms);
    this.idle.unref();
  }

  idleEnded(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
  }

  /** A SASL exchange waits for the client: one deadline for all its continuations together. */
  exchangeStarted(): void {
    if (!this.limits) return;
    const now = Date.now();
    if (this.exchangeStartedAt === 0) this.exchangeStartedAt = now;
    const ms = this.limits.commandMs;
    this.exchange = setTimeout(() => {
      this.exchange = null;
      this.session.cut(`authentication not completed within ${ms / 1000} s`);
    }, Math.max(0, this.exchangeStartedAt + ms - now));
    this.exchange.unref();
  }

  /** The client answered one prompt; the time it took stays counted if another prompt follows. */
  exchangeEnded(): void {
    if (this.exchange) clearTimeout(this.exchange);
    this.exchange = null;
  }

  /** The AUTHENTICATE command ended (whatever the outcome). */
  exchangeDone(): void {
    this.exchangeEnded();
    this.exchangeStartedAt = 0;
  }

  private clearCommand(): void {
    if (this.command) clearTimeout(this.command);
    this.command = null;
  }

  stop(): void {
    this.clearCommand();
    this.idleEnded();
    this.exchangeEnded();
    if (this.login) clearTimeout(this.login);
  }
}
