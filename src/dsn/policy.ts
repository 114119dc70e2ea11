// When a delivery status notification must NOT be sent (RFC 3461 NOTIFY, RFC 3834 loop
// avoidance). A wrong "yes" here can start a mail loop or backscatter, so doubtful cases say no.

export type DsnKind = 'failed' | 'delayed' | 'delivered';

export interface DsnWantedOptions {
  /** MAIL FROM of the original; '' or '<>' is the null sender. */
  envelopeFrom: string;
  /** The original's header block (a whole message is fine: reading stops at the first blank line). */
  headers: Buffer;
  /** RCPT TO NOTIFY= values, e.g. ['FAILURE','DELAY'] or ['NEVER']; null/undefined when absent. */
  notify?: string[] | null;
  kind: DsnKind;
}

/** Header fields of a header block, names lower-cased, values unfolded and trimmed, in order. */
export function parseHeaderFields(block: Buffer): Array<[string, string]> {
  // latin1 keeps every byte as one char, so 8-bit junk cannot throw or shift offsets
  const text = block.toString('latin1');
  const end = /\r?\n\r?\n/.exec(text);
  const head = end ? text.slice(0, end.index) : text;
  const out: Array<[string, string]> = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line)) {
      // continuation of the previous field (RFC 5322 folding)
      const last = out[out.length - 1];
      if (last) last[1] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return out;
}

/** True when the null sender: nobody to notify, and answering bounces would loop. */
export function isNullSender(envelopeFrom: string): boolean {
  return envelopeFrom.trim().replace(/^<\s*/, '').replace(/\s*>$/, '') === '';
}

/** Auto-Submitted with any value but "no" (RFC 3834 §5); parameters and comments are ignored. */
export function isAutoSubmitted(fields: Array<[string, string]>): boolean {
  return fields.some(([name, value]) => {
    if (name !== 'auto-submitted') return false;
    const keyword = value.replace(/\([^)]*\)/g, '').split(';')[0]!.trim().toLowerCase();
    // an empty or garbled value is treated as automatic: silence is the safe side
    return keyword !== 'no';
  });
}

/** Mailing-list or bulk mail (RFC 2919 List-Id, RFC 2369 List-Unsubscribe, de-facto Precedence). */
export function isListMail(fields: Array<[string, string]>): boolean {
  return fields.some(([name, value]) => {
    if (name === 'list-id' || name === 'list-unsubscribe') return true;
    if (name === 'precedence') return /^(list|bulk|junk)\b/i.test(value);
    return false;
  });
}

const NOTIFY_FOR: Record<DsnKind, string> = { failed: 'FAILURE', delayed: 'DELAY', delivered: 'SUCCESS' };

/** Whether a DSN of this kind should go to the original envelope sender. */
export function dsnWanted(opts: DsnWantedOptions): boolean {
  if (isNullSender(opts.envelopeFrom)) return false;

  if (opts.notify != null) {
    const values = opts.notify.map((v) => v.trim().toUpperCase());
    if (values.includes('NEVER')) return false;
    if (!values.includes(NOTIFY_FOR[opts.kind])) return false;
  } else if (opts.kind === 'delivered') {
    // RFC 3461 §4.1: without NOTIFY, failures (and delays, at our discretion) only
    return false;
  }

  const fields = parseHeaderFields(opts.headers);
  if (isAutoSubmitted(fields)) return false;
  // a success report was asked for explicitly; only unsolicited failure/delay reports are held back
  if (opts.kind !== 'delivered' && isListMail(fields)) return false;
  return true;
}
