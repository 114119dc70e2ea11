// A live IMAP server as the source (imapflow): every selectable folder, or one with --folder.
// Memory stays flat: the server's sizes are read first, then sources are fetched a few messages
// (at most 8 MiB) at a time and handed on before the next group is asked for.
import { ImapFlow } from 'imapflow';
import { SourceError, type SourceItem } from './source.js';

export interface ImapSourceOptions {
  url: string; // imaps://user@host[:port] (TLS) or imap://user@host[:port] (STARTTLS required)
  password: string;
  maxMessage: number;
  only?: string;
  insecure?: boolean; // do not verify the server's certificate
}

export interface ImapTarget {
  host: string;
  port: number;
  secure: boolean;
  user: string;
}

export function parseImapUrl(url: string): ImapTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SourceError(`${url} is not an imaps://user@host[:port] address`);
  }
  if (u.protocol !== 'imaps:' && u.protocol !== 'imap:') throw new SourceError(`${url}: only imaps:// (TLS) and imap:// (STARTTLS) are supported`);
  const user = decodeURIComponent(u.username);
  if (user === '') throw new SourceError(`${url} names no user (imaps://user@host)`);
  if (u.password !== '') throw new SourceError('put no password in the address; fe asks for it (or --imap-password-stdin)');
  const secure = u.protocol === 'imaps:';
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? (secure ? 993 : 143) : Number(u.port), secure, user };
}

const GROUP_MESSAGES = 20;
const GROUP_BYTES = 8 * 1024 * 1024;

function toFeName(path: string, delimiter: string | undefined): string {
  if (path.toUpperCase() === 'INBOX') return 'INBOX';
  return delimiter && delimiter !== '/' ? path.split(delimiter).join('/') : path;
}

export async function* readImap(options: ImapSourceOptions): AsyncGenerator<SourceItem> {
  const t = parseImapUrl(options.url);
  const client = new ImapFlow({
    host: t.host,
    port: t.port,
    secure: t.secure,
    doSTARTTLS: t.secure ? undefined : true,
    auth: { user: t.user, pass: options.password },
    logger: false,
    tls: { rejectUnauthorized: !options.insecure },
    disableAutoIdle: true,
  });
  client.on('error', () => undefined); // reported through the failing command instead
  try {
    await client.connect();
  } catch (e) {
    const err = e as Error & { authenticationFailed?: boolean; responseText?: string };
    throw new SourceError(`cannot log in to ${t.host}:${t.port} as ${t.user}: ${err.authenticationFailed ? 'wrong user or password' : (err.responseText ?? err.message)}`);
  }
  try {
    const folders = (await client.list()).filter((f) => !f.flags.has('\\Noselect') && !f.flags.has('\\NonExistent'));
    for (const box of folders) {
      const name = toFeName(box.path, box.delimiter);
      if (options.only !== undefined && name !== options.only && box.path !== options.only) continue;
      await client.mailboxOpen(box.path, { readOnly: true });
      const sizes: { uid: number; size: number }[] = [];
      for await (const m of client.fetch('1:*', { uid: true, size: true }, { uid: true })) sizes.push({ uid: m.uid, size: m.size ?? 0 });
      sizes.sort((a, b) => a.uid - b.uid);
      let i = 0;
      while (i < sizes.length) {
        const group: number[] = [];
        let bytes = 0;
        while (i < sizes.length && group.length < GROUP_MESSAGES && (group.length === 0 || bytes + sizes[i]!.size <= GROUP_BYTES)) {
          const s = sizes[i++]!;
          if (s.size > options.maxMessage) {
            yield { kind: 'skip', where: `imap ${box.path} uid ${s.uid}`, reason: `larger than the message size limit (${options.maxMessage} bytes)` };
            continue;
          }
          group.push(s.uid);
          bytes += s.size;
        }
        if (group.length === 0) continue;
        const got: SourceItem[] = [];
        for await (const m of client.fetch(group.join(','), { uid: true, flags: true, internalDate: true, source: true }, { uid: true })) {
          const where = `imap ${box.path} uid ${m.uid}`;
          if (!m.source) {
            got.push({ kind: 'skip', where, reason: 'the server sent no message body' });
            continue;
          }
          const date = m.internalDate instanceof Date ? m.internalDate : new Date(m.internalDate ?? Number.NaN);
          got.push({ kind: 'message', where, folder: name, specialUse: box.specialUse ?? null, raw: m.source, flags: [...(m.flags ?? [])], internalDate: date });
        }
        yield* got;
      }
    }
  } finally {
    await client.logout().catch(() => client.close());
  }
}
