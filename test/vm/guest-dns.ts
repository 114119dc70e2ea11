// The VM guest's resolver: the test's loopback DNS server on 127.0.0.1:53, run by a unit in the
// guest. The guest reaches no network, so without it every lookup the MX makes (SPF, DMARC) is a
// temporary failure and mail is deferred. It answers for the test's domain and NXDOMAIN for the
// rest, as the real DNS would for the sender's made-up domain.
import { startDnsServer } from '../helpers/dns-server.js';

const domain = process.argv[2] ?? 'fe-vm.test';
const address = process.argv[3] ?? '10.0.2.15';

const server = await startDnsServer(
  {
    [domain]: { MX: [{ priority: 10, exchange: `mail.${domain}` }], TXT: ['v=spf1 mx -all'] },
    [`mail.${domain}`]: { A: [address] },
    [`mta-sts.${domain}`]: { A: [address] },
  },
  { port: 53 },
);
console.log(`guest DNS on ${server.address} for ${domain}`);
