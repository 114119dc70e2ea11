// What a failed delivery attempt means: the kind of failure, and whether to bounce now or retry.
// The rules are data, first match wins; each is drawn from what real servers answer. The basic
// reply code decides retry versus bounce (RFC 5321 4.2.1: 4xx is transient, 5xx permanent);
// the text and the enhanced code (RFC 3463) only say which kind, so the log, `fe queue` and the
// DSN can name it.
export type FailureClass = 'mailbox-full' | 'unknown-user' | 'reputation' | 'spam' | 'virus' | 'greylist' | 'network' | 'tls' | 'policy' | 'dns' | 'too-big' | 'rate-limit' | 'other';

export interface Attempt {
  code: number | null; // SMTP basic reply code; null without an SMTP reply (network, TLS, DNS)
  enhanced?: string | null; // e.g. "5.1.1"; parsed from the text when absent
  text: string;
  stage?: 'connect' | 'tls' | 'dns' | 'policy' | 'mail' | 'rcpt' | 'data';
}

export interface Classification {
  class: FailureClass;
  permanent: boolean;
  enhanced: string; // the RFC 3463 status to report
  reason: string;
}

interface Rule {
  class: FailureClass;
  text?: RegExp;
  enhanced?: RegExp; // matched against "X.Y.Z" with the class digit replaced by x
  noReply?: boolean; // only for attempts without an SMTP reply
  why: string;
}

// Order matters: specific texts before the enhanced-code fallbacks.
const RULES: Rule[] = [
  // --- failures before any SMTP reply ---
  { class: 'dns', noReply: true, text: /ENOTFOUND|NXDOMAIN|SERVFAIL|lookup .* failed|queryMx|queryA|ENODATA|no address for any MX/i, why: 'the destination could not be looked up in DNS' },
  { class: 'tls', noReply: true, text: /certificate|self[- ]signed|altnames|TLS|SSL|handshake|did not start TLS|REQUIRETLS|ETLS/i, why: 'a TLS connection could not be made or verified' },
  { class: 'policy', noReply: true, text: /MTA-STS|policy/i, why: 'the destination\'s published policy does not allow delivery' },
  { class: 'network', noReply: true, text: /ECONNREFUSED|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH|EPIPE|timeout|timed out|Greeting never received|connection .*closed|socket/i, why: 'the destination did not answer or dropped the connection' },
  // --- texts that say what kind, whatever the code ---
  { class: 'virus', text: /virus|malware|infected|Eicar/i, why: 'the destination found a virus in the message' },
  { class: 'greylist', text: /grey-?list|gray-?list|postgrey|try again later|please retry|temporarily deferred|TSS04/i, why: 'the destination asks to try again later (greylisting)' },
  { class: 'rate-limit', text: /rate limit|rate-limit|too many (messages|connections|recipients)|exceeded .* rate|unusual rate|throttl/i, why: 'the destination limits how fast it takes mail from us' },
  { class: 'reputation', text: /block ?list|black ?list|blocked using|spamhaus|barracuda|spamcop|reputation|\(S3150\)|TSS09|banned|listed at|RBL/i, why: 'the destination refuses mail from our address or domain (a blocklist or reputation)' },
  { class: 'spam', text: /spam|unsolicited|junk|bulk mail|content rejected|message content/i, why: 'the destination judged the message to be spam' },
  { class: 'mailbox-full', text: /over ?quota|quota exceeded|mailbox (is )?full|out of storage|insufficient storage|exceeded storage/i, enhanced: /^x\.2\.2$/, why: 'the recipient\'s mailbox is full' },
  { class: 'too-big', text: /too (big|large)|size (limit|exceeds)|exceeds? .*size|message size/i, enhanced: /^x\.(2\.3|3\.4)$/, why: 'the message is larger than the destination accepts' },
  { class: 'unknown-user', text: /user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|doesn'?t have a .* account|mailbox unavailable|recipient (address )?rejected|invalid recipient|unrouteable address|address rejected|not found/i, enhanced: /^x\.1\.[0-3]$|^x\.1\.10$/, why: 'the recipient address does not exist there' },
  { class: 'policy', text: /DMARC|SPF|DKIM|authenticat|policy|prohibit|not allowed|relay|access denied|verification failed/i, enhanced: /^x\.7\.\d+$/, why: 'the destination refused the message for a policy reason' },
  // --- enhanced-code fallbacks ---
  { class: 'network', enhanced: /^x\.4\.\d+$/, why: 'a routing or network problem at the destination' },
  { class: 'mailbox-full', enhanced: /^x\.2\.\d+$/, why: 'a problem with the recipient\'s mailbox' },
  { class: 'other', enhanced: /^x\.3\.\d+$/, why: 'a problem with the destination\'s mail system' },
];

// Default enhanced codes by class, when the reply carries none (RFC 3463, RFC 7505, RFC 8689).
const DEFAULT_DETAIL: Record<FailureClass, string> = {
  'mailbox-full': '2.2',
  'unknown-user': '1.1',
  reputation: '7.1',
  spam: '7.1',
  virus: '7.1',
  greylist: '7.1',
  network: '4.1',
  tls: '7.10',
  policy: '7.1',
  dns: '4.3',
  'too-big': '3.4',
  'rate-limit': '7.0',
  other: '0.0',
};

/** The enhanced status code in a reply text: "550 5.1.1 ..." or "550-5.1.1 ..." or at the start. */
export function enhancedCode(text: string): string | null {
  const m = /(?:^|[\s-])([245])\.(\d{1,3})\.(\d{1,3})(?=[\s,;:.)\]]|$)/.exec(text);
  return m ? `${m[1]}.${m[2]}.${m[3]}` : null;
}

export function classify(a: Attempt): Classification {
  const enhanced = a.enhanced ?? enhancedCode(a.text);
  const generic = enhanced ? `x${enhanced.slice(1)}` : null;
  const noReply = a.code === null;
  let rule: Rule | undefined;
  for (const r of RULES) {
    if (r.noReply && !noReply) continue;
    if (!r.noReply && noReply && !r.text) continue;
    const byText = r.text ? r.text.test(a.text) : false;
    const byCode = r.enhanced && generic ? r.enhanced.test(generic) : false;
    if (byText || byCode) {
      rule = r;
      break;
    }
  }
  // A DNS failure at the MX lookup that says the domain does not exist is the one permanent case
  // without a reply; everything else without a reply is worth retrying.
  const nxdomain = noReply && a.stage === 'dns' && /ENOTFOUND|NXDOMAIN/i.test(a.text);
  const permanent = a.code !== null ? a.code >= 500 : nxdomain;
  const cls: FailureClass = rule?.class ?? (noReply ? 'network' : 'other');
  let status = enhanced ?? `${permanent ? 5 : 4}.${nxdomain ? '1.2' : DEFAULT_DETAIL[cls]}`;
  // The class digit follows the reply code: a 4xx reply with a 5.x.x text is still transient.
  if (a.code !== null) status = `${a.code >= 500 ? 5 : a.code >= 400 ? 4 : 2}${status.slice(1)}`;
  else if (!permanent) status = `4${status.slice(1)}`;
  return { class: cls, permanent, enhanced: status, reason: rule?.why ?? (permanent ? 'the destination refused the message' : 'the delivery failed for now') };
}
