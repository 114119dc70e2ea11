// Content-Transfer-Encoding (RFC 2045 6) undone, for IMAP BINARY (RFC 3516) and body SEARCH.
// Lenient, as readers must be: stray characters in base64 are skipped, a bad "=" in
// quoted-printable stays as it is.

const IDENTITY = new Set(['', '7bit', '8bit', 'binary']);

/** The decoded octets of a part body, or null for an encoding fe does not know. */
export function decodeTransferEncoding(body: Buffer, encoding: string): Buffer | null {
  const enc = encoding.trim().toLowerCase();
  if (IDENTITY.has(enc)) return body;
  if (enc === 'base64') return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
  if (enc === 'quoted-printable') return decodeQuotedPrintable(body);
  return null;
}

const hex = (c: number): number => (c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1);

function decodeQuotedPrintable(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length);
  let n = 0;
  let lineStart = 0; // where trailing white space of the current line may be dropped back to
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === 0x3d) {
      // "=" then optional white space then a line break: a soft line break
      let j = i + 1;
      while (j < body.length && (body[j] === 0x20 || body[j] === 0x09)) j++;
      if (j >= body.length) {
        i = j;
        continue;
      }
      if (body[j] === 0x0a || (body[j] === 0x0d && body[j + 1] === 0x0a)) {
        i = body[j] === 0x0d ? j + 1 : j;
        lineStart = n;
        continue;
      }
      const h = hex(body[i + 1] ?? -1);
      const l = hex(body[i + 2] ?? -1);
      if (h >= 0 && l >= 0) {
        out[n++] = h * 16 + l;
        i += 2;
        lineStart = n;
        continue;
      }
      out[n++] = c;
      continue;
    }
    if (c === 0x0a || (c === 0x0d && body[i + 1] === 0x0a)) {
      // RFC 2045 6.7 (3): white space at the end of an encoded line was added in transport
      while (n > lineStart && (out[n - 1] === 0x20 || out[n - 1] === 0x09)) n--;
      if (c === 0x0d) {
        out[n++] = 0x0d;
        i++; // past the LF too
      }
      out[n++] = 0x0a;
      lineStart = n;
      continue;
    }
    out[n++] = c;
  }
  return out.subarray(0, n);
}
