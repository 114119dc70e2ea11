// Which operating system this is (/etc/os-release), and whether `fe init` supports it.

export interface OsRelease {
  id: string; // "debian", "ubuntu", ...
  versionId: string; // "12", "24.04", ...
  prettyName: string;
}

/** Parses os-release(5) text: KEY=value lines, values optionally quoted. */
export function parseOsRelease(text: string): OsRelease {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!;
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1).replace(/\\(["'$`\\])/g, '$1');
    fields.set(m[1]!, v);
  }
  const id = (fields.get('ID') ?? '').toLowerCase();
  const versionId = fields.get('VERSION_ID') ?? '';
  return { id, versionId, prettyName: fields.get('PRETTY_NAME') ?? `${id} ${versionId}`.trim() };
}

export const SUPPORTED: Readonly<Record<string, readonly string[]>> = { debian: ['12', '13'], ubuntu: ['22.04', '24.04'] };

/** null when supported, else why not (said to the user as is). */
export function unsupportedReason(os: OsRelease): string | null {
  const versions = SUPPORTED[os.id];
  const list = 'Debian 12/13 and Ubuntu 22.04/24.04';
  if (!versions) return `fe init supports ${list}; this is ${os.prettyName || 'an unknown system'}`;
  if (!versions.includes(os.versionId)) return `fe init supports ${list}; this is ${os.prettyName} (version ${os.versionId || 'unknown'})`;
  return null;
}
