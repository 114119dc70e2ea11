// IMAP's modified UTF-7 (RFC 3501 5.1.3): what Maildir++ folder names and IMAP servers use.

/** Decodes a modified UTF-7 name; text that is not valid modified UTF-7 comes back as it was. */
export function decodeMutf7(name: string): string {
  return name.replace(/&([A-Za-z0-9+,]*)-/g, (all, b64: string) => {
    if (b64 === '') return '&';
    const bytes = Buffer.from(b64.replace(/,/g, '/'), 'base64');
    if (bytes.length % 2 !== 0) return all;
    let out = '';
    for (let i = 0; i < bytes.length; i += 2) out += String.fromCharCode(bytes.readUInt16BE(i));
    return out;
  });
}
