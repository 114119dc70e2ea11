// What the benches that compare fe with Postfix share: small process helpers, Postfix's
// smtp-sink (counts completed DATA) and smtp-source (a parallel SMTP client), and a private
// Postfix instance (its own config, queue, data directory and log file under a temp folder,
// 127.0.0.1 only, started with `postfix -c DIR start`, never the system service).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export function which(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin']) {
    if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

export function run(cmd: string, args: string[], input = ''): { code: number; out: string } {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
}

export function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // Linux: resets VmHWM to the current RSS
    return true;
  } catch {
    return false;
  }
}

/** Resident memory of a process and all its descendants, in MiB (Postfix runs one process per job). */
export function treeRssMiB(root: number): number {
  const children = new Map<number, number[]>();
  const rss = new Map<number, number>();
  const ps = run('ps', ['-eo', 'pid=,ppid=,rss=']);
  for (const line of ps.out.split('\n')) {
    const [pid, ppid, kb] = line.trim().split(/\s+/).map(Number);
    if (!pid || ppid === undefined || kb === undefined) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    rss.set(pid, kb);
  }
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const p = stack.pop()!;
    total += rss.get(p) ?? 0;
    stack.push(...(children.get(p) ?? []));
  }
  return total / 1024;
}

/** Resolves once something accepts a TCP connection on the port (or a unix socket path); bounded. */
export async function waitListening(where: number | string, timeoutMs: number, failed: () => string | null = () => null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = failed();
    if (why) throw new Error(why);
    const ok = await new Promise<boolean>((resolve) => {
      const s = typeof where === 'number' ? net.connect(where, '127.0.0.1') : net.connect(where);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${where} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------------------------
// smtp-sink: counts completed DATA commands ("mesg=N" on its -c counter line).

export interface Sink {
  port: number;
  count(): number;
  /** Resolves once the sink has seen n messages in all; rejects after timeoutMs. */
  reach(n: number, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startSink(binary: string): Promise<Sink> {
  const port = await freePort();
  const args = ['-c', ...(process.getuid?.() === 0 ? ['-u', 'postfix'] : []), `127.0.0.1:${port}`, '256'];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let count = 0;
  let out = '';
  const waiters: { n: number; resolve: () => void }[] = [];
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const onData = (d: Buffer) => {
    out = (out + d.toString('latin1')).slice(-4096);
    const all = [...out.matchAll(/mesg=(\d+)/g)];
    if (all.length > 0) count = Number(all[all.length - 1]![1]);
    for (const w of [...waiters]) if (count >= w.n) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  await waitListening(port, 10_000, () => (child.exitCode !== null ? `smtp-sink exited: ${out}` : null));
  return {
    port,
    count: () => count,
    reach: (n, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        if (count >= n) return resolve();
        const timer = setTimeout(() => reject(new Error(`smtp-sink has ${count} of ${n} messages after ${timeoutMs / 1000} s`)), timeoutMs);
        waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
      }),
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// smtp-source: Postfix's test client, the same one against both servers.

export interface SourceRun {
  sessions: number; // -s
  messages: number; // -m
  from: string; // -f
  to: string; // -t
  helo: string; // -M
  /** -F: a message file with LF line ends (smtp-source sends CRLF after each line). */
  file?: string;
  /** -l: payload bytes when no file is given. */
  length?: number;
}

/** Runs smtp-source to completion against 127.0.0.1:port; the seconds it took. Throws on a refusal. */
export function smtpSource(binary: string, port: number, r: SourceRun): Promise<number> {
  const args = ['-s', String(r.sessions), '-m', String(r.messages), '-f', r.from, '-t', r.to, '-M', r.helo];
  if (r.file) args.push('-F', r.file);
  else if (r.length) args.push('-l', String(r.length));
  args.push(`127.0.0.1:${port}`);
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out = (out + d.toString('latin1')).slice(-2048)));
    child.stderr.on('data', (d: Buffer) => (out = (out + d.toString('latin1')).slice(-2048)));
    child.on('error', reject);
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      // smtp-source exits 0 even after some errors; it says "fatal" or "error" on stderr then
      if (code !== 0 || /fatal|error/i.test(out)) reject(new Error(`smtp-source ${args.join(' ')} exited ${code}: ${out.trim()}`));
      else resolve(seconds);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// A private Postfix instance.

export interface PostfixLayout {
  dir: string;
  etc: string;
  uid: number;
  gid: number;
}

/** The temp folder a private Postfix instance lives in (chmod 755: its processes run as postfix). */
export function postfixLayout(): PostfixLayout {
  const postfixUser = run('id', ['-u', 'postfix']);
  if (postfixUser.code !== 0) throw new Error('there is no postfix user (install Debian\'s postfix package)');
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-bench-postfix-'));
  chmodSync(dir, 0o755);
  const etc = path.join(dir, 'etc');
  mkdirSync(etc, { recursive: true });
  return { dir, etc, uid: Number(postfixUser.out.trim()), gid: Number(run('id', ['-g', 'postfix']).out.trim()) };
}

export interface PrivatePostfix {
  port: number;
  masterPid: number;
  version: string;
  logText(): string;
  /** Stops the instance, prints what it logged as a problem, removes its folder. */
  stop(): Promise<void>;
}

// The services a receive-and-queue path uses, none chrooted (the files are in the temp folder).
const SERVICES = [
  'pickup unix n - n 60 1 pickup',
  'cleanup unix n - n - 0 cleanup',
  'qmgr unix n - n 300 1 qmgr',
  'tlsmgr unix - - n 1000? 1 tlsmgr',
  'rewrite unix - - n - - trivial-rewrite',
  'bounce unix - - n - 0 bounce',
  'defer unix - - n - 0 bounce',
  'trace unix - - n - 0 bounce',
  'verify unix - - n - 1 verify',
  'flush unix n - n 1000? 0 flush',
  'proxymap unix - - n - - proxymap',
  'smtp unix - - n - - smtp',
  'relay unix - - n - - smtp',
  'virtual unix - n n - - virtual',
  'showq unix n - n - - showq',
  'error unix - - n - - error',
  'retry unix - - n - - error',
  'discard unix - - n - - discard',
  'anvil unix - - n - 1 anvil',
  'scache unix - - n - 1 scache',
  'postlog unix-dgram n - n - 1 postlogd',
];

/** Postfix prints its fatal errors to syslog, or to a terminal; run it on a pseudo-terminal to see them. */
function postfixSays(args: string[]): string {
  const r = which('script') ? run('script', ['-qec', ['postfix', ...args].join(' '), '/dev/null']) : run('postfix', args);
  return r.out.trim();
}

/**
 * Writes main.cf (a base plus `mainCf`) and master.cf (`listener`, the lines of the one smtpd
 * service on `port`, plus the internal services), starts Postfix and waits until it answers.
 */
export async function startPrivatePostfix(layout: PostfixLayout, port: number, mainCf: string[], listener: string[], onStop: () => Promise<void> = async () => undefined): Promise<PrivatePostfix> {
  const { dir, etc, uid, gid } = layout;
  const queue = path.join(dir, 'queue');
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'maillog');
  for (const d of [queue, data]) mkdirSync(d, { recursive: true });
  chownSync(data, uid, gid);
  writeFileSync(
    path.join(etc, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${queue}`,
      `data_directory = ${data}`,
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'command_directory = /usr/sbin',
      'daemon_directory = /usr/lib/postfix/sbin',
      'shlib_directory = /usr/lib/postfix',
      'meta_directory = /etc/postfix',
      // The log file must sit under one of maillog_file_prefixes, or `postfix start` exits 1
      // with the reason sent to a syslog that may not exist.
      `maillog_file = ${log}`,
      `maillog_file_prefixes = ${dir}`,
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      'mydestination =',
      'local_recipient_maps =',
      'alias_maps =',
      'alias_database =',
      ...mainCf,
      '',
    ].join('\n'),
  );
  writeFileSync(path.join(etc, 'master.cf'), [...listener, ...SERVICES, ''].join('\n'));
  const logText = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  const start = run('postfix', ['-c', etc, 'start']);
  if (start.code !== 0) {
    await onStop();
    throw new Error(`postfix -c ${etc} start exited ${start.code}: ${start.out.trim() || postfixSays(['-c', etc, 'check']) || '(no output)'}\n${logText()}`);
  }
  const pidFile = path.join(queue, 'pid', 'master.pid');
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok && existsSync(pidFile)) break;
    if (Date.now() > deadline) {
      run('postfix', ['-c', etc, 'stop']);
      await onStop();
      throw new Error(`postfix did not answer on ${port}:\n${logText()}`);
    }
    await sleep(100);
  }
  const masterPid = Number(readFileSync(pidFile, 'utf8').trim());
  const version = run('postconf', ['-c', etc, '-h', 'mail_version']).out.trim();
  return {
    port,
    masterPid,
    version,
    logText,
    async stop() {
      run('postfix', ['-c', etc, 'stop']);
      const until = Date.now() + 15_000;
      while (existsSync(`/proc/${masterPid}`) && Date.now() < until) await sleep(100);
      await onStop();
      const problems = logText().split('\n').filter((l) => /warning|error|fatal|panic/.test(l) && !/not owned by/.test(l));
      if (problems.length > 0) console.log(`postfix logged: ${[...new Set(problems.map((l) => l.replace(/^\w{3} \d+ [\d:]+ \S+ /, '').replace(/\[\d+\]/g, '')))].slice(0, 5).join(' | ')}`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
