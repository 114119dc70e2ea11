// The layers fe has, by name. Each is built from the current config for each message (cheap: no
// connection is kept), so a SIGHUP that changes an engine's address applies to the next message.
import type { FeConfig, LayerName } from '../config/schema.js';
import type { ProtectionLayer } from './layer.js';
import { executablesLayer } from './executables.js';
import { virusesLayer } from './clamd.js';
import { rspamdLayer } from './rspamd.js';
import { phishingLayer } from './phishing.js';
import { greylistLayer } from './greylist.js';
import { dnsblLayer } from './dnsbl.js';
import { createResolver } from '../dns/resolver.js';

const FACTORIES: Partial<Record<LayerName, (config: FeConfig) => ProtectionLayer>> = {
  executables: (c) => executablesLayer(c.protection.executables),
  viruses: (c) => virusesLayer(c.protection.viruses),
  spam: (c) => rspamdLayer({ url: c.protection.spam.rspamdUrl, soft: c.protection.spam.greylist, ...(c.protection.spam.rejectScore !== undefined ? { rejectScore: c.protection.spam.rejectScore } : {}), ...(c.protection.spam.junkScore !== undefined ? { junkScore: c.protection.spam.junkScore } : {}), timeoutMs: c.protection.timeoutSeconds * 1000 }),
  phishing: (c) => phishingLayer(c.protection.phishing),
  greylist: (c) => greylistLayer({ dataDir: c.dataDir, delaySeconds: c.protection.greylist.delaySeconds }),
  // fe's resolver as configured (dns.servers), with a budget suited to a blocklist
  dnsbl: (c) => dnsblLayer({ zones: c.protection.dnsbl.zones, resolver: createResolver({ servers: c.dns.servers, timeoutMs: 3000 }) }),
};

/** The layer of this name, or null when fe has no such layer (yet). */
export function createLayer(name: LayerName, config: FeConfig): ProtectionLayer | null {
  const make = FACTORIES[name];
  return make ? make(config) : null;
}
