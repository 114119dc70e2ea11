// Decides, for one failed delivery attempt, what kind of failure it was and whether the queue
// should retry or bounce. The rules are data (RULES below), tried in order; the first match wins.
//
// Permanence follows RFC 5321: the first digit of the basic reply code decides. 4xx is always
// temporary, whatever the text says. 5xx is permanent except where a rule says 'retry', and
// there are only two such rules, both backed by a standard (see 'too-many-recipients-552' and
// 'starttls-refused'). No reply at all (network, TLS, DNS) is temporary unless the failure is a
// definite answer that will not change (NXDOMAIN, NODATA, a SIZE limit the server announced).
//
// Mailbox full: RFC 3463 calls X.2.2 "generally a temporary error", but a server that answers
// 552 5.2.2 chose the permanent class, RFC 5321 tells clients to act on that digit, and Postfix
// and Exim bounce it too (Yahoo also says not to retry its over-quota 554). So mailbox-full is
// permanent exactly when the code is 5xx; 452 4.2.2 (Gmail, Dovecot with quota_full_tempfail)
// is retried like any 4xx.
//
// The enhanced status reported for the DSN is the one the reply carried (RFC 2034) when it has
// one, else the rule's. Its class digit is always rewritten to match our decision (5 = bounced,
// 4 = still trying), because a DSN must not say 4.x.x for a message it gave up on.

export type FailureClass =
  | 'mailbox-full'
  | 'unknown-user'
  | 'reputation'
  | 'spam'
  | 'virus'
  | 'greylist'
  | 'network'
  | 'tls'
  | 'policy'
  | 'dns'
  | 'too-big'
  | 'rate-limit'
  | 'other';

export type Stage = 'connect' | 'tls' | 'dns' | 'mail' | 'rcpt' | 'data';

export interface Attempt {
  /** SMTP basic reply code, null when no SMTP reply (network, TLS, DNS failure). */
  code: number | null;
  /** e.g. "5.1.1" if known; otherwise parsed from text. */
  enhanced?: string | null;
  /** The reply text or the error message. */
  text: string;
  stage?: Stage;
}

export interface Classification {
  class: FailureClass;
  /** true: bounce now. */
  permanent: boolean;
  /** RFC 3463 status to report in the DSN, e.g. '5.1.1' or '4.4.1'. */
  enhanced: string;
  /** One short human sentence. */
  reason: string;
  /** Id of the rule that decided, for logs. */
  rule: string;
}

/**
 * retry: temporary whatever the code. bounce: permanent when there was no reply or a 5xx
 * (never for a 4xx). by-code: permanent exactly when the code is 5xx.
 */
export type Action = 'retry' | 'bounce' | 'by-code';

export interface Rule {
  id: string;
  class: FailureClass;
  action: Action;
  /** Matched against the reply text / error message (whitespace collapsed). */
  text?: RegExp;
  /** Matched against the enhanced status "c.s.d" the reply carried, if any. */
  enhanced?: RegExp;
  /** Basic reply code range, inclusive. */
  codes?: readonly [number, number];
  /** true: only when there was no SMTP reply; false: only when there was one. */
  noReply?: boolean;
  stages?: readonly Stage[];
  /** Enhanced status to report when the reply carries none, 'X' standing for the class digit. */
  status: string;
  /** Report `status` even when the reply carried its own (it describes something else). */
  ownStatus?: boolean;
  reason: string;
}

// Node's DNS errors start with the call ("queryMx ENOTFOUND example.invalid", "getaddrinfo
// EAI_AGAIN mx.example"); fe's resolver says "DNS MX lookup for x failed: ESERVFAIL" and the
// outbound client wraps that as "MX lookup for x failed: ...".
const DNS_CALL = /^(?:query[A-Z][A-Za-z]*|getaddrinfo|getHostByAddr|resolve[A-Za-z]*) E[A-Z_]+\b|\blookup for \S+ failed\b/;

export const RULES: readonly Rule[] = [
  // DANE (src/smtp/dane.ts) words every failure on a host with usable TLSA records, and a failed
  // TLSA lookup in a signed zone (a bogus answer is SERVFAIL), "4.7.5 DANE: ". First: what it
  // wraps (ESERVFAIL, ECONNREFUSED) must not read as a DNS or network failure of its own.
  { id: 'dane', class: 'tls', action: 'retry', noReply: true, text: /^4\.7\.5 DANE: /, status: 'X.7.5', reason: 'DANE: no STARTTLS, no certificate matching the TLSA records, or no validated TLSA answer.' },
  // ---- No SMTP reply: DNS ----
  // NXDOMAIN: the domain (or its MX host) does not exist; asking again gives the same answer.
  // Postfix and Exim bounce this too.
  { id: 'dns-nxdomain', class: 'dns', action: 'bounce', noReply: true, text: /\bENOTFOUND\b|\bNXDOMAIN\b/, status: 'X.1.2', reason: 'The recipient domain does not exist in DNS.' },
  // NODATA: the name exists but has no address records; RFC 3463 gives "only an SOA" as the
  // example of X.4.4. The outbound client has already fallen back from MX to A/AAAA by then.
  { id: 'dns-nodata', class: 'dns', action: 'bounce', noReply: true, text: /\bENODATA\b|\bNODATA\b/, status: 'X.4.4', reason: 'The recipient domain has no mail server address in DNS.' },
  { id: 'dns-badname', class: 'dns', action: 'bounce', noReply: true, text: /\bEBADNAME\b/, status: 'X.1.2', reason: 'The recipient domain is not a valid DNS name.' },
  // Every other DNS failure (SERVFAIL, timeout, refused, unreachable resolver) means "no answer
  // yet", not "no such name". Listed before the network rules: "queryMx ECONNREFUSED" is the
  // resolver refusing, not the mail server.
  { id: 'dns-temporary-stage', class: 'dns', action: 'retry', noReply: true, stages: ['dns'], status: 'X.4.3', reason: 'DNS lookup failed temporarily.' },
  { id: 'dns-temporary', class: 'dns', action: 'retry', noReply: true, text: new RegExp(`${DNS_CALL.source}|\\bE?SERVFAIL\\b|\\bEAI_AGAIN\\b|\\bETIMEOUT\\b`), status: 'X.4.3', reason: 'DNS lookup failed temporarily.' },
  // The outbound client's own message when no MX host has an address: it treats that as
  // temporary (a half-updated zone), so do we.
  { id: 'dns-no-address', class: 'dns', action: 'retry', noReply: true, text: /\bno address for any MX\b/i, status: 'X.4.4', reason: 'No mail server of the recipient domain has an address.' },

  // ---- No SMTP reply: TLS ----
  // TLS failures are retried: with MTA-STS enforced they stop delivery, and RFC 8461 has the
  // sender try again later rather than fall back to plaintext. Postfix reports 4.7.5 for
  // certificate failures (RFC 3463 X.7.5 cryptographic failure); X.7.10 is registered for AUTH
  // mechanisms that need encryption, so it is not used here.
  // The outbound client prefixes every no-reply failure under an enforced policy with
  // "MTA-STS: ", so only its "no MX ... matches its MTA-STS policy" is keyed on here; a
  // prefixed ECONNREFUSED is still a network failure.
  { id: 'mta-sts', class: 'tls', action: 'retry', noReply: true, text: /\bmatches its MTA-STS policy\b/, status: 'X.7.5', reason: "No mail server of the recipient domain matches its MTA-STS policy." },
  { id: 'tls-certificate', class: 'tls', action: 'retry', noReply: true, text: /certificate|\bcert's altnames\b|\bCERT_|SELF_SIGNED|UNABLE_TO_(?:VERIFY|GET)/i, status: 'X.7.5', reason: "The receiving server's TLS certificate could not be verified." },
  { id: 'tls-handshake', class: 'tls', action: 'retry', noReply: true, text: /\bTLS\b|\bSSL\b|handshake|wrong version number|\bERR_SSL_|\bERR_TLS_/i, status: 'X.7.5', reason: 'The TLS handshake with the receiving server failed.' },
  { id: 'tls-stage', class: 'tls', action: 'retry', noReply: true, stages: ['tls'], status: 'X.7.5', reason: 'The TLS handshake with the receiving server failed.' },

  // ---- No SMTP reply: other client-side verdicts ----
  // nodemailer refuses before DATA when the message is larger than the SIZE the server
  // announced (RFC 1870); that limit will not change by waiting.
  { id: 'size-announced', class: 'too-big', action: 'bounce', noReply: true, text: /\bMessage size larger than allowed\b/, status: 'X.3.4', reason: 'The message is larger than the receiving server accepts.' },

  // ---- No SMTP reply: network ----
  // X.4.1 "no answer from host": the connection was never established.
  { id: 'network-no-answer', class: 'network', action: 'retry', noReply: true, text: /\bE(?:CONNREFUSED|HOSTUNREACH|NETUNREACH|HOSTDOWN|NETDOWN|ADDRNOTAVAIL)\b|\bConnection timeout\b|\bconnect ETIMEDOUT\b/i, status: 'X.4.1', reason: 'The receiving server could not be reached.' },
  // X.4.2 "bad connection": connected, but the session broke or stalled.
  { id: 'network-broken', class: 'network', action: 'retry', noReply: true, text: /\bE(?:CONNRESET|PIPE|TIMEDOUT|CONNABORTED)\b|Greeting never received|closed unexpectedly|Server closed the connection|socket hang up|\btime(?:d)? ?out\b/i, status: 'X.4.2', reason: 'The connection to the receiving server broke off.' },
  { id: 'network-stage', class: 'network', action: 'retry', noReply: true, stages: ['connect'], status: 'X.4.1', reason: 'The receiving server could not be reached.' },

  // ---- SMTP replies: exceptions stated by standards ----
  // RFC 7505: a null MX means the domain accepts no mail; 556 is the code RFC 7504 gives it.
  { id: 'null-mx', class: 'dns', action: 'by-code', codes: [556, 556], status: 'X.1.10', reason: 'The recipient domain does not accept mail (null MX).' },
  // RFC 5321 4.5.3.1.10: RFC 821 wrongly gave 552 for "too many recipients"; clients SHOULD take
  // that 552 as temporary, so the remaining recipients go in a later transaction.
  { id: 'too-many-recipients-552', class: 'rate-limit', action: 'retry', noReply: false, codes: [552, 552], text: /too many recipients/i, status: 'X.5.3', reason: 'The receiving server takes fewer recipients per message; the rest are retried.' },
  { id: 'too-many-recipients', class: 'rate-limit', action: 'by-code', noReply: false, text: /too many recipients/i, status: 'X.5.3', reason: 'The receiving server takes fewer recipients per message.' },
  // With TLS required we send STARTTLS even when not offered; the refusal (often 502 or 500)
  // is about that command, not about the message, so like Postfix ("TLS is required, but was
  // not offered", 4.7.4) we defer instead of bouncing.
  { id: 'starttls-refused', class: 'tls', action: 'retry', noReply: false, stages: ['tls'], status: 'X.7.4', ownStatus: true, reason: 'The receiving server does not offer the TLS encryption this domain requires.' },

  // ---- SMTP replies: by text, most specific first ----
  // Exim's sender verification callout failed ("550-Verification failed for <x>" ...
  // "550 Sender verify failed"), or Postfix's sender checks. Before unknown-user: Exim's reply
  // also contains "Unrouteable address", about OUR sender.
  { id: 'sender-rejected', class: 'policy', action: 'by-code', noReply: false, text: /verification failed for|sender verify failed|sender address rejected|sender verification/i, status: 'X.1.8', reason: 'The receiving server refused our sender address.' },
  { id: 'greylist', class: 'greylist', action: 'by-code', noReply: false, text: /gr[ae]y-?list/i, status: 'X.7.1', reason: 'The receiving server greylisted the message.' },
  // Over-quota wordings: RFC 5321's "exceeded storage allocation", Gmail's "out of storage
  // space", Dovecot's "Quota exceeded (mailbox for user is full)", Yahoo's "over quota". Not
  // "insufficient system storage": that is the server's disk (X.3.1), not the mailbox.
  { id: 'mailbox-full', class: 'mailbox-full', action: 'by-code', noReply: false, text: /mailbox (?:is )?full|mailbox for user is full|over ?quota|quota exceeded|exceed(?:ed|s) (?:its |the |their )?(?:storage|quota)|out of storage space|storage allocation/i, status: 'X.2.2', reason: "The recipient's mailbox is full." },
  { id: 'too-big', class: 'too-big', action: 'by-code', noReply: false, text: /message (?:size|length)|size limit|too (?:big|large)|exceeds? (?:the )?(?:fixed |maximum |max )+(?:message )?size/i, status: 'X.3.4', reason: 'The message is larger than the receiving server accepts.' },
  // Before spam: Gmail's rate limit text also says "unsolicited" and "spam".
  { id: 'rate-limit', class: 'rate-limit', action: 'by-code', noReply: false, text: /rate limit|rate-limit|unusual rate|receiving mail (?:at a rate|too quickly)|too many (?:connections|concurrent|messages|sessions)|\bserver busy\b|throttl|\bmax(?:imum)? (?:number of )?messages? per (?:connection|session)|resources temporarily unavailable/i, status: 'X.4.5', reason: 'The receiving server is limiting how fast it accepts mail from us.' },
  // Before reputation and spam: a virus rejection may also name the scanner's block list.
  { id: 'virus', class: 'virus', action: 'by-code', noReply: false, text: /virus|malware|infected|\btrojan\b|potential security issue/i, status: 'X.7.1', reason: 'The receiving server found malicious content in the message.' },
  // IP or domain reputation: DNS block lists (Postfix "blocked using zen.spamhaus.org"),
  // Microsoft's "block list (S3150)", Yahoo's [TSS04]/[TSS09] deferrals, Gmail's "very low
  // reputation". Before spam: Spamhaus contains "spam".
  { id: 'reputation', class: 'reputation', action: 'by-code', noReply: false, text: /reputation|block ?list|black ?list|deny ?list|blocked using|listed (?:at|in|on|by)\b|spamhaus|spamcop|barracuda|\bDNSBL\b|\bRBL\b|\[TSS?\d+\]|user complaints|traffic not accepted from this IP/i, status: 'X.7.1', reason: 'The receiving server refuses mail from our IP address or domain because of its reputation.' },
  // Authentication: Gmail's 5.7.26 / "does not have authentication information" texts say
  // "spam" too, so this precedes the spam rule.
  { id: 'reverse-dns', class: 'policy', action: 'by-code', noReply: false, text: /\bPTR record|reverse DNS|\brDNS\b|cannot find your (?:reverse )?hostname/i, status: 'X.7.25', reason: "The receiving server refused our IP address because of its reverse DNS." },
  { id: 'authentication', class: 'policy', action: 'by-code', noReply: false, text: /\bDMARC\b|\bSPF\b|\bDKIM\b|unauthenticated|authentication (?:checks|information|fail)|pass authentication/i, status: 'X.7.1', reason: 'The receiving server refused the message because its sender authentication (SPF, DKIM, DMARC) failed.' },
  // "554 5.7.1 Spam message rejected" is rspamd's default; Gmail says "likely unsolicited mail".
  { id: 'spam', class: 'spam', action: 'by-code', noReply: false, text: /\bspam\b|unsolicited|\bjunk\b|nature of the content/i, status: 'X.7.1', reason: 'The receiving server judged the message to be spam.' },
  // RFC 3207: "530 5.7.0 Must issue a STARTTLS command first"; Gmail "TLS required for RCPT domain".
  // X.7.0 as RFC 3207 uses it (X.7.10 is registered for AUTH mechanisms, not for transport).
  { id: 'tls-required', class: 'tls', action: 'by-code', noReply: false, text: /\bSTARTTLS\b|\bTLS required\b|encryption required/i, status: 'X.7.0', reason: 'The receiving server requires TLS encryption.' },
  // Recipient does not exist: Gmail, Postfix ("User unknown in ... table"), Exim ("Unrouteable
  // address"), Yahoo ("doesn't have a yahoo.com account"), qmail ("no mailbox here by that name"),
  // Microsoft ("mailbox unavailable"; Exchange Online's directory-based edge blocking answers
  // "5.4.1 Recipient address rejected: Access denied"), disabled accounts (X.2.1).
  { id: 'unknown-user', class: 'unknown-user', action: 'by-code', noReply: false, text: /user unknown|unknown (?:user|recipient)|no such (?:user|mailbox|recipient|address)|(?:does not|doesn't|did not) exist|doesn't have an? \S+ account|mailbox (?:is )?unavailable|mailbox not found|unrouteable address|invalid (?:recipient|mailbox)|no mailbox here|recipient address rejected: access denied/i, status: 'X.1.1', reason: "The recipient's address does not exist at the receiving server." },
  { id: 'mailbox-disabled', class: 'unknown-user', action: 'by-code', noReply: false, text: /(?:account|mailbox|address) (?:is |has been )?(?:disabled|inactive|suspended|deactivated)|is (?:disabled|inactive)\b/i, status: 'X.2.1', reason: "The recipient's mailbox is disabled." },
  // Relay refusals and explicit policy texts (Yahoo 5.7.9, Exim "Administrative prohibition").
  { id: 'policy', class: 'policy', action: 'by-code', noReply: false, text: /polic(?:y|ies)|administrative prohibition|prohibited|relay(?:ing)? (?:access )?(?:denied|not permitted)|not permitted to relay|allowed rcpthosts|client host rejected|access denied|not authori[sz]ed/i, status: 'X.7.1', reason: "The receiving server refused the message under its policy." },
  // Exim's default text for any ACL or router defer: could be greylisting, could be a failed
  // lookup on their side; nothing in it says which.
  { id: 'remote-local-problem', class: 'other', action: 'by-code', noReply: false, text: /temporary local problem|local error in processing|temporary system problem|internal server error/i, status: 'X.3.0', reason: 'The receiving server had a temporary problem of its own.' },
  // Plain "try again later" on 450/451 is what greylisting daemons say (milter-greylist
  // "451 4.7.1 Greylisting in action, please come back later", "451 4.7.1 Please try again
  // later"); on 421 it is a connection-level brush-off, left to the fallbacks.
  { id: 'greylist-generic', class: 'greylist', action: 'by-code', codes: [450, 451], text: /(?:try|come back) (?:again )?later|come back in\b/i, status: 'X.7.1', reason: 'The receiving server asked us to try again later (likely greylisting).' },

  // 421 "service not available, closing transmission channel" (RFC 5321) with no more telling
  // text is about the session, not the message: Gmail's "421 4.7.0 Try again later, closing
  // connection" would otherwise fall to the X.7 policy rule below.
  { id: 'service-closing', class: 'other', action: 'by-code', codes: [421, 421], status: 'X.3.2', reason: 'The receiving server is not accepting mail right now.' },

  // ---- SMTP replies: by the enhanced status the reply carried ----
  { id: 'status-null-mx', class: 'dns', action: 'by-code', noReply: false, enhanced: /^\d\.1\.10$/, status: 'X.1.10', reason: 'The recipient domain does not accept mail (null MX).' },
  { id: 'status-bad-address', class: 'unknown-user', action: 'by-code', noReply: false, enhanced: /^\d\.1\.[1-6]$/, status: 'X.1.1', reason: "The recipient's address does not exist at the receiving server." },
  { id: 'status-sender', class: 'policy', action: 'by-code', noReply: false, enhanced: /^\d\.1\.[78]$/, status: 'X.1.8', reason: 'The receiving server refused our sender address.' },
  { id: 'status-disabled', class: 'unknown-user', action: 'by-code', noReply: false, enhanced: /^\d\.2\.1$/, status: 'X.2.1', reason: "The recipient's mailbox is disabled." },
  { id: 'status-mailbox-full', class: 'mailbox-full', action: 'by-code', noReply: false, enhanced: /^\d\.2\.2$/, status: 'X.2.2', reason: "The recipient's mailbox is full." },
  { id: 'status-too-big', class: 'too-big', action: 'by-code', noReply: false, enhanced: /^\d\.(?:2\.3|3\.4)$/, status: 'X.3.4', reason: 'The message is larger than the receiving server accepts.' },
  { id: 'status-network', class: 'network', action: 'by-code', noReply: false, enhanced: /^\d\.4\.[12]$/, status: 'X.4.2', reason: 'The receiving server could not pass the message on.' },
  { id: 'status-routing', class: 'dns', action: 'by-code', noReply: false, enhanced: /^\d\.4\.[34]$/, status: 'X.4.4', reason: 'The receiving server could not route the message.' },
  { id: 'status-congestion', class: 'rate-limit', action: 'by-code', noReply: false, enhanced: /^\d\.(?:4\.5|5\.3)$/, status: 'X.4.5', reason: 'The receiving server is limiting how fast it accepts mail from us.' },
  // RFC 3463 X.7.4/X.7.5, RFC 4954 X.7.11, RFC 8689 X.7.30 (REQUIRETLS).
  { id: 'status-tls', class: 'tls', action: 'by-code', noReply: false, enhanced: /^\d\.7\.(?:4|5|11|30)$/, status: 'X.7.5', reason: 'TLS with the receiving server failed.' },
  // RFC 7372 X.7.20-X.7.26: DKIM, SPF, reverse DNS and combined authentication failures.
  { id: 'status-authentication', class: 'policy', action: 'by-code', noReply: false, enhanced: /^\d\.7\.2[0-6]$/, status: 'X.7.26', reason: 'The receiving server refused the message because its sender authentication failed.' },
  { id: 'status-security', class: 'policy', action: 'by-code', noReply: false, enhanced: /^\d\.7\.\d+$/, status: 'X.7.1', reason: 'The receiving server refused the message under its policy.' },

  // ---- Fallbacks ----
  { id: 'reply-other', class: 'other', action: 'by-code', noReply: false, status: 'X.0.0', reason: 'The receiving server refused the message.' },
  { id: 'no-reply-other', class: 'other', action: 'retry', noReply: true, status: 'X.4.0', reason: 'Delivery failed before the receiving server answered.' },
];

const STATUS = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
// RFC 2034: the enhanced status follows the basic code ("550-5.1.1 ..."); the text may or may not
// start with the basic code, and a multi-line reply repeats it on every line.
const STATUS_AT_START = /^(?:[2-5]\d\d[ -])?([245]\.\d{1,3}\.\d{1,3})(?![\d.])/;
const STATUS_AFTER_CODE = /\b[2-5]\d\d[ -]([245]\.\d{1,3}\.\d{1,3})(?![\d.])/;
// qmail appends it in parentheses: "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)".
const STATUS_QMAIL = /\(#([245]\.\d{1,3}\.\d{1,3})\)/;
const CODE_AT_START = /^([2-5]\d\d)(?:[ -]|$)/;

function carriedStatus(a: Attempt, text: string): string | null {
  if (a.enhanced && STATUS.test(a.enhanced.trim())) return a.enhanced.trim();
  const m = STATUS_AT_START.exec(text) ?? STATUS_AFTER_CODE.exec(text) ?? STATUS_QMAIL.exec(text);
  return m ? m[1]! : null;
}

function matches(rule: Rule, code: number | null, status: string | null, text: string, stage: Stage | undefined): boolean {
  if (rule.noReply === true && code !== null) return false;
  if (rule.noReply === false && code === null) return false;
  if (rule.codes && (code === null || code < rule.codes[0] || code > rule.codes[1])) return false;
  if (rule.stages && (stage === undefined || !rule.stages.includes(stage))) return false;
  if (rule.enhanced && (status === null || !rule.enhanced.test(status))) return false;
  if (rule.text && !rule.text.test(text)) return false;
  return true;
}

function isPermanent(action: Action, code: number | null): boolean {
  if (action === 'retry') return false;
  if (code === null) return action === 'bounce';
  return code >= 500; // 4xx is always temporary; 2xx/3xx here means a confused exchange: retry
}

/**
 * The reply's words without its codes: a multi-line reply repeats "550-5.7.1 " on every line
 * (Gmail breaks sentences across lines), and once newlines are collapsed those prefixes would
 * sit in the middle of phrases the rules look for.
 */
function replyWords(text: string): string {
  const lead = /^([2-5]\d\d)[ -](?:([245]\.\d{1,3}\.\d{1,3}) )?/.exec(text);
  if (!lead) return text;
  const status = lead[2] ? `(?:${lead[2].replace(/\./g, '\\.')} )?` : '';
  return text.slice(lead[0].length).replace(new RegExp(`(^|\\s)${lead[1]}[ -]${status}`, 'g'), '$1').trim();
}

export function classify(a: Attempt): Classification {
  const text = a.text.replace(/\s+/g, ' ').trim();
  // An error object without responseCode may still carry the reply as its text.
  let code = a.code;
  if (code === null) {
    const m = CODE_AT_START.exec(text);
    if (m) code = Number(m[1]);
  }
  // Without a reply there is no remote status to report; the rule's own says what happened.
  const carried = code === null ? null : carriedStatus(a, text);
  const words = code === null ? text : replyWords(text);
  const rule = RULES.find((r) => matches(r, code, carried, words, a.stage)) ?? RULES[RULES.length - 1]!;
  const permanent = isPermanent(rule.action, code);
  // X.0.0 says nothing; the rule's status is at least as specific.
  const useCarried = carried !== null && !rule.ownStatus && !/^\d\.0\.0$/.test(carried);
  const detail = (useCarried ? carried : rule.status).replace(/^[245X]\./, '');
  return { class: rule.class, permanent, enhanced: `${permanent ? 5 : 4}.${detail}`, reason: rule.reason, rule: rule.id };
}
