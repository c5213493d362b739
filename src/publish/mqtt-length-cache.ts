/**
 * mqtt-packet (under mqtt.js and aedes) caches the encoded "remaining length" of every packet it
 * writes, one small Buffer per distinct length below 16384, for the life of the process. Each is a
 * slice of Node's shared Buffer pool, so each pins a whole pool block (Buffer.poolSize: 8 KiB on
 * Node 20 and 22, 64 KiB on Node 24) to hold 1 to 4 bytes (mqttjs/mqtt-packet#163). Messages of
 * ever new lengths (detections, events, snapshots) add a block at a time: up to 128 MiB on Node 20,
 * 1 GiB on Node 24, growing for hours. `beats soak` saw it as array buffers rising ~2 MB a minute.
 *
 * `fillMqttLengthCache()` makes the library fill that cache at once, its entries carved one after
 * another from a few pool blocks (about 130 KB in all); lengths written later find their entry and
 * allocate nothing. Idempotent; harmless if a later mqtt-packet no longer caches.
 */
import { createRequire } from 'node:module';

/** mqtt-packet caches lengths below this (writeToStream.js). */
export const CACHED_LENGTHS = 16384;

type Generate = (packet: Record<string, unknown>, stream: { write(chunk: unknown): boolean }, opts?: { protocolVersion: number }) => boolean;

let filled = false;

/** mqtt-packet's packet writer as each of mqtt.js and aedes loads it (one copy or two). */
export function mqttPacketWriters(): Generate[] {
  const here = createRequire(import.meta.url);
  const paths = new Set<string>();
  for (const user of ['mqtt', 'aedes']) paths.add(createRequire(here.resolve(user)).resolve('mqtt-packet/writeToStream.js'));
  return [...paths].map((p) => here(p) as Generate);
}

export function fillMqttLengthCache(): void {
  if (filled) return;
  filled = true;
  const sink = { write: () => true };
  const payload = Buffer.alloc(CACHED_LENGTHS);
  for (const generate of mqttPacketWriters()) {
    // A QoS 0 publish on a one-byte topic: remaining length = 2 (topic length) + 1 + payload.
    for (let length = 3; length < CACHED_LENGTHS; length++) generate({ cmd: 'publish', topic: 'x', qos: 0, payload: payload.subarray(0, length - 3) }, sink, { protocolVersion: 4 });
    // Length 2: acknowledgements.
    generate({ cmd: 'puback', messageId: 1 }, sink, { protocolVersion: 4 });
  }
}
