import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { DnsCache } from '../src/dns/cache.js';
import { createResolver, DnsLookupError, isDnsNotFound, isDnsTemporary, reverseName, type FeResolver } from '../src/dns/resolver.js';

const LONG_TXT = `v=DKIM1; k=rsa; p=${'A'.repeat(1400)}`; // forces TC + TCP retry
const MID_TXT = 'm'.repeat(700); // over 512 bytes, under a 4096 EDNS buffer

let dns: DnsServer;
let r: FeResolver;

before(async () => {
  dns = await startDnsServer(
    {
      'Example.ORG': {
        A: ['192.0.2.10', '192.0.2.11'],
        AAAA: ['2001:db8::25', '::ffff:192.0.2.10'],
        MX: [
          { priority: 20, exchange: 'mx2.example.org' },
          { priority: 10, exchange: 'mx1.example.org' },
        ],
        TXT: ['v=spf1 ip4:192.0.2.0/24 -all', ['two ', 'strings']],
      },
      'www.example.org': { CNAME: 'example.org' },
      'big.example.org': { TXT: [LONG_TXT] },
      'mid.example.org': { TXT: [MID_TXT] },
      '10.2.0.192.in-addr.arpa': { PTR: ['mail.example.org'] },
      '5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa': { PTR: ['v6.example.org'] },
      'onlya.example.org': { A: ['192.0.2.99'] },
    },
    { servfail: ['broken.example.org'], drop: ['silent.example.org'] },
  );
  r = createResolver({ servers: [dns.address], timeoutMs: 400 });
});

after(() => dns.close());

test('A and AAAA records, names case-insensitive, trailing dot accepted', async () => {
  assert.deepEqual((await r.a('example.org')).sort(), ['192.0.2.10', '192.0.2.11']);
  assert.deepEqual((await r.a('EXAMPLE.org.')).sort(), ['192.0.2.10', '192.0.2.11']);
  assert.deepEqual((await r.aaaa('example.org')).sort(), ['2001:db8::25', '::ffff:192.0.2.10'].sort());
});

test('MX records come back sorted by priority', async () => {
  assert.deepEqual(await r.mx('example.org'), [
    { exchange: 'mx1.example.org', priority: 10 },
    { exchange: 'mx2.example.org', priority: 20 },
  ]);
});

test('TXT records: one string per record, character-strings joined', async () => {
  const txt = await r.txt('example.org');
  assert.deepEqual(txt.sort(), ['two strings', 'v=spf1 ip4:192.0.2.0/24 -all']);
});

test('TXT records longer than 512 bytes arrive whole (truncated over UDP, retried over TCP)', async () => {
  const before = dns.queries.length;
  assert.deepEqual(await r.txt('big.example.org'), [LONG_TXT]);
  const asked = dns.queries.slice(before).filter((q) => q.name === 'big.example.org');
  assert.deepEqual(
    asked.map((q) => q.transport),
    ['udp', 'tcp'],
  );
  assert.deepEqual(await r.txt('mid.example.org'), [MID_TXT]);
});

test('the test server answers an EDNS query over UDP up to the advertised size, and parses compressed names', async () => {
  // Hand-built query: question mid.example.org TXT, plus an OPT record (4096) whose owner name is
  // a compression pointer to the question name (legal to parse, even if unusual for OPT).
  const qname = Buffer.concat([
    ...'mid.example.org'.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ]);
  const head = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
  const q = Buffer.from([0, 16, 0, 1]);
  const opt = Buffer.from([0xc0, 12, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
  const reply = await udpQuery(dns.address, Buffer.concat([head, qname, q, opt]));
  assert.equal(reply.readUInt16BE(0), 0x1234);
  const flags = reply.readUInt16BE(2);
  assert.equal(flags & 0x0200, 0, 'not truncated');
  assert.equal(flags & 0xf, 0, 'NOERROR');
  assert.equal(reply.readUInt16BE(6), 1, 'one answer');
  assert.ok(reply.length > 700);
  assert.ok(reply.includes(Buffer.from(MID_TXT.slice(0, 255))));
});

test('CNAME is followed to the target records', async () => {
  assert.deepEqual((await r.a('www.example.org')).sort(), ['192.0.2.10', '192.0.2.11']);
});

test('PTR for IPv4 and IPv6 addresses', async () => {
  assert.deepEqual(await r.ptr('192.0.2.10'), ['mail.example.org']);
  assert.deepEqual(await r.ptr('2001:db8::25'), ['v6.example.org']);
  assert.equal(reverseName('2001:db8::25'), '5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
  assert.equal(reverseName('::ffff:192.0.2.1'), '1.0.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa');
  assert.throws(() => reverseName('not-an-ip'), DnsLookupError);
});

test('NXDOMAIN and NODATA are "not found", distinguishable from each other', async () => {
  const nx = await r.a('nothing.example.org').catch((e: unknown) => e);
  assert.ok(nx instanceof DnsLookupError);
  assert.equal(nx.kind, 'nxdomain');
  assert.equal(nx.code, 'ENOTFOUND');
  assert.ok(isDnsNotFound(nx) && !isDnsTemporary(nx));

  const nodata = await r.mx('onlya.example.org').catch((e: unknown) => e);
  assert.ok(nodata instanceof DnsLookupError);
  assert.equal(nodata.kind, 'nodata');
  assert.equal(nodata.code, 'ENODATA');
  assert.ok(isDnsNotFound(nodata));
});

test('SERVFAIL and timeouts are temporary, not "not found"', async () => {
  const sf = await r.txt('broken.example.org').catch((e: unknown) => e);
  assert.ok(sf instanceof DnsLookupError);
  assert.equal(sf.code, 'ESERVFAIL');
  assert.equal(sf.kind, 'temporary');
  assert.ok(isDnsTemporary(sf) && !isDnsNotFound(sf));

  const t0 = Date.now();
  const to = await r.a('silent.example.org').catch((e: unknown) => e);
  assert.ok(to instanceof DnsLookupError);
  assert.equal(to.code, 'ETIMEOUT');
  assert.ok(isDnsTemporary(to));
  assert.ok(Date.now() - t0 < 2000, 'the deadline holds');
});

test('set() changes answers at once; records can be removed', async () => {
  dns.set('new.example.org', { TXT: ['first'] });
  assert.deepEqual(await r.txt('new.example.org'), ['first']);
  dns.set('new.example.org', { TXT: ['second'] });
  assert.deepEqual(await r.txt('new.example.org'), ['second']);
  dns.set('new.example.org', undefined);
  await assert.rejects(r.txt('new.example.org'), (e: unknown) => e instanceof DnsLookupError && e.kind === 'nxdomain');
});

test('mailauthResolver: dns.resolve shapes and ENOTFOUND/ENODATA codes, as mailauth expects', async () => {
  const m = r.mailauthResolver;
  const txt = (await m('example.org', 'TXT')) as string[][];
  assert.ok(txt.some((rec) => Array.isArray(rec) && rec.join('') === 'two strings' && rec.length === 2));
  assert.deepEqual(((await m('example.org', 'A')) as string[]).sort(), ['192.0.2.10', '192.0.2.11']);
  assert.deepEqual((await m('example.org', 'AAAA')) as string[], (await r.aaaa('example.org')));
  assert.deepEqual(((await m('example.org', 'MX')) as { exchange: string }[]).map((x) => x.exchange), ['mx1.example.org', 'mx2.example.org']);
  assert.deepEqual(await m('10.2.0.192.in-addr.arpa', 'PTR'), ['mail.example.org']);
  await assert.rejects(m('nothing.example.org', 'TXT'), { code: 'ENOTFOUND' });
  await assert.rejects(m('onlya.example.org', 'TXT'), { code: 'ENODATA' });
  await assert.rejects(m('broken.example.org', 'TXT'), { code: 'ESERVFAIL' });
  // A name that cannot be queried at all has no records rather than a temporary problem.
  await assert.rejects(m('bad name..example.org', 'TXT'), { code: 'ENOTFOUND' });
});

function udpQuery(address: string, msg: Buffer): Promise<Buffer> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('no reply'));
    }, 2000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(msg, Number(port), host);
  });
}

test('identical lookups in flight together share one query; a later lookup asks again', async () => {
  dns.set('shared.example.org', { TXT: ['v=spf1 -all'] });
  const asked = () => dns.queries.filter((q) => q.name === 'shared.example.org' && q.type === 'TXT').length;
  const before = asked();
  const answers = await Promise.all([r.txt('shared.example.org'), r.txt('SHARED.example.org'), r.mailauthResolver('shared.example.org', 'TXT'), r.txt('shared.example.org')]);
  assert.deepEqual(answers[0], ['v=spf1 -all']);
  assert.deepEqual(answers[2], [['v=spf1 -all']]);
  assert.equal(asked() - before, 1, 'four lookups at once, one query');
  dns.set('shared.example.org', { TXT: ['v=spf1 +all'] });
  assert.deepEqual(await r.txt('shared.example.org'), ['v=spf1 +all'], 'nothing is cached after the answer');
  assert.equal(asked() - before, 2);
});

test('answers are kept for their TTL and asked again after it; TXT for SPF and for mailauth share one answer', async () => {
  const own = await startDnsServer({ 'ttl.example': { TXT: ['v=spf1 -all'], A: ['192.0.2.1'], ttl: 300 } });
  let clock = 1_000_000;
  try {
    const res = createResolver({ servers: [own.address], cache: new DnsCache({ now: () => clock }) });
    const asked = (type: string) => own.queries.filter((q) => q.name === 'ttl.example' && q.type === type).length;
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await res.txt('ttl.example'), ['v=spf1 -all']);
      assert.deepEqual(await res.mailauthResolver('TTL.example.', 'TXT'), [['v=spf1 -all']]);
      assert.deepEqual(await res.a('ttl.example'), ['192.0.2.1']);
    }
    assert.equal(asked('TXT'), 1);
    assert.equal(asked('A'), 1);
    clock += 299_000;
    await res.txt('ttl.example');
    assert.equal(asked('TXT'), 1, 'still within the 300 s');
    own.set('ttl.example', { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'], ttl: 300 });
    clock += 2_000;
    assert.deepEqual(await res.txt('ttl.example'), ['v=spf1 ip4:192.0.2.0/24 -all'], 'after the TTL the new record is seen');
    assert.equal(asked('TXT'), 2);
  } finally {
    await own.close();
  }
});

test('TTL 0 is never kept; a TTL over an hour is kept for an hour; a caller changing its list changes nothing kept', async () => {
  const own = await startDnsServer({ 'zero.example': { TXT: ['a'] }, 'day.example': { MX: [{ priority: 10, exchange: 'mx.day.example' }, { priority: 5, exchange: 'mx0.day.example' }], ttl: 86400 } });
  let clock = 1_000_000;
  try {
    const res = createResolver({ servers: [own.address], cache: new DnsCache({ now: () => clock }) });
    const asked = (name: string) => own.queries.filter((q) => q.name === name).length;
    await res.txt('zero.example');
    own.set('zero.example', { TXT: ['b'] });
    assert.deepEqual(await res.txt('zero.example'), ['b']);
    assert.equal(asked('zero.example'), 2);
    const first = await res.mx('day.example');
    assert.deepEqual(first.map((m) => m.exchange), ['mx0.day.example', 'mx.day.example']);
    first.length = 0;
    assert.equal((await res.mx('day.example')).length, 2);
    clock += 3_599_000;
    await res.mx('day.example');
    assert.equal(asked('day.example'), 1);
    clock += 2_000;
    await res.mx('day.example');
    assert.equal(asked('day.example'), 2, 'kept no longer than an hour');
  } finally {
    await own.close();
  }
});

test('no such name / record is kept for the SOA negative TTL, not at all without an SOA; SERVFAIL and timeouts never', async () => {
  const zone = { 'onlya.example': { A: ['192.0.2.7'] }, 'broken.example': { TXT: ['x'] } };
  const withSoa = await startDnsServer(zone, { negativeTtl: 60, servfail: ['broken.example'] });
  const noSoa = await startDnsServer(zone);
  let clock = 1_000_000;
  try {
    const res = createResolver({ servers: [withSoa.address], cache: new DnsCache({ now: () => clock }) });
    const asked = (s: DnsServer, name: string) => s.queries.filter((q) => q.name === name).length;
    for (let i = 0; i < 2; i++) {
      await assert.rejects(res.txt('missing.example'), (e: DnsLookupError) => e.code === 'ENOTFOUND');
      await assert.rejects(res.mailauthResolver('onlya.example', 'TXT'), (e: DnsLookupError) => e.code === 'ENODATA');
      await assert.rejects(res.txt('broken.example'), (e: DnsLookupError) => e.code === 'ESERVFAIL' && e.temporary);
    }
    assert.equal(asked(withSoa, 'missing.example'), 1);
    assert.equal(asked(withSoa, 'onlya.example'), 1);
    assert.equal(asked(withSoa, 'broken.example'), 2, 'a failure is asked again');
    clock += 61_000;
    await assert.rejects(res.txt('missing.example'), (e: DnsLookupError) => e.code === 'ENOTFOUND');
    assert.equal(asked(withSoa, 'missing.example'), 2, 'asked again after the negative TTL');
    const bare = createResolver({ servers: [noSoa.address] });
    for (let i = 0; i < 2; i++) await assert.rejects(bare.txt('missing.example'), (e: DnsLookupError) => e.code === 'ENOTFOUND');
    assert.equal(asked(noSoa, 'missing.example'), 2, 'without an SOA there is no negative TTL');
  } finally {
    await withSoa.close();
    await noSoa.close();
  }
});

test('DnsCache: the least recently used answer goes first when full; a TTL of 0 keeps nothing', () => {
  const c = new DnsCache({ maxEntries: 2 });
  c.set('a', { records: [1], missing: null }, 60);
  c.set('b', { records: [2], missing: null }, 60);
  assert.ok(c.get('a'));
  c.set('c', { records: [3], missing: null }, 60);
  assert.equal(c.get('b'), undefined, 'b was the least recently used');
  assert.ok(c.get('a') && c.get('c'));
  c.set('z', { records: [], missing: 'ENOTFOUND' }, 0);
  assert.equal(c.get('z'), undefined);
  assert.equal(c.size, 2);
});

test('a name outside ASCII is asked as its A-label, as node asks it', async () => {
  const own = await startDnsServer({ 'xn--bcher-kva.example': { TXT: ['v=spf1 -all'] } });
  try {
    const res = createResolver({ servers: [own.address] });
    assert.deepEqual(await res.txt('bücher.example'), ['v=spf1 -all']);
    assert.deepEqual(await res.mailauthResolver('bücher.example', 'TXT'), [['v=spf1 -all']]);
  } finally {
    await own.close();
  }
});
