// Is a message already end-to-end encrypted? Such mail is stored as it came: encrypting it again
// would hide nothing more and make the owner's client decrypt twice. Anything not recognised here
// is encrypted, so a wrong "no" costs a second layer, never a plaintext copy.
import { parseParams } from '../store/message-parse.js';
import { fieldValue, splitHeader, type SplitMessage } from '../submission/headers.js';

export type EncryptedKind = 'pgp-mime' | 'inline-pgp' | 'smime';

// CMS content types (RFC 5652 enveloped-data, RFC 5083 authEnveloped-data), DER-encoded OIDs.
const ENVELOPED_OID = Buffer.from('06092a864886f70d010703', 'hex');
const AUTH_ENVELOPED_OID = Buffer.from('060b2a864886f70d0109100117', 'hex');

function header(split: SplitMessage, name: string): string | null {
  const f = split.fields.find((x) => x.lower === name);
  return f ? fieldValue(f) : null;
}

/** The first bytes of an S/MIME body without smime-type: which CMS type its ContentInfo names. */
function cmsIsEnveloped(body: Buffer, cte: string): boolean {
  const head = body.subarray(0, 256);
  const der = cte === 'base64' ? Buffer.from(head.toString('latin1').replace(/[^A-Za-z0-9+/]/g, '').slice(0, 64), 'base64') : head;
  // ContentInfo ::= SEQUENCE { contentType OID, ... }: the OID follows the SEQUENCE's tag and length.
  if (der[0] !== 0x30) return false;
  const lenBytes = (der[1] ?? 0) & 0x80 ? ((der[1] ?? 0) & 0x7f) + 1 : 1;
  const oid = der.subarray(1 + lenBytes);
  return oid.subarray(0, ENVELOPED_OID.length).equals(ENVELOPED_OID) || oid.subarray(0, AUTH_ENVELOPED_OID.length).equals(AUTH_ENVELOPED_OID);
}

export function encryptedKind(message: Buffer): EncryptedKind | null {
  const split = splitHeader(message);
  const ct = header(split, 'content-type');
  const { value: type, params } = parseParams(ct ?? 'text/plain');
  const param = (name: string) => params.find(([k]) => k === name)?.[1]?.toLowerCase() ?? null;
  const cte = (header(split, 'content-transfer-encoding') ?? '7bit').trim().toLowerCase();
  if (type === 'multipart/encrypted') return 'pgp-mime';
  if (type === 'application/pkcs7-mime' || type === 'application/x-pkcs7-mime') {
    const smime = param('smime-type');
    if (smime === 'enveloped-data' || smime === 'authenveloped-data') return 'smime';
    if (smime === null && cmsIsEnveloped(split.body.subarray(2), cte)) return 'smime';
    return null;
  }
  // Inline PGP: the whole text body is one armored message (only blank space around it).
  if (type === 'text/plain' && (cte === '7bit' || cte === '8bit')) {
    const text = split.body.toString('latin1').trim();
    if (text.startsWith('-----BEGIN PGP MESSAGE-----') && text.endsWith('-----END PGP MESSAGE-----') && text.indexOf('-----BEGIN PGP MESSAGE-----', 1) < 0) return 'inline-pgp';
  }
  return null;
}
