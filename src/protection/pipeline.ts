// Runs the enabled protection layers on one message, all at once (they are independent: each
// reads the same bytes), within one time budget, and folds their verdicts into the one answer
// the MX gives: reject > defer > junk > accept. A layer whose engine fails or runs out of time is
// handled by its `fail:` policy: open skips it with a WARN, closed defers the message (451).
import { resolveRecipient } from '../config/resolve.js';
import { LAYER_NAMES, type FeConfig, type LayerName } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import type { LayerVerdict, ProtectionAction, ProtectionLayer, ScanInput } from './layer.js';
import { createLayer } from './layers.js';

export interface ProtectionResult {
  /** What the MX does: reject (5xx), defer (4xx), junk (store into Junk) or accept. */
  action: Exclude<ProtectionAction, 'skipped'>;
  /** With reject/defer: the SMTP code and reply text ("5.7.1 ..."). */
  code?: number;
  reply?: string;
  verdicts: LayerVerdict[];
  /** The `X-FE-Protection:` header line (with CRLF) for the stored or forwarded copy. */
  header: string;
}

const RANK: Record<ProtectionAction, number> = { reject: 4, defer: 3, junk: 2, accept: 1, skipped: 0 };

/**
 * The layers that run for these recipients: a layer runs when it is on for at least one of them
 * (alias override, else domain override, else the top-level block), so opting out in one domain
 * never weakens another's protection on a shared message.
 */
export function layersFor(config: FeConfig, recipients: string[]): LayerName[] {
  const wanted = new Set<LayerName>();
  for (const name of LAYER_NAMES) {
    const global = config.protection[name].enabled;
    if (recipients.length === 0 && global) wanted.add(name);
    for (const rcpt of recipients) {
      const r = resolveRecipient(config, rcpt);
      const on = r.ok ? (r.resolution.alias.protection?.[name] ?? r.resolution.domain.protection?.[name] ?? global) : global;
      if (on) wanted.add(name);
    }
  }
  return LAYER_NAMES.filter((n) => wanted.has(n));
}

/** Header-safe text: printable ASCII without the separators the header uses, bounded. */
function token(s: string, max = 80): string {
  const t = s.replace(/[^\x21-\x7e]|[;,()"\\]/g, '_');
  return t.length > max ? t.slice(0, max) + '...' : t;
}

/** `X-FE-Protection: executables=reject (exe:invoice.pdf.exe); viruses=accept; spam=junk score=7.5 (GTUBE)`. */
export function protectionHeader(verdicts: LayerVerdict[]): string {
  const parts = verdicts.map((v) => {
    let s = `${v.layer}=${v.action}`;
    if (typeof v.score === 'number' && Number.isFinite(v.score)) s += ` score=${Math.round(v.score * 100) / 100}`;
    const symbols = (v.symbols ?? []).slice(0, 20).map((x) => token(x));
    if (symbols.length > 0) s += ` (${symbols.join(', ')})`;
    return s;
  });
  const value = parts.length > 0 ? parts.join(';\r\n\t') : 'none';
  return `X-FE-Protection: ${value}\r\n`;
}

function failed(layer: string, policy: 'open' | 'closed', problem: string): LayerVerdict {
  if (policy === 'open') return { layer, action: 'skipped', problem };
  return { layer, action: 'defer', reply: '4.7.0 Content checks are unavailable here just now; try again later', problem };
}

/** What the MX calls once per message: the layers its recipients want, run on it. */
export function protectMessage(config: FeConfig, input: ScanInput, log: Logger, id: string): Promise<ProtectionResult> {
  return runProtection(config, input, layersFor(config, input.rcptTo), log, id);
}

/**
 * Runs `layers` (built from the config unless given, as tests and benches do) on the message.
 * Never throws: an engine's failure becomes a verdict by its layer's policy.
 */
export async function runProtection(config: FeConfig, input: ScanInput, names: LayerName[], log: Logger, id: string, layers?: ProtectionLayer[]): Promise<ProtectionResult> {
  const active = layers ?? names.flatMap((n) => {
    const layer = createLayer(n, config);
    return layer ? [layer] : [];
  });
  const budget = AbortSignal.timeout(config.protection.timeoutSeconds * 1000);
  const verdicts = await Promise.all(
    active.map(async (layer): Promise<LayerVerdict> => {
      const policy = (LAYER_NAMES as readonly string[]).includes(layer.name) ? config.protection[layer.name as LayerName].fail : 'open';
      const timedOut = new Promise<never>((_, reject) => {
        if (budget.aborted) reject(new Error('time budget spent'));
        budget.addEventListener('abort', () => reject(new Error(`no answer within ${config.protection.timeoutSeconds}s`)), { once: true });
      });
      try {
        const v = await Promise.race([layer.scan(input, budget), timedOut]);
        // a layer that reports a problem (engine down) gets its configured policy, not its own
        if ((v.action === 'skipped' || v.action === 'defer') && v.problem) return failed(layer.name, policy, v.problem);
        return v;
      } catch (e) {
        return failed(layer.name, policy, (e as Error).message || String(e));
      }
    }),
  );
  for (const v of verdicts) {
    if (v.action === 'skipped' || (v.action === 'defer' && v.problem)) log.warn('protection layer could not run', { id, layer: v.layer, action: v.action, reason: v.problem });
  }
  let top: LayerVerdict | undefined;
  for (const v of verdicts) if (!top || RANK[v.action] > RANK[top.action]) top = v;
  const action = !top || top.action === 'skipped' ? 'accept' : top.action;
  const result: ProtectionResult = { action, verdicts, header: protectionHeader(verdicts) };
  if (action === 'reject') {
    result.code = top!.code ?? 554;
    result.reply = top!.reply ?? '5.7.1 Message refused by content protection';
  } else if (action === 'defer') {
    result.code = top!.code ?? 451;
    result.reply = top!.reply ?? '4.7.0 Try again later';
  }
  // One line per message: layer=action and the kinds of symbols only (a file name is content).
  const summary = verdicts.map((v) => `${v.layer}=${v.action}${v.symbols && v.symbols.length > 0 ? `(${[...new Set(v.symbols.map((s) => token(s.split(':')[0]!, 40)))].join(',')})` : ''}`).join(' ');
  log.info('protection', { id, from: log.addr(input.mailFrom), action, layers: summary || 'none' });
  return result;
}
