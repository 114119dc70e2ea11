// DNS on the wire (RFC 1035 messages, RFC 6891 EDNS0, RFC 7766 TCP framing): fe asks the
// configured resolver itself because node's resolver (c-ares) hides what fe needs from an answer:
// the TTLs (src/dns/cache.ts keeps answers exactly as long as they say), the SOA that bounds how
// long a "no such name" may be kept (RFC 2308), and the AD bit (src/dns/dnssec.ts).
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { connect, isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { DnsLookupError, type MxRecord } from './resolver.js';

export const TYPE = { A: 1, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, TLSA: 52 } as const;
export type WireType = keyof typeof TYPE;

export interface TlsaRecord {
  usage: number; // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE (RFC 6698 2.1.1)
  selector: number; // 0 full certificate, 1 SubjectPublicKeyInfo
  matchingType: number; // 0 exact, 1 SHA-256, 2 SHA-512
  data: Buffer;
}

/** Each type's records in the form node's dns.promises.resolve* gives them. */
export interface WireRecords {
  A: string;
  AAAA: string;
  MX: MxRecord;
  /** One record's character-strings, in order (node's resolveTxt form). */
  TXT: string[];
  PTR: string;
  CNAME: string;
  TLSA: TlsaRecord;
}
export type AnswerType = keyof WireRecords;

const RCODE_NAME: Record<number, string> = { 1: 'EFORMERR', 2: 'ESERVFAIL', 4: 'ENOTIMP', 5: 'EREFUSED' };

export interface Server {
  host: string;
  port: number;
}

/** node's getServers() form ('1.2.3.4', '1.2.3.4:53', '::1', '[::1]:5353') as host and port. */
export function parseServer(s: string): Server {
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) return { host: bracket[1]!, port: Number(bracket[2] ?? 53) };
  if (isIP(s) === 6) return { host: s, port: 53 };
  const [host, port] = s.split(':');
  return { host: host!, port: Number(port ?? 53) };
}

export function isLoopback(host: string): boolean {
  return isIP(host) === 4 ? host.startsWith('127.') : host === '::1';
}

/** A name as labels on the wire; EBADNAME for what cannot be asked at all (RFC 1035 2.3.4). */
export function encodeName(name: string): Buffer {
  // Names outside ASCII go as their A-labels, as node's own lookups send them (RFC 5891).
  const ascii = /[^\x21-\x7e]/.test(name) ? domainToASCII(name) : name;
  if (ascii === '' && name !== '') throw new DnsLookupError('EBADNAME', name, 'query');
  const labels = ascii.replace(/\.$/, '').split('.');
  if (labels.length === 1 && labels[0] === '') return Buffer.from([0]);
  const parts: Buffer[] = [];
  let total = 1;
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    if (b.length === 0 || b.length > 63 || /[^\x21-\x7e]/.test(l)) throw new DnsLookupError('EBADNAME', name, 'query');
    parts.push(Buffer.from([b.length]), b);
    total += 1 + b.length;
  }
  if (total > 255) throw new DnsLookupError('EBADNAME', name, 'query');
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** A query with EDNS0 (1232-byte payload); with `dnssec`, the DO and AD bits too (RFC 3225, RFC 6840 5.7). */
export function buildQuery(id: number, name: string, type: number, dnssec: boolean): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100 | (dnssec ? 0x0020 : 0), 2); // RD (and AD: "tell me whether you validated")
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(1, 10); // one additional: the OPT record
  const question = Buffer.concat([encodeName(name), Buffer.from([type >> 8, type & 0xff, 0, 1])]);
  const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, dnssec ? 0x80 : 0, 0, 0, 0]);
  return Buffer.concat([header, question, opt]);
}

export function readName(msg: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  for (let jumps = 0; ; ) {
    if (pos >= msg.length) throw new Error('name runs past the end of the answer');
    const len = msg[pos]!;
    if ((len & 0xc0) === 0xc0) {
      if (++jumps > 32) throw new Error('compression loop');
      if (next < 0) next = pos + 2;
      pos = ((len & 0x3f) << 8) | msg[pos + 1]!;
      continue;
    }
    if (len === 0) {
      if (next < 0) next = pos + 1;
      return { name: labels.join('.'), next };
    }
    labels.push(msg.toString('latin1', pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
}

export interface ResourceRecord {
  type: number;
  ttl: number;
  /** Where its data starts in the message, and how long it is. */
  offset: number;
  length: number;
}

export interface Message {
  id: number;
  tc: boolean;
  ad: boolean;
  rcode: number;
  question: { name: string; type: number } | null;
  answers: ResourceRecord[];
  authority: ResourceRecord[];
}

export function parseMessage(msg: Buffer): Message {
  if (msg.length < 12) throw new Error('short answer');
  const flags = msg.readUInt16BE(2);
  let pos = 12;
  let question: Message['question'] = null;
  for (let q = msg.readUInt16BE(4); q > 0; q--) {
    const n = readName(msg, pos);
    if (!question) question = { name: n.name, type: msg.readUInt16BE(n.next) };
    pos = n.next + 4;
  }
  const section = (count: number): ResourceRecord[] => {
    const out: ResourceRecord[] = [];
    for (; count > 0; count--) {
      pos = readName(msg, pos).next;
      if (pos + 10 > msg.length) throw new Error('record runs past the end of the answer');
      const type = msg.readUInt16BE(pos);
      // A TTL with the top bit set is treated as zero (RFC 2181 8).
      const raw = msg.readUInt32BE(pos + 4);
      const length = msg.readUInt16BE(pos + 8);
      if (pos + 10 + length > msg.length) throw new Error('record runs past the end of the answer');
      out.push({ type, ttl: raw > 0x7fffffff ? 0 : raw, offset: pos + 10, length });
      pos += 10 + length;
    }
    return out;
  };
  const answers = section(msg.readUInt16BE(6));
  const authority = section(msg.readUInt16BE(8));
  return { id: msg.readUInt16BE(0), tc: (flags & 0x0200) !== 0, ad: (flags & 0x0020) !== 0, rcode: flags & 0xf, question, answers, authority };
}

/** IPv6 text as node prints it: lower case, the longest run of two or more zero groups as '::' (RFC 5952). */
function ipv6Text(rdata: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => rdata.readUInt16BE(i * 2));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(':');
  // IPv4-mapped (and the old IPv4-compatible) addresses end in a dotted quad (RFC 5952 5).
  const quad = () => `${rdata[12]}.${rdata[13]}.${rdata[14]}.${rdata[15]}`;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${quad()}`;
  if (groups.slice(0, 6).every((g) => g === 0) && groups[6] !== 0) return `::${quad()}`;
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

export function decodeRecord<K extends AnswerType>(type: K, msg: Buffer, rr: ResourceRecord): WireRecords[K] {
  const rdata = msg.subarray(rr.offset, rr.offset + rr.length);
  const short = (n: number) => {
    if (rdata.length < n) throw new Error(`${type} record too short`);
  };
  switch (type) {
    case 'A':
      short(4);
      return [...rdata.subarray(0, 4)].join('.') as WireRecords[K];
    case 'AAAA':
      short(16);
      return ipv6Text(rdata) as WireRecords[K];
    case 'MX':
      short(3);
      return { priority: rdata.readUInt16BE(0), exchange: readName(msg, rr.offset + 2).name } as WireRecords[K];
    case 'TXT': {
      const chunks: string[] = [];
      for (let i = 0; i < rdata.length; ) {
        const len = rdata[i]!;
        if (i + 1 + len > rdata.length) throw new Error('TXT character-string runs past its record');
        // One character per byte, as node gives them: nothing is lost, whatever the encoding.
        chunks.push(rdata.toString('latin1', i + 1, i + 1 + len));
        i += 1 + len;
      }
      return chunks as WireRecords[K];
    }
    case 'PTR':
    case 'CNAME':
      return readName(msg, rr.offset).name as WireRecords[K];
    default:
      short(3);
      return { usage: rdata[0]!, selector: rdata[1]!, matchingType: rdata[2]!, data: Buffer.from(rdata.subarray(3)) } as WireRecords[K];
  }
}

/** How long a "no such name / no such record" answer may be kept: its SOA's TTL, at most the SOA's MINIMUM (RFC 2308 5); 0 without one. */
export function negativeTtl(msg: Buffer, m: Message): number {
  const soa = m.authority.find((r) => r.type === TYPE.SOA);
  if (!soa || soa.length < 20) return 0;
  return Math.min(soa.ttl, msg.readUInt32BE(soa.offset + soa.length - 4));
}

function overUdp(server: Server, packet: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4');
    let settled = false;
    const timer = setTimeout(() => done(new Error('ETIMEOUT')), timeoutMs);
    const done = (err: Error | null, msg?: Buffer) => {
      if (settled) return; // a late answer after the timeout, or an error after the answer
      settled = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(msg!);
    };
    sock.on('error', (e) => done(e));
    sock.on('message', (msg, from) => {
      // Anything but our id from the server we asked is not our answer (RFC 5452 9.1).
      if (from.port === server.port && msg.length >= 2 && msg.readUInt16BE(0) === packet.readUInt16BE(0)) done(null, msg);
    });
    sock.send(packet, server.port, server.host);
  });
}

function overTcp(server: Server, packet: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error('ETIMEOUT')), timeoutMs);
    const done = (err: Error | null, msg?: Buffer) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(msg!);
    };
    sock.on('error', (e) => done(e));
    sock.on('connect', () => sock.write(Buffer.concat([Buffer.from([packet.length >> 8, packet.length & 0xff]), packet])));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(null, buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    sock.on('end', () => done(new Error('ECONNRESET')));
  });
}

export interface Exchanged {
  msg: Buffer;
  parsed: Message;
  server: Server;
}

/**
 * Asks `servers` in turn (each up to `tries` times, `tryMs` per try) until one answers: UDP, then
 * TCP when the answer was truncated. An answer to another question is not an answer. SERVFAIL,
 * REFUSED and the like are answers too: the caller decides (they are temporary errors to fe).
 */
export async function exchange(servers: Server[], name: string, type: number, opts: { dnssec: boolean; tryMs: number; tries: number }): Promise<Exchanged> {
  let lastCode = servers.length ? 'ECONNREFUSED' : 'ENOSERVERS';
  let want: string | null = null;
  for (let attempt = 0; attempt < opts.tries; attempt++) {
    for (const server of servers) {
      const packet = buildQuery(randomBytes(2).readUInt16BE(0), name, type, opts.dnssec);
      want ??= readName(packet, 12).name.toLowerCase();
      try {
        let msg = await overUdp(server, packet, opts.tryMs);
        let parsed = parseMessage(msg);
        if (parsed.tc) {
          msg = await overTcp(server, packet, opts.tryMs);
          parsed = parseMessage(msg);
        }
        if (parsed.question && (parsed.question.name.toLowerCase() !== want || parsed.question.type !== type)) throw new Error('EBADRESP');
        return { msg, parsed, server };
      } catch (e) {
        lastCode = /^E[A-Z]+$/.test((e as Error).message) ? (e as Error).message : ((e as { code?: string }).code ?? 'EBADRESP');
      }
    }
  }
  throw new DnsLookupError(lastCode, name, Object.entries(TYPE).find(([, v]) => v === type)?.[0] ?? String(type));
}

export interface WireAnswer<K extends AnswerType> {
  records: WireRecords[K][];
  /** Seconds the answer may be kept: the lowest TTL among the records (and the CNAMEs leading to them), or the negative TTL. */
  ttl: number;
  /** NXDOMAIN / NODATA as node names them; null when there are records. */
  missing: 'ENOTFOUND' | 'ENODATA' | null;
  ad: boolean;
  server: Server;
}

/** One lookup; rcodes other than NOERROR and NXDOMAIN throw a temporary DnsLookupError. */
export async function lookupWire<K extends AnswerType>(servers: Server[], name: string, type: K, opts: { dnssec?: boolean; tryMs: number; tries: number }): Promise<WireAnswer<K>> {
  const code = TYPE[type];
  const { msg, parsed, server } = await exchange(servers, name, code, { dnssec: opts.dnssec ?? false, tryMs: opts.tryMs, tries: opts.tries });
  if (parsed.rcode === 3) return { records: [], ttl: negativeTtl(msg, parsed), missing: 'ENOTFOUND', ad: parsed.ad, server };
  if (parsed.rcode !== 0) throw new DnsLookupError(RCODE_NAME[parsed.rcode] ?? 'EBADRESP', name, type);
  const matching = parsed.answers.filter((a) => a.type === code);
  if (matching.length === 0) return { records: [], ttl: negativeTtl(msg, parsed), missing: 'ENODATA', ad: parsed.ad, server };
  let records: WireRecords[K][];
  try {
    records = matching.map((a) => decodeRecord(type, msg, a));
  } catch {
    throw new DnsLookupError('EBADRESP', name, type);
  }
  const chain = parsed.answers.filter((a) => a.type === code || a.type === TYPE.CNAME);
  return { records, ttl: Math.min(...chain.map((a) => a.ttl)), missing: null, ad: parsed.ad, server };
}
