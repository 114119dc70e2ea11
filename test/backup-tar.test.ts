// The tar inside a backup must be a tar that GNU tar reads (an owner restores without fe), and
// fe's reader must read GNU tar's pax archives and refuse paths that climb out of the target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { createReadStream } from 'node:fs';
import { endOfArchive, entryHeader, padding, readTar, TarError, type TarEntryHeader } from '../src/backup/tar.js';

const run = promisify(execFile);
const tmp = () => mkdtempSync(path.join(tmpdir(), 'fe-tar-'));

const LONG = `data/mailboxes/a-very-long-domain-name-${'x'.repeat(60)}.example/${'l'.repeat(64)}/spool/00001764000000000-${'f'.repeat(20)}.sealed`;
const VERY_LONG = `top/${'d'.repeat(200)}/${'e'.repeat(150)}`;

function archive(entries: { e: TarEntryHeader; body?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { e, body } of entries) {
    parts.push(entryHeader(e));
    if (body) parts.push(body, padding(body.length));
  }
  parts.push(endOfArchive());
  return Buffer.concat(parts);
}

async function readAll(buf: Buffer | Readable): Promise<Map<string, { e: TarEntryHeader; body: Buffer }>> {
  const out = new Map<string, { e: TarEntryHeader; body: Buffer }>();
  const src = Buffer.isBuffer(buf) ? Readable.from([buf.subarray(0, 700), buf.subarray(700)]) : buf;
  await readTar(src as AsyncIterable<Buffer>, async (e, body) => {
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c);
    out.set(e.path, { e, body: Buffer.concat(chunks) });
  });
  return out;
}

test('GNU tar lists and extracts what fe writes, long paths and modes included', async () => {
  const dir = tmp();
  const small = Buffer.from('hello\n');
  const odd = Buffer.alloc(1000, 7);
  const tarFile = path.join(dir, 'a.tar');
  writeFileSync(
    tarFile,
    archive([
      { e: { path: 'top', type: 'dir', size: 0, mode: 0o700, mtime: 1_700_000_000 } },
      { e: { path: 'top/fe.yml', type: 'file', size: small.length, mode: 0o600, mtime: 1_700_000_000 }, body: small },
      { e: { path: `top/${LONG}`, type: 'file', size: odd.length, mode: 0o600, mtime: 1_700_000_000 }, body: odd },
      { e: { path: VERY_LONG, type: 'file', size: 0, mode: 0o640, mtime: 1_700_000_000 }, body: Buffer.alloc(0) },
    ]),
  );
  const { stdout } = await run('tar', ['-tvf', tarFile]);
  assert.match(stdout, /^drwx------ .* top\/$/m);
  assert.match(stdout, /^-rw------- .* 6 2023-11-1\d \d\d:\d\d top\/fe\.yml$/m);
  assert.ok(stdout.includes(`top/${LONG}`));
  assert.ok(stdout.includes(VERY_LONG));
  const out = path.join(dir, 'x');
  mkdirSync(out);
  await run('tar', ['-xf', tarFile, '-C', out]);
  assert.deepEqual(readFileSync(path.join(out, 'top', LONG)), odd);
  assert.equal(readFileSync(path.join(out, 'top/fe.yml'), 'utf8'), 'hello\n');
});

test('fe reads a pax archive made by GNU tar, in small pieces', async () => {
  const dir = tmp();
  const src = path.join(dir, 'src');
  mkdirSync(path.join(src, path.dirname(LONG)), { recursive: true });
  const body = Buffer.alloc(70_000, 0x61);
  writeFileSync(path.join(src, LONG), body);
  writeFileSync(path.join(src, 'short'), 'x');
  const tarFile = path.join(dir, 'gnu.tar');
  await run('tar', ['--format=pax', '-cf', tarFile, '-C', src, 'data', 'short']);
  const got = await readAll(createReadStream(tarFile, { highWaterMark: 333 }));
  assert.deepEqual(got.get(LONG)?.body, body);
  assert.equal(got.get('short')?.body.toString(), 'x');
  assert.equal(got.get('data/mailboxes')?.e.type, 'dir');
});

test('the reader refuses unsafe paths, links, bad checksums and truncation', async () => {
  assert.throws(() => entryHeader({ path: '../etc/passwd', type: 'file', size: 0, mode: 0o600, mtime: 0 }), TarError);
  assert.throws(() => entryHeader({ path: '/etc/passwd', type: 'file', size: 0, mode: 0o600, mtime: 0 }), TarError);
  const dir = tmp();
  // GNU tar will happily write a member named ../x with -P; fe must not follow it out.
  writeFileSync(path.join(dir, 'x'), 'x');
  const evil = path.join(dir, 'evil.tar');
  await run('tar', ['-P', '--format=pax', '-cf', evil, '--transform', 's,^,../,', '-C', dir, 'x']);
  await assert.rejects(readAll(readFileSync(evil)), /unsafe path/);
  const linkTar = path.join(dir, 'link.tar');
  await run('ln', ['-s', '/etc/passwd', path.join(dir, 'l')]);
  await run('tar', ['-cf', linkTar, '-C', dir, 'l']);
  await assert.rejects(readAll(readFileSync(linkTar)), /unsupported entry type '2'/);

  const good = archive([{ e: { path: 'a', type: 'file', size: 3, mode: 0o600, mtime: 0 }, body: Buffer.from('abc') }]);
  const flipped = Buffer.from(good);
  flipped[10] = flipped[10]! ^ 1;
  await assert.rejects(readAll(flipped), /checksum mismatch/);
  await assert.rejects(readAll(good.subarray(0, 512 + 100)), /truncated/);
  await assert.rejects(readAll(good.subarray(0, 1024)), /truncated|end marker/);
  await assert.rejects(readAll(Buffer.concat([good, Buffer.from('junk')])), /after the end/);
  assert.equal((await readAll(Buffer.concat([good, Buffer.alloc(8192)]))).size, 1, 'record padding of zeros is fine');
});
