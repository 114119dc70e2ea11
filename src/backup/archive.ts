// Making, checking and pruning backups. A backup is one file, NAME.tar.age: a tar of fe.yml and
// the data directory, encrypted with age to the owner's public keys. The host can write it but
// not read it. Written to a temp name, read back and decrypted with the key it was written with,
// checked member by member, then renamed into place with a sha256sum-style sidecar.
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, statSync, writeSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FeConfig } from '../config/schema.js';
import { fsyncDir, fsyncPath, writeFileAtomic } from '../util/atomic-file.js';
import type { Logger } from '../util/log.js';
import { createDecryptStream, createEncryptStream } from './age.js';
import { captureGroup, CaptureBusy, DEFAULT_CAPTURE, planCapture, releaseCapture, removeStaging, type CapturedFile, type CapturePlan } from './collect.js';
import { endOfArchive, entryHeader, padding, readTar } from './tar.js';

export const FORMAT = 1;
export const BACKUP_SUFFIX = '.tar.age';
// A second backup within the same second gets -2 (then -3 ...) after the time.
const NAME_RE = /^fe-[a-z0-9.-]+-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.age$/;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

export class BackupError extends Error {}

export const INFO_FILE = 'BACKUP.json';

export interface BackupInfo {
  format: number;
  hostname: string;
  created: string; // ISO time
  dataDir: string;
}

export interface ManifestFile {
  path: string; // in the archive
  size: number;
  sha256: string;
}

export interface Manifest {
  format: number;
  hostname: string;
  created: string; // ISO time
  dataDir: string;
  files: ManifestFile[];
  /** Groups left out because they kept changing (the run is reported as incomplete). */
  busy: string[];
}

export interface BackupResult {
  file: string;
  bytes: number;
  sha256: string;
  files: number;
  busy: string[];
  durationMs: number;
  pruned: string[];
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function backupName(hostname: string, at: Date, seq = 1): string {
  const host = hostname.toLowerCase().replace(/[^a-z0-9.-]/g, '-') || 'host';
  return `fe-${host}-${stamp(at)}${seq > 1 ? `-${seq}` : ''}${BACKUP_SUFFIX}`;
}

/** The archive's top folder: what `tar x` creates. */
function topFolder(file: string): string {
  return path.basename(file).slice(0, -BACKUP_SUFFIX.length);
}

function takeLock(dir: string): () => void {
  const lock = path.join(dir, '.fe-backup.lock');
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(readFileSync(lock, 'utf8').trim());
      let alive = false;
      try {
        process.kill(pid, 0);
        alive = pid > 0;
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM';
      }
      if (alive) throw new BackupError(`another backup is running (process ${pid}); try again when it has finished`);
      rmSync(lock, { force: true }); // left by a process that died
    }
  }
  throw new BackupError('could not take the backup lock');
}

/** What a run killed mid-write left behind; with the lock held, nothing else can own these. */
function removeLeftovers(dir: string, dataDir: string): void {
  for (const name of readdirSync(dir)) if (/^\.fe-.*\.partial$/.test(name)) rmSync(path.join(dir, name), { force: true });
  for (const name of readdirSync(dataDir)) if (name.startsWith('.backup-staging-')) removeStaging(path.join(dataDir, name));
}

function explainWriteError(e: unknown, dir: string): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return new BackupError(`no space left in ${dir}; nothing was kept (free space there, or lower backup.keep)`);
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new BackupError(`cannot write to ${dir} (${code}); the fe-backup unit may write only to the backup.to that fe init set up: re-run fe init after changing it`);
  }
  return e as Error;
}

/** A pass-through that hashes what flows by. */
function hashTap(hash: ReturnType<typeof createHash>, count: { bytes: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      count.bytes += chunk.length;
      done(null, chunk);
    },
  });
}

async function* fileChunks(c: CapturedFile): AsyncGenerator<Buffer> {
  if (c.data) {
    yield c.data;
    return;
  }
  for await (const chunk of createReadStream(c.staged!, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
}

/** The tar stream: BACKUP folder, fe.yml, data/…, and MANIFEST.json last (it lists the hashes). */
async function* archive(config: FeConfig, plan: CapturePlan, top: string, manifest: Manifest, stagingDir: string, log: Logger): AsyncGenerator<Buffer> {
  const now = Math.floor(Date.now() / 1000);
  const file = async function* (rel: string, mode: number, mtime: number, size: number, chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const hash = createHash('sha256');
    let n = 0;
    yield entryHeader({ path: `${top}/${rel}`, type: 'file', size, mode, mtime });
    for await (const chunk of chunks) {
      hash.update(chunk);
      n += chunk.length;
      yield chunk;
    }
    if (n !== size) throw new BackupError(`${rel} changed size while it was archived`);
    yield padding(size);
    manifest.files.push({ path: rel, size, sha256: hash.digest('hex') });
  };
  yield entryHeader({ path: top, type: 'dir', size: 0, mode: 0o700, mtime: now });
  // First, so a restore knows where the data goes before the data arrives.
  const info: BackupInfo = { format: manifest.format, hostname: manifest.hostname, created: manifest.created, dataDir: manifest.dataDir };
  const infoText = Buffer.from(JSON.stringify(info, null, 1) + '\n');
  yield* file(INFO_FILE, 0o600, now, infoText.length, Readable.from([infoText]));
  const configText = readFileSync(config.file);
  yield* file('fe.yml', 0o600, now, configText.length, Readable.from([configText]));
  yield entryHeader({ path: `${top}/data`, type: 'dir', size: 0, mode: 0o700, mtime: now });
  for (const d of plan.dirs) yield entryHeader({ path: `${top}/data/${d.rel}`, type: 'dir', size: 0, mode: d.mode, mtime: d.mtime });
  for (const group of plan.groups) {
    let copies: CapturedFile[] | null;
    try {
      copies = await captureGroup(config.dataDir, group, { ...DEFAULT_CAPTURE, stagingDir });
    } catch (e) {
      if (!(e instanceof CaptureBusy)) throw e;
      log.warn('left out of this backup: it kept changing', { file: group.members[0] });
      manifest.busy.push(group.members[0]!);
      continue;
    }
    if (!copies) continue; // removed meanwhile (an imported spool file)
    try {
      for (const c of copies) yield* file(`data/${c.rel}`, c.mode & 0o700, c.mtime, c.size, fileChunks(c));
    } finally {
      releaseCapture(copies);
    }
  }
  const body = Buffer.from(JSON.stringify(manifest, null, 1) + '\n');
  yield entryHeader({ path: `${top}/MANIFEST.json`, type: 'file', size: body.length, mode: 0o600, mtime: now });
  yield body;
  yield padding(body.length);
  yield endOfArchive();
}

export interface ArchiveCheck {
  manifest: Manifest;
  files: number;
}

/**
 * Decrypts and reads a whole backup: every member's hash must match the manifest, nothing may be
 * missing or extra, and no database may be stored in the clear. `onFile` may extract members.
 */
export async function readArchive(
  source: Readable,
  key: { identities?: string[]; fileKey?: Buffer },
  onFile?: (rel: string, mode: number, body: AsyncIterable<Buffer>) => Promise<void>,
  onDir?: (rel: string, mode: number) => void,
  onInfo?: (info: BackupInfo) => void,
): Promise<ArchiveCheck> {
  const seen = new Map<string, ManifestFile>();
  let manifest: Manifest | null = null;
  let top: string | null = null;
  const decrypt = createDecryptStream(key);
  source.on('error', (err) => decrypt.destroy(err));
  const tarDone = readTar(source.pipe(decrypt) as AsyncIterable<Buffer>, async (e, body) => {
    const [first, ...rest] = e.path.split('/');
    if (top === null) top = first!;
    if (first !== top) throw new BackupError(`member outside the backup folder: ${e.path}`);
    const rel = rest.join('/');
    if (e.type === 'dir') {
      if (rel) onDir?.(rel, e.mode);
      return;
    }
    if (rel === 'MANIFEST.json') {
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c);
      manifest = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Manifest;
      return;
    }
    if (manifest) throw new BackupError(`member after the manifest: ${rel}`);
    const hash = createHash('sha256');
    let size = 0;
    let head = Buffer.alloc(0);
    const tapped = (async function* () {
      for await (const c of body) {
        hash.update(c);
        size += c.length;
        if (head.length < 16) head = Buffer.concat([head, c.subarray(0, 16 - head.length)]);
        yield c;
      }
    })();
    if (rel === INFO_FILE) {
      const chunks: Buffer[] = [];
      for await (const c of tapped) chunks.push(c);
      const info = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BackupInfo;
      if (info.format !== FORMAT) throw new BackupError(`backup format ${info.format} is not one this fe reads (${FORMAT})`);
      onInfo?.(info);
    } else if (onFile) await onFile(rel, e.mode, tapped);
    else for await (const _ of tapped);
    if (rel.endsWith('.db') && head.equals(SQLITE_MAGIC)) throw new BackupError(`${rel} is an unencrypted database; refusing it`);
    seen.set(rel, { path: rel, size, sha256: hash.digest('hex') });
  });
  // A decryption error surfaces through the tar reader's input, naming its cause.
  try {
    await tarDone;
  } finally {
    source.destroy();
    decrypt.destroy();
  }
  const m = manifest as Manifest | null;
  if (!m) throw new BackupError('the backup has no manifest (incomplete file)');
  if (m.format !== FORMAT) throw new BackupError(`backup format ${m.format} is not one this fe reads (${FORMAT})`);
  for (const f of m.files) {
    const got = seen.get(f.path);
    if (!got) throw new BackupError(`${f.path} is listed in the manifest but missing`);
    if (got.size !== f.size || got.sha256 !== f.sha256) throw new BackupError(`${f.path} does not match its manifest hash (corrupt backup)`);
    seen.delete(f.path);
  }
  if (seen.size > 0) throw new BackupError(`${[...seen.keys()][0]} is in the backup but not in its manifest`);
  return { manifest: m, files: m.files.length };
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Makes one backup now. Old ones beyond backup.keep are removed only after this one verified. */
export async function runBackup(config: FeConfig, log: Logger, now = new Date()): Promise<BackupResult> {
  if (config.backup.recipients.length === 0) throw new BackupError('backups are off: backup.recipients in fe.yml is empty (run `fe backup key`)');
  if (!existsSync(config.dataDir)) throw new BackupError(`data directory ${config.dataDir} does not exist (is the volume unlocked?)`);
  const dir = config.backup.dir;
  const t0 = Date.now();
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw explainWriteError(e, dir);
  }
  const release = takeLock(dir);
  removeLeftovers(dir, config.dataDir);
  const stagingDir = path.join(config.dataDir, `.backup-staging-${process.pid}`);
  // Under the lock, so no other run takes the same name meanwhile.
  let seq = 1;
  while (existsSync(path.join(dir, backupName(config.hostname || osHostname(), now, seq)))) seq++;
  const name = backupName(config.hostname || osHostname(), now, seq);
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.${randomBytes(4).toString('hex')}.partial`);
  const { stream: encrypt, fileKey } = createEncryptStream(config.backup.recipients);
  try {
    // A rough early refusal beats filling the disk: the archive is about as big as the data.
    // One walk of the data directory serves the estimate and the archive.
    const plan = planCapture(config.dataDir);
    const need = plan.bytes;
    const fs = statfsSync(dir);
    const free = fs.bavail * fs.bsize;
    if (free < need) throw new BackupError(`not enough space in ${dir}: about ${need} bytes needed, ${free} free`);
    const manifest: Manifest = { format: FORMAT, hostname: config.hostname, created: now.toISOString(), dataDir: config.dataDir, files: [], busy: [] };
    const hash = createHash('sha256');
    const count = { bytes: 0 };
    try {
      await pipeline(Readable.from(archive(config, plan, topFolder(final), manifest, stagingDir, log)), encrypt, hashTap(hash, count), createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
      fsyncPath(tmp);
    } catch (e) {
      throw explainWriteError(e, dir);
    }
    const sha256 = hash.digest('hex');
    // Read back what is on disk, with the key it was written with: the bytes must decrypt to
    // exactly the members listed, before this file may replace anything.
    if ((await sha256File(tmp)) !== sha256) throw new BackupError('the file on disk differs from what was written (storage error)');
    const check = await readArchive(createReadStream(tmp), { fileKey });
    if (check.files !== manifest.files.length) throw new BackupError('verification read a different number of files');
    renameSync(tmp, final);
    // Run by root (fe backup run), the files still belong to whoever owns the folder (fe).
    const owner = statSync(dir);
    if (process.getuid?.() === 0 && owner.uid !== 0) chownSync(final, owner.uid, owner.gid);
    writeFileAtomic(`${final}.sha256`, `${sha256}  ${name}\n`, 0o600, { uid: owner.uid, gid: owner.gid });
    fsyncDir(dir);
    const pruned = prune(dir, config.backup.keep, name);
    const result: BackupResult = { file: final, bytes: count.bytes, sha256, files: manifest.files.length, busy: manifest.busy, durationMs: Date.now() - t0, pruned };
    recordRun(config.dataDir, { ok: true, at: now.toISOString(), file: final, bytes: count.bytes, files: result.files, busy: result.busy, durationMs: result.durationMs });
    return result;
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e instanceof Error ? e : new Error(String(e));
    try {
      recordRun(config.dataDir, { ok: false, at: now.toISOString(), error: err.message });
    } catch {
      // the state folder may be what failed; the error below says more
    }
    throw err;
  } finally {
    fileKey.fill(0);
    removeStaging(stagingDir);
    release();
  }
}

export interface BackupFile {
  file: string;
  name: string;
  created: Date;
  /** 1, or 2, 3 ... for later backups made within the same second. */
  seq: number;
  bytes: number;
  /** The sidecar's hash, or null when it is missing. */
  sha256: string | null;
}

/** Backups in a folder, oldest first. */
export function listBackups(dir: string): BackupFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: BackupFile[] = [];
  for (const name of names) {
    const m = NAME_RE.exec(name);
    if (!m) continue;
    const s = m[1]!;
    const created = new Date(`${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}Z`);
    const file = path.join(dir, name);
    let sha256: string | null = null;
    try {
      sha256 = readFileSync(`${file}.sha256`, 'utf8').split(/\s+/)[0] ?? null;
    } catch {
      // no sidecar: listed, but it cannot be checked without the key
    }
    out.push({ file, name, created, seq: Number(m[2] ?? 1), bytes: statSync(file).size, sha256 });
  }
  return out.sort((a, b) => a.created.getTime() - b.created.getTime() || a.seq - b.seq || a.name.localeCompare(b.name));
}

function prune(dir: string, keep: number, newest: string): string[] {
  const all = listBackups(dir).filter((b) => b.name !== newest);
  const excess = all.length + 1 - keep;
  const gone: string[] = [];
  for (const b of all.slice(0, Math.max(0, excess))) {
    rmSync(b.file, { force: true });
    rmSync(`${b.file}.sha256`, { force: true });
    gone.push(b.name);
  }
  if (gone.length > 0) fsyncDir(dir);
  return gone;
}

export interface VerifyResult {
  file: string;
  checksum: 'ok' | 'missing';
  /** Set when an identity was given: the archive was decrypted and every member checked. */
  contents: { files: number; created: string; hostname: string; busy: string[] } | null;
}

/** Checks a backup: its sidecar hash always, its whole content when an identity is given. */
export async function verifyBackup(file: string, identities: string[] = []): Promise<VerifyResult> {
  if (!existsSync(file)) throw new BackupError(`${file} does not exist`);
  let checksum: VerifyResult['checksum'] = 'missing';
  if (existsSync(`${file}.sha256`)) {
    const want = readFileSync(`${file}.sha256`, 'utf8').split(/\s+/)[0];
    if ((await sha256File(file)) !== want) throw new BackupError(`${path.basename(file)} does not match its .sha256 (the file is damaged or truncated)`);
    checksum = 'ok';
  }
  if (identities.length === 0) return { file, checksum, contents: null };
  const check = await readArchive(createReadStream(file), { identities });
  return { file, checksum, contents: { files: check.files, created: check.manifest.created, hostname: check.manifest.hostname, busy: check.manifest.busy } };
}

// ---- the record fe status reads ----

export interface RunRecord {
  ok: boolean;
  at: string;
  file?: string;
  bytes?: number;
  files?: number;
  busy?: string[];
  durationMs?: number;
  error?: string;
}

export interface BackupState {
  lastSuccess: RunRecord | null;
  lastRun: RunRecord | null;
}

export function stateFile(dataDir: string): string {
  return path.join(dataDir, 'state', 'backup.json');
}

export function readBackupState(dataDir: string): BackupState {
  try {
    const s = JSON.parse(readFileSync(stateFile(dataDir), 'utf8')) as Partial<BackupState>;
    return { lastSuccess: s.lastSuccess ?? null, lastRun: s.lastRun ?? null };
  } catch {
    return { lastSuccess: null, lastRun: null };
  }
}

function recordRun(dataDir: string, run: RunRecord): void {
  const state = readBackupState(dataDir);
  state.lastRun = run;
  if (run.ok) state.lastSuccess = run;
  mkdirSync(path.dirname(stateFile(dataDir)), { recursive: true, mode: 0o700 });
  writeFileAtomic(stateFile(dataDir), JSON.stringify(state, null, 1) + '\n', 0o600);
}

