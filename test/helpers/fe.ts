// Runs the real `bin/fe` in a child process against a throw-away config and data directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const FE_BIN = path.join(ROOT, 'bin', 'fe');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  stdin?: string | Uint8Array;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export function runFe(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined, ...opts.env })) {
      if (v !== undefined) env[k] = v;
    }
    const child = spawn(process.execPath, [FE_BIN, ...args], { env, cwd: opts.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}

/** A fresh folder with an fe.yml (hostname mail.example.org, data under ./data) and a runner bound to it. */
export function workspace(yaml?: string) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-test-'));
  const config = path.join(dir, 'fe.yml');
  writeFileSync(config, yaml ?? 'hostname: mail.example.org\ndata_dir: ./data\n');
  const fe = (args: string[], opts: RunOptions = {}) => runFe(['--config', config, ...args], opts);
  return {
    dir,
    config,
    dataDir: path.join(dir, 'data'),
    fe,
    read: () => readFileSync(config, 'utf8'),
    write: (text: string) => writeFileSync(config, text),
    /** fe that must succeed; returns stdout. */
    ok: async (args: string[], opts: RunOptions = {}) => {
      const r = await fe(args, opts);
      if (r.code !== 0) throw new Error(`fe ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      return r.stdout;
    },
  };
}

/** Every regular file under dir (recursively). */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}
