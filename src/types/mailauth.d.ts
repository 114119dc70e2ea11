// Minimal types for the parts of mailauth 4.9.5 fe uses, written against its source:
// lib/mailauth.js (authenticate, sealMessage), lib/arc/index.js (arc, createSeal),
// lib/dkim/sign.js + dkim-signer.js (dkimSign), lib/dkim/dkim-verifier.js, lib/spf/index.js,
// lib/dmarc/verify.js. Fields mailauth sets only sometimes are optional.

declare module 'mailauth' {
  import type { Readable } from 'node:stream';

  /** Called as resolver(name, 'TXT'|'A'|'AAAA'|'MX'|'PTR'); must throw err.code ENOTFOUND/ENODATA for "no record". */
  export type MailauthResolver = (name: string, rrtype: string) => Promise<unknown>;

  export interface AuthStatus {
    result: string;
    comment?: string;
    /** DKIM only: the signing domain if it aligns (relaxed) with the From domain, else false. */
    aligned?: string | false;
    underSized?: number;
    shouldSeal?: boolean;
    policy?: Record<string, string>;
    header?: Record<string, string | false | undefined>;
    smtp?: Record<string, string | undefined>;
  }

  export interface DkimResultEntry {
    id?: string;
    signingDomain?: string;
    selector?: string;
    algo?: string;
    format?: string;
    status: AuthStatus;
    info: string;
  }

  export interface DkimVerifyResult {
    headerFrom: string[];
    envelopeFrom: string | false;
    /** Never empty: an unsigned message yields one entry with status.result 'none'. */
    results: DkimResultEntry[];
  }

  export interface SpfResult {
    domain: string;
    'client-ip': string;
    helo?: string;
    'envelope-from'?: string;
    rr?: string;
    status: AuthStatus;
    /** 'Received-SPF: ...' */
    header: string;
    info: string;
  }

  export interface DmarcResult {
    status: AuthStatus;
    /** Organizational domain of the From address. */
    domain: string;
    /** sp= for a subdomain covered by its org record, else p=. Absent without a record. */
    policy?: string;
    p?: string;
    sp?: string;
    pct?: number;
    rr?: string;
    error?: string;
    alignment?: {
      spf: { result?: string | false; strict: boolean };
      dkim: { result?: string | false; strict: boolean; underSized?: number };
    };
    info: string;
  }

  export interface ArcResult {
    status: AuthStatus;
    i: number | false;
    info?: string;
    /** authserv-id and results ("mx.example;\r\n spf=pass ..."), set by authenticate() for sealing. */
    authResults?: string;
  }

  export interface SealOptions {
    signingDomain: string;
    selector: string;
    privateKey: string | Buffer;
    algorithm?: string;
    signTime?: Date;
    headerList?: string;
  }

  export interface AuthenticateOptions {
    sender?: string;
    ip?: string;
    helo?: string;
    mta?: string;
    resolver?: MailauthResolver;
    minBitLength?: number;
    trustReceived?: boolean;
    seal?: SealOptions;
    disableArc?: boolean;
    disableDmarc?: boolean;
    disableBimi?: boolean;
    maxResolveCount?: number;
    maxVoidCount?: number;
  }

  export interface AuthenticateResult {
    dkim: DkimVerifyResult;
    spf: SpfResult;
    dmarc: DmarcResult | false;
    arc: ArcResult | false;
    bimi: unknown;
    /** Received-SPF and Authentication-Results (ARC set first when sealing), each ending in CRLF. */
    headers: string;
  }

  export function authenticate(input: Buffer | string | Readable, opts?: AuthenticateOptions): Promise<AuthenticateResult>;

  export interface SealMessageOptions extends SealOptions {
    /** Same shape as ArcResult.authResults. */
    authResults: string;
    /** Chain validation status of the incoming message: 'none' | 'pass' | 'fail'. */
    cv: string;
  }

  /** Returns only the new ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results lines. */
  export function sealMessage(input: Buffer | string | Readable, seal: SealMessageOptions): Promise<Buffer>;
}

declare module 'mailauth/lib/dkim/sign.js' {
  import type { Readable } from 'node:stream';

  export interface DkimSignatureData {
    signingDomain: string;
    selector: string;
    privateKey: string | Buffer;
    algorithm?: string;
    canonicalization?: string;
    maxBodyLength?: number;
  }

  export interface DkimSignOptions {
    signatureData: DkimSignatureData[];
    canonicalization?: string;
    algorithm?: string;
    signTime?: Date;
    expires?: Date;
    /** Colon-separated header field names; mailauth's default list otherwise. */
    headerList?: string;
  }

  export interface DkimSignResult {
    /** DKIM-Signature header lines, ending in CRLF. */
    signatures: string;
    errors: { err: Error; selector?: string; signingDomain?: string }[];
  }

  export function dkimSign(input: Buffer | string | Readable, opts: DkimSignOptions): Promise<DkimSignResult>;
}

declare module 'mailauth/lib/dkim/dkim-signer.js' {
  import { Writable } from 'node:stream';
  import type { DkimSignOptions, DkimSignResult } from 'mailauth/lib/dkim/sign.js';

  /** One header field as lib/tools.js parseHeaders leaves it; key is the lower-cased name. */
  export interface ParsedHeader {
    key: string | null;
    /** The name as written; DkimSigner joins these with ': ' into h=. */
    casedKey: string | undefined;
    line: Buffer;
  }

  export interface ParsedHeaders {
    parsed: ParsedHeader[];
    original: Buffer;
  }

  /** The writable stream behind dkimSign: write the message, end it, then read the results. */
  export class DkimSigner extends Writable {
    constructor(options: DkimSignOptions);
    /** Called once with the parsed header block, before the body; hashes are set up here. */
    messageHeaders(headers: ParsedHeaders): Promise<void>;
    /** DKIM-Signature lines in signatureData order, without the trailing CRLF. */
    signatureHeaders: string[];
    errors: DkimSignResult['errors'];
  }
}
