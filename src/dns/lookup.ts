// Node's http(s) and net ask the system resolver by default; fe's own resolver (fe.yml `dns:`)
// must answer for the names fe connects to, as it does for MX lookups.
import type { LookupFunction } from 'node:net';
import type { FeResolver } from './resolver.js';

/** A `lookup` for node's http(s) and net that asks fe's resolver (A records). */
export function resolverLookup(resolver: FeResolver): LookupFunction {
  return (hostname, options, callback) => {
    resolver.a(hostname).then(
      (addresses) => {
        const address = addresses[0];
        if (!address) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 4);
        if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, addresses.map((a) => ({ address: a, family: 4 })));
        else callback(null, address, 4);
      },
      (e: Error) => callback(e as NodeJS.ErrnoException, '', 4),
    );
  };
}
