// Documents mail clients fetch to set themselves up, built from what fe.yml enables (see
// config/advertised.ts), for the served domains only:
//   Thunderbird autoconfig, clientConfig 1.1: https://autoconfig.DOMAIN/mail/config-v1.1.xml and
//     https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml (?emailaddress=)
//   Outlook Autodiscover, the 2006 "outlook" POX schema: /autodiscover/autodiscover.xml (POST, GET)
// Both say "log in with the whole address" (fe's user name) and "password over TLS".
import { clientServices, type ClientService } from '../config/advertised.js';
import { asciiDomain, NameError, splitAddress } from '../config/names.js';
import type { FeConfig } from '../config/schema.js';

export function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** local@domain with the domain in ASCII form, or null when it is not an address of a served domain. */
export function servedAddress(config: FeConfig, input: string): { address: string; domain: string } | null {
  if (input.length > 320 || /[\s<>"\\]/.test(input)) return null;
  try {
    const { local, domain } = splitAddress(input);
    const ascii = asciiDomain(domain);
    return config.domains.has(ascii) ? { address: `${local}@${ascii}`, domain: ascii } : null;
  } catch (e) {
    if (e instanceof NameError) return null;
    throw e;
  }
}

// ---- Thunderbird -------------------------------------------------------------------------------

export const AUTOCONFIG_PATHS = ['/mail/config-v1.1.xml', '/.well-known/autoconfig/mail/config-v1.1.xml'];

function thunderbirdServer(config: FeConfig, s: ClientService): string {
  const tag = s.protocol === 'smtp' ? 'outgoingServer' : 'incomingServer';
  return [
    `    <${tag} type="${s.protocol}">`,
    `      <hostname>${xmlEscape(config.hostname)}</hostname>`,
    `      <port>${s.port}</port>`,
    `      <socketType>${s.tls === 'implicit' ? 'SSL' : 'STARTTLS'}</socketType>`,
    '      <authentication>password-cleartext</authentication>',
    '      <username>%EMAILADDRESS%</username>',
    `    </${tag}>`,
  ].join('\n');
}

/** Thunderbird's clientConfig for a served domain; servers in order of preference, as it reads them. */
export function thunderbirdConfig(config: FeConfig, domain: string): string {
  const services = clientServices(config);
  // Incoming servers come first in the schema, then outgoing ones.
  const ordered = [...services.filter((s) => s.protocol !== 'smtp'), ...services.filter((s) => s.protocol === 'smtp')];
  const name = xmlEscape(domain);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<clientConfig version="1.1">',
    `  <emailProvider id="${name}">`,
    `    <domain>${name}</domain>`,
    `    <displayName>${name}</displayName>`,
    `    <displayShortName>${name}</displayShortName>`,
    ...ordered.map((s) => thunderbirdServer(config, s)),
    '  </emailProvider>',
    '</clientConfig>',
    '',
  ].join('\n');
}

// ---- Outlook Autodiscover ----------------------------------------------------------------------

export const AUTODISCOVER_PATHS = ['/autodiscover/autodiscover.xml', '/Autodiscover/Autodiscover.xml'];
const REQUEST_NS = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006';
const RESPONSE_NS = 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006';
const OUTLOOK_NS = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a';
/** A request is one address in a small envelope; anything bigger is not one. */
export const AUTODISCOVER_MAX_BODY = 8192;

export class AutodiscoverRequestError extends Error {}

/** The EMailAddress of a POSTed request (the outlook requestschema 2006). */
export function autodiscoverRequestAddress(body: string): string {
  if (!body.includes(REQUEST_NS)) throw new AutodiscoverRequestError('not an Autodiscover request (the outlook requestschema 2006 namespace is missing)');
  const found = [...body.matchAll(/<(?:[A-Za-z_][\w.-]*:)?EMailAddress\s*>([^<]*)<\/(?:[A-Za-z_][\w.-]*:)?EMailAddress\s*>/g)];
  if (found.length !== 1) throw new AutodiscoverRequestError('the request needs exactly one EMailAddress');
  return found[0]![1]!.trim().replace(/&amp;/g, '&').replace(/&apos;/g, "'");
}

function outlookProtocol(config: FeConfig, s: ClientService, address: string): string {
  return [
    '      <Protocol>',
    `        <Type>${s.protocol === 'pop3' ? 'POP3' : s.protocol.toUpperCase()}</Type>`,
    `        <Server>${xmlEscape(config.hostname)}</Server>`,
    `        <Port>${s.port}</Port>`,
    '        <DomainRequired>off</DomainRequired>',
    `        <LoginName>${xmlEscape(address)}</LoginName>`,
    '        <SPA>off</SPA>',
    // Encryption overrides SSL where a client knows it; SSL=on alone means implicit TLS to older ones.
    `        <SSL>on</SSL>`,
    `        <Encryption>${s.tls === 'implicit' ? 'SSL' : 'TLS'}</Encryption>`,
    '        <AuthRequired>on</AuthRequired>',
    ...(s.protocol === 'smtp' ? ['        <UsePOPAuth>off</UsePOPAuth>', '        <SMTPLast>off</SMTPLast>'] : []),
    '      </Protocol>',
  ].join('\n');
}

/** Autodiscover's answer: one Protocol per advertised service, best first within each type. */
export function autodiscoverResponse(config: FeConfig, address: string): string {
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    `<Autodiscover xmlns="${RESPONSE_NS}">`,
    `  <Response xmlns="${OUTLOOK_NS}">`,
    '    <Account>',
    '      <AccountType>email</AccountType>',
    '      <Action>settings</Action>',
    ...clientServices(config).map((s) => outlookProtocol(config, s, address)),
    '    </Account>',
    '  </Response>',
    '</Autodiscover>',
    '',
  ].join('\n');
}
