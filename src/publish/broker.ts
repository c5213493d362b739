import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes, type AuthenticateError } from 'aedes';
import { isLoopbackHost } from '../config/schema.js';
import { restrictFeedbackPublishers, type FeedbackAcl } from './feedback-acl.js';
import { fillMqttLengthCache } from './mqtt-length-cache.js';
import { PublishError } from '../errors.js';
import { logger } from '../log.js';

export interface EmbeddedBrokerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** When the port is taken, listen on a free one instead of failing (the URL says which). */
  fallbackToFreePort?: boolean;
  /**
   * Clients must log in with these. Required when `host` is not loopback: the broker refuses to
   * start on the network without them.
   */
  username?: string;
  password?: string;
  /** Only these users may publish verdicts on `<prefix>/+/feedback` (mqtt.feedback_users). */
  feedbackUsers?: FeedbackAcl;
}

export interface EmbeddedBroker {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

/**
 * An in-process MQTT broker (aedes) so that a pipeline runs with no system broker. It binds
 * loopback by default; bound to anything else it requires a username and password of every client.
 */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  fillMqttLengthCache();
  const log = logger('broker');
  const { username, password } = options;
  if (!isLoopbackHost(options.host) && !(username && password)) {
    throw new PublishError(`embedded broker ${options.host}:${options.port}`, 'a host other than loopback needs a username and password (mqtt.embedded.username, mqtt.embedded.password)');
  }
  const aedes = await Aedes.createBroker(
    username !== undefined || password !== undefined
      ? {
          authenticate: (client, user, pass, done) => {
            if (user !== undefined && sameSecret(user, username ?? '') && pass !== undefined && sameSecret(pass, password ?? '')) return done(null, true);
            log.limited('bad username or password').warn(`client ${client.id} refused: bad username or password`);
            const error = Object.assign(new Error('bad username or password'), { returnCode: 4 }) as AuthenticateError;
            done(error, false);
          },
        }
      : {},
  );
  if (options.feedbackUsers) restrictFeedbackPublishers(aedes, options.feedbackUsers);
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

/** Constant-time comparison (hashes first, so lengths do not leak either). */
function sameSecret(given: string | Buffer, expected: string): boolean {
  const digest = (v: string | Buffer) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function closeAedes(aedes: Aedes): Promise<void> {
  return new Promise((resolve) => aedes.close(() => resolve()));
}

async function closeServer(server: Server, aedes: Aedes): Promise<void> {
  await closeAedes(aedes);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
