// mqtt-packet's cache of encoded packet lengths must not pin a Buffer pool block per distinct
// length (mqttjs/mqtt-packet#163): after fillMqttLengthCache(), packets of thousands of new lengths,
// written among the process's other small allocations, leave array buffers where they were.
import { describe, expect, it } from 'vitest';
import { forcedGc } from '../src/forced-gc.js';
import { fillMqttLengthCache, mqttPacketWriters } from '../src/publish/mqtt-length-cache.js';

const gc = forcedGc();
const arrayBuffersMb = () => {
  gc();
  return process.memoryUsage().arrayBuffers / (1024 * 1024);
};

describe("mqtt-packet's length cache", () => {
  it('is filled densely once, so that messages of new lengths allocate nothing that stays', () => {
    const before = arrayBuffersMb();
    fillMqttLengthCache();
    const filled = arrayBuffersMb();
    // What the library's caches hold once filled: a few pool blocks, not one per length.
    expect(filled - before).toBeLessThan(2);

    const sink = { write: () => true };
    const payload = Buffer.alloc(16_384);
    const others: Buffer[] = [];
    const writers = mqttPacketWriters();
    expect(writers.length).toBeGreaterThan(0);
    for (const generate of writers) {
      for (let i = 0; i < 3000; i++) {
        // Detections and events messages: lengths all over 200..12,200 bytes.
        const length = 200 + ((i * 7919) % 12_000);
        generate({ cmd: 'publish', topic: 'beats/cam/detections', qos: 1, messageId: 1 + i, payload: payload.subarray(0, length) }, sink);
        // The rest of the process takes small pooled buffers in between (sockets, JSON, files).
        for (let k = 0; k < 20; k++) others.push(Buffer.allocUnsafe(64));
        if (others.length > 1000) others.length = 0;
      }
    }
    others.length = 0;
    const after = arrayBuffersMb();
    // Each length cached as a slice of a fresh pool block pinned ~4 MB here (8 KiB blocks, Node 20).
    expect(after - filled, `array buffers ${filled.toFixed(2)} -> ${after.toFixed(2)} MB`).toBeLessThan(0.5);
  });
});
