// The WKD name of an address (draft-koch-openpgp-webkey-service 3.1), shared by fe-web, which
// publishes keys under it, and the lookup that fetches correspondents' keys.
import { createHash } from 'node:crypto';

// z-base-32 (draft section 3.1 names it; the alphabet is Zooko's): 5 bits a character, MSB first.
const ZBASE32 = 'ybndrfg8ejkmcpqxot1uwisza345h769';

export function zBase32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ZBASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += ZBASE32[(buffer << (5 - bits)) & 31];
  return out;
}

/** The hu/ name of a local part: only ASCII A-Z are lower-cased (draft 3.1), the rest hashed as UTF-8. */
export function wkdHash(local: string): string {
  const lowered = local.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return zBase32(createHash('sha1').update(lowered, 'utf8').digest());
}
