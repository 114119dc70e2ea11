// A bare POP3 client for protocol tests: sends exactly what it is told and reads responses
// as bytes (single-line, or multi-line up to the "." line, un-stuffed).
import net from 'node:net';
import tls from 'node:tls';

export interface Pop3Client {
  greeting: string;
  /** Sends one command (CRLF added) and reads a single-line response. */
  line(command: string): Promise<string>;
  /** Sends one command and reads a multi-line response (just the status line on -ERR). */
  multi(command: string): Promise<{ status: string; lines: string[]; body: Buffer }>;
  /** Writes raw bytes. */
  send(data: string | Buffer): void;
  readLine(timeoutMs?: number): Promise<string>;
  readMulti(): Promise<{ status: string; lines: string[]; body: Buffer }>;
  /** STLS and the TLS handshake; resolves with the STLS response. `after`: plaintext sent in the same write. */
  stls(after?: string): Promise<string>;
  /** Bytes received and not yet read. */
  pending(): Buffer;
  /** Forgets the bytes received and not yet read. */
  clear(): void;
  socket(): net.Socket;
  close(): void;
  destroy(): void;
  closed: Promise<void>;
}

export async function pop3Connect(port: number, options: { tls?: boolean; localAddress?: string; host?: string } = {}): Promise<Pop3Client> {
  const host = options.host ?? '127.0.0.1';
  let sock: net.Socket = options.tls
    ? tls.connect({ port, host, rejectUnauthorized: false, ...(options.localAddress ? { localAddress: options.localAddress } : {}) })
    : net.connect({ port, host, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
  let buf = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  let ended = false;
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => (closedResolve = r));
  const onData = (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  };
  const hook = (s: net.Socket) => {
    s.on('data', onData);
    s.on('error', () => undefined);
    s.on('close', () => {
      ended = true;
      wake?.();
      closedResolve();
    });
  };
  hook(sock);

  const waitFor = async (find: () => number, timeoutMs: number): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = find();
      if (at >= 0) return at;
      if (ended) throw new Error(`connection closed; unread: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; unread: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(t);
          wake = null;
          resolve();
        };
      });
    }
  };

  const readLine = async (timeoutMs = 15_000): Promise<string> => {
    const at = await waitFor(() => buf.indexOf('\r\n'), timeoutMs);
    const line = buf.subarray(0, at).toString('utf8');
    buf = buf.subarray(at + 2);
    return line;
  };

  const readMulti = async () => {
    const status = await readLine();
    if (!status.startsWith('+OK')) return { status, lines: [], body: Buffer.alloc(0) };
    // the body ends at a line that is just "."
    const at = await waitFor(() => (buf.subarray(0, 3).equals(Buffer.from('.\r\n')) ? 0 : (() => {
      const i = buf.indexOf('\r\n.\r\n');
      return i < 0 ? -1 : i + 2;
    })()), 30_000);
    const raw = buf.subarray(0, at);
    buf = buf.subarray(at + 3);
    const lines: string[] = [];
    const parts: Buffer[] = [];
    let pos = 0;
    while (pos < raw.length) {
      const nl = raw.indexOf('\r\n', pos);
      let l = raw.subarray(pos, nl);
      if (l[0] === 0x2e) l = l.subarray(1);
      lines.push(l.toString('utf8'));
      parts.push(l, Buffer.from('\r\n'));
      pos = nl + 2;
    }
    return { status, lines, body: Buffer.concat(parts) };
  };

  const client: Pop3Client = {
    greeting: '',
    line: async (command) => {
      sock.write(command + '\r\n');
      return readLine();
    },
    multi: async (command) => {
      sock.write(command + '\r\n');
      return readMulti();
    },
    send: (data) => void sock.write(data),
    readLine,
    readMulti,
    async stls(after = '') {
      sock.write('STLS\r\n' + after);
      const r = await readLine();
      if (!r.startsWith('+OK')) return r;
      sock.off('data', onData);
      const secure = tls.connect({ socket: sock, rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', () => resolve());
        secure.once('error', reject);
      });
      sock = secure;
      sock.on('data', onData);
      sock.on('error', () => undefined);
      return r;
    },
    pending: () => buf,
    clear: () => void (buf = Buffer.alloc(0)),
    socket: () => sock,
    close: () => void sock.end(),
    destroy: () => void sock.destroy(),
    closed,
  };
  client.greeting = await readLine();
  return client;
}
