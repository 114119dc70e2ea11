// How IMAP flags travel in the formats mail leaves in. mbox: Status/X-Status/X-Keywords, as
// mutt, Dovecot and Thunderbird read them. Maildir: the ":2," letters, and keywords as a..z
// defined in the folder's dovecot-keywords file (Dovecot's convention; mbsync keeps the letters).

/** Header fields (without line ends) that carry `flags` in an mbox. */
export function statusHeaderFields(flags: readonly string[], folder?: string): string[] {
  const has = (f: string) => flags.some((x) => x.toLowerCase() === f.toLowerCase());
  const out = [`Status: ${has('\\Seen') ? 'R' : ''}O`];
  const x = [has('\\Answered') ? 'A' : '', has('\\Flagged') ? 'F' : '', has('\\Draft') ? 'T' : '', has('\\Deleted') ? 'D' : ''].join('');
  if (x !== '') out.push(`X-Status: ${x}`);
  const keywords = flags.filter((f) => !f.startsWith('\\'));
  if (keywords.length > 0) out.push(`X-Keywords: ${keywords.join(' ')}`);
  if (folder !== undefined) out.push(`X-Folder: ${folder}`);
  return out;
}

/** Letters a..z for a folder's keywords, in first-seen order; Maildir has room for 26. */
export class MaildirKeywords {
  private readonly index = new Map<string, number>();
  readonly dropped = new Set<string>();

  letter(keyword: string): string | null {
    let i = this.index.get(keyword);
    if (i === undefined) {
      if (this.index.size >= 26) {
        this.dropped.add(keyword);
        return null;
      }
      i = this.index.size;
      this.index.set(keyword, i);
    }
    return String.fromCharCode(0x61 + i);
  }

  get size(): number {
    return this.index.size;
  }

  /** The dovecot-keywords file: "N keyword" per line. */
  file(): string {
    return [...this.index].map(([k, i]) => `${i} ${k}\n`).join('');
  }
}

/** The ":2," info of a Maildir file name: flag letters in ASCII order, as the spec asks. */
export function maildirInfo(flags: readonly string[], keywords: MaildirKeywords): string {
  const letters: string[] = [];
  for (const f of flags) {
    switch (f.toLowerCase()) {
      case '\\draft':
        letters.push('D');
        break;
      case '\\flagged':
        letters.push('F');
        break;
      case '\\answered':
        letters.push('R');
        break;
      case '\\seen':
        letters.push('S');
        break;
      case '\\deleted':
        letters.push('T');
        break;
      default:
        if (!f.startsWith('\\')) {
          const l = keywords.letter(f);
          if (l !== null) letters.push(l);
        }
    }
  }
  return ':2,' + [...new Set(letters)].sort().join('');
}
