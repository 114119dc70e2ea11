// The compact per-session flag table behaves like the Map it replaces, under random operations,
// and its UID view is the ascending list of what it holds (a session's sequence numbers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlagTable } from '../src/imap/flag-table.js';

test('FlagTable agrees with a Map through 20,000 random sets, deletes, and lookups', () => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
  const flagSets = ['', '\\Seen', '\\Seen \\Flagged', '\\Answered \\Seen', '$Label1', '\\Deleted'];
  const start = Array.from({ length: 500 }, (_, i) => [i * 3 + 1, flagSets[rand(flagSets.length)]!] as const);
  const model = new Map<number, string>(start);
  const table = FlagTable.from([...start].reverse()); // any order in
  for (let k = 0; k < 20_000; k++) {
    const uid = rand(2000) + 1;
    const op = rand(3);
    if (op === 0) {
      const f = rand(10) === 0 ? `kw${rand(100)}` : flagSets[rand(flagSets.length)]!;
      model.set(uid, f);
      table.set(uid, f);
    } else if (op === 1) assert.equal(table.delete(uid), model.delete(uid), `delete ${uid}`);
    assert.equal(table.has(uid), model.has(uid), `has ${uid} after op ${k}`);
    assert.equal(table.get(uid), model.get(uid), `get ${uid} after op ${k}`);
    if (k % 1000 === 0) assert.deepEqual([...table.uidView()], [...model.keys()].sort((a, b) => a - b), 'the UID view is the sequence list');
  }
  assert.equal(table.size, model.size);
  for (const [uid, f] of model) assert.equal(table.get(uid), f);
});

test('FlagTable takes more than 65,535 distinct flag strings', () => {
  const t = FlagTable.from([]);
  for (let i = 1; i <= 70_000; i++) t.set(i, `kw${i}`);
  assert.equal(t.get(1), 'kw1');
  assert.equal(t.get(70_000), 'kw70000');
  assert.equal(t.get(65_536), 'kw65536');
});
