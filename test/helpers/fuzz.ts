// A mutation fuzzer for line protocols: takes a valid client session (the chunks a real client
// writes), mutates it (byte flips, truncations, huge tokens, random literals, CR/LF/NUL
// injection, repeated slices as pipelining) and plays it against a server from a chosen address,
// in one write or in pieces. Seeded: a failing case names its seed, and replaying that seed alone
// (FE_FUZZ_SEED=N FE_FUZZ_CONCURRENCY=1) sends the same bytes.
import net from 'node:net';
import { prng } from './prng.js';

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

const INJECT = ['\r\n', '\r', '\n', '\0', '\r\n\r\n', '.\r\n', '\r\n.\r\n', ' ', '"', '\\', '(', ')', '{', '}', '[', ']', '*', '%', '\x7f', '\xff', '\u00e9'];

/** The mutations, each taking the session's bytes and returning the mutated ones. */
const MUTATIONS: Record<string, (b: Buffer, r: Rand) => Buffer> = {
  flip: (b, r) => {
    const c = Buffer.from(b);
    for (let i = 1 + int(r, 4); i > 0 && c.length > 0; i--) c[int(r, c.length)]! ^= 1 << int(r, 8);
    return c;
  },
  truncate: (b, r) => b.subarray(0, int(r, b.length + 1)),
  hugeToken: (b, r) => {
    const at = int(r, b.length + 1);
    const size = pick(r, [1000, 8193, 65_537, 300_000]);
    return Buffer.concat([b.subarray(0, at), Buffer.alloc(size, pick(r, ['A', '9', '(', '"', '%', ' '])), b.subarray(at)]);
  },
  literal: (b, r) => {
    const at = int(r, b.length + 1);
    const size = pick(r, [0, 1, 5, 100, 8192, 8193, 4_294_967_295, 99_999_999_999]);
    const plus = r() < 0.5 ? '+' : '';
    const tilde = r() < 0.2 ? '~' : '';
    const body = Buffer.alloc(Math.min(size, int(r, 2000)), 'x');
    return Buffer.concat([b.subarray(0, at), Buffer.from(` ${tilde}{${size}${plus}}\r\n`), body, b.subarray(at)]);
  },
  inject: (b, r) => {
    const at = int(r, b.length + 1);
    return Buffer.concat([b.subarray(0, at), Buffer.from(pick(r, INJECT), 'latin1'), b.subarray(at)]);
  },
  repeat: (b, r) => {
    const from = int(r, b.length + 1);
    const slice = b.subarray(from, from + int(r, 200));
    return Buffer.concat([b.subarray(0, from), ...Array<Buffer>(1 + int(r, 50)).fill(slice), b.subarray(from)]);
  },
  cut: (b, r) => {
    const from = int(r, b.length + 1);
    return Buffer.concat([b.subarray(0, from), b.subarray(from + int(r, 40))]);
  },
  random: (b, r) => {
    const at = int(r, b.length + 1);
    const junk = Buffer.alloc(1 + int(r, 300));
    for (let i = 0; i < junk.length; i++) junk[i] = int(r, 256);
    return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
  },
};

export function mutate(chunks: string[], r: Rand): { bytes: Buffer; applied: string[] } {
  let bytes: Buffer = Buffer.from(chunks.join(''), 'utf8');
  const applied: string[] = [];
  for (let n = 1 + int(r, 3); n > 0; n--) {
    const name = pick(r, Object.keys(MUTATIONS));
    bytes = MUTATIONS[name]!(bytes, r);
    applied.push(name);
  }
  return { bytes, applied };
}

export interface Played {
  sent: number;
  received: number;
}

/**
 * Plays `bytes` to host:port from `localAddress`: all at once (pipelined) or in random pieces a
 * few ms apart, then waits until the server closes or is quiet for `quietMs`, and hangs up.
 */
export function play(port: number, localAddress: string, bytes: Buffer, r: Rand, quietMs = 400): Promise<Played> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let received = 0;
    let quiet: NodeJS.Timeout | null = null;
    const done = () => {
      if (quiet) clearTimeout(quiet);
      socket.destroy();
      resolve({ sent: bytes.length, received });
    };
    const hush = () => {
      if (quiet) clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    };
    socket.on('error', done);
    socket.on('close', done);
    let writing = false;
    socket.on('data', (d: Buffer) => {
      received += d.length;
      if (!writing) hush();
    });
    const write = async () => {
      writing = true;
      if (r() < 0.5) socket.write(bytes);
      else {
        for (let at = 0; at < bytes.length && !socket.destroyed; ) {
          const n = 1 + int(r, 400);
          socket.write(bytes.subarray(at, at + n));
          at += n;
          if (r() < 0.3) await new Promise((w) => setTimeout(w, int(r, 20)));
        }
      }
      writing = false;
      hush();
    };
    // After the greeting, mostly (an SMTP server refuses a client that talks first, and then
    // nothing else would be tried); sometimes before it.
    if (r() < 0.1) socket.once('connect', () => void write());
    else socket.once('data', () => void write());
  });
}

/**
 * Runs mutated sessions for `ms`, `concurrency` at a time, from addresses 127.{first..first+63}.x.y
 * (spread so login throttling does not make every later session the same refusal).
 */
export async function fuzzFor(opts: { port: number; sessions: string[][]; ms: number; seed: number; concurrency: number; firstOctet: number }): Promise<{ runs: number; mutations: Record<string, number> }> {
  const end = Date.now() + opts.ms;
  let runs = 0;
  const mutations: Record<string, number> = {};
  const worker = async (w: number) => {
    for (let i = w; Date.now() < end; i += opts.concurrency) {
      const r = prng(opts.seed + i);
      const { bytes, applied } = mutate(pick(r, opts.sessions), r);
      for (const a of applied) mutations[a] = (mutations[a] ?? 0) + 1;
      const address = `127.${opts.firstOctet + int(r, 64)}.${int(r, 256)}.${1 + int(r, 254)}`;
      await play(opts.port, address, bytes, r);
      runs++;
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, w) => worker(w)));
  return { runs, mutations };
}
