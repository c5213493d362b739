/**
 * `node --import tsx bench/outbox-drain.ts [EVENTS] [RATE]`: how fast the durable outbox empties through the
 * embedded broker while the event loop is busy, as it is with cameras on it. Events of 400 bytes are
 * offered at RATE a second (default 1000, a burst of many cameras' events) while a timer keeps the loop busy 6 ms of
 * every 10; prints the time until the broker acknowledged every one, beside the time their
 * production takes (the least it can be).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setLogLevel } from '../src/log.js';
import { startEmbeddedBroker } from '../src/publish/broker.js';
import { MqttPublisher } from '../src/publish/mqtt.js';
import { Outbox } from '../src/publish/outbox.js';

const events = Number(process.argv[2] ?? 3000);
const tickMs = 10;
const perTick = Math.max(1, Math.round((Number(process.argv[3] ?? 1000) * tickMs) / 1000));
setLogLevel('warn');
const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-drain-'));
const publisher = new MqttPublisher({ url: broker.url, prefix: 'beats', qos: 1, outbox: await Outbox.open({ dir, maxMessages: events }) });
await publisher.waitConnected(10_000);
const busy = setInterval(() => {
  const until = performance.now() + 6;
  while (performance.now() < until);
}, tickMs);
const started = performance.now();
let offered = 0;
let deepest = 0;
const producer = setInterval(() => {
  for (let i = 0; i < perTick && offered < events; i++, offered++) void publisher.publishDurable('beats/events', JSON.stringify({ n: offered, pad: 'x'.repeat(400) }));
  deepest = Math.max(deepest, publisher.outboxDepth);
}, tickMs);
while (publisher.stats.durableSent < events) await new Promise((resolve) => setTimeout(resolve, 100));
const seconds = (performance.now() - started) / 1000;
clearInterval(busy);
clearInterval(producer);
console.log(`${events} events offered at ${(perTick * 1000) / tickMs}/s: all acknowledged after ${seconds.toFixed(1)} s (producing them takes ${((events * tickMs) / perTick / 1000).toFixed(1)} s); deepest outbox ${deepest}`);
await publisher.close();
await broker.close();
await rm(dir, { recursive: true, force: true });
