// `npm run bench`: prints figures; asserts nothing (targets belong in numbers, not flaky tests).
import { benchBackup } from './backup.bench.js';
import { benchImap } from './imap.bench.js';
import { benchMx, benchProtection } from './mx.bench.js';
import { benchSubmission } from './submission.bench.js';

await benchMx();
await benchProtection();
await benchSubmission();
await benchImap();
await benchBackup();
