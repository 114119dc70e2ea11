// A work thread of fe's daemons (work-pool.ts starts them): the per-message work that is CPU,
// here instead of on the event loop that serves the sessions. What waits on the disk (fsync)
// goes on to libuv's pool, so the thread computes the next message meanwhile.
import { parentPort } from 'node:worker_threads';
import type { SealRecipient } from '../crypto/seal.js';
import { createResolver, type FeResolver } from '../dns/resolver.js';
import { checkAuth, type AuthCheckInput, type AuthVerdict } from '../smtp/auth-check.js';
import { writeSpoolFileAsync, type SpoolMeta } from '../store/spool.js';

export interface SpoolAppendTask {
  mailboxDir: string;
  publicKey: SealRecipient;
  id: string;
  message: Uint8Array;
  meta: SpoolMeta;
}

/** checkAuth's input, with the DNS servers to ask (fe.yml `dns.servers`; empty: the system's) in place of a resolver. */
export type CheckAuthTask = Omit<AuthCheckInput, 'resolver' | 'random' | 'message'> & { message: Uint8Array; dnsServers: string[] };

// One resolver per server list: its in-flight sharing works across the messages of this thread.
const resolvers = new Map<string, FeResolver>();
function resolverFor(servers: string[]): FeResolver {
  const key = servers.join(' ');
  let r = resolvers.get(key);
  if (!r) {
    r = createResolver({ servers });
    resolvers.set(key, r);
  }
  return r;
}

export const TASKS = {
  'spool-append': (t: SpoolAppendTask): Promise<void> => writeSpoolFileAsync(t.mailboxDir, t.publicKey, t.id, t.message, t.meta),
  'check-auth': ({ dnsServers, message, ...rest }: CheckAuthTask): Promise<AuthVerdict> =>
    checkAuth({ ...rest, message: Buffer.from(message.buffer, message.byteOffset, message.byteLength), resolver: resolverFor(dnsServers) }),
};

export type Tasks = typeof TASKS;

export interface TaskRequest {
  n: number;
  task: keyof Tasks;
  input: unknown;
}

export type TaskReply = { n: number; ok: true; value: unknown } | { n: number; ok: false; message: string; name: string; code?: string };

parentPort?.on('message', (req: TaskRequest) => {
  const reply = (r: TaskReply) => parentPort!.postMessage(r);
  const failed = (e: unknown) => {
    const err = e as NodeJS.ErrnoException;
    reply({ n: req.n, ok: false, message: err?.message ?? String(e), name: err?.name ?? 'Error', ...(typeof err?.code === 'string' ? { code: err.code } : {}) });
  };
  try {
    const run = TASKS[req.task] as (input: unknown) => unknown;
    Promise.resolve(run(req.input)).then((value) => reply({ n: req.n, ok: true, value }), failed);
  } catch (e) {
    failed(e);
  }
});
