// Reads a zip's central directory (APPNOTE.TXT 4.3.12, 4.3.16) and inflates single entries in
// memory, for the executables layer to look inside. Bounded: a lying size or a zip bomb stops at
// the caller's limit instead of filling memory.
import { inflateRawSync } from 'node:zlib';

export interface ZipEntry {
  name: string;
  encrypted: boolean;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

export class ZipError extends Error {}
/** An entry that inflates beyond the limit: a zip bomb, or too big to look into. */
export class ZipTooLarge extends ZipError {}

const EOCD = 0x06054b50;
const CDH = 0x02014b50;
const LFH = 0x04034b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const MAX_ENTRIES = 65_536;

export function isZip(data: Uint8Array): boolean {
  return data.length >= 4 && data[0] === 0x50 && data[1] === 0x4b && (data[2] === 0x03 || data[2] === 0x05) && (data[3] === 0x04 || data[3] === 0x06);
}

/** The entries listed in the central directory. Throws ZipError when there is none to read. */
export function zipEntries(buf: Buffer): ZipEntry[] {
  // The end record sits in the last 22 + 65535 (comment) bytes.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65_535); i--) {
    if (buf.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipError('no end of central directory record');
  let count = buf.readUInt16LE(eocd + 10);
  let cdOffset = buf.readUInt32LE(eocd + 16);
  if ((count === 0xffff || cdOffset === 0xffffffff) && eocd >= 20 && buf.readUInt32LE(eocd - 20) === ZIP64_LOCATOR) {
    const z = Number(buf.readBigUInt64LE(eocd - 20 + 8));
    if (z + 56 > buf.length || buf.readUInt32LE(z) !== ZIP64_EOCD) throw new ZipError('bad zip64 end record');
    count = Number(buf.readBigUInt64LE(z + 32));
    cdOffset = Number(buf.readBigUInt64LE(z + 48));
  }
  if (count > MAX_ENTRIES) throw new ZipError(`too many entries (${count})`);
  const entries: ZipEntry[] = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== CDH) throw new ZipError('central directory is truncated');
    const flags = buf.readUInt16LE(p + 8);
    const method = buf.readUInt16LE(p + 10);
    let compressedSize = buf.readUInt32LE(p + 20);
    let size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    let localOffset = buf.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen > buf.length) throw new ZipError('central directory is truncated');
    // bit 11: the name is UTF-8; otherwise CP437, read as latin1 (extensions are ASCII either way)
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString(flags & 0x800 ? 'utf8' : 'latin1');
    // zip64 extra field (id 1): the 0xffffffff fields in order
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = buf.readUInt16LE(e);
      const len = buf.readUInt16LE(e + 2);
      if (id === 1) {
        let q = e + 4;
        const next = () => {
          const v = q + 8 <= e + 4 + len ? Number(buf.readBigUInt64LE(q)) : 0;
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      e += 4 + len;
    }
    // bit 0: traditional encryption; bit 6: strong encryption; method 99: WinZip AES
    entries.push({ name, encrypted: (flags & 0x41) !== 0 || method === 99, method, compressedSize, size, localOffset });
    p = extraEnd + commentLen;
  }
  return entries;
}

/** One entry's bytes (throws ZipTooLarge past `limit`); null for an encrypted entry or a method fe does not inflate. */
export function zipEntryData(buf: Buffer, entry: ZipEntry, limit: number): Buffer | null {
  if (entry.encrypted || (entry.method !== 0 && entry.method !== 8)) return null;
  const p = entry.localOffset;
  if (p + 30 > buf.length || buf.readUInt32LE(p) !== LFH) throw new ZipError(`local header of ${entry.name} is missing`);
  const start = p + 30 + buf.readUInt16LE(p + 26) + buf.readUInt16LE(p + 28);
  const data = buf.subarray(start, Math.min(buf.length, start + entry.compressedSize));
  if (entry.method === 0) {
    if (data.length > limit) throw new ZipTooLarge(`${entry.name} is over ${limit} bytes`);
    return data;
  }
  try {
    return inflateRawSync(data, { maxOutputLength: limit });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new ZipTooLarge(`${entry.name} inflates beyond ${limit} bytes`);
    throw new ZipError(`cannot inflate ${entry.name}: ${(e as Error).message}`);
  }
}
