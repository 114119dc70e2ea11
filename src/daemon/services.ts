// The names `fe serve --only` takes, apart from the daemons themselves so the CLI can list them
// without loading every protocol implementation (a plain `fe` command stays small).
import type { DaemonName } from '../config/schema.js';

export const DAEMONS: readonly DaemonName[] = ['mx', 'submission', 'submissions', 'imap', 'imaps', 'pop3', 'pop3s', 'http', 'https'];
/** What `--only` can pick: the listening daemons, the outbound queue and the backup schedule (which listen on nothing). */
export type ServiceName = DaemonName | 'queue' | 'backup';
export const SERVICES: readonly ServiceName[] = [...DAEMONS, 'queue', 'backup'];
