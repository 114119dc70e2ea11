// Long loops over one session's data give the event loop back every few milliseconds, so one
// client's big LIST or FETCH does not hold up every other session's NOOP.
import { performance } from 'node:perf_hooks';

export class TimeSlice {
  private start = performance.now();

  constructor(private readonly budgetMs = 4) {}

  /** Resolves at once while the slice lasts; past its budget, after pending I/O and timers ran. */
  async yield(): Promise<void> {
    if (performance.now() - this.start < this.budgetMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }
}
