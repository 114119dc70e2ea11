// Child processes for the store tests: real concurrent spool writers, and a store writer that dies
// by SIGKILL with committed data still in its WAL, and openers racing to create one database.
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { writeSync } from 'node:fs';
import { appendToSpool } from '../../src/store/spool.js';
import { MailboxStore } from '../../src/store/mailbox-db.js';
import { QueueStore } from '../../src/queue/store.js';

const [mode, dir, arg1, arg2, arg3] = process.argv.slice(2);

if (mode === 'spool') {
  // spool <dir> <public key, SPKI DER base64> <tag> <count>
  const pub = createPublicKey({ key: Buffer.from(arg1!, 'base64'), format: 'der', type: 'spki' });
  const count = Number(arg3);
  for (let j = 0; j < count; j++) {
    const msg = Buffer.from(`Subject: ${arg2}-${j}\r\nFrom: w@example.org\r\n\r\nbody child-${arg2}-msg-${j}\r\n`);
    const id = appendToSpool(dir!, pub, msg, { receivedAt: new Date(), envelopeFrom: 'w@example.org', envelopeTo: 'me@example.org' });
    // Synchronous write to the pipe: once reported, the id is what the MX would have answered 250 for.
    writeSync(1, `${id} ${arg2} ${j}\n`);
  }
} else if (mode === 'crash-writer') {
  // crash-writer <dir> <master key hex> <marker>: commits messages, then dies without closing.
  const store = MailboxStore.open(dir!, { masterKey: Buffer.from(arg1!, 'hex'), sealingPrivateKey: generateKeyPairSync('x25519').privateKey });
  for (let i = 0; i < 20; i++) store.appendMessage('INBOX', Buffer.from(`Subject: ${arg2} ${i}\r\n\r\n${arg2}\r\n`));
  process.kill(process.pid, 'SIGKILL');
} else if (mode === 'open-at' || mode === 'queue-open-at') {
  // open-at <mailbox dir> <master key hex> <start ms> | queue-open-at <data dir> - <start ms>:
  // every child spins to the same instant, then opens (creating if need be) and writes once.
  const startAt = Number(arg2);
  while (Date.now() < startAt);
  try {
    if (mode === 'open-at') {
      const store = MailboxStore.open(dir!, { masterKey: Buffer.from(arg1!, 'hex'), sealingPrivateKey: generateKeyPairSync('x25519').privateKey });
      store.appendMessage('INBOX', Buffer.from(`Subject: ${process.pid}\r\n\r\nhello\r\n`));
      store.close();
    } else {
      QueueStore.open(dir!).close();
    }
    writeSync(1, 'ok\n');
  } catch (e) {
    writeSync(1, `failed: ${(e as Error).message}\n`);
  }
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
