// A bare IMAP client for protocol tests: sends a tagged command, collects every line up to its
// tagged reply. Literals in responses are kept inline ({n} and the octets).
import net from 'node:net';
import tls from 'node:tls';

export interface ImapReply {
  status: string; // OK, NO, BAD
  text: string; // the tagged line after the status
  untagged: string[];
}

export interface ImapConn {
  greeting: string;
  command(line: string | Buffer): Promise<ImapReply>;
  /** Lines received that were not part of a command's reply (IDLE updates). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  write(data: string | Buffer): void;
  close(): void;
  closed: Promise<void>;
}

/** `localAddress`: the loopback address to connect from (throttle tests give each case its own). */
export function imapConnect(port: number, opts: { tls?: boolean; localAddress?: string } = {}): Promise<ImapConn> {
  return new Promise((resolve, reject) => {
    const from = opts.localAddress ? { localAddress: opts.localAddress } : {};
    const socket: net.Socket = opts.tls ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...from }) : net.connect({ port, host: '127.0.0.1', ...from });
    let buf = Buffer.alloc(0);
    const lines: string[] = [];
    let waiter: (() => void) | null = null;
    let n = 0;
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      // A response line may hold several literals: "... {n}CRLF<n octets> ... {m}CRLF<m octets> ...CRLF".
      outer: for (;;) {
        let eol = buf.indexOf('\r\n');
        if (eol < 0) break;
        let line = buf.subarray(0, eol).toString('utf8');
        let end = eol + 2;
        // literal8 (~{n}, RFC 3516) content is kept as latin1: one character per octet
        for (let lit = /(~?)\{(\d+)\}$/.exec(line); lit; lit = /(~?)\{(\d+)\}$/.exec(line)) {
          const size = Number(lit[2]);
          if (buf.length < end + size) break outer; // wait for the whole literal
          line += '\r\n' + buf.subarray(end, end + size).toString(lit[1] ? 'latin1' : 'utf8');
          end += size;
          eol = buf.indexOf('\r\n', end);
          if (eol < 0) break outer;
          line += buf.subarray(end, eol).toString('utf8');
          end = eol + 2;
        }
        lines.push(line);
        buf = buf.subarray(end);
      }
      waiter?.();
    });
    const nextLine = (timeoutMs: number) =>
      new Promise<string>((res, rej) => {
        const attempt = () => {
          if (lines.length > 0) {
            waiter = null;
            clearTimeout(timer);
            res(lines.shift()!);
          }
        };
        const timer = setTimeout(() => {
          waiter = null;
          rej(new Error('timed out waiting for a line'));
        }, timeoutMs);
        waiter = attempt;
        attempt();
      });
    const start = () =>
      nextLine(10_000).then((greeting) =>
        resolve({
          greeting,
          write: (data) => socket.write(data),
          async command(line) {
            const tag = `t${++n}`;
            socket.write(Buffer.concat([Buffer.from(`${tag} `), Buffer.isBuffer(line) ? line : Buffer.from(line), Buffer.from('\r\n')]));
            const untagged: string[] = [];
            for (;;) {
              const l = await nextLine(30_000);
              if (l.startsWith(`${tag} `)) {
                const [, status = '', text = ''] = /^\S+ (\S+) ?(.*)$/s.exec(l) ?? [];
                return { status, text, untagged };
              }
              untagged.push(l);
            }
          },
          async waitFor(pattern, timeoutMs = 10_000) {
            for (;;) {
              const l = await nextLine(timeoutMs);
              if (pattern.test(l)) return l;
            }
          },
          close: () => socket.destroy(),
          closed,
        }),
      );
    if (opts.tls) (socket as tls.TLSSocket).once('secureConnect', () => void start());
    else socket.once('connect', () => void start());
  });
}

/** A TLS connection logged in as `user` (it must succeed). */
export async function imapLogin(port: number, user: string, password: string): Promise<ImapConn> {
  const c = await imapConnect(port, { tls: true });
  const r = await c.command(`LOGIN ${user} "${password}"`);
  if (r.status !== 'OK') throw new Error(`LOGIN ${user}: ${r.status} ${r.text}`);
  return c;
}
