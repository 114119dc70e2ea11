// A raw TCP client for hostile-client tests: connects from a chosen loopback address (all of
// 127/8 reaches the loopback interface), reads until a pattern, sends exactly what it is given.
import net from 'node:net';

export interface RawConn {
  socket: net.Socket;
  /** What arrived up to the first match of `until`. */
  seen: string;
  /** Writes `line` (as is) and resolves with everything read until `until` matches. */
  send(line: string, until: RegExp): Promise<string>;
  /** Everything read so far and not yet returned by send(). */
  unread(): string;
  /** Resolves when the server has closed the connection. */
  closed: Promise<void>;
}

/** `halfOpen`: the client never closes its end when the server closes its own (a hostile client's way). */
export function rawConnect(port: number, localAddress: string, until: RegExp, opts: { halfOpen?: boolean } = {}): Promise<RawConn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: opts.halfOpen ?? false });
    let seen = '';
    let waiting: { re: RegExp; done: (s: string) => void } | null = null;
    // with halfOpen, the server's FIN ('end') is as far as "closed" goes
    const closed = new Promise<void>((r) => (socket.once('close', () => r()), socket.once('end', () => r())));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      if (waiting && waiting.re.test(seen)) {
        const w = waiting;
        waiting = null;
        const got = seen;
        seen = '';
        w.done(got);
      }
    });
    const send = (line: string, re: RegExp) =>
      new Promise<string>((done) => {
        waiting = { re, done };
        if (line) socket.write(line);
      });
    void send('', until).then((got) => resolve({ socket, seen: got, send, unread: () => seen, closed }));
  });
}
