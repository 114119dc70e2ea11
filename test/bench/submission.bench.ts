// Sending figures for fe, side by side with Postfix in the same run: how fast the submission
// daemon accepts mail (STARTTLS, AUTH PLAIN, DKIM signing) and how fast the queue hands it to a
// local sink, with 1 and 16 client sessions and 10 KB messages.
//
// The sink is Postfix's `smtp-sink` (Debian's postfix package), started fresh for each side; it
// counts every completed DATA, which is how "delivered" is seen. fe runs as `fe serve --only
// submission,queue`; its queue finds the sink through an MX record on a loopback DNS server. The
// peer is a private Postfix instance (its own config, queue, data directory and log file under a
// temp folder, listening on 127.0.0.1 only) with submission over STARTTLS, SASL from a Cyrus
// sasldb (sasl2-bin's saslpasswd2), DKIM signing by an opendkim milter (Debian's opendkim) when
// that is installed, and relayhost = the sink. Both sides get the same messages from the same
// client below. Everything runs on 127.0.0.0/8; every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { startDnsServer } from '../helpers/dns-server.js';
import { startServe } from '../helpers/daemon.js';
import { workspace } from '../helpers/fe.js';
import { freePort, peakRssMiB, postfixLayout, resetPeak, run, startPrivatePostfix, startSink, treeRssMiB, waitListening, which, type Sink } from './postfix.js';

const MESSAGES = Number(process.env.FE_BENCH_SUBMISSION_MESSAGES) || 400;
const SIZE = 10 * 1024;
const SESSIONS = [1, 16];
const USER = 'bench@example.org';
const PASSWORD = 'correct horse battery staple';
const RCPT_DOMAIN = 'sink.example';
const WAIT_MS = 300_000; // the longest any one scenario may take to reach the sink

/** A 10 KB message without Message-ID and Date: both servers add them, as they do for clients. */
function message(i: number, size: number): Buffer {
  const line = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n';
  const head = `From: Bench <${USER}>\r\nTo: someone@${RCPT_DOMAIN}\r\nSubject: bench ${i}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`;
  return Buffer.from(head + line.repeat(Math.ceil((size - head.length) / line.length)));
}

// ---------------------------------------------------------------------------------------------
// The client: one SMTP session, STARTTLS, AUTH PLAIN, then MAIL/RCPT/DATA in lockstep.

class Session {
  private buf = '';
  private waiting: ((reply: string) => void) | null = null;
  private replies: string[] = [];
  private constructor(private socket: net.Socket | tls.TLSSocket) {
    this.listen(socket);
  }

  private listen(s: net.Socket | tls.TLSSocket): void {
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      this.buf += d;
      for (;;) {
        const m = /(^|\r\n)(\d{3}) [^\r\n]*\r\n/.exec(this.buf);
        if (!m) break;
        const end = m.index + m[0].length;
        this.replies.push(this.buf.slice(0, end));
        this.buf = this.buf.slice(end);
      }
      while (this.waiting && this.replies.length > 0) {
        const w = this.waiting;
        this.waiting = null;
        w(this.replies.shift()!);
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.waiting) this.waiting('(connection closed)');
    });
  }

  private reply(): Promise<string> {
    return new Promise((resolve) => {
      if (this.replies.length > 0) return resolve(this.replies.shift()!);
      this.waiting = resolve;
    });
  }

  async send(data: string | Buffer, expect: string): Promise<string> {
    this.socket.write(data);
    const r = await this.reply();
    if (!r.startsWith(expect)) throw new Error(`expected ${expect} to ${String(data).slice(0, 30).trim()}, got: ${r.trim()}`);
    return r;
  }

  static async open(port: number): Promise<Session> {
    const plain = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
    plain.setNoDelay(true); // each command is one write; Nagle would hold the end of DATA for an ACK
    const session = new Session(plain);
    const greeting = await session.reply();
    if (!greeting.startsWith('220')) throw new Error(`greeting: ${greeting}`);
    await session.send('EHLO client.bench.test\r\n', '250');
    await session.send('STARTTLS\r\n', '220');
    plain.removeAllListeners('data');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const t = tls.connect({ socket: plain, servername: 'mail.example.org', rejectUnauthorized: false }, () => resolve(t));
      t.once('error', reject);
    });
    session.socket = secure;
    session.listen(secure);
    const ehlo = await session.send('EHLO client.bench.test\r\n', '250');
    if (!/AUTH[ =][^\r\n]*PLAIN/i.test(ehlo)) throw new Error(`no AUTH PLAIN after STARTTLS: ${ehlo}`);
    await session.send(`AUTH PLAIN ${Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64')}\r\n`, '235');
    return session;
  }

  async mail(raw: Buffer, rcpt: string): Promise<void> {
    await this.send(`MAIL FROM:<${USER}>\r\n`, '250');
    await this.send(`RCPT TO:<${rcpt}>\r\n`, '250');
    await this.send('DATA\r\n', '354');
    await this.send(Buffer.concat([raw, Buffer.from('.\r\n')]), '250');
  }

  async quit(): Promise<void> {
    await this.send('QUIT\r\n', '221').catch(() => undefined);
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// The two servers.

interface Target {
  name: string;
  port: number;
  /** Peak RSS since the last reset, MiB (fe); or the process tree's RSS now (Postfix). */
  memory(): number;
  resetMemory(): void;
  notes: string[];
  stop(): Promise<void>;
}

async function startFe(sinkPort: number): Promise<Target> {
  const dns = await startDnsServer({
    [RCPT_DOMAIN]: { MX: [{ priority: 10, exchange: `mx.${RCPT_DOMAIN}` }] },
    [`mx.${RCPT_DOMAIN}`]: { A: ['127.0.0.1'] },
  });
  const w = workspace(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'log_level: warn',
      'listen:',
      '  submission: 127.0.0.1:0',
      '  submissions: off',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'outbound:',
      `  port: ${sinkPort}`,
      'limits:',
      '  send_messages_per_hour: 1000000',
      '  send_recipients_per_day: 10000000',
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', USER, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  // FE_BENCH_CPU_PROF=DIR: fe serve writes a V8 CPU profile there when it stops (node --cpu-prof).
  const prof = process.env.FE_BENCH_CPU_PROF;
  const fe = await startServe(w.config, ['--only', 'submission,queue'], {}, ['submission'], prof ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(prof)}`] : []);
  const pid = fe.child.pid!;
  const canReset = resetPeak(pid);
  return {
    name: 'fe',
    port: fe.ports.submission!,
    memory: () => peakRssMiB(pid),
    resetMemory: () => void resetPeak(pid),
    notes: [
      `fe serve --only submission,queue (one process, pid ${pid}), ${process.version}; peak RSS ${canReset ? 'reset between scenarios' : 'is the running maximum'}`,
      'fe per message: From/MAIL FROM send-as checks, Message-ID and Date added, RSA-2048 DKIM signature (mailauth) and its self-verification, ' +
        'the message sealed to the queue key and fsync\'d before 250, the sender\'s copy sealed to its own spool (save_sent), ' +
        'then the queue imports it into its encrypted SQLite database, looks up the MX on the loopback DNS server and delivers over one connection per destination domain',
    ],
    async stop() {
      const warnings = fe.log().split('\n').filter((l) => /warn|error/i.test(l));
      await fe.stop();
      await dns.close();
      rmSync(w.dir, { recursive: true, force: true });
      if (warnings.length > 0) console.log(`fe logged: ${[...new Set(warnings)].slice(0, 5).join(' | ')}`);
    },
  };
}

async function startPostfix(sinkPort: number): Promise<Target> {
  const layout = postfixLayout();
  const { dir, etc, uid, gid } = layout;
  mkdirSync(path.join(etc, 'sasl'));
  const port = await freePort();
  const notes: string[] = [];

  // TLS: a self-signed RSA-2048 certificate, as fe makes for itself.
  const cert = run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-subj', '/CN=mail.example.org', '-keyout', path.join(etc, 'key.pem'), '-out', path.join(etc, 'cert.pem')]);
  if (cert.code !== 0) throw new Error(`openssl: ${cert.out}`);

  // SASL: Cyrus auxprop from a sasldb. Debian's Postfix reads $config_directory/sasl/smtpd.conf.
  const saslpasswd2 = which('saslpasswd2');
  let sasl = false;
  if (saslpasswd2) {
    const db = path.join(etc, 'sasl', 'sasldb2');
    const [local, domain] = USER.split('@') as [string, string];
    const r = run(saslpasswd2, ['-p', '-c', '-f', db, '-u', domain, local], `${PASSWORD}\n`);
    if (r.code === 0) {
      chownSync(db, uid, gid);
      writeFileSync(path.join(etc, 'sasl', 'smtpd.conf'), `pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: ${db}\nmech_list: PLAIN LOGIN\n`);
      sasl = true;
    } else notes.push(`saslpasswd2 failed (${r.out.trim()}); Postfix runs without AUTH`);
  } else notes.push('no saslpasswd2 (apt-get install sasl2-bin): Postfix takes mail without AUTH, relaying for 127.0.0.0/8');

  // DKIM: an opendkim milter signing for example.org with its own RSA-2048 key.
  const opendkimBin = which('opendkim');
  let opendkim: ChildProcess | null = null;
  let milterSocket = '';
  if (opendkimBin) {
    const key = path.join(dir, 'dkim.key');
    const k = run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]);
    if (k.code !== 0) throw new Error(`openssl: ${k.out}`);
    chownSync(key, uid, gid);
    // A unix socket, as Debian's opendkim package sets up (local:/run/opendkim/opendkim.sock).
    const runDir = path.join(dir, 'opendkim');
    mkdirSync(runDir);
    chownSync(runDir, uid, gid); // opendkim makes its socket after dropping to the postfix user
    milterSocket = path.join(runDir, 'opendkim.sock');
    writeFileSync(
      path.join(dir, 'opendkim.conf'),
      [
        'Syslog no',
        'Background no',
        'Mode s',
        'Domain example.org',
        'Selector bench',
        `KeyFile ${key}`,
        'RequireSafeKeys no',
        'Canonicalization relaxed/relaxed',
        'OversignHeaders From',
        `Socket local:${milterSocket}`,
        'UMask 000',
        `PidFile ${path.join(runDir, 'opendkim.pid')}`,
        ...(process.getuid?.() === 0 ? ['UserID postfix'] : []),
        '',
      ].join('\n'),
    );
    opendkim = spawn(opendkimBin, ['-f', '-x', path.join(dir, 'opendkim.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    opendkim.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    opendkim.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitListening(milterSocket, 10_000, () => (opendkim!.exitCode !== null ? `opendkim exited: ${out}` : null));
  } else notes.push('no opendkim (apt-get install opendkim): Postfix sends unsigned mail');

  const mainCf = [
    'myhostname = mail.example.org',
    'mydomain = example.org',
    'myorigin = example.org',
    `relayhost = [127.0.0.1]:${sinkPort}`,
    'smtp_tls_security_level = may',
    `smtpd_tls_cert_file = ${etc}/cert.pem`,
    `smtpd_tls_key_file = ${etc}/key.pem`,
    'smtpd_sasl_path = smtpd',
    `smtpd_sender_login_maps = inline:{ ${USER}=${USER} }`,
    'milter_default_action = tempfail',
  ];
  const submission = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    '  -o syslog_name=postfix/submission',
    '  -o smtpd_tls_security_level=encrypt',
    ...(sasl
      ? ['  -o smtpd_sasl_auth_enable=yes', '  -o smtpd_tls_auth_only=yes', '  -o smtpd_sender_restrictions=reject_sender_login_mismatch', '  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject']
      : ['  -o smtpd_relay_restrictions=permit_mynetworks,reject']),
    ...(milterSocket ? [`  -o smtpd_milters=unix:${milterSocket}`] : []),
  ];
  const stopMilter = async () => {
    if (opendkim && opendkim.exitCode === null) {
      const gone = new Promise((r) => opendkim!.once('exit', r));
      opendkim.kill('SIGTERM');
      await gone;
    }
  };
  const postfix = await startPrivatePostfix(layout, port, mainCf, submission, stopMilter);
  const { masterPid, version } = postfix;
  notes.unshift(
    `Postfix ${version}, a private instance (postfix -c DIR start: its own queue_directory, data_directory and maillog_file, 127.0.0.1 only; master pid ${masterPid}); ` +
      `submission with STARTTLS required${sasl ? ', AUTH PLAIN from a Cyrus sasldb (a plaintext compare, no password hash), reject_sender_login_mismatch on MAIL FROM' : ''}` +
      `${milterSocket ? ', an opendkim milter on a unix socket, signing RSA-2048 relaxed/relaxed with From oversigned' : ''}; cleanup adds Message-ID and Date; ` +
      'the queue file is fsync\'d before 250 (plaintext, on disk); relayhost = the sink (no DNS lookup), up to 20 parallel deliveries (default_destination_concurrency_limit). ' +
      'Postfix does not: check the From header against the login, verify its own signature, keep a copy for Sent, or encrypt its queue. Its memory is the RSS sum of its process tree (shared pages counted once per process), sampled at the end of each scenario',
  );
  return {
    name: 'postfix',
    port,
    memory: () => treeRssMiB(masterPid) + (opendkim?.pid ? treeRssMiB(opendkim.pid) : 0),
    resetMemory: () => undefined,
    notes,
    stop: () => postfix.stop(),
  };
}

// ---------------------------------------------------------------------------------------------
// The measurement.

interface Figures {
  accept: number; // msg/s, first MAIL to last 250
  deliver: number; // msg/s, first MAIL until the sink has them all
  memory: number; // MiB
}

async function scenario(target: Target, sink: Sink, sessions: number, total: number): Promise<Figures> {
  const perSession = Math.ceil(total / sessions);
  const n = perSession * sessions;
  const clients = await Promise.all(Array.from({ length: sessions }, () => Session.open(target.port)));
  const base = sink.count();
  target.resetMemory();
  let k = 0;
  const start = process.hrtime.bigint();
  let lastAccept = start;
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < perSession; i++) {
        await c.mail(message(k++, SIZE), `r${k}@${RCPT_DOMAIN}`);
        lastAccept = process.hrtime.bigint();
      }
    }),
  );
  await sink.reach(base + n, WAIT_MS);
  const delivered = process.hrtime.bigint();
  const memory = target.memory();
  await Promise.all(clients.map((c) => c.quit()));
  const secs = (t: bigint) => Number(t - start) / 1e9;
  return { accept: n / secs(lastAccept), deliver: n / secs(delivered), memory };
}

export async function benchSubmission(): Promise<void> {
  const sinkBin = which('smtp-sink');
  console.log(`\nSubmission benchmark: fe vs Postfix on loopback, ${MESSAGES} messages of ${SIZE / 1024} KB per scenario, STARTTLS + AUTH PLAIN, one recipient each, delivered to smtp-sink`);
  if (!sinkBin) {
    console.log('skipped: no smtp-sink (apt-get install postfix; the bench starts its own instances and uses no system service)');
    return;
  }
  const results = new Map<string, Map<number, Figures>>();
  const notes: string[] = [];
  const sides: [string, (sinkPort: number) => Promise<Target>][] = [['fe', startFe]];
  if (which('postfix')) sides.push(['postfix', startPostfix]);
  else notes.push('Postfix: skipped, it is not installed (apt-get install postfix sasl2-bin opendkim for the comparison)');
  for (const [name, start] of sides) {
    const sink = await startSink(sinkBin);
    let target: Target | null = null;
    try {
      target = await start(sink.port);
      const figures = new Map<number, Figures>();
      // A short warm-up so first-use costs (JIT, key loading, connection set-up) stay out of the figures.
      await scenario(target, sink, 1, 10);
      for (const sessions of SESSIONS) figures.set(sessions, await scenario(target, sink, sessions, MESSAGES));
      results.set(name, figures);
      notes.push(...target.notes.map((t) => `${name}: ${t}`));
    } catch (e) {
      notes.push(`${name}: skipped after an error: ${(e as Error).message}`);
    } finally {
      await target?.stop();
      await sink.stop();
    }
  }
  const fe = results.get('fe');
  const pf = results.get('postfix');
  const w = 40;
  console.log(['metric'.padEnd(w), 'fe'.padStart(10), 'postfix'.padStart(10), 'fe/postfix'.padStart(11)].join(' '));
  const row = (label: string, a: number | undefined, b: number | undefined, unit: string) => {
    const f = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? 'n/a' : `${v.toFixed(v < 100 ? 1 : 0)}${unit}`);
    const ratio = a !== undefined && b !== undefined && a > 0 && b > 0 ? (a / b).toFixed(2) : '-';
    console.log([label.padEnd(w), f(a).padStart(10), f(b).padStart(10), ratio.padStart(11)].join(' '));
  };
  for (const s of SESSIONS) {
    row(`accept rate, ${s} session${s > 1 ? 's' : ''} (msg/s)`, fe?.get(s)?.accept, pf?.get(s)?.accept, '');
    row(`delivery rate, ${s} session${s > 1 ? 's' : ''} (msg/s)`, fe?.get(s)?.deliver, pf?.get(s)?.deliver, '');
    row(`memory, ${s} session${s > 1 ? 's' : ''} (MiB)*`, fe?.get(s)?.memory, pf?.get(s)?.memory, '');
  }
  console.log('* fe: peak RSS of its one process during the scenario; postfix: RSS sum of its processes (and opendkim\'s) at the end of the scenario.');
  console.log('accept rate: messages from the first MAIL to the last 250 reply; delivery rate: from the first MAIL until smtp-sink has counted them all.');
  for (const n of notes) console.log(n);
}
