// The README.txt that travels with `fe export --sqlite`: how to open the copy and what is in it.
export function SQLITE_README(address: string, encrypted: boolean): string {
  const open = encrypted
    ? `The file is encrypted with SQLite3 Multiple Ciphers' ChaCha20-Poly1305 cipher (its default,
"chacha20", key derived from your password with PBKDF2-SHA256). Open it with the sqlite3mc
shell, or any program built on SQLite3 Multiple Ciphers:

    sqlite3mc mailbox.db
    sqlite> PRAGMA cipher = 'chacha20';
    sqlite> PRAGMA key = 'your password';
    sqlite> SELECT name FROM folders;

From Node.js: better-sqlite3-multiple-ciphers, db.pragma("cipher = 'chacha20'"), db.key(Buffer.from(password)).
`
    : `The file is NOT encrypted: any SQLite 3 program opens it (sqlite3 mailbox.db).
`;
  return `fe mailbox export of ${address}

mailbox.db is a consistent copy of the mailbox's database, made by fe export --sqlite.

${open}
What is inside (one row per thing; times are milliseconds since 1970-01-01 UTC):
  folders    name (hierarchy separator "/"), special_use (\\Sent, \\Trash ...), uid_validity
  messages   folder_id, uid, system_flags (bits: 1 \\Seen, 2 \\Answered, 4 \\Flagged,
             8 \\Deleted, 16 \\Draft), keywords, internal_date, size, body_id
  bodies     parsed headers used for listing and search
  body_raw   raw: each message exactly as received (RFC 5322 bytes)

A message as a file:
    SELECT writefile('m.eml', r.raw) FROM messages m JOIN body_raw r ON r.body_id = m.body_id
     WHERE m.uid = 1 AND m.folder_id = (SELECT id FROM folders WHERE name = 'INBOX');
`;
}
