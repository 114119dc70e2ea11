// Several IMAP sessions on one mailbox at once, against a real `fe serve`: each round every session
// changes flags and keywords, appends, copies, moves and expunges concurrently; then each says
// NOOP, applies what it is told the way a client must (EXPUNGE renumbers, RFC 3501 7.4.1; EXISTS
// is followed by a FETCH of the new messages) and its view (UIDs in order, flags, MODSEQ per UID)
// must equal every other session's and a fresh session's FETCH 1:* (UID FLAGS MODSEQ).
// Seeded: FE_STRESS_SEED=n repeats a run; FE_STRESS_SECONDS (default 25) bounds it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapLogin, type ImapConn } from './helpers/imap-client.js';
import { prng } from './helpers/prng.js';

const PASSWORD = 'stress password';
const SESSIONS = 5;
const SEED = Number(process.env.FE_STRESS_SEED ?? Date.now() % 100_000);
const SECONDS = Number(process.env.FE_STRESS_SECONDS ?? 25);
const FLAGS = ['\\Seen', '\\Flagged', '\\Answered', '\\Draft', 'kwAlpha', 'kwBeta', '$Label1'];

let w: ReturnType<typeof workspace>;
let fe: Daemon;

interface Msg {
  uid: number;
  flags: string;
  modseq: number;
}

/** A client's picture of the selected mailbox, kept only from what the server says. */
class View {
  msgs: (Msg | null)[] = []; // by sequence number - 1; null: told of by EXISTS, not fetched yet
  log: string[] = [];
  /** What the server told this session, by kind: the run must have exercised each. */
  told = { EXISTS: 0, EXPUNGE: 0, FETCH: 0 };
  /** The last untagged FLAGS: every keyword in use must be in it (RFC 3501 7.2.6). */
  flagList = new Set<string>();
  constructor(
    readonly name: string,
    readonly conn: ImapConn,
  ) {}

  apply(lines: string[]): void {
    for (const l of lines) {
      this.log.push(l);
      if (this.log.length > 60) this.log.shift();
      let m = /^\* FLAGS \(([^)]*)\)$/.exec(l);
      if (m) {
        this.flagList = new Set(normalise(m[1]!).split(' '));
        continue;
      }
      m = /^\* (\d+) EXISTS$/.exec(l);
      if (m) {
        const n = Number(m[1]);
        assert.ok(n >= this.msgs.length, `${this.name}: EXISTS ${n} below the ${this.msgs.length} known (${SEED})`);
        if (n > this.msgs.length) this.told.EXISTS++;
        while (this.msgs.length < n) this.msgs.push(null);
        continue;
      }
      m = /^\* (\d+) EXPUNGE$/.exec(l);
      if (m) {
        const n = Number(m[1]);
        assert.ok(n >= 1 && n <= this.msgs.length, `${this.name}: EXPUNGE ${n} of ${this.msgs.length} (seed ${SEED})`);
        this.msgs.splice(n - 1, 1); // later messages move down by one
        this.told.EXPUNGE++;
        continue;
      }
      m = /^\* VANISHED ([\d,:]+)$/.exec(l);
      if (m) {
        // QRESYNC (RFC 7162 3.2.10): expunged UIDs as a set, instead of EXPUNGE by number
        const gone = new Set<number>();
        for (const part of m[1]!.split(',')) {
          const [lo, hi = lo] = part.split(':').map(Number) as [number, number?];
          for (let u = Math.min(lo, hi!); u <= Math.max(lo, hi!); u++) gone.add(u);
        }
        const before = this.msgs.length;
        const knownUids = new Set(this.msgs.flatMap((x) => (x ? [x.uid] : [])));
        this.msgs = this.msgs.filter((x) => x === null || !gone.has(x.uid));
        // A UID it never fetched is one of the unfetched slots between the fetched UIDs just
        // below and just above it (UIDs ascend with sequence numbers); any null of that run will
        // do, they are alike. Unfetched slots are not only the last ones: a flag FETCH the
        // server volunteers can fill one in the middle.
        for (const u of gone) {
          if (knownUids.has(u)) continue;
          let lo = -1;
          let hi = this.msgs.length;
          this.msgs.forEach((x, i) => {
            if (x && x.uid < u) lo = i;
            if (x && x.uid > u && hi === this.msgs.length) hi = i;
          });
          const slot = this.msgs.findIndex((x, i) => x === null && i > lo && i < hi);
          if (slot >= 0) this.msgs.splice(slot, 1);
        }
        assert.ok(before - this.msgs.length > 0, `${this.name}: VANISHED ${m[1]} names no message it has (seed ${SEED})`);
        this.told.EXPUNGE++;
        continue;
      }
      m = /^\* (\d+) FETCH \((.*)\)$/.exec(l);
      if (m) {
        const seq = Number(m[1]);
        assert.ok(seq >= 1 && seq <= this.msgs.length, `${this.name}: FETCH for ${seq} of ${this.msgs.length} (seed ${SEED})`);
        const uid = /UID (\d+)/.exec(m[2]!);
        const flags = /FLAGS \(([^)]*)\)/.exec(m[2]!);
        const modseq = /MODSEQ \((\d+)\)/.exec(m[2]!);
        const known = this.msgs[seq - 1];
        this.told.FETCH++;
        if (!known) {
          assert.ok(uid, `${this.name}: FETCH without UID for unfetched ${seq}: ${l}`);
          this.msgs[seq - 1] = { uid: Number(uid[1]), flags: '', modseq: 0 };
        } else if (uid) assert.equal(Number(uid[1]), known.uid, `${this.name}: sequence ${seq} is UID ${known.uid} here, the server says ${uid[1]} (seed ${SEED}); it was told:\n${this.log.slice(-25).join('\n')}`);
        const msg = this.msgs[seq - 1]!;
        if (flags) msg.flags = normalise(flags[1]!);
        if (modseq) msg.modseq = Math.max(msg.modseq, Number(modseq[1]));
      }
    }
  }

  async command(line: string | Buffer): Promise<{ status: string; text: string }> {
    const r = await this.conn.command(line);
    this.apply(r.untagged);
    return r;
  }

  /** What a client does after EXISTS: fetch what it does not know yet. */
  async catchUp(): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const first = this.msgs.findIndex((m) => m === null);
      if (first < 0) return;
      const r = await this.command(`FETCH ${first + 1}:${this.msgs.length} (UID FLAGS MODSEQ)`);
      assert.equal(r.status, 'OK', r.text);
    }
    assert.fail(`${this.name}: messages never fetched (seed ${SEED})`);
  }

  uids(): number[] {
    return this.msgs.map((m) => m?.uid ?? -1);
  }

  randomUid(r: () => number): number | null {
    const known = this.msgs.filter((m): m is Msg => m !== null);
    return known.length ? known[Math.floor(r() * known.length)]!.uid : null;
  }
}

function normalise(flags: string): string {
  // \Recent is per session (RFC 3501 2.3.2): not part of what sessions must agree on
  return flags
    .split(' ')
    .filter((f) => f && f !== '\\Recent')
    .map((f) => (f.startsWith('\\') ? f : f.toLowerCase()))
    .sort()
    .join(' ');
}

const login = (): Promise<ImapConn> => imapLogin(fe.ports.imaps!, 'stress@example.org', PASSWORD);

async function open(name: string, qresync: boolean): Promise<View> {
  const v = new View(name, await login());
  assert.equal((await v.conn.command(qresync ? 'ENABLE QRESYNC' : 'ENABLE CONDSTORE')).status, 'OK');
  const r = await v.command('SELECT S');
  assert.equal(r.status, 'OK', r.text);
  await v.catchUp();
  return v;
}

let serial = 0;
function message(r: () => number): Buffer {
  const n = ++serial;
  return Buffer.from(`From: s${n}@example.net\r\nTo: stress@example.org\r\nSubject: stress ${n}\r\nMessage-ID: <stress${n}.${Math.floor(r() * 1e9)}@example.net>\r\n\r\nbody ${n}\r\n`);
}

function someFlags(r: () => number): string {
  const out = FLAGS.filter(() => r() < 0.3);
  return out.length ? out.join(' ') : FLAGS[Math.floor(r() * FLAGS.length)]!;
}

/** One random change by one session; every answer must be OK (or NO for a UID already gone). */
async function operate(v: View, r: () => number): Promise<void> {
  const pick = r();
  const uid = v.randomUid(r);
  let reply: { status: string; text: string };
  if (pick < 0.2 || uid === null) {
    const msg = message(r);
    reply = await v.command(Buffer.concat([Buffer.from(`APPEND S (${r() < 0.5 ? someFlags(r) : ''}) {${msg.length}+}\r\n`), msg]));
  } else if (pick < 0.45) reply = await v.command(`UID STORE ${uid} ${r() < 0.6 ? '+' : '-'}FLAGS (${someFlags(r)})`);
  else if (pick < 0.55) {
    const n = v.msgs.length;
    const lo = 1 + Math.floor(r() * n);
    reply = await v.command(`STORE ${lo}:${Math.min(n, lo + Math.floor(r() * 3))} ${r() < 0.5 ? '+' : '-'}FLAGS (${someFlags(r)})`);
  } else if (pick < 0.6) {
    // a FETCH by sequence number checks this session's numbering against the server's (UID in each answer)
    const n = v.msgs.length;
    const lo = 1 + Math.floor(r() * n);
    reply = await v.command(`FETCH ${lo}:${Math.min(n, lo + Math.floor(r() * 5))} (UID FLAGS MODSEQ)`);
  } else if (pick < 0.65) reply = await v.command(`UID COPY ${uid} S`);
  else if (pick < 0.72) reply = await v.command(`UID MOVE ${uid} T`);
  else if (pick < 0.8) reply = await v.command(`UID COPY ${uid} T`);
  else if (pick < 0.9) {
    reply = await v.command(`UID STORE ${uid} +FLAGS (\\Deleted)`);
    if (reply.status === 'OK') reply = await v.command(`UID EXPUNGE ${uid}`);
  } else {
    reply = await v.command(`UID STORE ${uid} +FLAGS.SILENT (\\Deleted)`);
    if (reply.status === 'OK') reply = await v.command(r() < 0.5 ? 'EXPUNGE' : 'CHECK');
  }
  assert.equal(reply.status, 'OK', `${v.name}: ${reply.status} ${reply.text} (seed ${SEED})`);
}

before(async () => {
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: off\n  submission: off\n  submissions: off\n  imaps: 127.0.0.1:0\n  pop3s: off\n`);
  await w.ok(['domain', 'add', 'example.org']);
  await w.ok(['alias', 'add', 'stress@example.org', '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['imaps']);
});

after(async () => {
  await fe?.stop();
});

test(`${SESSIONS} sessions changing one mailbox at once agree with each other and with a fresh session at every NOOP (seed from FE_STRESS_SEED)`, async () => {
  const r = prng(SEED);
  const setup = await login();
  for (const f of ['S', 'T']) assert.equal((await setup.command(`CREATE ${f}`)).status, 'OK');
  for (let i = 0; i < 12; i++) {
    const msg = message(r);
    assert.equal((await setup.command(Buffer.concat([Buffer.from(`APPEND S (${someFlags(r)}) {${msg.length}+}\r\n`), msg]))).status, 'OK');
  }
  setup.close();
  const views: View[] = [];
  // the last session uses QRESYNC: it is told of expunges by VANISHED
  for (let i = 0; i < SESSIONS; i++) views.push(await open(`session ${i + 1}${i === SESSIONS - 1 ? ' (QRESYNC)' : ''}`, i === SESSIONS - 1));
  const deadline = Date.now() + SECONDS * 1000;
  let rounds = 0;
  while (Date.now() < deadline) {
    rounds++;
    // everyone at once: each session its own 1-3 operations, in parallel with the others
    await Promise.all(
      views.map(async (v) => {
        const ops = 1 + Math.floor(r() * 3);
        for (let k = 0; k < ops; k++) await operate(v, r);
      }),
    );
    // quiescent: each session hears what happened and catches up, then all must agree
    for (const v of views) {
      const check = r() < 0.5 ? 'NOOP' : 'CHECK';
      assert.equal((await v.command(check)).status, 'OK');
      await v.catchUp();
    }
    const fresh = await login();
    await fresh.command('ENABLE CONDSTORE');
    const examined = await fresh.command('EXAMINE S');
    const highest = Number(/HIGHESTMODSEQ (\d+)/.exec(examined.untagged.join('\n'))?.[1]);
    const truth = (await fresh.command('UID FETCH 1:* (UID FLAGS MODSEQ)')).untagged
      .map((l) => /^\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({ uid: Number(m[1]), flags: normalise(m[2]!), modseq: Number(m[3]) }));
    fresh.close();
    assert.ok(truth.every((t) => t.modseq <= highest), `a MODSEQ above HIGHESTMODSEQ ${highest} (seed ${SEED})`);
    for (const v of views) {
      const where = `${v.name}, round ${rounds}, seed ${SEED}\nlast lines:\n${v.log.slice(-15).join('\n')}`;
      assert.deepEqual(v.uids(), truth.map((t) => t.uid), `UIDs in order: ${where}`);
      for (let i = 0; i < truth.length; i++) {
        const mine = v.msgs[i]!;
        for (const f of mine.flags.split(' ')) if (f) assert.ok(v.flagList.has(f), `${f} in use but not in its FLAGS (${[...v.flagList].join(' ')}): ${where}`);
        assert.equal(mine.flags, truth[i]!.flags, `flags of UID ${mine.uid}: ${where}`);
        assert.equal(mine.modseq, truth[i]!.modseq, `MODSEQ of UID ${mine.uid}: ${where}`);
      }
    }
  }
  for (const v of views) {
    v.conn.close();
    for (const [kind, n] of Object.entries(v.told)) assert.ok(n > 0, `${v.name} was never told ${kind}`);
  }
  assert.ok(rounds >= 3, `only ${rounds} rounds ran`);
  console.log(`imap stress: ${rounds} rounds, ${SESSIONS} sessions, seed ${SEED}`);
});
