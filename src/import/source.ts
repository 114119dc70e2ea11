// What every import source (mbox, Maildir, EML, IMAP) yields: one message at a time, or the
// reason one could not be read, so the writer never holds more than a batch in memory.

export interface SourceMessage {
  kind: 'message';
  where: string; // for reports: "file.mbox message 12", "Maildir .Sent/cur/123...", "imap INBOX uid 7"
  folder: string | null; // null: the folder the user chose (--folder), else INBOX
  specialUse?: string | null; // for a folder the import creates
  raw: Buffer;
  flags: string[];
  internalDate: Date;
  envelopeFrom?: string | null;
}

export interface SourceSkip {
  kind: 'skip';
  where: string;
  reason: string;
}

export type SourceItem = SourceMessage | SourceSkip;

/** The input as a whole cannot be read (not an mbox, no such directory, a bad manifest): nothing is imported from it. */
export class SourceError extends Error {}
