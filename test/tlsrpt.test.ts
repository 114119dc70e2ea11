// TLS-RPT (RFC 8460) sent by the real queue daemon: deliveries to peers on loopback under an
// MTA-STS enforce policy (one good certificate, one for another name) and without a policy, then
// the next UTC day's reports: by mail to a peer MX (parsed with Python's email module, the gzip'd
// JSON checked field by field, the DKIM signature verified with python3-dkim) and by HTTPS POST.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createResolver } from '../src/dns/resolver.js';
import { handOff, queuePublicKey, queueSealingKeys } from '../src/queue/handoff.js';
import { QueueStore } from '../src/queue/store.js';
import { parseTlsRptRecord, reportUris } from '../src/tlsrpt/record.js';
import { tlsErrorType } from '../src/tlsrpt/results.js';
import { Database } from '../src/store/sqlite.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { startPeerMx, type PeerMx } from './helpers/peer-mx.js';
import { createTestCa, type TestCa } from './helpers/test-ca.js';
import { pythonDkimVerify } from './helpers/python-dkim.js';

const DAY = 86400_000;
const PASSWORD = 'correct horse battery staple';
let ca: TestCa;
let dns: DnsServer;
let peer: PeerMx;
let policyServer: https.Server;
let ruaServer: https.Server;
let ruaPort: number;
const posts: { url: string; contentType: string; body: Buffer }[] = [];
let w: ReturnType<typeof workspace>;
let dkimRecords: Record<string, string>;

// Run 1's TLS-RPT clock stands at noon UTC of today, so its counts fall on one day whatever the
// wall clock says; run 2's is a day later, when that day's reports are due.
const today = Math.floor(Date.now() / DAY);
const noonOffset = today * DAY + DAY / 2 - Date.now();
const reportDay = new Date(today * DAY).toISOString().slice(0, 10);

const POLICIES: Record<string, string> = {
  'mta-sts.good.example': 'version: STSv1\nmode: enforce\nmx: mx.good.example\nmax_age: 86400\n',
  'mta-sts.bad.example': 'version: STSv1\nmode: enforce\nmx: mx.bad.example\nmax_age: 86400\n',
};

async function waitFor<T>(what: string, fn: () => T | Promise<T>, log: () => string, timeoutMs = 90_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function python(script: string, stdin: Buffer | string, args: string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    const py = spawn('/usr/bin/python3', ['-c', script, ...args]);
    let out = '';
    let err = '';
    py.stdout.on('data', (d: Buffer) => (out += d.toString()));
    py.stderr.on('data', (d: Buffer) => (err += d.toString()));
    py.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited ${code}: ${err}`))));
    py.stdin.end(stdin);
  });
}

function queueMessage(to: string, subject: string): void {
  handOff(w.dataDir, queuePublicKey(w.dataDir), { from: 'me@example.org', recipients: [{ address: to }], owner: 'me@example.org', submittedAt: new Date() }, Buffer.from(`From: me@example.org\r\nTo: ${to}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\nhello\r\n`));
}

type Queue = { messages: { recipients: { address: string; state: string; attempts: number; class: string | null; last_reply: string | null }[] }[] };
const queueList = async () => (JSON.parse(await w.ok(['queue', 'list', '--all', '--json'])) as Queue).messages.flatMap((m) => m.recipients);

before(async () => {
  ca = createTestCa();
  // The peer's certificate names mx.good.example and mx.reports.example, not mx.bad.example.
  peer = await startPeerMx(ca.issue(['mx.good.example', 'mx.reports.example']));
  const web = ca.issue([...Object.keys(POLICIES), 'mta-sts.nofetch.example']);
  policyServer = https.createServer({ key: web.key, cert: web.cert }, (req, res) => {
    const policy = POLICIES[(req.headers.host ?? '').split(':')[0]!];
    if (!policy || req.url !== '/.well-known/mta-sts.txt') return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/plain' }).end(policy);
  });
  await new Promise<void>((r) => policyServer.listen(0, '127.0.0.1', () => r()));
  const rua = ca.issue(['tlsrpt.reports.example']);
  ruaServer = https.createServer({ key: rua.key, cert: rua.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({ url: req.url ?? '', contentType: req.headers['content-type'] ?? '', body: Buffer.concat(chunks) });
      // plain.example's collector is down the first time: fe must try again
      res.writeHead(req.url === '/v1/plain' && posts.filter((p) => p.url === '/v1/plain').length === 1 ? 503 : 201).end();
    });
  });
  await new Promise<void>((r) => ruaServer.listen(0, '127.0.0.1', () => r()));
  ruaPort = (ruaServer.address() as { port: number }).port;
  const https443 = (policyServer.address() as { port: number }).port;
  dns = await startDnsServer({
    'good.example': { MX: [{ priority: 10, exchange: 'mx.good.example' }] },
    'bad.example': { MX: [{ priority: 10, exchange: 'mx.bad.example' }] },
    'plain.example': { MX: [{ priority: 10, exchange: 'mx.good.example' }] },
    // announces a policy that its web server does not have (HTTP 404)
    'nofetch.example': { MX: [{ priority: 10, exchange: 'mx.good.example' }] },
    '_mta-sts.nofetch.example': { TXT: ['v=STSv1; id=20261201'] },
    'mta-sts.nofetch.example': { A: ['127.0.0.1'] },
    'reports.example': { MX: [{ priority: 10, exchange: 'mx.reports.example' }] },
    'mx.good.example': { A: ['127.0.0.1'] },
    'mx.bad.example': { A: ['127.0.0.1'] },
    'mx.reports.example': { A: ['127.0.0.1'] },
    'tlsrpt.reports.example': { A: ['127.0.0.1'] },
    '_mta-sts.good.example': { TXT: ['v=STSv1; id=20261201'] },
    '_mta-sts.bad.example': { TXT: ['v=STSv1; id=20261201'] },
    'mta-sts.good.example': { A: ['127.0.0.1'] },
    'mta-sts.bad.example': { A: ['127.0.0.1'] },
    '_smtp._tls.good.example': { TXT: ['v=TLSRPTv1; rua=mailto:tls-reports@reports.example'] },
    '_smtp._tls.bad.example': { TXT: [`v=TLSRPTv1;rua=mailto:tls-reports@reports.example, https://tlsrpt.reports.example:${ruaPort}/v1/bad`] },
    '_smtp._tls.plain.example': { TXT: ['v=spf1 -all', `v=TLSRPTv1; rua=https://tlsrpt.reports.example:${ruaPort}/v1/plain`] },
    // if the reports' own deliveries were counted, reports.example would get a report about them
    '_smtp._tls.reports.example': { TXT: ['v=TLSRPTv1; rua=mailto:tls-reports@reports.example'] },
  });
  w = workspace(
    [
      'hostname: mail.example.org',
      'data_dir: ./data',
      'dns:',
      `  servers: ["${dns.address}"]`,
      'outbound:',
      `  port: ${peer.port}`,
      `  mta_sts_port: ${https443}`,
      'queue:',
      '  tls_report_organization: Example Org Mail',
      '',
    ].join('\n'),
  );
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'me@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  const ours = JSON.parse(await w.ok(['domain', 'dns', 'example.org', '--json'])) as { records: { name: string; type: string; text?: string }[] };
  dkimRecords = Object.fromEntries(ours.records.filter((r) => r.type === 'TXT' && r.name.includes('._domainkey.')).map((r) => [r.name.replace(/\.$/, ''), r.text!]));
});

after(async () => {
  await peer?.close();
  await dns?.close();
  await new Promise((r) => policyServer?.close(r));
  await new Promise((r) => ruaServer?.close(r));
});

const subjects = () => peer.messages.map((m) => /^Subject: (.*)\r$/m.exec(m.raw.toString())?.[1] ?? '');

test('MTA-STS enforce on the queue path: a verified MX gets the mail over TLS; an MX whose certificate names another host is never sent to in clear, the mail waits', { timeout: 120_000 }, async () => {
  queueMessage('user@good.example', 'to-good');
  queueMessage('user@bad.example', 'to-bad');
  queueMessage('user@plain.example', 'to-plain');
  queueMessage('user@nofetch.example', 'to-nofetch');
  const fe = await startServe(w.config, ['--only', 'queue'], { NODE_EXTRA_CA_CERTS: ca.caFile, FE_TEST_QUEUE_RETRY_MS: '400', FE_TEST_TLSRPT_CLOCK_OFFSET_MS: String(noonOffset) }, []);
  try {
    await waitFor('good and plain delivered, bad tried twice', async () => {
      const q = await queueList();
      const bad = q.find((r) => r.address === 'user@bad.example');
      return subjects().includes('to-good') && subjects().includes('to-plain') && subjects().includes('to-nofetch') && bad && bad.attempts >= 2;
    }, () => fe.log());
  } finally {
    await fe.stop();
    if (process.env.DEBUG_TLSRPT) console.log(fe.log().split('\n').filter((l) => !/deferred/.test(l)).join('\n'));
  }
  assert.ok(peer.messages.find((m) => m.to[0] === 'user@good.example')!.secure, 'over TLS');
  assert.ok(!subjects().includes('to-bad'), 'never sent to the MX with the wrong certificate');
  const bad = (await queueList()).find((r) => r.address === 'user@bad.example')!;
  assert.equal(bad.state, 'queued', 'deferred, not bounced');
  assert.equal(bad.class, 'tls');
  assert.match(bad.last_reply!, /MTA-STS: .*(altnames|does not match)/i);
  // What run 1 counted, straight from the queue's database.
  const store = QueueStore.open(w.dataDir);
  try {
    const good = store.tlsResults.results(today, 'good.example');
    assert.deepEqual(good.map((r) => [r.policyType, r.resultType, r.count]), [['sts', 'success', 1]]);
    const badRows = store.tlsResults.results(today, 'bad.example');
    assert.equal(badRows.length, 1);
    assert.equal(badRows[0]!.resultType, 'certificate-host-mismatch');
    assert.ok(badRows[0]!.count >= 2);
    assert.deepEqual(store.tlsResults.results(today, 'plain.example').map((r) => [r.policyType, r.resultType, r.count]), [['no-policy-found', 'success', 1]]);
    const nofetch = store.tlsResults.results(today, 'nofetch.example');
    assert.deepEqual(nofetch.map((r) => [r.policyType, r.resultType, r.count]), [['sts', 'sts-policy-fetch-error', 1]], 'the fetch failure, not the opportunistic session after it');
    assert.match(nofetch[0]!.additional!, /HTTP 404/);
  } finally {
    store.close();
  }
});

test('the next UTC day: reports by mail (multipart/report, gzip JSON, DKIM-signed) and by HTTPS POST; the reports\' own deliveries are not counted', { timeout: 120_000 }, async () => {
  const before = peer.messages.length;
  const fe = await startServe(w.config, ['--only', 'queue'], { NODE_EXTRA_CA_CERTS: ca.caFile, FE_TEST_QUEUE_RETRY_MS: '400', FE_TEST_TLSRPT_CLOCK_OFFSET_MS: String(noonOffset + DAY) }, []);
  try {
    await waitFor('two report mails and three POSTs (one refused, then retried)', () => peer.messages.slice(before).filter((m) => m.to[0] === 'tls-reports@reports.example').length >= 2 && posts.length >= 3, () => fe.log());
    // one more round: a report about the reports would be counted by now
    await waitFor('a later queue round', () => (fe.log().match(/deferred/g) ?? []).length >= 3, () => fe.log());
  } finally {
    await fe.stop();
  }
  const mails = peer.messages.slice(before).filter((m) => m.to[0] === 'tls-reports@reports.example');
  assert.equal(mails.length, 2, 'one report mail per policy domain that asked for mail');
  for (const m of mails) {
    assert.equal(m.from, 'postmaster@example.org');
    assert.ok(m.secure, 'the report itself travelled over TLS (opportunistic)');
  }
  const parse = `
import email, email.policy, json, sys, gzip
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts = list(m.iter_parts())
att = parts[1]
print(json.dumps({
  'type': m.get_content_type(), 'report_type': m.get_param('report-type'), 'from': str(m['From']), 'to': str(m['To']),
  'subject': str(m['Subject']), 'domain': str(m['TLS-Report-Domain']), 'submitter': str(m['TLS-Report-Submitter']),
  'auto': str(m['Auto-Submitted']), 'parts': [p.get_content_type() for p in parts], 'text': parts[0].get_content(),
  'disposition': att.get_content_disposition(), 'filename': att.get_filename(),
  'report': json.loads(gzip.decompress(att.get_payload(decode=True)).decode())}))
`;
  const reports = new Map<string, Record<string, unknown>>();
  for (const m of mails) {
    const p = JSON.parse(await python(parse, m.raw)) as Record<string, string> & { parts: string[]; report: Record<string, unknown> };
    assert.equal(p.type, 'multipart/report');
    assert.equal(p.report_type, 'tlsrpt');
    assert.deepEqual(p.parts, ['text/plain', 'application/tlsrpt+gzip']);
    assert.equal(p.from, 'postmaster@example.org');
    assert.equal(p.to, 'tls-reports@reports.example');
    assert.equal(p.submitter, 'mail.example.org');
    assert.equal(p.auto, 'auto-generated');
    assert.equal(p.disposition, 'attachment');
    const start = today * 86400;
    const end = start + 86399;
    assert.match(p.filename!, new RegExp(`^mail\\.example\\.org!${p.domain!.replace('.', '\\.')}!${start}!${end}![0-9a-f]+\\.json\\.gz$`), 'RFC 8460 5.1 file name');
    assert.match(p.subject!, new RegExp(`^Report Domain: ${p.domain!.replace('.', '\\.')} Submitter: mail\\.example\\.org Report-ID: <[^>]+>$`));
    assert.equal(p.subject!.match(/<([^>]+)>/)![1], p.report['report-id']);
    assert.match(p.text!, /TLS report/);
    reports.set(p.domain!, p.report);
  }
  assert.deepEqual([...reports.keys()].sort(), ['bad.example', 'good.example']);
  const good = reports.get('good.example')!;
  assert.equal(good['organization-name'], 'Example Org Mail');
  assert.deepEqual(good['date-range'], { 'start-datetime': `${reportDay}T00:00:00Z`, 'end-datetime': `${reportDay}T23:59:59Z` });
  assert.equal(good['contact-info'], 'postmaster@example.org');
  assert.deepEqual(good.policies, [
    {
      policy: { 'policy-type': 'sts', 'policy-string': ['version: STSv1', 'mode: enforce', 'mx: mx.good.example', 'max_age: 86400'], 'policy-domain': 'good.example', 'mx-host': ['mx.good.example'] },
      summary: { 'total-successful-session-count': 1, 'total-failure-session-count': 0 },
    },
  ]);
  type Policy = { policy: Record<string, unknown>; summary: Record<string, number>; 'failure-details': Record<string, unknown>[] };
  const badPolicies = reports.get('bad.example')!.policies as Policy[];
  assert.equal(badPolicies.length, 1);
  const bp = badPolicies[0]!;
  assert.deepEqual(bp.policy, { 'policy-type': 'sts', 'policy-string': ['version: STSv1', 'mode: enforce', 'mx: mx.bad.example', 'max_age: 86400'], 'policy-domain': 'bad.example', 'mx-host': ['mx.bad.example'] });
  assert.equal(bp.summary['total-successful-session-count'], 0);
  assert.ok(bp.summary['total-failure-session-count']! >= 2);
  assert.equal(bp['failure-details'].length, 1);
  const fd = bp['failure-details'][0]!;
  assert.equal(fd['result-type'], 'certificate-host-mismatch');
  assert.equal(fd['sending-mta-ip'], '127.0.0.1');
  assert.equal(fd['receiving-mx-hostname'], 'mx.bad.example');
  assert.equal(fd['receiving-ip'], '127.0.0.1');
  assert.equal(fd['failed-session-count'], bp.summary['total-failure-session-count']);
  assert.match(String(fd['additional-information']), /altnames|does not match/i);
  // DKIM: the report is signed by example.org, the two TLS-Report headers included (RFC 8460 5.3).
  const raw = mails[0]!.raw.toString();
  assert.match(raw, /^DKIM-Signature:[^]*?d=example\.org/m);
  const signed = /;h=([^;]*)/.exec(/^DKIM-Signature:(?:.*\r\n[ \t].*)*/m.exec(raw)![0].replace(/\s+/g, ''))![1]!.toLowerCase().split(':');
  assert.ok(signed.includes('tls-report-domain') && signed.includes('tls-report-submitter'), `h= names both TLS-Report headers: ${signed.join(':')}`);
  const verdicts = await pythonDkimVerify(mails[0]!.raw, dkimRecords);
  assert.ok(verdicts.length >= 1 && verdicts.every(Boolean), `python3-dkim verifies every signature: ${JSON.stringify(verdicts)}`);

  // HTTPS: bad.example's second rua and plain.example's only one, which answered 503 at first.
  assert.deepEqual(posts.map((p) => p.url).sort(), ['/v1/bad', '/v1/plain', '/v1/plain']);
  const plainPosts = posts.filter((p) => p.url === '/v1/plain');
  assert.ok(plainPosts[0]!.body.equals(plainPosts[1]!.body), 'the retry sends the same report');
  assert.match(fe.log(), /TLS report POST failed; trying again later domain=plain\.example/);
  assert.match(fe.log(), /TLS report sent domain=plain\.example to=https:\/\/tlsrpt\.reports\.example:\d+\/v1\/plain try=2/);
  for (const p of posts) assert.equal(p.contentType, 'application/tlsrpt+gzip');
  const posted = (url: string) => JSON.parse(gunzipSync(posts.find((p) => p.url === url)!.body).toString('utf8')) as { 'report-id': string; policies: Policy[] };
  assert.deepEqual(posted('/v1/bad').policies, badPolicies, 'the POSTed report is the mailed one');
  assert.equal(posted('/v1/bad')['report-id'], reports.get('bad.example')!['report-id']);
  assert.deepEqual(posted('/v1/plain').policies, [
    { policy: { 'policy-type': 'no-policy-found', 'policy-domain': 'plain.example', 'mx-host': ['mx.good.example'] }, summary: { 'total-successful-session-count': 1, 'total-failure-session-count': 0 } },
  ]);

  const store = QueueStore.open(w.dataDir);
  try {
    assert.deepEqual(store.tlsResults.unreported(today + 1), [], 'the day is reported');
    assert.deepEqual(store.tlsResults.results(today + 1, 'reports.example'), [], 'the reports\' own sessions were not counted');
    assert.ok(store.tlsResults.results(today + 1, 'bad.example').length > 0, 'while other mail on the same day still is');
  } finally {
    store.close();
  }
  const q = await queueList();
  const rpt = q.filter((r) => r.address === 'tls-reports@reports.example');
  assert.equal(rpt.length, 2);
  assert.ok(rpt.every((r) => r.state === 'delivered'));
  const status = await w.fe(['status', '--checks', 'queue']);
  assert.match(status.stdout, new RegExp(`^OK +queue +tls-rpt: last TLS-RPT sent 0 h ago: (bad|good|plain)\\.example, ${reportDay}, to `, 'm'));
});

test('queue.tls_reports: off is honoured and a bad value is a clear error', async () => {
  const w2 = workspace('hostname: mail.example.org\ndata_dir: ./data\nqueue:\n  tls_reports: maybe\n');
  const r = await w2.fe(['config', 'check']);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /queue\.tls_reports.*must be on or off/);
  w2.write('hostname: mail.example.org\ndata_dir: ./data\nqueue:\n  tls_reports: off\n  tls_report_organization: ""\n');
  const r2 = await w2.fe(['config', 'check']);
  assert.match(r2.stdout + r2.stderr, /queue\.tls_report_organization.*non-empty/);
  w2.write('hostname: mail.example.org\ndata_dir: ./data\nqueue:\n  tls_report_organization: "two\\nlines"\n');
  assert.match((await w2.fe(['config', 'check'])).stdout + (await w2.fe(['config', 'check'])).stderr, /queue\.tls_report_organization.*one line/);
  w2.write('hostname: mail.example.org\ndata_dir: ./data\nqueue:\n  tls_reports: off\n');
  await w2.ok(['config', 'check']);
  handOff(w2.dataDir, queuePublicKey(w2.dataDir), { from: 'me@example.org', recipients: [{ address: 'x@remote.example' }], owner: null, submittedAt: new Date() }, Buffer.from('Subject: x\r\n\r\nx\r\n'));
  const s = QueueStore.open(w2.dataDir);
  s.close();
  assert.match((await w2.fe(['status', '--checks', 'queue'])).stdout, /^OK +queue +tls-rpt: TLS reports are off \(queue\.tls_reports\)$/m);
});

test('_smtp._tls records: rua URIs parsed, other schemes and malformed records ignored; one record or none (RFC 8460 3)', async () => {
  const uris = parseTlsRptRecord('v=TLSRPTv1 ; rua=mailto:tls%2Breports@example.net , https://r.example.net/tlsrpt ,ftp://x.example;ext=1')!;
  assert.deepEqual(uris.map((u) => (u.kind === 'mailto' ? `mailto ${u.address}` : `https ${u.url.href}`)), ['mailto tls+reports@example.net', 'https https://r.example.net/tlsrpt']);
  assert.equal(parseTlsRptRecord('v=TLSRPTv2; rua=mailto:a@example.net'), null, 'another version');
  assert.equal(parseTlsRptRecord('v=TLSRPTv1;'), null, 'no rua');
  assert.equal(parseTlsRptRecord('v=TLSRPTv1; rua=mailto:not-an-address'), null, 'no usable URI');
  // through fe's resolver against the loopback DNS server
  dns.set('_smtp._tls.twice.example', { TXT: ['v=TLSRPTv1; rua=mailto:a@example.net', 'v=TLSRPTv1; rua=mailto:b@example.net'] });
  const resolver = createResolver({ servers: [dns.address] });
  assert.deepEqual(await reportUris('twice.example', resolver), [], 'two records: the domain takes no reports');
  assert.deepEqual(await reportUris('nothing.example', resolver), [], 'no record');
  assert.deepEqual((await reportUris('plain.example', resolver)).map((u) => u.uri), [`https://tlsrpt.reports.example:${ruaPort}/v1/plain`], 'an SPF record beside it is skipped');
});

test('TLS errors map to RFC 8460 result types', () => {
  assert.equal(tlsErrorType("Hostname/IP does not match certificate's altnames: Host: mx.bad.example. is not in the cert's altnames: DNS:mx.good.example"), 'certificate-host-mismatch');
  assert.equal(tlsErrorType('certificate has expired'), 'certificate-expired');
  assert.equal(tlsErrorType('self-signed certificate'), 'certificate-not-trusted');
  assert.equal(tlsErrorType('unable to verify the first certificate'), 'certificate-not-trusted');
  assert.equal(tlsErrorType('Error upgrading connection with STARTTLS: 502 5.5.1 Unrecognized command'), 'starttls-not-supported');
  assert.equal(tlsErrorType('Client network socket disconnected before secure TLS connection was established'), 'validation-failure');
});

test('a queue.db made before TLS-RPT gets its column and tables on open; its messages are kept', () => {
  const w3 = workspace();
  handOff(w3.dataDir, queuePublicKey(w3.dataDir), { from: 'me@example.org', recipients: [{ address: 'x@remote.example' }], owner: null, submittedAt: new Date() }, Buffer.from('Subject: old\r\n\r\nx\r\n'));
  let store = QueueStore.open(w3.dataDir);
  const privateKey = queueSealingKeys(w3.dataDir).privateKey;
  const [id] = store.importIncoming(privateKey).imported;
  store.close();
  // Take the file back to the schema before TLS-RPT.
  const key = Buffer.from(readFileSync(path.join(w3.dataDir, 'secrets', 'queue-db.key'), 'utf8').trim(), 'base64');
  const db = new Database(QueueStore.file(w3.dataDir));
  db.pragma(`cipher = 'chacha20'`);
  db.key(Buffer.concat([Buffer.from('raw:'), key]));
  db.exec('ALTER TABLE messages DROP COLUMN tls_report; DROP TABLE IF EXISTS tlsrpt_results; DROP TABLE IF EXISTS tlsrpt_sent');
  db.close();
  store = QueueStore.open(w3.dataDir);
  try {
    assert.equal(store.message(id!)!.tlsReport, false);
    assert.equal(store.recipients(id!)[0]!.address, 'x@remote.example');
    assert.equal(store.tlsResults.lastSent(), null);
  } finally {
    store.close();
  }
});
