// Where a domain wants its TLS reports: the _smtp._tls TXT record (RFC 8460 section 3).
import { isDnsNotFound, type FeResolver } from '../dns/resolver.js';

export type ReportUri = { kind: 'mailto'; address: string; uri: string } | { kind: 'https'; url: URL; uri: string };

/**
 * The rua URIs of a record, or null when it is not a TLSRPTv1 record. Unknown fields are
 * ignored; URIs of other schemes are skipped (the RFC defines mailto: and https: only).
 */
export function parseTlsRptRecord(text: string): ReportUri[] | null {
  const fields = text.split(/[ \t]*;[ \t]*/);
  if (fields[0]?.trim() !== 'v=TLSRPTv1') return null;
  const rua = fields.slice(1).find((f) => /^rua=/i.test(f.trim()));
  if (!rua) return null;
  const out: ReportUri[] = [];
  for (const raw of rua.trim().slice(4).split(/[ \t]*,[ \t]*/)) {
    const uri = raw.trim();
    if (/^mailto:/i.test(uri)) {
      let address: string;
      try {
        address = decodeURIComponent(uri.slice(7).split('?')[0]!);
      } catch {
        continue;
      }
      if (/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(address)) out.push({ kind: 'mailto', address, uri });
    } else if (/^https:\/\//i.test(uri)) {
      try {
        out.push({ kind: 'https', url: new URL(uri), uri });
      } catch {
        // not a URL: skipped
      }
    }
  }
  return out.length > 0 ? out : null;
}

/**
 * Looks up _smtp._tls.DOMAIN through fe's resolver. Exactly one TLSRPTv1 record counts; none or
 * several mean the domain takes no reports (RFC 8460 3). A temporary DNS failure throws.
 */
export async function reportUris(domain: string, resolver: FeResolver): Promise<ReportUri[]> {
  let records: string[];
  try {
    records = await resolver.txt(`_smtp._tls.${domain}`);
  } catch (e) {
    if (isDnsNotFound(e)) return [];
    throw e;
  }
  const ours = records.filter((r) => /^v=TLSRPTv1[ \t]*;/.test(r));
  if (ours.length !== 1) return [];
  return parseTlsRptRecord(ours[0]!) ?? [];
}
