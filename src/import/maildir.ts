// Maildir and Maildir++ (as Dovecot and mbsync write them): the root is INBOX, a subfolder A/B is
// the directory ".A.B" (names in modified UTF-7), flags are the letters after ":2," in a file's
// name, keywords are the letters a..z that the folder's dovecot-keywords file names, and the
// internal date is the file's mtime. Files in new/ have not been seen.
// Files are read one at a time.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { restoreCrlf } from './message.js';
import { decodeMutf7 } from './mutf7.js';
import { SourceError, type SourceItem } from './source.js';

const LETTERS: Record<string, string> = { D: '\\Draft', F: '\\Flagged', P: '$Forwarded', R: '\\Answered', S: '\\Seen', T: '\\Deleted' };

function isMaildir(dir: string): boolean {
  return existsSync(path.join(dir, 'cur')) || existsSync(path.join(dir, 'new'));
}

/** The keywords of a folder: "N name" lines, N = 0 for letter a. */
function readKeywords(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  let text: string;
  try {
    text = readFileSync(path.join(dir, 'dovecot-keywords'), 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\S+)\s*$/.exec(line);
    if (m && Number(m[1]) < 26) out.set(String.fromCharCode(0x61 + Number(m[1])), m[2]!);
  }
  return out;
}

/** Flags from a file name's ":2," info (also "!2," and ";2," as some Windows tools write). */
export function maildirFlags(file: string, keywords: Map<string, string>): string[] {
  const m = /[:!;]2,([A-Za-z]*)$/.exec(file);
  if (!m) return [];
  const flags: string[] = [];
  for (const c of m[1]!) {
    const f = LETTERS[c] ?? keywords.get(c);
    if (f && !flags.includes(f)) flags.push(f);
  }
  return flags;
}

export interface MaildirFolder {
  name: string; // fe's name: INBOX, or A/B for ".A.B"
  dir: string;
}

export function maildirFolders(root: string): MaildirFolder[] {
  let st;
  try {
    st = statSync(root);
  } catch {
    throw new SourceError(`${root}: no such directory`);
  }
  if (!st.isDirectory()) throw new SourceError(`${root} is not a directory`);
  if (!isMaildir(root)) throw new SourceError(`${root} is not a Maildir (it has no cur/ or new/ directory)`);
  const out: MaildirFolder[] = [{ name: 'INBOX', dir: root }];
  // Maildir++ puts every folder at the root (".A.B"); Python's mailbox.Maildir nests them
  // (".A/.B"). Both are read.
  const walk = (dir: string, parent: string | null) => {
    for (const n of readdirSync(dir).sort()) {
      if (!n.startsWith('.') || n === '.' || n === '..' || n.length < 2) continue;
      const sub = path.join(dir, n);
      if (!statSync(sub).isDirectory() || !isMaildir(sub)) continue;
      const own = n
        .slice(1)
        .split('.')
        .map((p) => decodeMutf7(p))
        .join('/');
      const name = parent === null ? (own.toUpperCase() === 'INBOX' ? 'INBOX' : own) : `${parent}/${own}`;
      out.push({ name, dir: sub });
      walk(sub, name);
    }
  };
  walk(root, null);
  return out;
}

/** Delivery order: the leading time in the name, then the name. */
function byTime(a: string, b: string): number {
  const ta = Number.parseInt(a, 10);
  const tb = Number.parseInt(b, 10);
  if (Number.isFinite(ta) && Number.isFinite(tb) && ta !== tb) return ta - tb;
  return a < b ? -1 : a > b ? 1 : 0;
}

export async function* readMaildir(root: string, options: { maxMessage: number; only?: string }): AsyncGenerator<SourceItem> {
  for (const folder of maildirFolders(root)) {
    if (options.only !== undefined && folder.name !== options.only) continue;
    const keywords = readKeywords(folder.dir);
    const files: { sub: string; name: string }[] = [];
    for (const sub of ['new', 'cur']) {
      let names: string[];
      try {
        names = readdirSync(path.join(folder.dir, sub));
      } catch {
        continue;
      }
      for (const name of names) if (!name.startsWith('.')) files.push({ sub, name });
    }
    files.sort((a, b) => byTime(a.name, b.name));
    for (const f of files) {
      const file = path.join(folder.dir, f.sub, f.name);
      const where = path.relative(root, file) || file;
      let st;
      try {
        st = await stat(file);
      } catch {
        continue; // moved away meanwhile (a Maildir may be in use)
      }
      if (!st.isFile()) continue;
      if (st.size > options.maxMessage) {
        yield { kind: 'skip', where, reason: `larger than the message size limit (${options.maxMessage} bytes)` };
        continue;
      }
      // fe export writes "<time>.<uid>.fe:2,..." with the stored bytes: kept as they are. Other
      // writers (Dovecot, Python, mbsync) usually store LF line ends: CRLF comes back (see restoreCrlf).
      const bytes = await readFile(file);
      const raw = /\.fe[:!;]2,[A-Za-z]*$/.test(f.name) ? bytes : restoreCrlf(bytes);
      const flags = f.sub === 'new' ? [] : maildirFlags(f.name, keywords);
      yield { kind: 'message', where, folder: folder.name, raw, flags, internalDate: st.mtime };
    }
  }
}
