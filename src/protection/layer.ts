// The contract every content-protection layer (executables, viruses, spam, phishing, reputation)
// meets. The MX runs the layers after SPF/DKIM/DMARC and before it answers DATA, so a refused
// message is never stored or forwarded. Layers see the message only in memory; none logs content.
import type { AuthVerdict } from '../smtp/auth-check.js';

/** What a layer may look at: the message as received plus what the MX knows of the session. */
export interface ScanInput {
  /** The message as the client sent it (CRLF line ends, before fe adds its own headers). */
  raw: Buffer;
  /** The connecting client's IP address. */
  clientIp: string;
  /** The EHLO/HELO name. */
  helo: string;
  /** MAIL FROM; '' for a bounce. */
  mailFrom: string;
  /** RCPT TO addresses as given. */
  rcptTo: string[];
  /** fe's own SPF/DKIM/DMARC/ARC results, so engines need not redo them. */
  auth: AuthVerdict;
  /** fe's hostname (the authserv-id). */
  hostname: string;
  /** The domains fe serves, lower-cased: for spoofing checks. */
  ownDomains: string[];
}

/**
 * A layer's answer. `accept` lets the message on; `junk` stores it but files it into Junk;
 * `reject` answers 5xx; `defer` answers 4xx (an engine that is down under `fail: closed`).
 * `skipped` means the layer could not run and `fail: open` let the message on (logged as a WARN).
 */
export type ProtectionAction = 'accept' | 'junk' | 'reject' | 'defer' | 'skipped';

export interface LayerVerdict {
  layer: string;
  action: ProtectionAction;
  /** With reject/defer: the SMTP reply text, starting with the enhanced status code ("5.7.1 ..."). */
  reply?: string;
  /** With reject/defer: the SMTP code (default 554 for reject, 451 for defer). */
  code?: number;
  /** Short machine names of what was found (rspamd symbols, "exe:invoice.pdf.exe", "eicar"). */
  symbols?: string[];
  /** The engine's score, where it has one. */
  score?: number;
  /** Why a layer was skipped or deferred (engine down, timeout): for the WARN line, never content. */
  problem?: string;
}

export interface ProtectionLayer {
  readonly name: string;
  scan(input: ScanInput, signal: AbortSignal): Promise<LayerVerdict>;
}
