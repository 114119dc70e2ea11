import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, RULES, type Attempt, type FailureClass } from '../src/queue/classify.js';

interface Row {
  source: string;
  attempt: Attempt;
  class: FailureClass;
  permanent: boolean;
  enhanced: string;
  rule: string;
}

// Multi-line replies are given as nodemailer hands them over: lines joined with "\n", every line
// keeping its "550-5.1.1 " prefix.
const reply = (code: number, text: string, stage?: Attempt['stage']): Attempt => ({ code, text, ...(stage ? { stage } : {}) });
const noReply = (text: string, stage?: Attempt['stage']): Attempt => ({ code: null, text, ...(stage ? { stage } : {}) });

// Texts real servers and Node/nodemailer send (addresses and IPs replaced with documentation ones).
const REAL: Row[] = [
  // ---- Gmail ----
  { source: 'Gmail no such user', attempt: reply(550, "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550-5.1.1 unnecessary spaces. Learn more at\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1-20020a05 - gsmtp", 'rcpt'), class: 'unknown-user', permanent: true, enhanced: '5.1.1', rule: 'unknown-user' },
  { source: 'Gmail over quota (temporary)', attempt: reply(452, "452-4.2.2 The recipient's inbox is out of storage space. Please direct the\n452-4.2.2 recipient to\n452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp a1-20020a05 - gsmtp", 'rcpt'), class: 'mailbox-full', permanent: false, enhanced: '4.2.2', rule: 'mailbox-full' },
  { source: 'Gmail spam', attempt: reply(550, '550-5.7.1 [192.0.2.1] Our system has detected that this message is\n550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n550-5.7.1 this message has been blocked. Please visit\n550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError a1-20020a05 - gsmtp', 'data'), class: 'spam', permanent: true, enhanced: '5.7.1', rule: 'spam' },
  { source: 'Gmail rate limit (since 2023)', attempt: reply(421, '421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of\n421-4.7.28 unsolicited mail originating from your IP address. To protect our\n421-4.7.28 users from spam, mail sent from your IP address has been temporarily\n421-4.7.28 rate limited. Please visit\n421 4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp'), class: 'rate-limit', permanent: false, enhanced: '4.7.28', rule: 'rate-limit' },
  { source: 'Gmail rate limit (older 4.7.0 wording)', attempt: reply(421, '421-4.7.0 [192.0.2.1] Our system has detected an unusual rate of\n421-4.7.0 unsolicited mail originating from your IP address. To protect our\n421-4.7.0 users from spam, mail sent from your IP address has been temporarily\n421 4.7.0 blocked. - gsmtp'), class: 'rate-limit', permanent: false, enhanced: '4.7.0', rule: 'rate-limit' },
  { source: 'Gmail DMARC', attempt: reply(550, "550-5.7.26 Unauthenticated email from example.com is not accepted due to\n550-5.7.26 domain's DMARC policy. Please contact the administrator of\n550-5.7.26 example.com domain if this was a legitimate mail. To learn about the\n550 5.7.26 DMARC initiative, go to https://support.google.com/mail/?p=DmarcRejection - gsmtp", 'data'), class: 'policy', permanent: true, enhanced: '5.7.26', rule: 'authentication' },
  { source: 'Gmail unauthenticated (2024 wording)', attempt: reply(550, '550-5.7.26 This mail is unauthenticated, which poses a security risk to the\n550-5.7.26 sender and Gmail users, and has been blocked. The sender must\n550-5.7.26 authenticate with at least one of SPF or DKIM. - gsmtp', 'data'), class: 'policy', permanent: true, enhanced: '5.7.26', rule: 'authentication' },
  { source: 'Gmail no authentication (421)', attempt: reply(421, '421-4.7.0 This message does not have authentication information or fails to\n421-4.7.0 pass authentication checks. To best protect our users from spam, the\n421 4.7.0 message has been blocked. - gsmtp', 'data'), class: 'policy', permanent: false, enhanced: '4.7.0', rule: 'authentication' },
  { source: 'Gmail size', attempt: reply(552, "552-5.2.3 Your message exceeded Google's message size limits. Please visit\n552-5.2.3 https://support.google.com/mail/?p=MaxSizeError to view our size\n552 5.2.3 guidelines. a1-20020a05 - gsmtp", 'data'), class: 'too-big', permanent: true, enhanced: '5.2.3', rule: 'too-big' },
  { source: 'Gmail per-user rate', attempt: reply(450, '450-4.2.1 The user you are trying to contact is receiving mail at a rate that\n450-4.2.1 prevents additional messages from being delivered. Please resend your\n450-4.2.1 message at a later time. - gsmtp', 'rcpt'), class: 'rate-limit', permanent: false, enhanced: '4.2.1', rule: 'rate-limit' },
  { source: 'Gmail low domain reputation', attempt: reply(421, '421-4.7.0 [192.0.2.1] Our system has detected that this message is suspicious\n421-4.7.0 due to the very low reputation of the sending domain. To best protect\n421-4.7.0 our users from spam, the message has been blocked. - gsmtp', 'data'), class: 'reputation', permanent: false, enhanced: '4.7.0', rule: 'reputation' },
  { source: 'Gmail suspicious content', attempt: reply(421, '421-4.7.0 [192.0.2.1] Our system has detected that this message is suspicious\n421-4.7.0 due to the nature of the content and/or the links within. To best\n421-4.7.0 protect our users from spam, the message has been blocked. - gsmtp', 'data'), class: 'spam', permanent: false, enhanced: '4.7.0', rule: 'spam' },
  { source: 'Gmail missing PTR', attempt: reply(550, '550-5.7.25 [192.0.2.1] The IP address sending this message does not have a\n550-5.7.25 PTR record setup, or the corresponding forward DNS entry does not\n550-5.7.25 point to the sending IP. As a policy, Gmail does not accept messages\n550-5.7.25 from IPs with missing PTR records. - gsmtp'), class: 'policy', permanent: true, enhanced: '5.7.25', rule: 'reverse-dns' },
  { source: 'Gmail dangerous attachment', attempt: reply(552, '552-5.7.0 This message was blocked because its content presents a potential\n552-5.7.0 security issue. Please visit\n552-5.7.0  https://support.google.com/mail/?p=BlockedMessage to review our\n552 5.7.0 message content and attachment content guidelines. - gsmtp', 'data'), class: 'virus', permanent: true, enhanced: '5.7.0', rule: 'virus' },
  { source: 'Gmail disabled account', attempt: reply(550, '550-5.2.1 The email account that you tried to reach is disabled. - gsmtp', 'rcpt'), class: 'unknown-user', permanent: true, enhanced: '5.2.1', rule: 'mailbox-disabled' },
  { source: 'Gmail TLS required', attempt: reply(421, '421 4.7.0 TLS required for RCPT domain, closing connection.', 'rcpt'), class: 'tls', permanent: false, enhanced: '4.7.0', rule: 'tls-required' },
  { source: 'Gmail try again later', attempt: reply(421, '421 4.7.0 Try again later, closing connection.', 'connect'), class: 'other', permanent: false, enhanced: '4.7.0', rule: 'service-closing' },

  // ---- Outlook / Office 365 ----
  { source: 'Outlook.com no such mailbox', attempt: reply(550, '550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [AM0EUR02FT001.eop-EUR02.prod.protection.outlook.com]', 'rcpt'), class: 'unknown-user', permanent: true, enhanced: '5.5.0', rule: 'unknown-user' },
  { source: 'Exchange Online directory-based edge blocking', attempt: reply(550, '550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DB5EUR03FT001.eop-EUR03.prod.protection.outlook.com]', 'rcpt'), class: 'unknown-user', permanent: true, enhanced: '5.4.1', rule: 'unknown-user' },
  { source: 'Exchange Online server busy', attempt: reply(451, '451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (AS761) [DB5EUR03FT001.eop-EUR03.prod.protection.outlook.com]', 'rcpt'), class: 'rate-limit', permanent: false, enhanced: '4.7.500', rule: 'rate-limit' },
  { source: 'Outlook.com block list', attempt: reply(550, "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [DB3EUR04FT007.eop-eur04.prod.protection.outlook.com]", 'mail'), class: 'reputation', permanent: true, enhanced: '5.7.1', rule: 'reputation' },

  // ---- Yahoo ----
  { source: 'Yahoo policy', attempt: reply(554, '554 5.7.9 Message not accepted for policy reasons.  See https://senders.yahooinc.com/error-codes', 'data'), class: 'policy', permanent: true, enhanced: '5.7.9', rule: 'policy' },
  { source: 'Yahoo TSS04', attempt: reply(421, '421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes', 'mail'), class: 'reputation', permanent: false, enhanced: '4.7.0', rule: 'reputation' },
  { source: 'Yahoo TSS09', attempt: reply(553, '553 5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes', 'mail'), class: 'reputation', permanent: true, enhanced: '5.7.2', rule: 'reputation' },
  { source: 'Yahoo no such user', attempt: reply(554, "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - mta1001.mail.bf1.yahoo.com", 'data'), class: 'unknown-user', permanent: true, enhanced: '5.1.1', rule: 'unknown-user' },
  { source: 'Yahoo over quota', attempt: reply(554, '554 delivery error: dd Sorry, your message to someone@yahoo.com cannot be delivered. This account is over quota. [0] - mta1001.mail.bf1.yahoo.com', 'data'), class: 'mailbox-full', permanent: true, enhanced: '5.2.2', rule: 'mailbox-full' },
  { source: 'Yahoo per-connection limit', attempt: reply(421, '421 Max message per connection reached, closing transmission channel', 'mail'), class: 'rate-limit', permanent: false, enhanced: '4.4.5', rule: 'rate-limit' },

  // ---- Postfix ----
  { source: 'Postfix unknown local user', attempt: reply(550, '550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table', 'rcpt'), class: 'unknown-user', permanent: true, enhanced: '5.1.1', rule: 'unknown-user' },
  { source: 'Postfix + postgrey', attempt: reply(450, '450 4.2.0 <someone@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html', 'rcpt'), class: 'greylist', permanent: false, enhanced: '4.2.0', rule: 'greylist' },
  { source: 'Postfix reject_rbl_client', attempt: reply(554, '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1', 'rcpt'), class: 'reputation', permanent: true, enhanced: '5.7.1', rule: 'reputation' },
  { source: 'Postfix message_size_limit', attempt: reply(552, '552 5.3.4 Message size exceeds fixed limit', 'data'), class: 'too-big', permanent: true, enhanced: '5.3.4', rule: 'too-big' },
  { source: 'Postfix queue file system full', attempt: reply(452, '452 4.3.1 Insufficient system storage', 'mail'), class: 'other', permanent: false, enhanced: '4.3.1', rule: 'reply-other' },
  { source: 'Postfix relay refused', attempt: reply(554, '554 5.7.1 <someone@example.net>: Relay access denied', 'rcpt'), class: 'policy', permanent: true, enhanced: '5.7.1', rule: 'policy' },
  { source: 'Postfix reject_unknown_client_hostname', attempt: reply(450, '450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]', 'rcpt'), class: 'policy', permanent: false, enhanced: '4.7.25', rule: 'reverse-dns' },
  { source: 'Postfix reject_unknown_sender_domain', attempt: reply(450, '450 4.1.8 <me@example.org>: Sender address rejected: Domain not found', 'rcpt'), class: 'policy', permanent: false, enhanced: '4.1.8', rule: 'sender-rejected' },
  { source: 'Postfix smtpd_tls_security_level=encrypt', attempt: reply(530, '530 5.7.0 Must issue a STARTTLS command first', 'mail'), class: 'tls', permanent: true, enhanced: '5.7.0', rule: 'tls-required' },
  { source: 'Postfix recipient limit', attempt: reply(452, '452 4.5.3 Error: too many recipients', 'rcpt'), class: 'rate-limit', permanent: false, enhanced: '4.5.3', rule: 'too-many-recipients' },
  { source: 'Postfix refusing STARTTLS it never offered', attempt: reply(502, '502 5.5.2 Error: command not recognized', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.4', rule: 'starttls-refused' },

  // ---- Dovecot LMTP behind Postfix ----
  { source: 'Dovecot quota', attempt: reply(552, '552 5.2.2 <someone@example.com> Quota exceeded (mailbox for user is full)', 'data'), class: 'mailbox-full', permanent: true, enhanced: '5.2.2', rule: 'mailbox-full' },
  { source: 'Dovecot quota, quota_full_tempfail', attempt: reply(452, '452 4.2.2 <someone@example.com> Quota exceeded (mailbox for user is full)', 'data'), class: 'mailbox-full', permanent: false, enhanced: '4.2.2', rule: 'mailbox-full' },

  // ---- Exim ----
  { source: 'Exim unrouteable', attempt: reply(550, '550 Unrouteable address', 'rcpt'), class: 'unknown-user', permanent: true, enhanced: '5.1.1', rule: 'unknown-user' },
  { source: 'Exim defer', attempt: reply(451, '451 Temporary local problem - please try later', 'rcpt'), class: 'other', permanent: false, enhanced: '4.3.0', rule: 'remote-local-problem' },
  { source: 'Exim sender verify', attempt: reply(550, '550-Verification failed for <me@example.org>\n550-Unrouteable address\n550 Sender verify failed', 'rcpt'), class: 'policy', permanent: true, enhanced: '5.1.8', rule: 'sender-rejected' },
  { source: 'Exim ACL deny', attempt: reply(550, '550 Administrative prohibition', 'rcpt'), class: 'policy', permanent: true, enhanced: '5.7.1', rule: 'policy' },
  { source: 'Exim smtp_accept_max_per_host', attempt: reply(421, '421 Too many concurrent SMTP connections from this IP address; please try again later.', 'connect'), class: 'rate-limit', permanent: false, enhanced: '4.4.5', rule: 'rate-limit' },
  { source: 'Exim malware ACL (documented example message)', attempt: reply(550, '550 This message contains a virus (Eicar-Test-Signature).', 'data'), class: 'virus', permanent: true, enhanced: '5.7.1', rule: 'virus' },

  // ---- qmail ----
  { source: 'qmail-smtpd rcpthosts', attempt: reply(553, "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", 'rcpt'), class: 'policy', permanent: true, enhanced: '5.7.1', rule: 'policy' },
  { source: 'qmail-smtpd queue failure', attempt: reply(451, '451 qq temporary problem (#4.3.0)', 'data'), class: 'other', permanent: false, enhanced: '4.3.0', rule: 'reply-other' },

  // ---- Filters ----
  { source: 'rspamd reject', attempt: reply(554, '554 5.7.1 Spam message rejected', 'data'), class: 'spam', permanent: true, enhanced: '5.7.1', rule: 'spam' },
  { source: 'rspamd antivirus module', attempt: reply(554, '554 5.7.1 clamav: virus found: "Eicar-Signature"', 'data'), class: 'virus', permanent: true, enhanced: '5.7.1', rule: 'virus' },
  { source: 'milter-greylist', attempt: reply(451, '451 4.7.1 Greylisting in action, please come back in 00:05:00', 'rcpt'), class: 'greylist', permanent: false, enhanced: '4.7.1', rule: 'greylist' },
  { source: 'greylisting, plain wording', attempt: reply(451, '451 4.7.1 Please try again later', 'rcpt'), class: 'greylist', permanent: false, enhanced: '4.7.1', rule: 'greylist-generic' },

  // ---- fe's own outbound client ----
  { source: 'fe outbound: null MX', attempt: reply(556, 'example.com accepts no mail (null MX)'), class: 'dns', permanent: true, enhanced: '5.1.10', rule: 'null-mx' },
  { source: 'fe outbound: no addresses', attempt: noReply('no address for any MX of example.com'), class: 'dns', permanent: false, enhanced: '4.4.4', rule: 'dns-no-address' },
  { source: 'fe outbound: resolver error', attempt: noReply('MX lookup for example.com failed: DNS MX lookup for example.com failed: ETIMEOUT'), class: 'dns', permanent: false, enhanced: '4.4.3', rule: 'dns-temporary' },
  { source: 'fe outbound: MTA-STS mismatch', attempt: noReply('no MX of example.com matches its MTA-STS policy'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'mta-sts' },
  { source: 'fe outbound: MTA-STS prefix on a certificate error', attempt: noReply("MTA-STS: Hostname/IP does not match certificate's altnames: Host: mx.example.com. is not in the cert's altnames: DNS:other.example.net", 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-certificate' },
  { source: 'fe outbound: DANE mismatch', attempt: noReply('4.7.5 DANE: mx.example.com: the certificate (SHA-256 of its public key 00ff) matches none of the 1 usable TLSA record(s)', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'dane' },
  { source: 'fe outbound: DANE host without STARTTLS (the refusal is 5xx, never final)', attempt: noReply('4.7.5 DANE: mx.example.com: 502 5.5.1 Error: command not recognized', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'dane' },
  { source: 'fe outbound: bogus TLSA (SERVFAIL from the validating resolver)', attempt: noReply('4.7.5 DANE: the TLSA lookup for mx.example.com failed (DNS TLSA lookup for _25._tcp.mx.example.com failed: ESERVFAIL); not delivering to it without an answer', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'dane' },
  { source: 'fe outbound: MTA-STS prefix on a refused connection', attempt: noReply('MTA-STS: connect ECONNREFUSED 192.0.2.1:25'), class: 'network', permanent: false, enhanced: '4.4.1', rule: 'network-no-answer' },

  // ---- Node.js / nodemailer, no SMTP reply ----
  { source: 'node: refused', attempt: noReply('connect ECONNREFUSED 127.0.0.1:25', 'connect'), class: 'network', permanent: false, enhanced: '4.4.1', rule: 'network-no-answer' },
  { source: 'node: connect timeout', attempt: noReply('connect ETIMEDOUT 192.0.2.1:25', 'connect'), class: 'network', permanent: false, enhanced: '4.4.1', rule: 'network-no-answer' },
  { source: 'node: no route', attempt: noReply('connect EHOSTUNREACH 2001:db8::25:25', 'connect'), class: 'network', permanent: false, enhanced: '4.4.1', rule: 'network-no-answer' },
  { source: 'node: reset', attempt: noReply('read ECONNRESET', 'data'), class: 'network', permanent: false, enhanced: '4.4.2', rule: 'network-broken' },
  { source: 'nodemailer: connection timeout', attempt: noReply('Connection timeout', 'connect'), class: 'network', permanent: false, enhanced: '4.4.1', rule: 'network-no-answer' },
  { source: 'nodemailer: greeting timeout', attempt: noReply('Greeting never received', 'connect'), class: 'network', permanent: false, enhanced: '4.4.2', rule: 'network-broken' },
  { source: 'nodemailer: socket timeout', attempt: noReply('Timeout', 'data'), class: 'network', permanent: false, enhanced: '4.4.2', rule: 'network-broken' },
  { source: 'nodemailer: dropped', attempt: noReply('Connection closed unexpectedly', 'mail'), class: 'network', permanent: false, enhanced: '4.4.2', rule: 'network-broken' },
  { source: 'node: self-signed', attempt: noReply('self-signed certificate', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-certificate' },
  { source: 'node: self-signed, before Node 17', attempt: noReply('self signed certificate'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-certificate' },
  { source: 'node: incomplete chain', attempt: noReply('unable to verify the first certificate', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-certificate' },
  { source: 'node: expired', attempt: noReply('certificate has expired', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-certificate' },
  { source: 'node: name mismatch', attempt: noReply("Hostname/IP does not match certificate's altnames: Host: mx.example.com. is not in the cert's altnames: DNS:other.example.net"), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-certificate' },
  { source: 'node: TLS socket closed', attempt: noReply('Client network socket disconnected before secure TLS connection was established'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-handshake' },
  { source: 'nodemailer: TLS timeout', attempt: noReply('TLS handshake timed out', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-handshake' },
  { source: 'nodemailer: announced SIZE', attempt: noReply('Message size larger than allowed 10485760', 'mail'), class: 'too-big', permanent: true, enhanced: '5.3.4', rule: 'size-announced' },
  { source: 'node: NXDOMAIN', attempt: noReply('queryMx ENOTFOUND example.invalid', 'dns'), class: 'dns', permanent: true, enhanced: '5.1.2', rule: 'dns-nxdomain' },
  { source: 'node: NXDOMAIN, no stage given', attempt: noReply('queryMx ENOTFOUND example.invalid'), class: 'dns', permanent: true, enhanced: '5.1.2', rule: 'dns-nxdomain' },
  { source: 'node: NODATA', attempt: noReply('queryA ENODATA mx.example.com', 'dns'), class: 'dns', permanent: true, enhanced: '5.4.4', rule: 'dns-nodata' },
  { source: 'node: bad name', attempt: noReply('queryMx EBADNAME exa..mple', 'dns'), class: 'dns', permanent: true, enhanced: '5.1.2', rule: 'dns-badname' },
  { source: 'node: SERVFAIL', attempt: noReply('queryMx ESERVFAIL example.com'), class: 'dns', permanent: false, enhanced: '4.4.3', rule: 'dns-temporary' },
  { source: 'SERVFAIL, dns stage', attempt: noReply('SERVFAIL', 'dns'), class: 'dns', permanent: false, enhanced: '4.4.3', rule: 'dns-temporary-stage' },
  { source: 'node: resolver refused (not the MX)', attempt: noReply('queryMx ECONNREFUSED example.com'), class: 'dns', permanent: false, enhanced: '4.4.3', rule: 'dns-temporary' },
  { source: 'node: getaddrinfo', attempt: noReply('getaddrinfo EAI_AGAIN mx.example.com'), class: 'dns', permanent: false, enhanced: '4.4.3', rule: 'dns-temporary' },
];

// Not texts from real servers: minimal replies that reach the rules no real text above reaches,
// so that every rule in the table is exercised.
const MECHANICS: Row[] = [
  { source: 'RFC 5321 4.5.3.1.10: 552 too many recipients is temporary', attempt: reply(552, '552 Too many recipients', 'rcpt'), class: 'rate-limit', permanent: false, enhanced: '4.5.3', rule: 'too-many-recipients-552' },
  { source: 'status 5.1.10', attempt: reply(550, '550 5.1.10 Nope'), class: 'dns', permanent: true, enhanced: '5.1.10', rule: 'status-null-mx' },
  { source: 'status 5.1.3', attempt: reply(553, '553 5.1.3 Nope'), class: 'unknown-user', permanent: true, enhanced: '5.1.3', rule: 'status-bad-address' },
  { source: 'status 5.1.7', attempt: reply(553, '553 5.1.7 Nope'), class: 'policy', permanent: true, enhanced: '5.1.7', rule: 'status-sender' },
  { source: 'status 5.2.1', attempt: reply(550, '550 5.2.1 Nope'), class: 'unknown-user', permanent: true, enhanced: '5.2.1', rule: 'status-disabled' },
  { source: 'status 5.2.2', attempt: reply(552, '552 5.2.2 Nope'), class: 'mailbox-full', permanent: true, enhanced: '5.2.2', rule: 'status-mailbox-full' },
  { source: 'status 5.3.4', attempt: reply(552, '552 5.3.4 Nope'), class: 'too-big', permanent: true, enhanced: '5.3.4', rule: 'status-too-big' },
  { source: 'status 4.4.2', attempt: reply(451, '451 4.4.2 Nope'), class: 'network', permanent: false, enhanced: '4.4.2', rule: 'status-network' },
  { source: 'status 4.4.3', attempt: reply(451, '451 4.4.3 Nope'), class: 'dns', permanent: false, enhanced: '4.4.3', rule: 'status-routing' },
  { source: 'status 4.4.5', attempt: reply(451, '451 4.4.5 Nope'), class: 'rate-limit', permanent: false, enhanced: '4.4.5', rule: 'status-congestion' },
  { source: 'status 5.7.30', attempt: reply(550, '550 5.7.30 Nope'), class: 'tls', permanent: true, enhanced: '5.7.30', rule: 'status-tls' },
  { source: 'status 5.7.23', attempt: reply(550, '550 5.7.23 Nope'), class: 'policy', permanent: true, enhanced: '5.7.23', rule: 'status-authentication' },
  { source: 'status 5.7.1', attempt: reply(550, '550 5.7.1 Nope'), class: 'policy', permanent: true, enhanced: '5.7.1', rule: 'status-security' },
  { source: 'STARTTLS demanded, no enhanced status: RFC 3207 status', attempt: reply(530, '530 Must issue a STARTTLS command first', 'mail'), class: 'tls', permanent: true, enhanced: '5.7.0', rule: 'tls-required' },
  { source: 'no reply, connect stage, unknown text', attempt: noReply('Something odd', 'connect'), class: 'network', permanent: false, enhanced: '4.4.1', rule: 'network-stage' },
  { source: 'no reply, tls stage, unknown text', attempt: noReply('Something odd', 'tls'), class: 'tls', permanent: false, enhanced: '4.7.5', rule: 'tls-stage' },
  { source: 'no reply, no stage, unknown text', attempt: noReply('Something odd'), class: 'other', permanent: false, enhanced: '4.4.0', rule: 'no-reply-other' },
];

for (const row of [...REAL, ...MECHANICS]) {
  test(`${row.source}: ${row.class}, ${row.permanent ? 'bounce' : 'retry'}, ${row.enhanced}`, () => {
    const got = classify(row.attempt);
    assert.deepEqual(
      { class: got.class, permanent: got.permanent, enhanced: got.enhanced, rule: got.rule },
      { class: row.class, permanent: row.permanent, enhanced: row.enhanced, rule: row.rule },
    );
    assert.ok(got.reason.length > 0 && got.reason.length < 120 && /\.$/.test(got.reason), got.reason);
  });
}

test('every rule in the table is reached by some case above', () => {
  const reached = new Set([...REAL, ...MECHANICS].map((r) => r.rule));
  const ids = RULES.map((r) => r.id);
  assert.equal(new Set(ids).size, ids.length, 'rule ids are unique');
  assert.deepEqual(ids.filter((id) => !reached.has(id)), []);
});

test('4xx is never permanent, whatever the text says', () => {
  for (const text of ['450 4.1.1 <x@example.com>: Recipient address rejected: User unknown in local recipient table', '452 4.2.2 Mailbox full', '421 4.7.0 [TSS09] All messages from 192.0.2.1 will be permanently deferred']) {
    const code = Number(text.slice(0, 3));
    const got = classify({ code, text });
    assert.equal(got.permanent, false, text);
    assert.match(got.enhanced, /^4\./, text);
  }
});

test('5xx stays permanent when only the wording sounds temporary', () => {
  // Greylisting or "try again later" wording on a 5xx is not one of the standard exceptions.
  for (const text of ['550 5.7.1 Greylisted, please try again later', '554 5.7.1 Please try again later']) {
    const got = classify({ code: Number(text.slice(0, 3)), text });
    assert.equal(got.permanent, true, text);
    assert.match(got.enhanced, /^5\./, text);
  }
});

test('mailbox full is permanent exactly on 5xx', () => {
  assert.deepEqual(
    [552, 452].map((code) => classify({ code, text: `${code} ${code === 552 ? 5 : 4}.2.2 <x@example.com> Quota exceeded (mailbox for user is full)` })).map((c) => [c.class, c.permanent, c.enhanced]),
    [['mailbox-full', true, '5.2.2'], ['mailbox-full', false, '4.2.2']],
  );
});

test('the enhanced status given in the attempt wins over the text, and its class digit follows the decision', () => {
  const given = classify({ code: 550, enhanced: '5.1.6', text: '550 5.1.1 User unknown' });
  assert.equal(given.enhanced, '5.1.6');
  // A server that pairs 550 with a 4.x.x status: the basic code decides, the DSN says 5.
  const mismatched = classify({ code: 550, text: '550 4.2.0 User unknown' });
  assert.deepEqual([mismatched.permanent, mismatched.enhanced], [true, '5.2.0']);
  // A malformed given status is ignored in favour of the text's.
  assert.equal(classify({ code: 550, enhanced: 'five', text: '550 5.1.1 User unknown' }).enhanced, '5.1.1');
});

test('X.0.0 is replaced by the rule status, which says more', () => {
  assert.equal(classify({ code: 550, text: '550 5.0.0 User unknown' }).enhanced, '5.1.1');
  assert.equal(classify({ code: 550, text: '550 5.0.0 Nope' }).enhanced, '5.0.0');
});

test('a reply code found at the start of the text counts when the code is missing', () => {
  const got = classify({ code: null, text: '550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual mailbox table' });
  assert.deepEqual([got.class, got.permanent, got.enhanced], ['unknown-user', true, '5.1.1']);
});

test('a multi-line reply already collapsed to one line still matches phrases broken across lines', () => {
  const collapsed = '552-5.7.0 This message was blocked because its content presents a potential 552-5.7.0 security issue. - gsmtp';
  assert.equal(classify({ code: 552, text: collapsed }).class, 'virus');
});

test("Yahoo's trailing 4.16.55.1 is not taken for an enhanced status", () => {
  assert.equal(classify({ code: 421, text: '421 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1' }).enhanced, '4.7.1');
});
