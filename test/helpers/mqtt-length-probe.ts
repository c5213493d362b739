/**
 * Run in a process of its own by test/mqtt-length-cache.test.ts (a test file's process may hold
 * other files' leftovers that allocate while it measures):
 *   node --import tsx test/helpers/mqtt-length-probe.ts [--no-fill]
 * Writes MQTT packets of 3000 new lengths among other small pooled allocations, with or without
 * fillMqttLengthCache() first, and prints the array buffers it left behind, in MB, as JSON.
 */
import { forcedGc } from '../../src/forced-gc.js';
import { fillMqttLengthCache, mqttPacketWriters } from '../../src/publish/mqtt-length-cache.js';

const gc = forcedGc();
/** Array buffers after a full collection; V8 frees backing stores on a background thread, so it is given time to. */
const arrayBuffersMb = async () => {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 50));
  gc();
  return process.memoryUsage().arrayBuffers / (1024 * 1024);
};

const before = await arrayBuffersMb();
if (!process.argv.includes('--no-fill')) fillMqttLengthCache();
const filled = await arrayBuffersMb();
const sink = { write: () => true };
const payload = Buffer.alloc(16_384);
let others: Buffer[] = [];
const writers = mqttPacketWriters();
for (const generate of writers) {
  for (let i = 0; i < 3000; i++) {
    // Detections and events messages: lengths all over 200..12,200 bytes.
    const length = 200 + ((i * 7919) % 12_000);
    generate({ cmd: 'publish', topic: 'beats/cam/detections', qos: 1, messageId: 1 + i, payload: payload.subarray(0, length) }, sink);
    // The rest of the process takes small pooled buffers in between (sockets, JSON, files).
    for (let k = 0; k < 20; k++) others.push(Buffer.allocUnsafe(64));
    if (others.length > 1000) others = [];
  }
}
others = [];
const after = await arrayBuffersMb();
process.stdout.write(JSON.stringify({ writers: writers.length, fillMb: filled - before, leftMb: after - filled }) + '\n');
