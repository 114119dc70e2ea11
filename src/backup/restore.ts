// Restoring a backup onto a host: decrypt with the owner's identity, extract into a staging folder
// beside the data directory, check every member against the manifest, and only then move the
// files into place. A bad key, a damaged file or a full disk leave the target as it was.
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { parseDocument } from 'yaml';
import { adoptDataDirOwner } from '../util/data-owner.js';
import { fsyncDir, fsyncPath, writeFileAtomic } from '../util/atomic-file.js';
import { BackupError, readArchive, type Manifest } from './archive.js';

export interface RestoreOptions {
  identities: string[];
  /** Where the data goes (default: the data_dir the backup was made from). Must be empty. */
  dataDir?: string;
  /** Where fe.yml goes. Must not exist. */
  configFile: string;
}

export interface RestoreResult {
  dataDir: string;
  configFile: string;
  files: number;
  manifest: Manifest;
}

/** Entries a fresh volume may hold that do not make it "in use". */
function isEmptyDir(dir: string): boolean {
  if (!existsSync(dir)) return true;
  return readdirSync(dir).every((n) => n === 'lost+found');
}

export async function restoreBackup(file: string, opts: RestoreOptions): Promise<RestoreResult> {
  if (!existsSync(file)) throw new BackupError(`${file} does not exist`);
  if (opts.identities.length === 0) throw new BackupError('restoring needs the backup identity (AGE-SECRET-KEY-1…), the secret half of backup.recipients');
  if (existsSync(opts.configFile)) throw new BackupError(`${opts.configFile} exists; move it away first (or give --config another path)`);
  let target = opts.dataDir ? path.resolve(opts.dataDir) : null;
  const notEmpty = (dir: string) => new BackupError(`data directory ${dir} is not empty; stop fe and move its contents away first, or restore with --data-dir elsewhere`);
  if (target && !isEmptyDir(target)) throw notEmpty(target);
  // Extracted next to the target (known from the archive's first member) so that the final
  // moves are renames on one file system.
  let scratch: string | null = null;
  const ensureScratch = () => {
    if (scratch) return scratch;
    if (!target) throw new BackupError('the backup does not say where its data directory was (damaged or not an fe backup)');
    mkdirSync(path.dirname(target), { recursive: true });
    scratch = path.join(path.dirname(target), `.fe-restore-${randomBytes(4).toString('hex')}`);
    mkdirSync(scratch, { mode: 0o700 });
    return scratch;
  };
  try {
    const check = await readArchive(
      createReadStream(file),
      { identities: opts.identities },
      async (rel, mode, body) => {
        const dest = path.join(ensureScratch(), rel);
        mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 });
        await pipeline(Readable.from(body), createWriteStream(dest, { flags: 'wx', mode: (mode & 0o700) | 0o600 }));
        fsyncPath(dest);
      },
      (rel) => mkdirSync(path.join(ensureScratch(), rel), { recursive: true, mode: 0o700 }), // fe's folders are 0700 whatever the archive says
      (info) => {
        target ??= info.dataDir;
        if (!isEmptyDir(target)) throw notEmpty(target);
      },
    );
    if (!target || !scratch) throw new BackupError('the backup holds no data');
    const extracted: string = scratch;
    // The restored fe.yml points at where the data now is; the owner's comments stay.
    const text = readFileSync(path.join(extracted, 'fe.yml'), 'utf8');
    let config = text;
    if (path.resolve(target) !== path.resolve(check.manifest.dataDir)) {
      const doc = parseDocument(text);
      doc.set('data_dir', target);
      config = doc.toString();
    }
    const data = path.join(extracted, 'data');
    mkdirSync(data, { recursive: true, mode: 0o700 });
    if (existsSync(target)) {
      // A mount point cannot be replaced: move its new contents in one by one.
      for (const name of readdirSync(data)) renameSync(path.join(data, name), path.join(target, name));
      fsyncDir(target);
    } else {
      mkdirSync(path.dirname(target), { recursive: true });
      renameSync(data, target);
      fsyncDir(path.dirname(target));
    }
    adoptDataDirOwner(target);
    mkdirSync(path.dirname(path.resolve(opts.configFile)), { recursive: true });
    writeFileAtomic(opts.configFile, config, 0o640);
    return { dataDir: target, configFile: opts.configFile, files: check.files, manifest: check.manifest };
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}
