// Backup figures: `fe backup`'s own code (the module the fe-backup unit runs) on a data directory
// of one large mailbox database, its WAL, and a few thousand small spool-sized files. Prints the
// time to make and verify a backup (MB/s of data), to check it with the identity, to restore it,
// and this process's peak RSS while doing so: memory must not grow with the size of the data.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateIdentity } from '../../src/backup/age.js';
import { runBackup, verifyBackup } from '../../src/backup/archive.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { loadConfig } from '../../src/config/file.js';
import { createLogger } from '../../src/util/log.js';
import { workspace } from '../helpers/fe.js';

function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function resetPeak(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not Linux: the figure is then the process's lifetime peak
  }
}

function writeRandom(file: string, bytes: number): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const chunk = 8 << 20;
  writeFileSync(file, '');
  for (let left = bytes; left > 0; left -= chunk) writeFileSync(file, randomBytes(Math.min(chunk, left)), { flag: 'a' });
}

export async function benchBackup(): Promise<void> {
  const { identity, recipient } = generateIdentity();
  const w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nbackup:\n  to: ./backups\n  recipients: [${recipient}]\n`);
  const dbBytes = 256 << 20;
  const smallFiles = 3000;
  const smallBytes = 16 << 10;
  const box = path.join(w.dataDir, 'mailboxes', 'example.org', 'me');
  // Random bytes stand in for the encrypted database: the backup copies it without opening it.
  writeRandom(path.join(box, 'mailbox.db'), dbBytes);
  writeRandom(path.join(box, 'mailbox.db-wal'), 4 << 20);
  mkdirSync(path.join(box, 'spool'), { recursive: true });
  for (let i = 0; i < smallFiles; i++) writeFileSync(path.join(box, 'spool', `${String(i).padStart(14, '0')}-${randomBytes(10).toString('hex')}.sealed`), randomBytes(smallBytes));
  const total = dbBytes + (4 << 20) + smallFiles * smallBytes;
  const mb = total / 1e6;
  const config = loadConfig(w.config);
  const log = createLogger('error');

  const base = peakRssMiB();
  resetPeak();
  let t = performance.now();
  const made = await runBackup(config, log);
  const makeS = (performance.now() - t) / 1000;
  const makePeak = peakRssMiB();

  resetPeak();
  t = performance.now();
  const checked = await verifyBackup(made.file, [identity]);
  const verifyS = (performance.now() - t) / 1000;
  const verifyPeak = peakRssMiB();

  resetPeak();
  t = performance.now();
  const target = path.join(w.dir, 'restored');
  await restoreBackup(made.file, { identities: [identity], configFile: path.join(target, 'fe.yml'), dataDir: path.join(target, 'data') });
  const restoreS = (performance.now() - t) / 1000;
  const restorePeak = peakRssMiB();

  console.log('\n## backup (fe backup run / verify --identity / restore; in-process, one core)');
  console.log(`data: ${mb.toFixed(0)} MB (one ${dbBytes >> 20} MiB database + 4 MiB WAL, ${smallFiles} files of ${smallBytes >> 10} KiB); backup file ${(made.bytes / 1e6).toFixed(0)} MB, ${made.files} files`);
  console.log('| step | seconds | MB/s | peak RSS MiB |');
  console.log('|---|---|---|---|');
  console.log(`| make (copy, encrypt, write, read back, decrypt, check) | ${makeS.toFixed(2)} | ${(mb / makeS).toFixed(0)} | ${makePeak.toFixed(0)} |`);
  console.log(`| verify with the identity | ${verifyS.toFixed(2)} | ${(mb / verifyS).toFixed(0)} | ${verifyPeak.toFixed(0)} |`);
  console.log(`| restore | ${restoreS.toFixed(2)} | ${(mb / restoreS).toFixed(0)} | ${restorePeak.toFixed(0)} |`);
  console.log(`(RSS before: ${base.toFixed(0)} MiB; checked ${checked.contents?.files} files)`);
  rmSync(w.dir, { recursive: true, force: true });
}
