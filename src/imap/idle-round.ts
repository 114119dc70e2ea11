// Telling idle sessions of a change. One change to a mailbox reaches every session that idles on
// it; each used to be scheduled on its own turn and read the change from the database itself, so
// 500 idlers meant 500 turns of the same queries before a NOOP on another connection was read.
// Now one turn per mailbox tells them all, and the change of a folder is read once (the digest)
// and shared: each idler only compares it with what it told its client and writes its lines.
import { performance } from 'node:perf_hooks';
import type { MailboxStore, MessageSummary } from '../store/mailbox-db.js';

/** What telling a session of changes reads from the store; within one round, read once per folder. */
export class ChangeDigest {
  private readonly states = new Map<string, ReturnType<MailboxStore['folderState']>>();
  private readonly gone = new Map<string, number[]>();
  private readonly changed = new Map<string, MessageSummary[]>();

  constructor(readonly store: MailboxStore) {}

  folderState(folder: string): ReturnType<MailboxStore['folderState']> {
    if (!this.states.has(folder)) this.states.set(folder, this.store.folderState(folder));
    return this.states.get(folder)!;
  }

  /** UIDs expunged after `modseq`; the array is shared, so callers only read it. */
  vanishedSince(folder: string, modseq: number): number[] {
    const key = `${modseq}\0${folder}`;
    let v = this.gone.get(key);
    if (!v) this.gone.set(key, (v = this.store.vanishedSince(folder, modseq)));
    return v;
  }

  /** Messages changed after `modseq`, in UID order; shared, so callers only read them. */
  changedSince(folder: string, modseq: number): MessageSummary[] {
    const key = `${modseq}\0${folder}`;
    let v = this.changed.get(key);
    if (!v) this.changed.set(key, (v = this.store.listMessages(folder, { changedSince: modseq })));
    return v;
  }
}

export interface IdleListener {
  /** Tells its client what changed, reading through `digest`. */
  idleUpdate(digest: ChangeDigest): void;
}

// Per open mailbox (its store), the idlers to tell at the next turn.
const rounds = new WeakMap<MailboxStore, Set<IdleListener>>();

/**
 * Queues `listener` to hear of a change in `store` at the next turn, after the command that made
 * the change has answered. A burst of changes becomes one round, and a round reads each folder once.
 */
export function queueIdleUpdate(store: MailboxStore, listener: IdleListener): void {
  let round = rounds.get(store);
  if (round) {
    round.add(listener);
    return;
  }
  const queued = new Set([listener]);
  rounds.set(store, queued);
  setImmediate(() => {
    rounds.delete(store);
    tell(store, [...queued], 0, new ChangeDigest(store));
  });
}

/**
 * Tells listeners from `from` on, giving the event loop back every few milliseconds: a NOOP on
 * another connection is answered between slices, not after the last idler. Nothing writes to the
 * store within a slice but \Recent's claim, which the digest does not read; between slices a
 * command may, and then its change queued a new round, so the rest read afresh (their own rows
 * are then as new as the round that follows, which finds nothing left to tell them).
 */
function tell(store: MailboxStore, listeners: IdleListener[], from: number, digest: ChangeDigest): void {
  const start = performance.now();
  for (let i = from; i < listeners.length; i++) {
    listeners[i]!.idleUpdate(digest);
    if (performance.now() - start >= SLICE_MS && i + 1 < listeners.length) {
      setImmediate(() => tell(store, listeners, i + 1, rounds.has(store) ? new ChangeDigest(store) : digest));
      return;
    }
  }
}

const SLICE_MS = 4;
