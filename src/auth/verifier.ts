// Fast password checks for mailboxes a daemon already has open. After a password has opened a
// mailbox key (scrypt), the process keeps an HMAC-SHA256 of it under a key that exists only in
// this process's memory, so further logins to the open mailbox cost microseconds, not ~100 ms
// of scrypt each. The tag is bound to the key file's salt: a password changed by another process
// (fe alias passwd re-wraps the key under a new salt) no longer matches, and the login falls back
// to scrypt. Nothing is written to disk; the tag goes when the mailbox closes. Why this costs no
// security: README, "Security".
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export class PasswordVerifier {
  private readonly key = randomBytes(32); // per process, never leaves memory
  private readonly tags = new Map<string, Buffer>(); // mailbox dir -> HMAC(salt, password)

  private tag(salt: string, password: string): Buffer {
    // NFC as the key derivation does, so the same typed password matches either way
    return createHmac('sha256', this.key).update(salt).update('\0').update(password.normalize('NFC')).digest();
  }

  /** Call only after `password` has opened the key file whose salt is `salt`. */
  remember(dir: string, salt: string, password: string): void {
    this.tags.get(dir)?.fill(0);
    this.tags.set(dir, this.tag(salt, password));
  }

  /** True when `password` is the one remembered for `dir` and its key file still has `salt`. */
  matches(dir: string, salt: string, password: string): boolean {
    const known = this.tags.get(dir);
    if (!known) return false;
    return timingSafeEqual(known, this.tag(salt, password));
  }

  forget(dir: string): void {
    this.tags.get(dir)?.fill(0);
    this.tags.delete(dir);
  }
}
