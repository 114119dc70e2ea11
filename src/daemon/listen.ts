// Binding a daemon's socket server: resolves once listening, rejects on EADDRINUSE and the like.
import type { Server } from 'node:net';

export function listenOn(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function boundAddress(server: Server): { address: string; port: number } {
  return server.address() as { address: string; port: number };
}
