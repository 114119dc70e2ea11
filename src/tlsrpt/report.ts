// The daily TLS report (RFC 8460 section 4) and its two ways out: a multipart/report mail
// (section 5.3) and an HTTPS POST (section 5.4), both carrying the JSON gzip'd.
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { gzipSync } from 'node:zlib';
import type { FeResolver } from '../dns/resolver.js';
import { resolverLookup } from '../dns/lookup.js';
import { DAY_MS, type TlsResult } from './results.js';

export interface ReportInput {
  organization: string;
  contact: string; // an address
  submitter: string; // our host name
  domain: string; // the policy domain the report is about
  day: number;
  results: (TlsResult & { count: number })[];
}

export interface TlsReport {
  json: Record<string, unknown>;
  reportId: string;
  start: Date;
  end: Date;
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The report as RFC 8460 4.4 lays it out: one entry per policy, with summary and failure details. */
export function buildReport(input: ReportInput): TlsReport {
  const start = new Date(input.day * DAY_MS);
  const end = new Date((input.day + 1) * DAY_MS - 1000);
  const reportId = `${iso(start).slice(0, 10)}.${randomBytes(6).toString('hex')}@${input.submitter}`;
  const byPolicy = new Map<string, (TlsResult & { count: number })[]>();
  for (const r of input.results) {
    const key = JSON.stringify([r.policyType, r.policyString]);
    byPolicy.set(key, [...(byPolicy.get(key) ?? []), r]);
  }
  const policies = [...byPolicy.values()].map((rows) => {
    const first = rows[0]!;
    const mxHost = [...new Set(rows.flatMap((r) => r.mxHost))];
    const failures = rows.filter((r) => r.resultType !== 'success');
    return {
      policy: {
        'policy-type': first.policyType,
        ...(first.policyString.length > 0 ? { 'policy-string': first.policyString } : {}),
        'policy-domain': input.domain,
        ...(mxHost.length > 0 ? { 'mx-host': mxHost } : {}),
      },
      summary: {
        'total-successful-session-count': rows.filter((r) => r.resultType === 'success').reduce((n, r) => n + r.count, 0),
        'total-failure-session-count': failures.reduce((n, r) => n + r.count, 0),
      },
      ...(failures.length > 0
        ? {
            'failure-details': failures.map((f) => ({
              'result-type': f.resultType,
              ...(f.sendingIp ? { 'sending-mta-ip': f.sendingIp } : {}),
              ...(f.receivingMx ? { 'receiving-mx-hostname': f.receivingMx } : {}),
              ...(f.receivingIp ? { 'receiving-ip': f.receivingIp } : {}),
              'failed-session-count': f.count,
              ...(f.additional ? { 'additional-information': f.additional } : {}),
            })),
          }
        : {}),
    };
  });
  const json = {
    'organization-name': input.organization,
    'date-range': { 'start-datetime': iso(start), 'end-datetime': iso(end) },
    'contact-info': input.contact,
    'report-id': reportId,
    policies,
  };
  return { json, reportId, start, end };
}

/** RFC 8460 5.1: sender!policy-domain!begin!end!unique-id.json.gz */
export function reportFilename(report: TlsReport, submitter: string, domain: string): string {
  const secs = (d: Date) => Math.floor(d.getTime() / 1000);
  return `${submitter}!${domain}!${secs(report.start)}!${secs(report.end)}!${report.reportId.split('@')[0]!.split('.')[1]}.json.gz`;
}

export function gzipReport(report: TlsReport): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(report.json), 'utf8'));
}

function wrap76(b64: string): string {
  return b64.replace(/.{1,76}/g, '$&\r\n');
}

/**
 * The report mail (RFC 8460 5.3), unsigned: From the postmaster of one of our domains, marked
 * Auto-Submitted (RFC 3834) so no DSN or auto-reply answers it.
 */
export function reportMessage(opts: { from: string; to: string[]; submitter: string; domain: string; report: TlsReport; now: Date }): Buffer {
  const boundary = `tlsrpt-${randomBytes(12).toString('hex')}`;
  const gz = gzipReport(opts.report);
  const json = opts.report.json as { policies: { summary: Record<string, number> }[] };
  const ok = json.policies.reduce((n, p) => n + p.summary['total-successful-session-count']!, 0);
  const failed = json.policies.reduce((n, p) => n + p.summary['total-failure-session-count']!, 0);
  const idDomain = opts.from.slice(opts.from.lastIndexOf('@') + 1);
  const lines = [
    `From: ${opts.from}`,
    `To: ${opts.to.join(', ')}`,
    `Date: ${opts.now.toUTCString().replace('GMT', '+0000')}`,
    `Subject: Report Domain: ${opts.domain} Submitter: ${opts.submitter} Report-ID: <${opts.report.reportId}>`,
    `Message-ID: <tlsrpt.${randomBytes(10).toString('hex')}@${idDomain}>`,
    `TLS-Report-Domain: ${opts.domain}`,
    `TLS-Report-Submitter: ${opts.submitter}`,
    'Auto-Submitted: auto-generated',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Transfer-Encoding: 7bit',
    '',
    `This is an aggregate TLS report (RFC 8460) from ${opts.submitter} for ${opts.domain},`,
    `covering ${iso(opts.report.start)} to ${iso(opts.report.end)}: ${ok} successful and ${failed} failed TLS session(s).`,
    '',
    `--${boundary}`,
    'Content-Type: application/tlsrpt+gzip',
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${reportFilename(opts.report, opts.submitter, opts.domain)}"`,
    '',
    wrap76(gz.toString('base64')).replace(/\r\n$/, ''),
    `--${boundary}--`,
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'utf8');
}

/** The header names DKIM signs on a report: RFC 8460 5.3 asks for the two TLS-Report ones too. */
export const REPORT_SIGNED_HEADERS = ['From', 'To', 'Date', 'Subject', 'Message-ID', 'TLS-Report-Domain', 'TLS-Report-Submitter', 'Auto-Submitted', 'MIME-Version', 'Content-Type'];

/** RFC 8460 5.4: POST the gzip'd report; any 2xx is success. The certificate must verify. */
export function postReport(url: URL, body: Buffer, resolver: FeResolver, timeoutMs = 30_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { method: 'POST', lookup: resolverLookup(resolver), timeout: timeoutMs, headers: { 'content-type': 'application/tlsrpt+gzip', 'content-length': body.length } },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 300) resolve(code);
        else reject(new Error(`${url.origin} answered HTTP ${code}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`POST to ${url.origin} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}
