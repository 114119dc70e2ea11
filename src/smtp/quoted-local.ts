// Quoted local parts in MAIL FROM and RCPT TO (RFC 5321 4.1.2: Local-part = Dot-string /
// Quoted-string, e.g. <"john doe"@example.org>).
//
// smtp-server's address parser splits the command at white space and the address at "@", so a
// quoted local part holding a space or an "@" is answered 501 before fe sees it. It has no option
// for this; fe wraps the parser on each connection it constructs (see pregreet.ts): a valid
// quoted local part is swapped for a plain stand-in, smtp-server parses the rest (source route,
// domain, parameters) as usual, and the quoted form is put back into what it returns. The
// resolver then matches it in its unquoted form. Nothing in node_modules is patched.
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

// Up to the "<" (and a source route RFC 5321 says to accept and ignore), the quoted local part,
// then "@domain>" and any parameters. Quoted-string: qtextSMTP (%d32-33, %d35-91, %d93-126,
// plus UTF-8 past C1 for SMTPUTF8, RFC 6531) or quoted-pairSMTP (backslash, %d32-126).
const QUOTED = /^(\s*(?:MAIL\s+FROM|RCPT\s+TO)\s*:\s*<(?:@[^\s<>:"]+:)?)("(?:[\x20\x21\x23-\x5b\x5d-\x7e\u00a0-\uffff]|\\[\x20-\x7e])*")(@[^\s<>"]+>.*)$/is;
const INVISIBLE = /[\u200b\u2060\ufeff]/; // refused by smtp-server in any address; here too
const STAND_IN = 'fe.quoted.local';

/** Makes `connection` accept quoted local parts in MAIL FROM and RCPT TO. */
export function acceptQuotedLocalParts(connection: SMTPConnection): void {
  const parse = connection._parseAddressCommand.bind(connection);
  connection._parseAddressCommand = (name, raw) => {
    const text = raw.toString();
    const m = QUOTED.exec(text);
    if (!m) {
      // a '"' is no atext: outside a whole Quoted-string it makes the address malformed (501),
      // where smtp-server alone would pass it on as part of a dot-string
      return /<[^<>]*"[^<>]*>/.test(text) ? false : parse(name, raw);
    }
    if (INVISIBLE.test(m[2]!)) return false;
    const parsed = parse(name, m[1]! + STAND_IN + m[3]!);
    if (!parsed || !parsed.address.startsWith(`${STAND_IN}@`)) return parsed;
    const address = m[2]! + parsed.address.slice(STAND_IN.length);
    // RFC 5321 4.5.3.1.3, as smtp-server counts it for other addresses
    if (address.length > 253) return false;
    return { ...parsed, address };
  };
}

/**
 * For a server without pregreet (submission): constructs each connection as SMTPServer.connect()
 * does, with the parser wrapped before it reads anything.
 */
export function acceptQuotedLocalPartsOn(server: SMTPServer): void {
  server.connect = (socket, socketOptions) => {
    const connection = new SMTPConnection(server, socket, socketOptions);
    acceptQuotedLocalParts(connection);
    server.connections.add(connection);
    connection.on('error', (err: Error) => server._onError(err));
    connection.on('connect', (data) => server._onClientConnect(data));
    connection.init();
  };
}
