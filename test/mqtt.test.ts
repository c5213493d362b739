import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadPipelineFile } from '../src/config/load.js';
import { setLogSink, type LogRecord } from '../src/log.js';
import { readModelCard } from '../src/model/card.js';
import { builtinModelsDir } from '../src/model/registry.js';
import { runPipeline, type RunSummary } from '../src/pipeline.js';
import type { FrameResult } from '../src/pipeline/types.js';
import { MqttPublisher } from '../src/publish/mqtt.js';
import type { DetectionsMessage } from '../src/publish/messages.js';
import { Outbox } from '../src/publish/outbox.js';
import { assets, needsAssets } from './helpers/assets.js';
import {
  brokerKinds,
  brokerMissing,
  childPids,
  freePort,
  sleep,
  spawnBeats,
  startBroker,
  subscriber,
  waitFor,
  type BrokerKind,
  type Subscriber,
  type TestBroker,
} from './helpers/brokers.js';

/** The highway clip: 320x240, 25 fps, cars in most frames. */
const WIDTH = 320;
const HEIGHT = 240;
const FRAME_MS = 40;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'beats-mqtt-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface PipelineOptions {
  mqtt?: Record<string, unknown>;
  source?: Record<string, unknown>;
}

/** Writes a one-camera pipeline on the highway clip and loads it as the CLI would. */
async function pipelineFile(name: string, options: PipelineOptions = {}): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  const config = {
    status_interval_s: 0,
    ...(options.mqtt ? { mqtt: options.mqtt } : {}),
    cameras: [{ name: 'highway', source: { url: assets.highway, ...options.source }, model: 'yolox-nano' }],
  };
  await writeFile(file, stringify(config));
  return file;
}

async function pipeline(name: string, options: PipelineOptions = {}) {
  return loadPipelineFile(await pipelineFile(name, options));
}

function parse(payload: string): DetectionsMessage {
  return JSON.parse(payload) as DetectionsMessage;
}

/** Aborts a looping run whatever happens to the test, and waits for it to end. */
function startLoopingRun(run: (signal: AbortSignal) => Promise<RunSummary>) {
  const controller = new AbortController();
  const done = run(controller.signal);
  done.catch(() => undefined);
  return {
    stop: async () => {
      controller.abort();
      return done;
    },
  };
}

describe.each(brokerKinds)('MQTT with %s', (kind: BrokerKind) => {
  describe.skipIf(needsAssets || brokerMissing(kind))(`${kind}`, () => {
    let broker: TestBroker;
    const subscribers: Subscriber[] = [];
    const sub = async (topics: string | string[]) => {
      const s = await subscriber(broker.url, topics);
      subscribers.push(s);
      return s;
    };

    beforeAll(async () => {
      broker = await startBroker(kind);
    });
    afterAll(async () => {
      await Promise.all(subscribers.map((s) => s.close()));
      await broker?.stop();
    });

    it('publishes one detections message per frame with detections, matching the contract', async () => {
      const { card } = await readModelCard(path.join(builtinModelsDir, 'yolox-nano.json'));
      const loaded = await pipeline(`contract-${kind}`, { mqtt: { qos: 1 } });
      const s = await sub('beats/#');
      const results: FrameResult[] = [];
      const summary = await runPipeline(loaded, { maxFrames: 40, brokerUrl: broker.url, onResult: (r) => results.push(r) });

      expect(results).toHaveLength(40);
      const expected = results.filter((r) => r.detections.length > 0);
      // Cars are on the road in nearly every frame of this clip.
      expect(expected.length).toBeGreaterThan(30);
      expect(summary.mqtt.dropped).toBe(0);
      expect(summary.brokerUrl).toBe(broker.url);

      const topic = 'beats/highway/detections';
      await waitFor(() => s.on(topic).length >= expected.length, 10_000, `${expected.length} messages on ${topic}`);
      await sleep(200); // anything extra would show up now
      const received = s.on(topic);
      expect(received).toHaveLength(expected.length);

      const messages = received.map((m) => parse(m.payload));
      expect(messages.map((m) => m.frame)).toEqual(expected.map((r) => r.frame.index));
      const now = Date.now();
      messages.forEach((m, i) => {
        expect(received[i]!.retain).toBe(false);
        expect(Object.keys(m).sort()).toEqual(['camera', 'detections', 'frame', 'height', 'model', 'ts', 'width']);
        expect(m.camera).toBe('highway');
        expect(m.model).toEqual({ name: 'yolox-nano', version: card.version });
        expect(m.width).toBe(WIDTH);
        expect(m.height).toBe(HEIGHT);
        expect(Number.isInteger(m.ts)).toBe(true);
        expect(Math.abs(m.ts - now)).toBeLessThan(60_000);
        if (i > 0) {
          const prev = messages[i - 1]!;
          expect(m.frame).toBeGreaterThan(prev.frame);
          // File time: the run's start plus index / 25 fps, whatever the machine's speed.
          expect(Math.abs(m.ts - prev.ts - (m.frame - prev.frame) * FRAME_MS)).toBeLessThanOrEqual(1);
        }
        const source = expected[i]!.detections;
        expect(m.detections).toHaveLength(source.length);
        m.detections.forEach((d, j) => {
          const ref = source[j]!;
          // track_id: present when the detection belongs to a confirmed track.
          expect(Object.keys(d).sort()).toEqual(['box', 'class_id', 'label', 'score', ...(ref.trackId === undefined ? [] : ['track_id'])]);
          expect(d.track_id).toBe(ref.trackId);
          expect(Number.isInteger(d.class_id)).toBe(true);
          expect(d.label).toBe(card.classes[d.class_id]);
          expect(d.score).toBeGreaterThanOrEqual(0.35);
          expect(d.score).toBeLessThanOrEqual(1);
          expect(d.box).toHaveLength(4);
          const [x1, y1, x2, y2] = d.box;
          expect(0 <= x1 && x1 < x2 && x2 <= WIDTH, `box ${d.box.join(',')} inside ${WIDTH}x${HEIGHT}`).toBe(true);
          expect(0 <= y1 && y1 < y2 && y2 <= HEIGHT, `box ${d.box.join(',')} inside ${WIDTH}x${HEIGHT}`).toBe(true);
          // The same detection the run reported, rounded for the wire.
          expect(d.class_id).toBe(ref.classId);
          expect(d.label).toBe(ref.label);
          expect(Math.abs(d.score - ref.score)).toBeLessThanOrEqual(0.0005);
          d.box.forEach((v, k) => expect(Math.abs(v - ref.box[k]!)).toBeLessThanOrEqual(0.05));
        });
      });
      const labels = new Set(messages.flatMap((m) => m.detections.map((d) => d.label)));
      expect(labels.has('car')).toBe(true);
    });

    it('honours a custom topic prefix', async () => {
      const loaded = await pipeline(`prefix-${kind}`, { mqtt: { prefix: 'site1/cams' } });
      const s = await sub(['site1/cams/#', 'beats/highway/detections']);
      const results: FrameResult[] = [];
      const summary = await runPipeline(loaded, { maxFrames: 5, brokerUrl: broker.url, onResult: (r) => results.push(r) });
      const expected = results.filter((r) => r.detections.length > 0).length;
      expect(expected).toBeGreaterThan(0);
      expect(summary.mqtt.dropped).toBe(0);
      await waitFor(() => s.on('site1/cams/highway/detections').length >= expected, 10_000, 'detections under site1/cams');
      expect(s.on('site1/cams/highway/detections')).toHaveLength(expected);
      expect(s.on('site1/cams/highway/detections').every((m) => parse(m.payload).camera === 'highway')).toBe(true);
      expect(s.on('site1/cams/availability').map((m) => m.payload)).toContain('online');
      expect(s.on('beats/highway/detections')).toHaveLength(0);
    });

    it('keeps `online` retained while running and `offline` retained after a clean end', async () => {
      const prefix = `avail-${kind}`;
      const loaded = await pipeline(`avail-${kind}`, { mqtt: { prefix }, source: { loop: true, realtime: true } });
      const early = await sub(`${prefix}/#`);
      const run = startLoopingRun((signal) => runPipeline(loaded, { brokerUrl: broker.url, signal }));
      try {
        await early.waitForMessage((m) => m.topic === `${prefix}/highway/detections`, 30_000, 'a first detection');
        const late = await sub(`${prefix}/availability`);
        const online = await late.waitForMessage(() => true, 10_000, 'the retained availability');
        expect(online).toMatchObject({ payload: 'online', retain: true });
      } finally {
        await run.stop();
      }
      await early.waitForMessage((m) => m.topic === `${prefix}/availability` && m.payload === 'offline', 10_000, 'offline on a clean end');
      const after = await sub(`${prefix}/availability`);
      const offline = await after.waitForMessage(() => true, 10_000, 'the retained availability after the end');
      expect(offline).toMatchObject({ payload: 'offline', retain: true });
      expect(after.messages).toHaveLength(1);
    });

    it('has the broker publish `offline` (the last will) when the process is killed', async () => {
      const prefix = `will-${kind}`;
      const file = await pipelineFile(`will-${kind}`, { mqtt: { prefix }, source: { loop: true, realtime: true } });
      const s = await sub(`${prefix}/availability`);
      const beats = spawnBeats(['run', file, '--broker', broker.url]);
      let ffmpeg: number[] = [];
      try {
        await waitFor(() => s.messages.some((m) => m.payload === 'online') || beats.child.exitCode !== null, 30_000, `online from beats (stderr: ${beats.stderr()})`);
        expect(s.messages.map((m) => m.payload), beats.stderr()).toEqual(['online']);
        ffmpeg = await childPids(beats.pid, 'ffmpeg');
        beats.child.kill('SIGKILL');
        const exit = await beats.exit;
        expect(exit.signal).toBe('SIGKILL');
        const will = await s.waitForMessage((m) => m.payload === 'offline', 15_000, 'the will');
        expect(will.topic).toBe(`${prefix}/availability`);
        expect(s.messages.map((m) => m.payload)).toEqual(['online', 'offline']);
      } finally {
        beats.child.kill('SIGKILL');
        // A killed process cannot stop its ffmpeg; do not leave it to the machine.
        for (const pid of ffmpeg) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone (it dies on EPIPE)
          }
        }
      }
    });

    it('drops detections while the broker is away and publishes again once it is back', async () => {
      const prefix = `away-${kind}`;
      const loaded = await loadPipelineFile(await pipelineFile(`away-${kind}`, { mqtt: { prefix }, source: { loop: true, realtime: true } }));
      // The status line is where the running publisher's stats show: read it from the log.
      loaded.config.status_interval_s = 0.25;
      const status: Array<{ up: boolean; dropped: number }> = [];
      const results: FrameResult[] = [];
      // Frames processed from here on met a publisher that knew the broker was down.
      let knownDown: number | undefined;
      const previousSink = setLogSink((record: LogRecord) => {
        const m = /\| mqtt (up|down), sent \d+, dropped (\d+)\b/.exec(record.msg);
        if (!m) return;
        status.push({ up: m[1] === 'up', dropped: Number(m[2]) });
        if (m[1] === 'down') knownDown ??= results.length;
      });
      const s = await sub(`${prefix}/highway/detections`);
      const run = startLoopingRun((signal) => runPipeline(loaded, { brokerUrl: broker.url, signal, onResult: (r) => results.push(r) }));
      let summary: RunSummary;
      let outageStart = 0;
      let outageEnd = 0;
      try {
        await waitFor(() => s.messages.length >= 3, 30_000, 'detections before the outage');
        await broker.stop();
        outageStart = results.length;
        // Down, and the publisher counts what it drops: two status lines that say so, the later with more.
        await waitFor(
          () => {
            const down = status.filter((x) => !x.up);
            return down.length >= 2 && down.at(-1)!.dropped > down[0]!.dropped && knownDown !== undefined && results.length > knownDown + 5;
          },
          30_000,
          'status lines showing mqtt down with a growing dropped count',
        );
        outageEnd = results.length;
        await broker.restart!();
        await waitFor(() => s.client.connected, 15_000, 'the subscriber to reconnect');
        const lastDuringOutage = results[outageEnd - 1]!.frame.index;
        await s.waitForMessage((m) => parse(m.payload).frame > lastDuringOutage, 30_000, 'detections after the broker came back');
      } finally {
        summary = await run.stop();
        setLogSink(previousSink);
      }
      expect(knownDown).toBeGreaterThanOrEqual(outageStart);
      // onResult comes once a frame went all the way through, after its detections were published:
      // the one frame in flight when a count was taken may have been published before it.
      const droppedDuringOutage = results.slice(knownDown! + 1, outageEnd).filter((r) => r.detections.length > 0).length;
      expect(droppedDuringOutage).toBeGreaterThan(0);
      expect(summary.mqtt.dropped).toBeGreaterThanOrEqual(droppedDuringOutage);
      // Nothing processed while the broker was down reached the subscriber later (no queueing).
      const outageFrames = new Set(results.slice(outageStart + 1, outageEnd).map((r) => r.frame.index));
      expect(s.messages.filter((m) => outageFrames.has(parse(m.payload).frame)), `outage ${outageStart}..${outageEnd}: frames ${[...outageFrames].join(',')}`).toEqual([]);
    });

    it('keeps nothing in memory while the broker is down, and sends again after it restarts', async () => {
      const prefix = `down-${kind}`;
      const publisher = new MqttPublisher({ url: broker.url, prefix, qos: 1, maxPending: 20 });
      try {
        await publisher.waitConnected(10_000);
        await broker.stop();
        await waitFor(() => !publisher.stats.connected, 15_000, 'the publisher to see the broker go');
        const dropped = publisher.stats.dropped;
        // Only the `online` announcement may still wait for its ack (mqtt.js sends it again later).
        const before = publisher.backlog();
        expect(before).toMatchObject({ pending: 0, queued: 0 });
        expect(before.outgoing).toBeLessThanOrEqual(1);
        const payload = 'x'.repeat(8 * 1024);
        let accepted = 0;
        for (let i = 0; i < 500; i++) if (publisher.publish(`${prefix}/t`, payload, { qos: 1, retain: false })) accepted++;
        expect(accepted).toBe(0);
        expect(publisher.stats.dropped - dropped).toBe(500);
        expect(publisher.backlog()).toEqual(before);

        await broker.restart!();
        const s = await sub(`${prefix}/t`);
        await waitFor(() => publisher.stats.connected, 15_000, 'the publisher to reconnect on its own');
        expect(publisher.publish(`${prefix}/t`, 'back', { qos: 1, retain: false })).toBe(true);
        await s.waitForMessage((m) => m.payload === 'back', 10_000, 'a message after the restart');
        expect(s.messages.map((m) => m.payload)).toEqual(['back']);
      } finally {
        await publisher.close();
      }
    });

    it('sends events written to the outbox while the broker was away once it is back, in order', async () => {
      const prefix = `outage-${kind}`;
      const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-'));
      const publisher = new MqttPublisher({ url: broker.url, prefix, qos: 1, outbox: await Outbox.open({ dir, maxMessages: 100 }) });
      try {
        await publisher.waitConnected(10_000);
        await publisher.publishDurable(`${prefix}/events`, 'before');
        await waitFor(() => publisher.outboxDepth === 0 || undefined, 10_000, 'the first event sent');
        await broker.stop();
        await waitFor(() => !publisher.stats.connected, 15_000, 'the publisher to see the broker go');
        // Offline: each of these starts a pump that has nothing to do until the broker is back.
        for (const n of [1, 2, 3]) await publisher.publishDurable(`${prefix}/events`, `during ${n}`);
        expect(publisher.outboxDepth).toBe(3);
        await broker.restart!();
        const s = await sub(`${prefix}/events`);
        await waitFor(() => publisher.outboxDepth === 0 || undefined, 15_000, 'the outbox to drain after the restart');
        await s.waitForMessage((m) => m.payload === 'during 3', 10_000, 'the last event of the outage');
        expect(s.messages.map((m) => m.payload)).toEqual(['during 1', 'during 2', 'during 3']);
        expect(publisher.stats.durableSent).toBe(4);
      } finally {
        await publisher.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('a backlog of events goes out complete and in order, several awaiting their ack at once', async () => {
      const prefix = `backlog-${kind}`;
      const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-'));
      // 300 events waiting on disk (an outage, a restart), then the publisher connects and sends them.
      const outbox = await Outbox.open({ dir, maxMessages: 1000 });
      for (let n = 0; n < 300; n++) await outbox.push({ topic: `${prefix}/events`, payload: `e${n}`, qos: 1, retain: false });
      const s = await sub(`${prefix}/events`);
      const publisher = new MqttPublisher({ url: broker.url, prefix, qos: 1, outbox });
      let mostInFlight = 0;
      const watch = setInterval(() => (mostInFlight = Math.max(mostInFlight, publisher.backlog().outgoing)), 1);
      try {
        await waitFor(() => publisher.outboxDepth === 0 || undefined, 20_000, 'the outbox to drain');
        await s.waitForMessage(() => s.messages.length >= 300, 10_000, 'all 300 events');
        expect(s.messages.map((m) => m.payload)).toEqual(Array.from({ length: 300 }, (_, n) => `e${n}`));
        expect(publisher.stats.durableSent).toBe(300);
        expect(mostInFlight).toBeGreaterThan(2);
        // The outbox's window of 16, and at most the retained `online` said on connecting.
        expect(mostInFlight).toBeLessThanOrEqual(17);
      } finally {
        clearInterval(watch);
        await publisher.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it.runIf(kind === 'mosquitto').each([0, 1] as const)('stays bounded when the broker hangs, and recovers when it is restarted (QoS %i)', async (qos) => {
      const prefix = `hung-${kind}-${qos}`;
      const maxPending = 20;
      const payload = 'x'.repeat(32 * 1024);
      const publisher = new MqttPublisher({ url: broker.url, prefix, qos, maxPending });
      try {
        await publisher.waitConnected(10_000);
        // A frozen broker: the TCP connection stays up, nothing is read or acknowledged.
        broker.signal!('SIGSTOP');
        let peakPending = 0;
        let peakBytes = 0;
        let peakOutgoing = 0;
        for (let i = 0; i < 800; i++) {
          publisher.publish(`${prefix}/t`, payload, { qos, retain: false });
          const b = publisher.backlog();
          peakPending = Math.max(peakPending, b.pending);
          peakOutgoing = Math.max(peakOutgoing, b.outgoing);
          peakBytes = Math.max(peakBytes, b.bufferedBytes);
          if (i % 50 === 0) await sleep(5);
        }
        // Kernel buffers took what they could; past that the publisher dropped instead of queueing.
        expect(publisher.stats.dropped).toBeGreaterThan(0);
        expect(peakPending).toBeLessThanOrEqual(maxPending);
        // mqtt.js's outgoing store also holds the `online` announcement if the broker froze before its ack.
        expect(peakOutgoing).toBeLessThanOrEqual(maxPending + 1);
        expect(peakBytes).toBeLessThanOrEqual((maxPending + 1) * (payload.length + 1024));
        expect(publisher.pending).toBe(maxPending);

        // The hung broker is killed and started again on the same port.
        broker.signal!('SIGKILL');
        await waitFor(() => !publisher.stats.connected, 15_000, 'the publisher to see the broker go');
        await broker.restart!();
        const s = await sub(`${prefix}/t`);
        await waitFor(() => publisher.stats.connected, 15_000, 'the publisher to reconnect');
        // QoS 0 publishes died with the socket; QoS 1 ones are sent again and acknowledged.
        await waitFor(() => publisher.pending === 0, 15_000, `pending publishes to settle (pending ${publisher.pending})`);
        expect(publisher.publish(`${prefix}/t`, 'after', { qos, retain: false })).toBe(true);
        await s.waitForMessage((m) => m.payload === 'after', 10_000, 'a message after the restart');
        expect(publisher.backlog()).toMatchObject({ queued: 0 });
      } finally {
        broker.signal!('SIGCONT');
        await publisher.close();
      }
    });

    it.runIf(kind === 'mosquitto')('closes without waiting for acks that cannot come (broker gone with QoS 1 in flight)', async () => {
      const publisher = new MqttPublisher({ url: broker.url, prefix: `gone-${kind}`, qos: 1, maxPending: 20 });
      try {
        await publisher.waitConnected(10_000);
        await sleep(100); // `online` acknowledged
        broker.signal!('SIGSTOP');
        for (let i = 0; i < 5; i++) expect(publisher.publish(`gone-${kind}/t`, 'x', { qos: 1, retain: false })).toBe(true);
        broker.signal!('SIGKILL');
        await waitFor(() => !publisher.stats.connected, 15_000, 'the publisher to see the broker go');
        expect(publisher.backlog().outgoing).toBeGreaterThanOrEqual(5);
        // A graceful end would wait for those acks (mqtt.js end(false)) until the timeout, and then
        // mqtt.js ignored the forced end: with a long timeout this would hang past the test's limit.
        await publisher.close(10 * 60_000);
        expect(publisher.stats.connected).toBe(false);
      } finally {
        await broker.restart!();
      }
    }, 30_000);
  });
});

describe.skipIf(needsAssets)('the embedded broker (no mqtt.url, no --broker)', () => {
  it('starts aedes where the pipeline says and publishes there', async () => {
    const port = await freePort();
    const loaded = await pipeline('embedded', { mqtt: { embedded: { host: '127.0.0.1', port } }, source: { loop: true, realtime: true } });
    let s: Subscriber | undefined;
    const run = startLoopingRun((signal) => runPipeline(loaded, { signal }));
    let summary: RunSummary;
    try {
      s = await waitFor(() => subscriber(`mqtt://127.0.0.1:${port}`, 'beats/highway/detections').catch(() => undefined), 30_000, 'the embedded broker');
      const m = await s.waitForMessage(() => true, 30_000, 'detections from the embedded broker');
      expect(parse(m.payload).camera).toBe('highway');
    } finally {
      await s?.close();
      summary = await run.stop();
    }
    expect(summary.brokerUrl).toBe(`mqtt://127.0.0.1:${port}`);
    expect(summary.mqtt.published).toBeGreaterThan(0);
  });

  it('falls back to a free port when the configured one is taken, and says which', async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    const address = taken.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const loaded = await pipeline('embedded-taken', { mqtt: { embedded: { host: '127.0.0.1', port } }, source: { loop: true, realtime: true } });
    const logged: string[] = [];
    const previousSink = setLogSink((record) => logged.push(record.msg));
    let s: Subscriber | undefined;
    const run = startLoopingRun((signal) => runPipeline(loaded, { signal }));
    let summary: RunSummary;
    try {
      const line = await waitFor(() => logged.find((l) => l.startsWith('embedded MQTT broker listening on ')), 30_000, 'the broker line');
      const url = /listening on (mqtt:\/\/\S+)/.exec(line)![1]!;
      expect(url).not.toBe(`mqtt://127.0.0.1:${port}`);
      s = await subscriber(url, 'beats/highway/detections');
      await s.waitForMessage(() => true, 30_000, 'detections on the fallback port');
      summary = await run.stop();
      expect(summary.brokerUrl).toBe(url);
    } finally {
      await s?.close();
      await run.stop().catch(() => undefined);
      setLogSink(previousSink);
      taken.close();
    }
    expect(new URL(summary.brokerUrl).port).not.toBe(String(port));
    expect(logged.some((l) => l.includes(`port ${port} on 127.0.0.1 is taken`))).toBe(true);
  });
});
