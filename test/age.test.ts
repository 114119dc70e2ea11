// age v1 implementation checked against the real age tool (Debian package "age"), both directions, plus
// tampering, truncation and bounded-memory streaming.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgeError, createDecryptStream, createEncryptStream, generateIdentity, isRecipient, recipientOf } from '../src/backup/age.js';

const CHUNK = 65536;
const ENC_CHUNK = CHUNK + 16;
const SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 5 * 1024 * 1024 + 123];

const tmp = mkdtempSync(path.join(os.tmpdir(), 'fe-age-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpFile = (name: string): string => path.join(tmp, `${counter++}-${name}`);

function run(cmd: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}

let ageChecked: Promise<void> | undefined;
/** The interop tests are the point of this file, so a missing binary is a failure, not a skip. */
function requireAge(): Promise<void> {
  ageChecked ??= Promise.all([run('age', ['--version']), run('age-keygen', ['--version'])]).then(
    () => undefined,
    (e: unknown) => {
      throw new Error(`the real age tool is required for these tests: install Debian's \`age\` package (apt-get install -y age), which provides age and age-keygen (${String(e)})`);
    },
  );
  return ageChecked;
}

async function ageKeygen(): Promise<{ identity: string; recipient: string; file: string }> {
  const file = tmpFile('key.txt');
  await run('age-keygen', ['-o', file]);
  const text = readFileSync(file, 'utf8');
  const identity = /^AGE-SECRET-KEY-1[0-9A-Z]+$/m.exec(text)?.[0];
  const recipient = /^# public key: (age1[0-9a-z]+)$/m.exec(text)?.[1];
  assert.ok(identity && recipient, `unexpected age-keygen output: ${text}`);
  return { identity, recipient, file };
}

function keyFile(identity: string): string {
  const file = tmpFile('id.txt');
  writeFileSync(file, `# test identity\n${identity}\n`, { mode: 0o600 });
  return file;
}

/** Deterministic irregular split: tiny pieces through the header region, then uneven larger ones. */
function pieces(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let seed = 12345;
  let pos = 0;
  while (pos < buf.length) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const n = pos < 512 ? 1 + (seed % 7) : 1 + (seed % 100_000);
    out.push(buf.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

async function collect(source: Buffer, stream: Transform): Promise<{ out: Buffer; err: unknown }> {
  const got: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      got.push(chunk);
      cb();
    },
  });
  let err: unknown = null;
  try {
    await pipeline(Readable.from(pieces(source)), stream, sink);
  } catch (e) {
    err = e;
  }
  return { out: Buffer.concat(got), err };
}

async function encrypt(plain: Buffer, recipients: string[]): Promise<{ enc: Buffer; fileKey: Buffer }> {
  const { stream, fileKey } = createEncryptStream(recipients);
  const { out, err } = await collect(plain, stream);
  assert.equal(err, null);
  return { enc: out, fileKey };
}

async function decrypt(enc: Buffer, opts: { identities?: string[]; fileKey?: Buffer }): Promise<Buffer> {
  const { out, err } = await collect(enc, createDecryptStream(opts));
  if (err) throw err;
  return out;
}

/** Decryption must fail with AgeError and may only have emitted whole, authenticated chunks of the plaintext. */
async function expectFailure(enc: Buffer, opts: { identities?: string[]; fileKey?: Buffer }, plain: Buffer, message: RegExp, emitted?: number): Promise<void> {
  const { out, err } = await collect(enc, createDecryptStream(opts));
  assert.ok(err instanceof AgeError, `expected AgeError, got ${String(err)}`);
  assert.match(err.message, message);
  assert.ok(out.length < plain.length || plain.length === 0, 'output must be a strict prefix');
  assert.equal(out.length % CHUNK, 0, 'only whole chunks may be emitted');
  assert.ok(out.equals(plain.subarray(0, out.length)), 'output must be a prefix of the plaintext');
  if (emitted !== undefined) assert.equal(out.length, emitted);
}

function headerLength(enc: Buffer): number {
  const mac = enc.indexOf('\n--- ');
  assert.ok(mac > 0);
  return enc.indexOf(0x0a, mac + 1) + 1;
}

test('our encryption decrypts byte-identically with age -d', async () => {
  await requireAge();
  const ours = generateIdentity();
  const theirs = await ageKeygen();
  const ourKeyFile = keyFile(ours.identity);
  for (const size of SIZES) {
    const plain = randomBytes(size);
    const { enc } = await encrypt(plain, [ours.recipient]);
    const file = tmpFile('ours.age');
    writeFileSync(file, enc);
    assert.ok((await run('age', ['-d', '-i', ourKeyFile, file])).equals(plain), `size ${size}`);
    // Two recipients: either key opens it, including one age-keygen made.
    const two = await encrypt(plain, [theirs.recipient, ours.recipient]);
    const file2 = tmpFile('two.age');
    writeFileSync(file2, two.enc);
    assert.ok((await run('age', ['-d', '-i', theirs.file, file2])).equals(plain), `size ${size}, age-keygen key`);
    assert.ok((await run('age', ['-d', '-i', ourKeyFile, file2])).equals(plain), `size ${size}, our key`);
  }
});

test('files encrypted by age -r decrypt byte-identically here', async () => {
  await requireAge();
  const theirs = await ageKeygen();
  for (const size of SIZES) {
    const plain = randomBytes(size);
    const input = tmpFile('plain');
    const output = tmpFile('theirs.age');
    writeFileSync(input, plain);
    await run('age', ['-r', theirs.recipient, '-o', output, input]);
    assert.ok((await decrypt(readFileSync(output), { identities: [theirs.identity] })).equals(plain), `size ${size}`);
  }
});

test('a file age encrypted to two recipients opens with either of our identities', async () => {
  await requireAge();
  const a = generateIdentity();
  const b = await ageKeygen();
  const plain = randomBytes(3 * CHUNK + 17);
  const input = tmpFile('plain');
  const output = tmpFile('two.age');
  writeFileSync(input, plain);
  await run('age', ['-r', a.recipient, '-r', b.recipient, '-o', output, input]);
  const enc = readFileSync(output);
  assert.ok((await decrypt(enc, { identities: [a.identity] })).equals(plain));
  assert.ok((await decrypt(enc, { identities: [b.identity] })).equals(plain));
  // A non-matching identity in the list is simply skipped.
  assert.ok((await decrypt(enc, { identities: [generateIdentity().identity, b.identity] })).equals(plain));
});

test('generated identities are accepted by age-keygen -y and match recipientOf', async () => {
  await requireAge();
  for (let i = 0; i < 5; i++) {
    const { identity, recipient } = generateIdentity();
    assert.match(identity, /^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/);
    assert.match(recipient, /^age1[02-9ac-hj-np-z]{58}$/);
    const printed = (await run('age-keygen', ['-y', keyFile(identity)])).toString().trim();
    assert.equal(printed, recipient);
    assert.equal(recipientOf(identity), recipient);
    assert.ok(isRecipient(recipient));
  }
  const theirs = await ageKeygen();
  assert.equal(recipientOf(theirs.identity), theirs.recipient);
  assert.ok(isRecipient(theirs.recipient));
});

test('malformed keys are rejected', () => {
  const { identity, recipient } = generateIdentity();
  const flipLast = (s: string): string => s.slice(0, -1) + (s.endsWith('q') || s.endsWith('Q') ? (s === s.toUpperCase() ? 'P' : 'p') : s === s.toUpperCase() ? 'Q' : 'q');
  for (const bad of ['', 'age1', recipient.toUpperCase(), flipLast(recipient), recipient.slice(0, -1), identity, ' ' + 'age1' + recipient.slice(5), 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4']) {
    assert.equal(isRecipient(bad), false, bad);
  }
  for (const bad of ['', identity.toLowerCase(), flipLast(identity), recipient, identity.slice(0, -2)]) {
    assert.throws(() => recipientOf(bad), AgeError, bad);
  }
  assert.throws(() => createEncryptStream([]), AgeError);
  assert.throws(() => createEncryptStream([flipLast(recipient)]), AgeError);
  assert.throws(() => createDecryptStream({}), AgeError);
  assert.throws(() => createDecryptStream({ fileKey: Buffer.alloc(15) }), AgeError);
  assert.throws(() => createDecryptStream({ identities: [recipient] }), AgeError);
});

test('decrypting with the file key gives the same plaintext as with the identity', async () => {
  const { identity, recipient } = generateIdentity();
  for (const size of [0, 1, CHUNK, 2 * CHUNK + 5]) {
    const plain = randomBytes(size);
    const { stream, fileKey } = createEncryptStream([recipient]);
    assert.equal(fileKey.length, 16);
    const keyCopy = Buffer.from(fileKey);
    // The caller may wipe its key as soon as the stream exists: nothing later depends on it.
    fileKey.fill(0);
    const { out: enc, err } = await collect(plain, stream);
    assert.equal(err, null);
    const viaKey = await decrypt(enc, { fileKey: keyCopy });
    const viaIdentity = await decrypt(enc, { identities: [identity] });
    assert.ok(viaKey.equals(plain));
    assert.ok(viaIdentity.equals(viaKey));
    assert.ok(keyCopy.some((b) => b !== 0), 'decrypting must not wipe the caller-owned key');
    await expectFailure(enc, { fileKey: randomBytes(16) }, plain, /header MAC mismatch/, 0);
  }
});

test('tampering, truncation, trailing data and wrong keys fail with AgeError and no unauthenticated plaintext', async () => {
  const { identity, recipient } = generateIdentity();
  const plain = randomBytes(4 * CHUNK + 1000);
  const { enc, fileKey } = await encrypt(plain, [recipient]);
  const hdr = headerLength(enc);
  const payload = hdr + 16;
  assert.equal(enc.length, payload + 4 * ENC_CHUNK + 1000 + 16);
  const flip = (at: number): Buffer => {
    const c = Buffer.from(enc);
    c[at]! ^= 0x01;
    return c;
  };
  const id = { identities: [identity] };

  // Every single header byte matters (including base64 padding bits), with an identity or with the file key.
  for (let i = 0; i < hdr; i++) {
    await expectFailure(flip(i), id, plain, /^age: /, 0);
    await expectFailure(flip(i), { fileKey }, plain, /^age: /, 0);
  }
  await expectFailure(flip(hdr + 3), id, plain, /chunk 0 failed authentication/, 0); // payload nonce
  await expectFailure(flip(payload + 2 * ENC_CHUNK + 500), id, plain, /chunk 2 failed authentication/, 2 * CHUNK);
  await expectFailure(flip(enc.length - 1), id, plain, /chunk 4 failed authentication/, 4 * CHUNK);
  await expectFailure(flip(enc.length - 1), { fileKey }, plain, /chunk 4 failed authentication/, 4 * CHUNK);

  // Truncation: at chunk boundaries, inside a chunk, inside or right after the header.
  await expectFailure(enc.subarray(0, payload + 3 * ENC_CHUNK), id, plain, /file is truncated/);
  await expectFailure(enc.subarray(0, payload + ENC_CHUNK), id, plain, /file is truncated/);
  await expectFailure(enc.subarray(0, payload + 2 * ENC_CHUNK + 100), id, plain, /chunk 2 failed authentication/, 2 * CHUNK);
  await expectFailure(enc.subarray(0, enc.length - 1), id, plain, /chunk 4 failed authentication/, 4 * CHUNK);
  await expectFailure(enc.subarray(0, payload), id, plain, /file is truncated/, 0);
  await expectFailure(enc.subarray(0, payload - 5), id, plain, /file is truncated/, 0);
  await expectFailure(enc.subarray(0, hdr - 10), id, plain, /truncated/, 0);

  // Trailing data after a short and after a full final chunk.
  await expectFailure(Buffer.concat([enc, Buffer.from([0])]), id, plain, /failed authentication/, 4 * CHUNK);
  const full = randomBytes(2 * CHUNK);
  const fullEnc = (await encrypt(full, [recipient])).enc;
  await expectFailure(Buffer.concat([fullEnc, randomBytes(10)]), id, full, /trailing data after the final chunk/, CHUNK);
  await expectFailure(Buffer.concat([fullEnc, randomBytes(ENC_CHUNK + 1)]), id, full, /trailing data after the final chunk/, CHUNK);

  // Wrong identity, and things that are not age files at all.
  await expectFailure(enc, { identities: [generateIdentity().identity] }, plain, /no identity matches any recipient/, 0);
  await expectFailure(randomBytes(1000), id, plain, /not an age file/, 0);
  await expectFailure(Buffer.alloc(0), id, plain, /not an age file/, 0);
  await expectFailure(Buffer.from('age-encryption.org/v2\n-> X25519 abc\n\n--- x\n'), id, plain, /unsupported format version/, 0);
});

test('non-canonical base64 and malformed header lines are rejected even when the MAC would verify', async () => {
  const { identity, recipient } = generateIdentity();
  const plain = randomBytes(100);
  const { enc, fileKey } = await encrypt(plain, [recipient]);
  const text = enc.subarray(0, headerLength(enc)).toString('latin1');
  const rest = enc.subarray(headerLength(enc));
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  // 43 base64 characters carry 258 bits for 32 bytes: setting an unused low bit decodes to the same MAC.
  const macAt = text.indexOf('--- ') + 4 + 42;
  const nonCanonical = text.slice(0, macAt) + alphabet[alphabet.indexOf(text[macAt]!) ^ 1] + text.slice(macAt + 1);
  await expectFailure(Buffer.concat([Buffer.from(nonCanonical, 'latin1'), rest]), { fileKey }, plain, /malformed header MAC/, 0);
  const padded = text.replace(/\n$/, '=\n');
  await expectFailure(Buffer.concat([Buffer.from(padded, 'latin1'), rest]), { fileKey }, plain, /malformed header MAC/, 0);
  const crlf = text.replace('age-encryption.org/v1\n', 'age-encryption.org/v1\r\n');
  await expectFailure(Buffer.concat([Buffer.from(crlf, 'latin1'), rest]), { identities: [identity] }, plain, /^age: /, 0);
  const longLine = 'age-encryption.org/v1\n-> ' + 'x'.repeat(100_000) + '\n';
  await expectFailure(Buffer.from(longLine), { identities: [identity] }, plain, /header line too long/, 0);
  // Unknown stanzas are ignored (age adds random "grease" ones); a stanza body of a full 64-column line needs an empty final line.
  const withGrease = text.replace('---', `-> example.org/grease a b\n${'A'.repeat(64)}\n\n---`);
  await expectFailure(Buffer.concat([Buffer.from(withGrease, 'latin1'), rest]), { fileKey }, plain, /header MAC mismatch/, 0);
  // With the MAC recomputed over the new header, the file opens: the extra stanza parsed and was skipped.
  const macKey = Buffer.from(hkdfSync('sha256', fileKey, Buffer.alloc(0), 'header', 32));
  const upToMark = withGrease.slice(0, withGrease.indexOf('\n---') + 4);
  const remac = `${upToMark} ${createHmac('sha256', macKey).update(upToMark, 'latin1').digest('base64').replace(/=+$/, '')}\n`;
  assert.ok((await decrypt(Buffer.concat([Buffer.from(remac, 'latin1'), rest]), { identities: [identity] })).equals(plain));
});

test('an empty final chunk is rejected unless the whole payload is empty (and age agrees)', async () => {
  await requireAge();
  const { identity, recipient } = generateIdentity();
  const plain = randomBytes(CHUNK);
  const { enc, fileKey } = await encrypt(plain, [recipient]);
  const payload = headerLength(enc) + 16;
  // Re-seal the payload by hand as one non-final full chunk followed by an empty final chunk.
  const nonce = enc.subarray(payload - 16, payload);
  const key = Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
  const sealChunk = (i: number, last: boolean, data: Buffer): Buffer => {
    const n = Buffer.alloc(12);
    n.writeUInt32BE(i, 7);
    n[11] = last ? 1 : 0;
    const c = createCipheriv('chacha20-poly1305', key, n, { authTagLength: 16 });
    return Buffer.concat([c.update(data), c.final(), c.getAuthTag()]);
  };
  // Sanity: our own encoder produced exactly one final full chunk.
  assert.ok(enc.subarray(payload).equals(sealChunk(0, true, plain)));
  const crafted = Buffer.concat([enc.subarray(0, payload), sealChunk(0, false, plain), sealChunk(1, true, Buffer.alloc(0))]);
  // The first chunk is authentic (as a non-final chunk), so it may be emitted; the file as a whole still fails.
  const { out, err } = await collect(crafted, createDecryptStream({ identities: [identity] }));
  assert.ok(err instanceof AgeError);
  assert.match(err.message, /empty final chunk/);
  assert.ok(out.equals(plain));
  const file = tmpFile('empty-last.age');
  writeFileSync(file, crafted);
  await assert.rejects(run('age', ['-d', '-i', keyFile(identity), file]));
});

test('the header is parsed when it arrives one byte at a time', async () => {
  const { identity, recipient } = generateIdentity();
  const plain = randomBytes(CHUNK + 3);
  const { enc } = await encrypt(plain, [recipient]);
  const d = createDecryptStream({ identities: [identity] });
  const got: Buffer[] = [];
  d.on('data', (c: Buffer) => got.push(c));
  const done = new Promise((resolve, reject) => {
    d.on('end', resolve);
    d.on('error', reject);
  });
  const headerEnd = headerLength(enc) + 16;
  for (let i = 0; i < headerEnd + 100; i++) d.write(enc.subarray(i, i + 1));
  for (let i = headerEnd + 100; i < enc.length; i += 1000) d.write(enc.subarray(i, i + 1000));
  d.end();
  await done;
  assert.ok(Buffer.concat(got).equals(plain));
});

test('a 200 MB stream encrypts and decrypts with bounded memory', async (t) => {
  const { identity, recipient } = generateIdentity();
  const total = 200 * 1024 * 1024;
  const block = randomBytes(50_000); // not a multiple of the chunk size, so chunks straddle writes
  const inHash = createHash('sha256');
  const outHash = createHash('sha256');
  let produced = 0;
  let received = 0;
  async function* source(): AsyncGenerator<Buffer> {
    let n = 0;
    while (produced < total) {
      const b = Buffer.from(block.subarray(0, Math.min(block.length, total - produced)));
      b.writeUInt32BE(n++, 0);
      inHash.update(b);
      produced += b.length;
      yield b;
    }
  }
  const base = process.memoryUsage().rss;
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      outHash.update(chunk);
      received += chunk.length;
      if ((received & 0xfffff) === 0) peak = Math.max(peak, process.memoryUsage().rss);
      cb();
    },
  });
  try {
    const { stream } = createEncryptStream([recipient]);
    await pipeline(Readable.from(source()), stream, createDecryptStream({ identities: [identity] }), sink);
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  assert.equal(received, total);
  assert.equal(outHash.digest('hex'), inHash.digest('hex'));
  const growth = (peak - base) / (1024 * 1024);
  t.diagnostic(`RSS growth ${growth.toFixed(1)} MB`);
  assert.ok(growth < 64, `RSS grew by ${growth.toFixed(1)} MB`);
});
