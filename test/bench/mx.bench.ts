// MX throughput: messages per second accepted into a mailbox (sealed + fsync'd) and forwarded
// (SRS + ARC + delivery to a peer MX), with 1 and 16 concurrent senders, 10 KB and 1 MB
// messages, and the fe serve process's peak RSS. Everything runs on loopback.
import { chownSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign } from '../../src/smtp/auth-check.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { startServe } from '../helpers/daemon.js';
import { workspace } from '../helpers/fe.js';
import { startPeerMx } from '../helpers/peer-mx.js';
import { smtpConnect } from '../helpers/smtp-client.js';
import { startClamd } from '../helpers/clamd.js';
import { freePort, peakRssMiB, postfixLayout, resetPeak, smtpSource, startPrivatePostfix, which } from './postfix.js';

function body(size: number): string {
  const line = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n';
  return `From: bench@sender.example\r\nTo: bench\r\nSubject: bench\r\nMessage-ID: <${Math.random()}@sender.example>\r\n\r\n` + line.repeat(Math.ceil(size / line.length));
}

async function sender(port: number, rcpt: string, message: string, count: number): Promise<void> {
  const s = await smtpConnect(port);
  await s.command('EHLO bench.test');
  for (let i = 0; i < count; i++) {
    const mail = await s.command('MAIL FROM:<bench@sender.example>');
    if (!mail.startsWith('250')) throw new Error(`MAIL: ${mail}`);
    await s.command(`RCPT TO:<${rcpt}>`);
    await s.command('DATA');
    const reply = await s.raw(message + '\r\n.\r\n');
    if (!reply.startsWith('250')) throw new Error(`DATA: ${reply}`);
  }
  await s.command('QUIT');
  s.close();
}

export async function benchMx(): Promise<void> {
  const peer = await startPeerMx();
  const dns = await startDnsServer({
    'target.example': { MX: [{ priority: 10, exchange: 'mx.peer.example' }] },
    'mx.peer.example': { A: ['127.0.0.1'] },
  });
  const w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nlog_level: warn\nlisten:\n  mx: 127.0.0.1:0\ndns:\n  servers: ["${dns.address}"]\noutbound:\n  port: ${peer.port}\n` +
      `limits:\n  message_size: 4000000\n  connections_per_ip: 100\n  messages_per_ip_per_minute: 1000000\n` +
      // the scenarios above predate content protection; benchProtection() measures its cost
      `protection: {executables: off, viruses: off, spam: off, phishing: off}\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
  await w.ok(['alias', 'add', 'fwd@example.org', '--forward', 'someone@target.example']);
  const fe = await startServe(w.config, ['--only', 'mx']);
  const pid = fe.child.pid!;
  const port = fe.ports.mx!;
  console.log(`MX benchmark (fe serve pid ${pid}, ${process.version}); per-scenario peak RSS ${resetPeak(pid) ? 'reset between scenarios' : 'is the running maximum'}`);
  console.log('target   senders  size     messages  seconds  msg/s    MB/s    peak RSS MiB');
  try {
    for (const target of ['mailbox', 'forward'] as const) {
      for (const size of [10 * 1024, 1024 * 1024]) {
        for (const senders of [1, 16]) {
          const total = size > 100_000 ? 64 : 800;
          const perSender = Math.ceil(total / senders);
          const message = body(size);
          const rcpt = target === 'mailbox' ? 'me@example.org' : 'fwd@example.org';
          resetPeak(pid);
          const start = process.hrtime.bigint();
          await Promise.all(Array.from({ length: senders }, () => sender(port, rcpt, message, perSender)));
          const seconds = Number(process.hrtime.bigint() - start) / 1e9;
          const n = perSender * senders;
          console.log(
            [
              target.padEnd(8),
              String(senders).padEnd(8),
              (size > 100_000 ? '1 MB' : '10 KB').padEnd(8),
              String(n).padEnd(9),
              seconds.toFixed(2).padEnd(8),
              (n / seconds).toFixed(1).padEnd(8),
              ((n * message.length) / seconds / 1e6).toFixed(1).padEnd(7),
              peakRssMiB(pid).toFixed(0),
            ].join(' '),
          );
        }
      }
    }
    console.log('note: the peer MX (smtp-server) waits 100 ms before its greeting, which bounds a single sender\'s forwards; fe opens one connection per forwarded message.');
  } finally {
    await fe.stop();
    await peer.close();
    await dns.close();
  }
}

/**
 * What content protection costs the MX: 10 KB messages into a mailbox, 16 senders, with the
 * executables and viruses layers on (a real clamd on a unix socket) beside the same fe with the
 * layers off, in the same run: fe on / fe off / ratio. The target: under 30% slower.
 */
export async function benchProtection(): Promise<void> {
  let clamd: Awaited<ReturnType<typeof startClamd>>;
  try {
    clamd = await startClamd();
  } catch (e) {
    console.log(`\nMX with content protection: skipped, clamd (Debian's clamav-daemon) does not start here: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  const dns = await startDnsServer({});
  const off = 'protection: {executables: off, viruses: off, spam: off, phishing: off}\n';
  const on = `protection: {executables: on, viruses: {clamd: ${clamd.socket}, fail: closed}, spam: off, phishing: off}\n`;
  const base = `hostname: mail.example.org\ndata_dir: ./data\nlog_level: warn\nlisten:\n  mx: 127.0.0.1:0\ndns:\n  servers: ["${dns.address}"]\nlimits:\n  connections_per_ip: 100\n  messages_per_ip_per_minute: 1000000\n`;
  // two fe serve processes, identical but for the protection block, measured in turn
  const start = async (protection: string) => {
    const w = workspace(base + protection);
    await w.ok(['domain', 'add', 'example.org']);
    await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
    return startServe(w.config, ['--only', 'mx']);
  };
  const feOff = await start(off);
  const feOn = await start(on);
  const message = body(10 * 1024);
  const rate = async (port: number): Promise<number> => {
    const senders = 16;
    const perSender = 50;
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: senders }, () => sender(port, 'me@example.org', message, perSender)));
    return (senders * perSender) / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
  try {
    console.log(`\nMX with content protection (clamd started in ${clamd.startMs} ms): 10 KB messages into a mailbox, 16 senders, 800 messages a run`);
    console.log('layers                      fe on msg/s  fe off msg/s  ratio (on/off)');
    await Promise.all([rate(feOff.ports.mx!), rate(feOn.ports.mx!)]); // warm-up: JIT, page cache, clamd's first connections
    // alternate off/on twice so a noisy neighbour hits both sides alike
    const offRates: number[] = [];
    const onRates: number[] = [];
    for (let i = 0; i < 2; i++) {
      offRates.push(await rate(feOff.ports.mx!));
      onRates.push(await rate(feOn.ports.mx!));
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const fOn = mean(onRates);
    const fOff = mean(offRates);
    console.log(`${'executables + viruses'.padEnd(27)} ${fOn.toFixed(1).padEnd(12)} ${fOff.toFixed(1).padEnd(13)} ${(fOn / fOff).toFixed(2)} (target: above 0.70)`);
    if (/protection layer could not run/.test(feOn.log())) console.log('warning: a layer was skipped during the run; the figures are not valid');
  } finally {
    await feOff.stop();
    await feOn.stop();
    await clamd.stop();
    await dns.close();
  }
}

/** CPU seconds (user + system) a process has used so far; Linux clock ticks are 1/100 s. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * fe's MX side by side with Postfix's smtpd in one run, both driven by Postfix's smtp-source, one
 * connection per message (its default), 1 and 16 sessions, 10 KB and 1 MB messages. fe runs every
 * authentication check (SPF, DKIM, DMARC, ARC) against the loopback DNS server: the messages are
 * DKIM-signed by sender.example, which publishes SPF for 127.0.0.1 and DMARC p=reject; each is
 * sealed to the mailbox key and fsync'd before 250. Postfix (a private instance) checks none of
 * that and queues each message (fsync'd) before 250, then delivers it to a Maildir (virtual).
 */
export async function benchMxPostfix(): Promise<void> {
  const source = which('smtp-source');
  const MESSAGES = Number(process.env.FE_BENCH_MX_MESSAGES) || 500;
  console.log(`\nMX accept rate, fe vs Postfix: smtp-source, one connection per message, ${MESSAGES} messages a run`);
  if (!source || !which('postfix')) {
    console.log('skipped: no smtp-source or postfix (apt-get install postfix)');
    return;
  }
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = key.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  // FE_BENCH_DNS_TTL (default 0): the records' TTL; 0 makes fe ask the DNS server for every message
  const ttl = Number(process.env.FE_BENCH_DNS_TTL ?? 0);
  const dns = await startDnsServer({
    'sender.example': { TXT: ['v=spf1 ip4:127.0.0.1 -all'], ttl },
    'bench._domainkey.sender.example': { TXT: [`v=DKIM1; k=rsa; p=${pub}`], ttl },
    '_dmarc.sender.example': { TXT: ['v=DMARC1; p=reject'], ttl },
    'mail.sender.example': { A: ['127.0.0.1'], TXT: ['v=spf1 ip4:127.0.0.1 -all'], ttl },
  });
  const files = new Map<number, string>();
  const tmp = path.join(tmpdir(), `fe-bench-mx-${process.pid}`);
  for (const size of [10 * 1024, 1024 * 1024]) {
    const signed = await dkimSign(Buffer.from(body(size)), { domain: 'sender.example', selector: 'bench', privateKeyPem: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
    const file = `${tmp}-${size}.eml`;
    writeFileSync(file, signed.toString('latin1').replace(/\r\n/g, '\n')); // smtp-source sends CRLF after each line
    files.set(size, file);
  }
  const w = workspace(
    `hostname: mail.example.org\ndata_dir: ./data\nlog_level: warn\nlisten:\n  mx: 127.0.0.1:0\ndns:\n  servers: ["${dns.address}"]\n` +
      `limits:\n  message_size: 4000000\n  connections_per_ip: 100\n  messages_per_ip_per_minute: 1000000\n` +
      `protection: {executables: off, viruses: off, spam: off, phishing: off}\n`,
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: 'correct horse battery staple\n' });
  // FE_BENCH_CPU_PROF=DIR: fe serve writes a V8 CPU profile there when it stops (node --cpu-prof).
  // FE_BENCH_MX_ROWS="10 KB x 1,1 MB x 16": only those rows (to profile one of them).
  const prof = process.env.FE_BENCH_CPU_PROF;
  const onlyRows = (process.env.FE_BENCH_MX_ROWS ?? '').split(',').map((r) => r.trim()).filter(Boolean);
  const fe = await startServe(w.config, ['--only', 'mx'], {}, ['mx'], prof ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(prof)}`] : []);
  const layout = postfixLayout();
  const mail = path.join(layout.dir, 'mail');
  const pfPort = await freePort();
  const postfix = await startPrivatePostfix(
    layout,
    pfPort,
    [
      'myhostname = mx.postfix.example',
      'virtual_mailbox_domains = example.org',
      `virtual_mailbox_base = ${mail}`,
      'virtual_mailbox_maps = inline:{ me@example.org=me/ }',
      `virtual_uid_maps = static:${layout.uid}`,
      `virtual_gid_maps = static:${layout.gid}`,
      'message_size_limit = 4000000',
      'smtpd_client_connection_rate_limit = 0',
    ],
    [`127.0.0.1:${pfPort} inet n - n - - smtpd`],
  ).catch(async (e: Error) => {
    await fe.stop();
    throw e;
  });
  const rows: string[] = [];
  try {
    mkdirSync(mail, { recursive: true });
    chownSync(mail, layout.uid, layout.gid);
    const send = (port: number, size: number, sessions: number, messages: number) =>
      smtpSource(source, port, { sessions, messages, from: 'bench@sender.example', to: 'me@example.org', helo: 'mail.sender.example', file: files.get(size)! });
    // warm-up: JIT, key loading, page cache
    await send(fe.ports.mx!, 10 * 1024, 4, 40);
    await send(postfix.port, 10 * 1024, 4, 40);
    // fe's CPU per message and its share of one core: whether a second core would help at all
    console.log(['messages'.padEnd(20), 'fe msg/s'.padStart(10), 'postfix msg/s'.padStart(14), 'fe/postfix'.padStart(11), 'fe CPU ms/msg'.padStart(14), 'fe core use'.padStart(12), 'fe peak MiB'.padStart(12)].join(' '));
    for (const size of [10 * 1024, 1024 * 1024]) {
      for (const sessions of [1, 16]) {
        const label = `${size > 100_000 ? '1 MB' : '10 KB'} x ${sessions}`;
        if (onlyRows.length > 0 && !onlyRows.includes(label)) continue;
        const cpu0 = cpuSeconds(fe.child.pid!);
        resetPeak(fe.child.pid!);
        const feSeconds = await send(fe.ports.mx!, size, sessions, MESSAGES);
        const feCpu = cpuSeconds(fe.child.pid!) - cpu0;
        const fePeak = peakRssMiB(fe.child.pid!);
        const feRate = MESSAGES / feSeconds;
        const pfRate = MESSAGES / (await send(postfix.port, size, sessions, MESSAGES));
        const row = [label.padEnd(20), feRate.toFixed(1).padStart(10), pfRate.toFixed(1).padStart(14), (feRate / pfRate).toFixed(2).padStart(11), ((feCpu / MESSAGES) * 1000).toFixed(1).padStart(14), `${((feCpu / feSeconds) * 100).toFixed(0)}%`.padStart(12), fePeak.toFixed(0).padStart(12)].join(' ');
        console.log(row);
        rows.push(row);
      }
    }
    console.log(`fe: fe serve --only mx, one process, ${process.version}, SPF+DKIM (RSA-2048)+DMARC+ARC checks on the loopback DNS server, sealed + fsync'd before 250, content protection layers off; ` +
      `postfix ${postfix.version}: smtpd with default restrictions, no SPF/DKIM/DMARC, queue file fsync'd before 250, then virtual(8) to a Maildir`);
    const warnings = fe.log().split('\n').filter((l) => /warn|error/i.test(l));
    if (warnings.length > 0) console.log(`fe logged: ${[...new Set(warnings)].slice(0, 5).join(' | ')}`);
  } finally {
    await fe.stop();
    await postfix.stop();
    await dns.close();
    for (const f of files.values()) rmSync(f, { force: true });
  }
}
