// Debian's python3-dkim as the receiving end's DKIM verifier, independent of mailauth: one verdict
// per DKIM-Signature, in header order, with DNS answered from the given TXT records.
import { spawn } from 'node:child_process';

const VERIFY = `
import dkim, json, sys
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    n = (name.decode() if isinstance(name, bytes) else name).rstrip('.').lower()
    t = records.get(n)
    return t.encode() if t else None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [l for l in msg.split(b'\\r\\n') if l.lower().startswith(b'dkim-signature:')]
def ok(i):
    try:
        return bool(d.verify(idx=i, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False
print(json.dumps([ok(i) for i in range(len(sigs))]))
`;

/** `records`: TXT name (no trailing dot, any case) -> record text. */
export function pythonDkimVerify(message: string | Buffer, records: Record<string, string>): Promise<boolean[]> {
  const lowered = Object.fromEntries(Object.entries(records).map(([k, v]) => [k.replace(/\.$/, '').toLowerCase(), v]));
  return new Promise((resolve, reject) => {
    // /usr/bin/python3: Debian's interpreter, the one python3-dkim is installed for.
    const child = spawn('/usr/bin/python3', ['-c', VERIFY, JSON.stringify(lowered)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as boolean[]) : reject(new Error(`python3-dkim exited ${code}: ${err}`))));
    child.stdin.end(message);
  });
}
