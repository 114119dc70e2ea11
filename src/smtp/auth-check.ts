// The MX's verdict on an incoming message: SPF, DKIM, ARC and DMARC via mailauth, through fe's
// resolver, turned into accept / reject / tempfail. Also DKIM signing and ARC sealing for mail
// fe sends on (forwarding, submission).
import type { Readable } from 'node:stream';
import { authenticate, sealMessage, type AuthenticateResult } from 'mailauth';
import { dkimSign as mailauthDkimSign } from 'mailauth/lib/dkim/sign.js';
import type { FeResolver } from '../dns/resolver.js';

export interface AuthCheckInput {
  message: Buffer | Readable;
  /** Connecting client's IP address. */
  ip: string;
  /** EHLO/HELO argument. */
  helo: string;
  /** Our hostname: the authserv-id in Authentication-Results. */
  mtaHostname: string;
  /** MAIL FROM address; '' for a bounce (SPF then checks postmaster@helo). */
  sender: string;
  resolver: FeResolver;
  /** Smallest RSA key accepted for DKIM/ARC (mailauth's default: 1024). */
  minBitLength?: number;
  /** For DMARC pct= sampling; tests pass a fixed value. */
  random?: () => number;
}

export interface SpfSummary {
  result: string;
  /** Domain checked: the MAIL FROM domain, or the HELO name for a bounce. */
  domain: string;
}

export interface DkimSummary {
  result: string;
  domain: string;
  selector: string;
  /** The signing domain aligns (relaxed) with the From domain. */
  aligned: boolean;
}

export interface DmarcSummary {
  /** pass | fail | none (no record) | temperror | absent (not exactly one From address) */
  result: string;
  domain?: string;
  /** Policy that applies to this From domain (sp= for subdomains), lower-cased. */
  policy?: string;
  pct?: number;
}

export interface ArcSummary {
  result: string;
  /** Instance number of the last ARC set found (0 without a chain). */
  instance: number;
  /** What arcSeal() wants as authResults when forwarding this message. */
  authResults: string;
}

export type AuthAction = 'accept' | 'reject' | 'tempfail';

export interface AuthVerdict {
  action: AuthAction;
  /** With reject/tempfail: reply as `${smtpCode} ${smtpMessage}`; the message starts with the enhanced status code. */
  smtpCode?: number;
  smtpMessage?: string;
  /** 'Authentication-Results: <mta>; ...' ending in CRLF, to prepend to the message. */
  authenticationResults: string;
  /** 'Received-SPF: ...' ending in CRLF. */
  receivedSpf: string;
  spf: SpfSummary;
  dkim: DkimSummary[];
  dmarc: DmarcSummary;
  arc: ArcSummary;
}

// A domain name as it may appear in an SMTP reply; anything else is left out, since the From
// header is sender-controlled text.
function safeDomain(d: string | undefined): string | undefined {
  if (!d) return undefined;
  return /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(d) ? d.toLowerCase() : undefined;
}

function headerLine(headers: string, name: string): string {
  // mailauth's headers are CRLF-separated and folded with CRLF + space.
  const line = headers.split(/\r\n(?=\S)/).find((h) => h.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line ? `${line.replace(/\r\n$/, '')}\r\n` : '';
}

function summarize(res: AuthenticateResult): Pick<AuthVerdict, 'spf' | 'dkim' | 'dmarc' | 'arc'> {
  const spf: SpfSummary = { result: res.spf.status.result, domain: res.spf.domain };
  const dkim: DkimSummary[] = res.dkim.results
    .filter((r) => r.signingDomain)
    .map((r) => ({
      result: r.status.result,
      domain: (r.signingDomain ?? '').toLowerCase(),
      selector: r.selector ?? '',
      aligned: Boolean(r.status.aligned),
    }));
  const dmarc: DmarcSummary = res.dmarc
    ? {
        result: res.dmarc.status.result,
        domain: res.dmarc.domain,
        ...(res.dmarc.policy ? { policy: res.dmarc.policy.toLowerCase().trim() } : {}),
        ...(typeof res.dmarc.pct === 'number' ? { pct: res.dmarc.pct } : {}),
      }
    : { result: 'absent' };
  const arc: ArcSummary = res.arc
    ? { result: res.arc.status.result, instance: typeof res.arc.i === 'number' ? res.arc.i : 0, authResults: res.arc.authResults ?? '' }
    : { result: 'none', instance: 0, authResults: '' };
  return { spf, dkim, dmarc, arc };
}

type Decision = Pick<AuthVerdict, 'action' | 'smtpCode' | 'smtpMessage'>;

function decide(s: Pick<AuthVerdict, 'spf' | 'dkim' | 'dmarc'>, random: () => number): Decision {
  const fromDomain = safeDomain(s.dmarc.domain);
  const ofDomain = fromDomain ? ` of ${fromDomain}` : '';

  if (s.dmarc.result === 'temperror') {
    return {
      action: 'tempfail',
      smtpCode: 451,
      smtpMessage: `4.7.1 DMARC policy${ofDomain} could not be looked up (temporary DNS failure), try again later`,
    };
  }

  if (s.dmarc.result === 'fail' && s.dmarc.policy === 'reject') {
    // RFC 7489 6.6.4: pct= applies the policy to a sample; the rest get the next milder one (quarantine).
    const sampled = s.dmarc.pct === undefined || s.dmarc.pct >= 100 || random() * 100 < s.dmarc.pct;
    if (sampled) {
      // A DNS hiccup on the SPF or DKIM side may be why nothing aligned: let the sender retry.
      if (s.spf.result === 'temperror' || s.dkim.some((d) => d.result === 'temperror')) {
        return {
          action: 'tempfail',
          smtpCode: 451,
          smtpMessage: `4.7.1 Message fails DMARC${ofDomain} and SPF or DKIM could not be checked (temporary DNS failure), try again later`,
        };
      }
      return {
        action: 'reject',
        smtpCode: 550,
        smtpMessage: `5.7.1 Message rejected by the DMARC policy${ofDomain}: no SPF or DKIM pass aligned with the From domain`,
      };
    }
  }

  if (s.spf.result === 'fail') {
    // With a DMARC record the domain owner chose how failures are handled; without one, a
    // hard SPF fail stands unless a DKIM signature of the From domain vouches for the message.
    const dmarcPublished = s.dmarc.result === 'pass' || s.dmarc.result === 'fail';
    const alignedDkimPass = s.dkim.some((d) => d.result === 'pass' && d.aligned);
    if (!dmarcPublished && !alignedDkimPass) {
      const domain = safeDomain(s.spf.domain);
      return {
        action: 'reject',
        smtpCode: 550,
        smtpMessage: `5.7.23 SPF check failed: the sending host is not permitted to send mail for ${domain ?? 'the sender domain'}`,
      };
    }
  }

  return { action: 'accept' };
}

export async function checkAuth(input: AuthCheckInput): Promise<AuthVerdict> {
  const res = await authenticate(input.message, {
    ip: input.ip,
    helo: input.helo,
    mta: input.mtaHostname,
    sender: input.sender,
    resolver: input.resolver.mailauthResolver,
    // Envelope data comes from the SMTP session only, never from headers the sender wrote.
    trustReceived: false,
    // BIMI is a display feature for senders' logos; an MX does not need its DNS lookups.
    disableBimi: true,
    ...(input.minBitLength ? { minBitLength: input.minBitLength } : {}),
  });
  const summary = summarize(res);
  return {
    ...decide(summary, input.random ?? Math.random),
    authenticationResults: headerLine(res.headers, 'Authentication-Results'),
    receivedSpf: headerLine(res.headers, 'Received-SPF'),
    ...summary,
  };
}

// ---- signing -------------------------------------------------------------------------------

export interface DkimSignOptions {
  domain: string;
  selector: string;
  privateKeyPem: string | Buffer;
  /** Colon-separated header names to sign; mailauth's default list otherwise. */
  headerList?: string;
  signTime?: Date;
}

/** The message with a DKIM-Signature header prepended. */
export async function dkimSign(message: Buffer, opts: DkimSignOptions): Promise<Buffer> {
  const res = await mailauthDkimSign(message, {
    canonicalization: 'relaxed/relaxed',
    signatureData: [{ signingDomain: opts.domain, selector: opts.selector, privateKey: opts.privateKeyPem }],
    ...(opts.headerList ? { headerList: opts.headerList } : {}),
    ...(opts.signTime ? { signTime: opts.signTime } : {}),
  });
  // mailauth collects failures (bad key, unsupported type) instead of throwing.
  const first = res.errors[0];
  if (first) throw new Error(`DKIM signing for ${opts.domain} failed: ${first.err.message}`);
  if (!/^DKIM-Signature:/i.test(res.signatures)) throw new Error(`DKIM signing for ${opts.domain} produced no signature`);
  return Buffer.concat([Buffer.from(res.signatures, 'latin1'), message]);
}

export interface ArcSealOptions {
  /** Our results for the message: AuthVerdict.arc.authResults, or an 'Authentication-Results:' line. */
  authResults: string;
  domain: string;
  selector: string;
  /** RSA private key (mailauth seals with rsa-sha256 only). */
  privateKey: string | Buffer;
  /** Chain validation of the incoming message (AuthVerdict.arc.result); required if it already carries ARC sets. */
  cv?: string;
  signTime?: Date;
}

function hasArcSet(message: Buffer): boolean {
  const crlf = message.indexOf('\r\n\r\n');
  const lf = message.indexOf('\n\n');
  const ends = [crlf, lf].filter((i) => i >= 0);
  const head = message.subarray(0, ends.length ? Math.min(...ends) : message.length).toString('latin1');
  return /^arc-seal:/im.test(head);
}

/** The message with ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results prepended. */
export async function arcSeal(message: Buffer, opts: ArcSealOptions): Promise<Buffer> {
  let cv = opts.cv;
  if (!cv) {
    // cv=none is only true for a message without a chain; otherwise the caller has to have validated it.
    if (hasArcSet(message)) throw new Error('message already has an ARC chain: pass cv from the verdict');
    cv = 'none';
  }
  if (!['none', 'pass', 'fail'].includes(cv)) throw new Error(`invalid ARC cv value: ${cv}`);
  const authResults = opts.authResults
    .replace(/^authentication-results:\s*/i, '')
    .replace(/\r?\n$/, '');
  if (!authResults) throw new Error('authResults is empty');
  const headers = await sealMessage(message, {
    signingDomain: opts.domain,
    selector: opts.selector,
    privateKey: opts.privateKey,
    authResults,
    cv,
    ...(opts.signTime ? { signTime: opts.signTime } : {}),
  });
  const text = headers.toString('latin1');
  if (!/^ARC-Seal:/i.test(text) || !/^ARC-Message-Signature:/im.test(text)) throw new Error(`ARC sealing for ${opts.domain} produced no seal`);
  return Buffer.concat([headers, message]);
}
