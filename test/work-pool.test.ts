// The daemons' work threads (src/daemon/work-pool.ts): they start with the first message, do the
// work, and stop when idle so a quiet server gives their memory back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { setWorkThreadIdleStop, workThreadsRunning } from '../src/daemon/work-pool.js';
import { appendToSpoolAsync, listSpool } from '../src/store/spool.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('work threads start with the first spool write, stop once idle, and start again for the next one', async () => {
  setWorkThreadIdleStop(300);
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'fe-pool-')), 'mb');
  const { publicKey } = generateKeyPairSync('x25519');
  const meta = { receivedAt: new Date(), envelopeFrom: 'a@example.net', envelopeTo: 'me@example.org' };
  assert.equal(workThreadsRunning(), 0);
  await Promise.all([1, 2, 3, 4].map((i) => appendToSpoolAsync(dir, publicKey, Buffer.from(`Subject: ${i}\r\n\r\nbody\r\n`), meta)));
  assert.ok(workThreadsRunning() >= 1);
  const deadline = Date.now() + 5000;
  while (workThreadsRunning() > 0 && Date.now() < deadline) await sleep(50);
  assert.equal(workThreadsRunning(), 0, 'idle threads stopped');
  await appendToSpoolAsync(dir, publicKey, Buffer.from('Subject: 5\r\n\r\nbody\r\n'), meta);
  assert.equal(listSpool(dir).length, 5);
});
