// Mailbox sessions in a daemon: one open database per mailbox, new mail noticed while open,
// brute-force throttling of logins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoginThrottle, prefixOf } from '../src/auth/throttle.js';
import { loadConfig } from '../src/config/file.js';
import { sealingPublicKey } from '../src/crypto/mailbox-key.js';
import { MailboxRegistry, type ChangeEvent } from '../src/store/registry.js';
import { mailboxDir } from '../src/store/paths.js';
import { appendToSpool } from '../src/store/spool.js';
import { createLogger } from '../src/util/log.js';
import { workspace } from './helpers/fe.js';

const PASSWORD = 'correct horse battery staple';

test('login: bad credentials look alike; sessions share one store; new spool mail is announced while open', async () => {
  const w = workspace('hostname: mail.example.org\ndata_dir: ./data\ndomains:\n  example.org: {}\n');
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  await w.ok(['alias', 'add', 'fw@example.org', '--forward', 'x@y.example']);
  const config = loadConfig(w.config);
  const lines: string[] = [];
  const registry = new MailboxRegistry({ config: () => config, log: createLogger('info', 'test', (l) => lines.push(l)) });
  const dir = mailboxDir(config.dataDir, 'example.org', 'me');
  appendToSpool(dir, sealingPublicKey(dir), Buffer.from('Subject: waiting\r\n\r\nwhile closed\r\n'), { receivedAt: new Date(), envelopeFrom: 'a@b.example', envelopeTo: 'me@example.org' });

  assert.equal(await registry.login('me@example.org', 'wrong password'), null);
  assert.equal(await registry.login('nobody@example.org', PASSWORD), null);
  assert.equal(await registry.login('fw@example.org', PASSWORD), null, 'a forward-only alias has no mailbox');
  assert.equal(await registry.login('me+tag@example.org', PASSWORD), null, 'login uses the alias itself');

  const [a, b] = await Promise.all([registry.login('Me@Example.org', PASSWORD), registry.login('me@example.org', PASSWORD)]);
  assert.ok(a && b);
  assert.equal(a.store, b.store, 'one database handle for both sessions');
  assert.equal(a.store.listMessages('INBOX').length, 1, 'mail that arrived while closed is imported at login');

  const seen = new Promise<ChangeEvent>((resolve) => b.events.once('change', resolve));
  const start = Date.now();
  appendToSpool(dir, sealingPublicKey(dir), Buffer.from('Subject: live\r\n\r\nwhile open\r\n'), { receivedAt: new Date(), envelopeFrom: 'a@b.example', envelopeTo: 'me@example.org' });
  const event = await seen;
  assert.deepEqual(event, { folder: 'INBOX', origin: null });
  assert.ok(Date.now() - start < 1000, 'announced within a second');
  assert.equal(b.store.listMessages('INBOX').length, 2);

  a.release();
  a.release(); // twice is harmless
  assert.equal(b.store.listMessages('INBOX').length, 2, 'still open for the other session');
  b.release();
  assert.throws(() => b.store.listMessages('INBOX'), 'closed (and the key dropped) after the last session');
  assert.equal(lines.join('\n').includes(PASSWORD), false);
});

test('login throttle: slows after a few failures, blocks after many, forgives on success and with time', () => {
  let now = 0;
  const t = new LoginThrottle({ delayAfter: 3, delayStepMs: 1000, maxDelayMs: 5000, blockAfter: 6, blockMs: 60_000, windowMs: 600_000, now: () => now });
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(t.check('192.0.2.1'), { allowed: true, delayMs: 0 });
    t.failure('192.0.2.1');
  }
  assert.deepEqual(t.check('192.0.2.1'), { allowed: true, delayMs: 1000 });
  t.failure('192.0.2.1');
  assert.deepEqual(t.check('192.0.2.1'), { allowed: true, delayMs: 2000 });
  t.failure('192.0.2.1');
  t.failure('192.0.2.1');
  const blocked = t.check('192.0.2.1');
  assert.equal(blocked.allowed, false);
  assert.deepEqual(t.check('192.0.2.2'), { allowed: true, delayMs: 0 }, 'other addresses unaffected');
  now += 60_001;
  assert.equal(t.check('192.0.2.1').allowed, true, 'the block ends');
  t.success('192.0.2.1');
  assert.deepEqual(t.check('192.0.2.1'), { allowed: true, delayMs: 0 });
});

test('login throttle: a /24 or /64 with many failures is refused, except addresses that logged in before', () => {
  assert.equal(prefixOf('192.0.2.7'), '192.0.2.0/24');
  assert.equal(prefixOf('::ffff:192.0.2.9'), '192.0.2.0/24');
  assert.equal(prefixOf('2001:0db8:0000:0001:aaaa::1'), '2001:db8:0:1::/64');
  assert.equal(prefixOf('2001:db8::1'), prefixOf('2001:db8:0:0:ffff::2'));
  const t = new LoginThrottle({ blockAfter: 10, prefixBlockAfter: 5, windowMs: 600_000 });
  t.success('198.51.100.1'); // known-good
  for (let i = 2; i < 7; i++) t.failure(`198.51.100.${i}`); // one failure each: no address is near its own limit
  const stranger = t.check('198.51.100.99');
  assert.equal(stranger.allowed, false, 'the /24 is blocked');
  assert.deepEqual(t.check('198.51.100.1'), { allowed: true, delayMs: 0 }, 'a known-good address keeps its lane');
  assert.deepEqual(t.check('198.51.101.1'), { allowed: true, delayMs: 0 }, 'the next /24 is not affected');
});

test('login throttle: attempts in flight count against a stranger, not against an address that logged in before', async () => {
  const t = new LoginThrottle({ blockAfter: 10, concurrency: 2, delayStepMs: 1, maxDelayMs: 5 });
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const slow = async () => {
    await gate;
    return 'user';
  };
  t.success('198.51.100.1');
  const good = Array.from({ length: 16 }, () => t.login('198.51.100.1', () => true, slow));
  const strangers = Array.from({ length: 16 }, () => t.login('203.0.113.1', () => true, slow));
  assert.deepEqual(t.check('198.51.100.1'), { allowed: true, delayMs: 0 }, 'sixteen in flight do not slow a known-good address');
  assert.equal(t.check('203.0.113.1').allowed, false, 'a stranger with ten or more in flight is told to wait');
  open();
  assert.deepEqual((await Promise.all(good)).map((r) => r.kind), Array<string>(16).fill('ok'));
  const kinds = (await Promise.all(strangers)).map((r) => r.kind);
  assert.equal(kinds.filter((k) => k === 'ok').length, 10, kinds.join(' '));
  assert.equal(kinds.filter((k) => k === 'busy').length, 6);
  // failures of a known-good address still block it
  for (let i = 0; i < 10; i++) t.failure('198.51.100.1');
  assert.equal(t.check('198.51.100.1').allowed, false);
});
