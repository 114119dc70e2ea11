// `npm run bench`: prints figures; asserts nothing (targets belong in numbers, not flaky tests).
// FE_BENCH=mx,imap (names below) runs only those.
import { benchBackup } from './backup.bench.js';
import { benchExport } from './export.bench.js';
import { benchImap } from './imap.bench.js';
import { benchMx, benchMxPostfix, benchProtection } from './mx.bench.js';
import { benchPgp } from './pgp.bench.js';
import { benchSeal } from './seal.bench.js';
import { benchSubmission } from './submission.bench.js';

const benches: [string, () => Promise<void>][] = [
  ['mx', benchMx],
  ['mx-postfix', benchMxPostfix],
  ['protection', benchProtection],
  ['submission', benchSubmission],
  ['imap', benchImap],
  ['export', benchExport],
  ['backup', benchBackup],
  ['pgp', benchPgp],
  ['seal', benchSeal],
];
const only = (process.env.FE_BENCH ?? '').split(',').filter(Boolean);
for (const name of only) if (!benches.some(([n]) => n === name)) throw new Error(`FE_BENCH: no bench named ${name} (${benches.map(([n]) => n).join(', ')})`);
for (const [name, run] of benches) if (only.length === 0 || only.includes(name)) await run();
