// Sealing and the durable write of spool files on worker threads. Sealing is CPU (ML-KEM-768 is
// pure JavaScript, ~0.6 ms a message) and a durable write is four syscalls that wait on the disk;
// on the daemon's event loop both delay every other session. Two threads: the event loop keeps
// one core for the protocols, and while one thread waits on an fsync the other seals.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SealError, type SealRecipient } from '../crypto/seal.js';
import type { SpoolWriteReply, SpoolWriteRequest } from './spool-writer-thread.js';

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Thread {
  worker: Worker;
  pending: Map<number, Pending>;
}

const THREADS = Math.min(2, Math.max(1, availableParallelism()));
const threads: Thread[] = [];
let counter = 0;

function start(): Thread {
  const worker = new Worker(new URL('./spool-writer-thread.js', import.meta.url));
  const t: Thread = { worker, pending: new Map() };
  worker.unref(); // an idle writer never keeps a stopping daemon alive
  worker.on('message', (r: SpoolWriteReply) => {
    const p = t.pending.get(r.n);
    if (!p) return;
    t.pending.delete(r.n);
    if (t.pending.size === 0) worker.unref();
    if (r.ok) p.resolve();
    else p.reject(toError(r));
  });
  const fail = (e: Error) => {
    const i = threads.indexOf(t);
    if (i >= 0) threads.splice(i, 1); // the next write starts a new thread
    for (const p of t.pending.values()) p.reject(new Error(`spool writer thread stopped: ${e.message}`));
    t.pending.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  return t;
}

function toError(r: Extract<SpoolWriteReply, { ok: false }>): Error {
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

// A view into a larger buffer would be cloned whole: give the thread a copy of its own instead.
function ownBytes(part: Uint8Array): { bytes: Uint8Array; transfer: boolean } {
  if (part.byteOffset === 0 && part.byteLength === part.buffer.byteLength) return { bytes: part, transfer: false };
  return { bytes: new Uint8Array(part), transfer: true };
}

/**
 * Seals `parts` to `key` and writes them durably to `file` (temp file, fsync, rename, fsync of
 * the folder, which is created when missing) on a writer thread. Resolves once a crash can no
 * longer lose the file; rejects with the error the thread met (errno `code` kept).
 */
export function sealAndWrite(file: string, key: SealRecipient, parts: readonly Uint8Array[]): Promise<void> {
  const t = pick();
  const n = ++counter;
  const own = parts.map(ownBytes);
  const req: SpoolWriteRequest = { n, file, key, parts: own.map((o) => o.bytes) };
  return new Promise<void>((resolve, reject) => {
    t.pending.set(n, { resolve, reject });
    t.worker.ref(); // work in flight keeps the process up until it is durable
    t.worker.postMessage(req, own.filter((o) => o.transfer).map((o) => o.bytes.buffer as ArrayBuffer));
  });
}
