// A mailbox as fe before the hybrid seal left it, and a maker of more such key files.
import { createCipheriv, createPublicKey, generateKeyPairSync, randomBytes, scryptSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

// Made by fe before the hybrid (commit 5cbd7f4): createMailboxKey + appendToSpool, X25519 only.
export const V1_PASSWORD = 'correct horse v1';
export const V1_KEY_JSON = "{\n  \"version\": 1,\n  \"address\": \"old@example.org\",\n  \"created\": \"2026-12-02T01:01:16.261Z\",\n  \"kdf\": {\n    \"name\": \"scrypt\",\n    \"salt\": \"B3uNtPEQMY/qjIG4YhIiIg==\",\n    \"N\": 32768,\n    \"r\": 8,\n    \"p\": 1\n  },\n  \"sealing\": {\n    \"algorithm\": \"x25519\",\n    \"publicKey\": \"MCowBQYDK2VuAyEAGs96o4C2k/0b51TeoHG64KJ6wwj2Usdvuh/p0FJI2Ts=\"\n  },\n  \"wrapped\": {\n    \"cipher\": \"chacha20-poly1305\",\n    \"nonce\": \"ZsUadjh/HhA/fyYJ\",\n    \"data\": \"Lb9TOI8L0AaZZQ/yqAKKKoEtEkaTqqh2VhXFD1zXiVStWP7JmCQDaz8YlBEMbZ5+MoVtU8r6pUlGgwzstD75Br94fW9k/e16IsAmhxS6asmJ/yQ7HellkmYNy8HAlb7ReTJTysA+50sScFwlxCl7gl2xUKUHcyV4vCtdzWo4rIdURRNQ6kjHgy0S1/cIxWmkxv+M\",\n    \"tag\": \"faBl71JcDpnMAumxa7jHPA==\"\n  }\n}\n";
export const V1_SPOOL_ID = "01796173276415737-66428f7c94404ac95cdd";
export const V1_SPOOL_FILE = Buffer.from("ZmVTTAG30HvbmV2hHLsti5YJf7ifkELNZuAXoPRochm8zVhxD6G3imMC6FMQv16MaFRtjn6IoTO0izHcP5Qb5l+Eg9iB8bnQmDlYdiqKjVbH6o0BA31wRmtgHGgFgXa08QTemC7kFE2W7XA2zK08nn4w36eZuddvZmlWU8U9VbjmrmvpSP6pkP4OCWe2TGKxQU2GEG1F9Zel2JtS7GkQW9v4MVimHvpcFjuUNmUfI52qHBwoaC07Y/1f0QA/1WsECh1GmB340EIK84lEWguiUzAZSEOjMile4m28LyFG+lQndetjDmdPu6RbYrjVPRkeX8zbmNxKhEGhaYcDdwo+nj8hTDX0XuGx/qVZOwkqXGbWT3VElLvPgdYEME6dA0CG5w7CzKFy29/UaXvgK9o=", 'base64');


/** Writes an X25519-only (v1) mailbox key for `address` into `dir`, in the format fe wrote before the hybrid. */
export function writeV1Key(dir: string, address: string, password: string): void {
  const x = generateKeyPairSync('x25519');
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const key = scryptSync(password.normalize('NFC'), salt, 32, { N: 1 << 15, r: 8, p: 1, maxmem: 128 * (1 << 15) * 8 * 2 });
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  cipher.setAAD(Buffer.from(`fe mailbox key v1 ${address}`, 'utf8'), { plaintextLength: 0 });
  const plain = JSON.stringify({ masterKey: randomBytes(32).toString('base64'), sealingPrivateKey: x.privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64') });
  const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  const file = {
    version: 1,
    address,
    created: new Date().toISOString(),
    kdf: { name: 'scrypt', salt: salt.toString('base64'), N: 1 << 15, r: 8, p: 1 },
    sealing: { algorithm: 'x25519', publicKey: createPublicKey(x.privateKey).export({ type: 'spki', format: 'der' }).toString('base64') },
    wrapped: { cipher: 'chacha20-poly1305', nonce: nonce.toString('base64'), data: data.toString('base64'), tag: cipher.getAuthTag().toString('base64') },
  };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dir, 'key.json'), JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
}
