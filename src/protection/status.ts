// `fe status` for content protection: asks each engine directly (it does not need fe serve), so
// the answer is what the MX would get for the next message.
import type { FeConfig } from '../config/schema.js';
import type { CheckResult } from '../provision/status.js';
import { clamdVersion } from './clamd.js';

const STALE_SIGNATURES_MS = 7 * 86_400_000; // freshclam runs hourly; a week means it stopped

function result(level: CheckResult['level'], subject: string, detail: string, fix: string | null = null): CheckResult {
  return { check: 'protection', subject, level, detail, fix };
}

export async function protectionChecks(config: FeConfig, now: Date): Promise<CheckResult[]> {
  const p = config.protection;
  const out: CheckResult[] = [];
  out.push(result('OK', 'executables', p.executables.enabled ? `on (archives to depth ${p.executables.archiveDepth}, encrypted archives ${p.executables.rejectEncrypted ? 'refused' : 'accepted'})` : 'off (protection.executables)'));
  if (!p.viruses.enabled) {
    out.push(result('OK', 'viruses', 'off (protection.viruses)'));
    return out;
  }
  const where = 'path' in p.viruses.clamd ? p.viruses.clamd.path : `${p.viruses.clamd.host}:${p.viruses.clamd.port}`;
  try {
    const v = await clamdVersion(p.viruses.clamd, AbortSignal.timeout(5000));
    const db = v.signatures !== null ? `signatures ${v.signatures}` : 'no signature version';
    if (!v.signatureDate) {
      out.push(result('WARN', 'viruses', `clamd at ${where} answers: ${v.engine}, ${db}; the age of its signatures is unknown (no daily database loaded)`, 'freshclam; systemctl status clamav-freshclam'));
    } else {
      const age = now.getTime() - v.signatureDate.getTime();
      const detail = `clamd at ${where} answers: ${v.engine}, ${db} from ${v.signatureDate.toISOString().slice(0, 10)} (${Math.max(0, Math.floor(age / 86_400_000))} d old)`;
      out.push(age > STALE_SIGNATURES_MS ? result('WARN', 'viruses', detail, 'freshclam; systemctl status clamav-freshclam') : result('OK', 'viruses', detail));
    }
  } catch (e) {
    const what = p.viruses.fail === 'open' ? 'mail is delivered unscanned (fail: open)' : 'mail is deferred with 451 (fail: closed)';
    out.push(result(p.viruses.fail === 'open' ? 'WARN' : 'FAIL', 'viruses', `clamd at ${where} does not answer (${(e as Error).message}); ${what}`, 'systemctl status clamav-daemon; journalctl -u clamav-daemon'));
  }
  return out;
}
