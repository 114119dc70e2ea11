// DNS blocklists: the client's IP, reversed, looked up under each zone fe.yml names (none by
// default: the big lists refuse queries from public resolvers), through fe's own resolver. A
// listing (an A record in 127.0.0.0/8) refuses the message; a zone that does not answer is the
// layer's fail policy. Only the client IP leaves the host, as it would for any DNSBL.
import { isIPv4 } from 'node:net';
import { isDnsNotFound, reverseName, type FeResolver } from '../dns/resolver.js';
import type { LayerVerdict, ProtectionLayer, ScanInput } from './layer.js';

export interface DnsblOptions {
  zones: string[];
  resolver: FeResolver;
}

/** The name to look up for this IP under this zone (RFC 5782: reversed octets or nibbles). */
export function dnsblName(ip: string, zone: string): string {
  const v4 = ip.replace(/^::ffff:/i, '');
  const rev = reverseName(isIPv4(v4) ? v4 : ip).replace(/\.(in-addr|ip6)\.arpa$/, '');
  return `${rev}.${zone.replace(/\.$/, '')}`;
}

export function dnsblLayer(opts: DnsblOptions): ProtectionLayer {
  return {
    name: 'dnsbl',
    async scan(input: ScanInput): Promise<LayerVerdict> {
      const listed: string[] = [];
      const problems: string[] = [];
      await Promise.all(
        opts.zones.map(async (zone) => {
          try {
            const answers = await opts.resolver.a(dnsblName(input.clientIp, zone));
            // RFC 5782 2.1: listings answer 127.0.0.2 and up; anything else is an error page or a wildcard
            if (answers.some((a) => /^127\./.test(a) && a !== '127.0.0.1')) listed.push(zone);
          } catch (e) {
            if (!isDnsNotFound(e)) problems.push(`${zone}: ${(e as Error).message}`);
          }
        }),
      );
      const symbols = listed.map((z) => `DNSBL:${z}`);
      if (listed.length > 0) return { layer: 'dnsbl', action: 'reject', code: 554, reply: `5.7.1 Client address is listed by ${listed.sort().join(', ')}`, symbols };
      if (problems.length > 0) return { layer: 'dnsbl', action: 'skipped', problem: problems.join('; ').slice(0, 200) };
      return { layer: 'dnsbl', action: 'accept' };
    },
  };
}
