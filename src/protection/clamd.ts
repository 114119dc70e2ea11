// The viruses layer: the message goes to clamd over its unix socket or TCP with INSTREAM
// (clamd(8): "zINSTREAM\0", chunks each prefixed by a 4-byte big-endian length, a zero-length
// chunk to end), and clamd answers "stream: OK" or "stream: <name> FOUND". Nothing touches the
// disk: clamd reads the stream into its own memory.
import { connect, type Socket } from 'node:net';
import type { EngineAddress, LayerSettings } from '../config/schema.js';
import type { LayerVerdict, ProtectionLayer, ScanInput } from './layer.js';

const CHUNK = 64 * 1024;
const MAX_REPLY = 4096;

export class ClamdError extends Error {}

export type ClamdAnswer = { clean: true } | { clean: false; signature: string };

function describe(address: EngineAddress): string {
  return 'path' in address ? address.path : `${address.host}:${address.port}`;
}

/** One request/response exchange on a fresh connection (clamd closes after each z-command). */
function exchange(address: EngineAddress, send: (socket: Socket) => void, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ClamdError('clamd: time budget spent'));
    const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | null, value?: string) => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const onAbort = () => finish(new ClamdError(`clamd at ${describe(address)} did not answer in time`));
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('connect', () => send(socket));
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      const all = Buffer.concat(chunks);
      const nul = all.indexOf(0);
      if (nul >= 0) finish(null, all.subarray(0, nul).toString('utf8'));
      else if (size > MAX_REPLY) finish(new ClamdError('clamd sent an overlong reply'));
    });
    socket.on('end', () => {
      const all = Buffer.concat(chunks).toString('utf8').replace(/\0.*$/s, '');
      if (all) finish(null, all);
      else finish(new ClamdError(`clamd at ${describe(address)} closed the connection without an answer`));
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish(new ClamdError(`clamd at ${describe(address)}: ${e.code ?? e.message}`)));
  });
}

/** Parses an INSTREAM reply: "stream: OK", "stream: Name FOUND", or an error ("... ERROR"). */
export function parseScanReply(reply: string): ClamdAnswer {
  const r = reply.trim();
  const m = /^(?:stream|[^:]*): (.*)$/s.exec(r);
  const body = m ? m[1]!.trim() : r;
  if (body === 'OK') return { clean: true };
  if (body.endsWith(' FOUND')) return { clean: false, signature: body.slice(0, -' FOUND'.length).trim() };
  if (body.endsWith(' ERROR')) throw new ClamdError(`clamd: ${body.slice(0, -' ERROR'.length).trim()}`);
  throw new ClamdError(`clamd: unexpected reply "${r.slice(0, 100)}"`);
}

/** Streams `data` to clamd and returns its finding. Throws ClamdError when clamd cannot answer. */
export async function clamdScan(address: EngineAddress, data: Uint8Array, signal?: AbortSignal): Promise<ClamdAnswer> {
  const reply = await exchange(
    address,
    (socket) => {
      socket.write('zINSTREAM\0');
      for (let off = 0; off < data.length; off += CHUNK) {
        const piece = data.subarray(off, Math.min(off + CHUNK, data.length));
        const len = Buffer.alloc(4);
        len.writeUInt32BE(piece.length);
        socket.write(len);
        socket.write(piece);
      }
      socket.write(Buffer.alloc(4)); // the zero-length chunk ends the stream
    },
    signal,
  );
  return parseScanReply(reply);
}

export interface ClamdVersion {
  engine: string; // "ClamAV 1.0.7"
  signatures: number | null; // database version
  signatureDate: Date | null; // when that database was built
}

/** "ClamAV 1.0.7/27123/Mon Dec  1 09:27:01 2026" (or just "ClamAV 1.0.7" without a daily.cvd). */
export function parseVersion(reply: string): ClamdVersion {
  const [engine = '', db, date] = reply.trim().split('/');
  const when = date ? new Date(date.replace(/\s+/g, ' ') + ' UTC') : null;
  return { engine, signatures: db && /^\d+$/.test(db) ? Number(db) : null, signatureDate: when && !Number.isNaN(when.getTime()) ? when : null };
}

/** clamd's VERSION answer, for `fe status`. */
export async function clamdVersion(address: EngineAddress, signal?: AbortSignal): Promise<ClamdVersion> {
  const reply = await exchange(address, (s) => s.write('zVERSION\0'), signal);
  if (!/^ClamAV /.test(reply)) throw new ClamdError(`clamd: unexpected reply "${reply.slice(0, 100)}"`);
  return parseVersion(reply);
}

export function virusesLayer(settings: LayerSettings & { clamd: EngineAddress; maxSize: number }): ProtectionLayer {
  return {
    name: 'viruses',
    async scan(input: ScanInput, signal: AbortSignal): Promise<LayerVerdict> {
      // Beyond the size budget only the head is scanned (clamd refuses a stream over its StreamMaxLength).
      const truncated = input.raw.length > settings.maxSize;
      const answer = await clamdScan(settings.clamd, truncated ? input.raw.subarray(0, settings.maxSize) : input.raw, signal);
      const extra = truncated ? ['scanned-head-only'] : [];
      if (answer.clean) return { layer: 'viruses', action: 'accept', symbols: extra.length ? extra : undefined };
      const name = answer.signature.replace(/[^\x21-\x7e]/g, '_').slice(0, 100);
      return { layer: 'viruses', action: 'reject', code: 554, reply: `5.7.1 Virus found: ${name}`, symbols: [`virus:${name}`, ...extra] };
    },
  };
}
