// Two work threads for the daemons' per-message work (work-thread.ts): checking a message
// (mailauth's DKIM/ARC body hashing runs byte by byte in JavaScript: ~8 ms for 1 MB) and sealing
// and writing spool files (ML-KEM is ~0.6 ms a message where Node lacks its own, see
// crypto/mlkem.ts; the fsyncs go on to libuv's pool). The event loop keeps a core for the
// protocols; two threads, because messages arrive together and one long check (a large
// message) should not hold up the next seal.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SealError } from '../crypto/seal.js';
import type { TaskReply, TaskRequest, Tasks } from './work-thread.js';

type Input<K extends keyof Tasks> = Parameters<Tasks[K]>[0];
type Output<K extends keyof Tasks> = Awaited<ReturnType<Tasks[K]>>;

interface Thread {
  worker: Worker;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  idle: NodeJS.Timeout | null;
}

const THREADS = Math.min(2, Math.max(1, availableParallelism()));
const threads: Thread[] = [];
let counter = 0;

/** A thread with nothing to do for this long stops, giving its memory (~30 MiB) back; the next message starts one again. */
let idleStopMs = 60_000;

/** How many work threads are running (tests check that idle ones stop). */
export function workThreadsRunning(): number {
  return threads.length;
}

/** Changes how long an idle thread lives (tests use a short one). */
export function setWorkThreadIdleStop(ms: number): void {
  idleStopMs = ms;
}

function start(): Thread {
  const worker = new Worker(new URL('./work-thread.js', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 8 } });
  const t: Thread = { worker, pending: new Map(), idle: null };
  worker.unref(); // an idle thread never keeps a stopping daemon alive
  worker.on('message', (r: TaskReply) => {
    const p = t.pending.get(r.n);
    if (!p) return;
    t.pending.delete(r.n);
    if (t.pending.size === 0) {
      worker.unref();
      t.idle = setTimeout(() => {
        forget(t);
        void worker.terminate();
      }, idleStopMs);
      t.idle.unref();
    }
    if (r.ok) p.resolve(r.value);
    else p.reject(toError(r));
  });
  const fail = (e: Error) => {
    forget(t); // the next task starts a new thread
    for (const p of t.pending.values()) p.reject(new Error(`work thread stopped: ${e.message}`));
    t.pending.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  return t;
}

function forget(t: Thread): void {
  if (t.idle) clearTimeout(t.idle);
  t.idle = null;
  const i = threads.indexOf(t);
  if (i >= 0) threads.splice(i, 1);
}

function toError(r: Extract<TaskReply, { ok: false }>): Error {
  const e = r.name === 'SealError' ? new SealError(r.message) : new Error(r.message);
  if (r.code) (e as NodeJS.ErrnoException).code = r.code; // ENOSPC, EDQUOT: callers answer 452
  return e;
}

/** The thread with the least work queued, starting threads up to THREADS. */
function pick(): Thread {
  if (threads.length < THREADS) {
    const t = start();
    threads.push(t);
    return t;
  }
  return threads.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
}

/**
 * A view into a larger buffer would be cloned whole (structured clone copies the ArrayBuffer):
 * such fields go as a copy of their own bytes, moved rather than cloned. The caller's bytes stay.
 */
function prepare(input: object): { input: object; transfer: ArrayBuffer[] } {
  const transfer: ArrayBuffer[] = [];
  const out: Record<string, unknown> = { ...input };
  for (const [k, v] of Object.entries(out)) {
    if (v instanceof Uint8Array && (v.byteOffset !== 0 || v.byteLength !== v.buffer.byteLength)) {
      const own = new Uint8Array(v);
      out[k] = own;
      transfer.push(own.buffer);
    }
  }
  return { input: out, transfer };
}

/** Runs one task on a work thread; rejects with the error it met there (its errno `code` kept). */
export function runOnThread<K extends keyof Tasks>(task: K, input: Input<K>): Promise<Output<K>> {
  const t = pick();
  const n = ++counter;
  const p = prepare(input);
  const req: TaskRequest = { n, task, input: p.input };
  return new Promise<Output<K>>((resolve, reject) => {
    if (t.idle) clearTimeout(t.idle);
    t.idle = null;
    t.pending.set(n, { resolve: resolve as (v: unknown) => void, reject });
    t.worker.ref(); // work in flight keeps the process up until it is done
    t.worker.postMessage(req, p.transfer);
  });
}
