// DANE for outbound SMTP (RFC 7672): TLSA records at _25._tcp.MXHOST, published in a signed
// zone, say which certificate an MX host must present. They bind only when every step to them was
// DNSSEC-validated (the MX RRset, the host's address records, the TLSA RRset itself: RFC 7672
// 2.2), which fe learns from the AD bit of a validating resolver on loopback (src/dns/dnssec.ts).
//
// Why not mx-connect's DANE: it resolves TLSA with node's resolveTlsa (Node 22.15 and later; fe
// runs on 20.18), which cannot see the AD bit, so it leaves "is this answer validated?" to a
// callback the caller must write anyway; it matches PKIX-EE records, which RFC 7672 3.1.3 says an
// SMTP client must treat as unusable; its DANE-TA check matches a certificate in the chain but
// checks neither the signatures up to it nor the host name; and it opens its own socket, while
// fe's sessions are nodemailer's SMTP connections with fe's resolver. The validated lookup is
// the larger part, and the matching is short, so fe does both here.
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket, PeerCertificate, DetailedPeerCertificate } from 'node:tls';
import type { TlsaRecord } from '../dns/wire.js';
import type { FeResolver } from '../dns/resolver.js';

/** What DANE says about one MX host. */
export type DaneHost =
  /** No DANE: the domain's other policy applies (MTA-STS or opportunistic TLS). encrypt: the host
   * has validated TLSA records, none usable, so TLS is still mandatory (RFC 7672 2.2). */
  | { kind: 'none'; encrypt?: boolean }
  /** STARTTLS, and a certificate that matches one of these records, or no delivery to this host. */
  | { kind: 'dane'; records: TlsaRecord[]; names: string[] }
  /** The TLSA lookup failed in a signed zone: this host may not be used until it answers. */
  | { kind: 'defer'; message: string };

export interface DaneDomain {
  host(host: string): Promise<DaneHost>;
}

const DANE_TA = 2;
const DANE_EE = 3;
const HASH_LENGTH: Record<number, number> = { 1: 32, 2: 64 };

/** RFC 7672 3.1.3: PKIX-TA and PKIX-EE are unusable for SMTP; so are unknown selectors and matching types. */
export function usable(r: TlsaRecord): boolean {
  if (r.usage !== DANE_TA && r.usage !== DANE_EE) return false;
  if (r.selector !== 0 && r.selector !== 1) return false;
  if (r.matchingType === 0) return r.data.length > 0;
  return HASH_LENGTH[r.matchingType] === r.data.length;
}

/** DANE for a destination domain: only when its MX RRset (or, for the implicit MX, the denial of one) is validated. */
export async function daneFor(domain: string, resolver: FeResolver): Promise<DaneDomain> {
  let mxValidated = false;
  try {
    mxValidated = (await resolver.validated(domain, 'MX')).validated;
  } catch {
    // the MX lookup itself reports DNS failures; without a validated answer DANE does not apply
  }
  return {
    async host(host) {
      if (!mxValidated) return { kind: 'none' };
      try {
        if (!(await resolver.validated(host, 'A')).validated) return { kind: 'none' }; // RFC 7672 2.2.2: insecure address records, no TLSA lookup
      } catch {
        return { kind: 'none' }; // the address lookup fails on its own path
      }
      let tlsa;
      try {
        tlsa = await resolver.validated(`_25._tcp.${host}`, 'TLSA'); // port 25 always: the MX service's port (RFC 7672 2.2.3)
      } catch (e) {
        return { kind: 'defer', message: `4.7.5 DANE: the TLSA lookup for ${host} failed (${(e as Error).message}); not delivering to it without an answer` };
      }
      if (!tlsa.validated || tlsa.records.length === 0) return { kind: 'none' };
      const records = tlsa.records.filter(usable);
      if (records.length === 0) return { kind: 'none', encrypt: true };
      return { kind: 'dane', records, names: [host, domain] };
    },
  };
}

function associated(cert: X509Certificate, r: TlsaRecord): boolean {
  const data = r.selector === 0 ? cert.raw : cert.publicKey.export({ type: 'spki', format: 'der' });
  const digest = r.matchingType === 0 ? data : createHash(r.matchingType === 1 ? 'sha256' : 'sha512').update(data).digest();
  return digest.equals(r.data);
}

/** The certificates the server presented, leaf first (node links them by issuerCertificate; a self-signed one points at itself). */
function presentedChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let c: PeerCertificate | DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    chain.push(new X509Certificate(c.raw));
    c = (c as DetailedPeerCertificate).issuerCertificate;
  }
  return chain;
}

function current(c: X509Certificate, now: Date): boolean {
  return new Date(c.validFrom) <= now && now <= new Date(c.validTo);
}

/**
 * Checks the peer of a finished TLS handshake against a host's usable TLSA records. DANE-EE
 * (RFC 7672 3.1.1): the leaf matches; no name, date or issuer checks. DANE-TA (3.1.2): a
 * certificate above the leaf in the presented chain matches, every certificate below it is
 * signed by the next and current, and the leaf carries one of the reference names (3.2.2: the MX
 * host and the validated next-hop domain). Returns null when it matches, else why not.
 */
export function checkPeer(socket: TLSSocket, dane: { records: TlsaRecord[]; names: string[] }, now = new Date()): string | null {
  const chain = presentedChain(socket);
  const leaf = chain[0];
  if (!leaf) return 'the server presented no certificate';
  for (const r of dane.records) {
    if (r.usage === DANE_EE && associated(leaf, r)) return null;
    if (r.usage !== DANE_TA) continue;
    const ta = chain.findIndex((c, i) => i > 0 && associated(c, r));
    if (ta < 0) continue;
    let signed = true;
    for (let i = 0; i < ta && signed; i++) signed = chain[i]!.checkIssued(chain[i + 1]!) && chain[i]!.verify(chain[i + 1]!.publicKey) && current(chain[i]!, now);
    if (signed && dane.names.some((n) => leaf.checkHost(n) !== undefined)) return null;
  }
  return `the certificate (SHA-256 of its public key ${createHash('sha256').update(leaf.publicKey.export({ type: 'spki', format: 'der' })).digest('hex')}) matches none of the ${dane.records.length} usable TLSA record(s)`;
}
