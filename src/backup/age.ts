// age v1 file encryption (age-encryption.org/v1, C2SP "age"), X25519 recipients only, binary (no armor).
// Backups written here must open with the stock `age` tool, and files from it must open here, so this follows
// the spec to the letter: strict header grammar, canonical base64, STREAM payload with 64 KiB chunks.
//
// File layout:
//   age-encryption.org/v1\n
//   -> X25519 <ephemeral share, b64>\n<wrapped file key, b64, wrapped at 64 columns>\n   (one per recipient)
//   --- <HMAC-SHA-256 of everything up to and including "---", b64>\n
//   <16-byte nonce> <chunks: ChaCha20-Poly1305 of 64 KiB plaintext each, nonce = 11-byte counter || last flag>
import { Transform, type TransformCallback } from 'node:stream';
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';

export class AgeError extends Error {
  override name = 'AgeError';
}

const VERSION_LINE = 'age-encryption.org/v1';
const VERSION_PREFIX = 'age-encryption.org/';
const ARMOR_PREFIX = '-----BEGIN AGE ENCRYPTED FILE-----';
const X25519_INFO = 'age-encryption.org/v1/X25519';
const FILE_KEY_LEN = 16;
const PAYLOAD_NONCE_LEN = 16;
const TAG_LEN = 16;
const CHUNK_LEN = 64 * 1024;
const ENC_CHUNK_LEN = CHUNK_LEN + TAG_LEN;
const KEY_LEN = 32;
const ZERO_NONCE = Buffer.alloc(12);
// The format has no length limits, but a header is a few hundred bytes in practice. These caps keep a hostile
// or garbage input from making us buffer unbounded "header" data; they still allow thousands of recipients
// and long plugin arguments (post-quantum shares are ~1.5 KB of base64).
const MAX_LINE_LEN = 16 * 1024;
const MAX_HEADER_LEN = 1024 * 1024;
// 6 bytes of the 11-byte counter are plenty (2^48 chunks = 16 EiB); the upper 5 bytes stay zero.
const MAX_CHUNKS = 2 ** 48;

const IDENTITY_HRP = 'age-secret-key-';
const RECIPIENT_HRP = 'age';

// ---------------------------------------------------------------------------------------------------------
// Base64 (RFC 4648 standard alphabet, no padding, canonical only)

const B64_RE = /^[A-Za-z0-9+/]*$/;

function b64encode(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}

/** Strict decoder: Node's own decoder accepts padding, whitespace, URL-safe characters and non-zero trailing bits, all of which the spec requires us to reject. */
function b64decode(s: string): Buffer | null {
  if (!B64_RE.test(s) || s.length % 4 === 1) return null;
  const out = Buffer.from(s, 'base64');
  // Re-encoding catches non-zero unused bits in the last character (two encodings of the same bytes).
  return b64encode(out) === s ? out : null;
}

// ---------------------------------------------------------------------------------------------------------
// Bech32 (BIP 173 checksum, constant 1 — not bech32m — and no 90-character limit, as the age spec says)

const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const BECH32_GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function bech32Polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= BECH32_GEN[i]!;
  }
  return chk;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

/** Regroups bits; when decoding (pad=false) leftover bits must be fewer than `from` and all zero, per BIP 173. */
function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | null {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const maxv = (1 << to) - 1;
  for (let i = 0; i < data.length; i++) {
    acc = ((acc << from) | data[i]!) & 0xffffff;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & maxv);
    }
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & maxv);
  } else if (bits >= from || ((acc << (to - bits)) & maxv) !== 0) {
    return null;
  }
  return out;
}

function bech32Encode(hrp: string, bytes: Buffer, upper: boolean): string {
  const data = convertBits(bytes, 8, 5, true)!;
  const mod = bech32Polymod([...hrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  let s = hrp + '1';
  for (const d of data) s += BECH32_CHARSET[d];
  for (let i = 0; i < 6; i++) s += BECH32_CHARSET[(mod >>> (5 * (5 - i))) & 31];
  data.fill(0);
  return upper ? s.toUpperCase() : s;
}

/** Returns the lowercase HRP, the payload, and whether the string was uppercase; null if not valid bech32. */
function bech32Decode(s: string): { hrp: string; bytes: Buffer; upper: boolean } | null {
  if (typeof s !== 'string' || s.length < 8) return null;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 33 || c > 126) return null;
  }
  const lower = s.toLowerCase();
  const upper = s === s.toUpperCase() && s !== lower;
  // Mixed case is forbidden; the checksum is always over the lowercase form.
  if (s !== lower && !upper) return null;
  const sep = lower.lastIndexOf('1');
  if (sep < 1 || sep + 7 > lower.length) return null;
  const hrp = lower.slice(0, sep);
  const data: number[] = [];
  for (let i = sep + 1; i < lower.length; i++) {
    const v = BECH32_CHARSET.indexOf(lower[i]!);
    if (v < 0) return null;
    data.push(v);
  }
  if (bech32Polymod([...hrpExpand(hrp), ...data]) !== 1) return null;
  const bytes = convertBits(data.slice(0, -6), 5, 8, false);
  data.fill(0);
  if (!bytes) return null;
  const buf = Buffer.from(bytes);
  bytes.fill(0);
  return { hrp, bytes: buf, upper };
}

// ---------------------------------------------------------------------------------------------------------
// X25519 and symmetric helpers

// Fixed DER prefixes for X25519 keys (RFC 8410): raw 32 bytes go right after them.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function privateKeyFromRaw(raw: Buffer): KeyObject {
  const der = Buffer.concat([PKCS8_X25519_PREFIX, raw]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

function publicKeyFromRaw(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

function rawPublicKey(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - KEY_LEN));
}

function hkdf(ikm: Buffer, salt: Buffer, info: string): Buffer {
  // hkdfSync returns an ArrayBuffer; wrapping it (no copy) lets the caller wipe the only copy.
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, KEY_LEN));
}

function isAllZero(b: Buffer): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

function x25519(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    // OpenSSL itself refuses low-order points, which would give an all-zero shared secret.
    throw new AgeError('age: X25519 key agreement failed (low-order point: malicious or corrupt key)');
  }
  if (isAllZero(shared)) throw new AgeError('age: X25519 key agreement failed (low-order point: malicious or corrupt key)');
  return shared;
}

function seal(key: Buffer, nonce: Buffer, plaintext: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  const head = c.update(plaintext);
  const tail = c.final();
  return Buffer.concat([head, tail, c.getAuthTag()]);
}

/** Returns null when authentication fails; the unauthenticated plaintext is wiped, never returned. */
function open(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | null {
  if (sealed.length < TAG_LEN) return null;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_LEN));
  // update() hands out plaintext before the tag is checked; it must not escape until final() succeeds.
  const head = d.update(sealed.subarray(0, sealed.length - TAG_LEN));
  try {
    const tail = d.final();
    return tail.length ? Buffer.concat([head, tail]) : head;
  } catch {
    head.fill(0);
    return null;
  }
}

function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

// ---------------------------------------------------------------------------------------------------------
// Keys

interface Identity {
  privateKey: KeyObject;
  publicRaw: Buffer;
}

function parseIdentity(s: string): Identity {
  const text = typeof s === 'string' ? s.trim() : '';
  const dec = bech32Decode(text);
  // age writes identities uppercase and refuses other forms, so we do too.
  if (!dec || dec.hrp !== IDENTITY_HRP || !dec.upper) {
    dec?.bytes.fill(0);
    throw new AgeError('age: malformed identity (expected AGE-SECRET-KEY-1...)');
  }
  if (dec.bytes.length !== KEY_LEN) {
    dec.bytes.fill(0);
    throw new AgeError('age: malformed identity (wrong key length)');
  }
  try {
    const privateKey = privateKeyFromRaw(dec.bytes);
    return { privateKey, publicRaw: rawPublicKey(createPublicKey(privateKey)) };
  } catch (e) {
    if (e instanceof AgeError) throw e;
    throw new AgeError('age: malformed identity (not an X25519 key)');
  } finally {
    dec.bytes.fill(0);
  }
}

function parseRecipient(s: string): Buffer | null {
  const dec = typeof s === 'string' ? bech32Decode(s.trim()) : null;
  if (!dec || dec.hrp !== RECIPIENT_HRP || dec.upper || dec.bytes.length !== KEY_LEN) return null;
  return dec.bytes;
}

/** A fresh X25519 identity (AGE-SECRET-KEY-1..., uppercase as age writes it) and its recipient (age1...). */
export function generateIdentity(): { identity: string; recipient: string } {
  // Per spec the identity is 32 CSPRNG bytes used as-is (X25519 clamps when it multiplies).
  const raw = randomBytes(KEY_LEN);
  try {
    const pub = rawPublicKey(createPublicKey(privateKeyFromRaw(raw)));
    return { identity: bech32Encode(IDENTITY_HRP, raw, true), recipient: bech32Encode(RECIPIENT_HRP, pub, false) };
  } finally {
    raw.fill(0);
  }
}

/** The age1... recipient for an identity; throws AgeError on a malformed identity. */
export function recipientOf(identity: string): string {
  return bech32Encode(RECIPIENT_HRP, parseIdentity(identity).publicRaw, false);
}

/** True for a well-formed X25519 recipient: lowercase age1..., valid bech32 checksum, 32-byte key. */
export function isRecipient(s: string): boolean {
  return parseRecipient(s) !== null;
}

// ---------------------------------------------------------------------------------------------------------
// Byte queue: holds at most about one chunk plus one incoming write, without re-concatenating on every write.

class ByteQueue {
  private bufs: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.bufs.push(b);
    this.length += b.length;
  }

  /** Removes and returns the first n bytes as a fresh buffer (n <= length). */
  take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const first = this.bufs[0]!;
      const k = Math.min(first.length, n - off);
      first.copy(out, off, 0, k);
      off += k;
      if (k === first.length) this.bufs.shift();
      else this.bufs[0] = first.subarray(k);
    }
    this.length -= n;
    return out;
  }

  clear(): void {
    this.bufs = [];
    this.length = 0;
  }
}

function toAgeError(e: unknown): AgeError {
  if (e instanceof AgeError) return e;
  const err = new AgeError(`age: ${e instanceof Error ? e.message : String(e)}`);
  (err as { cause?: unknown }).cause = e;
  return err;
}

// ---------------------------------------------------------------------------------------------------------
// Encryption

function wrapBody(body: Buffer): string {
  const b64 = b64encode(body);
  let out = '';
  for (let i = 0; i < b64.length; i += 64) out += b64.slice(i, i + 64) + '\n';
  // A stanza body ends at its first line shorter than 64 columns, so a body that fills whole lines needs an empty one.
  if (b64.length % 64 === 0) out += '\n';
  return out;
}

function x25519Stanza(fileKey: Buffer, recipientRaw: Buffer): string {
  const ephemeralRaw = randomBytes(KEY_LEN);
  const ephemeral = privateKeyFromRaw(ephemeralRaw);
  ephemeralRaw.fill(0);
  const share = rawPublicKey(createPublicKey(ephemeral));
  const shared = x25519(ephemeral, publicKeyFromRaw(recipientRaw));
  const wrapKey = hkdf(shared, Buffer.concat([share, recipientRaw]), X25519_INFO);
  shared.fill(0);
  const body = seal(wrapKey, ZERO_NONCE, fileKey);
  wrapKey.fill(0);
  return `-> X25519 ${b64encode(share)}\n${wrapBody(body)}`;
}

class EncryptStream extends Transform {
  private prelude: Buffer | null;
  private payloadKey: Buffer;
  private counter = 0;
  private readonly queue = new ByteQueue();

  constructor(prelude: Buffer, payloadKey: Buffer) {
    super();
    this.prelude = prelude;
    this.payloadKey = payloadKey;
  }

  private emitPrelude(): void {
    if (this.prelude) {
      this.push(this.prelude);
      this.prelude = null;
    }
  }

  private sealChunk(last: boolean): void {
    if (this.counter >= MAX_CHUNKS) throw new AgeError('age: payload too large');
    const plain = this.queue.take(last ? this.queue.length : CHUNK_LEN);
    const out = seal(this.payloadKey, chunkNonce(this.counter++, last), plain);
    plain.fill(0);
    this.push(out);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.emitPrelude();
      this.queue.push(chunk);
      // A full chunk is sealed only once more data follows: the final chunk (even a full one) carries the last flag.
      while (this.queue.length > CHUNK_LEN) this.sealChunk(false);
      cb();
    } catch (e) {
      cb(toAgeError(e));
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.emitPrelude();
      // Whatever is left (possibly nothing, for an empty file) is the final chunk.
      this.sealChunk(true);
      this.wipe();
      cb();
    } catch (e) {
      cb(toAgeError(e));
    }
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.wipe();
    cb(err);
  }

  private wipe(): void {
    this.payloadKey.fill(0);
    this.queue.clear();
  }
}

/**
 * Encrypts a byte stream to one or more recipients (throws AgeError at once on a malformed recipient). fileKey is the
 * 16-byte key it generated, so the writer can verify what it wrote; the caller owns and wipes it.
 */
export function createEncryptStream(recipients: string[]): { stream: Transform; fileKey: Buffer } {
  if (!Array.isArray(recipients) || recipients.length === 0) throw new AgeError('age: at least one recipient is required');
  const keys = recipients.map((r) => {
    const raw = parseRecipient(r);
    if (!raw) throw new AgeError(`age: malformed recipient ${JSON.stringify(String(r).slice(0, 80))} (expected age1...)`);
    return raw;
  });
  const fileKey = randomBytes(FILE_KEY_LEN);
  let header = VERSION_LINE + '\n';
  for (const k of keys) header += x25519Stanza(fileKey, k);
  header += '---';
  const hmacKey = hkdf(fileKey, Buffer.alloc(0), 'header');
  const mac = createHmac('sha256', hmacKey).update(header, 'latin1').digest();
  hmacKey.fill(0);
  header += ` ${b64encode(mac)}\n`;
  const nonce = randomBytes(PAYLOAD_NONCE_LEN);
  // Everything that needs the file key happens now, so the caller may wipe it as soon as it is done with it.
  const payloadKey = hkdf(fileKey, nonce, 'payload');
  const prelude = Buffer.concat([Buffer.from(header, 'latin1'), nonce]);
  return { stream: new EncryptStream(prelude, payloadKey), fileKey };
}

// ---------------------------------------------------------------------------------------------------------
// Decryption

interface Stanza {
  args: string[];
  body: Buffer[];
}

const enum HeaderState {
  Version,
  StanzaOrMac,
  Body,
  Done,
}

/** Incremental header parser: fed arbitrary slices, it returns how many bytes it consumed once the header ends. */
class HeaderParser {
  state = HeaderState.Version;
  readonly stanzas: Stanza[] = [];
  mac: Buffer | null = null;
  /** Header bytes covered by the MAC: every line through "---". */
  private readonly macInput: Buffer[] = [];
  private size = 0;
  private line: Buffer[] = [];
  private lineLen = 0;

  macData(): Buffer {
    return Buffer.concat(this.macInput);
  }

  /** Consumes bytes from `chunk`; returns the offset just past the header, or -1 if more input is needed. */
  feed(chunk: Buffer): number {
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(0x0a, pos);
      const end = nl < 0 ? chunk.length : nl;
      this.appendPartial(chunk.subarray(pos, end));
      if (nl < 0) return -1;
      pos = nl + 1;
      const line = this.line.length === 1 ? this.line[0]! : Buffer.concat(this.line);
      this.line = [];
      this.lineLen = 0;
      this.handleLine(line);
      if (this.state === HeaderState.Done) return pos;
    }
    return -1;
  }

  private appendPartial(piece: Buffer): void {
    if (piece.length === 0) return;
    this.line.push(piece);
    this.lineLen += piece.length;
    if (this.state === HeaderState.Version) this.checkVersionPrefix();
    if (this.lineLen > MAX_LINE_LEN) throw new AgeError('age: header line too long (corrupt file)');
    if (this.size + this.lineLen > MAX_HEADER_LEN) throw new AgeError('age: header too large (corrupt file)');
  }

  /** Fails fast on input that is clearly not age, instead of buffering it looking for a newline. */
  private checkVersionPrefix(): void {
    const head = Buffer.concat(this.line).subarray(0, ARMOR_PREFIX.length).toString('latin1');
    if (head === ARMOR_PREFIX) {
      throw new AgeError('age: ASCII-armored age files are not supported; decode the armor first');
    }
    const n = Math.min(head.length, VERSION_PREFIX.length);
    if (head.slice(0, n) !== VERSION_PREFIX.slice(0, n) && !ARMOR_PREFIX.startsWith(head)) {
      throw new AgeError('age: not an age file');
    }
    if (this.lineLen > 256) throw new AgeError('age: not an age file');
  }

  private handleLine(raw: Buffer): void {
    const line = raw.toString('latin1');
    this.size += raw.length + 1;
    switch (this.state) {
      case HeaderState.Version:
        if (line !== VERSION_LINE) {
          if (line.startsWith(VERSION_PREFIX)) throw new AgeError(`age: unsupported format version ${JSON.stringify(line.slice(VERSION_PREFIX.length, 80))}`);
          if (line === ARMOR_PREFIX) throw new AgeError('age: ASCII-armored age files are not supported; decode the armor first');
          throw new AgeError('age: not an age file');
        }
        this.macInput.push(raw, NEWLINE);
        this.state = HeaderState.StanzaOrMac;
        return;
      case HeaderState.StanzaOrMac:
        if (line.startsWith('-> ')) {
          const args = line.slice(3).split(' ');
          // argument = 1*VCHAR: no empty arguments (double spaces), no control or non-ASCII bytes.
          for (const a of args) if (!/^[\x21-\x7e]+$/.test(a)) throw new AgeError('age: malformed recipient stanza line in header');
          this.stanzas.push({ args, body: [] });
          this.macInput.push(raw, NEWLINE);
          this.state = HeaderState.Body;
          return;
        }
        if (line.startsWith('---')) {
          if (this.stanzas.length === 0) throw new AgeError('age: header has no recipient stanzas');
          const m = /^--- ([A-Za-z0-9+/]{43})$/.exec(line);
          const mac = m ? b64decode(m[1]!) : null;
          if (!mac || mac.length !== 32) throw new AgeError('age: malformed header MAC line');
          this.mac = mac;
          this.macInput.push(raw.subarray(0, 3));
          this.state = HeaderState.Done;
          return;
        }
        throw new AgeError('age: malformed header line');
      case HeaderState.Body: {
        if (line.length > 64) throw new AgeError('age: malformed recipient stanza body (line longer than 64 columns)');
        const bytes = b64decode(line);
        if (!bytes) throw new AgeError('age: malformed recipient stanza body (invalid or non-canonical base64)');
        this.stanzas[this.stanzas.length - 1]!.body.push(bytes);
        this.macInput.push(raw, NEWLINE);
        // The body ends at the first line shorter than 64 columns (possibly empty).
        if (line.length < 64) this.state = HeaderState.StanzaOrMac;
        return;
      }
      case HeaderState.Done:
        return;
    }
  }
}

const NEWLINE = Buffer.from('\n');

function unwrapFileKey(stanzas: Stanza[], identities: Identity[]): Buffer {
  const types = stanzas.map((s) => s.args[0]);
  if (types.includes('scrypt')) {
    // The spec forbids scrypt next to any other stanza; alone it needs a passphrase, which we don't do.
    if (stanzas.length > 1) throw new AgeError('age: scrypt recipient stanza mixed with other stanzas');
    throw new AgeError('age: file is passphrase-encrypted (scrypt), which is not supported');
  }
  const candidates: { share: Buffer; body: Buffer }[] = [];
  for (const s of stanzas) {
    if (s.args[0] !== 'X25519') continue; // unknown types (including age's "grease" stanzas) must be ignored
    const share = s.args.length === 2 ? b64decode(s.args[1]!) : null;
    const body = Buffer.concat(s.body);
    // The body length check comes before any decryption attempt (spec: partitioning-oracle mitigation).
    if (!share || share.length !== KEY_LEN || body.length !== FILE_KEY_LEN + TAG_LEN) {
      throw new AgeError('age: malformed X25519 recipient stanza');
    }
    candidates.push({ share, body });
  }
  for (const { share, body } of candidates) {
    const shareKey = publicKeyFromRaw(share);
    for (const id of identities) {
      const shared = x25519(id.privateKey, shareKey);
      const wrapKey = hkdf(shared, Buffer.concat([share, id.publicRaw]), X25519_INFO);
      shared.fill(0);
      const fileKey = open(wrapKey, ZERO_NONCE, body);
      wrapKey.fill(0);
      if (fileKey) return fileKey;
    }
  }
  throw new AgeError('age: no identity matches any recipient');
}

class DecryptStream extends Transform {
  private readonly header = new HeaderParser();
  private readonly identities: Identity[];
  private fileKey: Buffer | null;
  private payloadKey: Buffer | null = null;
  private nonce: Buffer | null = null;
  private readonly queue = new ByteQueue();
  private counter = 0;
  private sawInput = false;

  constructor(identities: Identity[], fileKey: Buffer | null) {
    super();
    this.identities = identities;
    this.fileKey = fileKey;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      if (chunk.length) this.sawInput = true;
      if (this.header.state !== HeaderState.Done) {
        const used = this.header.feed(chunk);
        if (used < 0) return cb();
        this.finishHeader();
        chunk = chunk.subarray(used);
      }
      this.queue.push(chunk);
      if (!this.payloadKey) {
        if (this.queue.length < PAYLOAD_NONCE_LEN) return cb();
        this.nonce = this.queue.take(PAYLOAD_NONCE_LEN);
        this.payloadKey = hkdf(this.fileKey!, this.nonce, 'payload');
        this.fileKey!.fill(0);
        this.fileKey = null;
      }
      // More than a full chunk buffered means the first one cannot be the final chunk.
      while (this.queue.length > ENC_CHUNK_LEN) this.openChunk(this.queue.take(ENC_CHUNK_LEN), false);
      cb();
    } catch (e) {
      this.wipe();
      cb(toAgeError(e));
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (this.header.state !== HeaderState.Done) {
        throw new AgeError(this.sawInput ? 'age: file is truncated (incomplete header)' : 'age: not an age file (empty input)');
      }
      if (!this.payloadKey || this.queue.length === 0) throw new AgeError('age: file is truncated');
      this.openChunk(this.queue.take(this.queue.length), true);
      this.wipe();
      cb();
    } catch (e) {
      this.wipe();
      cb(toAgeError(e));
    }
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.wipe();
    cb(err);
  }

  private finishHeader(): void {
    const h = this.header;
    if (!this.fileKey) this.fileKey = unwrapFileKey(h.stanzas, this.identities);
    const hmacKey = hkdf(this.fileKey, Buffer.alloc(0), 'header');
    const mac = createHmac('sha256', hmacKey).update(h.macData()).digest();
    hmacKey.fill(0);
    if (!timingSafeEqual(mac, h.mac!)) {
      throw new AgeError(this.identities.length ? 'age: header MAC mismatch' : 'age: header MAC mismatch (wrong file key or corrupt header)');
    }
  }

  private openChunk(sealed: Buffer, atEnd: boolean): void {
    const key = this.payloadKey!;
    const index = this.counter;
    if (index >= MAX_CHUNKS) throw new AgeError('age: payload too large');
    if (!atEnd) {
      const plain = open(key, chunkNonce(index, false), sealed);
      if (!plain) {
        // Diagnose a valid final chunk followed by junk, rather than reporting generic corruption.
        const asLast = open(key, chunkNonce(index, true), sealed);
        if (asLast) {
          asLast.fill(0);
          throw new AgeError('age: trailing data after the final chunk');
        }
        throw new AgeError(`age: payload chunk ${index} failed authentication (corrupt or truncated file)`);
      }
      this.counter++;
      this.push(plain);
      return;
    }
    const plain = open(key, chunkNonce(index, true), sealed);
    if (!plain) {
      // A full chunk that only opens as non-final means the file was cut at a chunk boundary.
      if (sealed.length === ENC_CHUNK_LEN) {
        const notLast = open(key, chunkNonce(index, false), sealed);
        if (notLast) {
          notLast.fill(0);
          throw new AgeError('age: file is truncated');
        }
      }
      throw new AgeError(`age: payload chunk ${index} failed authentication (corrupt or truncated file)`);
    }
    // Spec: the final chunk may be empty only when the whole payload is empty.
    if (plain.length === 0 && index > 0) throw new AgeError('age: empty final chunk');
    this.counter++;
    if (plain.length) this.push(plain);
  }

  private wipe(): void {
    this.fileKey?.fill(0);
    this.fileKey = null;
    this.payloadKey?.fill(0);
    this.payloadKey = null;
    this.queue.clear();
  }
}

/**
 * Decrypts with identities (AGE-SECRET-KEY-1...) or directly with a known file key (which wins if both are given;
 * the caller's buffer is copied, never wiped). Bad options throw at once; everything about the file itself is an
 * AgeError emitted on the stream. Only authenticated chunks are ever pushed, and a missing final chunk fails at end.
 */
export function createDecryptStream(opts: { identities?: string[]; fileKey?: Buffer }): Transform {
  const { identities = [], fileKey } = opts ?? {};
  if (fileKey !== undefined) {
    if (!Buffer.isBuffer(fileKey) || fileKey.length !== FILE_KEY_LEN) throw new AgeError(`age: file key must be ${FILE_KEY_LEN} bytes`);
    // Our own copy, so wiping it never touches the caller's buffer.
    return new DecryptStream([], Buffer.from(fileKey));
  }
  if (!Array.isArray(identities) || identities.length === 0) throw new AgeError('age: an identity or a file key is required to decrypt');
  return new DecryptStream(identities.map(parseIdentity), null);
}
