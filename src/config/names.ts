// Domain and address syntax: what fe accepts, and the canonical forms it compares with.
import { domainToASCII, domainToUnicode } from 'node:url';

export class NameError extends Error {}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Canonical ASCII (punycode) form of a domain, lower case, no trailing dot. Throws NameError. */
export function asciiDomain(input: string): string {
  const raw = input.trim().replace(/\.$/, '');
  if (raw === '') throw new NameError('a domain name is empty');
  if (/[\s@/\\]/.test(raw)) throw new NameError(`"${input}" is not a domain name (it contains a space, @ or slash)`);
  const ascii = domainToASCII(raw.normalize('NFC'));
  if (ascii === '') throw new NameError(`"${input}" is not a valid domain name`);
  if (ascii.length > 253) throw new NameError(`"${input}" is longer than 253 characters`);
  const labels = ascii.split('.');
  if (labels.length < 2) throw new NameError(`"${input}" needs at least two labels (like example.org)`);
  for (const label of labels) {
    if (!LABEL.test(label)) throw new NameError(`"${input}" has an invalid label "${label}"`);
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) throw new NameError(`"${input}" looks like an IP address, not a domain`);
  return ascii;
}

/** Unicode form for display (ASCII names come back unchanged). */
export function displayDomain(ascii: string): string {
  return domainToUnicode(ascii) || ascii;
}

// RFC 5322 atext plus UTF-8 (RFC 6531), minus '+', which fe reserves for sub-addressing.
const LOCAL_CHAR = /^[\p{L}\p{N}!#$%&'*\/=?^_`{|}~.-]+$/u;

/** Validates an alias local part ("*" is the catch-all). Returns it in canonical (lower-case, NFC) form. */
export function aliasLocalPart(input: string): string {
  const local = input.normalize('NFC').toLowerCase();
  if (local === '*') return local;
  if (local === '') throw new NameError('the part before @ is empty');
  if (local.length > 64) throw new NameError(`"${input}" is longer than 64 characters before the @`);
  if (local.includes('+')) {
    throw new NameError(`"${input}" contains "+": fe uses "+" for sub-addressing (me+tag@ reaches me@), so alias names cannot contain it`);
  }
  if (local.includes('/') || !LOCAL_CHAR.test(local) || local.startsWith('.') || local.endsWith('.') || local.includes('..')) {
    throw new NameError(`"${input}" is not a valid local part (letters, digits and . _ - are safe; no leading, trailing or double dots)`);
  }
  if (local.includes('*')) throw new NameError(`"${input}": "*" is allowed only alone, as the catch-all *@domain`);
  return local;
}

export interface Address {
  local: string;
  domain: string; // ASCII
}

export function splitAddress(input: string): { local: string; domain: string } {
  const text = input.trim();
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1) throw new NameError(`"${input}" is not an email address (expected name@domain)`);
  return { local: text.slice(0, at), domain: text.slice(at + 1) };
}

/** An address fe serves: canonical local part (may be "*") and ASCII domain. */
export function aliasAddress(input: string): Address {
  const { local, domain } = splitAddress(input);
  return { local: aliasLocalPart(local), domain: asciiDomain(domain) };
}

/** A destination address (forwarding target, report address): any valid mailbox, case kept in the local part. */
export function mailboxAddress(input: string): string {
  const { local, domain } = splitAddress(input);
  if (local.length > 64) throw new NameError(`"${input}" is longer than 64 characters before the @`);
  if (!/^[\p{L}\p{N}!#$%&'*+\/=?^_`{|}~.-]+$/u.test(local) || local.startsWith('.') || local.endsWith('.') || local.includes('..')) {
    throw new NameError(`"${input}" is not a valid email address`);
  }
  return `${local.normalize('NFC')}@${asciiDomain(domain)}`;
}

export function formatAddress(a: Address): string {
  return `${a.local}@${a.domain}`;
}

/** Levenshtein distance, for "did you mean" hints on misspelt keys. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}
