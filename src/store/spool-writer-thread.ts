// The thread side of the spool writer (spool-writer.ts): seals one message and makes it durable
// with plain blocking calls. Blocking is the point: on this thread it costs no other session
// anything, and the nine file operations of a durable write are nine syscalls here instead of
// nine hops through libuv's pool and back to the event loop.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parentPort } from 'node:worker_threads';
import { sealParts, type SealRecipient } from '../crypto/seal.js';
import { fsyncDir, writeFileAtomic } from '../util/atomic-file.js';

export interface SpoolWriteRequest {
  n: number;
  file: string;
  key: SealRecipient;
  parts: Uint8Array[];
}

export type SpoolWriteReply = { n: number; ok: true } | { n: number; ok: false; message: string; code?: string; name: string };

function write(req: SpoolWriteRequest): void {
  const dir = path.dirname(req.file);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    fsyncDir(path.dirname(dir)); // the new folder's entry must be durable too
  }
  writeFileAtomic(req.file, sealParts(req.parts, req.key), 0o600);
}

parentPort!.on('message', (req: SpoolWriteRequest) => {
  let reply: SpoolWriteReply;
  try {
    write(req);
    reply = { n: req.n, ok: true };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    reply = { n: req.n, ok: false, message: err.message, name: err.name, ...(typeof err.code === 'string' ? { code: err.code } : {}) };
  }
  parentPort!.postMessage(reply);
});
