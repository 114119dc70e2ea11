// Client-supplied strings (login names, addresses, mailbox names) reach the log escaped: no terminal
// escape sequences, fake line breaks or bidi overrides from a client end up in a log viewer.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createLogger } from '../src/util/log.js';
import { startServe, type Daemon } from './helpers/daemon.js';
import { workspace } from './helpers/fe.js';

// Anything a terminal or log viewer would act on.
const RAW_UNSAFE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/u;

test('the logger escapes control, C1 and bidi characters in messages and fields', () => {
  const lines: string[] = [];
  const log = createLogger('debug', 'fe', (l) => lines.push(l));
  const evil = 'a\x1b[2J\r\ninfo fe: fake\u009b31m\u202egnp.exe\u{e0041}\x07';
  log.info(`handling ${evil}`, { user: evil, plain: 'x\x1by', list: [evil], addr: log.addr(evil) });
  assert.equal(lines.length, 1);
  const line = lines[0]!;
  assert.doesNotMatch(line, RAW_UNSAFE);
  assert.ok(!line.includes('\n'));
  assert.ok(!/\p{Cf}/u.test(line), 'no format characters left');
  assert.match(line, /^info fe: handling a\\x1b\[2J\\x0d\\x0ainfo fe: fake\\x9b31m\\u\{202e\}gnp\.exe\\u\{e0041\}\\x07 /);
  assert.match(line, /plain="x\\u001by"/);
  // Safe strings stay as they were.
  lines.length = 0;
  log.info('IMAP login', { user: 'me@example.org', name: 'Zoë', folder: '\\Sent' });
  assert.equal(lines[0], 'info fe: IMAP login user=me@example.org name=Zoë folder="\\\\Sent"');
});

let fe: Daemon;
before(async () => {
  const w = workspace('hostname: mail.example.org\ndata_dir: ./data\nlog_level: debug\nloopback_plaintext_auth: true\nlisten:\n  mx: off\n  submission: off\n  submissions: off\n  imap: 127.0.0.1:0\n  imaps: off\n  pop3: 127.0.0.1:0\n  pop3s: off\n  http: off\n  https: off\n');
  await w.ok(['domain', 'add', 'example.org']);
  fe = await startServe(w.config, [], {}, ['imap', 'pop3']);
});
after(async () => {
  await fe?.stop();
});

/** Connects, waits for the greeting, sends each chunk after the previous reply, returns all replies. */
async function converse(port: number, chunks: (string | Buffer)[]): Promise<string> {
  const sock = net.connect(port, '127.0.0.1');
  let got = '';
  let wake: (() => void) | null = null;
  sock.on('data', (d: Buffer) => {
    got += d.toString('latin1');
    wake?.();
  });
  const waitFor = async (re: RegExp, from: number) => {
    const deadline = Date.now() + 15_000;
    while (!re.test(got.slice(from))) {
      if (Date.now() > deadline) throw new Error(`no reply matching ${re}; got:\n${got}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
  };
  await waitFor(/\r\n/, 0);
  for (const c of chunks) {
    const from = got.length;
    sock.write(c);
    await waitFor(/\r\n$/, from);
  }
  sock.destroy();
  return got;
}

test('IMAP and POP3 login names with control characters are logged escaped', async () => {
  const name = 'root\x1b[31m\x07\u009b2J';
  const bytes = Buffer.from(name, 'utf8');
  // IMAP: the name as a literal, the only way to send control characters in a LOGIN.
  await converse(fe.ports.imap!, [Buffer.concat([Buffer.from(`a1 LOGIN {${bytes.length}+}\r\n`), bytes, Buffer.from(' wrong\r\n')])]);
  // POP3: USER takes the rest of the line.
  await converse(fe.ports.pop3!, [Buffer.concat([Buffer.from('USER '), bytes, Buffer.from('\r\n')]), 'PASS wrong\r\n']);
  await fe.waitForLog(/IMAP login failed.*root/);
  await fe.waitForLog(/fe\/pop3: login failed.*root/);
  const relevant = fe.log().split('\n').filter((l) => l.includes('root'));
  assert.ok(relevant.length >= 2, fe.log());
  for (const l of relevant) {
    assert.doesNotMatch(l, RAW_UNSAFE, `raw control character in: ${JSON.stringify(l)}`);
    assert.match(l, /root\\(x1b|u001b)\[31m/, l);
  }
});
