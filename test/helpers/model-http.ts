import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestServer {
  /** `http://127.0.0.1:PORT` */
  base: string;
  /** Paths requested so far, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1 (a free port); `close` also drops connections left hanging. */
export async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): Promise<TestServer> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    Promise.resolve(handler(req, res)).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

/**
 * Sends `body` in `chunk`-byte writes, each after the previous one drained and a short pause, so a
 * client sees it arrive in many reads. `stopAfter` bytes: stop there (the caller decides what then).
 */
export async function sendChunked(res: ServerResponse, body: Uint8Array, chunk: number, stopAfter = body.length): Promise<boolean> {
  for (let offset = 0; offset < stopAfter; offset += chunk) {
    if (res.destroyed) return false;
    const ok = res.write(body.subarray(offset, Math.min(stopAfter, offset + chunk)));
    if (!ok) await new Promise((resolve) => res.once('drain', resolve));
    await tick();
  }
  return !res.destroyed;
}
