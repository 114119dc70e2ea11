// RFC 5256 2.1 base subjects and the small SORT helpers, as pure functions (the protocol-level
// checks against an independent oracle are in imap-sort-thread.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baseSubject } from '../src/imap/base-subject.js';
import { orderedSequenceSet } from '../src/imap/sort.js';

test('base subject: leaders, blobs, trailers, [fwd: ...] and whitespace', () => {
  const cases: [string | null, string, boolean][] = [
    ['Re: Plan', 'PLAN', true],
    ['  RE:  re: Fwd:Plan  (fwd)', 'PLAN', true],
    ['[fe-dev] Re: [fe-dev] Release', 'RELEASE', true],
    ['[list]', '[LIST]', false], // a blob stays when nothing would be left
    ['[Fwd: Budget]', 'BUDGET', true],
    ['Re: [Fwd: Re: Budget] (fwd)', 'BUDGET', true],
    ['re[2]: status', 'STATUS', true],
    ['Fwd : x', 'X', true],
    ['Rebuild plan', 'REBUILD PLAN', false],
    ['Plan\r\n\tfor\t\tQ3 ', 'PLAN FOR Q3', false],
    ['=?utf-8?q?Re=3A_Caf=C3=A9?=', 'CAFé', true], // decoded first; only ASCII letters fold
    ['', '', false],
    [null, '', false],
  ];
  for (const [raw, key, replyOrForward] of cases) assert.deepEqual(baseSubject(raw), { key, replyOrForward }, String(raw));
});

test('ESORT ALL keeps the sort order: ranges only join ascending neighbours', () => {
  assert.equal(orderedSequenceSet([3, 4, 5, 1, 7, 8, 2]), '3:5,1,7:8,2');
  assert.equal(orderedSequenceSet([5, 4, 3]), '5,4,3');
  assert.equal(orderedSequenceSet([]), '');
});
