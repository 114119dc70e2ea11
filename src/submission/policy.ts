// Who may send as whom, and how much: the rules submission applies to a logged-in mailbox.
import { asciiDomain, NameError, splitAddress } from '../config/names.js';
import type { AliasConfig, FeConfig } from '../config/schema.js';
import { unquoteLocal } from '../config/resolve.js';

function canonical(address: string): string | null {
  try {
    const { local, domain } = splitAddress(address.trim());
    return `${unquoteLocal(local).normalize('NFC').toLowerCase()}@${asciiDomain(domain)}`; // "me"@ is me@
  } catch (e) {
    if (e instanceof NameError) return null;
    throw e;
  }
}

/**
 * Whether the mailbox `user` (canonical local@domain) may use `address` as envelope sender or
 * From: its own address, its +tag forms, and what its alias lists under send_as (an address,
 * whose +tag forms are fine too, or "*@domain" for any address of a served domain).
 */
export function maySendAs(config: FeConfig, user: string, address: string): boolean {
  const want = canonical(address);
  if (!want) return false;
  const at = want.lastIndexOf('@');
  const local = want.slice(0, at);
  const domain = want.slice(at + 1);
  const base = local.includes('+') ? local.slice(0, local.indexOf('+')) : local;
  const candidates = new Set([want, `${base}@${domain}`]);
  if (candidates.has(user)) return true;
  const alias = aliasOf(config, user);
  if (!alias) return false;
  for (const entry of alias.sendAs) {
    if (entry === `*@${domain}` && config.domains.has(domain)) return true;
    if (candidates.has(entry)) return true;
  }
  return false;
}

function aliasOf(config: FeConfig, user: string): AliasConfig | null {
  const at = user.lastIndexOf('@');
  return config.domains.get(user.slice(at + 1))?.aliases.get(user.slice(0, at)) ?? null;
}

/** The sending limits that apply to the mailbox `user`: its own `limits:` in fe.yml, else the global ones. */
export function sendLimitsFor(config: FeConfig, user: string): { messagesPerHour: number; recipientsPerDay: number; recipientsPerMessage: number; own: boolean } {
  const own = aliasOf(config, user)?.limits ?? {};
  return {
    messagesPerHour: own.sendMessagesPerHour ?? config.limits.sendMessagesPerHour,
    recipientsPerDay: own.sendRecipientsPerDay ?? config.limits.sendRecipientsPerDay,
    recipientsPerMessage: own.sendRecipientsPerMessage ?? config.limits.sendRecipientsPerMessage,
    own: Object.keys(own).length > 0,
  };
}
