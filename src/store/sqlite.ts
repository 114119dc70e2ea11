// The SQLite3MultipleCiphers driver for this Node: 12.x builds from source and is the one that
// works on Node 20; 13.x (N-API, binaries shipped in the package) needs Node 22+, where 12.x
// crashes in a statement finalizer. package.json carries both; this picks at load time.
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3-multiple-ciphers';

const require = createRequire(import.meta.url);
const major = Number(process.versions.node.split('.')[0]);

export const Database: typeof BetterSqlite3 = major >= 22 ? require('better-sqlite3-mc-napi') : require('better-sqlite3-multiple-ciphers');
export type SqliteDb = BetterSqlite3.Database;
export type SqliteStatement = BetterSqlite3.Statement;
