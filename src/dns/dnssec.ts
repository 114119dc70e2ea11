// DNSSEC-aware lookups for DANE (RFC 7672). node's resolver (c-ares) hides the header of the
// answer, so it cannot say whether a validating resolver vouched for it (the AD bit, RFC 4035
// section 3.2.3). These lookups ask the configured resolver themselves, over UDP with EDNS0 and
// the DO bit (TCP when the answer is truncated), and report the records with that bit. fe does
// not validate signatures itself: it trusts the AD bit only from a resolver on loopback (RFC 6698
// appendix A.3.3: the path to a remote resolver is not secured, anyone on it could set the bit).
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { connect, isIP } from 'node:net';
import { DnsLookupError, type MxRecord } from './resolver.js';

export interface TlsaRecord {
  usage: number; // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE (RFC 6698 2.1.1)
  selector: number; // 0 full certificate, 1 SubjectPublicKeyInfo
  matchingType: number; // 0 exact, 1 SHA-256, 2 SHA-512
  data: Buffer;
}

export interface DnssecTypes {
  A: string;
  AAAA: string;
  MX: MxRecord;
  TLSA: TlsaRecord;
}

/** Records of one type (none for NXDOMAIN or NODATA) and whether the answer was DNSSEC-validated. */
export interface Validated<T> {
  records: T[];
  validated: boolean;
}

const TYPE: Record<keyof DnssecTypes, number> = { A: 1, MX: 15, AAAA: 28, TLSA: 52 };
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

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l.length > 0);
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    if (b.length > 63) throw new DnsLookupError('EBADNAME', name, 'query');
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function query(id: number, name: string, type: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100 | 0x0020, 2); // RD, and AD: "tell me whether you validated" (RFC 6840 5.7)
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(1, 10); // one additional: the OPT record
  const question = Buffer.concat([encodeName(name), Buffer.from([type >> 8, type & 0xff, 0, 1])]);
  // OPT (RFC 6891): root name, type 41, 1232-byte payload, DO bit (RFC 3225) set.
  const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
  return Buffer.concat([header, question, opt]);
}

function readName(msg: Buffer, offset: number): { name: string; next: number } {
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

interface Parsed {
  id: number;
  tc: boolean;
  ad: boolean;
  rcode: number;
  answers: { type: number; offset: number; length: number }[];
}

function parse(msg: Buffer): Parsed {
  if (msg.length < 12) throw new Error('short answer');
  const flags = msg.readUInt16BE(2);
  let pos = 12;
  for (let q = msg.readUInt16BE(4); q > 0; q--) pos = readName(msg, pos).next + 4;
  const answers: Parsed['answers'] = [];
  for (let a = msg.readUInt16BE(6); a > 0; a--) {
    pos = readName(msg, pos).next;
    const type = msg.readUInt16BE(pos);
    const length = msg.readUInt16BE(pos + 8);
    if (pos + 10 + length > msg.length) throw new Error('record runs past the end of the answer');
    answers.push({ type, offset: pos + 10, length });
    pos += 10 + length;
  }
  return { id: msg.readUInt16BE(0), tc: (flags & 0x0200) !== 0, ad: (flags & 0x0020) !== 0, rcode: flags & 0xf, answers };
}

function decode<K extends keyof DnssecTypes>(type: K, msg: Buffer, offset: number, length: number): DnssecTypes[K] {
  const rdata = msg.subarray(offset, offset + length);
  switch (type) {
    case 'A':
      return [...rdata].join('.') as DnssecTypes[K];
    case 'AAAA':
      return Array.from({ length: 8 }, (_, i) => rdata.readUInt16BE(i * 2).toString(16)).join(':') as DnssecTypes[K];
    case 'MX':
      return { priority: rdata.readUInt16BE(0), exchange: readName(msg, offset + 2).name } as DnssecTypes[K];
    default:
      return { usage: rdata[0]!, selector: rdata[1]!, matchingType: rdata[2]!, data: Buffer.from(rdata.subarray(3)) } as DnssecTypes[K];
  }
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
    sock.on('message', (msg) => {
      if (msg.length >= 2 && msg.readUInt16BE(0) === packet.readUInt16BE(0)) done(null, msg); // anything else is not our answer
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

/**
 * One lookup of `type` at `name`, asked of the first server that answers. validated is true
 * only when that server is on loopback and set the AD bit; NXDOMAIN and NODATA are an empty
 * list (validated then says whether the denial was proven). SERVFAIL (which a validating resolver
 * also answers for bogus data) and timeouts throw a temporary DnsLookupError.
 */
export async function lookupValidated<K extends keyof DnssecTypes>(servers: Server[], name: string, type: K, timeoutMs: number): Promise<Validated<DnssecTypes[K]>> {
  let lastCode = 'ECONNREFUSED';
  for (const server of servers) {
    const packet = query(randomBytes(2).readUInt16BE(0), name, TYPE[type]);
    let msg: Buffer;
    let p: Parsed;
    try {
      msg = await overUdp(server, packet, timeoutMs);
      p = parse(msg);
      if (p.tc) {
        msg = await overTcp(server, packet, timeoutMs);
        p = parse(msg);
      }
    } catch (e) {
      lastCode = /^E[A-Z]+$/.test((e as Error).message) ? (e as Error).message : ((e as { code?: string }).code ?? 'EBADRESP');
      continue;
    }
    if (p.rcode === 3) return { records: [], validated: p.ad && isLoopback(server.host) };
    if (p.rcode !== 0) throw new DnsLookupError(RCODE_NAME[p.rcode] ?? 'EBADRESP', name, type);
    const records = p.answers.filter((a) => a.type === TYPE[type]).map((a) => decode(type, msg, a.offset, a.length));
    return { records, validated: p.ad && isLoopback(server.host) };
  }
  throw new DnsLookupError(lastCode, name, type);
}
