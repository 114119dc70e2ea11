// DNS records a mail domain served by fe needs, as data, plus zone-file rendering.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

export type RecordType = 'MX' | 'TXT' | 'CNAME' | 'SRV' | 'A' | 'AAAA';

export interface DnsRecord {
  name: string;
  ttl: number;
  type: RecordType;
  value: string;
  text?: string;
  purpose: string;
}

export interface DomainDnsInput {
  domain: string;
  hostname: string;
  /** publicKeyDerBase64: the SubjectPublicKeyInfo in DER, base64, for either key type. */
  dkim: { selector: string; publicKeyDerBase64: string; keyType: 'rsa' | 'ed25519' }[];
  mtaSts: { mode: 'enforce' | 'testing' | 'none'; maxAgeSeconds: number };
  reportAddress: string;
  ports: {
    imap: number | null;
    imaps: number | null;
    pop3: number | null;
    pop3s: number | null;
    submission: number | null;
    submissions: number | null;
  };
  ipv4?: string[];
  ipv6?: string[];
  ttl?: number;
}

export interface DomainDns {
  records: DnsRecord[];
  mtaStsPolicy: string;
  mtaStsPolicyUrl: string;
}

const DEFAULT_TTL = 3600;
const MX_PREFERENCE = 10;
// RFC 8461 section 3.2: max_age is capped at 31557600 seconds.
const MTA_STS_MAX_AGE_LIMIT = 31_557_600;
// RFC 8314 section 5.1 asks for implicit TLS to be preferred; a lower SRV priority wins.
const PRIORITY_IMPLICIT_TLS = 0;
const PRIORITY_STARTTLS = 10;

const PURPOSE = {
  mx: 'inbound mail',
  address: 'mail host address',
  spf: 'SPF',
  dmarc: 'DMARC',
  mtaSts: 'MTA-STS',
  tlsRpt: 'TLS-RPT',
  autoconfig: 'client autoconfiguration (Thunderbird, Outlook)',
  wkd: 'OpenPGP key discovery (WKD, advanced method)',
  srv: 'client service discovery (RFC 6186, RFC 8314)',
} as const;

function fail(message: string): never {
  throw new Error(`dns records: ${message}`);
}

// Host names here are LDH only: the input is already punycode, and nothing fe owns needs '_'.
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function normalizeHostName(raw: string, what: string): string {
  const name = raw.trim().toLowerCase().replace(/\.$/, '');
  if (name.length === 0 || name.length > 253) fail(`${what} '${raw}' has an invalid length`);
  for (const label of name.split('.')) {
    if (!LDH_LABEL.test(label)) fail(`${what} '${raw}' is not an ASCII host name (label '${label}')`);
  }
  return name;
}

function absolute(name: string): string {
  // 253 characters without the root dot is the wire-format limit of 255 octets.
  if (name.length > 253) fail(`owner name '${name}' is too long`);
  for (const label of name.split('.')) {
    if (label.length === 0 || label.length > 63) fail(`owner name '${name}' has a bad label`);
  }
  return `${name}.`;
}

function isWithin(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

function checkTtl(ttl: number): number {
  // RFC 2181 section 8: TTLs are 31-bit unsigned.
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) fail(`invalid TTL ${ttl}`);
  return ttl;
}

function checkPort(port: number | null, service: string): number | null {
  if (port === null) return null;
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`invalid ${service} port ${port}`);
  return port;
}

/** Quote TXT content for a zone file: at most 255 octets per character-string (RFC 1035 3.3). */
export function quoteTxt(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length === 0) return '""';
  const parts: string[] = [];
  for (let start = 0; start < bytes.length; start += 255) {
    let out = '';
    for (const byte of bytes.subarray(start, start + 255)) {
      if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
      else if (byte < 0x20 || byte > 0x7e) out += `\\${String(byte).padStart(3, '0')}`;
      else out += String.fromCharCode(byte);
    }
    parts.push(`"${out}"`);
  }
  return parts.join(' ');
}

function decodeBase64Strict(raw: string, what: string): Buffer {
  // Tolerate line breaks from a pasted PEM body, nothing else.
  const compact = raw.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 !== 0) fail(`${what} is not base64`);
  const bytes = Buffer.from(compact, 'base64');
  if (bytes.toString('base64') !== compact) fail(`${what} is not canonical base64`);
  return bytes;
}

/** The p= value: RSA keys are published as SubjectPublicKeyInfo, Ed25519 as the raw 32-byte key (RFC 8463). */
function dkimPublicKey(selector: string, keyType: 'rsa' | 'ed25519', b64: string): string {
  const what = `DKIM key for selector '${selector}'`;
  const der = decodeBase64Strict(b64, what);
  // Both types arrive as SPKI, so a key of the wrong type, or 32 stray bytes, cannot slip through.
  let key: KeyObject;
  try {
    key = createPublicKey({ key: der, format: 'der', type: 'spki' });
  } catch {
    fail(`${what} is not a DER SubjectPublicKeyInfo`);
  }
  if (key.asymmetricKeyType !== keyType) fail(`${what} is ${key.asymmetricKeyType ?? 'unknown'}, expected ${keyType}`);
  if (keyType === 'rsa') {
    // RFC 8301: verifiers must reject RSA keys under 1024 bits, so publishing one is pointless.
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 1024) fail(`${what} has only ${bits} bits`);
    return der.toString('base64');
  }
  // RFC 8463 section 4.2: p= is the bare 32-byte public key, not its SPKI wrapping.
  const x = key.export({ format: 'jwk' }).x;
  const raw = typeof x === 'string' ? Buffer.from(x, 'base64url') : Buffer.alloc(0);
  if (raw.length !== 32) fail(`${what} could not be exported as a 32-byte Ed25519 key`);
  return raw.toString('base64');
}

/** mailto: URI for DMARC/TLS-RPT rua; ',' '!' ';' and friends would break those tag lists, so encode them. */
function mailtoUri(address: string): string {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) fail(`report address '${address}' is not local@domain`);
  const local = address.slice(0, at);
  const domain = normalizeHostName(address.slice(at + 1), 'report address domain');
  if (/[\s"\\]/.test(local) || /[^\x21-\x7e]/.test(local)) fail(`report address '${address}' has an unsupported local part`);
  const encoded = local.replace(/[^A-Za-z0-9._+=-]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
  return `mailto:${encoded}@${domain}`;
}

export function mtaStsPolicyText(mode: string, mx: string, maxAge: number): string {
  // RFC 8461 section 3.2 specifies CRLF-separated lines.
  return ['version: STSv1', `mode: ${mode}`, `mx: ${mx}`, `max_age: ${maxAge}`].map((line) => `${line}\r\n`).join('');
}

/** Policy id: alphanumeric, 1-32 chars (RFC 8461 3.1); hashing the policy makes it change exactly with it. */
export function mtaStsPolicyId(policy: string): string {
  return createHash('sha256').update(policy, 'utf8').digest('hex').slice(0, 20);
}

export function domainRecords(input: DomainDnsInput): DomainDns {
  const domain = normalizeHostName(input.domain, 'domain');
  const hostname = normalizeHostName(input.hostname, 'hostname');
  const ttl = checkTtl(input.ttl ?? DEFAULT_TTL);
  const host = absolute(hostname);
  const records: DnsRecord[] = [];

  const add = (owner: string, type: RecordType, value: string, purpose: string): void => {
    records.push({ name: absolute(owner), ttl, type, value, purpose });
  };
  const addTxt = (owner: string, text: string, purpose: string): void => {
    records.push({ name: absolute(owner), ttl, type: 'TXT', value: quoteTxt(text), text, purpose });
  };

  add(domain, 'MX', `${MX_PREFERENCE} ${host}`, PURPOSE.mx);

  if (isWithin(hostname, domain)) {
    // Out-of-zone hosts get their addresses from whoever runs that zone.
    const seen = new Set<string>();
    for (const ip of input.ipv4 ?? []) {
      if (!isIPv4(ip)) fail(`'${ip}' is not an IPv4 address`);
      if (!seen.has(ip)) add(hostname, 'A', ip, PURPOSE.address);
      seen.add(ip);
    }
    for (const raw of input.ipv6 ?? []) {
      const ip = raw.toLowerCase();
      if (!isIPv6(ip)) fail(`'${raw}' is not an IPv6 address`);
      if (!seen.has(ip)) add(hostname, 'AAAA', ip, PURPOSE.address);
      seen.add(ip);
    }
  }

  // Only the MX sends for the domain; -all tells receivers to reject anything else.
  addTxt(domain, 'v=spf1 mx -all', PURPOSE.spf);

  const selectors = new Set<string>();
  for (const key of input.dkim) {
    const selector = key.selector.trim().toLowerCase();
    // A selector may itself be dotted (RFC 6376 3.1), each part a host label.
    if (selector.length === 0 || !selector.split('.').every((l) => LDH_LABEL.test(l))) fail(`invalid DKIM selector '${key.selector}'`);
    if (selectors.has(selector)) fail(`DKIM selector '${selector}' listed twice`);
    selectors.add(selector);
    const p = dkimPublicKey(selector, key.keyType, key.publicKeyDerBase64);
    addTxt(`${selector}._domainkey.${domain}`, `v=DKIM1; k=${key.keyType}; p=${p}`, `DKIM selector ${selector}`);
  }

  const rua = mailtoUri(input.reportAddress);
  // quarantine rather than reject: a forwarding mishap lands in spam instead of bouncing.
  // A rua outside this domain also needs a _report._dmarc record in that other zone (RFC 7489 7.1).
  addTxt(`_dmarc.${domain}`, `v=DMARC1; p=quarantine; rua=${rua}`, PURPOSE.dmarc);

  const { mode, maxAgeSeconds } = input.mtaSts;
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') fail(`invalid MTA-STS mode '${String(mode)}'`);
  if (!Number.isInteger(maxAgeSeconds) || maxAgeSeconds < 0 || maxAgeSeconds > MTA_STS_MAX_AGE_LIMIT) {
    fail(`MTA-STS max_age must be an integer from 0 to ${MTA_STS_MAX_AGE_LIMIT}`);
  }
  // mode none is still published: it is how a domain withdraws an earlier policy (RFC 8461 8.3).
  const mtaStsPolicy = mtaStsPolicyText(mode, hostname, maxAgeSeconds);
  addTxt(`_mta-sts.${domain}`, `v=STSv1; id=${mtaStsPolicyId(mtaStsPolicy)}`, PURPOSE.mtaSts);
  const alias = (owner: string, purpose: string): void => {
    // A CNAME at the host's own name would loop and clash with its A records.
    if (owner !== hostname) add(owner, 'CNAME', host, purpose);
  };
  alias(`mta-sts.${domain}`, PURPOSE.mtaSts);

  addTxt(`_smtp._tls.${domain}`, `v=TLSRPTv1; rua=${rua}`, PURPOSE.tlsRpt);

  alias(`autoconfig.${domain}`, PURPOSE.autoconfig);
  alias(`autodiscover.${domain}`, PURPOSE.autoconfig);
  // WKD clients try openpgpkey.DOMAIN first and use the domain itself only when that name does not exist.
  alias(`openpgpkey.${domain}`, PURPOSE.wkd);

  const services: [string, number | null, number][] = [
    ['imaps', input.ports.imaps, PRIORITY_IMPLICIT_TLS],
    ['imap', input.ports.imap, PRIORITY_STARTTLS],
    ['pop3s', input.ports.pop3s, PRIORITY_IMPLICIT_TLS],
    ['pop3', input.ports.pop3, PRIORITY_STARTTLS],
    ['submissions', input.ports.submissions, PRIORITY_IMPLICIT_TLS],
    ['submission', input.ports.submission, PRIORITY_STARTTLS],
  ];
  for (const [service, rawPort, priority] of services) {
    const port = checkPort(rawPort, service);
    // Target '.' means "decidedly not available" (RFC 2782, RFC 6186 section 4).
    const value = port === null ? '0 0 0 .' : `${priority} 1 ${port} ${host}`;
    add(`_${service}._tcp.${domain}`, 'SRV', value, PURPOSE.srv);
  }

  return { records, mtaStsPolicy, mtaStsPolicyUrl: `https://mta-sts.${domain}/.well-known/mta-sts.txt` };
}

export function renderZone(domain: string, dns: DomainDns): string {
  const zone = normalizeHostName(domain, 'domain');
  for (const r of dns.records) {
    // named would drop out-of-zone data; better to refuse than to print records that vanish.
    if (!isWithin(r.name.replace(/\.$/, ''), zone)) fail(`record ${r.name} is outside zone ${zone}`);
  }
  const nameWidth = Math.max(0, ...dns.records.map((r) => r.name.length));
  const ttlWidth = Math.max(0, ...dns.records.map((r) => String(r.ttl).length));
  const typeWidth = Math.max(0, ...dns.records.map((r) => r.type.length));

  const lines: string[] = [`; Mail DNS records for ${zone}, generated by fe.`];
  let lastPurpose: string | undefined;
  for (const r of dns.records) {
    if (r.purpose !== lastPurpose) {
      lines.push('', `; ${r.purpose}`);
      lastPurpose = r.purpose;
    }
    lines.push([r.name.padEnd(nameWidth), String(r.ttl).padStart(ttlWidth), 'IN', r.type.padEnd(typeWidth), r.value].join('  '));
  }
  lines.push('', `; MTA-STS policy: serve over HTTPS as text/plain at ${dns.mtaStsPolicyUrl}`);
  for (const line of dns.mtaStsPolicy.split(/\r?\n/)) {
    if (line !== '') lines.push(`;   ${line}`);
  }
  return `${lines.join('\n')}\n`;
}
