// The MX side of a mailbox: mail for an offline owner is sealed to the mailbox public key and
// written as one file per message under <mailbox>/spool/. Only sealed bytes ever reach the disk;
// the file name is a time-ordered random id and reveals nothing about the message.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { open as openSealed, sealParts, type SealOpener, type SealRecipient } from '../crypto/seal.js';
import { fsyncDir, writeFileAtomic, writeFileAtomicAsync } from '../util/atomic-file.js';
import { runOnThread } from '../daemon/work-pool.js';

/** Which folder an imported message goes to, by special use (RFC 6154); INBOX when absent. */
export type SpoolFolder = '\\Sent' | '\\Junk';
const SPOOL_FOLDERS: readonly string[] = ['\\Sent', '\\Junk'];

export interface SpoolMeta {
  receivedAt: Date;
  envelopeFrom: string;
  envelopeTo: string;
  folder?: SpoolFolder;
}

export interface SpoolEntry {
  id: string;
  meta: SpoolMeta;
  message: Buffer;
}

export const SPOOL_DIR = 'spool';
export const FAILED_DIR = 'failed';
const SUFFIX = '.sealed';
// An id is the arrival time in microseconds (17 digits: the 14-digit millisecond time of the
// first format, then 3 digits below it) and 80 random bits, so a plain sort is arrival order and
// writers never collide. Ids of the first format (milliseconds only) stay readable and sort
// before the new ones of the same millisecond ('-' < '0').
const ID_RE = /^[0-9]{14}(?:[0-9]{3})?-[0-9a-f]{20}$/;
const PAYLOAD_VERSION = 1;

export class SpoolFormatError extends Error {}

export function spoolDir(mailboxDir: string): string {
  return path.join(mailboxDir, SPOOL_DIR);
}

export function isSpoolId(id: string): boolean {
  return ID_RE.test(id);
}

export function spoolFileName(id: string): string {
  return id + SUFFIX;
}

let lastMicros = 0;

/** Wall-clock microseconds, strictly increasing within this process. */
function nextMicros(): number {
  // performance.timeOrigin + now() has microsecond resolution and never steps back; if the wall
  // clock was stepped since this process started, Date.now() wins so ids stay near real time.
  let micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  const wallMs = Date.now();
  if (Math.abs(micros / 1000 - wallMs) > 5) micros = wallMs * 1000 + (micros % 1000);
  if (micros <= lastMicros) micros = lastMicros + 1;
  lastMicros = micros;
  return micros;
}

/**
 * A new spool id. Within one process each id sorts after the one before; across processes (MX,
 * submission, queue) ids sort by their microsecond arrival time, and two writers in the same
 * microsecond fall back to the random part.
 */
export function newSpoolId(): string {
  return `${String(nextMicros()).padStart(17, '0')}-${randomBytes(10).toString('hex')}`;
}

// Payload: u32 length of the JSON meta | JSON meta | message bytes. The id is inside the sealed
// part so a file copied under another name is detected instead of imported twice.
function encodeMeta(id: string, meta: SpoolMeta): Buffer {
  const json = Buffer.from(
    JSON.stringify({ v: PAYLOAD_VERSION, id, receivedAt: meta.receivedAt.toISOString(), envelopeFrom: meta.envelopeFrom, envelopeTo: meta.envelopeTo, ...(meta.folder ? { folder: meta.folder } : {}) }),
    'utf8',
  );
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([len, json]);
}

function checkMeta(meta: SpoolMeta): void {
  if (!(meta.receivedAt instanceof Date) || Number.isNaN(meta.receivedAt.getTime())) throw new TypeError('receivedAt must be a valid Date');
}

/** Checks and makes what a spool file needs: the path it goes to (the spool folder is made when missing). */
function spoolFilePath(mailboxDir: string, id: string, meta: SpoolMeta): string {
  checkMeta(meta);
  if (!isSpoolId(id)) throw new TypeError(`not a spool id: ${id}`);
  const dir = spoolDir(mailboxDir);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    fsyncDir(mailboxDir); // the new folder's entry must be durable too
  }
  return path.join(dir, spoolFileName(id));
}

/**
 * Seals one message under a given id and makes it durable: temp file (0600 from creation) ->
 * fsync -> rename -> fsync folder, so a crash leaves either nothing under a final name or the
 * whole file.
 */
export function writeSpoolFile(mailboxDir: string, publicKey: SealRecipient, id: string, message: Uint8Array, meta: SpoolMeta): void {
  const file = spoolFilePath(mailboxDir, id, meta);
  writeFileAtomic(file, sealParts([encodeMeta(id, meta), message], publicKey), 0o600);
}

/**
 * writeSpoolFile for a work thread: the seal is computed here, the disk waits happen on libuv's
 * pool (so the thread seals or checks the next message meanwhile), and concurrent files in one
 * spool share the folder fsync.
 */
export async function writeSpoolFileAsync(mailboxDir: string, publicKey: SealRecipient, id: string, message: Uint8Array, meta: SpoolMeta): Promise<void> {
  const file = spoolFilePath(mailboxDir, id, meta);
  await writeFileAtomicAsync(file, sealParts([encodeMeta(id, meta), message], publicKey), 0o600);
}

/** Seals one message and makes it durable; returns its id only once a crash can no longer lose it. */
export function appendToSpool(mailboxDir: string, publicKey: SealRecipient, message: Uint8Array, meta: SpoolMeta): string {
  const id = newSpoolId();
  writeSpoolFile(mailboxDir, publicKey, id, message, meta);
  return id;
}

/**
 * appendToSpool for daemons: the same file and guarantees, the sealing (ML-KEM is CPU) and the
 * disk waits on a work thread (src/daemon/work-pool.ts), so neither holds up other sessions. The
 * id is made here, on the caller's thread, so ids keep the order messages were handed over in.
 */
export async function appendToSpoolAsync(mailboxDir: string, publicKey: SealRecipient, message: Uint8Array, meta: SpoolMeta): Promise<string> {
  checkMeta(meta);
  const id = newSpoolId();
  await runOnThread('spool-append', { mailboxDir, publicKey, id, message, meta });
  return id;
}

/** Ids of the complete spool files, oldest first. Temp files and spool/failed are not listed. */
export function listSpool(mailboxDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(spoolDir(mailboxDir));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const ids: string[] = [];
  for (const n of names) {
    if (!n.endsWith(SUFFIX)) continue;
    const id = n.slice(0, -SUFFIX.length);
    if (isSpoolId(id)) ids.push(id);
  }
  return ids.sort();
}

export function spoolCount(mailboxDir: string): number {
  return listSpool(mailboxDir).length;
}

/** Opens one sealed spool file's bytes; throws SealError or SpoolFormatError. */
export function decodeSpoolFile(sealed: Uint8Array, privateKey: SealOpener): SpoolEntry {
  const plain = openSealed(sealed, privateKey);
  if (plain.length < 4) throw new SpoolFormatError('spool payload is truncated');
  const len = plain.readUInt32BE(0);
  if (4 + len > plain.length) throw new SpoolFormatError('spool payload is truncated');
  let m: { v?: unknown; id?: unknown; receivedAt?: unknown; envelopeFrom?: unknown; envelopeTo?: unknown; folder?: unknown };
  try {
    m = JSON.parse(plain.subarray(4, 4 + len).toString('utf8')) as typeof m;
  } catch {
    throw new SpoolFormatError('spool metadata is not JSON');
  }
  if (m.v !== PAYLOAD_VERSION) throw new SpoolFormatError(`unsupported spool payload version ${String(m.v)}`);
  if (typeof m.id !== 'string' || typeof m.receivedAt !== 'string' || typeof m.envelopeFrom !== 'string' || typeof m.envelopeTo !== 'string') {
    throw new SpoolFormatError('spool metadata is incomplete');
  }
  const receivedAt = new Date(m.receivedAt);
  if (Number.isNaN(receivedAt.getTime())) throw new SpoolFormatError('spool metadata has a bad date');
  if (m.folder !== undefined && !(typeof m.folder === 'string' && SPOOL_FOLDERS.includes(m.folder))) throw new SpoolFormatError('spool metadata names an unknown folder');
  const folder = m.folder as SpoolFolder | undefined;
  return { id: m.id, meta: { receivedAt, envelopeFrom: m.envelopeFrom, envelopeTo: m.envelopeTo, ...(folder ? { folder } : {}) }, message: plain.subarray(4 + len) };
}

/**
 * Removes temp files a writer left behind when it crashed before its rename. Only old ones: a
 * young temp file may belong to a writer that is still running.
 */
export function removeStaleSpoolTemps(mailboxDir: string, olderThanMs = 60 * 60 * 1000): number {
  const dir = spoolDir(mailboxDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  const limit = Date.now() - olderThanMs;
  for (const n of names) {
    if (!(n.startsWith('.') && n.endsWith('.tmp'))) continue;
    const file = path.join(dir, n);
    try {
      if (statSync(file).mtimeMs < limit) {
        rmSync(file, { force: true });
        removed++;
      }
    } catch {
      // vanished meanwhile: nothing to do
    }
  }
  return removed;
}
