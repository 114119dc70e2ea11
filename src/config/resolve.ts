// Which alias an incoming address reaches: exact name, then name+tag sub-addressing, then the
// domain's catch-all, then (for postmaster, which RFC 5321 4.5.1 says must always be accepted)
// the admin. Matching ignores case, as users expect of email addresses; a quoted local part
// ("me"@example.org) is the same address as its unquoted form.
import { asciiDomain, NameError, splitAddress } from './names.js';
import type { AliasConfig, DomainConfig, FeConfig } from './schema.js';

export interface Resolution {
  domain: DomainConfig;
  local: string; // the alias that matched ("*" for the catch-all)
  alias: AliasConfig;
  via: 'exact' | 'subaddress' | 'catch-all' | 'postmaster';
  tag: string | null;
}

export type ResolveResult = { ok: true; resolution: Resolution } | { ok: false; reason: 'invalid' | 'foreign-domain' | 'no-such-user'; message: string };

/** RFC 5321 4.1.2: a quoted-string local part, with its quoted-pairs undone; others as they are. */
export function unquoteLocal(local: string): string {
  const m = /^"((?:[^"\\]|\\.)*)"$/s.exec(local);
  return m ? m[1]!.replace(/\\(.)/gs, '$1') : local;
}

export function resolveRecipient(config: FeConfig, address: string): ResolveResult {
  // A bare <postmaster> (RFC 5321 4.1.1.3): the admin's domain, else the first domain served here.
  if (address.trim().toLowerCase() === 'postmaster') {
    const first = config.admin ? config.admin.slice(config.admin.lastIndexOf('@') + 1) : config.domains.keys().next().value;
    if (!first) return { ok: false, reason: 'no-such-user', message: 'no domain is served here' };
    address = `postmaster@${first}`;
  }
  const r = resolveAlias(config, address);
  if (r.ok || r.reason !== 'no-such-user' || !/^"?postmaster"?@/i.test(address.trim())) return r;
  // postmaster@DOMAIN without an alias of that name: the admin address when it reaches an alias
  // here, else the domain's first mailbox.
  const admin = config.admin ? resolveAlias(config, config.admin) : null;
  if (admin?.ok) return { ok: true, resolution: { ...admin.resolution, via: 'postmaster', tag: null } };
  const domain = config.domains.get(asciiDomain(splitAddress(address).domain))!;
  const first = [...domain.aliases].find(([local, a]) => a.mailbox && local !== '*');
  if (first) return { ok: true, resolution: { domain, local: first[0], alias: first[1], via: 'postmaster', tag: null } };
  return r;
}

function resolveAlias(config: FeConfig, address: string): ResolveResult {
  let local: string;
  let domainName: string;
  try {
    const parts = splitAddress(address);
    local = unquoteLocal(parts.local).normalize('NFC').toLowerCase();
    domainName = asciiDomain(parts.domain);
  } catch (e) {
    if (!(e instanceof NameError)) throw e;
    return { ok: false, reason: 'invalid', message: e.message };
  }
  const domain = config.domains.get(domainName);
  if (!domain) return { ok: false, reason: 'foreign-domain', message: `${domainName} is not a domain served here` };
  const exact = domain.aliases.get(local);
  if (exact) return { ok: true, resolution: { domain, local, alias: exact, via: 'exact', tag: null } };
  const plus = local.indexOf('+');
  if (plus > 0) {
    const base = local.slice(0, plus);
    const alias = domain.aliases.get(base);
    if (alias) return { ok: true, resolution: { domain, local: base, alias, via: 'subaddress', tag: local.slice(plus + 1) } };
  }
  const catchAll = domain.aliases.get('*');
  if (catchAll) return { ok: true, resolution: { domain, local: '*', alias: catchAll, via: 'catch-all', tag: null } };
  return { ok: false, reason: 'no-such-user', message: `no alias ${local}@${domainName}` };
}
