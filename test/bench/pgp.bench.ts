// OpenPGP encryption figures: the code the MX runs for an alias with a key (src/pgp: header
// protection, openpgp encryption, the PGP/MIME wrapper) beside `gpg --encrypt --armor` of the
// same bytes to the same key, without compression (fe does not compress). gpg's figure includes
// its process start (a few ms), which is what a filter calling gpg per message would pay too.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { keyState } from '../../src/pgp/key-state.js';
import { encryptMessage } from '../../src/pgp/pgp-mime.js';
import { goodKey } from '../helpers/pgp-fixtures.js';

function gpgEncrypt(home: string, input: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('gpg', ['--homedir', home, '--batch', '--trust-model', 'always', '--compress-algo', 'none', '--armor', '--encrypt', '--recipient', 'me@example.org'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let bytes = 0;
    let err = '';
    child.stdout.on('data', (d: Buffer) => (bytes += d.length));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(bytes) : reject(new Error(`gpg exited ${code}: ${err}`))));
    child.stdin.end(input);
  });
}

function importKey(home: string, armored: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('gpg', ['--homedir', home, '--batch', '--import'], { stdio: ['pipe', 'ignore', 'pipe'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`gpg --import exited ${code}`))));
    child.stdin.end(armored);
  });
}

/** A text message of about `size` bytes: headers and base64 lines, as an attachment would be sent. */
function message(size: number): Buffer {
  const head = 'From: alice@sender.example\r\nTo: me@example.org\r\nSubject: bench\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench@sender.example>\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n';
  const b64 = randomBytes(Math.ceil((size * 3) / 4)).toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(head + b64.slice(0, size - head.length));
}

async function median(runs: number, fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export async function benchPgp(): Promise<void> {
  const key = await goodKey('me@example.org');
  const state = await keyState(key.publicArmored);
  if (!state.usable) throw new Error('the bench key is not usable');
  const home = mkdtempSync(path.join(tmpdir(), 'fe-bench-gnupg-'));
  try {
    await importKey(home, key.publicArmored);
    console.log(`OpenPGP encryption (${process.version}; one ed25519/cv25519 v4 key, armored, no compression; median of the runs)`);
    console.log('size     runs  fe ms      gpg ms     fe/gpg   fe MB/s');
    for (const [label, size, runs] of [['10 KB', 10 * 1024, 41], ['25 MB', 25 * 1024 * 1024, 5]] as const) {
      const m = message(size);
      await encryptMessage(m, state.key, 'hide'); // warm up both
      await gpgEncrypt(home, m);
      const fe = await median(runs, () => encryptMessage(m, state.key, 'hide'));
      const gpg = await median(runs, () => gpgEncrypt(home, m));
      console.log(
        [label.padEnd(8), String(runs).padStart(4), fe.toFixed(1).padStart(9), gpg.toFixed(1).padStart(10), (fe / gpg).toFixed(2).padStart(8), (size / 1e6 / (fe / 1000)).toFixed(1).padStart(9)].join('  '),
      );
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
