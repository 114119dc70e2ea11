// The executables layer: refuses mail that carries a program, judged by the file's name and by
// its first bytes (so an .exe renamed .txt is still an .exe), and looks into zip archives (and
// the names in 7z/RAR listings) to a depth limit. Office files with macros count as programs.
import type { LayerSettings } from '../config/schema.js';
import { decodeWords, parseMessage, type BodyPart, type Params } from '../store/message-parse.js';
import { decodeTransferEncoding } from '../store/transfer-encoding.js';
import { gunzipSync } from 'node:zlib';
import { archiveKind, listArchive, tarEntries } from './archives.js';
import type { LayerVerdict, ProtectionLayer, ScanInput } from './layer.js';
import { isZip, zipEntries, zipEntryData, ZipError, ZipTooLarge } from './zip.js';

export interface ExecutablesSettings extends LayerSettings {
  rejectEncrypted: boolean;
  archiveDepth: number;
  /** Bytes one archive entry may inflate to (default 64 MiB); beyond it is a bomb. */
  entryLimit?: number;
}

/** Why a file is refused; `kind` is the symbol (exe, script, disk-image, macro, ...). */
export interface Finding {
  file: string;
  kind: string;
  why: string;
}

// Names Windows (and macOS, Java) run or mount when opened.
const PROGRAM_EXTENSIONS = new Set(['exe', 'com', 'scr', 'pif', 'cpl', 'dll', 'sys', 'msi', 'msp', 'mst', 'msix', 'appx', 'appxbundle', 'application', 'gadget', 'apk', 'app', 'jar', 'class']);
const SCRIPT_EXTENSIONS = new Set(['js', 'jse', 'vbs', 'vbe', 'wsf', 'wsh', 'wsc', 'ps1', 'ps1xml', 'ps2', 'psc1', 'psm1', 'psd1', 'bat', 'cmd', 'hta', 'lnk', 'url', 'scf', 'reg', 'inf', 'msc', 'sct', 'chm', 'settingcontent-ms', 'iqy', 'slk', 'xll', 'xlam', 'ppam', 'vb', 'vba']);
const DISK_EXTENSIONS = new Set(['iso', 'img', 'vhd', 'vhdx', 'dmg', 'udf']);
const ZIP_EXTENSIONS = new Set(['zip', 'docx', 'docm', 'dotm', 'xlsx', 'xlsm', 'xltm', 'xlsb', 'pptx', 'pptm', 'potm', 'ppsm', 'odt', 'ods', 'odp', 'jar', 'apk']);
const OLE = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);
const VBA_PROJECT_UTF16 = Buffer.from('_VBA_PROJECT', 'utf16le');
const LNK = Buffer.from([0x4c, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00]);
const MACHO = new Set([0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, 0xcafebabe]);
// A zip bomb stops here: per entry, and for everything inflated from one message.
const ENTRY_LIMIT = 64 * 1024 * 1024;
const TOTAL_LIMIT = 256 * 1024 * 1024;
const MAX_MIME_PARTS = 1999; // message-parse stops listing parts at 2000: more cannot be inspected

function extension(name: string): string {
  // Windows ignores trailing dots and spaces: "evil.exe. " runs as evil.exe
  const base = name.replace(/[. ]+$/, '').toLowerCase();
  const slash = Math.max(base.lastIndexOf('/'), base.lastIndexOf('\\'));
  const file = base.slice(slash + 1);
  const dot = file.lastIndexOf('.');
  return dot >= 0 ? file.slice(dot + 1) : '';
}

/** What the first bytes say the file is, if a program or disk image. */
export function magicKind(data: Buffer): { kind: string; why: string } | null {
  if (data.length >= 64 && data[0] === 0x4d && data[1] === 0x5a) {
    const pe = data.readUInt32LE(0x3c);
    if (pe + 4 <= data.length && data.readUInt32LE(pe) === 0x00004550) return { kind: 'exe', why: 'a Windows program (PE)' };
    if (data.subarray(0, 512).includes('This program')) return { kind: 'exe', why: 'a DOS/Windows program (MZ)' };
  }
  if (data.length >= 4 && data.readUInt32BE(0) === 0x7f454c46) return { kind: 'exe', why: 'a Linux program (ELF)' };
  if (data.length >= 8 && MACHO.has(data.readUInt32BE(0))) {
    // 0xcafebabe is both a fat Mach-O and a Java class: a program either way
    return { kind: 'exe', why: data.readUInt32BE(0) === 0xcafebabe ? 'a macOS or Java program' : 'a macOS program (Mach-O)' };
  }
  if (data.length >= 8 && data.subarray(0, 8).equals(LNK)) return { kind: 'script', why: 'a Windows shortcut (.lnk)' };
  for (const at of [0x8001, 0x8801, 0x9001]) {
    if (data.length >= at + 5) {
      const id = data.subarray(at, at + 5).toString('latin1');
      if (id === 'CD001' || id === 'BEA01' || id === 'NSR02' || id === 'NSR03') return { kind: 'disk-image', why: 'a disk image (ISO 9660/UDF)' };
    }
  }
  if (data.length >= 8 && (data.subarray(0, 8).toString('latin1') === 'conectix' || data.subarray(0, 8).toString('latin1') === 'vhdxfile')) return { kind: 'disk-image', why: 'a disk image (VHD)' };
  if (data.length >= 512 && data.subarray(data.length - 512, data.length - 508).toString('latin1') === 'koly') return { kind: 'disk-image', why: 'a disk image (DMG)' };
  return null;
}

function byName(name: string): { kind: string; why: string } | null {
  const ext = extension(name);
  if (/[\u202a-\u202e\u2066-\u2069]/.test(name)) return { kind: 'bidi-name', why: 'a name with right-to-left overrides that hide its real extension' };
  if (PROGRAM_EXTENSIONS.has(ext)) return { kind: 'exe', why: `a program (.${ext})` };
  if (SCRIPT_EXTENSIONS.has(ext)) return { kind: 'script', why: `a script or shortcut (.${ext})` };
  if (DISK_EXTENSIONS.has(ext)) return { kind: 'disk-image', why: `a disk image (.${ext})` };
  return null;
}

interface Walk {
  settings: ExecutablesSettings;
  inflated: number;
}

/** Inspects one file (an attachment or an archive entry) and what it holds; the first finding wins. */
export function inspectFile(name: string, data: Buffer, depth: number, w: Walk): Finding | null {
  const named = name ? byName(name) : null;
  if (named) return { file: name, ...named };
  const magic = magicKind(data);
  if (magic) return { file: name || '(unnamed part)', ...magic };
  const label = name || '(unnamed part)';
  if (data.length >= 8 && data.subarray(0, 8).equals(OLE) && data.includes(VBA_PROJECT_UTF16)) return { file: label, kind: 'macro', why: 'an Office document with macros (VBA)' };
  if (isZip(data) || (ZIP_EXTENSIONS.has(extension(name)) && data.length > 0)) return inspectZip(label, data, depth, w);
  if (data.length >= 3 && data[0] === 0x1f && data[1] === 0x8b && data[2] === 0x08) return inspectGzip(label, data, depth, w);
  const tar = tarEntries(data, Math.max(0, TOTAL_LIMIT - w.inflated));
  if (tar) {
    if (depth >= w.settings.archiveDepth) return { file: label, kind: 'nested-archive', why: `archives nested deeper than ${w.settings.archiveDepth}` };
    for (const entry of tar) {
      const found = inspectFile(`${label}/${entry.name}`, entry.data, depth + 1, w);
      if (found) return found;
    }
    return null;
  }
  const kind = archiveKind(data);
  if (kind) {
    if (depth >= w.settings.archiveDepth) return { file: label, kind: 'nested-archive', why: `archives nested deeper than ${w.settings.archiveDepth}` };
    const listing = listArchive(data);
    if (listing?.hiddenListing && w.settings.rejectEncrypted) return { file: label, kind: 'encrypted-archive', why: `an encrypted ${kind} archive whose listing cannot be seen` };
    for (const entry of listing?.names ?? []) {
      const found = byName(entry);
      if (found) return { file: `${label}/${entry}`, ...found };
    }
  }
  return null;
}

/** A gzip stream (a .tar.gz, or one gzipped file) is inflated and its content inspected. */
function inspectGzip(label: string, data: Buffer, depth: number, w: Walk): Finding | null {
  if (depth >= w.settings.archiveDepth) return { file: label, kind: 'nested-archive', why: `archives nested deeper than ${w.settings.archiveDepth}` };
  let inner: Buffer;
  try {
    inner = gunzipSync(data, { maxOutputLength: Math.max(1, Math.min(w.settings.entryLimit ?? ENTRY_LIMIT, TOTAL_LIMIT - w.inflated)) });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return { file: label, kind: 'archive-bomb', why: 'an archive that inflates beyond what fe inspects' };
    return null; // not really gzip after all: the magic was a coincidence
  }
  w.inflated += inner.length;
  // the name inside is the outer one without .gz/.tgz (invoice.exe.gz holds invoice.exe)
  const innerName = label.replace(/\.t?gz$/i, (m) => (m.toLowerCase() === '.tgz' ? '.tar' : ''));
  return inspectFile(innerName === label ? `${label}/(gzip)` : innerName, inner, depth + 1, w);
}

function inspectZip(label: string, data: Buffer, depth: number, w: Walk): Finding | null {
  if (depth >= w.settings.archiveDepth) return { file: label, kind: 'nested-archive', why: `archives nested deeper than ${w.settings.archiveDepth}` };
  try {
    const entries = zipEntries(data);
    for (const entry of entries) {
      if (entry.name.endsWith('/')) continue;
      const inner = `${label}/${entry.name}`;
      if (/(^|\/)vbaproject\.bin$/i.test(entry.name)) return { file: label, kind: 'macro', why: 'an Office document with macros (vbaProject.bin)' };
      const named = byName(entry.name);
      if (named) return { file: inner, ...named };
      if (entry.encrypted) {
        if (w.settings.rejectEncrypted && entries.every((e) => e.encrypted || e.name.endsWith('/'))) return { file: label, kind: 'encrypted-archive', why: 'an encrypted zip whose contents cannot be inspected' };
        continue;
      }
      const content = zipEntryData(data, entry, Math.min(w.settings.entryLimit ?? ENTRY_LIMIT, TOTAL_LIMIT - w.inflated));
      if (!content) continue; // a compression method fe does not inflate: its name was checked
      w.inflated += content.length;
      const found = inspectFile(inner, content, depth + 1, w);
      if (found) return found;
    }
    return null;
  } catch (e) {
    if (e instanceof ZipTooLarge) return { file: label, kind: 'archive-bomb', why: 'an archive that inflates beyond what fe inspects' };
    if (e instanceof ZipError) return isZip(data) ? { file: label, kind: 'broken-archive', why: `a zip archive that cannot be read (${e.message})` } : null;
    throw e;
  }
}

/** RFC 2231 parameter values (name*=charset''text, name*0*=..., name*1=...) joined and decoded. */
function paramValue(params: Params, name: string): string | null {
  const plain = params.find(([k]) => k === name)?.[1];
  const ext = params.find(([k]) => k === `${name}*`)?.[1];
  const pieces = params
    .map(([k, v]) => ({ m: new RegExp(`^${name}\\*(\\d+)(\\*?)$`).exec(k), v }))
    .filter((x) => x.m)
    .sort((a, b) => Number(a.m![1]) - Number(b.m![1]));
  let encoded: string | null = ext ?? null;
  if (!encoded && pieces.length > 0) encoded = pieces.map((p) => (p.m![2] ? p.v : encodeURIComponent(p.v))).join('');
  if (encoded) {
    const m = /^([^']*)'[^']*'(.*)$/s.exec(encoded);
    const charset = m ? m[1]! || 'utf-8' : 'utf-8';
    const bytes = Buffer.from((m ? m[2]! : encoded).replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
    try {
      return new TextDecoder(charset).decode(bytes);
    } catch {
      return bytes.toString('latin1');
    }
  }
  return plain !== undefined ? decodeWords(plain) : null;
}

function partName(part: BodyPart): string {
  return (part.disposition ? paramValue(part.disposition.params, 'filename') : null) ?? paramValue(part.params, 'name') ?? '';
}

/** The leaf parts of a message, with attached messages (message/rfc822) opened too. */
function* leaves(part: BodyPart): Generator<BodyPart> {
  if (part.parts) for (const p of part.parts) yield* leaves(p);
  else if (part.message) yield* leaves(part.message.body);
  else yield part;
}

/** The first program found in the message, or null. */
export function findExecutable(raw: Buffer, settings: ExecutablesSettings): Finding | null {
  const parsed = parseMessage(raw);
  const w: Walk = { settings, inflated: 0 };
  let count = 0;
  for (const part of leaves(parsed.structure)) {
    if (++count > MAX_MIME_PARTS) return { file: '(message)', kind: 'too-many-parts', why: 'more MIME parts than fe inspects' };
    if (part.type === 'multipart') return { file: '(message)', kind: 'too-deep', why: 'MIME parts nested deeper than fe inspects' };
    const name = partName(part);
    const body = raw.subarray(part.bodyStart, part.bodyEnd);
    const data = decodeTransferEncoding(body, part.encoding) ?? body;
    // An attached message that was transfer-encoded (base64 message/rfc822) is parsed in turn.
    if (part.type === 'message' && part.subtype === 'rfc822' && data !== body) {
      const inner = findExecutable(data, settings);
      if (inner) return inner;
      continue;
    }
    const found = inspectFile(name, data, 0, w);
    if (found) return found;
  }
  return null;
}

/** The file name as it may appear in an SMTP reply: printable ASCII, bounded. */
function replyName(name: string): string {
  const t = name.replace(/[^\x20-\x7e]/g, '?').replace(/"/g, "'");
  return t.length > 120 ? t.slice(0, 117) + '...' : t;
}

export function executablesLayer(settings: ExecutablesSettings): ProtectionLayer {
  return {
    name: 'executables',
    async scan(input: ScanInput): Promise<LayerVerdict> {
      const found = findExecutable(input.raw, settings);
      if (!found) return { layer: 'executables', action: 'accept' };
      return { layer: 'executables', action: 'reject', code: 554, reply: `5.7.1 Attachment "${replyName(found.file)}" refused: ${found.why}`, symbols: [`${found.kind}:${found.file}`] };
    },
  };
}
