import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { authenticate } from 'mailauth';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { createResolver, type FeResolver } from '../src/dns/resolver.js';
import { arcSeal, checkAuth, dkimSign, type AuthVerdict } from '../src/smtp/auth-check.js';

const MX = 'mx.fe.test';
const GOOD_IP = '192.0.2.1'; // listed in every test domain's SPF record
const BAD_IP = '203.0.113.9'; // listed nowhere
const SUBJECT = 'quarterly secret plans';
const BODY = 'The vault code is 1234.';

interface Key {
  pem: string;
  dns: string;
}

function rsaKey(): Key {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    dns: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`,
  };
}

function message(from: string, extra = ''): Buffer {
  return Buffer.from(
    [
      `From: Alice <${from}>`,
      'To: bob@fe.test',
      `Subject: ${SUBJECT}`,
      'Date: Sun, 01 Mar 2026 12:00:00 +0000',
      `Message-ID: <${Math.random().toString(36).slice(2)}@${from.split('@')[1]}>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      ...(extra ? [extra] : []),
      '',
      BODY,
      '',
    ].join('\r\n'),
  );
}

const spf = `v=spf1 ip4:${GOOD_IP} -all`;
const keys = { strict: rsaKey(), lax: rsaKey(), nodmarc: rsaKey(), esp: rsaKey(), flaky: rsaKey(), fwd: rsaKey(), fwd2: rsaKey() };

let dns: DnsServer;
let resolver: FeResolver;

before(async () => {
  dns = await startDnsServer(
    {
      'strict.example': { TXT: [spf], MX: [{ priority: 10, exchange: 'mx.strict.example' }] },
      '_dmarc.strict.example': { TXT: ['v=DMARC1; p=reject; rua=mailto:dmarc@strict.example'] },
      's1._domainkey.strict.example': { TXT: [keys.strict.dns] },
      'lax.example': { TXT: [spf] },
      '_dmarc.lax.example': { TXT: ['v=DMARC1; p=none'] },
      's1._domainkey.lax.example': { TXT: [keys.lax.dns] },
      'nodmarc.example': { TXT: [spf] },
      's1._domainkey.nodmarc.example': { TXT: [keys.nodmarc.dns] },
      'flaky.example': { TXT: [spf] },
      's1._domainkey.flaky.example': { TXT: [keys.flaky.dns] },
      'sample.example': { TXT: [spf] },
      '_dmarc.sample.example': { TXT: ['v=DMARC1; p=reject; pct=50'] },
      's1._domainkey.esp.example': { TXT: [keys.esp.dns] },
      'arc._domainkey.fwd.example': { TXT: [keys.fwd.dns] },
      'arc._domainkey.fwd2.example': { TXT: [keys.fwd2.dns] },
    },
    { servfail: ['_dmarc.flaky.example', 'broken._domainkey.strict.example'] },
  );
  resolver = createResolver({ servers: [dns.address], timeoutMs: 2000 });
});

after(() => dns.close());

function check(msg: Buffer | Readable, ip: string, sender: string, random?: () => number): Promise<AuthVerdict> {
  return checkAuth({ message: msg, ip, helo: 'client.example', mtaHostname: MX, sender, resolver, ...(random ? { random } : {}) });
}

function sign(msg: Buffer, domain: string, key: Key, selector = 's1'): Promise<Buffer> {
  return dkimSign(msg, { domain, selector, privateKeyPem: key.pem });
}

function assertNoContent(v: AuthVerdict): void {
  assert.ok(v.smtpMessage);
  assert.ok(!v.smtpMessage.includes(SUBJECT) && !v.smtpMessage.includes('vault'), v.smtpMessage);
  assert.ok(!/[\r\n]/.test(v.smtpMessage));
}

test('SPF pass + aligned DKIM pass -> accept, with spf/dkim/dmarc=pass in Authentication-Results', async () => {
  const signed = await sign(message('alice@strict.example'), 'strict.example', keys.strict);
  assert.match(signed.toString(), /^DKIM-Signature: .*d=strict\.example/s);
  const v = await check(signed, GOOD_IP, 'bounces@strict.example');
  assert.equal(v.action, 'accept');
  assert.equal(v.smtpCode, undefined);
  assert.match(v.authenticationResults, /^Authentication-Results: mx\.fe\.test;\r\n /);
  assert.match(v.authenticationResults, /\r\n$/);
  for (const want of ['spf=pass', 'dkim=pass', 'dmarc=pass']) assert.ok(v.authenticationResults.includes(want), want);
  assert.match(v.authenticationResults, /header\.d=strict\.example|header\.i=@strict\.example/);
  assert.match(v.receivedSpf, /^Received-SPF: pass/);
  assert.deepEqual(v.spf, { result: 'pass', domain: 'strict.example' });
  assert.deepEqual(v.dkim, [{ result: 'pass', domain: 'strict.example', selector: 's1', aligned: true }]);
  assert.equal(v.dmarc.result, 'pass');
  assert.equal(v.dmarc.policy, 'reject');
  assert.equal(v.arc.result, 'none');

  // The same verdict from a stream as from a buffer.
  const streamed = await check(Readable.from([signed.subarray(0, 100), signed.subarray(100)]), GOOD_IP, 'bounces@strict.example');
  assert.equal(streamed.action, 'accept');
  assert.equal(streamed.dmarc.result, 'pass');
});

test('DMARC failure under p=reject -> reject 550 5.7.1, saying why without the content', async () => {
  // Signed, but by a third party whose domain does not align with From; sent from an unlisted IP.
  const msg = await sign(message('alice@strict.example'), 'esp.example', keys.esp);
  const v = await check(msg, BAD_IP, 'alice@strict.example');
  assert.equal(v.action, 'reject');
  assert.equal(v.smtpCode, 550);
  assert.match(v.smtpMessage!, /^5\.7\.1 .*DMARC.*strict\.example/);
  assertNoContent(v);
  assert.equal(v.dmarc.result, 'fail');
  assert.deepEqual(v.dkim, [{ result: 'pass', domain: 'esp.example', selector: 's1', aligned: false }]);
  assert.ok(v.authenticationResults.includes('dmarc=fail'));
  assert.ok(v.authenticationResults.includes('spf=fail'));
});

test('a body modified after signing breaks DKIM and, under p=reject, is rejected', async () => {
  const signed = await sign(message('alice@strict.example'), 'strict.example', keys.strict);
  const tampered = Buffer.from(signed.toString().replace('1234', '9999'));
  // Envelope from another domain: SPF passes there, but does not align with From.
  const v = await check(tampered, GOOD_IP, 'bounces@lax.example');
  assert.equal(v.spf.result, 'pass');
  assert.notEqual(v.dkim[0]?.result, 'pass');
  assert.equal(v.action, 'reject');
  assert.equal(v.smtpCode, 550);
});

test('DMARC failure under p=none -> accept, failure recorded', async () => {
  const v = await check(message('carol@lax.example'), BAD_IP, 'carol@lax.example');
  assert.equal(v.spf.result, 'fail');
  assert.equal(v.dmarc.result, 'fail');
  assert.equal(v.dmarc.policy, 'none');
  assert.equal(v.action, 'accept');
  assert.ok(v.authenticationResults.includes('dmarc=fail'));
});

test('SPF -all fail, no DMARC record, no aligned DKIM -> reject 550', async () => {
  // A valid DKIM signature from an unrelated domain does not vouch for the From domain.
  const msg = await sign(message('dave@nodmarc.example'), 'esp.example', keys.esp);
  const v = await check(msg, BAD_IP, 'dave@nodmarc.example');
  assert.equal(v.dmarc.result, 'none');
  assert.equal(v.spf.result, 'fail');
  assert.equal(v.action, 'reject');
  assert.equal(v.smtpCode, 550);
  assert.match(v.smtpMessage!, /^5\.7\.23 SPF .*nodmarc\.example/);
  assertNoContent(v);
});

test('SPF fail but a DKIM signature aligned with From -> accept', async () => {
  const msg = await sign(message('dave@nodmarc.example'), 'nodmarc.example', keys.nodmarc);
  const v = await check(msg, BAD_IP, 'dave@nodmarc.example');
  assert.equal(v.spf.result, 'fail');
  assert.deepEqual(v.dkim, [{ result: 'pass', domain: 'nodmarc.example', selector: 's1', aligned: true }]);
  assert.equal(v.action, 'accept');
});

test('SERVFAIL on the DMARC lookup -> tempfail 451 4.7.x; once DNS recovers the message is accepted', async () => {
  const msg = await sign(message('erin@flaky.example'), 'flaky.example', keys.flaky);
  const v = await check(msg, GOOD_IP, 'erin@flaky.example');
  assert.equal(v.dmarc.result, 'temperror');
  assert.equal(v.action, 'tempfail');
  assert.equal(v.smtpCode, 451);
  assert.match(v.smtpMessage!, /^4\.7\.\d+ .*DMARC.*flaky\.example/);
  assertNoContent(v);
  assert.ok(dns.queries.some((q) => q.name === '_dmarc.flaky.example' && q.type === 'TXT'));

  dns.setServfail('_dmarc.flaky.example', false);
  try {
    const again = await check(msg, GOOD_IP, 'erin@flaky.example');
    assert.equal(again.action, 'accept');
    assert.equal(again.dmarc.result, 'none');
  } finally {
    dns.setServfail('_dmarc.flaky.example', true);
  }
});

test('DMARC would reject but the DKIM key lookup failed temporarily -> tempfail, not a permanent 550', async () => {
  const msg = await sign(message('alice@strict.example'), 'strict.example', keys.strict, 'broken');
  const v = await check(msg, BAD_IP, 'alice@strict.example');
  assert.equal(v.dkim[0]?.result, 'temperror');
  assert.equal(v.dmarc.result, 'fail');
  assert.equal(v.action, 'tempfail');
  assert.equal(v.smtpCode, 451);
});

test('DMARC pct= samples which failures get p=reject', async () => {
  const msg = message('frank@sample.example');
  const outside = await check(msg, BAD_IP, 'frank@sample.example', () => 0.9);
  assert.equal(outside.dmarc.pct, 50);
  assert.equal(outside.action, 'accept');
  const inside = await check(msg, BAD_IP, 'frank@sample.example', () => 0.1);
  assert.equal(inside.action, 'reject');
});

test('an ARC-sealed forward verifies with mailauth; a second hop extends the chain; tampering breaks it', async () => {
  const original = await sign(message('alice@strict.example'), 'strict.example', keys.strict);
  const atFwd = await check(original, GOOD_IP, 'bounces@strict.example');
  assert.equal(atFwd.action, 'accept');
  assert.match(atFwd.arc.authResults, /^mx\.fe\.test;/);

  const sealed = await arcSeal(original, {
    authResults: atFwd.authenticationResults, // the header line form is accepted too
    domain: 'fwd.example',
    selector: 'arc',
    privateKey: keys.fwd.pem,
    cv: atFwd.arc.result,
  });
  const head = sealed.toString().slice(0, sealed.indexOf('\r\n\r\n'));
  assert.match(head, /^ARC-Seal: i=1; a=rsa-sha256; .*cv=none; d=fwd\.example; s=arc;/s);
  assert.match(head, /^ARC-Message-Signature: i=1; /m);
  assert.match(head, /^ARC-Authentication-Results: i=1; mx\.fe\.test;/m);
  assert.match(head, /spf=pass/);

  // mailauth's own ARC validation, called directly.
  const res = await authenticate(sealed, { ip: '198.51.100.7', helo: 'mx.fwd.example', mta: 'mx.next.example', sender: 'x@fwd.example', resolver: resolver.mailauthResolver, disableBimi: true });
  assert.ok(res.arc);
  assert.equal(res.arc.status.result, 'pass', JSON.stringify(res.arc.status));
  assert.equal(res.arc.i, 1);

  // The next hop sees the chain through checkAuth as well, and seals again with cv=pass.
  const atFwd2 = await check(sealed, '198.51.100.7', 'x@fwd.example');
  assert.equal(atFwd2.arc.result, 'pass');
  assert.equal(atFwd2.arc.instance, 1);
  await assert.rejects(arcSeal(sealed, { authResults: atFwd2.arc.authResults, domain: 'fwd2.example', selector: 'arc', privateKey: keys.fwd2.pem }), /cv/);
  const sealed2 = await arcSeal(sealed, {
    authResults: atFwd2.arc.authResults,
    domain: 'fwd2.example',
    selector: 'arc',
    privateKey: keys.fwd2.pem,
    cv: atFwd2.arc.result,
  });
  const res2 = await authenticate(sealed2, { ip: '198.51.100.8', helo: 'mx.fwd2.example', mta: 'mx.final.example', sender: 'y@fwd2.example', resolver: resolver.mailauthResolver, disableBimi: true });
  assert.ok(res2.arc);
  assert.equal(res2.arc.status.result, 'pass', JSON.stringify(res2.arc.status));
  assert.equal(res2.arc.i, 2);

  // Change a signed header after sealing: the ARC-Message-Signature no longer verifies.
  const tampered = Buffer.from(sealed.toString().replace(`Subject: ${SUBJECT}`, 'Subject: changed'));
  const res3 = await authenticate(tampered, { ip: '198.51.100.7', helo: 'mx.fwd.example', mta: 'mx.next.example', sender: 'x@fwd.example', resolver: resolver.mailauthResolver, disableBimi: true });
  assert.ok(res3.arc);
  assert.equal(res3.arc.status.result, 'fail');
});

test('dkimSign refuses a bad key instead of returning an unsigned message', async () => {
  await assert.rejects(dkimSign(message('a@strict.example'), { domain: 'strict.example', selector: 's1', privateKeyPem: 'not a key' }));
});
