// IMAP figures for fe, side by side with Dovecot in the same run: log in and open a mailbox of
// 10,000 messages, FETCH all envelopes and flags, SEARCH them (header, address, body text, flag),
// IDLE notification latency, and memory per idle connection with 500 of them open.
//
// The comparison needs Dovecot from Debian's packages: `apt-get install dovecot-imapd`. The bench
// starts its own `dovecot -F` with a throw-away configuration (loopback only, plaintext login,
// maildir in a temp folder) and stops it afterwards; no system service is used or needed. Without
// Dovecot, fe's figures are printed alone.
//
// Both servers get the same 10,000 messages (generated deterministically) through IMAP APPEND,
// and every figure is taken by the same small client below. Everything runs on 127.0.0.0/8.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startServe, type Daemon } from '../helpers/daemon.js';
import { workspace } from '../helpers/fe.js';
import { smtpConnect, type SmtpSession } from '../helpers/smtp-client.js';
import { prng } from '../helpers/prng.js';

// The issue's sizes; smaller ones through the environment for a quick look while working on fe.
const MESSAGES = Number(process.env.FE_BENCH_IMAP_MESSAGES) || 10_000;
const IDLE_CONNECTIONS = Number(process.env.FE_BENCH_IMAP_CONNECTIONS) || 500;
// Which parts to measure (login, fetch, search, idle, memory; all when unset), to rerun one part quickly.
const PARTS = new Set((process.env.FE_BENCH_IMAP_PARTS ?? 'login,fetch,search,idle,memory').split(',').filter(Boolean));
// Dovecot's mailbox format: maildir (the usual one) unless FE_BENCH_DOVECOT_FORMAT says sdbox or mdbox.
const DOVECOT_FORMAT = ['maildir', 'sdbox', 'mdbox'].includes(process.env.FE_BENCH_DOVECOT_FORMAT ?? '') ? process.env.FE_BENCH_DOVECOT_FORMAT! : 'maildir';
const PER_SOURCE_ADDRESS = 25;
const LOGIN_BURST = 50; // clients of one open mailbox logging in at once // fe's IMAP server takes at most 50 connections per client address
const USER = 'bench@example.org';
const PASSWORD = 'correct horse battery staple';
const SUBJECT_WORD = 'invoice';
const FROM_WORD = 'ada.lovelace';
const BODY_WORD = 'zeppelin';
const SINCE = '1-Jun-2024'; // internal dates run from Jan 2024, about 25 messages a day
const SINCE_MS = Date.UTC(2024, 5, 1);
const LARGER_THAN = 4000;

// ---------------------------------------------------------------------------------------------
// The messages: varied senders, subjects, dates, structures and charsets, a few KB each.

interface BenchMessage {
  raw: Buffer;
  flags: string[];
  internalDate: string; // IMAP date-time
}

interface Corpus {
  messages: BenchMessage[];
  bytes: number;
  expect: { subject: number; from: number; body: number; unseen: number; since: number; larger: number };
}

const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there all one their ' +
  'would we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first ' +
  'any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each ' +
  'just those people how too little state good very make world still own see men work long get here between both life being under never day same another know ' +
  'while last might us great old year off come since against go came right used take three meeting schedule project budget review draft notes agenda release ' +
  'server backup garden holiday train ticket weather coffee lunch report quarter figures design build deploy customer support update version plan week monday ' +
  'friday summer winter library museum concert dinner recipe bicycle harbour village mountain river letter parcel delivery printer office kitchen window'
).split(' ');
const TOPICS = ['project update', 'meeting notes', 'weekly report', 'holiday plans', 'server maintenance', 'budget review', 'release schedule', 'dinner on friday', 'train tickets', 'garden party', 'quarterly figures', 'design draft', 'backup failed', 'new version', 'library books', 'concert tonight', 'bicycle repair', 'printer again', 'the parcel', 'customer feedback'];
const FIRST = ['Alice', 'Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi', 'Ivan', 'Judy', 'Mallory', 'Niaj', 'Olivia', 'Peggy', 'Rupert', 'Sybil', 'Trent', 'Victor', 'Walter', 'Yuki'];
const LAST = ['Smith', 'Jones', 'Brown', 'Taylor', 'Wilson', 'Evans', 'Thomas', 'Roberts', 'Walker', 'Wright', 'Hughes', 'Green'];
const DOMAINS = ['mail.example.net', 'example.com', 'corp.example', 'lists.example.org', 'university.example.edu', 'shop.example'];
const UNICODE_NAMES = ['José Müller', 'Zoë Ångström', 'Søren Kierkegård', 'Chloé Dubois', 'Jürgen Weiß', 'Łukasz Żółw'];
const UNICODE_WORDS = ['Grüße', 'café', 'naïve', 'façade', 'Übersicht', 'déjà vu', 'smörgåsbord'];
const UNICODE_SUBJECTS = ['Grüße aus München', 'Réunion de l’équipe', 'Ελληνικά θέματα', 'Встреча в пятницу', '会議の議事録'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

const two = (n: number) => String(n).padStart(2, '0');
const rfc5322Date = (d: Date) =>
  `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
const imapDate = (d: Date) => `${two(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
const encodedWordB = (s: string) => `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`;
const encodedWordQ = (s: string) =>
  '=?UTF-8?Q?' + [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : b === 0x20 ? '_' : `=${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('') + '?=';
const quotedPrintable = (line: string) => [...Buffer.from(line, 'utf8')].map((b) => (b > 126 || b === 0x3d ? `=${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b))).join('');

/** Words wrapped into lines of at most `width` characters. */
function wrap(words: string[], width = 72): string[] {
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines;
}

export function makeCorpus(n: number, seed = 20260101): Corpus {
  const r = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(r() * list.length)]!;
  const senders = Array.from({ length: 60 }, (_, i) => {
    const first = FIRST[i % FIRST.length]!;
    const last = LAST[Math.floor(i / FIRST.length + i) % LAST.length]!;
    const name = i % 10 === 9 ? UNICODE_NAMES[(i / 10) % UNICODE_NAMES.length | 0]! : `${first} ${last}`;
    return { name, address: `${first.toLowerCase()}.${last.toLowerCase()}@${DOMAINS[i % DOMAINS.length]}` };
  });
  const ada = { name: 'Ada Lovelace', address: 'ada.lovelace@analytical.example' };
  const messages: BenchMessage[] = [];
  const expect = { subject: 0, from: 0, body: 0, unseen: 0, since: 0, larger: 0 };
  let bytes = 0;
  let clock = Date.UTC(2024, 0, 1, 8, 0, 0);
  for (let i = 0; i < n; i++) {
    clock += Math.floor(600_000 + r() * 4_000_000);
    const date = new Date(Math.floor(clock / 1000) * 1000);
    const from = r() < 0.015 ? ada : pick(senders);
    if (from === ada) expect.from++;
    const unicodeSubject = r() < 0.08;
    let subject = unicodeSubject ? pick(UNICODE_SUBJECTS) : pick(TOPICS);
    if (r() < 0.03) subject = `${SUBJECT_WORD} ${1000 + i} for ${pick(TOPICS)}`;
    const reply = r() < 0.3;
    if (reply) subject = `Re: ${subject}`;
    if (subject.toLowerCase().includes(SUBJECT_WORD)) expect.subject++;
    const encodedSubject = /[^\x20-\x7e]/.test(subject) || (subject.includes(SUBJECT_WORD) && r() < 0.3) ? encodedWordB(subject) : subject;
    const fromName = /[^\x20-\x7e]/.test(from.name) ? encodedWordQ(from.name) : `"${from.name}"`;
    const id = `<${i}.${Math.floor(r() * 0xffffffff).toString(16)}@${from.address.split('@')[1]}>`;

    // Body text: paragraphs of sentences; now and then a non-ASCII word, rarely the body search word.
    const utf8 = r() < 0.15;
    const hasBodyWord = r() < 0.01;
    if (hasBodyWord) expect.body++;
    const target = 700 + Math.floor(r() * r() * 5000);
    const paragraphs: string[][] = [];
    let size = 0;
    while (size < target) {
      const sentences: string[] = [];
      for (let s = 3 + Math.floor(r() * 4); s > 0; s--) {
        const words = Array.from({ length: 6 + Math.floor(r() * 9) }, () => (utf8 && r() < 0.04 ? pick(UNICODE_WORDS) : pick(WORDS)));
        words[0] = words[0]!.charAt(0).toUpperCase() + words[0]!.slice(1);
        sentences.push(words.join(' ') + '.');
      }
      const p = sentences.join(' ').split(' ');
      if (hasBodyWord && paragraphs.length === 0) p.splice(Math.floor(p.length / 2), 0, BODY_WORD);
      paragraphs.push(p);
      size += p.join(' ').length;
    }
    const textLines = paragraphs.flatMap((p, k) => (k === 0 ? wrap(p) : ['', ...wrap(p)]));
    textLines.unshift(`Hello,`, '');
    textLines.push('', `-- `, from.name);

    const headers = [
      `Message-ID: ${id}`,
      `Date: ${rfc5322Date(date)}`,
      `From: ${fromName} <${from.address}>`,
      `To: ${r() < 0.5 ? '"Bench" ' : ''}<${USER}>`,
      ...(r() < 0.2 ? [`Cc: ${pick(senders).address}, ${pick(senders).address}`] : []),
      `Subject: ${encodedSubject}`,
      ...(reply ? [`In-Reply-To: <${Math.max(0, i - 7)}.parent@${from.address.split('@')[1]}>`, `References: <${Math.max(0, i - 7)}.parent@${from.address.split('@')[1]}>`] : []),
      'MIME-Version: 1.0',
    ];
    const kind = r();
    const charset = utf8 ? 'utf-8' : 'us-ascii';
    let body: string;
    if (kind < 0.55) {
      headers.push(`Content-Type: text/plain; charset=${charset}; format=flowed`, `Content-Transfer-Encoding: ${utf8 ? '8bit' : '7bit'}`);
      body = textLines.join('\r\n');
    } else if (kind < 0.65) {
      headers.push('Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable');
      body = textLines.map(quotedPrintable).join('\r\n');
    } else if (kind < 0.9) {
      const boundary = `alt-${i}-${Math.floor(r() * 1e9)}`;
      const html = ['<html><body>', ...paragraphs.map((p) => wrap(['<p>', ...p, '</p>']).join('\r\n')), '</body></html>'];
      headers.push(`Content-Type: multipart/alternative; boundary="${boundary}"`);
      body = [
        `--${boundary}`,
        `Content-Type: text/plain; charset=${charset}`,
        `Content-Transfer-Encoding: ${utf8 ? '8bit' : '7bit'}`,
        '',
        ...textLines,
        `--${boundary}`,
        `Content-Type: text/html; charset=${charset}`,
        `Content-Transfer-Encoding: ${utf8 ? '8bit' : '7bit'}`,
        '',
        ...html,
        `--${boundary}--`,
      ].join('\r\n');
    } else {
      const boundary = `mixed-${i}-${Math.floor(r() * 1e9)}`;
      const attachment = Buffer.from(Array.from({ length: 1000 + Math.floor(r() * 3000) }, () => Math.floor(r() * 256)));
      headers.push(`Content-Type: multipart/mixed; boundary="${boundary}"`);
      body = [
        'This is a multi-part message in MIME format.',
        `--${boundary}`,
        `Content-Type: text/plain; charset=${charset}`,
        `Content-Transfer-Encoding: ${utf8 ? '8bit' : '7bit'}`,
        '',
        ...textLines,
        `--${boundary}`,
        `Content-Type: application/pdf; name="report-${i}.pdf"`,
        `Content-Disposition: attachment; filename="report-${i}.pdf"`,
        'Content-Transfer-Encoding: base64',
        '',
        ...(attachment.toString('base64').match(/.{1,76}/g) ?? []),
        `--${boundary}--`,
      ].join('\r\n');
    }
    const raw = Buffer.from(headers.join('\r\n') + '\r\n\r\n' + body + '\r\n', 'utf8');
    const flags: string[] = [];
    const f = r();
    if (f < 0.7) flags.push('\\Seen');
    else expect.unseen++;
    if (f < 0.03) flags.push('\\Answered');
    if (r() < 0.05) flags.push('\\Flagged');
    messages.push({ raw, flags, internalDate: imapDate(date) });
    if (date.getTime() >= SINCE_MS) expect.since++;
    if (raw.length > LARGER_THAN) expect.larger++;
    bytes += raw.length;
  }
  return { messages, bytes, expect };
}

// ---------------------------------------------------------------------------------------------
// A small IMAP client: tagged commands (pipelining allowed), untagged responses to a listener,
// literals kept inline, bytes received counted. The same code talks to both servers.

interface Reply {
  status: string;
  text: string;
  untagged: string[];
}

class Imap {
  bytesIn = 0;
  greeting = '';
  /** Called for every untagged response (IDLE updates among them). */
  onUntagged: ((line: string) => void) | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private n = 0;
  private pending = new Map<string, { untagged: string[] | null; resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private continuation: (() => void) | null = null;
  private failure: Error | null = null;

  private constructor(private socket: net.Socket) {}

  static connect(port: number, localAddress?: string): Promise<Imap> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
      const c = new Imap(socket);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('no IMAP greeting within 30 s'));
      }, 30_000);
      c.onGreeting = (line) => {
        clearTimeout(timer);
        c.greeting = line;
        if (/^\* (OK|PREAUTH)/.test(line)) resolve(c);
        else reject(new Error(`greeting: ${line}`));
      };
      socket.on('data', (d: Buffer) => c.onData(d));
      socket.on('error', (e) => {
        clearTimeout(timer);
        c.fail(e);
        reject(e);
      });
      socket.on('close', () => c.fail(new Error('connection closed')));
    });
  }

  private onGreeting: ((line: string) => void) | null = null;

  private fail(e: Error): void {
    this.failure ??= e;
    for (const [tag, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(tag);
      p.reject(e);
    }
  }

  private onData(d: Buffer): void {
    this.bytesIn += d.length;
    this.buf = this.buf.length > 0 ? Buffer.concat([this.buf, d]) : d;
    let start = 0;
    let scan = 0;
    for (;;) {
      const eol = this.buf.indexOf('\r\n', scan);
      if (eol < 0) break;
      const tail = this.buf.toString('latin1', Math.max(scan, eol - 24), eol);
      const literal = /\{(\d+)\+?\}$/.exec(tail);
      if (literal) {
        const after = eol + 2 + Number(literal[1]);
        if (after > this.buf.length) break; // the rest of the literal is still on its way
        scan = after;
        continue;
      }
      this.response(this.buf.toString('utf8', start, eol));
      start = scan = eol + 2;
    }
    this.buf = start > 0 ? this.buf.subarray(start) : this.buf;
  }

  private response(line: string): void {
    if (this.onGreeting) {
      const g = this.onGreeting;
      this.onGreeting = null;
      return g(line);
    }
    if (line.startsWith('+')) {
      const c = this.continuation;
      this.continuation = null;
      return c?.();
    }
    if (line.startsWith('* ')) {
      for (const p of this.pending.values()) p.untagged?.push(line);
      this.onUntagged?.(line);
      return;
    }
    const space = line.indexOf(' ');
    const tag = line.slice(0, space);
    const p = this.pending.get(tag);
    if (!p) return;
    this.pending.delete(tag);
    clearTimeout(p.timer);
    const m = /^(\S+) ?(.*)$/s.exec(line.slice(space + 1));
    p.resolve({ status: m?.[1] ?? '', text: m?.[2] ?? '', untagged: p.untagged ?? [] });
  }

  /** Sends `${tag} ${command}` (and any literal bytes in `data`); resolves with the tagged reply. */
  send(command: string, opts: { data?: Buffer; collect?: boolean; timeoutMs?: number } = {}): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    const tag = `b${++this.n}`;
    const head = Buffer.from(`${tag} ${command}`, 'utf8');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(tag);
        reject(new Error(`no reply to ${command.slice(0, 40)} within ${opts.timeoutMs ?? 120_000} ms`));
      }, opts.timeoutMs ?? 120_000);
      this.pending.set(tag, { untagged: opts.collect ? [] : null, resolve, reject, timer });
      this.socket.write(opts.data ? Buffer.concat([head, opts.data, Buffer.from('\r\n')]) : Buffer.concat([head, Buffer.from('\r\n')]));
    });
  }

  async ok(command: string, opts: { collect?: boolean; timeoutMs?: number } = {}): Promise<Reply> {
    const r = await this.send(command, opts);
    if (r.status !== 'OK') throw new Error(`${command.split(' ')[0]}: ${r.status} ${r.text}`);
    return r;
  }

  /** APPEND with a LITERAL+ literal: no round trip for a continuation, so APPENDs can be pipelined. */
  append(mailbox: string, m: BenchMessage): Promise<Reply> {
    return this.appendMany(mailbox, [m]);
  }

  /** One APPEND command for all of `ms` (more than one needs MULTIAPPEND). */
  appendMany(mailbox: string, ms: BenchMessage[]): Promise<Reply> {
    const parts: Buffer[] = [];
    ms.forEach((m, i) => parts.push(Buffer.from(`${i === 0 ? '' : ' '}(${m.flags.join(' ')}) "${m.internalDate}" {${m.raw.length}+}\r\n`), m.raw));
    return this.send(`APPEND ${mailbox} `, { data: Buffer.concat(parts) });
  }

  /** Starts IDLE; resolves once the server said "+". Returns the function that ends it. */
  async idle(): Promise<() => Promise<Reply>> {
    const seen = new Promise<void>((resolve) => (this.continuation = resolve));
    const done = this.send('IDLE', { timeoutMs: 3_600_000 });
    await Promise.race([seen, done.then((r) => Promise.reject(new Error(`IDLE: ${r.status} ${r.text}`)))]);
    return () => {
      this.socket.write('DONE\r\n');
      return done;
    };
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// The two servers behind one interface.

interface Memory {
  rssKiB: number;
  pssKiB: number;
  processes: number;
}

interface Target {
  name: string;
  port(): number;
  user: string;
  password: string;
  restart(): Promise<void>;
  memory(): Memory;
  /** Lets the server collect its garbage (fe: a forced full GC) so memory figures are stable; resolves with what it said about its memory, if anything. */
  settle(): Promise<string | null>;
  /** Delivery as mail arrives (fe: its MX over SMTP; Dovecot: dovecot-lda); resolves on acceptance. */
  deliver: { label: string; open(): Promise<{ send(raw: Buffer): Promise<void>; close(): void }> } | null;
  /** What the server logged that a reader of the figures should know. */
  warnings(): string[];
  stop(): Promise<void>;
}

function procField(pid: number, file: string, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function memoryOf(pids: number[]): Memory {
  let rssKiB = 0;
  let pssKiB = 0;
  for (const pid of pids) {
    rssKiB += procField(pid, 'status', 'VmRSS');
    pssKiB += procField(pid, 'smaps_rollup', 'Pss');
  }
  return { rssKiB, pssKiB, processes: pids.length };
}

/** A process and all its descendants, from /proc. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  walk(root);
  return out;
}

async function startFe(): Promise<Target> {
  const dns: DnsServer = await startDnsServer({});
  const w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nlog_level: warn\nloopback_plaintext_auth: true\n` +
      `listen:\n  mx: 127.0.0.1:0\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: off\n  pop3s: off\n` +
      `dns:\n  servers: ["${dns.address}"]\nlimits:\n  connections_per_ip: 1000\n  connections_per_prefix: 1000\n  messages_per_ip_per_minute: 1000000\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', USER, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  // --expose-gc: SIGUSR2 then forces a full GC (fe serve installs that only under this flag)
  const start = () => startServe(w.config, ['--only', 'mx,imap'], {}, ['mx', 'imap'], ['--expose-gc']);
  let fe: Daemon = await start();
  return {
    name: 'fe',
    port: () => fe.ports.imap!,
    user: USER,
    password: PASSWORD,
    async restart() {
      await fe.stop();
      fe = await start();
    },
    memory: () => memoryOf([fe.child.pid!]),
    async settle() {
      const seen = fe.log().length;
      fe.signal('SIGUSR2');
      await sleep(1000);
      return /^gc: .*$/m.exec(fe.log().slice(seen))?.[0] ?? null;
    },
    deliver: {
      label: 'SMTP to fe\'s MX, from the 250 after DATA',
      async open() {
        const s: SmtpSession = await smtpConnect(fe.ports.mx!);
        await s.command('EHLO bench.example.net');
        return {
          async send(raw: Buffer) {
            for (const line of ['MAIL FROM:<alice@sender.example>', `RCPT TO:<${USER}>`, 'DATA']) {
              const reply = await s.command(line);
              if (!/^[23]/.test(reply)) throw new Error(`${line}: ${reply}`);
            }
            const reply = await s.raw(Buffer.concat([raw, Buffer.from('.\r\n')]));
            if (!reply.startsWith('250')) throw new Error(`DATA: ${reply}`);
          },
          close: () => s.close(),
        };
      },
    },
    warnings: () => [...new Set(fe.log().split('\n').filter((l) => /warn|error/i.test(l)))].slice(0, 8),
    async stop() {
      await fe.stop();
      await dns.close();
      rmSync(w.dir, { recursive: true, force: true });
    },
  };
}

function findDovecot(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    const p = path.join(dir || '.', 'dovecot');
    if (dir && existsSync(p)) return p;
  }
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** uid and gid of a user in /etc/passwd, or null. */
function passwdEntry(name: string): { uid: number; gid: number } | null {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

function run(cmd: string, args: string[], input?: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.stdin.on('error', () => undefined); // EPIPE when the child exits before reading (seen with dovecot --version)
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
    child.stdin.on('error', () => undefined); // a command that exits without reading its input (dovecot --version)
    child.stdin.end(input ?? '');
  });
}

async function startDovecot(binary: string): Promise<Target> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-bench-dovecot-'));
  const conf = path.join(dir, 'dovecot.conf');
  const log = path.join(dir, 'dovecot.log');
  // Each IDLE connection's imap process wants an inotify instance, and all run as one user; past
  // the kernel's per-user limit (often 128) Dovecot falls back to polling every 30 s. As root the
  // bench raises the limit for its run and puts it back afterwards, as Dovecot's docs advise.
  const inotifyFile = '/proc/sys/fs/inotify/max_user_instances';
  let inotifyBefore: string | null = null;
  const want = IDLE_CONNECTIONS * 2 + 100;
  try {
    const current = readFileSync(inotifyFile, 'utf8').trim();
    if (Number(current) < want && process.getuid?.() === 0) {
      writeFileSync(inotifyFile, String(want));
      inotifyBefore = current;
    }
  } catch {
    // not Linux, or not allowed: Dovecot's log will say so
  }
  const mail = path.join(dir, 'mail');
  const port = await freePort();
  const root = process.getuid?.() === 0;
  // As root, Dovecot runs like a packaged install: its own users for internal and login
  // processes, the mail processes as an unprivileged user. Otherwise everything as this user.
  const me = userInfo();
  const mailUser = root ? (passwdEntry('nobody') ?? { uid: 65534, gid: 65534 }) : { uid: me.uid, gid: me.gid };
  const internalUser = root && passwdEntry('dovecot') ? 'dovecot' : root ? 'nobody' : me.username;
  const loginUser = root && passwdEntry('dovenull') ? 'dovenull' : root ? 'nobody' : me.username;
  mkdirSync(mail);
  mkdirSync(path.join(dir, 'run'));
  mkdirSync(path.join(dir, 'state'));
  if (root) {
    chmodSync(dir, 0o755);
    chownSync(mail, mailUser.uid, mailUser.gid);
  }
  const lda = ['/usr/lib/dovecot/dovecot-lda', '/usr/libexec/dovecot/dovecot-lda'].find((p) => existsSync(p)) ?? null;
  const hash = await run(path.join(path.dirname(binary), '..', 'bin', 'doveadm'), ['pw', '-s', 'SHA512-CRYPT', '-p', PASSWORD]).catch(() => run('doveadm', ['pw', '-s', 'SHA512-CRYPT', '-p', PASSWORD]));
  const password = hash.code === 0 && hash.out.startsWith('{SHA512-CRYPT}') ? hash.out.trim() : `{PLAIN}${PASSWORD}`;
  writeFileSync(path.join(dir, 'users'), `bench:${password}\n`, { mode: 0o644 });
  writeFileSync(
    conf,
    [
      `base_dir = ${dir}/run`,
      `state_dir = ${dir}/state`,
      'instance_name = fe-bench',
      'protocols = imap',
      'listen = 127.0.0.1',
      'ssl = no',
      'disable_plaintext_auth = no',
      'auth_mechanisms = plain login',
      `log_path = ${log}`,
      `default_internal_user = ${internalUser}`,
      `default_login_user = ${loginUser}`,
      'default_process_limit = 1100',
      'default_client_limit = 4000',
      'default_vsz_limit = 1G',
      'first_valid_uid = 1',
      `mail_location = ${DOVECOT_FORMAT}:${mail}/%u`,
      'passdb {',
      '  driver = passwd-file',
      `  args = scheme=SHA512-CRYPT ${dir}/users`,
      '}',
      'userdb {',
      '  driver = static',
      `  args = uid=${mailUser.uid} gid=${mailUser.gid} home=${mail}/%u`,
      '}',
      'service imap-login {',
      '  inet_listener imap {',
      '    address = 127.0.0.1',
      `    port = ${port}`,
      '  }',
      '  inet_listener imaps {',
      '    port = 0',
      '  }',
      ...(root ? [] : ['  chroot =']),
      '}',
      'service imap {',
      `  process_limit = ${IDLE_CONNECTIONS * 2}`,
      '}',
      'protocol imap {',
      `  mail_max_userip_connections = ${IDLE_CONNECTIONS * 2}`,
      '}',
      // dovecot-lda runs as the mail user and logs there too
      'protocol lda {',
      `  log_path = ${dir}/lda.log`,
      '}',
      '',
    ].join('\n'),
  );
  if (root) {
    writeFileSync(path.join(dir, 'lda.log'), '');
    chownSync(path.join(dir, 'lda.log'), mailUser.uid, mailUser.gid);
  }

  let child: ChildProcess;
  let exited: Promise<void>;
  const start = async () => {
    let output = '';
    child = spawn(binary, ['-F', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    exited = new Promise((resolve) => child.on('exit', () => resolve()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`dovecot exited: ${output}\n${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
      try {
        const c = await Imap.connect(port);
        c.close();
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`dovecot did not answer on ${port}: ${(e as Error).message}\n${output}`);
        await sleep(50);
      }
    }
  };
  const stopDovecot = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  await start();
  return {
    name: 'dovecot',
    port: () => port,
    user: 'bench',
    password: PASSWORD,
    async restart() {
      await stopDovecot();
      await start();
    },
    memory: () => memoryOf(processTree(child.pid!)),
    settle: () => sleep(1000).then(() => null), // C, one process per connection: nothing to collect
    deliver: lda
      ? {
          label: 'dovecot-lda, from its exit',
          async open() {
            return {
              async send(raw: Buffer) {
                await new Promise<void>((resolve, reject) => {
                  const p = spawn(lda, ['-c', conf, '-d', 'bench', '-f', 'alice@sender.example'], { stdio: ['pipe', 'ignore', 'pipe'] });
                  let err = '';
                  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
                  p.on('error', reject);
                  p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`dovecot-lda exited ${code}: ${err}`))));
                  p.stdin.end(raw);
                });
              },
              close: () => undefined,
            };
          },
        }
      : null,
    warnings() {
      const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
      const out = [...new Set(text.split('\n').filter((l) => /Warning|Error|Fatal|Panic/.test(l) && !/Killed with signal 15/.test(l)).map((l) => l.replace(/^\w{3} \d+ [\d:]+ /, '').replace(/<\d+>/g, '<pid>').replace(/\d+/g, 'N')))];
      if (inotifyBefore !== null) out.unshift(`fs.inotify.max_user_instances raised from ${inotifyBefore} to ${want} for this run`);
      return out.slice(0, 8);
    },
    async stop() {
      await stopDovecot();
      if (inotifyBefore !== null) writeFileSync(inotifyFile, inotifyBefore);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The measurements.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

type Figures = Map<string, number>;

async function login(t: Target, localAddress?: string): Promise<Imap> {
  const c = await Imap.connect(t.port(), localAddress);
  await c.ok(`LOGIN "${t.user}" "${t.password}"`);
  return c;
}

async function selectInbox(c: Imap): Promise<number> {
  const r = await c.ok('SELECT INBOX', { collect: true });
  const exists = r.untagged.map((l) => /^\* (\d+) EXISTS/.exec(l)).find(Boolean);
  return Number(exists?.[1] ?? NaN);
}

async function fill(t: Target, corpus: Corpus): Promise<{ seconds: number; how: string }> {
  const c = await login(t);
  const caps = (await c.ok('CAPABILITY', { collect: true })).untagged.join(' ').toUpperCase().split(' ');
  const start = performance.now();
  const window: Promise<Reply>[] = [];
  let failed = 0;
  const settle = async () => {
    const r = await window.shift()!;
    if (r.status !== 'OK') failed++;
  };
  // MULTIAPPEND (RFC 3502) where the server has it: many messages per command and transaction.
  // The stored bytes, flags and dates are the same either way.
  const batch = caps.includes('MULTIAPPEND') ? 100 : 1;
  for (let i = 0; i < corpus.messages.length; i += batch) {
    window.push(c.appendMany('INBOX', corpus.messages.slice(i, i + batch)));
    if (window.length >= 32) await settle();
  }
  while (window.length > 0) await settle();
  const seconds = (performance.now() - start) / 1000;
  await c.ok('LOGOUT').catch(() => undefined);
  c.close();
  if (failed > 0) throw new Error(`${t.name}: ${failed} APPENDs failed`);
  return { seconds, how: batch > 1 ? `MULTIAPPEND of ${batch} messages, 32 commands pipelined` : 'one APPEND per message, 32 pipelined' };
}

/** A small message for the IDLE rounds. */
function ping(k: number): Buffer {
  return Buffer.from(`From: <alice@sender.example>\r\nTo: <${USER}>\r\nSubject: ping ${k}\r\nDate: ${rfc5322Date(new Date())}\r\nMessage-ID: <ping.${k}.${Date.now()}@sender.example>\r\n\r\nping ${k}\r\n`);
}

/** Resolves with performance.now() when the connection reports more than `count` messages. */
function existsAbove(c: Imap, count: { n: number }, timeoutMs = 20_000): Promise<number> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      c.onUntagged = null;
      resolve(NaN);
    }, timeoutMs);
    c.onUntagged = (line) => {
      const m = /^\* (\d+) EXISTS/.exec(line);
      if (m && Number(m[1]) > count.n) {
        count.n = Number(m[1]);
        clearTimeout(timer);
        c.onUntagged = null;
        resolve(performance.now());
      }
    };
  });
}

async function measure(t: Target, corpus: Corpus, log: (s: string) => void): Promise<{ figures: Figures; notes: string[] }> {
  const figures: Figures = new Map();
  const notes: string[] = [];
  const set = (k: string, v: number) => figures.set(k, v);

  const filled = await fill(t, corpus);
  const fillNote = `filled INBOX with ${corpus.messages.length} messages in ${filled.seconds.toFixed(1)} s (${(corpus.messages.length / filled.seconds).toFixed(0)} messages/s; ${filled.how}); not counted below`;
  log(`${t.name}: ${fillNote}`);
  notes.push(fillNote);

  // 1. Log in and open the mailbox: first time after a server start, then again.
  await t.restart();
  if (PARTS.has('login')) {
    const openOnce = async () => {
      const t0 = performance.now();
      const c = await Imap.connect(t.port());
      const t1 = performance.now();
      await c.ok(`LOGIN "${t.user}" "${t.password}"`);
      const t2 = performance.now();
      const exists = await selectInbox(c);
      const t3 = performance.now();
      if (exists !== corpus.messages.length) throw new Error(`${t.name}: SELECT says ${exists} messages, expected ${corpus.messages.length}`);
      return { c, connect: t1 - t0, login: t2 - t1, select: t3 - t2, total: t3 - t0 };
    };
    const cold = await openOnce();
    cold.c.close();
    set('open.cold.total', cold.total);
    set('open.cold.login', cold.login);
    set('open.cold.select', cold.select);
    const warm: { connect: number; login: number; select: number; total: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const o = await openOnce();
      await o.c.ok('LOGOUT').catch(() => undefined);
      o.c.close();
      warm.push(o);
      await sleep(100);
    }
    set('open.warm.total', median(warm.map((o) => o.total)));
    set('open.warm.login', median(warm.map((o) => o.login)));
    set('open.warm.select', median(warm.map((o) => o.select)));
    log(`${t.name}: login + SELECT done`);

    // 1b. Fifty clients of the mailbox, which one session holds open, send LOGIN at the same moment
    // (connected and greeted first, 25 per source address as in section 5).
    {
      const holder = await login(t);
      await selectInbox(holder);
      const clients = await Promise.all(Array.from({ length: LOGIN_BURST }, (_, i) => Imap.connect(t.port(), `127.0.1.${1 + Math.floor(i / PER_SOURCE_ADDRESS)}`)));
      const times = await Promise.all(
        clients.map(async (cl) => {
          const t0 = performance.now();
          const r = await cl.send(`LOGIN "${t.user}" "${t.password}"`, { timeoutMs: 300_000 });
          return r.status === 'OK' ? performance.now() - t0 : NaN;
        }),
      );
      for (const cl of clients) cl.close();
      holder.close();
      const refused = times.filter((x) => !Number.isFinite(x)).length;
      if (refused > 0) notes.push(`LOGIN x${LOGIN_BURST}: ${refused} refused`);
      const ok = times.filter((x) => Number.isFinite(x));
      set('login50.avg', ok.reduce((a, b) => a + b, 0) / ok.length);
      set('login50.max', Math.max(...ok));
      log(`${t.name}: ${LOGIN_BURST} logins at once done`);
    }
  }

  // 2. FETCH 1:* (FLAGS ENVELOPE), and 3. SEARCH, on one selected connection.
  const c = await login(t);
  await selectInbox(c);
  if (PARTS.has('fetch')) {
    const fetchRuns: number[] = [];
    for (let i = 0; i < 4; i++) {
      const before = c.bytesIn;
      const t0 = performance.now();
      let count = 0;
      c.onUntagged = (l) => void (/^\* \d+ FETCH/.test(l) && count++);
      await c.ok('FETCH 1:* (FLAGS ENVELOPE)', { timeoutMs: 300_000 });
      fetchRuns.push(performance.now() - t0);
      c.onUntagged = null;
      if (i === 0) {
        set('fetch.bytes', c.bytesIn - before);
        if (count !== corpus.messages.length) notes.push(`FETCH returned ${count} responses, not ${corpus.messages.length}`);
      }
    }
    set('fetch.first', fetchRuns[0]!);
    set('fetch.again', median(fetchRuns.slice(1)));
    // What a syncing client (mbsync, Thunderbird) asks first: UIDs, flags, envelopes and sizes.
    const uidFetchRuns: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await c.ok('UID FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE)', { timeoutMs: 300_000 });
      uidFetchRuns.push(performance.now() - t0);
    }
    set('uidfetch.again', median(uidFetchRuns));
    log(`${t.name}: FETCH done`);
  }
  if (PARTS.has('search')) {
    const searches: [string, string, number][] = [
      ['subject', `SEARCH SUBJECT "${SUBJECT_WORD}"`, corpus.expect.subject],
      ['from', `SEARCH FROM "${FROM_WORD}"`, corpus.expect.from],
      ['body', `SEARCH BODY "${BODY_WORD}"`, corpus.expect.body],
      ['unseen', 'SEARCH UNSEEN', corpus.expect.unseen],
      ['text', `SEARCH TEXT "${BODY_WORD}"`, corpus.expect.body],
      ['since', `SEARCH SINCE ${SINCE}`, corpus.expect.since],
      ['larger', `SEARCH LARGER ${LARGER_THAN}`, corpus.expect.larger],
      ['flagged', 'SEARCH FLAGGED UNDELETED', -1],
    ];
    for (const [key, command, expected] of searches) {
      const runs: number[] = [];
      let hits = 0;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await c.ok(command, { collect: true, timeoutMs: 300_000 });
        runs.push(performance.now() - t0);
        hits = r.untagged.filter((l) => l.startsWith('* SEARCH')).reduce((n, l) => n + l.split(' ').length - 2, 0);
      }
      set(`search.${key}.first`, runs[0]!);
      set(`search.${key}.again`, median(runs.slice(1)));
      set(`search.${key}.hits`, hits);
      if (expected >= 0 && hits !== expected) notes.push(`${command}: ${hits} hits, the corpus has ${expected}`);
    }
    // SORT and THREAD (RFC 5256) of the whole mailbox; the answers are kept to compare the servers'
    const answers = new Map<string, string>();
    for (const [key, command] of ORDERINGS) {
      const runs: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await c.ok(command, { collect: true, timeoutMs: 300_000 }).catch((e: Error) => (notes.push(`${command}: ${e.message}`), null));
        if (!r) break;
        runs.push(performance.now() - t0);
        answers.set(key, r.untagged.find((l) => /^\* (SORT|THREAD)\b/.test(l)) ?? '');
      }
      if (runs.length === 0) continue;
      set(`${key}.first`, runs[0]!);
      set(`${key}.again`, median(runs.slice(1)));
    }
    orderAnswers.set(t.name, answers);
  }
  // The server with this one mailbox open, fetched and searched, after its garbage is collected.
  const heap = await t.settle();
  set('mem.open', t.memory().rssKiB);
  if (heap) notes.push(`one mailbox open, ${heap}`);
  await c.ok('LOGOUT').catch(() => undefined);
  c.close();
  log(`${t.name}: SEARCH, SORT and THREAD done`);

  // 4. IDLE: how soon an idling connection hears of a message another session APPENDs, and of
  // one delivered as new mail.
  let appender = await login(t);
  if (PARTS.has('idle')) {
    const idler = await login(t);
    const count = { n: await selectInbox(idler) };
    const stopIdle = await idler.idle();
    const okToExists: number[] = [];
    const sentToExists: number[] = [];
    for (let k = 0; k < 10; k++) {
      const heard = existsAbove(idler, count);
      const t0 = performance.now();
      const r = await appender.append('INBOX', { raw: ping(k), flags: [], internalDate: imapDate(new Date()) });
      const tOk = performance.now();
      if (r.status !== 'OK') throw new Error(`${t.name}: APPEND: ${r.status} ${r.text}`);
      const tExists = await heard;
      okToExists.push(tExists - tOk);
      sentToExists.push(tExists - t0);
      await sleep(100);
    }
    const missed = okToExists.filter((x) => !Number.isFinite(x)).length;
    if (missed > 0) notes.push(`IDLE: ${missed} of 10 APPENDs were not announced within 20 s`);
    set('idle.append.ok', median(okToExists));
    set('idle.append.sent', median(sentToExists));
    if (t.deliver) {
      const d = await t.deliver.open();
      const lat: number[] = [];
      for (let k = 0; k < 10; k++) {
        const heard = existsAbove(idler, count);
        await d.send(ping(100 + k));
        const accepted = performance.now();
        lat.push((await heard) - accepted);
        await sleep(100);
      }
      d.close();
      const lost = lat.filter((x) => !Number.isFinite(x)).length;
      if (lost > 0) notes.push(`IDLE: ${lost} of 10 deliveries were not announced within 20 s`);
      set('idle.deliver', median(lat));
      notes.push(`delivery: ${t.deliver.label}`);
    }
    await stopIdle().catch(() => undefined);
    idler.close();
    log(`${t.name}: IDLE done`);
  }

  // 5. Memory per idle connection: 500 connections, each logged in, INBOX selected, in IDLE. The
  // server starts afresh, so memory freed by the FETCH and SEARCH above (which a process keeps for
  // reuse) does not hide what the connections take; the appender stays connected throughout, so
  // the mailbox is open before and after.
  appender.close();
  if (PARTS.has('memory')) {
    await t.restart();
    appender = await login(t);
    const probe = await login(t);
    await t.settle();
    const before = t.memory();
    const conns: Imap[] = [];
    const counts: { n: number }[] = [];
    let next = 0;
    const t0 = performance.now();
    const worker = async () => {
      while (next < IDLE_CONNECTIONS) {
        const i = next++;
        const conn = await login(t, `127.0.0.${2 + Math.floor(i / PER_SOURCE_ADDRESS)}`);
        conns[i] = conn;
        counts[i] = { n: await selectInbox(conn) };
        await conn.idle();
      }
    };
    try {
      await Promise.all(Array.from({ length: 8 }, worker));
      set('open500', (performance.now() - t0) / 1000);
      await sleep(1000);
      const heap500 = await t.settle();
      const after = t.memory();
      if (heap500) notes.push(`${IDLE_CONNECTIONS} idle, ${heap500}`);
      set('mem.rss', (after.rssKiB - before.rssKiB) / IDLE_CONNECTIONS);
      set('mem.pss', (after.pssKiB - before.pssKiB) / IDLE_CONNECTIONS);
      notes.push(
        `memory: ${(before.rssKiB / 1024).toFixed(0)} MiB RSS in ${before.processes} process(es) before, ${(after.rssKiB / 1024).toFixed(0)} MiB in ${after.processes} after ${IDLE_CONNECTIONS} idle connections`,
      );
      log(`${t.name}: ${IDLE_CONNECTIONS} idle connections open`);

      // A NOOP on another connection while the 500 only idle (median of 10).
      const noops: number[] = [];
      for (let k = 0; k < 10; k++) {
        const n0 = performance.now();
        await probe.ok('NOOP');
        noops.push(performance.now() - n0);
        await sleep(50);
      }
      set('idle500.noop', median(noops));

      // With all of them idling: how long until the last one hears of an APPEND, how long the
      // APPEND itself takes, and whether a NOOP on yet another connection is answered meanwhile.
      const heard = Promise.all(conns.map((conn, i) => existsAbove(conn, counts[i]!, 120_000)));
      const sent = performance.now();
      const appended = appender.append('INBOX', { raw: ping(200), flags: [], internalDate: imapDate(new Date()) }).then((r) => {
        if (r.status !== 'OK') throw new Error(`${t.name}: APPEND: ${r.status} ${r.text}`);
        return performance.now();
      });
      await sleep(5);
      const noopSent = performance.now();
      await probe.ok('NOOP', { timeoutMs: 300_000 });
      set('fanout.noop', performance.now() - noopSent);
      set('fanout.append', (await appended) - sent);
      const times = await heard;
      const missing = times.filter((x) => !Number.isFinite(x)).length;
      if (missing > 0) notes.push(`IDLE x${IDLE_CONNECTIONS}: ${missing} connections did not hear of the APPEND within 120 s`);
      set('fanout', Math.max(...times.filter((x) => Number.isFinite(x))) - sent);
      set('fanout.median', median(times.map((x) => x - sent)));
    } finally {
      for (const conn of conns) conn?.close();
      appender.close();
      probe.close();
    }
    log(`${t.name}: memory and fan-out done`);
  }
  for (const w of t.warnings()) notes.push(`log: ${w}`);
  return { figures, notes };
}

const ORDERINGS: [key: string, command: string][] = [
  ['sort.date', 'SORT (REVERSE DATE) UTF-8 ALL'],
  ['sort.subject', 'SORT (SUBJECT) UTF-8 ALL'],
  ['thread.refs', 'THREAD REFERENCES UTF-8 ALL'],
  ['thread.subject', 'THREAD ORDEREDSUBJECT UTF-8 ALL'],
];
/** Each server's SORT / THREAD answer lines, by ORDERINGS key. */
const orderAnswers = new Map<string, Map<string, string>>();

/** The top-level threads of a `* THREAD (..)(..)` line. */
function threadsOf(line: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  const body = line.replace(/^\* THREAD ?/, '');
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '(' && depth++ === 0) start = i;
    else if (body[i] === ')' && --depth === 0) out.push(body.slice(start, i + 1));
  }
  return out;
}

/** How fe's answer differs from Dovecot's: 'same', or a count of what differs. */
function compareAnswers(key: string, a: string, b: string): string {
  if (a === b) return 'same';
  if (key.startsWith('thread.')) {
    const theirs = new Set(threadsOf(b));
    const ours = threadsOf(a);
    const missing = ours.filter((x) => !theirs.has(x)).length;
    return `${missing} of ${ours.length} fe threads not in Dovecot's ${theirs.size}${missing === 0 ? ' (order differs)' : ''}`;
  }
  const x = a.split(' ').slice(2);
  const y = b.split(' ').slice(2);
  const moved = x.filter((n, i) => y[i] !== n).length;
  return `${moved} of ${x.length} positions differ`;
}

const ROWS: [key: string, label: string, unit: 'ms' | 's' | 'KiB' | 'B'][] = [
  ['open.cold.total', 'connect + LOGIN + SELECT, 1st after start', 'ms'],
  ['open.cold.login', '  of which LOGIN', 'ms'],
  ['open.cold.select', '  of which SELECT', 'ms'],
  ['open.warm.total', 'connect + LOGIN + SELECT, again (median of 5)', 'ms'],
  ['open.warm.login', '  of which LOGIN', 'ms'],
  ['open.warm.select', '  of which SELECT', 'ms'],
  ['login50.avg', `LOGIN x${LOGIN_BURST} at once, mailbox open: average`, 'ms'],
  ['login50.max', `LOGIN x${LOGIN_BURST} at once, mailbox open: slowest`, 'ms'],
  ['fetch.first', 'FETCH 1:* (FLAGS ENVELOPE), 1st', 'ms'],
  ['fetch.again', 'FETCH 1:* (FLAGS ENVELOPE), median of next 3', 'ms'],
  ['fetch.bytes', 'FETCH 1:* (FLAGS ENVELOPE), received', 'B'],
  ['uidfetch.again', 'UID FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE), median of 3', 'ms'],
  ['search.subject.first', `SEARCH SUBJECT ${SUBJECT_WORD}, 1st`, 'ms'],
  ['search.subject.again', `SEARCH SUBJECT ${SUBJECT_WORD}, median of next 2`, 'ms'],
  ['search.from.first', `SEARCH FROM ${FROM_WORD}, 1st`, 'ms'],
  ['search.from.again', `SEARCH FROM ${FROM_WORD}, median of next 2`, 'ms'],
  ['search.body.first', `SEARCH BODY ${BODY_WORD}, 1st`, 'ms'],
  ['search.body.again', `SEARCH BODY ${BODY_WORD}, median of next 2`, 'ms'],
  ['search.unseen.first', 'SEARCH UNSEEN, 1st', 'ms'],
  ['search.unseen.again', 'SEARCH UNSEEN, median of next 2', 'ms'],
  ['search.text.first', `SEARCH TEXT ${BODY_WORD}, 1st`, 'ms'],
  ['search.text.again', `SEARCH TEXT ${BODY_WORD}, median of next 2`, 'ms'],
  ['search.since.again', `SEARCH SINCE ${SINCE}, median of next 2`, 'ms'],
  ['search.larger.again', `SEARCH LARGER ${LARGER_THAN}, median of next 2`, 'ms'],
  ['search.flagged.again', 'SEARCH FLAGGED UNDELETED, median of next 2', 'ms'],
  ...ORDERINGS.flatMap(([key, command]): [string, string, 'ms'][] => [
    [`${key}.first`, `${command.replace(/ UTF-8 ALL$/, '')}, 1st`, 'ms'],
    [`${key}.again`, `${command.replace(/ UTF-8 ALL$/, '')}, median of next 2`, 'ms'],
  ]),
  ['idle.append.ok', 'IDLE: APPEND tagged OK -> EXISTS (median of 10)*', 'ms'],
  ['idle.append.sent', 'IDLE: APPEND sent -> EXISTS (median of 10)', 'ms'],
  ['idle.deliver', 'IDLE: delivery accepted -> EXISTS (median of 10)', 'ms'],
  ['mem.open', `server RSS, one ${MESSAGES}-message mailbox open (after GC)`, 'KiB'],
  ['open500', `open ${IDLE_CONNECTIONS} connections (LOGIN, SELECT, IDLE)`, 's'],
  ['mem.rss', 'memory per idle connection, RSS', 'KiB'],
  ['mem.pss', 'memory per idle connection, PSS (after GC)', 'KiB'],
  ['idle500.noop', `NOOP on another connection, ${IDLE_CONNECTIONS} idle (median of 10)`, 'ms'],
  ['fanout.median', `IDLE x${IDLE_CONNECTIONS}: APPEND sent -> EXISTS, median connection`, 'ms'],
  ['fanout', `IDLE x${IDLE_CONNECTIONS}: APPEND sent -> EXISTS, last connection`, 'ms'],
  ['fanout.append', `IDLE x${IDLE_CONNECTIONS}: APPEND round trip`, 'ms'],
  ['fanout.noop', `IDLE x${IDLE_CONNECTIONS}: NOOP on another connection meanwhile`, 'ms'],
];

function format(v: number | undefined, unit: string): string {
  if (v === undefined || !Number.isFinite(v)) return 'n/a';
  if (unit === 'B') return `${(v / 1024).toFixed(0)} KiB`;
  if (unit === 'KiB') return v >= 10_240 ? `${(v / 1024).toFixed(0)} MiB` : `${v.toFixed(0)} KiB`;
  if (unit === 's') return `${v.toFixed(1)} s`;
  if (unit === 'ms') return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ms`;
  return String(v);
}

export async function benchImap(): Promise<void> {
  const started = performance.now();
  const corpus = makeCorpus(MESSAGES);
  const bin = findDovecot();
  const version = bin ? (await run(bin, ['--version']).catch(() => ({ code: -1, out: '?' }))).out.trim() : null;
  console.log(
    `\nIMAP benchmark: fe vs Dovecot ${version ?? '(not installed)'} (${DOVECOT_FORMAT}) on loopback, ${process.version}; ${MESSAGES} messages, ` +
      `${(corpus.bytes / 1024 / 1024).toFixed(1)} MiB (${(corpus.bytes / MESSAGES / 1024).toFixed(1)} KiB average)`,
  );
  const log = (s: string) => console.log(`  .. ${s}`);
  const results: { name: string; figures: Figures; notes: string[] }[] = [];
  const fe = await startFe();
  try {
    results.push({ name: 'fe', ...(await measure(fe, corpus, log)) });
  } finally {
    await fe.stop();
  }
  if (!bin) {
    console.log('Dovecot: skipped, it is not installed. For the comparison: apt-get install dovecot-imapd (the bench starts its own instance).');
  } else {
    let dc: Target | null = null;
    try {
      dc = await startDovecot(bin);
      results.push({ name: 'dovecot', ...(await measure(dc, corpus, log)) });
    } catch (e) {
      console.log(`Dovecot: skipped after an error: ${(e as Error).message}`);
    } finally {
      await dc?.stop();
    }
  }
  const feFig = results[0]!.figures;
  const dcFig = results[1]?.figures;
  const w = 54;
  console.log(['metric'.padEnd(w), 'fe'.padStart(12), 'dovecot'.padStart(12), 'fe/dovecot'.padStart(11)].join(' '));
  for (const [key, label, unit] of ROWS) {
    const a = feFig.get(key);
    const b = dcFig?.get(key);
    const ratio = a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && a > 0 && b > 0 ? (a / b).toFixed(2) : '-';
    console.log([label.padEnd(w), format(a, unit).padStart(12), format(b, unit).padStart(12), ratio.padStart(11)].join(' '));
  }
  console.log('* negative: the idling connection heard EXISTS before the appending one got its tagged OK.');
  const hits = (f: Figures | undefined, k: string) => (f ? String(f.get(`search.${k}.hits`) ?? '?') : '-');
  console.log(
    `hits (fe / dovecot / in the corpus): SUBJECT ${hits(feFig, 'subject')}/${hits(dcFig, 'subject')}/${corpus.expect.subject}, FROM ${hits(feFig, 'from')}/${hits(dcFig, 'from')}/${corpus.expect.from}, ` +
      `BODY ${hits(feFig, 'body')}/${hits(dcFig, 'body')}/${corpus.expect.body}, UNSEEN ${hits(feFig, 'unseen')}/${hits(dcFig, 'unseen')}/${corpus.expect.unseen}`,
  );
  const feAnswers = orderAnswers.get('fe');
  const dcAnswers = orderAnswers.get('dovecot');
  if (feAnswers && dcAnswers) {
    console.log(`answers (fe vs dovecot): ${ORDERINGS.map(([key, command]) => `${command.replace(/ UTF-8 ALL$/, '')}: ${compareAnswers(key, feAnswers.get(key) ?? '', dcAnswers.get(key) ?? '')}`).join('; ')}`);
  }
  for (const r of results) for (const n of r.notes) console.log(`${r.name}: ${n}`);
  console.log(
    `notes: fe logs in with scrypt (N=2^15), which also unwraps the mailbox key; Dovecot checks a SHA512-CRYPT hash. Dovecot runs one process per connection, ` +
      `so its RSS sum counts shared pages once per process; PSS shares them out. fe's connections come from ${Math.ceil(IDLE_CONNECTIONS / PER_SOURCE_ADDRESS)} loopback addresses ` +
      `(its IMAP server takes 50 per address). Dovecot waits 0.5 s after a change before it tells IDLE clients (NOTIFY_DELAY_MSECS in its mailbox watcher). ` +
      `Dovecot's figures depend on its mailbox format: ${DOVECOT_FORMAT} here (FE_BENCH_DOVECOT_FORMAT=sdbox for Dovecot's own). IMAP part: ${((performance.now() - started) / 1000).toFixed(0)} s.`,
  );
}
