// The one way into the outbound queue for a process that does not own it (submission, the MX
// for bounces, the CLI): the message and its envelope sealed to the queue's public key, written
// under queue/incoming/ and fsync'd. Once that returns, the message cannot be lost; the queue
// daemon imports the file into its database and removes it. Same pattern as a mailbox spool.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { MLKEM_PUBLIC_LEN, MLKEM_SEED_LEN, mlkemFromSeed, newMlkemSeed, open as openSealed, sealParts, type HybridPrivateKey, type HybridPublicKey, type SealOpener, type SealRecipient } from '../crypto/seal.js';
import { newSpoolId } from '../store/spool.js';
import { ensurePrivateDir, fsyncDir, writeFileAtomic } from '../util/atomic-file.js';

export interface QueueRecipient {
  address: string;
  /** RFC 3461 NOTIFY values as the client gave them (upper case); absent: failures and delays. */
  notify?: string[];
  /** RFC 3461 ORCPT, "rfc822;addr". */
  orcpt?: string;
}

export interface QueueSubmission {
  from: string; // envelope sender, '' for a bounce
  recipients: QueueRecipient[];
  /** The local mailbox that sent it: DSNs go into its spool. null for mail fe itself made. */
  owner: string | null;
  envid?: string | null;
  ret?: 'FULL' | 'HDRS' | null;
  requireTls?: boolean;
  /** A TLS report fe made (RFC 8460): its own delivery is not counted in the next report. */
  tlsReport?: boolean;
  submittedAt: Date;
}

export interface IncomingEntry {
  id: string;
  submission: QueueSubmission;
  message: Buffer;
}

const SUFFIX = '.sealed';
const PAYLOAD_VERSION = 1;

export function queueDir(dataDir: string): string {
  return path.join(dataDir, 'queue');
}

export function incomingDir(dataDir: string): string {
  return path.join(queueDir(dataDir), 'incoming');
}

function sealKeyFile(dataDir: string): string {
  return path.join(dataDir, 'secrets', 'queue-seal.key');
}

function sealPubFile(dataDir: string): string {
  return path.join(queueDir(dataDir), 'seal.pub');
}

// The ML-KEM-768 half of the queue's seal (from this version on): its 64-byte seed beside the
// X25519 key, its encapsulation key beside seal.pub. Queues made before have only the X25519 key
// and get the ML-KEM one the next time the owner of the private key (the queue daemon) starts.
function mlkemSeedFile(dataDir: string): string {
  return path.join(dataDir, 'secrets', 'queue-seal-mlkem.key');
}

function mlkemPubFile(dataDir: string): string {
  return path.join(queueDir(dataDir), 'seal-mlkem.pub');
}

/**
 * Writes `data` to `file` only if there is none yet, whole or not at all. Two processes making
 * the key at once must not each keep their own: mail sealed to the loser's key would not open.
 */
function createOnce(file: string, data: string, mode: number): void {
  const staged = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  writeFileAtomic(staged, data, mode);
  try {
    linkSync(staged, file);
    fsyncDir(path.dirname(file));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    rmSync(staged, { force: true });
  }
}

/**
 * The queue's sealing key pair (X25519 + ML-KEM-768), made on first use; the private halves are
 * 0600 server secrets. Public files are always derived from the private ones on disk.
 */
export function queueSealingKeys(dataDir: string): { publicKey: HybridPublicKey; privateKey: HybridPrivateKey } {
  const keyFile = sealKeyFile(dataDir);
  const seedFile = mlkemSeedFile(dataDir);
  ensurePrivateDir(path.dirname(keyFile));
  ensurePrivateDir(queueDir(dataDir));
  if (!existsSync(keyFile)) createOnce(keyFile, generateKeyPairSync('x25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  if (!existsSync(seedFile)) createOnce(seedFile, newMlkemSeed().toString('base64') + '\n', 0o600);
  const x25519 = createPrivateKey(readFileSync(keyFile, 'utf8'));
  const seed = Buffer.from(readFileSync(seedFile, 'utf8').trim(), 'base64');
  if (seed.length !== MLKEM_SEED_LEN) throw new Error(`${seedFile} does not hold a ${MLKEM_SEED_LEN}-byte ML-KEM seed; was it replaced?`);
  const mlkem = mlkemFromSeed(seed);
  seed.fill(0);
  const publicKey: HybridPublicKey = { x25519: createPublicKey(x25519), mlkem: mlkem.publicKey };
  const xPem = publicKey.x25519.export({ type: 'spki', format: 'pem' }) as string;
  const mPub = Buffer.from(mlkem.publicKey).toString('base64') + '\n';
  // Rewritten only when they differ, so writers reading them never see a file being replaced for nothing.
  if (readOr(sealPubFile(dataDir)) !== xPem) writeFileAtomic(sealPubFile(dataDir), xPem, 0o644);
  if (readOr(mlkemPubFile(dataDir)) !== mPub) writeFileAtomic(mlkemPubFile(dataDir), mPub, 0o644);
  return { publicKey, privateKey: { x25519, mlkemSecret: mlkem.secretKey, mlkemPublic: mlkem.publicKey } };
}

function readOr(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * The public half alone: all a writer needs. A queue whose daemon has not yet run this version
 * has no ML-KEM key: its mail is sealed with X25519 alone, as before, until the daemon makes one.
 */
export function queuePublicKey(dataDir: string): SealRecipient {
  const pub = sealPubFile(dataDir);
  if (!existsSync(pub)) return queueSealingKeys(dataDir).publicKey;
  const x25519 = createPublicKey(readFileSync(pub, 'utf8'));
  const mlkemText = readOr(mlkemPubFile(dataDir));
  if (mlkemText === null) return x25519;
  const mlkem = Buffer.from(mlkemText.trim(), 'base64');
  if (mlkem.length !== MLKEM_PUBLIC_LEN) throw new Error(`${mlkemPubFile(dataDir)} does not hold a ${MLKEM_PUBLIC_LEN}-byte ML-KEM public key`);
  return { x25519, mlkem };
}

/** Seals and stores one message for the queue; returns its id once a crash can no longer lose it. */
export function handOff(dataDir: string, publicKey: SealRecipient, submission: QueueSubmission, message: Buffer): string {
  if (submission.recipients.length === 0) throw new TypeError('a queued message needs at least one recipient');
  const dir = incomingDir(dataDir);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    fsyncDir(path.dirname(dir));
  }
  const id = newSpoolId();
  const meta = Buffer.from(JSON.stringify({ v: PAYLOAD_VERSION, id, ...submission, submittedAt: submission.submittedAt.toISOString() }), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(meta.length);
  writeFileAtomic(path.join(dir, id + SUFFIX), sealParts([len, meta, message], publicKey), 0o600);
  return id;
}

/** Ids waiting in incoming/, oldest first. */
export function listIncoming(dataDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(incomingDir(dataDir));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names.filter((n) => n.endsWith(SUFFIX) && !n.startsWith('.')).map((n) => n.slice(0, -SUFFIX.length)).sort();
}

export function incomingFile(dataDir: string, id: string): string {
  return path.join(incomingDir(dataDir), id + SUFFIX);
}

export class HandoffFormatError extends Error {}

/** Opens one incoming file; throws SealError or HandoffFormatError. */
export function readIncoming(dataDir: string, id: string, privateKey: SealOpener): IncomingEntry {
  const plain = openSealed(readFileSync(incomingFile(dataDir, id)), privateKey);
  if (plain.length < 4) throw new HandoffFormatError('queue file is truncated');
  const len = plain.readUInt32BE(0);
  if (4 + len > plain.length) throw new HandoffFormatError('queue file is truncated');
  let m: QueueSubmission & { v?: unknown; id?: unknown; submittedAt: unknown };
  try {
    m = JSON.parse(plain.subarray(4, 4 + len).toString('utf8')) as typeof m;
  } catch {
    throw new HandoffFormatError('queue file metadata is not JSON');
  }
  if (m.v !== PAYLOAD_VERSION || m.id !== id) throw new HandoffFormatError(`queue file ${id} has version ${String(m.v)} and id ${String(m.id)}`);
  if (typeof m.from !== 'string' || !Array.isArray(m.recipients) || m.recipients.length === 0 || m.recipients.some((r) => typeof r?.address !== 'string')) throw new HandoffFormatError('queue file envelope is incomplete');
  const submittedAt = new Date(String(m.submittedAt));
  if (Number.isNaN(submittedAt.getTime())) throw new HandoffFormatError('queue file has a bad date');
  return {
    id,
    submission: { from: m.from, recipients: m.recipients, owner: typeof m.owner === 'string' ? m.owner : null, envid: m.envid ?? null, ret: m.ret ?? null, requireTls: m.requireTls === true, ...(m.tlsReport === true ? { tlsReport: true } : {}), submittedAt },
    message: plain.subarray(4 + len),
  };
}
