// The one way into the outbound queue for a process that does not own it (submission, the MX
// for bounces, the CLI): the message and its envelope sealed to the queue's public key, written
// under queue/incoming/ and fsync'd. Once that returns, the message cannot be lost; the queue
// daemon imports the file into its database and removes it. Same pattern as a mailbox spool.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { open as openSealed, sealParts } from '../crypto/seal.js';
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

/** The queue's sealing key pair, made on first use; the private half is a 0600 server secret. */
export function queueSealingKeys(dataDir: string): { publicKey: KeyObject; privateKey: KeyObject } {
  const keyFile = sealKeyFile(dataDir);
  if (existsSync(keyFile)) {
    const privateKey = createPrivateKey(readFileSync(keyFile, 'utf8'));
    return { privateKey, publicKey: createPublicKey(privateKey) };
  }
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  ensurePrivateDir(path.dirname(keyFile));
  ensurePrivateDir(queueDir(dataDir));
  writeFileAtomic(sealPubFile(dataDir), publicKey.export({ type: 'spki', format: 'pem' }) as string, 0o644);
  writeFileAtomic(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  return { publicKey, privateKey };
}

/** The public half alone: all a writer needs. */
export function queuePublicKey(dataDir: string): KeyObject {
  const pub = sealPubFile(dataDir);
  if (existsSync(pub)) return createPublicKey(readFileSync(pub, 'utf8'));
  return queueSealingKeys(dataDir).publicKey;
}

/** Seals and stores one message for the queue; returns its id once a crash can no longer lose it. */
export function handOff(dataDir: string, publicKey: KeyObject, submission: QueueSubmission, message: Buffer): string {
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
export function readIncoming(dataDir: string, id: string, privateKey: KeyObject): IncomingEntry {
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
