// The one TLS policy every fe listener uses (IMAP, POP3, MX and submission STARTTLS/implicit TLS,
// HTTPS): TLS 1.2 with forward-secret AEAD suites only, or TLS 1.3; the server's order decides;
// renegotiation refused (OpenSSL answers a client's request with a no_renegotiation alert, so
// a client cannot make the server redo handshakes in a loop).
import { constants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';

// TLS 1.2 suites, strongest first; TLS 1.3 keeps Node's defaults (all AEAD, all forward-secret).
const TLS12_SUITES = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
];

export const TLS_POLICY = {
  minVersion: 'TLSv1.2',
  ciphers: TLS12_SUITES.join(':'),
  honorCipherOrder: true,
  ecdhCurve: 'X25519:P-256:P-384',
  secureOptions: constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_CIPHER_SERVER_PREFERENCE,
} as const satisfies SecureContextOptions;

/** Key and certificate with the policy applied, for createSecureContext, tls/https servers and smtp-server. */
export function tlsServerOptions(material: { key: Buffer | string; cert: Buffer | string }): SecureContextOptions & typeof TLS_POLICY {
  return { key: material.key, cert: material.cert, ...TLS_POLICY };
}
