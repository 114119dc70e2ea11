// DKIM signing for mail fe sends (the submission daemon): every active key of the domain signs,
// RSA and Ed25519 side by side (RFC 8463 section 4), with mailauth doing canonicalisation and
// the signatures.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { DkimSigner as MailauthSigner, type ParsedHeaders } from 'mailauth/lib/dkim/dkim-signer.js';
import { asciiDomain } from '../config/names.js';
import type { FeConfig } from '../config/schema.js';
import { privateKeyPath } from './keys.js';

export interface DkimSigner {
  selector: string;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  privateKey: string; // PEM (PKCS#8)
}

/** The headers a message's meaning rests on; a verifier ignores any that are absent. */
export const SIGNED_HEADERS: readonly string[] = [
  'From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'In-Reply-To', 'References',
  'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'Reply-To',
];

const rank = (s: DkimSigner) => (s.algorithm === 'rsa-sha256' ? 0 : 1);

// Parsed key files, so a message does not pay for reading and parsing PEM (an RSA key costs
// about 1.5 ms). A file counts as unchanged while its inode, size and mtime are: rotation and
// `fe dkim activate` write new files (atomic rename), so the next message sees them.
const parsed = new Map<string, { stamp: string; signer: DkimSigner }>();
const records = new WeakMap<DkimSigner, string>();

function txtRecord(publicKey: KeyObject, algorithm: DkimSigner['algorithm']): string {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // Ed25519's p= is the raw 32-byte key (RFC 8463), RSA's the whole SubjectPublicKeyInfo.
  return algorithm === 'ed25519-sha256' ? `v=DKIM1; k=ed25519; p=${spki.subarray(spki.length - 32).toString('base64')}` : `v=DKIM1; k=rsa; p=${spki.toString('base64')}`;
}

function loadSigner(file: string, selector: string): DkimSigner {
  const st = statSync(file);
  const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
  const hit = parsed.get(file);
  if (hit && hit.stamp === stamp && hit.signer.selector === selector) return hit.signer;
  const privateKey = readFileSync(file, 'utf8');
  const key = createPrivateKey(privateKey);
  const type = key.asymmetricKeyType;
  if (type !== 'rsa' && type !== 'ed25519') throw new Error(`DKIM: ${file} holds a ${type ?? 'unknown'} key, not rsa or ed25519`);
  const signer: DkimSigner = Object.freeze({ selector, algorithm: type === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256', privateKey });
  parsed.set(file, { stamp, signer });
  records.set(signer, txtRecord(createPublicKey(key), signer.algorithm));
  return signer;
}

/** The signers for a served domain's active selectors, RSA first. Throws if a key file is missing or unusable. */
export function activeSigners(config: FeConfig, domain: string): DkimSigner[] {
  const d = config.domains.get(asciiDomain(domain)); // throws on a malformed name
  if (!d) throw new Error(`DKIM: ${domain} is not a domain fe serves`);
  const signers = d.dkim.active.map((selector): DkimSigner => {
    const file = privateKeyPath(config.dataDir, d.name, selector);
    if (!existsSync(file)) throw new Error(`DKIM: the signing key of ${d.name} selector ${selector} is missing (${file}); see fe config check`);
    return loadSigner(file, selector);
  });
  return signers.sort((a, b) => rank(a) - rank(b));
}

/** The DKIM TXT record (v=DKIM1; k=...; p=...) of a signer's public key, as a verifier would find it. */
export function dkimRecord(signer: DkimSigner): string {
  const known = records.get(signer);
  if (known) return known;
  const txt = txtRecord(createPublicKey(signer.privateKey), signer.algorithm);
  records.set(signer, txt);
  return txt;
}

/**
 * mailauth's signer, with From signed once more than it occurs (RFC 6376 section 8.15): a From
 * added in transit then breaks the signature instead of being shown under our name. mailauth
 * lists in h= the names of the header lines it signs, so the top-most From line carries the
 * extra name; a name with no line left contributes nothing to the signed data, as for verifiers.
 */
class OversigningSigner extends MailauthSigner {
  override async messageHeaders(headers: ParsedHeaders): Promise<void> {
    const from = headers.parsed.find((h) => h.key === 'from');
    if (from) from.casedKey = `${from.casedKey ?? 'From'}: From`;
    return super.messageHeaders(headers);
  }
}

/** The message with one DKIM-Signature per signer prepended (RSA on top), relaxed/relaxed. `domain` is d=, in ASCII (punycode). */
export async function signMessage(message: Buffer, domain: string, signers: DkimSigner[], opts: { headerList?: string[]; now?: Date } = {}): Promise<Buffer> {
  if (signers.length === 0) throw new Error(`DKIM: no signing key for ${domain}`);
  const ordered = [...signers].sort((a, b) => rank(a) - rank(b));
  if (new Set(ordered.map((s) => s.algorithm)).size !== ordered.length) throw new Error(`DKIM: two ${ordered[0]!.algorithm} signers for ${domain}; give one per algorithm`);
  const names = opts.headerList ?? SIGNED_HEADERS;
  // From must be signed (RFC 6376 section 5.4); the list is colon-separated for mailauth.
  const headerList = [...new Set(['From', ...names].map((n) => n.trim()).filter((n) => n !== ''))].join(':');
  const signer = new OversigningSigner({
    canonicalization: 'relaxed/relaxed',
    headerList,
    // Always an explicit time: without one mailauth reads the clock twice (for the signed copy of
    // the header and for the one it returns), and when the two land on either side of a rounded
    // second, t= differs from what was signed and the signature is bad (about 1 in 400 here).
    signTime: opts.now ?? new Date(),
    signatureData: ordered.map((s) => ({ signingDomain: domain, selector: s.selector, privateKey: s.privateKey, algorithm: s.algorithm })),
  });
  await new Promise<void>((resolve, reject) => {
    signer.once('finish', resolve);
    signer.once('error', reject);
    signer.end(message);
  });
  // mailauth collects failures (a wrong key type, say) instead of throwing.
  const failed = signer.errors[0];
  if (failed) throw new Error(`DKIM signing for ${domain} with ${failed.selector ?? 'a key'} failed: ${failed.err.message}`);
  if (signer.signatureHeaders.length !== ordered.length) throw new Error(`DKIM signing for ${domain} made ${signer.signatureHeaders.length} of ${ordered.length} signatures (is there a header/body separator?)`);
  return Buffer.concat([Buffer.from(signer.signatureHeaders.map((h) => `${h}\r\n`).join(''), 'latin1'), message]);
}
