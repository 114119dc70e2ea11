// The Phishing layer: fe's own checks, in memory, no engine. Each finding is a symbol with a
// score; the sum decides (junk at `junkScore`, 5xx at `rejectScore`). What it looks for:
// - a From display name that names another address or domain than the real From address, worst
//   when that is the recipient's own address or one of fe's domains ("you@yours <x@evil>");
// - IDN homographs (UTS #39 ideas): a domain label mixing scripts ("pаypal" with a Cyrillic а),
//   or written wholly in letters that pass for Latin ("аррӏе"), also behind punycode (xn--);
//   in the From domain and in the domains links point to;
// - a link whose text shows one domain while its href goes to another.
import { domainToASCII, domainToUnicode } from 'node:url';
import { decodeWords, parseMessage, type BodyPart } from '../store/message-parse.js';
import { decodeTransferEncoding } from '../store/transfer-encoding.js';
import type { LayerVerdict, ProtectionLayer, ScanInput } from './layer.js';

export interface PhishingOptions {
  /** Total score at which the message goes to Junk. */
  junkScore?: number;
  /** Total score at which it is refused (550); Infinity: never. */
  rejectScore?: number;
}

export const DEFAULT_PHISHING_JUNK = 4;
export const DEFAULT_PHISHING_REJECT = 12;

/** Symbol → score. One of each at most per message. */
export const PHISHING_SCORES = {
  FE_DN_SPOOF_RCPT: 6, // display name shows the recipient's own address
  FE_DN_SPOOF_OWN_DOMAIN: 6, // display name shows one of fe's domains, From is elsewhere
  FE_DN_SPOOF_ADDRESS: 2, // display name shows some other address or domain (lists do this too)
  FE_HOMOGRAPH_FROM_MIXED: 6, // From domain label mixes scripts
  FE_HOMOGRAPH_FROM_CONFUSABLE: 5, // From domain label wholly in Latin look-alikes
  FE_HOMOGRAPH_LINK_MIXED: 5,
  FE_HOMOGRAPH_LINK_CONFUSABLE: 4,
  FE_HOMOGRAPH_OWN_DOMAIN: 4, // a homograph that reads as one of fe's own domains
  FE_LINK_TEXT_MISMATCH: 4, // link text shows a domain, href goes to another
} as const;
export type PhishingSymbol = keyof typeof PHISHING_SCORES;

// Bounds: a message is scanned this far and no further (a huge HTML part is not a reason to wait)
const MAX_PART_BYTES = 2 * 1024 * 1024;
const MAX_PARTS = 64;
const MAX_LINKS = 2000;

// ---- scripts and confusables ----------------------------------------------------------------

const SCRIPTS = ['Latin', 'Cyrillic', 'Greek', 'Armenian', 'Hebrew', 'Arabic', 'Han', 'Hiragana', 'Katakana', 'Hangul', 'Bopomofo', 'Thai', 'Georgian', 'Cherokee', 'Devanagari'] as const;
const SCRIPT_RE = SCRIPTS.map((s) => [s, new RegExp(`\\p{Script=${s}}`, 'u')] as const);

/** Scripts of the letters in a label; digits, hyphens and combining marks belong to none. */
function scriptsOf(label: string): Set<string> {
  const out = new Set<string>();
  for (const ch of label) {
    if (!/\p{L}/u.test(ch)) continue;
    const hit = SCRIPT_RE.find(([, re]) => re.test(ch));
    out.add(hit ? hit[0] : 'Other');
  }
  return out;
}

// Mixes that are ordinary writing (UTS #39 "highly restrictive"): Japanese, Chinese, Korean with Latin
const ALLOWED_MIXES = [
  new Set(['Latin', 'Han', 'Hiragana', 'Katakana']),
  new Set(['Latin', 'Han', 'Bopomofo']),
  new Set(['Latin', 'Han', 'Hangul']),
];

function mixedScripts(label: string): boolean {
  const s = scriptsOf(label);
  if (s.size <= 1) return false;
  return !ALLOWED_MIXES.some((allowed) => [...s].every((x) => allowed.has(x)));
}

// Letters of other scripts that look like Latin ones (a subset of Unicode's confusables.txt, the
// lower-case forms a domain has after IDNA mapping), with the Latin letter they pass for.
const CONFUSABLE: Record<string, string> = {
  // Cyrillic
  'а': 'a', 'в': 'b', 'с': 'c', 'ԁ': 'd', 'е': 'e', 'һ': 'h', 'і': 'i', 'ј': 'j', 'к': 'k', 'ӏ': 'l', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'ԛ': 'q', 'ѕ': 's', 'т': 't', 'ц': 'u', 'ѵ': 'v', 'ԝ': 'w', 'х': 'x', 'у': 'y', 'ү': 'y', 'ё': 'e', 'ї': 'i', 'ɡ': 'g',
  // Greek
  'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'γ': 'y', 'ω': 'w',
  // Armenian
  'օ': 'o', 'ս': 'u', 'հ': 'h', 'ո': 'n', 'ց': 'g', 'ք': 'p',
};

/** The label with every look-alike replaced by the Latin letter it passes for. */
function skeleton(label: string): string {
  let out = '';
  for (const ch of label) out += CONFUSABLE[ch] ?? ch;
  return out;
}

/** Not Latin, yet every letter passes for a Latin one: a whole-script homograph. */
function wholeScriptConfusable(label: string): boolean {
  const s = scriptsOf(label);
  if (s.size !== 1 || s.has('Latin')) return false;
  const letters = [...label].filter((c) => /\p{L}/u.test(c));
  return letters.length >= 2 && letters.every((c) => c in CONFUSABLE);
}

export interface HomographFinding {
  mixed: boolean;
  confusable: boolean;
  /** The domain it reads as, when that is one of fe's own. */
  imitates?: string;
}

/** Checks a domain (Unicode or punycode) label by label; null when it is plain. */
export function homograph(domain: string, ownDomains: readonly string[] = []): HomographFinding | null {
  const ascii = domainToASCII(domain.toLowerCase());
  if (!ascii) return null;
  const unicode = domainToUnicode(ascii);
  if (unicode === ascii) return null; // all ASCII: nothing to imitate with
  const labels = unicode.split('.');
  const mixed = labels.some(mixedScripts);
  const confusable = !mixed && labels.some(wholeScriptConfusable);
  if (!mixed && !confusable) return null;
  const reads = labels.map(skeleton).join('.');
  const imitates = ownDomains.find((d) => reads === d || reads.endsWith('.' + d));
  return imitates ? { mixed, confusable, imitates } : { mixed, confusable };
}

// ---- domains --------------------------------------------------------------------------------

/** The name a domain is registered under, roughly: last two labels, three under co.uk-style suffixes. */
export function baseDomain(host: string): string {
  const labels = host.toLowerCase().replace(/\.$/, '').split('.');
  if (labels.length <= 2) return labels.join('.');
  const tld = labels[labels.length - 1]!;
  const second = labels[labels.length - 2]!;
  const n = tld.length === 2 && (second.length <= 3 || ['gouv', 'govt'].includes(second)) ? 3 : 2;
  return labels.slice(-n).join('.');
}

function sameSite(a: string, b: string): boolean {
  return a === b || baseDomain(a) === baseDomain(b);
}

/** ASCII (punycode) form, lower case, without a final dot; null when it is not a domain name. */
function normalizeDomain(d: string): string | null {
  const ascii = domainToASCII(d.toLowerCase().replace(/\.$/, ''));
  return ascii && ascii.includes('.') ? ascii : null;
}

// A domain as text shows it: labels of letters/digits/hyphens, a final label of letters
const DOMAIN_IN_TEXT = /(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+(?:xn--[a-z0-9-]{2,59}|\p{L}{2,63})(?![\p{L}\p{N}-])/giu;
const ADDRESS_IN_TEXT = /[^\s<>"'(),;:@]+@((?:[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+\p{L}{2,63})/giu;

// ---- display name ---------------------------------------------------------------------------

function displayNameFindings(name: string, fromDomain: string, input: ScanInput): PhishingSymbol[] {
  const rcpts = new Set(input.rcptTo.map((r) => r.toLowerCase()));
  const found = new Set<PhishingSymbol>();
  const addresses = [...name.matchAll(ADDRESS_IN_TEXT)];
  for (const m of addresses) {
    const domain = normalizeDomain(m[1]!);
    if (!domain) continue;
    const address = `${m[0].slice(0, m[0].lastIndexOf('@'))}@${domain}`.toLowerCase();
    if (domain === fromDomain) continue;
    if (rcpts.has(address)) found.add('FE_DN_SPOOF_RCPT');
    else if (input.ownDomains.some((d) => domain === d || domain.endsWith('.' + d))) found.add('FE_DN_SPOOF_OWN_DOMAIN');
    else if (!sameSite(domain, fromDomain)) found.add('FE_DN_SPOOF_ADDRESS');
  }
  // bare domains ("PayPal.com Support", "fe.example security team")
  const rest = name.replace(ADDRESS_IN_TEXT, ' ');
  for (const m of rest.matchAll(DOMAIN_IN_TEXT)) {
    const domain = normalizeDomain(m[0]);
    if (!domain || domain === fromDomain) continue;
    if (input.ownDomains.some((d) => domain === d || domain.endsWith('.' + d))) {
      if (!input.ownDomains.some((d) => fromDomain === d || fromDomain.endsWith('.' + d))) found.add('FE_DN_SPOOF_OWN_DOMAIN');
    } else if (!sameSite(domain, fromDomain)) found.add('FE_DN_SPOOF_ADDRESS');
  }
  // the strongest finding speaks for the display name
  for (const s of ['FE_DN_SPOOF_RCPT', 'FE_DN_SPOOF_OWN_DOMAIN', 'FE_DN_SPOOF_ADDRESS'] as const) if (found.has(s)) return [s];
  return [];
}

// ---- links ----------------------------------------------------------------------------------

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,8});?/gi, (all, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : all;
    }
    return ENTITIES[e.toLowerCase()] ?? all;
  });
}

/** Host of an http(s) URL, punycode; null for anything else (mailto:, relative, broken). */
function hostOf(url: string): string | null {
  try {
    const u = new URL(url.trim());
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    return u.hostname.replace(/\.$/, '').toLowerCase() || null;
  } catch {
    return null;
  }
}

/** The domain a link's visible text shows, if it shows one ("https://bank.example/login", "www.bank.example"). */
function shownDomain(text: string): string | null {
  const t = text.trim();
  const url = /^(https?:\/\/[^\s<>"]+)/i.exec(t);
  if (url) return hostOf(url[1]!);
  const m = /^(?:www\.)?[^\s/]+/i.exec(t);
  if (!m || m[0].length !== t.split(/[\s/]/)[0]!.length) return null;
  DOMAIN_IN_TEXT.lastIndex = 0;
  const d = DOMAIN_IN_TEXT.exec(m[0]);
  DOMAIN_IN_TEXT.lastIndex = 0;
  if (!d || d.index !== 0 || d[0].length !== m[0].replace(/[.,;:!?]+$/, '').length) return null;
  return normalizeDomain(d[0]);
}

interface Link {
  host: string;
  text: string;
}

function htmlLinks(html: string): Link[] {
  const links: Link[] = [];
  const re = /<a\b([^>]*)>([\s\S]*?)<\/a\s*>/gi;
  for (const m of html.matchAll(re)) {
    if (links.length >= MAX_LINKS) break;
    const href = /\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i.exec(m[1]!);
    if (!href) continue;
    const host = hostOf(decodeEntities(href[1] ?? href[2] ?? href[3] ?? ''));
    if (!host) continue;
    links.push({ host, text: decodeEntities(m[2]!.replace(/<[^>]*>/g, '')).replace(/\s+/g, ' ') });
  }
  return links;
}

function plainLinks(text: string): Link[] {
  const links: Link[] = [];
  for (const m of text.matchAll(/https?:\/\/[^\s<>"')\]]+/gi)) {
    if (links.length >= MAX_LINKS) break;
    const host = hostOf(m[0]);
    if (host) links.push({ host, text: '' });
  }
  return links;
}

function charsetOf(part: BodyPart): string {
  return part.params.find(([k]) => k.toLowerCase() === 'charset')?.[1] ?? 'utf-8';
}

function decodeText(bytes: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset.toLowerCase(), { fatal: false }).decode(bytes);
  } catch {
    return bytes.toString('latin1'); // a charset Node does not know: ASCII is what matters here
  }
}

/** text/html and text/plain parts, decoded, outside attachments. */
function textParts(raw: Buffer, root: BodyPart): { html: boolean; text: string }[] {
  const out: { html: boolean; text: string }[] = [];
  const walk = (p: BodyPart) => {
    if (out.length >= MAX_PARTS) return;
    if (p.parts) return p.parts.forEach(walk);
    if (p.type !== 'text' || (p.subtype !== 'html' && p.subtype !== 'plain')) return;
    if (p.disposition?.type.toLowerCase() === 'attachment') return;
    const body = raw.subarray(p.bodyStart, Math.min(p.bodyEnd, p.bodyStart + MAX_PART_BYTES));
    const decoded = decodeTransferEncoding(body, p.encoding) ?? body;
    out.push({ html: p.subtype === 'html', text: decodeText(decoded, charsetOf(p)) });
  };
  walk(root);
  return out;
}

// ---- the layer ------------------------------------------------------------------------------

/** The symbols for one message (exported for unit tests and the bench). */
export function phishingSymbols(input: ScanInput): PhishingSymbol[] {
  const found = new Set<PhishingSymbol>();
  const parsed = parseMessage(input.raw);
  const from = parsed.envelope.from?.find((a) => a.host !== null);
  const own = input.ownDomains.map((d) => normalizeDomain(d) ?? d);
  const fromDomain = from?.host ? normalizeDomain(from.host) : null;
  if (from && fromDomain) {
    if (from.name) for (const s of displayNameFindings(decodeWords(from.name), fromDomain, { ...input, ownDomains: own })) found.add(s);
    const h = homograph(fromDomain, own);
    if (h) {
      found.add(h.mixed ? 'FE_HOMOGRAPH_FROM_MIXED' : 'FE_HOMOGRAPH_FROM_CONFUSABLE');
      if (h.imitates) found.add('FE_HOMOGRAPH_OWN_DOMAIN');
    }
  }
  const seen = new Set<string>();
  for (const part of textParts(input.raw, parsed.structure)) {
    for (const link of part.html ? htmlLinks(part.text) : plainLinks(part.text)) {
      if (part.html && link.text) {
        const shown = shownDomain(link.text);
        if (shown && !sameSite(shown, link.host)) found.add('FE_LINK_TEXT_MISMATCH');
        if (shown && !seen.has(shown)) {
          seen.add(shown);
          const hs = homograph(shown, own);
          if (hs) found.add(hs.mixed ? 'FE_HOMOGRAPH_LINK_MIXED' : 'FE_HOMOGRAPH_LINK_CONFUSABLE');
        }
      }
      if (seen.has(link.host)) continue;
      seen.add(link.host);
      const h = homograph(link.host, own);
      if (h) {
        found.add(h.mixed ? 'FE_HOMOGRAPH_LINK_MIXED' : 'FE_HOMOGRAPH_LINK_CONFUSABLE');
        if (h.imitates) found.add('FE_HOMOGRAPH_OWN_DOMAIN');
      }
    }
  }
  return [...found].sort((a, b) => PHISHING_SCORES[b] - PHISHING_SCORES[a]);
}

export function phishingLayer(opts: PhishingOptions = {}): ProtectionLayer {
  const junkScore = opts.junkScore ?? DEFAULT_PHISHING_JUNK;
  const rejectScore = opts.rejectScore ?? DEFAULT_PHISHING_REJECT;
  return {
    name: 'phishing',
    async scan(input: ScanInput): Promise<LayerVerdict> {
      const symbols = phishingSymbols(input);
      const score = symbols.reduce((n, s) => n + PHISHING_SCORES[s], 0);
      const base = { layer: 'phishing', score, symbols };
      if (score >= rejectScore) return { ...base, action: 'reject', code: 550, reply: '5.7.1 Message refused: it looks like phishing' };
      if (score >= junkScore) return { ...base, action: 'junk' };
      return { ...base, action: 'accept' };
    },
  };
}
