// The one place a daemon process opens mailboxes. A login unwraps the mailbox key with the
// password (off the event loop), opens the encrypted database once however many sessions use
// it, imports the sealed spool, and keeps importing while sessions are open so IDLE sees new mail.
// The key leaves memory when the last session ends. While a mailbox is open, logins with the
// password that opened it are checked by an in-memory verifier instead of scrypt (auth/verifier.ts).
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import { resolveRecipient } from '../config/resolve.js';
import type { FeConfig } from '../config/schema.js';
import { PasswordVerifier } from '../auth/verifier.js';
import { acquireLock } from '../config/lock.js';
import { addMlkemAtLogin, decoyUnlockAsync, hasMailboxKey, keyFilePath, mailboxKeySalt, unlockMailboxKeyWithSalt, WrongPassword, type MailboxSecrets } from '../crypto/mailbox-key.js';
import { isHybrid } from '../crypto/seal.js';
import type { Logger } from '../util/log.js';
import { MailboxStore } from './mailbox-db.js';
import { mailboxDir } from './paths.js';
import { spoolDir } from './spool.js';

export interface ChangeEvent {
  folder: string | null; // null: folders themselves changed
  origin: unknown; // the session that made the change (it already knows), or null for new mail
}

export interface MailboxHandle {
  address: string;
  store: MailboxStore;
  /** 'change' events (ChangeEvent) for every session of this mailbox. */
  events: EventEmitter;
  /** Tell the other sessions that something changed. */
  changed(folder: string | null, origin: unknown): void;
  release(): void;
}

interface Entry {
  address: string;
  dir: string;
  store: MailboxStore;
  events: EventEmitter;
  refs: number;
  watcher: FSWatcher | null;
  pending: NodeJS.Timeout | null;
  dataVersion: number;
}

export class MailboxRegistry {
  private entries = new Map<string, Entry>();
  private opening = new Map<string, Promise<void>>();
  private verifier = new PasswordVerifier();

  constructor(private opts: { config: () => FeConfig; log: Logger }) {}

  /** The mailbox a login name stands for (an exact alias with a mailbox), or null. */
  private mailboxOf(username: string): { dir: string; address: string } | null {
    const config = this.opts.config();
    const r = resolveRecipient(config, username.trim());
    if (!r.ok || r.resolution.via !== 'exact' || !r.resolution.alias.mailbox) return null;
    return { dir: mailboxDir(config.dataDir, r.resolution.domain.name, r.resolution.local), address: `${r.resolution.local}@${r.resolution.domain.name}` };
  }

  /** The open mailbox `password` is known to open, without scrypt; null means "not known here", not "wrong". */
  private known(username: string, password: string): Entry | null {
    const m = this.mailboxOf(username);
    const entry = m ? this.entries.get(m.dir) : undefined;
    if (!m || !entry) return null;
    let salt: string;
    try {
      salt = mailboxKeySalt(m.dir);
    } catch {
      return null; // unreadable key file: let the full check say why
    }
    return this.verifier.matches(m.dir, salt, password) ? entry : null;
  }

  /**
   * A handle without scrypt when the mailbox is open here and the password is the one that last
   * opened it; otherwise null, and the caller runs the full login (which may still succeed).
   */
  quickLogin(username: string, password: string): MailboxHandle | null {
    const entry = this.known(username, password);
    return entry ? this.acquire(entry) : null;
  }

  /** The canonical address when quickLogin would succeed (for submission, which opens nothing). */
  quickCheck(username: string, password: string): string | null {
    return this.known(username, password)?.address ?? null;
  }

  /** A handle, or null for any bad credential (unknown user and wrong password look the same). */
  async login(username: string, password: string): Promise<MailboxHandle | null> {
    const m = this.mailboxOf(username);
    if (!m || !hasMailboxKey(m.dir)) return decoyUnlockAsync(password).then(() => null); // as slow as a wrong password
    const { dir, address } = m;
    let secrets, salt: string;
    try {
      ({ secrets, salt } = await unlockMailboxKeyWithSalt(dir, password));
    } catch (e) {
      if (e instanceof WrongPassword) return null;
      throw e;
    }
    ({ secrets, salt } = await upgradeSealAtLogin(dir, address, password, { secrets, salt }, this.opts.log));
    // Two logins racing for a closed mailbox open it once.
    while (this.opening.has(dir)) await this.opening.get(dir);
    let entry = this.entries.get(dir);
    if (!entry) {
      const opened = (async () => {
        const store = MailboxStore.open(dir, secrets);
        const fresh: Entry = { address, dir, store, events: new EventEmitter(), refs: 0, watcher: null, pending: null, dataVersion: store.dataVersion() };
        fresh.events.setMaxListeners(0);
        this.entries.set(dir, fresh);
        this.watchSpool(fresh);
      })();
      this.opening.set(dir, opened);
      try {
        await opened;
      } finally {
        this.opening.delete(dir);
      }
      entry = this.entries.get(dir)!;
    } else entry.store.adoptSealingKey(secrets.sealingPrivateKey);
    secrets.masterKey.fill(0);
    this.verifier.remember(dir, salt, password);
    return this.acquire(entry);
  }

  private acquire(e: Entry): MailboxHandle {
    e.store.folderLimit = this.opts.config().limits.foldersPerMailbox; // at each login: SIGHUP may change it
    e.refs++;
    this.importNow(e);
    let released = false;
    return {
      address: e.address,
      store: e.store,
      events: e.events,
      changed: (folder, origin) => e.events.emit('change', { folder, origin } satisfies ChangeEvent),
      release: () => {
        if (released) return;
        released = true;
        if (--e.refs === 0) this.close(e);
      },
    };
  }

  private importNow(entry: Entry): void {
    try {
      const result = entry.store.importSpool();
      for (const folder of result.folders) entry.events.emit('change', { folder, origin: null } satisfies ChangeEvent);
      // Another process (fe import) wrote to the database and touched the spool folder to say so:
      // every session looks again (sessions read only what changed, by MODSEQ).
      const version = entry.store.dataVersion();
      if (version !== entry.dataVersion) {
        entry.dataVersion = version;
        entry.events.emit('change', { folder: null, origin: null } satisfies ChangeEvent);
      }
      if (result.failed.length > 0) this.opts.log.warn('spool files could not be opened', { mailbox: this.opts.log.addr(entry.address), count: result.failed.length });
    } catch (e) {
      this.opts.log.error('spool import failed', { mailbox: this.opts.log.addr(entry.address), reason: (e as Error).message });
    }
  }

  /** New spool files are imported within moments, so IDLE clients hear of them. */
  private watchSpool(entry: Entry): void {
    const dir = spoolDir(entry.dir);
    try {
      if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
      entry.watcher = watch(dir, () => {
        if (entry.pending) return;
        entry.pending = setTimeout(() => {
          entry.pending = null;
          if (this.entries.get(entry.dir) === entry) this.importNow(entry);
        }, 50);
      });
      entry.watcher.on('error', () => undefined);
    } catch (e) {
      this.opts.log.warn('cannot watch the spool; new mail shows at the next login', { reason: (e as Error).message });
    }
  }

  private close(entry: Entry): void {
    entry.watcher?.close();
    if (entry.pending) clearTimeout(entry.pending);
    this.entries.delete(entry.dir);
    this.verifier.forget(entry.dir);
    entry.store.close();
  }

  closeAll(): void {
    for (const e of [...this.entries.values()]) this.close(e);
  }
}

// A login waits this long at most for `fe alias passwd` or another login holding the key file.
const UPGRADE_LOCK_MS = 3_000;

/**
 * A mailbox key still of the X25519-only format gets its ML-KEM-768 half at its owner's login
 * (the password is at hand only then). Mail the MX seals meanwhile is safe either way: the key
 * file is replaced whole by a rename, and the X25519 key stays, so what was sealed to the old
 * public key opens with the new private key. A failed upgrade never fails the login: it is
 * logged and tried again at the next one.
 */
export async function upgradeSealAtLogin(dir: string, address: string, password: string, opened: { secrets: MailboxSecrets; salt: string }, log: Logger): Promise<{ secrets: MailboxSecrets; salt: string }> {
  if (isHybrid(opened.secrets.sealingPrivateKey)) return opened;
  let release: (() => void) | undefined;
  try {
    release = await acquireLock(keyFilePath(dir), UPGRADE_LOCK_MS);
    const r = await addMlkemAtLogin(dir, password, opened);
    if (r.upgraded) log.info('mailbox seal upgraded to X25519 + ML-KEM-768 at login', { mailbox: log.addr(address) });
    return r;
  } catch (e) {
    log.warn('mailbox seal upgrade at login failed; tried again at the next login', { mailbox: log.addr(address), reason: (e as Error).message });
    return opened;
  } finally {
    release?.();
  }
}
