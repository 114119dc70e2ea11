// fe.yml: the typed model, its defaults, and validation that points at file:line and the field.
import { isIP } from 'node:net';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair } from 'yaml';
import { validate as validateCron } from 'node-cron';
import { isRecipient } from '../backup/age.js';
import { aliasLocalPart, asciiDomain, didYouMean, mailboxAddress, NameError, splitAddress } from './names.js';

export interface AliasConfig {
  forward: string[];
  mailbox: boolean;
  /** Other addresses this mailbox may send as: exact addresses or "*@domain", all in served domains. */
  sendAs: string[];
  /** This mailbox's own sending limits, where they differ from the global `limits:` (absent: the global ones). */
  limits?: SendLimitOverrides;
  /** `encrypt:` as written on the alias (absent: the domain's, then the defaults). */
  encrypt?: EncryptOptions;
  /** Per-alias protection overrides (`protection: {viruses: off}`); wins over the domain's. */
  protection?: LayerSwitches;
  /** `encrypt_outbound: wkd`: mail this mailbox sends is encrypted when every outside recipient publishes a key (WKD). */
  encryptOutbound?: 'wkd';
}

/** Sending limits one mailbox may set for itself in fe.yml (`limits:` on the alias). */
export interface SendLimitOverrides {
  sendMessagesPerHour?: number;
  sendRecipientsPerDay?: number;
  sendRecipientsPerMessage?: number;
}

/** How mail stored under an OpenPGP key is protected (README: OpenPGP). */
export interface EncryptOptions {
  /** RFC 9788: keep the real Subject outside, or show "[...]" and keep it only inside. */
  subject?: 'keep' | 'hide';
}

export type SaveSent = 'auto' | 'never';

export interface DkimConfig {
  /** The selectors that sign, in file order: none, one, or one RSA and one Ed25519 (fe config check reads the key types). */
  active: string[];
  published: string[];
}

export interface DomainConfig {
  name: string; // ASCII form, the key fe compares with
  key: string; // the key as written in fe.yml (may be Unicode)
  aliases: Map<string, AliasConfig>; // canonical local part -> alias
  aliasKeys: Map<string, string>; // canonical local part -> key as written
  dkim: DkimConfig;
  /** Days the queue keeps delivery records of this domain's mail (absent: queue.retention_days). */
  retentionDays?: number;
  encrypt?: EncryptOptions;
  /** Per-domain protection overrides; absent layers follow the top-level `protection:` block. */
  protection?: LayerSwitches;
}

/** The content-protection layers the MX runs before it answers DATA (src/protection). */
export const LAYER_NAMES = ['executables', 'viruses', 'spam', 'phishing', 'greylist', 'dnsbl'] as const;
export type LayerName = (typeof LAYER_NAMES)[number];
/** on/off per layer, where a domain or alias says so. */
export type LayerSwitches = Partial<Record<LayerName, boolean>>;
/** open: an engine that is down or slow skips the layer (WARN); closed: the message is deferred (451). */
export type FailPolicy = 'open' | 'closed';
/** clamd's socket: a unix socket path or a TCP host and port. */
export type EngineAddress = { path: string } | { host: string; port: number };

export interface LayerSettings {
  enabled: boolean;
  fail: FailPolicy;
}

export interface ProtectionConfig {
  /** The whole pipeline's budget per message; a layer still running then counts as failed. */
  timeoutSeconds: number;
  executables: LayerSettings & {
    /** Refuse archives (zip, 7z, rar) that encrypt their listing or their entries, so what they hold cannot be seen. */
    rejectEncrypted: boolean;
    /** How deep archives inside archives are opened; deeper is refused. */
    archiveDepth: number;
  };
  viruses: LayerSettings & {
    clamd: EngineAddress;
    /** At most this much of each message is streamed (clamd's StreamMaxLength must be at least this). */
    maxSize: number;
  };
  spam: LayerSettings & {
    rspamdUrl: string;
    /** rspamd's controller, for learning from moves into and out of Junk. */
    controllerUrl: string;
    /** Moves into/out of Junk over IMAP train rspamd. */
    learn: boolean;
    /** What rspamd's greylist / soft reject becomes: accept, or defer (451). */
    greylist: 'accept' | 'defer';
    /** fe's own thresholds on rspamd's score; unset: rspamd's action decides. */
    rejectScore?: number;
    junkScore?: number;
  };
  phishing: LayerSettings & { junkScore: number; rejectScore: number };
  /** Off by default: it delays every new correspondent's first message by `delaySeconds`. */
  greylist: LayerSettings & { delaySeconds: number };
  /** Blocklist zones for the client IP; none by default (and then the layer is off). */
  dnsbl: LayerSettings & { zones: string[] };
}

/** Debian's clamav-daemon socket, rspamd's normal worker on loopback. */
export const DEFAULT_CLAMD_SOCKET = '/run/clamav/clamd.ctl';
export const DEFAULT_RSPAMD_URL = 'http://127.0.0.1:11333';
export const DEFAULT_RSPAMD_CONTROLLER = 'http://127.0.0.1:11334';

export interface PgpKeyConfig {
  address: string;
  key: string; // as written
  fingerprint: string;
  armored: string;
}

export type MtaStsMode = 'enforce' | 'testing' | 'none';

export interface Ports {
  smtp: number | null;
  submission: number | null;
  submissions: number | null;
  imap: number | null;
  imaps: number | null;
  pop3: number | null;
  pop3s: number | null;
}

export interface Listen {
  host: string;
  port: number;
}

export type DaemonName = 'mx' | 'submission' | 'submissions' | 'imap' | 'imaps' | 'pop3' | 'pop3s' | 'http' | 'https';

export interface FeConfig {
  file: string;
  listen: Record<DaemonName, Listen | null>;
  tls: { cert: string; key: string } | null; // absolute paths
  /** Certificates from an ACME CA, kept by the daemon that listens on listen.http. */
  acme: { directory: string | null; email: string | null; caFile: string | null };
  /** Encrypted backups: on when there is at least one recipient (an age public key). */
  backup: { dir: string; recipients: string[]; schedule: string; keep: number };
  dns: { servers: string[] }; // empty: the system's resolvers
  outbound: { port: number; mtaStsPort: number; wkdPort: number };
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Password logins without TLS from 127.0.0.1/::1 (fe dev only; never on a real host). */
  loopbackPlaintextAuth: boolean;
  hostname: string; // ASCII
  dataDir: string; // absolute
  admin: string | null;
  /** The legal notice fe init writes to /etc/issue and /etc/issue.net; null: fe init's default. */
  banner: string | null;
  mtaSts: { mode: MtaStsMode; maxAgeSeconds: number };
  limits: {
    aliasCreationsPerDomainPerDay: number;
    messageSize: number;
    mailboxQuota: number;
    connectionsPerIp: number;
    imapConnectionsPerIp: number;
    messagesPerIpPerMinute: number;
    idleTimeoutSeconds: number;
    /** Folders one mailbox may hold (CREATE, RENAME, import); keeps LIST and the folder table bounded. */
    foldersPerMailbox: number;
    /** Connections each daemon (MX, submission, IMAP, POP3) holds at once; the last tenth is kept for networks holding none. */
    maxConnections: number;
    /** Connections one /24 (IPv4) or /64 (IPv6) may hold on each daemon. */
    connectionsPerPrefix: number;
    /** SMTP: from the greeting to EHLO/HELO. */
    greetingTimeoutSeconds: number;
    /** SMTP: from DATA to the final dot. */
    dataTimeoutSeconds: number;
    /** SMTP: a whole session. */
    sessionTimeoutSeconds: number;
    /** IMAP, POP3: from connecting to a successful login. */
    loginTimeoutSeconds: number;
    /** IMAP, POP3: from a command's first octet to its last (IMAP literals get one more second per 64 KiB). */
    commandTimeoutSeconds: number;
    /** IMAP: how long one IDLE may run before the session is ended (RFC 2177: clients re-issue IDLE within 29 minutes). */
    imapIdleTimeoutSeconds: number;
    /** On SIGTERM: how long sessions under way may finish before the rest are closed and the process exits. */
    shutdownDrainSeconds: number;
    /** Per mailbox, for mail it sends through submission. */
    sendMessagesPerHour: number;
    sendRecipientsPerDay: number;
    sendRecipientsPerMessage: number;
  };
  /** Submission: where the sender's copy goes (see README: Sending). */
  submission: { saveSent: SaveSent };
  /** The outbound queue: when to give up, when to tell the sender of a delay, how long to keep records. */
  queue: {
    giveUpAfterSeconds: number;
    delayNoticeAfterSeconds: number;
    retentionDays: number;
    /** Daily TLS-RPT reports (RFC 8460) to domains that ask for them in _smtp._tls. */
    tlsReports: boolean;
    /** organization-name in those reports; null: the host name. */
    tlsReportOrganization: string | null;
  };
  ports: Ports;
  /** Content protection (README: Content protection): each layer on unless turned off. */
  protection: ProtectionConfig;
  domains: Map<string, DomainConfig>; // ASCII domain -> config
  keys: Map<string, PgpKeyConfig>; // canonical address -> key
}

export const DEFAULT_DATA_DIR = '/var/lib/fe';
/** Outside the data volume on purpose: backups are encrypted, and should outlive a broken volume. */
export const DEFAULT_BACKUP_DIR = '/var/backups/fe';
/** Every night at 03:30, host time (node-cron syntax: minute hour day-of-month month day-of-week). */
export const DEFAULT_BACKUP_SCHEDULE = '30 3 * * *';
export const DEFAULT_PORTS: Ports = { smtp: 25, submission: 587, submissions: 465, imap: null, imaps: 993, pop3: null, pop3s: 995 };

export interface Problem {
  file: string;
  line: number;
  col: number;
  field: string;
  message: string;
  severity: 'error' | 'warning';
}

export function formatProblem(p: Problem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.col}` : p.file;
  const field = p.field ? ` ${p.field}:` : '';
  return `${where}:${field} ${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`;
}

export class ConfigError extends Error {
  constructor(readonly problems: Problem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

/** Whether some alias forwards to `address` (compared case-insensitively). */
export function isForwardTarget(config: FeConfig, address: string): boolean {
  const wanted = address.toLowerCase();
  for (const d of config.domains.values()) for (const a of d.aliases.values()) if (a.forward.some((t) => t.toLowerCase() === wanted)) return true;
  return false;
}

/** Parses and validates. Returns the model and the document (for editing), or the problems found. */
export function parseConfig(text: string, file: string): { config: FeConfig | null; doc: Document; problems: Problem[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const v = new Validator(file, lines);
  for (const e of doc.errors) {
    const pos = lines.linePos(e.pos[0]);
    v.problems.push({ file, line: pos.line, col: pos.col, field: '', message: `YAML syntax: ${e.message.split('\n')[0]}`, severity: 'error' });
  }
  if (doc.errors.length > 0) return { config: null, doc, problems: v.problems };
  const config = v.root(doc.contents, file);
  const errors = v.problems.filter((p) => p.severity === 'error');
  return { config: errors.length === 0 ? config : null, doc, problems: v.problems };
}

/**
 * Why `text` cannot be the login banner, or null. getty expands backslash escapes in /etc/issue,
 * and ansible would evaluate template markers in it; control characters would reach terminals.
 */
export function bannerProblem(text: string): string | null {
  const t = text.trim();
  if (t === '') return 'is empty (leave it out for the default notice)';
  if (t.length > 2000) return 'is longer than 2000 characters';
  if (t.split('\n').length > 20) return 'has more than 20 lines';
  if (t.includes('\\')) return 'contains a backslash (getty reads it as an escape in /etc/issue)';
  if (/\{\{|\{%|\{#/.test(t)) return 'contains {{, {% or {# (template markers)';
  if (/[\x00-\x09\x0b-\x1f\x7f]/.test(t)) return 'contains a tab or a control character';
  return null;
}

const TOP_KEYS = ['hostname', 'data_dir', 'admin', 'banner', 'mta_sts', 'limits', 'ports', 'listen', 'tls', 'acme', 'backup', 'dns', 'outbound', 'submission', 'queue', 'protection', 'log_level', 'loopback_plaintext_auth', 'domains', 'keys'] as const;
const LISTEN_KEYS = ['mx', 'submission', 'submissions', 'imap', 'imaps', 'pop3', 'pop3s', 'http', 'https'] as const;
const SUBMISSION_KEYS = ['save_sent'] as const;
const QUEUE_KEYS = ['give_up_after', 'delay_notice_after', 'retention_days', 'tls_reports', 'tls_report_organization'] as const;
const ACME_KEYS = ['directory', 'email', 'ca_file'] as const;
const BACKUP_KEYS = ['to', 'recipients', 'schedule', 'keep'] as const;
/** Let's Encrypt's production directory (RFC 8555 7.1.1): the default CA for `acme.directory`. */
export const DEFAULT_ACME_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
const TLS_KEYS = ['cert', 'key'] as const;
const DNS_KEYS = ['servers'] as const;
const OUTBOUND_KEYS = ['port', 'mta_sts_port', 'wkd_port'] as const;
const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
// The STARTTLS ports (143, 110) are off unless asked for; the implicit-TLS ones (RFC 8314) are on.
export const DEFAULT_LISTEN: Record<DaemonName, Listen | null> = {
  mx: { host: '0.0.0.0', port: 25 },
  submission: { host: '0.0.0.0', port: 587 },
  submissions: { host: '0.0.0.0', port: 465 },
  imap: null,
  imaps: { host: '0.0.0.0', port: 993 },
  pop3: null,
  pop3s: { host: '0.0.0.0', port: 995 },
  // The web daemon (ACME HTTP-01 on 80, the MTA-STS policy on 443) is on where fe init turns it on.
  http: null,
  https: null,
};
const DOMAIN_KEYS = ['aliases', 'dkim', 'retention_days', 'encrypt', 'protection'] as const;
const ALIAS_KEYS = ['forward', 'mailbox', 'send_as', 'limits', 'encrypt', 'encrypt_outbound', 'protection'] as const;
const ALIAS_LIMIT_KEYS = ['send_messages_per_hour', 'send_recipients_per_day', 'send_recipients_per_message'] as const;
const ENCRYPT_KEYS = ['subject'] as const;
const PROTECTION_KEYS = ['timeout', ...LAYER_NAMES] as const;
const LAYER_KEYS: Record<LayerName, readonly string[]> = {
  executables: ['enabled', 'fail', 'encrypted_archives', 'archive_depth'],
  viruses: ['enabled', 'fail', 'clamd', 'max_size'],
  spam: ['enabled', 'fail', 'rspamd', 'controller', 'learn', 'greylist', 'reject_score', 'junk_score'],
  phishing: ['enabled', 'fail', 'junk_score', 'reject_score'],
  greylist: ['enabled', 'fail', 'delay'],
  dnsbl: ['enabled', 'fail', 'zones'],
};
const DKIM_KEYS = ['active', 'published'] as const;
const KEY_KEYS = ['fingerprint', 'key'] as const;
const MTA_STS_KEYS = ['mode', 'max_age'] as const;
const LIMIT_KEYS = [
  'alias_creations_per_domain_per_day',
  'message_size',
  'mailbox_quota',
  'connections_per_ip',
  'imap_connections_per_ip',
  'messages_per_ip_per_minute',
  'idle_timeout_seconds',
  'folders_per_mailbox',
  'max_connections',
  'connections_per_prefix',
  'greeting_timeout_seconds',
  'data_timeout_seconds',
  'session_timeout_seconds',
  'login_timeout_seconds',
  'command_timeout_seconds',
  'imap_idle_timeout_seconds',
  'shutdown_drain_seconds',
  'send_messages_per_hour',
  'send_recipients_per_day',
  'send_recipients_per_message',
] as const;
const PORT_KEYS = Object.keys(DEFAULT_PORTS);
const SELECTOR = /^[a-z0-9][a-z0-9-]{0,62}$/;

class Validator {
  problems: Problem[] = [];
  constructor(
    private file: string,
    private lines: LineCounter,
  ) {}

  private fail(node: Node | Pair | null | undefined, field: string, message: string, severity: Problem['severity'] = 'error'): void {
    const range = node && 'range' in node ? node.range : node && 'key' in node ? (node.key as Node | null)?.range : undefined;
    const pos = range ? this.lines.linePos(range[0]) : { line: 0, col: 0 };
    this.problems.push({ file: this.file, line: pos.line, col: pos.col, field, message, severity });
  }

  /** Entries of a mapping, flagging keys not in `known` (with a did-you-mean). */
  private entries(node: unknown, field: string, known: readonly string[] | null): [string, Node | null, Pair][] {
    if (node === null || node === undefined || (isScalar(node) && node.value === null)) return [];
    if (!isMap(node)) {
      this.fail(node as Node, field, 'must be a mapping (key: value lines)');
      return [];
    }
    const out: [string, Node | null, Pair][] = [];
    for (const pair of node.items) {
      const keyNode = pair.key as Node | null;
      if (!isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number')) {
        this.fail(keyNode, field, 'keys must be plain names');
        continue;
      }
      const key = String(keyNode.value);
      if (known && !known.includes(key)) {
        const hint = didYouMean(key, known);
        this.fail(keyNode, field ? `${field}.${key}` : key, `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ''}; known keys: ${known.join(', ')}`);
        continue;
      }
      out.push([key, (pair.value as Node | null) ?? null, pair as Pair]);
    }
    return out;
  }

  private string(node: Node | null, field: string): string | undefined {
    if (isScalar(node) && typeof node.value === 'string' && node.value.trim() !== '') return node.value;
    this.fail(node, field, 'must be a non-empty string');
    return undefined;
  }

  private integer(node: Node | null, field: string, min: number, max: number): number | undefined {
    if (isScalar(node) && typeof node.value === 'number' && Number.isInteger(node.value) && node.value >= min && node.value <= max) return node.value;
    this.fail(node, field, `must be a whole number from ${min} to ${max}`);
    return undefined;
  }

  /** A duration: whole seconds, or a string like "90m", "4h", "5d" (s, m, h, d). */
  private duration(node: Node | null, field: string, minSeconds: number, maxSeconds: number): number | undefined {
    if (isScalar(node) && typeof node.value === 'string') {
      const m = /^\s*(\d+)\s*([smhd])\s*$/i.exec(node.value);
      const n = m ? Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2]!.toLowerCase() as 's' | 'm' | 'h' | 'd'] : NaN;
      if (Number.isSafeInteger(n) && n >= minSeconds && n <= maxSeconds) return n;
      this.fail(node, field, `must be a duration such as 90m, 4h or 5d (from ${minSeconds} to ${maxSeconds} seconds)`);
      return undefined;
    }
    return this.integer(node, field, minSeconds, maxSeconds);
  }

  /** A size in octets: a whole number, or a string like "25M" / "10G" (binary units, K/M/G/T). */
  private size(node: Node | null, field: string, min: number, max: number): number | undefined {
    if (isScalar(node) && typeof node.value === 'string') {
      const m = /^\s*(\d+)\s*([KMGT])i?B?\s*$/i.exec(node.value);
      const n = m ? Number(m[1]) * 1024 ** ('KMGT'.indexOf(m[2]!.toUpperCase()) + 1) : NaN;
      if (Number.isSafeInteger(n) && n >= min && n <= max) return n;
      this.fail(node, field, `must be a size such as 25M or 10G (from ${min} to ${max} octets)`);
      return undefined;
    }
    return this.integer(node, field, min, max);
  }

  private bool(node: Node | null, field: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    this.fail(node, field, 'must be true or false');
    return undefined;
  }

  /** on/off, or YAML's true/false (YAML 1.2 reads on and off as strings). */
  private onOff(node: Node | null, field: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    if (isScalar(node) && typeof node.value === 'string' && /^(on|off)$/i.test(node.value.trim())) return node.value.trim().toLowerCase() === 'on';
    this.fail(node, field, 'must be on or off');
    return undefined;
  }

  private named<T>(node: Node | null, field: string, parse: (s: string) => T): T | undefined {
    const s = this.string(node, field);
    if (s === undefined) return undefined;
    try {
      return parse(s);
    } catch (e) {
      if (e instanceof NameError) this.fail(node, field, e.message);
      else throw e;
      return undefined;
    }
  }

  private stringList(node: Node | null, field: string): { value: string; node: Node | null }[] {
    if (isSeq(node)) return node.items.map((n, i) => ({ value: this.string(n as Node, `${field}[${i}]`) ?? '', node: n as Node }));
    if (isScalar(node) && typeof node.value === 'string') return [{ value: node.value, node }];
    this.fail(node, field, 'must be a list of strings');
    return [];
  }

  root(node: unknown, file: string): FeConfig {
    const config: FeConfig = {
      file,
      hostname: '',
      dataDir: DEFAULT_DATA_DIR,
      admin: null,
      banner: null,
      mtaSts: { mode: 'testing', maxAgeSeconds: 604800 },
      limits: {
        aliasCreationsPerDomainPerDay: 50,
        messageSize: 25 * 1024 * 1024,
        mailboxQuota: 0,
        connectionsPerIp: 10,
        imapConnectionsPerIp: 50,
        messagesPerIpPerMinute: 60,
        idleTimeoutSeconds: 300,
        foldersPerMailbox: 5000,
        maxConnections: 1000,
        connectionsPerPrefix: 100,
        greetingTimeoutSeconds: 60,
        dataTimeoutSeconds: 600,
        sessionTimeoutSeconds: 1800,
        loginTimeoutSeconds: 120,
        commandTimeoutSeconds: 60,
        imapIdleTimeoutSeconds: 1800,
        shutdownDrainSeconds: 30,
        sendMessagesPerHour: 200,
        sendRecipientsPerDay: 2000,
        sendRecipientsPerMessage: 100,
      },
      submission: { saveSent: 'auto' },
      // Postfix's maximal_queue_lifetime (5 d) and delay_warning_time (4 h, off by default there).
      queue: { giveUpAfterSeconds: 5 * 86400, delayNoticeAfterSeconds: 4 * 3600, retentionDays: 30, tlsReports: true, tlsReportOrganization: null },
      listen: { ...DEFAULT_LISTEN },
      tls: null,
      acme: { directory: DEFAULT_ACME_DIRECTORY, email: null, caFile: null },
      backup: { dir: DEFAULT_BACKUP_DIR, recipients: [], schedule: DEFAULT_BACKUP_SCHEDULE, keep: 14 },
      dns: { servers: [] },
      outbound: { port: 25, mtaStsPort: 443, wkdPort: 443 },
      logLevel: 'info',
      loopbackPlaintextAuth: false,
      ports: { ...DEFAULT_PORTS },
      protection: {
        timeoutSeconds: 30,
        executables: { enabled: true, fail: 'closed', rejectEncrypted: true, archiveDepth: 3 },
        viruses: { enabled: true, fail: 'open', clamd: { path: DEFAULT_CLAMD_SOCKET }, maxSize: 25 * 1024 * 1024 },
        spam: { enabled: true, fail: 'open', rspamdUrl: DEFAULT_RSPAMD_URL, controllerUrl: DEFAULT_RSPAMD_CONTROLLER, learn: true, greylist: 'accept' },
        phishing: { enabled: true, fail: 'open', junkScore: 4, rejectScore: 12 },
        greylist: { enabled: false, fail: 'open', delaySeconds: 300 },
        dnsbl: { enabled: false, fail: 'open', zones: [] },
      },
      domains: new Map(),
      keys: new Map(),
    };
    if (node === null || node === undefined || (isScalar(node) && node.value === null)) {
      this.fail(null, '', 'the file is empty; it needs at least "hostname:" (see templates/fe.yml)');
      return config;
    }
    const seen = new Set<string>();
    for (const [key, value] of this.entries(node, '', TOP_KEYS)) {
      seen.add(key);
      switch (key) {
        case 'hostname':
          config.hostname = this.named(value, key, asciiDomain) ?? '';
          break;
        case 'data_dir': {
          const dir = this.string(value, key);
          if (dir !== undefined) config.dataDir = path.resolve(path.dirname(path.resolve(file)), dir);
          break;
        }
        case 'admin':
          if (!(isScalar(value) && value.value === null)) config.admin = this.named(value, key, mailboxAddress) ?? null;
          break;
        case 'banner': {
          if (isScalar(value) && value.value === null) break;
          const text = this.string(value, key);
          if (text === undefined) break;
          const why = bannerProblem(text);
          if (why) this.fail(value, key, why);
          else config.banner = text.trim();
          break;
        }
        case 'mta_sts':
          for (const [k, v] of this.entries(value, key, MTA_STS_KEYS)) {
            if (k === 'mode') {
              const mode = this.string(v, `${key}.${k}`);
              if (mode === 'enforce' || mode === 'testing' || mode === 'none') config.mtaSts.mode = mode;
              else if (mode !== undefined) this.fail(v, `${key}.${k}`, 'must be one of enforce, testing, none');
            } else config.mtaSts.maxAgeSeconds = this.integer(v, `${key}.${k}`, 86400, 31557600) ?? config.mtaSts.maxAgeSeconds;
          }
          break;
        case 'limits':
          for (const [k, v] of this.entries(value, key, LIMIT_KEYS)) {
            const f = `${key}.${k}`;
            if (k === 'alias_creations_per_domain_per_day') config.limits.aliasCreationsPerDomainPerDay = this.integer(v, f, 0, 1_000_000) ?? 50;
            else if (k === 'message_size') config.limits.messageSize = this.size(v, f, 1024, 1024 * 1024 * 1024) ?? config.limits.messageSize;
            else if (k === 'mailbox_quota') config.limits.mailboxQuota = this.size(v, f, 0, 2 ** 50) ?? config.limits.mailboxQuota;
            else if (k === 'imap_connections_per_ip') config.limits.imapConnectionsPerIp = this.integer(v, f, 1, 100_000) ?? config.limits.imapConnectionsPerIp;
            else if (k === 'folders_per_mailbox') config.limits.foldersPerMailbox = this.integer(v, f, 10, 1_000_000) ?? config.limits.foldersPerMailbox;
            else if (k === 'connections_per_ip') config.limits.connectionsPerIp = this.integer(v, f, 1, 100_000) ?? config.limits.connectionsPerIp;
            else if (k === 'messages_per_ip_per_minute') config.limits.messagesPerIpPerMinute = this.integer(v, f, 1, 1_000_000) ?? config.limits.messagesPerIpPerMinute;
            else if (k === 'max_connections') config.limits.maxConnections = this.integer(v, f, 10, 1_000_000) ?? config.limits.maxConnections;
            else if (k === 'connections_per_prefix') config.limits.connectionsPerPrefix = this.integer(v, f, 1, 1_000_000) ?? config.limits.connectionsPerPrefix;
            else if (k === 'greeting_timeout_seconds') config.limits.greetingTimeoutSeconds = this.integer(v, f, 1, 3600) ?? config.limits.greetingTimeoutSeconds;
            else if (k === 'data_timeout_seconds') config.limits.dataTimeoutSeconds = this.integer(v, f, 1, 86_400) ?? config.limits.dataTimeoutSeconds;
            else if (k === 'session_timeout_seconds') config.limits.sessionTimeoutSeconds = this.integer(v, f, 1, 86_400) ?? config.limits.sessionTimeoutSeconds;
            else if (k === 'login_timeout_seconds') config.limits.loginTimeoutSeconds = this.integer(v, f, 1, 3600) ?? config.limits.loginTimeoutSeconds;
            else if (k === 'command_timeout_seconds') config.limits.commandTimeoutSeconds = this.integer(v, f, 1, 3600) ?? config.limits.commandTimeoutSeconds;
            else if (k === 'imap_idle_timeout_seconds') config.limits.imapIdleTimeoutSeconds = this.integer(v, f, 1, 86_400) ?? config.limits.imapIdleTimeoutSeconds;
            else if (k === 'shutdown_drain_seconds') config.limits.shutdownDrainSeconds = this.integer(v, f, 0, 3600) ?? config.limits.shutdownDrainSeconds;
            else if (k === 'send_messages_per_hour') config.limits.sendMessagesPerHour = this.integer(v, f, 1, 1_000_000) ?? config.limits.sendMessagesPerHour;
            else if (k === 'send_recipients_per_day') config.limits.sendRecipientsPerDay = this.integer(v, f, 1, 10_000_000) ?? config.limits.sendRecipientsPerDay;
            else if (k === 'send_recipients_per_message') config.limits.sendRecipientsPerMessage = this.integer(v, f, 1, 1000) ?? config.limits.sendRecipientsPerMessage;
            else config.limits.idleTimeoutSeconds = this.integer(v, f, 1, 3600) ?? config.limits.idleTimeoutSeconds;
          }
          break;
        case 'listen':
          for (const [k, v] of this.entries(value, key, LISTEN_KEYS)) config.listen[k as DaemonName] = this.listen(v, `${key}.${k}`);
          break;
        case 'tls': {
          const paths: Partial<Record<'cert' | 'key', string>> = {};
          for (const [k, v] of this.entries(value, key, TLS_KEYS)) {
            const s = this.string(v, `${key}.${k}`);
            if (s !== undefined) paths[k as 'cert' | 'key'] = path.resolve(path.dirname(path.resolve(file)), s);
          }
          if (paths.cert && paths.key) config.tls = { cert: paths.cert, key: paths.key };
          else if (isMap(value)) this.fail(value, key, 'needs both "cert" and "key" (PEM file paths)');
          break;
        }
        case 'acme':
          for (const [k, v] of this.entries(value, key, ACME_KEYS)) {
            const f = `${key}.${k}`;
            if (k === 'directory') {
              if (isScalar(v) && (v.value === false || v.value === 'off' || v.value === null)) config.acme.directory = null;
              else {
                const url = this.string(v, f);
                if (url !== undefined && !/^https:\/\/[^\s/]+\/\S*$/.test(url)) this.fail(v, f, `"${url}" is not an https:// URL of an ACME directory (or off)`);
                else if (url !== undefined) config.acme.directory = url;
              }
            } else if (k === 'email') {
              if (!(isScalar(v) && v.value === null)) config.acme.email = this.named(v, f, mailboxAddress) ?? null;
            } else {
              const s = this.string(v, f);
              if (s !== undefined) config.acme.caFile = path.resolve(path.dirname(path.resolve(file)), s);
            }
          }
          break;
        case 'backup':
          for (const [k, v] of this.entries(value, key, BACKUP_KEYS)) {
            const f = `${key}.${k}`;
            if (k === 'to') {
              const s = this.string(v, f);
              if (s !== undefined) config.backup.dir = path.resolve(path.dirname(path.resolve(file)), s);
            } else if (k === 'recipients') {
              config.backup.recipients = this.stringList(v, f).flatMap(({ value: s, node: n }) => {
                if (isRecipient(s.trim())) return [s.trim()];
                this.fail(n, f, `"${s}" is not an age public key (age1…); \`fe backup key\` makes one`);
                return [];
              });
            } else if (k === 'schedule') {
              const s = this.string(v, f);
              if (s !== undefined && !validateCron(s)) this.fail(v, f, `"${s}" is not a cron expression ("minute hour day month weekday", e.g. "30 3 * * *")`);
              else if (s !== undefined) config.backup.schedule = s;
            } else config.backup.keep = this.integer(v, f, 1, 10_000) ?? config.backup.keep;
          }
          break;
        case 'dns':
          for (const [k, v] of this.entries(value, key, DNS_KEYS)) {
            config.dns.servers = this.stringList(v, `${key}.${k}`).flatMap(({ value: s, node: n }) => {
              const hp = this.hostPort(s, 53);
              if (!hp) this.fail(n, `${key}.${k}`, `"${s}" is not an IP address with an optional :port`);
              return hp ? [s] : [];
            });
          }
          break;
        case 'outbound':
          for (const [k, v] of this.entries(value, key, OUTBOUND_KEYS)) {
            const port = this.integer(v, `${key}.${k}`, 1, 65535);
            if (port === undefined) continue;
            if (k === 'port') config.outbound.port = port;
            else if (k === 'mta_sts_port') config.outbound.mtaStsPort = port; // where MTA-STS policies are fetched (443; tests change it)
            else config.outbound.wkdPort = port; // where correspondents' WKD keys are fetched (443; tests change it)
          }
          break;
        case 'submission':
          for (const [k, v] of this.entries(value, key, SUBMISSION_KEYS)) {
            const f = `${key}.${k}`;
            const s = this.string(v, f);
            if (s === 'auto' || s === 'never') config.submission.saveSent = s;
            else if (s !== undefined) this.fail(v, f, 'must be auto or never');
          }
          break;
        case 'queue':
          for (const [k, v] of this.entries(value, key, QUEUE_KEYS)) {
            const f = `${key}.${k}`;
            if (k === 'give_up_after') config.queue.giveUpAfterSeconds = this.duration(v, f, 60, 30 * 86400) ?? config.queue.giveUpAfterSeconds;
            else if (k === 'delay_notice_after') config.queue.delayNoticeAfterSeconds = this.duration(v, f, 0, 30 * 86400) ?? config.queue.delayNoticeAfterSeconds;
            else if (k === 'retention_days') config.queue.retentionDays = this.integer(v, f, 0, 3650) ?? config.queue.retentionDays;
            else if (k === 'tls_reports') config.queue.tlsReports = this.onOff(v, f) ?? config.queue.tlsReports;
            else {
              const org = this.string(v, f);
              if (org !== undefined && (org.length > 200 || /[\x00-\x1f\x7f]/.test(org))) this.fail(v, f, 'must be one line of at most 200 characters');
              else if (org !== undefined) config.queue.tlsReportOrganization = org.trim();
            }
          }
          break;
        case 'protection':
          this.protection(value, config);
          break;
        case 'loopback_plaintext_auth':
          config.loopbackPlaintextAuth = this.bool(value, key) ?? false;
          break;
        case 'log_level': {
          const level = this.string(value, key);
          if (level !== undefined && (LOG_LEVELS as readonly string[]).includes(level)) config.logLevel = level as FeConfig['logLevel'];
          else if (level !== undefined) this.fail(value, key, `must be one of ${LOG_LEVELS.join(', ')}`);
          break;
        }
        case 'ports':
          for (const [k, v] of this.entries(value, key, PORT_KEYS)) {
            const name = k as keyof Ports;
            if ((isScalar(v) && (v.value === false || v.value === null || v.value === 'off'))) config.ports[name] = null;
            else config.ports[name] = this.integer(v, `${key}.${k}`, 1, 65535) ?? null;
          }
          break;
        case 'domains':
          this.domains(value, config);
          break;
        case 'keys':
          this.keys(value, config);
          break;
      }
    }
    this.finish(config);
    if (!seen.has('hostname')) this.fail(null, 'hostname', 'is required: the mail host\'s own name, e.g. mail.example.org');
    return config;
  }

  /** "host:port", "[v6]:port" or a bare port (all addresses). */
  private hostPort(s: string, defaultPort: number | null, anyPort = false): Listen | null {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost))?(?::(\d{1,5}))?$/.exec(s.trim());
    if (!m || s.trim() === '') return null;
    const host = m[1] ?? m[2] ?? '0.0.0.0';
    const port = m[3] !== undefined ? Number(m[3]) : defaultPort;
    if (port === null || port < (anyPort ? 0 : 1) || port > 65535) return null; // 0: any free port (tests)
    if (m[2] && m[2] !== 'localhost' && isIP(m[2]) !== 4) return null;
    if (m[1] && isIP(m[1]) !== 6) return null;
    return { host, port };
  }

  private listen(node: Node | null, field: string): Listen | null {
    if (isScalar(node) && (node.value === false || node.value === 'off' || node.value === null)) return null;
    const raw = isScalar(node) && typeof node.value === 'number' ? String(node.value) : this.string(node, field);
    if (raw === undefined) return null;
    const hp = this.hostPort(/^\d+$/.test(raw) ? `:${raw}` : raw, null, true);
    if (!hp) this.fail(node, field, `"${raw}" is not "address:port" (e.g. 0.0.0.0:25, [::]:25, 127.0.0.1:2525) or off`);
    return hp;
  }

  /** The top-level `protection:` block: each layer `on`, `off`, or a mapping of its settings. */
  private protection(node: Node | null, config: FeConfig): void {
    const p = config.protection;
    for (const [key, value] of this.entries(node, 'protection', PROTECTION_KEYS)) {
      const f = `protection.${key}`;
      if (key === 'timeout') {
        p.timeoutSeconds = this.duration(value, f, 1, 600) ?? p.timeoutSeconds;
        continue;
      }
      const layer = key as LayerName;
      const settings = p[layer];
      if (!isMap(value)) {
        settings.enabled = this.onOff(value, f) ?? settings.enabled;
        continue;
      }
      for (const [k, v] of this.entries(value, f, LAYER_KEYS[layer])) {
        const lf = `${f}.${k}`;
        if (k === 'enabled') settings.enabled = this.onOff(v, lf) ?? settings.enabled;
        else if (k === 'fail') {
          const s = this.string(v, lf);
          if (s === 'open' || s === 'closed') settings.fail = s;
          else if (s !== undefined) this.fail(v, lf, 'must be open (skip the layer, with a warning) or closed (answer 451)');
        } else if (k === 'encrypted_archives') {
          const s = this.string(v, lf);
          if (s === 'reject' || s === 'accept') p.executables.rejectEncrypted = s === 'reject';
          else if (s !== undefined) this.fail(v, lf, 'must be reject or accept');
        } else if (k === 'archive_depth') p.executables.archiveDepth = this.integer(v, lf, 0, 10) ?? p.executables.archiveDepth;
        else if (k === 'max_size') p.viruses.maxSize = this.size(v, lf, 1024, 4 * 1024 * 1024 * 1024 - 1) ?? p.viruses.maxSize;
        else if (k === 'clamd') {
          const s = this.string(v, lf);
          if (s === undefined) continue;
          if (s.startsWith('/')) p.viruses.clamd = { path: s };
          else {
            const hp = /^\d+$/.test(s) ? null : this.hostPort(s, 3310);
            if (hp && s.includes(':')) p.viruses.clamd = hp;
            else this.fail(v, lf, `"${s}" is neither a unix socket path (/run/clamav/clamd.ctl) nor host:port (127.0.0.1:3310)`);
          }
        } else if (k === 'rspamd') {
          const s = this.string(v, lf);
          if (s !== undefined && !/^https?:\/\/[^\s/]+\/?$/.test(s)) this.fail(v, lf, `"${s}" is not an http:// URL of rspamd's worker (e.g. ${DEFAULT_RSPAMD_URL})`);
          else if (s !== undefined) p.spam.rspamdUrl = s.replace(/\/$/, '');
        } else if (k === 'controller') {
          const s = this.string(v, lf);
          if (s !== undefined && !/^https?:\/\/[^\s/]+\/?$/.test(s)) this.fail(v, lf, `"${s}" is not an http:// URL of rspamd's controller (e.g. ${DEFAULT_RSPAMD_CONTROLLER})`);
          else if (s !== undefined) p.spam.controllerUrl = s.replace(/\/$/, '');
        } else if (k === 'delay') p.greylist.delaySeconds = this.duration(v, lf, 1, 86400) ?? p.greylist.delaySeconds;
        else if (k === 'zones') {
          p.dnsbl.zones = this.stringList(v, lf).flatMap(({ value: z, node: n }) => {
            if (/^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?$/i.test(z)) return [z.toLowerCase().replace(/\.$/, '')];
            this.fail(n, lf, `"${z}" is not a DNS zone name (e.g. zen.spamhaus.org)`);
            return [];
          });
          // naming zones turns the layer on, unless it says enabled: off
          if (p.dnsbl.zones.length > 0 && !value.items.some((it) => isScalar(it.key) && it.key.value === 'enabled')) p.dnsbl.enabled = true;
        } else if (k === 'learn') p.spam.learn = this.onOff(v, lf) ?? p.spam.learn;
        else if (k === 'greylist') {
          const s = this.string(v, lf);
          if (s === 'accept' || s === 'defer') p.spam.greylist = s;
          else if (s !== undefined) this.fail(v, lf, 'must be accept or defer (answer 451)');
        } else if (k === 'junk_score' || k === 'reject_score') {
          // reject_score: off never refuses; the scores are rspamd's (spam) or fe's own (phishing)
          const off = k === 'reject_score' && isScalar(v) && /^off$/i.test(String(v.value));
          const n = off ? Infinity : isScalar(v) && typeof v.value === 'number' && Number.isFinite(v.value) && v.value > 0 && v.value <= 1000 ? v.value : undefined;
          if (n === undefined) this.fail(v, lf, `must be a score from 0 to 1000${k === 'reject_score' ? ', or off' : ''}`);
          else if (layer === 'spam') p.spam[k === 'junk_score' ? 'junkScore' : 'rejectScore'] = n;
          else if (layer === 'phishing') p.phishing[k === 'junk_score' ? 'junkScore' : 'rejectScore'] = n;
        }
      }
    }
  }

  /** A domain's or alias's `protection: {viruses: off, ...}`. */
  private layerSwitches(node: Node | null, field: string): LayerSwitches {
    const out: LayerSwitches = {};
    for (const [k, v] of this.entries(node, field, LAYER_NAMES)) {
      const on = this.onOff(v, `${field}.${k}`);
      if (on !== undefined) out[k as LayerName] = on;
    }
    return out;
  }

  private domains(node: Node | null, config: FeConfig): void {
    for (const [key, value, pair] of this.entries(node, 'domains', null)) {
      const field = `domains.${key}`;
      let name: string;
      try {
        name = asciiDomain(key);
      } catch (e) {
        if (!(e instanceof NameError)) throw e;
        this.fail(pair, field, e.message);
        continue;
      }
      if (config.domains.has(name)) {
        this.fail(pair, field, `is the same domain as "${config.domains.get(name)!.key}" (${name})`);
        continue;
      }
      const domain: DomainConfig = { name, key, aliases: new Map(), aliasKeys: new Map(), dkim: { active: [], published: [] } };
      config.domains.set(name, domain);
      for (const [k, v] of this.entries(value, field, DOMAIN_KEYS)) {
        if (k === 'aliases') this.aliases(v, `${field}.aliases`, domain);
        else if (k === 'retention_days') {
          const days = this.integer(v, `${field}.retention_days`, 0, 3650);
          if (days !== undefined) domain.retentionDays = days;
        } else if (k === 'encrypt') domain.encrypt = this.encrypt(v, `${field}.encrypt`);
        else if (k === 'protection') domain.protection = this.layerSwitches(v, `${field}.protection`);
        else this.dkim(v, `${field}.dkim`, domain);
      }
    }
  }

  private aliases(node: Node | null, field: string, domain: DomainConfig): void {
    for (const [key, value, pair] of this.entries(node, field, null)) {
      const f = `${field}.${key}`;
      let local: string;
      try {
        local = aliasLocalPart(key);
      } catch (e) {
        if (!(e instanceof NameError)) throw e;
        this.fail(pair, f, e.message);
        continue;
      }
      if (domain.aliases.has(local)) {
        this.fail(pair, f, `duplicates alias "${domain.aliasKeys.get(local)}" (names are case-insensitive)`);
        continue;
      }
      const alias: AliasConfig = { forward: [], mailbox: false, sendAs: [] };
      for (const [k, v] of this.entries(value, f, ALIAS_KEYS)) {
        if (k === 'mailbox') alias.mailbox = this.bool(v, `${f}.mailbox`) ?? false;
        else if (k === 'encrypt') alias.encrypt = this.encrypt(v, `${f}.encrypt`);
        else if (k === 'protection') alias.protection = this.layerSwitches(v, `${f}.protection`);
        else if (k === 'encrypt_outbound') {
          const s = this.string(v, `${f}.encrypt_outbound`);
          if (s === 'wkd') alias.encryptOutbound = 'wkd';
          else if (s !== undefined) this.fail(v, `${f}.encrypt_outbound`, 'must be wkd (encrypt when every outside recipient publishes a key), or leave it out');
        } else if (k === 'send_as') {
          alias.sendAs = this.stringList(v, `${f}.send_as`).flatMap(({ value: s, node: n }, i) => {
            const parsed = this.sendAsEntry(s, n, `${f}.send_as[${i}]`);
            return parsed ? [parsed] : [];
          });
        } else if (k === 'limits') {
          alias.limits = this.aliasLimits(v, `${f}.limits`);
        } else {
          alias.forward = this.stringList(v, `${f}.forward`).flatMap(({ value: s, node: n }, i) => {
            try {
              return [mailboxAddress(s)];
            } catch (e) {
              if (!(e instanceof NameError)) throw e;
              this.fail(n, `${f}.forward[${i}]`, e.message);
              return [];
            }
          });
        }
      }
      if (!alias.mailbox && alias.forward.length === 0) this.fail(pair, f, 'does nothing: give it "mailbox: true", a "forward:" list, or both');
      if (alias.sendAs.length > 0 && !alias.mailbox) this.fail(pair, `${f}.send_as`, 'only a mailbox logs in to send mail: add "mailbox: true" or remove send_as');
      if (alias.limits && !alias.mailbox) this.fail(pair, `${f}.limits`, 'only a mailbox sends mail: add "mailbox: true" or remove limits');
      if (alias.encryptOutbound && !alias.mailbox) this.fail(pair, `${f}.encrypt_outbound`, 'only a mailbox sends mail: add "mailbox: true" or remove encrypt_outbound');
      domain.aliases.set(local, alias);
      domain.aliasKeys.set(local, key);
    }
  }

  /** An alias's own sending limits; the same ranges as the global ones. */
  private aliasLimits(node: Node | null, field: string): SendLimitOverrides {
    const out: SendLimitOverrides = {};
    for (const [k, v] of this.entries(node, field, ALIAS_LIMIT_KEYS)) {
      const f = `${field}.${k}`;
      if (k === 'send_messages_per_hour') out.sendMessagesPerHour = this.integer(v, f, 1, 1_000_000);
      else if (k === 'send_recipients_per_day') out.sendRecipientsPerDay = this.integer(v, f, 1, 10_000_000);
      else out.sendRecipientsPerMessage = this.integer(v, f, 1, 1000);
    }
    for (const k of Object.keys(out) as (keyof SendLimitOverrides)[]) if (out[k] === undefined) delete out[k];
    return out;
  }

  /** `encrypt: true` or `encrypt: {subject: keep|hide}`; `false` is refused (fe key remove stops encrypting). */
  private encrypt(node: Node | null, field: string): EncryptOptions | undefined {
    if (isScalar(node) && typeof node.value === 'boolean') {
      if (node.value) return {};
      this.fail(node, field, 'mail to an address with a key is always encrypted; to stop, remove the key (fe key remove ADDRESS)');
      return undefined;
    }
    const out: EncryptOptions = {};
    for (const [k, v] of this.entries(node, field, ENCRYPT_KEYS)) {
      const s = this.string(v, `${field}.${k}`);
      if (s === 'keep' || s === 'hide') out.subject = s;
      else if (s !== undefined) this.fail(v, `${field}.${k}`, 'must be keep or hide');
    }
    return out;
  }

  private pendingSendAs: { domain: string; node: Node | null; field: string }[] = [];

  /** "addr@domain" or "*@domain"; the domain must be served (checked in finish()). */
  private sendAsEntry(s: string, node: Node | null, field: string): string | null {
    const wildcard = /^\*@/.test(s.trim());
    try {
      const { local, domain } = splitAddress(wildcard ? `x${s.trim().slice(1)}` : s.trim());
      const ascii = asciiDomain(domain);
      this.pendingSendAs.push({ domain: ascii, node, field });
      return wildcard ? `*@${ascii}` : `${local.normalize('NFC').toLowerCase()}@${ascii}`;
    } catch (e) {
      if (!(e instanceof NameError)) throw e;
      this.fail(node, field, `"${s}" is not an address or "*@domain": ${e.message}`);
      return null;
    }
  }

  private dkim(node: Node | null, field: string, domain: DomainConfig): void {
    const selector = (s: string, n: Node | null, f: string): boolean => {
      if (SELECTOR.test(s)) return true;
      this.fail(n, f, `"${s}" is not a valid selector (lower-case letters, digits, -)`);
      return false;
    };
    let activeNode: Node | null = null;
    for (const [k, v] of this.entries(node, field, DKIM_KEYS)) {
      if (k === 'active') {
        activeNode = v;
        if (isScalar(v) && v.value === null) continue;
        // One selector as a plain scalar (as fe writes it), or a list when two sign.
        const items = isSeq(v) ? this.stringList(v, `${field}.active`) : [{ value: this.string(v, `${field}.active`), node: v }];
        for (const { value: s, node: n } of items) {
          if (!s || !selector(s, n, `${field}.active`)) continue; // '' was reported already
          if (domain.dkim.active.includes(s)) this.fail(n, `${field}.active`, `"${s}" is listed twice`);
          else domain.dkim.active.push(s);
        }
        // At most one key per algorithm, and fe knows two algorithms; which is which needs the key files (fe config check).
        if (domain.dkim.active.length > 2) this.fail(v, `${field}.active`, `${domain.dkim.active.length} selectors sign; at most two may (one RSA, one Ed25519)`);
      } else {
        for (const { value: s, node: n } of this.stringList(v, `${field}.published`)) {
          if (s && selector(s, n, `${field}.published`)) domain.dkim.published.push(s);
        }
      }
    }
    for (const s of domain.dkim.active) {
      if (!domain.dkim.published.includes(s)) {
        this.fail(activeNode ?? node, `${field}.active`, `selector "${s}" signs mail but is not in published, so receivers could not verify it`);
      }
    }
  }

  private pendingKeys: [PgpKeyConfig, Pair][] = [];

  private keys(node: Node | null, config: FeConfig): void {
    for (const [key, value, pair] of this.entries(node, 'keys', null)) {
      const f = `keys.${key}`;
      let address: string;
      try {
        const { local, domain } = splitAddress(key);
        address = `${aliasLocalPart(local)}@${asciiDomain(domain)}`;
      } catch (e) {
        if (!(e instanceof NameError)) throw e;
        this.fail(pair, f, e.message);
        continue;
      }
      const entry: PgpKeyConfig = { address, key, fingerprint: '', armored: '' };
      for (const [k, v] of this.entries(value, f, KEY_KEYS)) {
        const s = this.string(v, `${f}.${k}`);
        if (s === undefined) continue;
        if (k === 'fingerprint') {
          if (!/^([0-9A-F]{40}|[0-9A-F]{64})$/i.test(s.replace(/\s/g, ''))) this.fail(v, `${f}.fingerprint`, 'must be a 40- or 64-digit hex fingerprint');
          else entry.fingerprint = s.replace(/\s/g, '').toUpperCase();
        } else if (!s.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) {
          this.fail(v, `${f}.key`, 'must be an ASCII-armored OpenPGP public key block');
        } else entry.armored = s;
      }
      if (!entry.fingerprint || !entry.armored) {
        if (isMap(value)) this.fail(pair, f, 'needs both "fingerprint" and "key" (use `fe key add`)');
        else if (!this.problems.some((p) => p.field.startsWith(f))) this.fail(pair, f, 'needs both "fingerprint" and "key" (use `fe key add`)');
        continue;
      }
      config.keys.set(address, entry);
      this.pendingKeys.push([entry, pair]);
    }
  }

  /** Cross-checks that need the whole file read (keys may come before domains). */
  finish(config: FeConfig): void {
    for (const p of this.pendingSendAs) {
      if (!config.domains.has(p.domain)) this.fail(p.node, p.field, `${p.domain} is not in domains: fe signs and sends only for the domains it serves`);
    }
    for (const [entry, pair] of this.pendingKeys) {
      const domain = entry.address.slice(entry.address.lastIndexOf('@') + 1);
      // Another domain's address has a key when an alias forwards to it (forwards with `encrypt:`).
      // A warning, not an error: removing the last alias that forwards there must not lock fe.yml.
      if (!config.domains.has(domain) && !isForwardTarget(config, entry.address)) {
        this.fail(pair, `keys.${entry.key}`, `${domain} is not in domains and no alias forwards to ${entry.address}: the key is unused (fe key remove ${entry.address})`, 'warning');
      }
    }
  }
}
