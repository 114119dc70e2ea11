// Runs fe's bundled playbook on this host (ansible-playbook -c local) and turns its output into
// progress events: one per task with what it did, diffs in --check --diff runs, and the recap.
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ANSIBLE_DIR = fileURLToPath(new URL('../../../ansible', import.meta.url));

export type TaskStatus = 'ok' | 'changed' | 'skipping' | 'failed' | 'fatal' | 'included';

export type PlaybookEvent =
  | { kind: 'task'; name: string; handler: boolean }
  | { kind: 'result'; task: string; status: TaskStatus; message: string | null }
  | { kind: 'diff'; line: string }
  | { kind: 'recap'; ok: number; changed: number; failed: number; skipped: number; unreachable: number };

export interface PlaybookResult {
  ok: boolean;
  recap: { ok: number; changed: number; failed: number; skipped: number; unreachable: number } | null;
  changedTasks: string[];
  failedTasks: { task: string; message: string | null }[];
  exitCode: number;
}

/** Reads ansible's default output line by line; keeps state (the current task) between lines. */
export class PlaybookOutputReader {
  private task = '';
  private inDiff = false;

  line(raw: string): PlaybookEvent[] {
    const line = raw.replace(/\r$/, '');
    let m = /^(TASK|RUNNING HANDLER) \[(.+)\] \**$/.exec(line);
    if (m) {
      this.task = m[2]!;
      this.inDiff = false;
      return [{ kind: 'task', name: this.task, handler: m[1] === 'RUNNING HANDLER' }];
    }
    m = /^(ok|changed|skipping|failed|fatal|included): \[[^\]]+\](?: => \(item=.*\))?(?:: FAILED!)?(?: => (.*))?$/.exec(line);
    if (m) {
      this.inDiff = false;
      const status = m[1] as TaskStatus;
      return [{ kind: 'result', task: this.task, status, message: status === 'failed' || status === 'fatal' ? failureMessage(m[2] ?? null) : null }];
    }
    m = /^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)/.exec(line);
    if (m) return [{ kind: 'recap', ok: Number(m[1]), changed: Number(m[2]), unreachable: Number(m[3]), failed: Number(m[4]), skipped: Number(m[5]) }];
    if (/^--- before/.test(line)) this.inDiff = true;
    if (this.inDiff && line !== '') return [{ kind: 'diff', line }];
    return [];
  }
}

/** The "msg" of a failure's JSON, or the JSON itself shortened. */
function failureMessage(json: string | null): string | null {
  if (!json) return null;
  try {
    const v = JSON.parse(json) as { msg?: unknown; stderr?: unknown };
    const parts = [v.msg, v.stderr].filter((x): x is string => typeof x === 'string' && x.trim() !== '');
    return parts.join(': ') || json.slice(0, 500);
  } catch {
    return json.slice(0, 500);
  }
}

export interface RunOptions {
  vars: Record<string, unknown>;
  check?: boolean; // --check --diff: change nothing, show what would change
  onEvent?: (e: PlaybookEvent) => void;
  /** Extra ansible-playbook arguments (tests: a chroot connection, an inventory). */
  extraArgs?: string[];
  playbook?: string;
}

export async function ansibleAvailable(): Promise<boolean> {
  const r = await execa('ansible-playbook', ['--version'], { reject: false });
  return r.exitCode === 0;
}

export async function runPlaybook(opts: RunOptions): Promise<PlaybookResult> {
  // Variables go in a 0600 file (they may name a passphrase file), removed afterwards.
  const dir = mkdtempSync(path.join(tmpdir(), 'fe-ansible-'));
  const varsFile = path.join(dir, 'vars.json');
  writeFileSync(varsFile, JSON.stringify(opts.vars), { mode: 0o600 });
  const reader = new PlaybookOutputReader();
  const result: PlaybookResult = { ok: false, recap: null, changedTasks: [], failedTasks: [], exitCode: -1 };
  try {
    const args = ['-i', 'localhost,', '-c', 'local', ...(opts.extraArgs ?? []), '-e', `@${varsFile}`, ...(opts.check ? ['--check', '--diff'] : []), opts.playbook ?? path.join(ANSIBLE_DIR, 'site.yml')];
    const child = execa('ansible-playbook', args, {
      cwd: ANSIBLE_DIR,
      reject: false,
      all: true,
      buffer: false,
      env: { ANSIBLE_CONFIG: path.join(ANSIBLE_DIR, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', PYTHONUNBUFFERED: '1', ANSIBLE_STDOUT_CALLBACK: 'default' },
    });
    for await (const line of child.iterable({ from: 'all' })) {
      for (const e of reader.line(String(line))) {
        if (e.kind === 'result' && e.status === 'changed' && !result.changedTasks.includes(e.task)) result.changedTasks.push(e.task);
        if (e.kind === 'result' && (e.status === 'failed' || e.status === 'fatal')) result.failedTasks.push({ task: e.task, message: e.message });
        if (e.kind === 'recap') result.recap = { ok: e.ok, changed: e.changed, failed: e.failed, skipped: e.skipped, unreachable: e.unreachable };
        opts.onEvent?.(e);
      }
    }
    const done = await child;
    result.exitCode = done.exitCode ?? -1;
    result.ok = result.exitCode === 0;
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
