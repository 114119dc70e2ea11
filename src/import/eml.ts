// A tree of .eml files. With fe export's manifest.json at its root, folders, flags, special use
// and internal dates come from it; without one, every *.eml / *.msg file goes into the folder its
// directory names (the root is INBOX), dated by its Date header, else its mtime.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { dateHeader, restoreCrlf } from './message.js';
import { SourceError, type SourceItem } from './source.js';

interface Manifest {
  format: 'fe-eml';
  version: 1;
  folders: { name: string; specialUse: string | null; messages: { file: string; flags: string[]; internalDate: string }[] }[];
}

function readManifest(file: string): Manifest {
  let m: unknown;
  try {
    m = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new SourceError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  const bad = (why: string) => new SourceError(`${file}: ${why}`);
  if (typeof m !== 'object' || m === null) throw bad('not an object');
  const o = m as Record<string, unknown>;
  if (o.format !== 'fe-eml') throw bad(`format is ${JSON.stringify(o.format)}, not "fe-eml"`);
  if (o.version !== 1) throw bad(`version ${JSON.stringify(o.version)} is not one this fe reads (1)`);
  if (!Array.isArray(o.folders)) throw bad('"folders" is not a list');
  for (const f of o.folders as unknown[]) {
    const fo = f as Record<string, unknown>;
    if (typeof fo?.name !== 'string' || !Array.isArray(fo.messages)) throw bad('a folder has no name or no "messages" list');
    if (fo.specialUse !== null && fo.specialUse !== undefined && typeof fo.specialUse !== 'string') throw bad(`folder ${fo.name}: bad specialUse`);
    for (const msg of fo.messages as unknown[]) {
      const mo = msg as Record<string, unknown>;
      if (typeof mo?.file !== 'string' || !Array.isArray(mo.flags) || !mo.flags.every((x) => typeof x === 'string') || typeof mo.internalDate !== 'string') {
        throw bad(`folder ${fo.name}: a message lacks file, flags or internalDate`);
      }
    }
  }
  return m as Manifest;
}

function walk(dir: string, rel: string, out: string[]): void {
  for (const n of readdirSync(dir).sort()) {
    if (n.startsWith('.')) continue;
    const p = path.join(dir, n);
    const st = statSync(p);
    if (st.isDirectory()) walk(p, rel === '' ? n : `${rel}/${n}`, out);
    else if (st.isFile() && /\.(eml|msg)$/i.test(n)) out.push(rel === '' ? n : `${rel}/${n}`);
  }
}

async function* one(file: string, where: string, folder: string | null, maxMessage: number, flags: string[], date: Date | null, specialUse: string | null, exact: boolean): AsyncGenerator<SourceItem> {
  let st;
  try {
    st = await stat(file);
  } catch {
    yield { kind: 'skip', where, reason: 'the file is missing' };
    return;
  }
  if (st.size > maxMessage) {
    yield { kind: 'skip', where, reason: `larger than the message size limit (${maxMessage} bytes)` };
    return;
  }
  // fe export's files hold the stored bytes; other .eml files often have LF line ends (CRLF comes back).
  const bytes = await readFile(file);
  const raw = exact ? bytes : restoreCrlf(bytes);
  yield { kind: 'message', where, folder, specialUse, raw, flags, internalDate: date ?? dateHeader(raw) ?? st.mtime };
}

export async function* readEml(input: string, options: { maxMessage: number; only?: string; into?: string }): AsyncGenerator<SourceItem> {
  let st;
  try {
    st = statSync(input);
  } catch {
    throw new SourceError(`${input}: no such file or directory`);
  }
  if (st.isFile()) {
    yield* one(input, path.basename(input), options.into ?? null, options.maxMessage, [], null, null, false);
    return;
  }
  if (!st.isDirectory()) throw new SourceError(`${input} is neither a file nor a directory`);
  const manifestFile = path.join(input, 'manifest.json');
  let hasManifest = false;
  try {
    hasManifest = statSync(manifestFile).isFile();
  } catch {
    hasManifest = false;
  }
  const root = path.resolve(input);
  if (hasManifest) {
    const manifest = readManifest(manifestFile);
    for (const folder of manifest.folders) {
      if (options.only !== undefined && folder.name !== options.only) continue;
      for (const m of folder.messages) {
        const file = path.resolve(root, m.file);
        if (!file.startsWith(root + path.sep)) {
          yield { kind: 'skip', where: m.file, reason: 'the manifest points outside the export directory' };
          continue;
        }
        const date = new Date(m.internalDate);
        yield* one(file, m.file, folder.name, options.maxMessage, m.flags, Number.isNaN(date.getTime()) ? null : date, folder.specialUse ?? null, true);
      }
    }
    return;
  }
  const files: string[] = [];
  walk(root, '', files);
  for (const rel of files) {
    const dir = path.posix.dirname(rel);
    const folder = dir === '.' ? 'INBOX' : dir;
    if (options.only !== undefined && folder !== options.only) continue;
    yield* one(path.join(root, rel), rel, folder, options.maxMessage, [], null, null, false);
  }
}
