// The early-talker check ("pregreet"), paid once per client address instead of on every connection.
//
// smtp-server holds every new connection 100 ms before its 220 greeting and refuses a client
// that sends anything in that window (RFC 5321 4.3.1: the client waits for the greeting; spam
// engines often do not). That is a real signal, but on every connection it bounds one sender to
// ~10 messages a second. smtp-server has no option for it, so fe replaces SMTPServer.connect()
// on its own server instance (the same four lines, with its own start instead of init()):
//   - an address that waited silently for a greeting within the last day is greeted at once;
//   - any other address waits PREGREET_MS, as before; a client that sends a byte in that window
//     is told 421 and disconnected, and is not remembered as good.
// This is Postfix postscreen's design (pregreet test, then a cache of addresses that passed).
// It relies on SMTPConnection's _setListeners()/connectionReady(), which the pinned smtp-server
// version declares in its typings; mx-pregreet.test.ts fails if an upgrade changes them.
import type { Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Logger } from '../util/log.js';

export const PREGREET_MS = 100; // smtp-server's own window
const PASS_TTL_MS = 24 * 3600_000; // how long a pass is remembered (postscreen_greet_ttl's default)
const MAX_REMEMBERED = 100_000; // addresses; the oldest pass is forgotten first

export interface PregreetOptions {
  log: Logger;
  /** Called with each connection fe constructs here, before it reads anything (quoted-local.ts). */
  prepare?: (connection: SMTPConnection) => void;
  now?: () => number;
}

/** Installs the check on `server`; returns the cache, so callers (and tests) can tell a known address. */
export function installPregreet(server: SMTPServer, opts: PregreetOptions) {
  const now = opts.now ?? Date.now;
  const passed = new Map<string, number>(); // address -> when its pass expires; insertion order = age

  const known = (ip: string): boolean => {
    const until = passed.get(ip);
    if (until === undefined) return false;
    if (until > now()) return true;
    passed.delete(ip);
    return false;
  };
  const remember = (ip: string) => {
    passed.delete(ip); // re-inserted at the young end
    passed.set(ip, now() + PASS_TTL_MS);
    if (passed.size > MAX_REMEMBERED) passed.delete(passed.keys().next().value!);
  };

  server.connect = (socket, socketOptions) => {
    const connection = new SMTPConnection(server, socket, socketOptions);
    opts.prepare?.(connection);
    server.connections.add(connection);
    connection.on('error', (err: Error) => server._onError(err));
    connection.on('connect', (data) => server._onClientConnect(data));
    const ip = connection.remoteAddress;
    connection._setListeners(() => {
      // smtp-server's own cap, checked where its init() checks it
      if (server.options.maxClients && server.connections.size > server.options.maxClients) {
        return connection.send(421, `${connection.name} Too many connected clients, try again in a moment`, false);
      }
      if (known(ip)) return connection.connectionReady();
      let talked = false;
      const early = () => {
        if (!talked) opts.log.info('client talked before the greeting; refused', { ip });
        talked = true; // smtp-server answers a whole line with 421 itself; a partial one is refused below
      };
      (socket as Socket).on('data', early);
      const timer = setTimeout(() => {
        (socket as Socket).off('data', early);
        if (connection._closing || connection._closed) return;
        if (talked) return connection.send(421, `${connection.name} You talk too soon`, false);
        remember(ip);
        connection.connectionReady();
      }, PREGREET_MS);
      timer.unref();
    });
  };

  return { known };
}
