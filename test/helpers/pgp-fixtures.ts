// Test keys generated at test time (no key material checked into the repo).
// Curve25519 keys take a few milliseconds each, so tests can make their own.
import * as openpgp from 'openpgp';
import type { PrivateKey } from 'openpgp';

export interface PgpFixture {
  publicArmored: string;
  privateArmored: string;
  publicBinary: Uint8Array;
}

export interface KeyOptions {
  name?: string;
  /** 'ecc' = legacy ed25519/cv25519 (what gpg makes), 'curve25519' = RFC 9580 ed25519/x25519. */
  type?: 'ecc' | 'curve25519' | 'rsa';
  rsaBits?: number;
  /** Seconds after creation; 0 or absent = never expires. */
  keyExpirationTime?: number;
  /** Creation time; use the past to build already-expired keys. */
  date?: Date;
}

const DAY = 24 * 60 * 60 * 1000;

function userIDs(emails: string | string[], name: string): openpgp.UserID[] {
  return (Array.isArray(emails) ? emails : [emails]).map((email) => ({ name, email }));
}

function fixture(key: PrivateKey): PgpFixture {
  const pub = key.toPublic();
  return { publicArmored: pub.armor(), privateArmored: key.armor(), publicBinary: pub.write() };
}

function secretPacket(key: PrivateKey): openpgp.SecretKeyPacket {
  if (!(key.keyPacket instanceof openpgp.SecretKeyPacket)) throw new Error('expected a secret primary key packet');
  return key.keyPacket;
}

async function generate(emails: string | string[], options: KeyOptions, subkeys?: openpgp.SubkeyOptions[]): Promise<PrivateKey> {
  const { privateKey } = await openpgp.generateKey({
    userIDs: userIDs(emails, options.name ?? 'Test User'),
    type: options.type ?? 'ecc',
    ...(options.type === 'rsa' ? { rsaBits: options.rsaBits ?? 2048 } : { curve: 'curve25519Legacy' as const }),
    keyExpirationTime: options.keyExpirationTime ?? 0,
    date: options.date ?? new Date(),
    ...(subkeys ? { subkeys } : {}),
    format: 'object',
  });
  return privateKey;
}

/** A valid key: signing primary + encryption subkey, one user ID per email. */
export async function goodKey(email: string | string[], options: KeyOptions = {}): Promise<PgpFixture> {
  return fixture(await generate(email, options));
}

/** Created 30 days ago with a 1-day lifetime. */
export async function expiredKey(email: string): Promise<PgpFixture> {
  return fixture(await generate(email, { date: new Date(Date.now() - 30 * DAY), keyExpirationTime: 24 * 60 * 60 }));
}

/** Carries a key revocation signature (the public half is revoked too). */
export async function revokedKey(email: string): Promise<PgpFixture> {
  const base = await generate(email, {});
  const { privateKey } = await openpgp.revokeKey({ key: base, format: 'object' });
  return fixture(privateKey);
}

/** Primary signing key only, no subkeys: nothing can encrypt to it. */
export async function signOnlyKey(email: string): Promise<PgpFixture> {
  return fixture(await generate(email, {}, []));
}

/** Primary never expires; its only encryption subkey expired 29 days ago. */
export async function keyWithExpiredEncryptionSubkey(email: string): Promise<PgpFixture> {
  return fixture(await generate(email, { date: new Date(Date.now() - 30 * DAY) }, [{ keyExpirationTime: 24 * 60 * 60 }]));
}

/** Valid primary whose only encryption subkey has been revoked. */
export async function keyWithRevokedEncryptionSubkey(email: string): Promise<PgpFixture> {
  const key = await generate(email, {});
  const sub = key.subkeys[0];
  if (!sub) throw new Error('generateKey made no subkey');
  key.subkeys[0] = await sub.revoke(secretPacket(key));
  return fixture(key);
}

/** Valid key for `email` plus a second user ID `revokedEmail` whose certification is revoked. */
export async function keyWithRevokedUserId(email: string, revokedEmail: string): Promise<PgpFixture> {
  const key = await generate([email, revokedEmail], {});
  const user = key.users[1];
  if (!user) throw new Error('generateKey made no second user');
  key.users[1] = await user.revoke(secretPacket(key));
  return fixture(key);
}

/**
 * Key made for `email`, then its user ID packet swapped for `forgedEmail` while
 * keeping the old self-signature: the result has no valid self-signature.
 */
export async function forgedUserIdKey(email: string, forgedEmail: string): Promise<{ publicArmored: string; publicBinary: Uint8Array }> {
  const key = await generate(email, {});
  const packets = key.toPublic().toPacketList();
  const at = packets.findIndex((p) => p instanceof openpgp.UserIDPacket);
  if (at < 0) throw new Error('no user ID packet');
  packets[at] = openpgp.UserIDPacket.fromObject({ name: 'Test User', email: forgedEmail });
  const publicBinary = packets.write();
  return { publicArmored: openpgp.armor(openpgp.enums.armor.publicKey, publicBinary), publicBinary };
}

/** Valid key for `email` with an extra, never-signed user ID `extraEmail` appended. */
export async function unsignedUserIdKey(email: string, extraEmail: string): Promise<{ publicArmored: string; publicBinary: Uint8Array }> {
  const key = await generate(email, {});
  const packets = key.toPublic().toPacketList();
  const at = packets.findIndex((p) => p instanceof openpgp.PublicSubkeyPacket);
  packets.splice(at < 0 ? packets.length : at, 0, openpgp.UserIDPacket.fromObject({ email: extraEmail }));
  const publicBinary = packets.write();
  return { publicArmored: openpgp.armor(openpgp.enums.armor.publicKey, publicBinary), publicBinary };
}

/** Two armored public key blocks one after the other, as `cat a.asc b.asc` gives. */
export async function twoKeysArmored(emailA: string, emailB: string): Promise<string> {
  const [a, b] = await Promise.all([goodKey(emailA), goodKey(emailB)]);
  return `${a.publicArmored}\n${b.publicArmored}`;
}

/** Two public keys in a single armor block / binary stream, as `gpg --export --armor A B` gives. */
export async function twoKeysOneBlock(emailA: string, emailB: string): Promise<{ publicArmored: string; publicBinary: Uint8Array }> {
  const [a, b] = await Promise.all([goodKey(emailA), goodKey(emailB)]);
  const publicBinary = new Uint8Array(a.publicBinary.length + b.publicBinary.length);
  publicBinary.set(a.publicBinary, 0);
  publicBinary.set(b.publicBinary, a.publicBinary.length);
  return { publicArmored: openpgp.armor(openpgp.enums.armor.publicKey, publicBinary), publicBinary };
}
