// The MX's early-talker check as a client meets it: an address it has not seen waits for the
// greeting and is refused if it talks first; an address that once waited is greeted at once.
// Each test connects from its own loopback address (127.0.0.x), so the cache starts empty for it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';

let dns: DnsServer;
let fe: Daemon;
let port: number;

before(async () => {
  dns = await startDnsServer({});
  const w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: 127.0.0.1:0\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  fe = await startServe(w.config, ['--only', 'mx']);
  port = fe.ports.mx!;
});

after(async () => {
  await fe?.stop();
  await dns?.close();
});

interface Talk {
  /** Everything the server said until it closed or the first 250 to EHLO. */
  said: string;
  /** ms from the connect call to the first byte from the server. */
  firstByteMs: number;
}

/** Connects from `from`, writes `early` at once (before any greeting), then EHLO after the greeting unless it already went. */
function talk(from: string, early: string | null): Promise<Talk> {
  return new Promise((resolve, reject) => {
    const start = Date.now(); // before connect: the server's wait starts at its accept, never earlier
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    let said = '';
    let firstByteMs = -1;
    let ehloSent = early !== null;
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`no end of the conversation; got: ${said}`))), 20_000);
    const done = () => (clearTimeout(timer), s.destroy(), resolve({ said, firstByteMs }));
    s.on('connect', () => {
      if (early !== null) s.write(early);
    });
    s.on('data', (d: Buffer) => {
      if (firstByteMs < 0) firstByteMs = Date.now() - start;
      said += d.toString('latin1');
      if (!ehloSent && /^220 /m.test(said)) {
        ehloSent = true;
        s.write('EHLO client.example\r\n');
      }
      if (/^250 /m.test(said)) {
        s.write('QUIT\r\n');
        done();
      }
    });
    s.on('close', done);
    s.on('error', () => done());
  });
}

test('a client that sends a command before the greeting is told 421 and disconnected, without a greeting', async () => {
  const r = await talk('127.0.0.2', 'EHLO spam.example\r\n');
  assert.match(r.said, /^421 .*too soon/im);
  assert.doesNotMatch(r.said, /^220/m);
});

test('a partial line before the greeting is refused too', async () => {
  const r = await talk('127.0.0.3', 'EH');
  assert.match(r.said, /^421 .*too soon/im);
  assert.doesNotMatch(r.said, /^220/m);
});

test('an early talker is not remembered as good: talking early again is still refused', async () => {
  await talk('127.0.0.5', 'EHLO spam.example\r\n');
  const again = await talk('127.0.0.5', 'EHLO spam.example\r\n');
  assert.match(again.said, /^421 .*too soon/im);
});

test('an address that waited for its greeting is greeted at once from then on, even when it pipelines EHLO', async () => {
  const first = await talk('127.0.0.4', null);
  assert.match(first.said, /^220 /m);
  assert.match(first.said, /^250 /m);
  assert.ok(first.firstByteMs >= 90, `an unknown client waits for the greeting (~100 ms), got it after ${first.firstByteMs} ms`);
  // the same early EHLO that got 127.0.0.2 refused is now answered: the greeting went first
  const second = await talk('127.0.0.4', 'EHLO client.example\r\n');
  assert.match(second.said, /^220 [^\r\n]*\r\n250[ -]/);
  assert.doesNotMatch(second.said, /too soon/i);
});
