// A small authoritative DNS server on loopback for tests (RFC 1035 wire format, RFC 6891 EDNS
// payload size, RFC 7766 TCP framing). Tests point fe's resolver here so nothing reaches the internet.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer, isIPv4, isIPv6, type Server, type Socket as TcpSocket } from 'node:net';

export interface ZoneRecords {
  A?: string[];
  AAAA?: string[];
  MX?: { priority: number; exchange: string }[];
  /** A string longer than 255 bytes is split into 255-byte character-strings; an array is sent as given. */
  TXT?: (string | string[])[];
  PTR?: string[];
  CNAME?: string;
  /** Seconds in every answer for this name (default 0: nothing may keep it, and tests change records between lookups with set()). */
  ttl?: number;
}

export type Zone = Record<string, ZoneRecords>;

export interface DnsServerOptions {
  /** Names answered with SERVFAIL (any type). */
  servfail?: string[];
  /** Names never answered, so the client times out. */
  drop?: string[];
  /** Port for both UDP and TCP on 127.0.0.1 (default: one the kernel picks). */
  port?: number;
  /** With it, NXDOMAIN and NODATA answers carry an SOA whose TTL and MINIMUM are these seconds (RFC 2308); without, no SOA. */
  negativeTtl?: number;
}

export interface QueryLogEntry {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

export interface DnsServer {
  address: string;
  set(name: string, records: ZoneRecords | undefined): void;
  setServfail(name: string, on: boolean): void;
  /** Every question received, in order; tests use it to prove a lookup (or the TCP retry) happened. */
  readonly queries: QueryLogEntry[];
  close(): Promise<void>;
}

const TYPE = { A: 1, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, OPT: 41 } as const;
const TYPE_NAME: Record<number, string> = Object.fromEntries(Object.entries(TYPE).map(([k, v]) => [v, k]));
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
const CLASS_IN = 1;
const MAX_TCP_MESSAGE = 65535;

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

// ---- parsing --------------------------------------------------------------------------------

class ParseError extends Error {}

/** Reads a (possibly compressed) name at `offset`; returns it and the offset just past it in place. */
function readName(msg: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let jumps = 0;
  for (;;) {
    if (pos >= msg.length) throw new ParseError('name runs past end of message');
    const len = msg[pos]!;
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= msg.length) throw new ParseError('truncated compression pointer');
      // A loop of pointers would never end; no legal message needs more than a few.
      if (++jumps > 32) throw new ParseError('compression pointer loop');
      if (next < 0) next = pos + 2;
      pos = ((len & 0x3f) << 8) | msg[pos + 1]!;
      continue;
    }
    if ((len & 0xc0) !== 0) throw new ParseError('unknown label type');
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    if (pos + 1 + len > msg.length) throw new ParseError('label runs past end of message');
    labels.push(msg.toString('latin1', pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return { name: labels.join('.'), next };
}

interface Query {
  id: number;
  flags: number;
  qname: string;
  qtype: number;
  qclass: number;
  /** The raw question section, echoed back unchanged (keeps the client's letter case). */
  questionBytes: Buffer;
  /** Requested EDNS UDP payload size, or 0 if the query had no OPT record. */
  ednsSize: number;
}

function parseQuery(msg: Buffer): Query {
  if (msg.length < 12) throw new ParseError('short header');
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  if (qd !== 1) throw new ParseError('expected exactly one question');
  const q = readName(msg, 12);
  if (q.next + 4 > msg.length) throw new ParseError('short question');
  const qtype = msg.readUInt16BE(q.next);
  const qclass = msg.readUInt16BE(q.next + 2);
  const questionBytes = msg.subarray(12, q.next + 4);
  let pos = q.next + 4;
  let ednsSize = 0;
  for (let i = 0; i < an + ns + ar; i++) {
    const rr = readName(msg, pos);
    pos = rr.next;
    if (pos + 10 > msg.length) throw new ParseError('short resource record');
    const type = msg.readUInt16BE(pos);
    const cls = msg.readUInt16BE(pos + 2);
    const rdlen = msg.readUInt16BE(pos + 8);
    if (type === TYPE.OPT) ednsSize = Math.max(512, cls);
    pos += 10 + rdlen;
    if (pos > msg.length) throw new ParseError('rdata runs past end of message');
  }
  return { id, flags, qname: q.name, qtype, qclass, questionBytes, ednsSize };
}

// ---- writing --------------------------------------------------------------------------------

function encodeName(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const label of normalize(name).split('.').filter((l) => l.length > 0)) {
    const b = Buffer.from(label, 'latin1');
    if (b.length > 63) throw new Error(`label too long in ${name}`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function characterStrings(value: string | string[]): Buffer {
  const chunks: Buffer[] = [];
  if (Array.isArray(value)) {
    for (const s of value) chunks.push(Buffer.from(s, 'utf8'));
  } else {
    const all = Buffer.from(value, 'utf8');
    for (let i = 0; i < all.length; i += 255) chunks.push(all.subarray(i, i + 255));
    if (all.length === 0) chunks.push(all);
  }
  const out: Buffer[] = [];
  for (const c of chunks) {
    if (c.length > 255) throw new Error('TXT character-string longer than 255 bytes');
    out.push(Buffer.from([c.length]), c);
  }
  return Buffer.concat(out);
}

function ipv4Bytes(ip: string): Buffer {
  if (!isIPv4(ip)) throw new Error(`not an IPv4 address: ${ip}`);
  return Buffer.from(ip.split('.').map(Number));
}

function ipv6Bytes(ip: string): Buffer {
  if (!isIPv6(ip)) throw new Error(`not an IPv6 address: ${ip}`);
  let text = ip;
  // An embedded dotted quad (::ffff:192.0.2.1) stands for the last two groups.
  const quad = /\d+\.\d+\.\d+\.\d+$/.exec(text);
  if (quad) {
    const b = ipv4Bytes(quad[0]);
    text = text.slice(0, -quad[0].length) + ((b[0]! << 8) | b[1]!).toString(16) + ':' + ((b[2]! << 8) | b[3]!).toString(16);
  }
  const halves = text.split('::');
  const groupsOf = (s: string | undefined): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const head = groupsOf(halves[0]);
  const tail = groupsOf(halves[1]);
  const groups = halves.length === 2 ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  if (groups.length !== 8) throw new Error(`cannot encode IPv6 address ${ip}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

function rr(name: string, type: number, rdata: Buffer, ttl = 0): Buffer {
  const head = Buffer.alloc(10);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(CLASS_IN, 2);
  head.writeUInt32BE(ttl, 4);
  head.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(name), head, rdata]);
}

function recordsOf(name: string, type: number, rec: ZoneRecords): Buffer[] {
  const ttl = rec.ttl ?? 0;
  switch (type) {
    case TYPE.A:
      return (rec.A ?? []).map((ip) => rr(name, type, ipv4Bytes(ip), ttl));
    case TYPE.AAAA:
      return (rec.AAAA ?? []).map((ip) => rr(name, type, ipv6Bytes(ip), ttl));
    case TYPE.MX:
      return (rec.MX ?? []).map((mx) => {
        const pref = Buffer.alloc(2);
        pref.writeUInt16BE(mx.priority, 0);
        return rr(name, type, Buffer.concat([pref, encodeName(mx.exchange)]), ttl);
      });
    case TYPE.TXT:
      return (rec.TXT ?? []).map((t) => rr(name, type, characterStrings(t), ttl));
    case TYPE.PTR:
      return (rec.PTR ?? []).map((p) => rr(name, type, encodeName(p), ttl));
    case TYPE.CNAME:
      return rec.CNAME ? [rr(name, type, encodeName(rec.CNAME), ttl)] : [];
    default:
      return [];
  }
}

/** An SOA whose TTL and MINIMUM are both `ttl` (the negative-caching time of RFC 2308). */
function soaRecord(name: string, ttl: number): Buffer {
  const numbers = Buffer.alloc(20);
  [1, 3600, 600, 86400, ttl].forEach((n, i) => numbers.writeUInt32BE(n, i * 4)); // serial refresh retry expire minimum
  return rr(name, TYPE.SOA, Buffer.concat([encodeName(`ns.${name}`), encodeName(`hostmaster.${name}`), numbers]), ttl);
}

function header(id: number, queryFlags: number, rcode: number, tc: boolean, counts: [number, number, number, number]): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  const opcode = (queryFlags >> 11) & 0xf;
  const rd = (queryFlags >> 8) & 1;
  // QR=1, AA=1 (we are the authority for every name we know), RA=0 (no recursion offered).
  const flags = 0x8000 | (opcode << 11) | 0x0400 | (tc ? 0x0200 : 0) | (rd << 8) | (rcode & 0xf);
  h.writeUInt16BE(flags, 2);
  counts.forEach((c, i) => h.writeUInt16BE(c, 4 + i * 2));
  return h;
}

function optRecord(size: number): Buffer {
  const b = Buffer.alloc(11);
  b[0] = 0; // root name
  b.writeUInt16BE(TYPE.OPT, 1);
  b.writeUInt16BE(size, 3); // CLASS carries our UDP payload size
  b.writeUInt32BE(0, 5); // extended rcode, version 0, flags
  b.writeUInt16BE(0, 9);
  return b;
}

// ---- server ---------------------------------------------------------------------------------

export async function startDnsServer(zone: Zone, opts: DnsServerOptions = {}): Promise<DnsServer> {
  const records = new Map<string, ZoneRecords>();
  for (const [name, rec] of Object.entries(zone)) records.set(normalize(name), rec);
  const servfail = new Set((opts.servfail ?? []).map(normalize));
  const drop = new Set((opts.drop ?? []).map(normalize));
  const queries: QueryLogEntry[] = [];

  /** Builds the reply, or null to stay silent (a dropped name, or a header too short to answer). */
  function answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | null {
    let q: Query;
    try {
      q = parseQuery(msg);
    } catch {
      if (msg.length < 12) return null;
      return header(msg.readUInt16BE(0), msg.readUInt16BE(2), RCODE.FORMERR, false, [0, 0, 0, 0]);
    }
    const name = normalize(q.qname);
    queries.push({ name, type: TYPE_NAME[q.qtype] ?? String(q.qtype), transport });
    if (drop.has(name)) return null;

    const opt = q.ednsSize > 0 ? [optRecord(4096)] : [];
    const reply = (rcode: number, answers: Buffer[], tc = false, authority: Buffer[] = []): Buffer =>
      Buffer.concat([header(q.id, q.flags, rcode, tc, [1, answers.length, authority.length, opt.length]), q.questionBytes, ...answers, ...authority, ...opt]);

    if (((q.flags >> 11) & 0xf) !== 0) return reply(RCODE.NOTIMP, []);
    if (q.qclass !== CLASS_IN) return reply(RCODE.NOTIMP, []);
    if (servfail.has(name)) return reply(RCODE.SERVFAIL, []);

    const answers: Buffer[] = [];
    let current = name;
    let rcode: number = RCODE.NOERROR;
    // Follow CNAMEs inside the zone, as an authoritative server puts the whole chain in one answer.
    for (let hop = 0; hop < 8; hop++) {
      const rec = records.get(current);
      if (!rec) {
        if (hop === 0) rcode = RCODE.NXDOMAIN;
        break;
      }
      if (rec.CNAME && q.qtype !== TYPE.CNAME) {
        answers.push(...recordsOf(current, TYPE.CNAME, rec));
        current = normalize(rec.CNAME);
        continue;
      }
      answers.push(...recordsOf(current, q.qtype, rec));
      break;
    }

    const negative = opts.negativeTtl !== undefined && (rcode === RCODE.NXDOMAIN || answers.length === 0);
    const full = reply(rcode, answers, false, negative ? [soaRecord(name, opts.negativeTtl!)] : []);
    const limit = transport === 'tcp' ? MAX_TCP_MESSAGE : q.ednsSize > 0 ? Math.min(q.ednsSize, 4096) : 512;
    if (full.length <= limit) return full;
    // Too big for this transport: send the question back with TC set so the client retries over TCP.
    return reply(rcode, [], true);
  }

  const onUdp = (udp: Socket) => (msg: Buffer, rinfo: RemoteInfo) => {
    const out = answer(msg, 'udp');
    if (out) udp.send(out, rinfo.port, rinfo.address);
  };

  const sockets = new Set<TcpSocket>();
  const onTcp = (sock: TcpSocket) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      // Each message is prefixed by its 2-byte length; a connection may carry several.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const out = answer(msg, 'tcp');
        if (out) {
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(out.length, 0);
          sock.write(Buffer.concat([prefix, out]));
        }
      }
    });
  };

  // The client retries a truncated answer over TCP to the same address and port, so both
  // transports need one port number; if the TCP side is taken, try another.
  let udp: Socket | undefined;
  let tcp: Server | undefined;
  const fixedPort = opts.port ?? 0;
  for (let attempt = 0; attempt < (fixedPort ? 1 : 20) && !tcp; attempt++) {
    const u = createSocket('udp4');
    u.on('message', onUdp(u));
    await new Promise<void>((resolve, reject) => {
      u.once('error', reject);
      u.bind(fixedPort, '127.0.0.1', () => {
        u.off('error', reject);
        resolve();
      });
    });
    const t = createServer(onTcp);
    const ok = await new Promise<boolean>((resolve) => {
      t.once('error', () => resolve(false));
      t.listen(u.address().port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      udp = u;
      tcp = t;
    } else {
      await new Promise<void>((resolve) => u.close(() => resolve()));
    }
  }
  if (!udp || !tcp) throw new Error('could not bind UDP and TCP on one loopback port');
  const port = udp.address().port;
  const udpSock = udp;
  const tcpServer = tcp;

  return {
    address: `127.0.0.1:${port}`,
    queries,
    set(name, rec) {
      if (rec) records.set(normalize(name), rec);
      else records.delete(normalize(name));
    },
    setServfail(name, on) {
      if (on) servfail.add(normalize(name));
      else servfail.delete(normalize(name));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udpSock.close(() => resolve())),
        new Promise<void>((resolve) => tcpServer.close(() => resolve())),
      ]);
    },
  };
}
