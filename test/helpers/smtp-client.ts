// A bare SMTP client for protocol tests: sends exactly the lines given and returns the replies.
import net from 'node:net';

export interface SmtpSession {
  greeting: string;
  /** Sends one line (CRLF added) and resolves with the full reply (multi-line joined by \n). */
  command(line: string): Promise<string>;
  /** Sends raw bytes and waits for one reply (for DATA content ending in CRLF.CRLF). */
  raw(data: string | Buffer): Promise<string>;
  close(): void;
  closed: Promise<void>;
}

export function smtpConnect(port: number, host = '127.0.0.1'): Promise<SmtpSession> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host);
    let buffer = '';
    let pending: ((reply: string) => void) | null = null;
    const replies: string[] = [];
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      buffer += d;
      // A reply is complete at a line "NNN text" (space, not dash, after the code).
      for (;;) {
        const m = /(^|\r\n)(\d{3}) [^\r\n]*\r\n/.exec(buffer);
        if (!m) break;
        const end = m.index + m[0].length;
        replies.push(buffer.slice(0, end).replace(/\r\n$/, '').replace(/\r\n/g, '\n').replace(/^\n/, ''));
        buffer = buffer.slice(end);
      }
      while (pending && replies.length > 0) {
        const p = pending;
        pending = null;
        p(replies.shift()!);
      }
    });
    socket.on('error', reject);
    const next = () =>
      new Promise<string>((r) => {
        if (replies.length > 0) return r(replies.shift()!);
        pending = r;
        void closed.then(() => {
          if (pending === r) r('(connection closed)');
        });
      });
    void next().then((greeting) =>
      resolve({
        greeting,
        command: (line) => {
          socket.write(line + '\r\n');
          return next();
        },
        raw: (data) => {
          socket.write(data);
          return next();
        },
        close: () => socket.destroy(),
        closed,
      }),
    );
  });
}
