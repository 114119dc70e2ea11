// OpenPGP Web Key Directory (draft-koch-openpgp-webkey-service), the lookup half: the keys added
// with `fe key add`, served by the hash of their local part, in both layouts:
//   advanced: https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH
//   direct:   https://DOMAIN/.well-known/openpgpkey/hu/HASH
// plus the policy file beside hu/. No submission service (WKS): keys change only through fe.yml.
import type { FeConfig, PgpKeyConfig } from '../config/schema.js';
import { wkdHash } from '../pgp/wkd-hash.js';

export interface WkdAnswer {
  status: number;
  body: Uint8Array | string;
  type: string;
}

/** domain -> hash -> binary key; built once per loaded fe.yml. */
type Directory = Map<string, Map<string, Uint8Array>>;

const WELL_KNOWN = '/.well-known/openpgpkey/';
// Lower-case z-base-32 of 160 bits is exactly 32 characters.
const HASH = /^[ybndrfg8ejkmcpqxot1uwisza345h769]{32}$/;

/**
 * The key as WKD publishes it: binary (draft 3.1 forbids armor), and carrying only the user IDs of
 * this address, so a lookup of me@ does not tell the world the owner's other addresses.
 */
async function publishable(entry: PgpKeyConfig): Promise<Uint8Array> {
  const openpgp = await import('openpgp');
  const key = await openpgp.readKey({ armoredKey: entry.armored });
  const wanted = entry.address.toLowerCase();
  const pub = key.toPublic();
  pub.users = pub.users.filter((u) => u.userID?.email?.toLowerCase() === wanted);
  return pub.write();
}

export class WkdDirectory {
  private built = new WeakMap<FeConfig, Promise<Directory>>();
  // Parsing a key takes milliseconds; a reload that keeps a key keeps its bytes.
  private cache = new Map<string, Promise<Uint8Array>>();

  private directory(config: FeConfig): Promise<Directory> {
    let d = this.built.get(config);
    if (!d) {
      d = this.build(config);
      this.built.set(config, d);
    }
    return d;
  }

  private async build(config: FeConfig): Promise<Directory> {
    const dir: Directory = new Map();
    const keep = new Map<string, Promise<Uint8Array>>();
    for (const entry of config.keys.values()) {
      const at = entry.address.lastIndexOf('@');
      const domain = entry.address.slice(at + 1).toLowerCase();
      if (!config.domains.has(domain)) continue;
      const id = `${entry.address}\n${entry.armored}`;
      const bytes = this.cache.get(id) ?? publishable(entry);
      keep.set(id, bytes);
      let hashes = dir.get(domain);
      if (!hashes) dir.set(domain, (hashes = new Map()));
      // `fe key add` checked the key; a key damaged by hand in fe.yml is left out, not served half-read.
      const ok = await bytes.catch(() => null);
      if (ok) hashes.set(wkdHash(entry.address.slice(0, at)), ok);
    }
    this.cache = keep;
    return dir;
  }

  /** Parses keys ahead of the first request (and reports how many are published). */
  async prepare(config: FeConfig): Promise<number> {
    let n = 0;
    for (const hashes of (await this.directory(config)).values()) n += hashes.size;
    return n;
  }

  /** The answer for a WKD path, or null when the request is not a WKD request of a served domain. */
  async answer(config: FeConfig, host: string, path: string): Promise<WkdAnswer | null> {
    if (!path.startsWith(WELL_KNOWN)) return null;
    const rest = path.slice(WELL_KNOWN.length).split('/');
    let domain: string;
    if (host.startsWith('openpgpkey.')) {
      // Advanced: the domain is named twice, and both must agree.
      domain = host.slice('openpgpkey.'.length);
      if (rest.shift()?.toLowerCase() !== domain) return null;
    } else {
      domain = host;
    }
    if (!config.domains.has(domain)) return null;
    const notFound: WkdAnswer = { status: 404, body: 'no key for this address\n', type: 'text/plain; charset=utf-8' };
    // An empty policy: lookups only, no submission address, no flags (draft 4.5).
    if (rest.length === 1 && rest[0] === 'policy') return { status: 200, body: '', type: 'text/plain; charset=utf-8' };
    if (rest.length !== 2 || rest[0] !== 'hu' || !HASH.test(rest[1]!)) return notFound;
    const key = (await this.directory(config)).get(domain)?.get(rest[1]!);
    return key ? { status: 200, body: key, type: 'application/octet-stream' } : notFound;
  }
}
