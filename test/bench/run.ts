// `npm run bench`: prints figures; asserts nothing (targets belong in numbers, not flaky tests).
import { benchBackup } from './backup.bench.js';
import { benchImap } from './imap.bench.js';
import { benchMx } from './mx.bench.js';

await benchMx();
await benchImap();
await benchBackup();
