// DANE (RFC 7672) in the outbound queue, for real: a zone signed here (dnssec-signzone), served
// by NSD, validated by unbound on loopback, and peer MXs on 127.0.0.2-6 that share one port.
// The queue daemon (`fe serve --only queue`) delivers one message per case in one run; each test
// then checks where a case's message went and what the queue says about it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { isLoopback, parseServer } from '../src/dns/wire.js';
import { handOff, queuePublicKey } from '../src/queue/handoff.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { startValidatingDns, type ValidatingDns } from './helpers/dnssec-dns.js';
import { workspace } from './helpers/fe.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';
import { createTestCa } from './helpers/test-ca.js';

const PASSWORD = 'correct horse battery staple';
let dns: ValidatingDns;
const peers: Record<string, PeerMx> = {};
let w: ReturnType<typeof workspace>;
let fe: Daemon;
let policyServer: https.Server | undefined;
type Row = { address: string; state: string; attempts: number; status: string | null; last_reply: string | null; remote_mta: string | null };
let rows: Row[] = [];

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const spkiOf = (pem: Buffer) => new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
const WRONG = 'ab'.repeat(32);

// Each case: a recipient domain, and whether its message must arrive (and where).
const CASES = {
  match: 'someone@match.dane.example', // 3 1 1 matching: delivered over TLS
  mismatch: 'someone@mismatch.dane.example', // preferred MX mismatches, the next MX (no TLSA) takes it
  onlybad: 'someone@onlybad.dane.example', // the only MX mismatches: deferred, 4.7.5
  nostarttls: 'someone@nostarttls.dane.example', // DANE host without STARTTLS: deferred, never in clear
  plain: 'someone@plain.example', // unsigned zone, TLSA that would not match: ignored
  ta: 'someone@ta.dane.example', // DANE-TA 2 0 1 for the issuing CA, the leaf names the MX: delivered
  tabad: 'someone@tabad.dane.example', // the same CA and chain, but the leaf does not name this MX: deferred
  pkix: 'someone@pkix.dane.example', // only a PKIX-EE record (unusable for SMTP): delivered, TLS still required
  pkixplain: 'someone@pkixplain.dane.example', // the same, on a host without STARTTLS: deferred, not sent in clear
  bogus: 'someone@bogus.dane.example', // TLSA whose signature does not verify (unbound: SERVFAIL): deferred, not sent
  sts: 'someone@sts.dane.example', // MTA-STS enforce, a certificate not for the MX name, DANE-EE matching: DANE decides, delivered
};

async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 90_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${fe?.log()}\n${dns?.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const got = (peer: string, to: string) => peers[peer]!.messages.filter((m) => m.to.includes(to));
const row = (to: string) => rows.find((r) => r.address === to)!;

before(async () => {
  const ca = createTestCa();
  const leaf = ca.issue(['mx.match.dane.example']); // any name: DANE-EE does not look at it
  const taLeaf = ca.issue(['mx.ta.dane.example']);
  const chain = { key: taLeaf.key, cert: Buffer.concat([taLeaf.cert, readFileSync(ca.caFile)]) }; // DANE-TA needs the TA in the chain (RFC 7671 5.2.2)
  const caDer = new X509Certificate(readFileSync(ca.caFile)).raw;
  peers.a = await startPeerMx(leaf, { host: '127.0.0.2' });
  const port = peers.a.port;
  peers.b = await startPeerMx(leaf, { host: '127.0.0.3', port });
  peers.c = await startPeerMx(undefined, { host: '127.0.0.4', port, noStartTls: true });
  peers.d = await startPeerMx(leaf, { host: '127.0.0.5', port });
  peers.e = await startPeerMx(chain, { host: '127.0.0.6', port });
  // An MTA-STS policy (enforce) for sts.dane.example, over HTTPS the CA vouches for.
  const web = ca.issue(['mta-sts.sts.dane.example']);
  policyServer = https.createServer({ key: web.key, cert: web.cert }, (req, res) => {
    if (req.url !== '/.well-known/mta-sts.txt') return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/plain' }).end('version: STSv1\nmode: enforce\nmx: mx.sts.dane.example\nmax_age: 86400\n');
  });
  await new Promise<void>((r) => policyServer!.listen(0, '127.0.0.1', () => r()));
  const httpsPort = (policyServer.address() as { port: number }).port;
  dns = await startValidatingDns([
    {
      origin: 'dane.example',
      signed: true,
      records: [
        'match IN MX 10 mx.match',
        'mx.match IN A 127.0.0.2',
        `_25._tcp.mx.match IN TLSA 3 1 1 ${sha256(spkiOf(leaf.cert))}`,
        'mismatch IN MX 10 mx-bad.mismatch',
        'mismatch IN MX 20 mx-good.mismatch',
        'mx-bad.mismatch IN A 127.0.0.2',
        `_25._tcp.mx-bad.mismatch IN TLSA 3 1 1 ${WRONG}`,
        'mx-good.mismatch IN A 127.0.0.3', // no TLSA (a validated denial): opportunistic TLS
        'onlybad IN MX 10 mx-bad.mismatch',
        'nostarttls IN MX 10 mx.nostarttls',
        'mx.nostarttls IN A 127.0.0.4',
        `_25._tcp.mx.nostarttls IN TLSA 3 1 1 ${sha256(spkiOf(leaf.cert))}`,
        'ta IN MX 10 mx.ta',
        'mx.ta IN A 127.0.0.6',
        `_25._tcp.mx.ta IN TLSA 2 0 1 ${sha256(caDer)}`,
        'tabad IN MX 10 mx.tabad',
        'mx.tabad IN A 127.0.0.6',
        `_25._tcp.mx.tabad IN TLSA 2 0 1 ${sha256(caDer)}`,
        'pkix IN MX 10 mx.pkix',
        'mx.pkix IN A 127.0.0.2',
        `_25._tcp.mx.pkix IN TLSA 1 1 1 ${WRONG}`,
        'pkixplain IN MX 10 mx.pkixplain',
        'mx.pkixplain IN A 127.0.0.4',
        `_25._tcp.mx.pkixplain IN TLSA 1 1 1 ${WRONG}`,
        'bogus IN MX 10 mx.bogus',
        'mx.bogus IN A 127.0.0.2',
        `_25._tcp.mx.bogus IN TLSA 3 1 1 ${sha256(spkiOf(leaf.cert))}`,
        'sts IN MX 10 mx.sts',
        'mx.sts IN A 127.0.0.2', // peer a: its certificate names mx.match.dane.example, so MTA-STS alone would refuse it
        `_25._tcp.mx.sts IN TLSA 3 1 1 ${sha256(spkiOf(leaf.cert))}`,
        '_mta-sts.sts IN TXT "v=STSv1; id=20261201"',
        'mta-sts.sts IN A 127.0.0.1',
      ],
      tamper: ['_25._tcp.mx.bogus'],
    },
    { origin: 'plain.example', signed: false, records: ['@ IN MX 10 mx', 'mx IN A 127.0.0.5', `_25._tcp.mx IN TLSA 3 1 1 ${WRONG}`] },
  ]);
  w = workspace(['hostname: mail.example.org', 'data_dir: ./data', 'dns:', `  servers: ["${dns.address}"]`, 'outbound:', `  port: ${port}`, `  mta_sts_port: ${httpsPort}`, ''].join('\n'));
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  for (const [name, to] of Object.entries(CASES)) {
    const msg = Buffer.from(`From: me@example.org\r\nTo: ${to}\r\nSubject: dane-${name}\r\nMessage-ID: <dane-${name}@example.org>\r\n\r\nbody of ${name}\r\n`);
    handOff(w.dataDir, queuePublicKey(w.dataDir), { from: 'me@example.org', recipients: [{ address: to }], owner: 'me@example.org', submittedAt: new Date() }, msg);
  }
  // Retries far apart: each case gets its first attempt, and the deferred ones stay deferred.
  fe = await startServe(w.config, ['--only', 'queue'], { FE_TEST_QUEUE_RETRY_MS: '600000', NODE_EXTRA_CA_CERTS: ca.caFile }, []);
  await waitFor('every case to get its first attempt', async () => {
    const q = JSON.parse(await w.ok(['queue', 'list', '--all', '--json'])) as { messages: { recipients: Row[] }[] };
    rows = q.messages.flatMap((m) => m.recipients);
    return rows.length === Object.keys(CASES).length && rows.every((r) => r.attempts > 0 || r.state !== 'queued');
  });
  await fe.stop();
});

after(async () => {
  if (fe) await fe.stop();
  for (const p of Object.values(peers)) await p.close();
  if (dns) await dns.stop();
  if (policyServer) await new Promise((r) => policyServer!.close(r));
});

test('TLSA 3 1 1 matching the MX certificate: delivered, over TLS', () => {
  assert.equal(row(CASES.match).state, 'delivered', JSON.stringify(row(CASES.match)));
  const m = got('a', CASES.match);
  assert.equal(m.length, 1);
  assert.equal(m[0]!.secure, true);
});

test('the preferred MX does not match its TLSA record: it gets nothing, the next MX (no TLSA) gets the message', () => {
  assert.equal(got('a', CASES.mismatch).length, 0, 'nothing to the mismatching host');
  assert.equal(got('b', CASES.mismatch).length, 1);
  assert.equal(row(CASES.mismatch).state, 'delivered');
  assert.equal(row(CASES.mismatch).remote_mta, 'mx-good.mismatch.dane.example');
});

test('the only MX does not match: deferred with 4.7.5 and a reason that says DANE', () => {
  const r = row(CASES.onlybad);
  assert.equal(r.state, 'queued', JSON.stringify(r));
  assert.equal(r.status, '4.7.5');
  assert.match(r.last_reply ?? '', /^4\.7\.5 DANE: mx-bad\.mismatch\.dane\.example: .*matches none of the 1 usable TLSA record/);
  assert.equal(got('a', CASES.onlybad).length, 0);
});

test('a DANE host without STARTTLS: deferred with 4.7.5, nothing sent in clear', () => {
  const r = row(CASES.nostarttls);
  assert.equal(r.state, 'queued', JSON.stringify(r));
  assert.equal(r.status, '4.7.5');
  assert.match(r.last_reply ?? '', /^4\.7\.5 DANE: mx\.nostarttls\.dane\.example/);
  assert.equal(peers.c!.messages.length, 0);
});

test('a TLSA record in an unsigned zone is ignored: opportunistic delivery', () => {
  assert.equal(row(CASES.plain).state, 'delivered', JSON.stringify(row(CASES.plain)));
  assert.equal(got('d', CASES.plain).length, 1);
});

test('DANE-TA 2 0 1 for the issuing CA: delivered when the leaf names the MX, deferred (4.7.5) when it does not', () => {
  assert.equal(row(CASES.ta).state, 'delivered', JSON.stringify(row(CASES.ta)));
  assert.equal(got('e', CASES.ta).length, 1);
  const bad = row(CASES.tabad);
  assert.equal(bad.state, 'queued', JSON.stringify(bad));
  assert.equal(bad.status, '4.7.5');
  assert.equal(got('e', CASES.tabad).length, 0);
});

test('only a PKIX-EE record (unusable for SMTP, RFC 7672 3.1.3): not a mismatch, delivered over TLS; without STARTTLS, deferred and not sent in clear', () => {
  assert.equal(row(CASES.pkix).state, 'delivered', JSON.stringify(row(CASES.pkix)));
  assert.equal(got('a', CASES.pkix)[0]?.secure, true);
  const plain = row(CASES.pkixplain);
  assert.equal(plain.state, 'queued', JSON.stringify(plain));
  assert.equal(plain.status, '4.7.5');
  assert.equal(got('c', CASES.pkixplain).length, 0);
});

test('a TLSA answer that fails validation (bogus: the validating resolver says SERVFAIL): deferred with 4.7.5, nothing sent', () => {
  const r = row(CASES.bogus);
  assert.equal(r.state, 'queued', JSON.stringify(r));
  assert.equal(r.status, '4.7.5');
  assert.match(r.last_reply ?? '', /^4\.7\.5 DANE: the TLSA lookup for mx\.bogus\.dane\.example failed/);
  assert.equal(got('a', CASES.bogus).length, 0);
});

test('the AD bit counts only from a resolver on loopback', () => {
  assert.deepEqual(['127.0.0.1:5353', '127.9.9.9', '[::1]:53', '::1', '10.0.0.53', '[2001:db8::53]:53', '192.0.2.1:53'].map((s) => isLoopback(parseServer(s).host)), [true, true, true, true, false, false, false]);
  assert.deepEqual(parseServer('[::1]:5353'), { host: '::1', port: 5353 });
  assert.deepEqual(parseServer('127.0.0.1'), { host: '127.0.0.1', port: 53 });
});

test('DANE comes before MTA-STS (RFC 8461 2): under an enforce policy, a certificate that fails PKIX for the MX name but matches TLSA 3 1 1 gets the mail', () => {
  assert.equal(row(CASES.sts).state, 'delivered', JSON.stringify(row(CASES.sts)));
  assert.equal(got('a', CASES.sts)[0]?.secure, true);
});
