// Export and import figures: `fe import` of an mbox of 10,000 messages into an encrypted
// mailbox, then `fe export --mbox` and `--maildir` of it, beside Dovecot doing the same work on
// the same mbox in the same run: `doveadm import` into a Maildir, then `doveadm backup` to
// mbox:PATH and maildir:PATH. Each step is one process, timed from spawn to exit; its peak RSS
// is its VmHWM, sampled until it exits. fe decrypts (and for import, encrypts) as it goes.
//
// Dovecot comes from Debian's dovecot-imapd (doveadm); without it fe's figures print alone.
// doveadm runs without a Dovecot server: as an unprivileged user with USER and HOME set, it
// opens mail_location directly (under root, as nobody: Dovecot refuses mail access as root).
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FE_BIN, workspace } from '../helpers/fe.js';
import { makeCorpus } from './imap.bench.js';

const MESSAGES = Number(process.env.FE_BENCH_EXPORT_MESSAGES) || 10_000;
const PASSWORD = 'export bench password';

interface Measured {
  seconds: number;
  peakMiB: number;
  code: number;
  output: string;
}

function hwmMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0; // exited between two samples
  }
}

/** Runs one step to its exit: wall time, peak RSS (last VmHWM seen), exit code, output. */
function measure(cmd: string, args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let output = '';
    let peak = 0;
    const sample = setInterval(() => (peak = Math.max(peak, hwmMiB(child.pid!))), 10);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(sample);
      resolve({ seconds: (performance.now() - t) / 1000, peakMiB: peak, code: code ?? -1, output });
    });
    child.stdin.end(opts.stdin ?? '');
  });
}

/** The corpus as one mboxrd file (LF line ends, From_ lines quoted). */
function writeMbox(file: string): number {
  const parts: string[] = [];
  for (const m of makeCorpus(MESSAGES).messages) {
    const body = m.raw.toString('latin1').replace(/\r\n/g, '\n').replace(/^(>*From )/gm, '>$1');
    parts.push(`From bench@sender.example Mon Jan  1 00:00:00 2024\n${body.endsWith('\n') ? body : body + '\n'}\n`);
  }
  const data = Buffer.from(parts.join(''), 'latin1');
  writeFileSync(file, data);
  return data.length;
}

function bytesUnder(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.size;
  let n = 0;
  for (const e of readdirSync(p)) n += bytesUnder(path.join(p, e));
  return n;
}

/** Messages in a Maildir's INBOX (cur and new): each side must have moved every message. */
function maildirCount(root: string): number {
  return ['cur', 'new'].reduce((n, sub) => n + (existsSync(path.join(root, sub)) ? readdirSync(path.join(root, sub)).length : 0), 0);
}

function doveadmPath(): string | null {
  return ['/usr/bin/doveadm', '/usr/local/bin/doveadm'].find((p) => existsSync(p)) ?? null;
}

function passwdEntry(name: string): { uid: number; gid: number } | null {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

function chownTree(p: string, uid: number, gid: number): void {
  chownSync(p, uid, gid);
  if (statSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(path.join(p, e), uid, gid);
}

export async function benchExport(): Promise<void> {
  const base = mkdtempSync(path.join(tmpdir(), 'fe-bench-export-'));
  chmodSync(base, 0o755);
  // The mbox sits where doveadm may dot-lock it (its folder is handed to Dovecot's user below).
  const dir = path.join(base, 'dovecot');
  mkdirSync(path.join(dir, 'src'), { recursive: true });
  const mbox = path.join(dir, 'src', 'corpus.mbox');
  const mboxBytes = writeMbox(mbox);
  const mb = mboxBytes / 1e6;

  // fe: a mailbox alias in a workspace, then import and the two exports.
  const w = workspace('hostname: mail.example.org\ndata_dir: ./data\n');
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  const fe = (args: string[]) => measure(process.execPath, [FE_BIN, '--config', w.config, ...args, '--password-stdin'], { stdin: `${PASSWORD}\n` });
  const feImport = await fe(['import', 'me@example.org', '--mbox', mbox]);
  const feMbox = await fe(['export', 'me@example.org', '--mbox', '--single', '-o', path.join(w.dir, 'out.mbox')]);
  const feMaildir = await fe(['export', 'me@example.org', '--maildir', '-o', path.join(w.dir, 'out-md')]);
  for (const [name, r] of [['fe import', feImport], ['fe export --mbox', feMbox], ['fe export --maildir', feMaildir]] as const) {
    if (r.code !== 0) throw new Error(`${name} failed (${r.code}): ${r.output.slice(-400)}`);
  }

  if (maildirCount(path.join(w.dir, 'out-md')) !== MESSAGES) throw new Error(`fe's Maildir export holds ${maildirCount(path.join(w.dir, 'out-md'))} messages, not ${MESSAGES}`);

  // Dovecot: the same mbox into a Maildir, then out to mbox and Maildir.
  const doveadm = doveadmPath();
  let dove: { import: Measured; mbox: Measured; maildir: Measured } | null = null;
  if (doveadm) {
    const root = process.getuid?.() === 0;
    const user = root ? (passwdEntry('nobody') ?? { uid: 65534, gid: 65534 }) : { uid: process.getuid!(), gid: process.getgid!() };
    mkdirSync(path.join(dir, 'home'));
    mkdirSync(path.join(dir, 'empty'));
    const conf = path.join(dir, 'dovecot.conf');
    writeFileSync(
      conf,
      [
        `mail_location = maildir:${dir}/mail`,
        'first_valid_uid = 1',
        'namespace inbox {\n  inbox = yes\n  separator = /\n  prefix =\n}',
        `base_dir = ${dir}/run`,
        `state_dir = ${dir}/state`,
        'log_path = /dev/stderr',
        'ssl = no',
        '',
      ].join('\n'),
    );
    if (root) {
      chownTree(dir, user.uid, user.gid);
    }
    const env = { USER: 'bench', HOME: `${dir}/home` };
    const run = (args: string[]) =>
      root
        ? measure('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', doveadm, '-c', conf, ...args], { env })
        : measure(doveadm, ['-c', conf, ...args], { env });
    const imported = await run(['import', `mbox:${dir}/empty:INBOX=${mbox}`, '', 'all']);
    const toMbox = await run(['backup', `mbox:${dir}/out-mbox`]);
    const toMaildir = await run(['backup', `maildir:${dir}/out-md`]);
    for (const [name, r] of [['doveadm import', imported], ['doveadm backup mbox', toMbox], ['doveadm backup maildir', toMaildir]] as const) {
      if (r.code !== 0 || /error/i.test(r.output)) throw new Error(`${name} failed (${r.code}): ${r.output.slice(-400)}`);
    }
    if (maildirCount(`${dir}/out-md`) !== MESSAGES) throw new Error(`Dovecot's Maildir backup holds ${maildirCount(`${dir}/out-md`)} messages, not ${MESSAGES}`);
    dove = { import: imported, mbox: toMbox, maildir: toMaildir };
  }

  console.log(`\n## export and import (${MESSAGES} messages, ${mb.toFixed(0)} MB of mbox; each step one process)`);
  console.log(`fe's mailbox after import: ${(bytesUnder(path.join(w.dataDir, 'mailboxes')) / 1e6).toFixed(0)} MB encrypted; Dovecot's Maildir: ${dove ? (bytesUnder(path.join(base, 'dovecot', 'mail')) / 1e6).toFixed(0) + ' MB' : '-'}`);
  console.log('| step | fe s | Dovecot s | fe / Dovecot time | fe MB/s | fe peak RSS MiB | Dovecot peak RSS MiB |');
  console.log('|---|---|---|---|---|---|---|');
  const row = (name: string, f: Measured, d: Measured | undefined) =>
    console.log(`| ${name} | ${f.seconds.toFixed(2)} | ${d ? d.seconds.toFixed(2) : '-'} | ${d ? (f.seconds / d.seconds).toFixed(2) : '-'} | ${(mb / f.seconds).toFixed(0)} | ${f.peakMiB.toFixed(0)} | ${d ? d.peakMiB.toFixed(0) : '-'} |`);
  row('import the mbox (fe import / doveadm import)', feImport, dove?.import);
  row('export to one mbox (fe export --mbox --single / doveadm backup mbox:)', feMbox, dove?.mbox);
  row('export to Maildir (fe export --maildir / doveadm backup maildir:)', feMaildir, dove?.maildir);
  if (!dove) console.log('(Dovecot is not installed: apt-get install dovecot-imapd for the comparison)');
  rmSync(w.dir, { recursive: true, force: true });
  rmSync(base, { recursive: true, force: true });
}
