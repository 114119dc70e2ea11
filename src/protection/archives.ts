// Listings of 7z and RAR archives, read from their headers without decompressing anything: the
// names inside (where the archive shows them) and whether the listing itself is encrypted.
// fe has no LZMA/RAR decoder, so what the entries hold is not inspected, only what they are called.

export interface ArchiveListing {
  kind: '7z' | 'rar' | 'cab';
  /** The listing is encrypted (7z with an AES-coded header, RAR with -hp): nothing can be seen. */
  hiddenListing: boolean;
  /** Entry names where the listing shows them; null when it is compressed and fe cannot read it. */
  names: string[] | null;
}

const SEVEN_Z = Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]);
const RAR4 = Buffer.from('Rar!\x1a\x07\x00', 'latin1');
const RAR5 = Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1');
const AES_CODER = Buffer.from([0x06, 0xf1, 0x07, 0x01]); // 7zAES's method id
const MAX_NAMES = 10_000;

export function archiveKind(data: Uint8Array): '7z' | 'rar' | 'cab' | null {
  const b = Buffer.from(data.buffer, data.byteOffset, Math.min(data.length, 8));
  if (b.subarray(0, 6).equals(SEVEN_Z)) return '7z';
  if (b.length >= 8 && b.subarray(0, 4).toString('latin1') === 'MSCF' && b.readUInt32LE(4) === 0) return 'cab';
  if (b.subarray(0, 7).equals(RAR4) || b.equals(RAR5)) return 'rar';
  return null;
}

/** What a 7z or RAR archive shows of itself; null when it is neither (or too broken to say). */
export function listArchive(buf: Buffer): ArchiveListing | null {
  const kind = archiveKind(buf);
  if (kind === '7z') return list7z(buf);
  if (kind === 'rar') return buf[6] === 0x01 ? listRar5(buf) : listRar4(buf);
  if (kind === 'cab') return listCab(buf);
  return null;
}

// Microsoft Cabinet: CFHEADER gives where the CFFILE entries start and how many there are;
// each names its file in the clear (NUL-terminated) after 16 bytes of sizes and dates.
function listCab(buf: Buffer): ArchiveListing {
  const names: string[] = [];
  if (buf.length < 36) return { kind: 'cab', hiddenListing: false, names };
  let p = buf.readUInt32LE(16);
  const count = Math.min(buf.readUInt16LE(28), MAX_NAMES);
  for (let i = 0; i < count && p + 16 < buf.length; i++) {
    const nul = buf.indexOf(0, p + 16);
    if (nul < 0) break;
    names.push(buf.subarray(p + 16, nul).toString('latin1').replace(/\\/g, '/'));
    p = nul + 1;
  }
  return { kind: 'cab', hiddenListing: false, names };
}

/** The files of a tar (ustar/GNU) archive: name and content, at most `limit` bytes in all. */
export function tarEntries(buf: Buffer, limit: number): { name: string; data: Buffer }[] | null {
  if (buf.length < 512 || buf.subarray(257, 262).toString('latin1') !== 'ustar') return null;
  const out: { name: string; data: Buffer }[] = [];
  let total = 0;
  for (let p = 0; p + 512 <= buf.length && out.length < MAX_NAMES; ) {
    const head = buf.subarray(p, p + 512);
    if (head.every((b) => b === 0)) break;
    const field = (at: number, len: number) => head.subarray(at, at + len).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (!Number.isSafeInteger(size) || size < 0) break;
    const prefix = field(345, 155);
    const name = (prefix ? prefix + '/' : '') + field(0, 100);
    const type = head[156];
    if (type === 0x30 || type === 0) {
      total += size;
      if (total > limit) return out;
      out.push({ name, data: buf.subarray(p + 512, Math.min(buf.length, p + 512 + size)) });
    }
    p += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

// 7z: a 32-byte start header points at the "next header" at the end of the file. It is either
// plain (kHeader, 0x01: names in UTF-16LE) or packed (kEncodedHeader, 0x17: its coders listed
// in the clear, so an AES coder there means the listing is encrypted).
function list7z(buf: Buffer): ArchiveListing | null {
  if (buf.length < 32) return null;
  const offset = Number(buf.readBigUInt64LE(12));
  const size = Number(buf.readBigUInt64LE(20));
  const start = 32 + offset;
  if (!Number.isSafeInteger(start) || start >= buf.length) return { kind: '7z', hiddenListing: false, names: null };
  const header = buf.subarray(start, Math.min(buf.length, start + size));
  if (header[0] === 0x17) return { kind: '7z', hiddenListing: header.includes(AES_CODER), names: null };
  if (header[0] !== 0x01) return { kind: '7z', hiddenListing: false, names: null };
  // kNames (0x15) holds the names as NUL-terminated UTF-16LE; reading the text runs is enough to see them.
  const names: string[] = [];
  const text = header.toString('utf16le');
  for (const m of text.matchAll(/[^\0-\x1f]{1,255}(?=\0)/g)) {
    if (names.length >= MAX_NAMES) break;
    if (/\.[A-Za-z0-9]{1,8}$/.test(m[0])) names.push(m[0]);
  }
  // names at odd offsets (the byte after kNames' "external" flag decides alignment)
  const odd = header.subarray(1).toString('utf16le');
  for (const m of odd.matchAll(/[^\0-\x1f]{1,255}(?=\0)/g)) {
    if (names.length >= MAX_NAMES) break;
    if (/\.[A-Za-z0-9]{1,8}$/.test(m[0]) && /^[\x20-\x7e\u00a0-\u024f]+$/.test(m[0])) names.push(m[0]);
  }
  return { kind: '7z', hiddenListing: false, names };
}

// RAR 4: blocks of HEAD_CRC(2) HEAD_TYPE(1) HEAD_FLAGS(2) HEAD_SIZE(2); the main header (0x73)
// flag 0x0080 encrypts every header after it; file headers (0x74) carry the name.
function listRar4(buf: Buffer): ArchiveListing {
  const names: string[] = [];
  let p = 7;
  while (p + 7 <= buf.length && names.length < MAX_NAMES) {
    const type = buf[p + 2]!;
    const flags = buf.readUInt16LE(p + 3);
    const headSize = buf.readUInt16LE(p + 5);
    if (headSize < 7) break;
    if (type === 0x73 && flags & 0x0080) return { kind: 'rar', hiddenListing: true, names: null };
    let addSize = 0;
    if (type === 0x74 && p + 32 <= buf.length) {
      addSize = buf.readUInt32LE(p + 7);
      const nameSize = buf.readUInt16LE(p + 26);
      const nameAt = p + 32 + (flags & 0x100 ? 8 : 0);
      if (nameAt + nameSize <= buf.length) {
        const raw = buf.subarray(nameAt, nameAt + nameSize);
        // flag 0x200: a Unicode name follows the ASCII one after a NUL
        const nul = raw.indexOf(0);
        names.push(raw.subarray(0, nul >= 0 ? nul : raw.length).toString('latin1').replace(/\\/g, '/'));
      }
    } else if (flags & 0x8000 && p + 11 <= buf.length) addSize = buf.readUInt32LE(p + 7);
    if (type === 0x7b) break; // end of archive
    p += headSize + addSize;
  }
  return { kind: 'rar', hiddenListing: false, names };
}

function vint(buf: Buffer, at: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (let i = at; i < buf.length && i < at + 10; i++) {
    v += (buf[i]! & 0x7f) * mul;
    if (!(buf[i]! & 0x80)) return [v, i + 1];
    mul *= 128;
  }
  return [-1, buf.length];
}

// RAR 5: blocks of CRC32(4) size(vint) type(vint) flags(vint) [extra size] [data size]; type 4
// is the archive encryption header (the listing is encrypted), type 2 a file header with its name.
function listRar5(buf: Buffer): ArchiveListing {
  const names: string[] = [];
  let p = 8;
  while (p + 4 < buf.length && names.length < MAX_NAMES) {
    const [size, afterSize] = vint(buf, p + 4);
    if (size <= 0) break;
    const end = afterSize + size;
    const [type, q1] = vint(buf, afterSize);
    const [flags, q2] = vint(buf, q1);
    let q = q2;
    if (flags & 1) q = vint(buf, q)[1];
    let dataSize = 0;
    if (flags & 2) [dataSize, q] = vint(buf, q);
    if (type === 4) return { kind: 'rar', hiddenListing: true, names: null };
    if (type === 2) {
      const [fileFlags, a] = vint(buf, q);
      let r = vint(buf, vint(buf, a)[1])[1]; // unpacked size, attributes
      if (fileFlags & 2) r += 4; // mtime
      if (fileFlags & 4) r += 4; // data CRC32
      r = vint(buf, vint(buf, r)[1])[1]; // compression info, host OS
      const [nameLen, n] = vint(buf, r);
      if (nameLen > 0 && n + nameLen <= buf.length) names.push(buf.subarray(n, n + nameLen).toString('utf8'));
    }
    if (type === 5 || dataSize < 0) break; // end of archive
    p = end + dataSize;
  }
  return { kind: 'rar', hiddenListing: false, names };
}
