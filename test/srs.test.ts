import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createSrs } from '../src/smtp/srs.js';

const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');
const DAY = 86_400_000;
// 2026-03-01T12:00Z: a fixed clock so stamps are known.
const T0 = Date.UTC(2026, 2, 1, 12);

function clock(start = T0): { now: () => number; advanceDays(n: number): void } {
  let t = start;
  return { now: () => t, advanceDays: (n) => (t += n * DAY) };
}

test('forward produces SRS0=HHHH=TT=domain=local@ours with an HMAC-SHA1 hash and base32 day stamp', () => {
  const srs = createSrs(SECRET, 'fwd.example', { now: () => T0 });
  const out = srs.forward('alice@origin.example');
  const m = /^SRS0=([A-Za-z0-9+/]{4})=([A-Z2-7]{2})=origin\.example=alice@fwd\.example$/.exec(out);
  assert.ok(m, out);
  // Day stamp: days since the epoch modulo 1024, two base32 digits.
  const day = Math.floor(T0 / DAY) % 1024;
  const b32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  assert.equal(m[2], b32[day >> 5]! + b32[day & 31]!);
  // Hash: first 4 base64 characters of HMAC-SHA1(secret, stamp + domain + local), lower-cased input.
  const expected = createHmac('sha1', SECRET).update(`${m[2]}origin.examplealice`.toLowerCase()).digest('base64').slice(0, 4);
  assert.equal(m[1], expected);
});

test('round trip: reverse gives back the original sender, local parts with = included', () => {
  const srs = createSrs(SECRET, 'fwd.example', { now: () => T0 });
  for (const sender of ['alice@origin.example', 'bob=tag@origin.example', 'x+y@sub.origin.example']) {
    const rewritten = srs.forward(sender);
    assert.notEqual(rewritten, sender);
    assert.equal(srs.reverse(rewritten), sender);
  }
});

test('empty sender (bounce) and our own domain are not rewritten', () => {
  const srs = createSrs(SECRET, 'fwd.example', { now: () => T0 });
  assert.equal(srs.forward(''), '');
  assert.equal(srs.forward('me@FWD.example'), 'me@FWD.example');
  assert.throws(() => srs.forward('no-domain'));
});

test('tampered hash, timestamp, domain or local part is refused', () => {
  const srs = createSrs(SECRET, 'fwd.example', { now: () => T0 });
  const good = srs.forward('alice@origin.example');
  const [, hash, ts] = /^SRS0=([^=]{4})=([^=]{2})=/.exec(good)!;
  const flip = (c: string) => (c === 'A' || c === 'a' ? 'B' : 'A');
  const badHash = good.replace(`SRS0=${hash}=`, `SRS0=${flip(hash![0]!)}${hash!.slice(1)}=`);
  assert.equal(srs.reverse(badHash), null);
  // Yesterday's stamp is within the age limit, so only the hash can reject it.
  const other = createSrs(SECRET, 'fwd.example', { now: () => T0 - DAY }).forward('alice@origin.example');
  const otherTs = /^SRS0=[^=]{4}=([^=]{2})=/.exec(other)![1]!;
  assert.notEqual(otherTs, ts);
  assert.equal(srs.reverse(good.replace(`=${ts}=`, `=${otherTs}=`)), null);
  assert.equal(srs.reverse(good.replace('=origin.example=', '=evil.example=')), null);
  assert.equal(srs.reverse(good.replace('=alice@', '=mallory@')), null);
  // A different secret does not verify.
  assert.equal(createSrs(Buffer.alloc(32, 7), 'fwd.example', { now: () => T0 }).reverse(good), null);
  // Only addresses at our domain are ours to reverse.
  assert.equal(srs.reverse(good.replace('@fwd.example', '@other.example')), null);
  assert.equal(srs.reverse('alice@fwd.example'), null);
  assert.equal(srs.reverse(good), 'alice@origin.example');
});

test('expired timestamps are refused (default 21 days), fresh ones accepted', () => {
  const c = clock();
  const srs = createSrs(SECRET, 'fwd.example', { now: c.now });
  const addr = srs.forward('alice@origin.example');
  c.advanceDays(21);
  assert.equal(srs.reverse(addr), 'alice@origin.example');
  c.advanceDays(1);
  assert.equal(srs.reverse(addr), null);
  // A stamp from the future is not fresh either.
  const future = createSrs(SECRET, 'fwd.example', { now: () => T0 + 5 * DAY }).forward('alice@origin.example');
  assert.equal(createSrs(SECRET, 'fwd.example', { now: () => T0 }).reverse(future), null);
  // maxAgeDays is honoured.
  const short = createSrs(SECRET, 'fwd.example', { now: () => T0 + 3 * DAY, maxAgeDays: 2 });
  assert.equal(short.reverse(createSrs(SECRET, 'fwd.example', { now: () => T0 }).forward('a@b.example')), null);
});

test('re-forwarding an SRS0 address gives SRS1, and bounces unwind hop by hop', () => {
  const first = createSrs(SECRET, 'one.example', { now: () => T0 });
  const second = createSrs(Buffer.from('another secret, sixteen bytes+'), 'two.example', { now: () => T0 });
  const third = createSrs(Buffer.from('third secret, long enough....'), 'three.example', { now: () => T0 });

  const srs0 = first.forward('alice@origin.example');
  const srs0Local = srs0.slice(0, srs0.indexOf('@'));
  const srs1 = second.forward(srs0);
  // SRS1=HHHH=one.example==<rest of the SRS0 local part>@two.example
  assert.match(srs1, new RegExp(`^SRS1=[A-Za-z0-9+/]{4}=one\\.example==${srs0Local.slice(5).replace(/[+/]/g, '\\$&')}@two\\.example$`));
  assert.equal(second.reverse(srs1), srs0);
  assert.equal(first.reverse(second.reverse(srs1)!), 'alice@origin.example');

  // A third hop keeps the first forwarder and SRS0 part, with its own hash.
  const again = third.forward(srs1);
  assert.match(again, /^SRS1=[A-Za-z0-9+/]{4}=one\.example==.*@three\.example$/);
  assert.equal(third.reverse(again), srs0);
  // The second forwarder's key does not verify the third's hash.
  assert.equal(second.reverse(again.replace('@three.example', '@two.example')), null);
  // Tampering with the SRS1 hash is caught too.
  const h = srs1.slice(5, 9);
  assert.equal(second.reverse(srs1.replace(`SRS1=${h}`, `SRS1=${h[0]!.toUpperCase() === 'Q' ? 'R' : 'Q'}${h.slice(1)}`)), null);
});

test('reverse is case-insensitive on the hash, prefix and domain', () => {
  const srs = createSrs(SECRET, 'fwd.example', { now: () => T0 });
  const addr = srs.forward('Alice@Origin.example');
  assert.equal(srs.reverse(addr.toLowerCase()), 'alice@origin.example');
  assert.equal(srs.reverse(addr.toUpperCase()), 'ALICE@ORIGIN.EXAMPLE');
  const srs1 = srs.forward(createSrs(Buffer.alloc(32, 1), 'one.example', { now: () => T0 }).forward('a@b.example'));
  assert.ok(srs.reverse(srs1.toLowerCase()));
});

test('secret rotation: an old secret still verifies, the new one signs', () => {
  const oldSecret = Buffer.alloc(32, 1);
  const newSecret = Buffer.alloc(32, 2);
  const before = createSrs(oldSecret, 'fwd.example', { now: () => T0 }).forward('a@b.example');
  const rotated = createSrs([newSecret, oldSecret], 'fwd.example', { now: () => T0 });
  assert.equal(rotated.reverse(before), 'a@b.example');
  const after = rotated.forward('a@b.example');
  assert.notEqual(after, before);
  assert.equal(createSrs(newSecret, 'fwd.example', { now: () => T0 }).reverse(after), 'a@b.example');
  assert.throws(() => createSrs(Buffer.alloc(4), 'fwd.example'));
});
