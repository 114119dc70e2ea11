// An Apple configuration profile (.mobileconfig) with one com.apple.mail.managed payload: the
// account of one address, for iOS/iPadOS and macOS Mail. Unsigned (the device says so when it is
// installed); it holds no password, the device asks for it. One incoming and one outgoing server
// is all the payload can carry: the best advertised of each (config/advertised.ts).
import { createHash } from 'node:crypto';
import { clientServices } from '../config/advertised.js';
import type { FeConfig } from '../config/schema.js';
import { xmlEscape } from './autoconfig.js';

export const MOBILECONFIG_TYPE = 'application/x-apple-aspen-config';
/** Served at https://autoconfig.DOMAIN/mail/apple.mobileconfig?emailaddress=ADDRESS */
export const MOBILECONFIG_PATH = '/mail/apple.mobileconfig';

export class ProfileError extends Error {}

/** A stable UUID (version 8 layout, RFC 9562) from a name: reinstalling the profile replaces it. */
function nameUuid(name: string): string {
  const h = createHash('sha256').update(name, 'utf8').digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex').toUpperCase();
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

type Value = string | number | boolean;

/** The key/value lines of a plist dict (without <dict> itself). */
function plistEntries(entries: [string, Value][], indent: string): string[] {
  return entries.flatMap(([key, value]) => {
    const v = typeof value === 'boolean' ? `<${value}/>` : typeof value === 'number' ? `<integer>${value}</integer>` : `<string>${xmlEscape(value)}</string>`;
    return [`${indent}<key>${xmlEscape(key)}</key>`, `${indent}${v}`];
  });
}

/** The profile for `address` (local@domain, domain served), as plist XML. */
export function appleProfile(config: FeConfig, address: string): string {
  const services = clientServices(config);
  const incoming = services.find((s) => s.protocol !== 'smtp');
  const outgoing = services.find((s) => s.protocol === 'smtp');
  if (!incoming) throw new ProfileError('no IMAP or POP3 service is on (listen: and ports: in fe.yml), so there is nothing to set up');
  if (!outgoing) throw new ProfileError('no submission service is on (listen.submission(s) and ports: in fe.yml), so there is nothing to send through');
  // Reverse-DNS identifiers, as Apple's profiles use: the host's name, then the account.
  const reversed = (name: string) => name.split('.').reverse().join('.');
  const at = address.lastIndexOf('@');
  const local = address.slice(0, at).replace(/[^A-Za-z0-9-]/g, '-');
  const id = `${reversed(config.hostname)}.account.${reversed(address.slice(at + 1))}.${local}`;
  const account = plistEntries(
    [
      ['EmailAccountDescription', address],
      ['EmailAccountType', incoming.protocol === 'imap' ? 'EmailTypeIMAP' : 'EmailTypePOP'],
      ['EmailAddress', address],
      ['IncomingMailServerAuthentication', 'EmailAuthPassword'],
      ['IncomingMailServerHostName', config.hostname],
      ['IncomingMailServerPortNumber', incoming.port],
      // false is STARTTLS here: fe offers no login before TLS, so the client cannot fall back to plain.
      ['IncomingMailServerUseSSL', incoming.tls === 'implicit'],
      ['IncomingMailServerUsername', address],
      ['OutgoingMailServerAuthentication', 'EmailAuthPassword'],
      ['OutgoingMailServerHostName', config.hostname],
      ['OutgoingMailServerPortNumber', outgoing.port],
      ['OutgoingMailServerUseSSL', outgoing.tls === 'implicit'],
      ['OutgoingMailServerUsername', address],
      ['OutgoingPasswordSameAsIncomingPassword', true],
      ['PayloadDescription', `Mail account ${address}`],
      ['PayloadDisplayName', address],
      ['PayloadIdentifier', `${id}.mail`],
      ['PayloadType', 'com.apple.mail.managed'],
      ['PayloadUUID', nameUuid(`${address}\n${id}.account`)],
      ['PayloadVersion', 1],
    ],
    '      ',
  );
  const top = plistEntries(
    [
      ['PayloadDescription', `Sets up the mail account ${address} on ${config.hostname}`],
      ['PayloadDisplayName', `Mail: ${address}`],
      ['PayloadIdentifier', id],
      ['PayloadRemovalDisallowed', false],
      ['PayloadType', 'Configuration'],
      ['PayloadUUID', nameUuid(`${address}\n${id}`)],
      ['PayloadVersion', 1],
    ],
    '  ',
  );
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    '<dict>',
    '  <key>PayloadContent</key>',
    '  <array>',
    '    <dict>',
    ...account,
    '    </dict>',
    '  </array>',
    ...top,
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}
