// TLS-RPT (RFC 8460) bookkeeping: each TLS outcome the outbound path reports becomes a counter
// row per UTC day, policy and failure kind, in the queue's encrypted database. Only what the
// report needs is kept: domains, MX names, IP addresses, result types and error texts; nothing
// about messages, senders or recipients.
import type { SqliteDb, SqliteStatement } from '../store/sqlite.js';
import type { TlsSeen } from '../smtp/outbound.js';

export const DAY_MS = 86400_000;

/** RFC 8460 section 4.3 result types fe can tell apart, plus the success it counts. */
export type ResultType =
  | 'success'
  | 'starttls-not-supported'
  | 'certificate-host-mismatch'
  | 'certificate-expired'
  | 'certificate-not-trusted'
  | 'validation-failure'
  | 'sts-policy-fetch-error'
  | 'sts-policy-invalid'
  | 'sts-webpki-invalid';

export type PolicyType = 'sts' | 'no-policy-found';

export interface TlsResult {
  day: number; // UTC day number (ms since epoch / DAY_MS, floored)
  policyDomain: string;
  policyType: PolicyType;
  /** The policy as lines (RFC 8460 4.4 policy-string), empty for no-policy-found. */
  policyString: string[];
  /** The policy's mx patterns (sts), or the MX host met (no-policy-found). */
  mxHost: string[];
  resultType: ResultType;
  receivingMx: string | null;
  receivingIp: string | null;
  sendingIp: string | null;
  /** Why it failed, in the TLS library's or fe's words; null for a success. */
  additional: string | null;
}

/** Which RFC 8460 result type a TLS error text stands for (Node's and OpenSSL's wording). */
export function tlsErrorType(error: string): ResultType {
  if (/STARTTLS/i.test(error) && !/initiating TLS/i.test(error)) return 'starttls-not-supported';
  if (/altnames|does not match certificate|ERR_TLS_CERT_ALTNAME_INVALID|hostname mismatch/i.test(error)) return 'certificate-host-mismatch';
  if (/certificate has expired|CERT_HAS_EXPIRED|certificate is not yet valid/i.test(error)) return 'certificate-expired';
  if (/self[- ]signed|unable to verify|unable to get (local )?issuer|certificate chain|not trusted|untrusted/i.test(error)) return 'certificate-not-trusted';
  return 'validation-failure';
}

/** The policy lines as a policy file would have them (RFC 8461 3.2), for policy-string. */
export function stsPolicyLines(p: { mode: string; mx: string[]; maxAge: number }): string[] {
  return ['version: STSv1', `mode: ${p.mode}`, ...p.mx.map((m) => `mx: ${m}`), `max_age: ${p.maxAge}`];
}

/** Turns what the outbound path saw into the row to count. */
export function resultOf(t: TlsSeen, day: number, sendingIp: string | null): TlsResult {
  const base = { day, policyDomain: t.domain.toLowerCase(), receivingMx: t.mx, receivingIp: t.ip, sendingIp };
  if (t.policy.type === 'sts-unavailable') {
    const r = t.policy.reason;
    const resultType: ResultType = /^invalid policy/i.test(r) ? 'sts-policy-invalid' : /certificate|self[- ]signed|unable to verify|issuer|altnames/i.test(r) ? 'sts-webpki-invalid' : 'sts-policy-fetch-error';
    return { ...base, policyType: 'sts', policyString: [], mxHost: [], resultType, additional: r };
  }
  const policy = t.policy.type === 'sts' ? { policyType: 'sts' as const, policyString: stsPolicyLines(t.policy), mxHost: t.policy.mx } : { policyType: 'no-policy-found' as const, policyString: [], mxHost: t.mx ? [t.mx] : [] };
  if (t.secure) return { ...base, ...policy, resultType: 'success', additional: null };
  if (t.error === null) return { ...base, ...policy, resultType: 'starttls-not-supported', additional: `${t.mx ?? t.domain} did not offer STARTTLS` };
  return { ...base, ...policy, resultType: t.mx === null ? 'validation-failure' : tlsErrorType(t.error), additional: t.error };
}

export interface SentReport {
  day: number;
  domain: string;
  sentAt: number;
  /** Where it went, e.g. "mailto:tls@example.net, https://…", and what became of each. */
  detail: string;
}

/** The counters and the sent-report log, kept as tables in the queue database. */
export class TlsResultStore {
  private stmts = new Map<string, SqliteStatement>();

  constructor(private readonly db: SqliteDb) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS tlsrpt_results (
        day INTEGER NOT NULL,
        policy_domain TEXT NOT NULL,
        policy_type TEXT NOT NULL,
        policy_string TEXT NOT NULL,
        mx_host TEXT NOT NULL,
        result_type TEXT NOT NULL,
        receiving_mx TEXT NOT NULL,
        receiving_ip TEXT NOT NULL,
        sending_ip TEXT NOT NULL,
        additional TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, policy_domain, policy_type, policy_string, result_type, receiving_mx, receiving_ip, sending_ip, additional)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS tlsrpt_posts (
        id INTEGER PRIMARY KEY,
        day INTEGER NOT NULL,
        domain TEXT NOT NULL,
        url TEXT NOT NULL,
        body BLOB NOT NULL,
        first_at INTEGER NOT NULL,
        next_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS tlsrpt_sent (
        day INTEGER NOT NULL,
        domain TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (day, domain)
      ) WITHOUT ROWID;
    `);
  }

  private stmt(sql: string): SqliteStatement {
    let s = this.stmts.get(sql);
    if (!s) this.stmts.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  add(r: TlsResult): void {
    this.stmt(
      `INSERT INTO tlsrpt_results (day, policy_domain, policy_type, policy_string, mx_host, result_type, receiving_mx, receiving_ip, sending_ip, additional, count)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
       ON CONFLICT DO UPDATE SET count = count + 1, mx_host = excluded.mx_host`,
    ).run(r.day, r.policyDomain, r.policyType, JSON.stringify(r.policyString), JSON.stringify(r.mxHost), r.resultType, r.receivingMx ?? '', r.receivingIp ?? '', r.sendingIp ?? '', r.additional ?? '');
  }

  /** (day, domain) pairs before `day` with counts and no report sent yet, oldest first. */
  unreported(beforeDay: number): { day: number; domain: string }[] {
    return this.stmt(`SELECT DISTINCT r.day AS day, r.policy_domain AS domain FROM tlsrpt_results r WHERE r.day < ? AND NOT EXISTS (SELECT 1 FROM tlsrpt_sent s WHERE s.day = r.day AND s.domain = r.policy_domain) ORDER BY r.day, r.policy_domain`).all(beforeDay) as { day: number; domain: string }[];
  }

  /** Every counter of one policy domain on one day. */
  results(day: number, domain: string): (TlsResult & { count: number })[] {
    const rows = this.stmt('SELECT * FROM tlsrpt_results WHERE day = ? AND policy_domain = ? ORDER BY policy_type, policy_string, result_type, receiving_mx, receiving_ip').all(day, domain) as Record<string, string | number>[];
    const orNull = (v: string | number | undefined) => (v === '' || v === undefined ? null : String(v));
    return rows.map((r) => ({
      day: Number(r.day),
      policyDomain: String(r.policy_domain),
      policyType: r.policy_type as PolicyType,
      policyString: JSON.parse(String(r.policy_string)) as string[],
      mxHost: JSON.parse(String(r.mx_host)) as string[],
      resultType: r.result_type as ResultType,
      receivingMx: orNull(r.receiving_mx),
      receivingIp: orNull(r.receiving_ip),
      sendingIp: orNull(r.sending_ip),
      additional: orNull(r.additional),
      count: Number(r.count),
    }));
  }

  /** Records that a day's report for a domain was made (or that there was nowhere to send it) and drops its counters. */
  markSent(day: number, domain: string, detail: string, now = Date.now()): void {
    this.db.transaction(() => {
      this.stmt('INSERT OR REPLACE INTO tlsrpt_sent (day, domain, sent_at, detail) VALUES (?, ?, ?, ?)').run(day, domain, now, detail);
      this.stmt('DELETE FROM tlsrpt_results WHERE day = ? AND policy_domain = ?').run(day, domain);
    })();
  }

  /** An HTTPS report whose POST failed, to try again at `nextAt` (RFC 8460 5.5: for up to a day). */
  addPost(p: { day: number; domain: string; url: string; body: Buffer; firstAt: number; nextAt: number }): void {
    this.stmt('INSERT INTO tlsrpt_posts (day, domain, url, body, first_at, next_at, attempts) VALUES (?, ?, ?, ?, ?, ?, 1)').run(p.day, p.domain, p.url, p.body, p.firstAt, p.nextAt);
  }

  duePosts(now: number): { id: number; day: number; domain: string; url: string; body: Buffer; firstAt: number; attempts: number }[] {
    return (this.stmt('SELECT * FROM tlsrpt_posts WHERE next_at <= ? ORDER BY next_at').all(now) as { id: number; day: number; domain: string; url: string; body: Buffer; first_at: number; attempts: number }[]).map((r) => ({ id: r.id, day: r.day, domain: r.domain, url: r.url, body: r.body, firstAt: r.first_at, attempts: r.attempts }));
  }

  /** The retry is over: delivered, or given up. */
  postDone(id: number): void {
    this.stmt('DELETE FROM tlsrpt_posts WHERE id = ?').run(id);
  }

  postRetry(id: number, nextAt: number): void {
    this.stmt('UPDATE tlsrpt_posts SET attempts = attempts + 1, next_at = ? WHERE id = ?').run(nextAt, id);
  }

  /** Adds to what a sent report's log line says (a retried POST's end). */
  noteSent(day: number, domain: string, note: string): void {
    this.stmt(`UPDATE tlsrpt_sent SET detail = detail || '; ' || ? WHERE day = ? AND domain = ?`).run(note, day, domain);
  }

  /** The latest report sent somewhere (not the days with no rua to send to), for fe status. */
  lastSent(): SentReport | null {
    const r = this.stmt(`SELECT day, domain, sent_at, detail FROM tlsrpt_sent WHERE detail != '' ORDER BY sent_at DESC LIMIT 1`).get() as { day: number; domain: string; sent_at: number; detail: string } | undefined;
    return r ? { day: r.day, domain: r.domain, sentAt: r.sent_at, detail: r.detail } : null;
  }

  /** Forgets the sent-report log and any stale counters older than `days`. */
  purge(days: number, today: number): void {
    this.stmt('DELETE FROM tlsrpt_sent WHERE day < ?').run(today - days);
    this.stmt('DELETE FROM tlsrpt_results WHERE day < ?').run(today - days);
  }
}
