// Backups on the schedule in fe.yml (node-cron), run by `fe serve --only backup` (the fe-backup
// unit). A host that was down or locked when a backup was due makes one soon after it starts.
import { createTask, type ScheduledTask } from 'node-cron';
import type { FeConfig } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import { readBackupState, runBackup } from './archive.js';

/** Time between two scheduled runs (the gap after the next one). */
export function schedulePeriodMs(expression: string): number {
  const task = createTask(expression, () => {}, { name: 'fe-period-probe' });
  try {
    const [a, b] = task.getNextRuns(2);
    return a && b ? b.getTime() - a.getTime() : 24 * 3600_000;
  } finally {
    void task.destroy();
  }
}

/** Catch-up is due when the last good backup is older than one period (or there is none). */
export function catchUpDue(config: FeConfig, now = Date.now()): boolean {
  const last = readBackupState(config.dataDir).lastSuccess;
  if (!last) return true;
  return now - Date.parse(last.at) > schedulePeriodMs(config.backup.schedule);
}

export class BackupSchedule {
  private task: ScheduledTask | null = null;
  private expression = '';
  private running: Promise<void> | null = null;
  private catchUp: NodeJS.Timeout | null = null;
  // Keeps a process that only runs backups (fe-backup) alive between runs and through stop().
  private keepAlive: NodeJS.Timeout | null = null;

  constructor(
    private config: () => FeConfig,
    private log: Logger,
    private catchUpDelayMs = 60_000,
  ) {}

  start(): void {
    this.keepAlive = setInterval(() => {}, 1 << 30);
    this.apply();
    // After a reboot the other units come up first; a backup a minute later disturbs nobody.
    if (this.config().backup.recipients.length > 0 && catchUpDue(this.config())) {
      this.log.info('the last backup is older than the schedule allows; making one shortly');
      this.catchUp = setTimeout(() => void this.runNow(), this.catchUpDelayMs);
      this.catchUp.unref();
    }
  }

  /** Follows fe.yml after a reload: a new schedule, or backups turned on or off. */
  apply(): void {
    const c = this.config();
    const wanted = c.backup.recipients.length > 0 ? c.backup.schedule : '';
    if (wanted === this.expression) return;
    void this.task?.destroy();
    this.task = null;
    this.expression = wanted;
    if (!wanted) {
      this.log.info('backups are off (no backup.recipients)');
      return;
    }
    this.task = createTask(wanted, () => this.runNow(), { name: 'fe-backup', noOverlap: true });
    void this.task.start();
    this.log.info('backups scheduled', { schedule: wanted, next: this.task.getNextRun()?.toISOString(), to: c.backup.dir });
  }

  /** One run; a run already in progress is joined, not doubled. */
  runNow(): Promise<void> {
    this.running ??= (async () => {
      try {
        const r = await runBackup(this.config(), this.log);
        this.log.info('backup made and verified', { file: r.file, bytes: r.bytes, files: r.files, ms: r.durationMs, removed: r.pruned.length, incomplete: r.busy.length > 0 ? r.busy : undefined });
      } catch (e) {
        this.log.error('backup failed', { reason: (e as Error).message });
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.catchUp) clearTimeout(this.catchUp);
    await this.task?.destroy();
    this.task = null;
    await this.running;
    if (this.keepAlive) clearInterval(this.keepAlive);
  }
}
