// What clients are told about: a service is advertised (DNS SRV, Thunderbird autoconfig, Outlook
// Autodiscover, Apple profiles) only when its daemon listens (listen.*) and it has a public port
// (ports.*, the number clients reach, which a NAT or firewall may map onto the listening one).
import type { DaemonName, FeConfig, Ports } from './schema.js';

export type ClientProtocol = 'imap' | 'pop3' | 'smtp';

export interface ClientService {
  protocol: ClientProtocol;
  port: number;
  /** implicit: TLS from the first byte (RFC 8314); starttls: plain, then STARTTLS. */
  tls: 'implicit' | 'starttls';
}

type Advertised = Omit<Ports, 'smtp'>;

const DAEMON_OF: Record<keyof Advertised, DaemonName> = {
  imap: 'imap',
  imaps: 'imaps',
  pop3: 'pop3',
  pop3s: 'pop3s',
  submission: 'submission',
  submissions: 'submissions',
};

/** The client-facing ports, null where the service is off in either listen: or ports:. */
export function advertisedPorts(config: FeConfig): Advertised {
  const out = {} as Advertised;
  for (const [key, daemon] of Object.entries(DAEMON_OF) as [keyof Advertised, DaemonName][]) {
    out[key] = config.listen[daemon] !== null ? config.ports[key] : null;
  }
  return out;
}

/** The advertised services, best first: implicit TLS before STARTTLS (RFC 8314 5.1), IMAP before POP3. */
export function clientServices(config: FeConfig): ClientService[] {
  const p = advertisedPorts(config);
  const order: [ClientProtocol, number | null, ClientService['tls']][] = [
    ['imap', p.imaps, 'implicit'],
    ['imap', p.imap, 'starttls'],
    ['pop3', p.pop3s, 'implicit'],
    ['pop3', p.pop3, 'starttls'],
    ['smtp', p.submissions, 'implicit'],
    ['smtp', p.submission, 'starttls'],
  ];
  return order.flatMap(([protocol, port, tls]) => (port === null ? [] : [{ protocol, port, tls }]));
}
