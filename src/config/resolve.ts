// Which alias an incoming address reaches: exact name, then name+tag sub-addressing, then the
// domain's catch-all. Matching ignores case, as users expect of email addresses.
import { asciiDomain, NameError, splitAddress } from './names.js';
import type { AliasConfig, DomainConfig, FeConfig } from './schema.js';

export interface Resolution {
  domain: DomainConfig;
  local: string; // the alias that matched ("*" for the catch-all)
  alias: AliasConfig;
  via: 'exact' | 'subaddress' | 'catch-all';
  tag: string | null;
}

export type ResolveResult = { ok: true; resolution: Resolution } | { ok: false; reason: 'invalid' | 'foreign-domain' | 'no-such-user'; message: string };

export function resolveRecipient(config: FeConfig, address: string): ResolveResult {
  let local: string;
  let domainName: string;
  try {
    const parts = splitAddress(address);
    local = parts.local.normalize('NFC').toLowerCase();
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
