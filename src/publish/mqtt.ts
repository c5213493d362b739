import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { redactUrl } from '../redact.js';
import { logger } from '../log.js';
import type { DetectionsMessage } from './messages.js';
import { fillMqttLengthCache } from './mqtt-length-cache.js';
import type { DurableMessage, Outbox } from './outbox.js';
import type { TlsMaterial } from './tls.js';
import { availabilityTopic, detectionsTopic } from './topics.js';

/**
 * Outbox messages awaiting their ack at once. One at a time, each message costs a round trip to the
 * broker through a busy event loop, and five unpaced cameras' events filled the outbox faster than
 * that emptied it.
 */
const OUTBOX_WINDOW = 16;

export type Qos = 0 | 1 | 2;

export interface PublisherOptions {
  url: string;
  /** Topic prefix, `beats` by default. */
  prefix: string;
  qos: Qos;
  username?: string;
  password?: string;
  clientId?: string;
  /** CA, client certificate and key for mqtts:// and wss:// (see readTlsFiles). */
  tls?: TlsMaterial;
  /**
   * Publishes that may wait for the broker's acknowledgement at once. Past it, and while the broker
   * is away, detections are dropped and counted: a live feed has no use for stale frames, and
   * memory must not grow with an outage. (Events that must not be lost get a durable outbox.)
   */
  maxPending?: number;
  /** Durable queue for messages that must not be lost (events); see publishDurable. */
  outbox?: Outbox;
}

export interface PublisherStats {
  connected: boolean;
  published: number;
  dropped: number;
  reconnects: number;
  /** Durable messages the broker acknowledged. */
  durableSent: number;
}

/** What waits in memory on the way to the broker. */
export interface PublisherBacklog {
  /** Publishes this publisher handed to mqtt.js that have not completed (bounded by maxPending). */
  pending: number;
  /** mqtt.js's in-flight QoS 1/2 publishes (its outgoing store). */
  outgoing: number;
  /** mqtt.js's offline queue (stays empty: QoS 0 is not queued offline and nothing is published offline). */
  queued: number;
  /** Bytes written to the socket and not yet taken by the kernel. */
  bufferedBytes: number;
}

interface InFlight {
  qos: Qos;
  settled: boolean;
}

/**
 * The pipeline's MQTT side: announces availability (retained, and as the last will), publishes per
 * camera, reconnects on its own (mqtt.js), and never queues without bound.
 */
export class MqttPublisher {
  readonly stats: PublisherStats = { connected: false, published: 0, dropped: 0, reconnects: 0, durableSent: 0 };
  /** Latest payload of each retained state topic (counts, snapshots): sent again on every connect. */
  private readonly state = new Map<string, string | Buffer>();
  private pumping: Promise<void> | undefined;
  /**
   * Publishes handed to mqtt.js whose callback has not come yet. QoS 0 ones wait for the socket to
   * drain, QoS 1/2 ones for the broker's ack. Each is settled exactly once (see `settle`).
   */
  private readonly inflight = new Set<InFlight>();
  private closing = false;
  private readonly client: MqttClient;
  private readonly log = logger('mqtt');
  private readonly maxPending: number;
  /** Handlers of subscribe(), by exact topic. */
  private readonly handlers = new Map<string, (payload: Buffer, topic: string) => void>();

  constructor(private readonly options: PublisherOptions) {
    fillMqttLengthCache();
    this.maxPending = options.maxPending ?? 100;
    const availability = availabilityTopic(this.options.prefix);
    const clientOptions: IClientOptions = {
      clientId: options.clientId ?? `beats-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      username: options.username,
      password: options.password,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      // QoS 0 messages published while offline would be kept in memory until reconnect.
      queueQoSZero: false,
      will: { topic: availability, payload: Buffer.from('offline'), qos: 1, retain: true },
      ...(options.tls ?? {}),
    };
    const shown = redactUrl(options.url);
    this.client = mqtt.connect(options.url, clientOptions);
    this.client.on('connect', () => {
      this.stats.connected = true;
      this.log.info(`connected to ${shown}`);
      this.client.publish(availability, 'online', { qos: 1, retain: true });
      // A broker that restarted without persistence lost our retained state; send it again.
      for (const [topic, payload] of this.state) this.publish(topic, payload, { qos: 1, retain: true });
      void this.pump();
    });
    this.client.on('message', (topic, payload) => this.handlers.get(topic)?.(payload, topic));
    this.client.on('reconnect', () => {
      this.stats.reconnects++;
    });
    this.client.on('close', () => {
      if (this.stats.connected && !this.closing) this.log.warn(`connection to ${shown} lost; reconnecting (detections are dropped meanwhile)`);
      this.stats.connected = false;
      // mqtt.js calls a QoS 0 publish's callback when the socket drains; a socket that died full
      // never drains, so those callbacks never come. Without this they would count as pending
      // forever and, once maxPending of them piled up (a hung broker), every later detection would
      // be dropped even after the reconnect. They are lost with the socket: count them dropped.
      // QoS 1/2 publishes stay pending: mqtt.js keeps them and sends them again on reconnect.
      for (const entry of this.inflight) if (entry.qos === 0) this.settle(entry, false);
    });
    // mqtt.js retries every reconnectPeriod and reports each failed attempt: say it once per outage.
    let lastError: string | undefined;
    this.client.on('connect', () => (lastError = undefined));
    this.client.on('error', (err) => {
      const message = `${shown}: ${err.message}`;
      if (message === lastError) this.log.debug(message);
      else this.log.warn(lastError === undefined ? message : `${message} (still retrying)`);
      lastError = message;
    });
  }

  /**
   * Receives the messages of one topic (exact, no wildcards), QoS 1. Subscribed now or, while
   * offline, on connect; mqtt.js subscribes again after every reconnect (its `resubscribe`).
   */
  subscribe(topic: string, handler: (payload: Buffer, topic: string) => void): void {
    this.handlers.set(topic, handler);
    this.client.subscribe(topic, { qos: 1 }, (err) => {
      if (err && !this.closing) this.log.warn(`cannot subscribe to ${topic}: ${err.message}`);
    });
  }

  /** Resolves on the first successful connection, or rejects after `timeoutMs`. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.client.off('connect', onConnect);
        reject(new Error(`no connection to ${redactUrl(this.options.url)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onConnect = () => {
        clearTimeout(timer);
        resolve();
      };
      this.client.once('connect', onConnect);
    });
  }

  publishDetections(message: DetectionsMessage): boolean {
    return this.publish(detectionsTopic(this.options.prefix, message.camera), JSON.stringify(message), { qos: this.options.qos, retain: false });
  }

  /** Publishes now or drops (and counts) when offline or when too many publishes await their ack. */
  publish(topic: string, payload: string | Buffer, opts: { qos: Qos; retain: boolean }): boolean {
    if (!this.client.connected || this.inflight.size >= this.maxPending) {
      this.stats.dropped++;
      return false;
    }
    const entry: InFlight = { qos: opts.qos, settled: false };
    this.inflight.add(entry);
    this.client.publish(topic, payload, opts, (err) => this.settle(entry, !err));
    return true;
  }

  /**
   * Retained state (a count, a snapshot): published now when connected, and again after every
   * reconnect, so a subscriber always finds the latest value.
   */
  publishState(topic: string, payload: string | Buffer): void {
    this.state.set(topic, payload);
    this.publish(topic, payload, { qos: 1, retain: true });
  }

  /**
   * A message that must not be lost (events): written to the outbox on disk first, then sent in
   * order (up to OUTBOX_WINDOW awaiting their ack), each removed from disk only when the broker
   * acknowledged it. While the broker is away messages wait on disk; after a reconnect (or a
   * restart) they go out in order. A message whose ack was lost with a connection may be sent
   * twice: subscribers drop duplicates by the message id.
   */
  async publishDurable(topic: string, payload: string, qos: 1 | 2 = 1): Promise<void> {
    const outbox = this.options.outbox;
    if (!outbox) throw new Error('publishDurable needs an outbox');
    await outbox.push({ topic, payload, qos, retain: false });
    void this.pump();
  }

  /** Durable messages still waiting on disk. */
  get outboxDepth(): number {
    return this.options.outbox?.depth ?? 0;
  }

  /** Waits until the outbox is empty, the broker is away, or `timeoutMs` passed. */
  async drainOutbox(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.outboxDepth > 0 && this.client.connected && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      // A broker that never acks must not hold the shutdown: the messages stay on disk for next time.
      await Promise.race([this.pump(), new Promise((resolve) => (timer = setTimeout(resolve, Math.max(20, deadline - Date.now()))))]);
      clearTimeout(timer);
      if (this.outboxDepth > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * Sends the outbox, oldest first, while connected, with up to OUTBOX_WINDOW messages awaiting their
   * ack at once: a broker acknowledges QoS 1 and 2 publishes in the order it received them (MQTT
   * 3.1.1, 4.6), so when one is not acknowledged none after it was, and the next pump starts again
   * from it: the order holds, and a message may come twice. One pump at a time keeps the order.
   */
  private pump(): Promise<void> {
    const outbox = this.options.outbox;
    if (!outbox) return Promise.resolve();
    if (this.pumping) return this.pumping;
    let finished = false;
    const run = (async () => {
      const inFlight = new Set<Promise<void>>();
      const sending = new Set<number>();
      let failed = false;
      try {
        while (this.client.connected && !this.closing && !failed) {
          if (inFlight.size >= OUTBOX_WINDOW) {
            await Promise.race(inFlight);
            continue;
          }
          const next = await outbox.next(sending);
          if (!next) {
            // A message pushed while `next` looked found this pump running: look again.
            if (outbox.hasOther(sending)) continue;
            if (inFlight.size === 0) break;
            await Promise.race(inFlight);
            continue;
          }
          sending.add(next.seq);
          const sent = this.sendDurable(next.seq, next.message).then((acked) => {
            sending.delete(next.seq);
            if (!acked) failed = true;
          });
          inFlight.add(sent);
          void sent.finally(() => inFlight.delete(sent));
        }
        // Only after a failure or on close: then the reconnect starts the next pump. (On the way out
        // with nothing in flight there must be no await before `finally`: a message pushed in it
        // would find this pump still running and wait for the next push.)
        if (inFlight.size > 0) await Promise.all(inFlight);
      } finally {
        finished = true;
        this.pumping = undefined;
      }
    })();
    // Offline, the pump ends before `run` is returned (nothing to await): it must not be kept as
    // the running pump, or every later call would get that settled promise and nothing would ever
    // be sent again (events written during an outage stayed on disk after it).
    if (!finished) this.pumping = run;
    return run;
  }

  /** One outbox message to the broker; on its ack, out of the outbox. Resolves whether it was acknowledged. */
  private async sendDurable(seq: number, message: DurableMessage): Promise<boolean> {
    const { topic, payload, qos, retain } = message;
    const acked = await new Promise<boolean>((resolve) => this.client.publish(topic, payload, { qos, retain }, (err) => resolve(!err)));
    this.log.debug(`outbox ${seq}: ${acked ? 'acknowledged' : 'not acknowledged, kept'}`);
    if (acked) {
      this.stats.durableSent++;
      // Out of the queue at once; a file that cannot be removed is sent again after a restart.
      await this.options.outbox!.remove(seq).catch((err: Error) => this.log.warn(`outbox ${seq}: sent, but its file stays (${err.message})`));
    }
    return acked;
  }

  /** Publishes awaiting their callback (never more than `maxPending`). */
  get pending(): number {
    return this.inflight.size;
  }

  /** What waits in memory on the way to the broker, for tests and the status line. */
  backlog(): PublisherBacklog {
    return {
      pending: this.inflight.size,
      outgoing: Object.keys(this.client.outgoing).length,
      queued: this.client.queue.length,
      bufferedBytes: this.client.stream?.writableLength ?? 0,
    };
  }

  private settle(entry: InFlight, ok: boolean): void {
    if (entry.settled) return;
    entry.settled = true;
    this.inflight.delete(entry);
    if (ok) this.stats.published++;
    else this.stats.dropped++;
  }

  /** Says `offline` (retained) when it can, then disconnects; never waits more than `timeoutMs`. */
  async close(timeoutMs = 2000): Promise<void> {
    this.closing = true;
    const bye = async () => {
      if (!this.client.connected) {
        // Nothing can be sent, and a graceful end would wait for acks of in-flight QoS 1/2 publishes
        // that cannot come before the timeout.
        await new Promise<void>((resolve) => this.client.end(true, {}, () => resolve()));
        return;
      }
      await new Promise<void>((resolve) => this.client.publish(availabilityTopic(this.options.prefix), 'offline', { qos: 1, retain: true }, () => resolve()));
      await new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
    };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
    if ((await Promise.race([bye(), late])) === 'late') {
      if (this.client.disconnecting) {
        // end(false) is waiting for acks that do not come, and mqtt.js ignores a second end() while
        // it waits: drop the connection ourselves (the broker then publishes the will, `offline`).
        this.client.stream?.destroy();
      } else {
        await new Promise<void>((resolve) => this.client.end(true, {}, () => resolve()));
      }
    }
    clearTimeout(timer);
  }
}
