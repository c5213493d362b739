import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes } from 'aedes';
import { PublishError } from '../errors.js';
import { logger } from '../log.js';

export interface EmbeddedBrokerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** When the port is taken, listen on a free one instead of failing (the URL says which). */
  fallbackToFreePort?: boolean;
}

export interface EmbeddedBroker {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

/**
 * An in-process MQTT broker (aedes) so that a pipeline runs with no system broker. It binds
 * loopback by default: anything else on the network needs a real broker with credentials.
 */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const log = logger('broker');
  const aedes = await Aedes.createBroker();
  const server = createServer(aedes.handle);
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(port, options.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
  try {
    await listen(options.port);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' && options.fallbackToFreePort && options.port !== 0) {
      log.warn(`port ${options.port} on ${options.host} is taken; the embedded broker takes a free port instead`);
      await listen(0);
    } else {
      await closeAedes(aedes);
      throw new PublishError(`embedded broker ${options.host}:${options.port}`, `cannot listen: ${code ?? String(err)}`, { cause: err });
    }
  }
  const port = (server.address() as AddressInfo).port;
  const url = `mqtt://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`;
  return {
    url,
    host: options.host,
    port,
    close: () => closeServer(server, aedes),
  };
}

function closeAedes(aedes: Aedes): Promise<void> {
  return new Promise((resolve) => aedes.close(() => resolve()));
}

async function closeServer(server: Server, aedes: Aedes): Promise<void> {
  await closeAedes(aedes);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
