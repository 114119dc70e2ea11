// DNSSEC-aware lookups for DANE (RFC 7672). node's resolver (c-ares) hides the header of the
// answer, so it cannot say whether a validating resolver vouched for it (the AD bit, RFC 4035
// section 3.2.3). These lookups ask the configured resolver themselves (src/dns/wire.ts) with
// the DO bit, and report the records with that bit. fe does not validate signatures itself: it
// trusts the AD bit only from a resolver on loopback (RFC 6698 appendix A.3.3: the path to a
// remote resolver is not secured, anyone on it could set the bit).
import type { MxRecord } from './resolver.js';
import { isLoopback, lookupWire, type Server, type TlsaRecord } from './wire.js';

export interface DnssecTypes {
  A: string;
  AAAA: string;
  MX: MxRecord;
  TLSA: TlsaRecord;
}

/** Records of one type (none for NXDOMAIN or NODATA) and whether the answer was DNSSEC-validated. */
export interface Validated<T> {
  records: T[];
  validated: boolean;
}

/**
 * One lookup of `type` at `name`, asked of the first server that answers. validated is true
 * only when that server is on loopback and set the AD bit; NXDOMAIN and NODATA are an empty
 * list (validated then says whether the denial was proven). SERVFAIL (which a validating resolver
 * also answers for bogus data) and timeouts throw a temporary DnsLookupError.
 */
export async function lookupValidated<K extends keyof DnssecTypes>(servers: Server[], name: string, type: K, timeoutMs: number): Promise<Validated<DnssecTypes[K]>> {
  const a = await lookupWire(servers, name, type, { dnssec: true, tryMs: timeoutMs, tries: 1 });
  return { records: a.records as DnssecTypes[K][], validated: a.ad && isLoopback(a.server.host) };
}
