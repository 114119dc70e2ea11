// SORT, THREAD, ESORT (RFC 5256, 5267), MULTIAPPEND (RFC 3502) and CREATE-SPECIAL-USE (RFC 6154)
// against a real `fe serve`. SORT and THREAD answers on a generated corpus of threaded messages are
// compared with orderings a Python script computes on its own from the same files with the email
// module, following RFC 5256's rules.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';
import { imapConnect, type ImapConn } from './helpers/imap-client.js';

const PASSWORD = 'sort thread password';
const USERS = ['corpus', 'multi', 'uses'];
let dns: DnsServer;
let w: ReturnType<typeof workspace>;
let fe: Daemon;
const opened: ImapConn[] = [];
const run = promisify(execFile);

async function login(user: string): Promise<ImapConn> {
  const c = await imapConnect(fe.ports.imaps!, { tls: true });
  opened.push(c);
  const r = await c.command(`LOGIN ${user}@example.org "${PASSWORD}"`);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

// ---- the corpus: replies, missing parents, subject-only threads, Re:/Fwd: variants, identical and malformed dates ----

/** A small deterministic PRNG, so a failure can be reproduced. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface CorpusMessage {
  raw: Buffer;
  internalMs: number;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
function rfc822Date(ms: number, zoneMinutes: number): string {
  const d = new Date(ms + zoneMinutes * 60_000);
  const p = (n: number) => String(n).padStart(2, '0');
  const z = `${zoneMinutes < 0 ? '-' : '+'}${p(Math.floor(Math.abs(zoneMinutes) / 60))}${p(Math.abs(zoneMinutes) % 60)}`;
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${z}`;
}
function imapDate(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

function corpus(): CorpusMessage[] {
  const rnd = prng(5256);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const people = ['Alice Archer <alice@a.example>', 'bob@b.example', '"Zed, Z." <zed@z.example>', '=?utf-8?q?=C3=89mile?= <emile@e.example>', 'carol@c.example', 'Undisclosed:;'];
  const subjects = ['Plan', 'Budget 2027', 'lunch', 'Server down', '', '[fe-dev] Release', 'Re: Re: Plan', 'Quarterly numbers'];
  const leaders = ['', '', 'Re: ', 'RE: ', 'Fwd: ', 'Fw: ', 're[2]: ', '[list] Re: ', 'Re: [list] ', 'Re:Re: '];
  const trailers = ['', '', '', ' (fwd)', '  ', ' (FWD) (fwd)'];
  const base = Date.UTC(2026, 0, 10, 9, 0, 0);
  const out: CorpusMessage[] = [];
  const ids: string[] = [];
  const refsOf = new Map<string, string[]>();
  for (let i = 0; i < 70; i++) {
    const id = `m${i}@corpus.example`;
    const headers: string[] = [];
    headers.push(`From: ${pick(people)}`, `To: ${pick(people)}`);
    if (rnd() < 0.5) headers.push(`Cc: ${pick(people)}, ${pick(people)}`);
    let subject = pick(leaders) + pick(subjects) + pick(trailers);
    if (rnd() < 0.08) subject = `[Fwd: ${pick(subjects)}]`;
    if (rnd() < 0.06) subject = `=?utf-8?q?Re=3A_${pick(['Plan', 'lunch', 'Caf=C3=A9'])}?=`;
    if (rnd() < 0.05) headers.push('Subject: ');
    else headers.push(`Subject: ${subject}`);
    // dates: ordinary, identical to another message, malformed, missing; in assorted zones
    const roll = rnd();
    const sent = base + Math.floor(rnd() * 40) * 3_600_000;
    if (roll < 0.1) headers.push('Date: not a date at all');
    else if (roll < 0.18) {
      /* no Date */
    } else if (roll < 0.3) headers.push(`Date: ${rfc822Date(base + 7_200_000, pick([0, 60, -300]))}`);
    else headers.push(`Date: ${rfc822Date(sent, pick([0, 120, -420, 330]))}`);
    // ids: own, missing, or a duplicate of an earlier one
    const idRoll = rnd();
    if (idRoll < 0.07) {
      /* no Message-ID */
    } else if (idRoll < 0.12 && ids.length > 0) headers.push(`Message-ID: <${pick(ids)}>`);
    else headers.push(`Message-ID: <${id}>`);
    // references: to an earlier message (a chain), to one never delivered, via In-Reply-To only
    const parent = ids.length > 0 && rnd() < 0.6 ? pick(ids) : null;
    let refs: string[] = [];
    if (parent) {
      refs = [...(refsOf.get(parent) ?? []), parent];
      if (rnd() < 0.2) refs.splice(Math.floor(rnd() * refs.length), 0, `lost${i}@gone.example`);
      const how = rnd();
      if (how < 0.2) headers.push(`In-Reply-To: <${parent}>`);
      else if (how < 0.3) headers.push(`References: ${refs.map((r) => `<${r}>`).join('\r\n ')}`, `In-Reply-To: <${parent}>`);
      else headers.push(`References: ${refs.map((r) => `<${r}>`).join(' ')}`);
    } else if (rnd() < 0.1) {
      refs = [`lost-root${i % 3}@gone.example`];
      headers.push(`References: <${refs[0]}>`);
    }
    ids.push(id);
    refsOf.set(id, refs);
    const body = 'x'.repeat(Math.floor(rnd() * 300)) + '\r\n';
    // internal dates: mostly distinct, some shared
    const internalMs = base + (rnd() < 0.15 ? 0 : i * 60_000);
    out.push({ raw: Buffer.from(headers.join('\r\n') + '\r\n\r\n' + body), internalMs });
  }
  // hand-made cases the random ones may miss: two dummies of one subject, conflicting
  // References chains (a link once made stays), a reference loop, a reply whose parent is absent
  const fixed: [string, string][] = [
    ['Dinner', 'References: <lostA@gone.example>'],
    ['Re: Dinner', 'References: <lostA@gone.example>'],
    ['Re: Dinner', 'References: <lostB@gone.example>'],
    ['Dinner', 'References: <lostB@gone.example>'],
    ['Chain', 'References: <p1@x.example> <c1@x.example>'],
    ['Chain', 'References: <p2@x.example> <c1@x.example>'],
    ['Chain start', 'Message-ID: <p1@x.example>'],
    ['Other start', 'Message-ID: <p2@x.example>'],
    ['Loop', 'Message-ID: <l1@x.example>\r\nReferences: <l2@x.example>'],
    ['Loop', 'Message-ID: <l2@x.example>\r\nReferences: <l1@x.example>'],
    ['Re: Orphan', 'In-Reply-To: <never@gone.example> (sent earlier)'],
  ];
  fixed.forEach(([subject, extra], k) => {
    const raw = `From: fixed@f.example\r\nSubject: ${subject}\r\nDate: ${rfc822Date(base + k * 1_000_000, 0)}\r\n${extra}\r\n\r\nbody\r\n`;
    out.push({ raw: Buffer.from(raw), internalMs: base + k * 1000 });
  });
  return out;
}

// ---- the independent oracle ----

const ORACLE = String.raw`
import email, email.utils, json, re, sys
from email.header import decode_header

ASCII_UP = {c: c - 32 for c in range(ord('a'), ord('z') + 1)}

def decode(raw):
    if raw is None:
        return ''
    out = []
    for part, cs in decode_header(raw):
        out.append(part.decode(cs or 'latin-1', 'replace') if isinstance(part, bytes) else part)
    return ''.join(out)

def take_blob(t):
    # "[" *BLOBCHAR "]" *WSP, or None
    if not t.startswith('['):
        return None
    j = t.find(']')
    if j < 0 or '[' in t[1:j]:
        return None
    return t[j + 1:].lstrip(' \t')

def take_refwd(t):
    # *subj-blob ("re" / "fw" / "fwd") *WSP [subj-blob] ":"
    while True:
        r = take_blob(t)
        if r is None:
            break
        t = r
    low = t.lower()
    for w in ('fwd', 'fw', 're'):
        if low.startswith(w):
            u = t[len(w):].lstrip(' \t')
            if u.startswith(':'):
                return u[1:]
            b = take_blob(u)
            if b is not None and b.startswith(':'):
                return b[1:]
    return None

def base_subject(raw):
    s = decode(raw).replace('\r', '').replace('\n', '')
    s = re.sub('[ \t]+', ' ', s)
    refwd = False
    while True:
        while True:
            if s.endswith(' ') or s.endswith('\t'):
                s = s[:-1]
            elif s.lower().endswith('(fwd)'):
                s = s[:-5]
                refwd = True
            else:
                break
        while True:
            if s[:1] in (' ', '\t') and s:
                s = s[1:]
                continue
            r = take_refwd(s)
            if r is not None:
                s = r
                refwd = True
                continue
            b = take_blob(s)
            if b is not None and b != '':
                s = b
                continue
            break
        if s.lower().startswith('[fwd:') and s.endswith(']'):
            s = s[5:-1]
            refwd = True
            continue
        break
    return s.translate(ASCII_UP), refwd

def first_addr(msg, field):
    for name, addr in email.utils.getaddresses(msg.get_all(field, [])):
        if '@' in addr:
            return name, addr
    return None

def mailbox_key(msg, field):
    a = first_addr(msg, field)
    return a[1].rsplit('@', 1)[0].translate(ASCII_UP) if a else ''

def display_key(msg, field):
    a = first_addr(msg, field)
    if not a:
        return ''
    name = decode(a[0]).strip()
    return (name or a[1]).lower()

def ids_in(value):
    return re.findall(r'<([^<>\s@]+@[^<>\s]+)>', value or '')

meta = json.load(open(sys.argv[1]))
msgs = []
for i, m in enumerate(meta):
    raw = open(m['file'], 'rb').read()
    msg = email.message_from_bytes(raw)
    parsed = email.utils.parsedate_tz(msg['date']) if msg['date'] else None
    sent = email.utils.mktime_tz(parsed) * 1000 if parsed else m['internal']
    msgs.append({'seq': i + 1, 'size': len(raw), 'internal': m['internal'], 'sent': sent, 'msg': msg,
                 'subject': base_subject(msg['subject'])})

def key(m, k):
    if k == 'ARRIVAL': return m['internal']
    if k == 'DATE': return m['sent']
    if k == 'SIZE': return m['size']
    if k == 'SUBJECT': return m['subject'][0]
    if k in ('FROM', 'TO', 'CC'): return mailbox_key(m['msg'], k.lower())
    if k == 'DISPLAYFROM': return display_key(m['msg'], 'from')
    if k == 'DISPLAYTO': return display_key(m['msg'], 'to')

def sort(criteria):
    order = sorted(msgs, key=lambda m: m['seq'])
    # stable sorts from the last criterion to the first; the sequence number breaks ties
    for c in reversed(criteria):
        rev = c.startswith('REVERSE ')
        k = c.split(' ')[-1]
        order = sorted(order, key=lambda m: key(m, k), reverse=rev)
        if rev:
            # reverse=True keeps stability in Python, so equal keys stay in sequence order
            pass
    return [m['seq'] for m in order]

def date_key(m):
    return (m['sent'], m['seq'])

class C:
    def __init__(self, m=None):
        self.m = m; self.parent = None; self.kids = []

def first(c):
    return c.m if c.m else first(c.kids[0])

def ancestors(c):
    while c is not None:
        yield c
        c = c.parent

def setparent(child, parent):
    if child.parent is not None:
        child.parent.kids.remove(child)
        child.parent = None
    if parent is not None:
        child.parent = parent
        parent.kids.append(child)

def references():
    table = {}
    everyone = []
    def get(i):
        if i not in table:
            table[i] = C()
        return table[i]
    for m in msgs:
        own = ids_in(m['msg']['message-id'])
        if own and (own[0] not in table or table[own[0]].m is None):
            c = get(own[0]); c.m = m
        else:
            c = C(m)
        everyone.append(c)
        refs = ids_in(' '.join(m['msg'].get_all('references', [])))
        if not refs:
            refs = ids_in(m['msg']['in-reply-to'])[:1]
        prev = None
        for r in refs:
            rc = get(r)
            if prev is not None and rc is not prev and rc.parent is None and rc not in list(ancestors(prev)):
                setparent(rc, prev)
            prev = rc
        if prev is not c:
            setparent(c, None)
            if prev is not None and c not in list(ancestors(prev)):
                setparent(c, prev)
    roots = []
    for c in list(table.values()) + everyone:
        if c.parent is None and c not in roots:
            roots.append(c)
    def prune(lst, top):
        res = []
        for c in lst:
            c.kids = prune(c.kids, False)
            for k in c.kids: k.parent = c
            if c.m is not None:
                res.append(c)
            elif not c.kids:
                pass
            elif top and len(c.kids) > 1:
                res.append(c)
            else:
                for k in c.kids:
                    k.parent = None if top else c.parent
                    res.append(k)
        return res
    roots = prune(roots, True)
    def sort_tree(lst):
        for c in lst: sort_tree(c.kids)
        lst.sort(key=lambda c: date_key(first(c)))
    sort_tree(roots)
    subj = lambda c: first(c)['subject']
    st = {}
    for c in roots:
        s, rf = subj(c)
        if s == '': continue
        old = st.get(s)
        if old is None or (c.m is None and old.m is not None) or (subj(old)[1] and not rf):
            st[s] = c
    out = []
    for c in roots:
        if c.parent is not None: continue
        s, rf = subj(c)
        t = st.get(s) if s else None
        if t is None or t is c:
            out.append(c); continue
        if t.m is None and c.m is None:
            for k in list(c.kids): setparent(k, t)
        elif t.m is None:
            setparent(c, t)
        elif c.m is None:
            if t in out: out[out.index(t)] = c
            else: out.append(c)
            setparent(t, c); st[s] = c
        elif rf and not subj(t)[1]:
            setparent(c, t)
        else:
            d = C()
            if t in out: out[out.index(t)] = d
            else: out.append(d)
            setparent(t, d); setparent(c, d); st[s] = d
    sort_tree(out)
    return out

def ordered_subject():
    groups = {}
    for m in sorted(msgs, key=date_key):
        groups.setdefault(m['subject'][0], []).append(m)
    roots = []
    for s, ms in groups.items():
        r = C(ms[0]); r.kids = [C(x) for x in ms[1:]]
        roots.append(r)
    roots.sort(key=lambda c: date_key(c.m))
    return roots

def fmt(c):
    s = str(c.m['seq']) if c.m else ''
    if len(c.kids) == 1:
        s += (' ' if s else '') + fmt(c.kids[0])
    elif c.kids:
        s += (' ' if s else '') + ''.join('(' + fmt(k) + ')' for k in c.kids)
    return s

crits = json.load(open(sys.argv[2]))
print(json.dumps({
    'sort': {c: sort(c.split(',')) for c in crits},
    'references': ''.join('(' + fmt(c) + ')' for c in references()),
    'orderedsubject': ''.join('(' + fmt(c) + ')' for c in ordered_subject()),
}))
`;

const CRITERIA = ['ARRIVAL', 'DATE', 'REVERSE DATE', 'SIZE', 'SUBJECT', 'FROM', 'TO', 'CC', 'DISPLAYFROM', 'DISPLAYTO', 'SUBJECT,REVERSE DATE', 'CC,FROM,REVERSE SIZE', 'REVERSE ARRIVAL'];
let expected: { sort: Record<string, number[]>; references: string; orderedsubject: string };

before(async () => {
  dns = await startDnsServer({});
  w = workspace(`hostname: mail.example.org\ndata_dir: ./data\nlisten:\n  mx: off\n  submission: off\n  submissions: off\n  imap: off\n  imaps: 127.0.0.1:0\n  pop3s: off\ndns:\n  servers: ["${dns.address}"]\n`);
  await w.ok(['domain', 'add', 'example.org']);
  for (const user of USERS) await w.ok(['alias', 'add', `${user}@example.org`, '--mailbox', '--password-stdin'], { stdin: `${PASSWORD}\n` });
  fe = await startServe(w.config, [], {}, ['imaps']);
  // the corpus, delivered by APPEND with its internal dates, and handed to the oracle as files
  const msgs = corpus();
  const dir = path.join(w.dir, 'corpus');
  mkdirSync(dir);
  const c = await login('corpus');
  const meta = msgs.map((m, i) => {
    const file = path.join(dir, `${i + 1}.eml`);
    writeFileSync(file, m.raw);
    return { file, internal: m.internalMs };
  });
  for (const m of msgs) {
    const r = await c.command(Buffer.concat([Buffer.from(`APPEND INBOX "${imapDate(m.internalMs)}" {${m.raw.length}+}\r\n`), m.raw]));
    assert.equal(r.status, 'OK', r.text);
  }
  c.close();
  writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta));
  writeFileSync(path.join(dir, 'criteria.json'), JSON.stringify(CRITERIA));
  writeFileSync(path.join(dir, 'oracle.py'), ORACLE);
  const { stdout } = await run('/usr/bin/python3', [path.join(dir, 'oracle.py'), path.join(dir, 'meta.json'), path.join(dir, 'criteria.json')], { timeout: 60_000 });
  expected = JSON.parse(stdout);
});

/** Each test's connections are closed after it, failed or not. */
const closeOpened = () => Promise.all(opened.splice(0).map((c) => (c.close(), c.closed)));
afterEach(closeOpened);
after(() => closeOpened().then(() => fe?.stop()).then(() => dns?.close()));

const numbers = (line: string | undefined, prefix: string): number[] => {
  assert.ok(line?.startsWith(prefix), `expected ${prefix}, got ${line}`);
  return line!.slice(prefix.length).trim().split(' ').filter(Boolean).map(Number);
};

test('CAPABILITY lists SORT, THREAD, ESORT, MULTIAPPEND and CREATE-SPECIAL-USE', async () => {
  const c = await login('corpus');
  const r = await c.command('CAPABILITY');
  const caps = r.untagged[0]!.split(' ');
  for (const cap of ['SORT', 'SORT=DISPLAY', 'THREAD=REFERENCES', 'THREAD=ORDEREDSUBJECT', 'ESORT', 'MULTIAPPEND', 'CREATE-SPECIAL-USE']) assert.ok(caps.includes(cap), cap);
  // CONTEXT=SORT/SEARCH need UPDATE notifications fe does not send: not advertised
  assert.ok(!caps.some((x) => x.startsWith('CONTEXT=')));
});

test('SORT answers match RFC 5256 orderings computed independently', async () => {
  const c = await login('corpus');
  assert.equal((await c.command('EXAMINE INBOX')).status, 'OK');
  for (const crit of CRITERIA) {
    const r = await c.command(`SORT (${crit.split(',').join(' ')}) UTF-8 ALL`);
    assert.equal(r.status, 'OK', r.text);
    assert.deepEqual(numbers(r.untagged.find((l) => l.startsWith('* SORT')), '* SORT'), expected.sort[crit], `SORT (${crit})`);
  }
  // UID SORT with other search keys: the same order, restricted (UIDs equal sequence numbers here)
  const r = await c.command('UID SORT (REVERSE DATE) US-ASCII UID 10:40 NOT LARGER 200');
  assert.equal(r.status, 'OK', r.text);
  const sizes = new Map((await c.command('FETCH 1:* (RFC822.SIZE)')).untagged.map((l) => /^\* (\d+) FETCH \(RFC822\.SIZE (\d+)\)/.exec(l)!).map((m) => [Number(m[1]), Number(m[2])]));
  assert.deepEqual(numbers(r.untagged[0], '* SORT'), expected.sort['REVERSE DATE']!.filter((n) => n >= 10 && n <= 40 && sizes.get(n)! <= 200));
});

test('THREAD REFERENCES and ORDEREDSUBJECT match RFC 5256 threads computed independently', async () => {
  const c = await login('corpus');
  await c.command('EXAMINE INBOX');
  const refs = await c.command('THREAD REFERENCES UTF-8 ALL');
  assert.equal(refs.status, 'OK', refs.text);
  assert.equal(refs.untagged.find((l) => l.startsWith('* THREAD')), `* THREAD ${expected.references}`);
  const os = await c.command('THREAD ORDEREDSUBJECT UTF-8 ALL');
  assert.equal(os.untagged.find((l) => l.startsWith('* THREAD')), `* THREAD ${expected.orderedsubject}`);
  // a search that matches nothing: an empty THREAD response; an unknown algorithm: BAD
  assert.deepEqual((await c.command('UID THREAD REFERENCES UTF-8 UID 9999')).untagged, ['* THREAD']);
  assert.equal((await c.command('THREAD JWZ UTF-8 ALL')).status, 'BAD');
});

test('ESORT: RETURN (MIN MAX COUNT ALL) and PARTIAL follow the sort order', async () => {
  const c = await login('corpus');
  await c.command('EXAMINE INBOX');
  const order = expected.sort['SUBJECT,REVERSE DATE']!;
  const r = await c.command('SORT RETURN (MIN MAX COUNT ALL) (SUBJECT REVERSE DATE) UTF-8 ALL');
  assert.equal(r.status, 'OK', r.text);
  const m = /^\* ESEARCH \(TAG "(\w+)"\) MIN (\d+) MAX (\d+) COUNT (\d+) ALL (\S+)$/.exec(r.untagged[0]!);
  assert.ok(m, r.untagged[0]);
  assert.deepEqual([Number(m[2]), Number(m[3]), Number(m[4])], [order[0], order.at(-1), order.length]);
  const all = m[5]!.split(',').flatMap((p) => {
    const [a, b] = p.split(':').map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, k) => a! + k);
  });
  assert.deepEqual(all, order);
  const p = await c.command('UID SORT RETURN (PARTIAL 3:7) (SUBJECT REVERSE DATE) UTF-8 ALL');
  const pm = /^\* ESEARCH \(TAG "\w+"\) UID PARTIAL \(3:7 (\S+)\)$/.exec(p.untagged[0]!);
  assert.ok(pm, p.untagged[0]);
  const runs: string[] = [];
  for (const n of order.slice(2, 7)) {
    const last = runs.at(-1);
    const end = last === undefined ? NaN : Number(last.split(':').at(-1));
    if (n === end + 1) runs[runs.length - 1] = `${last!.split(':')[0]}:${n}`;
    else runs.push(String(n));
  }
  assert.equal(pm[1], runs.join(','));
  const beyond = await c.command('SORT RETURN (PARTIAL 500:600) (DATE) UTF-8 ALL');
  assert.match(beyond.untagged[0]!, /PARTIAL \(500:600 NIL\)$/);
  assert.equal((await c.command('SORT (DATE REVERSE) UTF-8 ALL')).status, 'BAD');
  assert.equal((await c.command('SORT (BOGUS) UTF-8 ALL')).status, 'BAD');
  const cs = await c.command('SORT (DATE) KOI8-R ALL');
  assert.equal(cs.status, 'NO');
  assert.match(cs.text, /BADCHARSET/);
});

const msg = (subject: string) => Buffer.from(`From: m@example.org\r\nTo: multi@example.org\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@t.example>\r\n\r\nbody of ${subject}\r\n`);

test('SORT keeps up with changes: appended and expunged messages, and a folder renamed and made anew under its old name', async () => {
  const c = await login('uses');
  const other = await login('uses');
  const append = async (folder: string, subject: string) => assert.equal((await other.command(Buffer.concat([Buffer.from(`APPEND ${folder} {${msg(subject).length}+}\r\n`), msg(subject)]))).status, 'OK');
  assert.equal((await c.command('CREATE Sorted')).status, 'OK');
  for (const s of ['delta', 'alpha', 'charlie']) await append('Sorted', s);
  await c.command('SELECT Sorted');
  const sorted = async (criteria: string) => numbers((await c.command(`UID SORT (${criteria}) UTF-8 ALL`)).untagged.find((l) => l.startsWith('* SORT')), '* SORT');
  assert.deepEqual(await sorted('SUBJECT'), [2, 3, 1]);
  assert.deepEqual(await sorted('SUBJECT'), [2, 3, 1], 'the same answer the second time');
  const threads = async (algorithm: string) => (await c.command(`UID THREAD ${algorithm} UTF-8 ALL`)).untagged.find((l) => l.startsWith('* THREAD'));
  assert.equal(await threads('REFERENCES'), '* THREAD (1)(2)(3)');
  // another session adds "bravo" and deletes "alpha": the next SORT has the one and not the other
  await append('Sorted', 'bravo');
  await other.command('SELECT Sorted');
  assert.equal((await other.command('UID STORE 2 +FLAGS.SILENT (\\Deleted)')).status, 'OK');
  assert.equal((await other.command('EXPUNGE')).status, 'OK');
  await c.command('NOOP');
  assert.deepEqual(await sorted('SUBJECT'), [4, 3, 1]);
  assert.deepEqual(await sorted('REVERSE SUBJECT'), [1, 3, 4]);
  assert.equal(await threads('REFERENCES'), '* THREAD (1)(3)(4)');
  assert.equal(await threads('ORDEREDSUBJECT'), '* THREAD (1)(3)(4)');
  // Sorted becomes Old; a new Sorted gets UIDs from 1 again, for other subjects
  await c.command('UNSELECT');
  assert.equal((await c.command('RENAME Sorted Old')).status, 'OK');
  assert.equal((await c.command('CREATE Sorted')).status, 'OK');
  for (const s of ['zulu', 'yankee', 'xray']) await append('Sorted', s);
  await c.command('SELECT Sorted');
  assert.deepEqual(await sorted('SUBJECT'), [3, 2, 1], 'UIDs 1 to 3 of the new folder sort by their own subjects');
  await c.command('SELECT Old');
  assert.deepEqual(await sorted('SUBJECT'), [4, 3, 1]);
});

test('MULTIAPPEND (raw protocol): several messages in one APPEND, APPENDUID with a uid-set, all or nothing', async () => {
  const c = await login('multi');
  assert.equal((await c.command('CREATE Batch')).status, 'OK');
  const [a, b, d] = [msg('first one'), msg('second one'), msg('third one')];
  const r = await c.command(Buffer.concat([Buffer.from(`APPEND Batch (\\Seen) {${a.length}+}\r\n`), a, Buffer.from(` (\\Flagged) "11-Jan-2026 10:00:00 +0100" {${b.length}+}\r\n`), b, Buffer.from(` {${d.length}+}\r\n`), d]));
  assert.equal(r.status, 'OK', r.text);
  const uid = /\[APPENDUID (\d+) (\S+)\]/.exec(r.text);
  assert.equal(uid?.[2], '1:3');
  await c.command('SELECT Batch');
  const f = await c.command('FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
  assert.equal(f.untagged.length, 3);
  assert.match(f.untagged[0]!, /first one.*FLAGS \(\\Seen \\Recent\)/s);
  assert.match(f.untagged[1]!, /INTERNALDATE "11-Jan-2026 09:00:00 \+0000".*second one.*FLAGS \(\\Flagged \\Recent\)/s);
  assert.match(f.untagged[2]!, /third one.*FLAGS \(\\Recent\)/s);
  // the third message's date-time is invalid: BAD, and the first two are not added either
  const bad = await c.command(Buffer.concat([Buffer.from(`APPEND Batch {${a.length}+}\r\n`), a, Buffer.from(` {${b.length}+}\r\n`), b, Buffer.from(` "32-Foo-2026 99:00:00 +0000" {${d.length}+}\r\n`), d]));
  assert.equal(bad.status, 'BAD');
  const st = await c.command('STATUS Batch (MESSAGES UIDNEXT)');
  assert.match(st.untagged[0]!, /MESSAGES 3 UIDNEXT 4/);
  // to a mailbox that does not exist: NO [TRYCREATE], nothing created
  const none = await c.command(Buffer.concat([Buffer.from(`APPEND Nowhere {${a.length}+}\r\n`), a, Buffer.from(` {${b.length}+}\r\n`), b]));
  assert.equal(none.status, 'NO');
  assert.match(none.text, /TRYCREATE/);
});

test('MULTIAPPEND with Python imaplib', async () => {
  const script = `
import imaplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
M = imaplib.IMAP4_SSL('127.0.0.1', ${fe.ports.imaps}, ssl_context=ctx)
M.login('multi@example.org', '${PASSWORD}')
assert 'MULTIAPPEND' in M.capabilities
M.create('Py')
one = b'Subject: py one\\r\\n\\r\\nhello\\r\\n'
two = b'Subject: py two\\r\\n\\r\\nworld\\r\\n'
# imaplib sends one literal per command itself; LITERAL+ carries the others inline
arg = '(\\\\Seen) {%d+}\\r\\n%s {%d+}\\r\\n%s' % (len(one), one.decode(), len(two), two.decode())
typ, data = M._simple_command('APPEND', 'Py', arg)
print(typ, M.response('APPENDUID')[1][0].decode())
M.select('Py')
typ, data = M.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
print(' | '.join(x[1].decode().strip() for x in data if isinstance(x, tuple)))
M.logout()
`;
  const file = path.join(w.dir, 'multiappend.py');
  writeFileSync(file, script);
  const { stdout } = await run('/usr/bin/python3', [file], { timeout: 60_000 });
  const [status, subjects] = stdout.trim().split('\n');
  assert.match(status!, /^OK \d+ 1:2$/);
  assert.equal(subjects, 'Subject: py one | Subject: py two');
});

test('CREATE-SPECIAL-USE: CREATE name (USE (\\Archive)) is shown in LIST; unknown or taken uses are NO [USEATTR]', async () => {
  const c = await login('uses');
  // a fresh mailbox has the default folders, Archive among them: give the use back first
  const list = await c.command('LIST "" "*" RETURN (SPECIAL-USE)');
  const holder = list.untagged.find((l) => l.includes('\\Archive'));
  if (holder) assert.equal((await c.command(`DELETE ${/"\/" (.+)$/.exec(holder)![1]}`)).status, 'OK');
  assert.equal((await c.command('CREATE Old/Stuff (USE (\\Archive))')).status, 'OK');
  const l = await c.command('LIST "" "Old/Stuff"');
  assert.match(l.untagged[0]!, /\(.*\\Archive.*\) "\/" Old\/Stuff/);
  const unknown = await c.command('CREATE Weird (USE (\\Bogus))');
  assert.equal(unknown.status, 'NO');
  assert.match(unknown.text, /^\[USEATTR\]/);
  const taken = await c.command('CREATE Second (USE (\\Archive))');
  assert.match(`${taken.status} ${taken.text}`, /^NO \[USEATTR\]/);
  assert.equal((await c.command('LIST "" "Weird"')).untagged.length, 0, 'nothing created on NO');
  assert.equal((await c.command('CREATE Plain ()')).status, 'OK');
  assert.equal((await c.command('CREATE Bad (COLOUR red)')).status, 'BAD');
});
