import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import jpeg from 'jpeg-js';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePipeline } from '../src/config/load.js';
import { runPipeline, type RunOptions } from '../src/pipeline.js';
import type { EventMessage } from '../src/publish/messages.js';
import { assets, needsAssets } from './helpers/assets.js';
import { accepts, brokerKinds, brokerMissing, freePort, mosquittoPath, startBroker, subscriber, waitFor, type TestBroker } from './helpers/brokers.js';

interface Truth {
  fps: number;
  people: Array<{ first_frame: number; last_frame: number; fully_visible_from: number; fully_visible_to: number }>;
}

async function pipeline(yaml: string) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-events-'));
  const file = path.join(dir, 'pipeline.yaml');
  await writeFile(file, yaml);
  return { dir, loaded: { file, config: parsePipeline(yaml, file) } };
}

/** Runs a pipeline, collecting event messages and the epoch seconds of its first frame. */
async function run(loaded: Awaited<ReturnType<typeof pipeline>>['loaded'], options: RunOptions = {}) {
  const events: EventMessage[] = [];
  let firstFrameTs: number | undefined;
  const summary = await runPipeline(loaded, {
    ...options,
    onEvent: (m) => events.push(m),
    onResult: (r) => {
      firstFrameTs ??= r.frame.ts / 1000;
      options.onResult?.(r);
    },
  });
  return { summary, events, firstFrameTs: firstFrameTs! };
}

describe.skipIf(needsAssets)('events on the real indoor video', () => {
  it('one person event per pass, with start and end times that match the video', async () => {
    const truth = JSON.parse(await readFile(new URL('./fixtures/indoor-people.truth.json', import.meta.url), 'utf8')) as Truth;
    const broker = await startBroker('aedes');
    const sub = await subscriber(broker.url, 'beats/events');
    try {
      const { loaded } = await pipeline(`
status_interval_s: 0
mqtt: { url: ${broker.url} }
cameras:
  - name: indoor
    source: { url: ${JSON.stringify(assets.indoor)} }
    model: yolox-nano
    detect: { threshold: 0.35, labels: [person] }
`);
      const { events, firstFrameTs } = await run(loaded);
      const lifecycle = events.filter((m) => m.type !== 'update');
      // new, end, new, end...: one person at a time, each event ends before the next one starts.
      expect(lifecycle.map((m) => m.type)).toEqual(truth.people.flatMap(() => ['new', 'end']));
      const ends = lifecycle.filter((m) => m.type === 'end').map((m) => m.after);
      ends.forEach((event, i) => {
        const person = truth.people[i]!;
        const start = event.start_time - firstFrameTs;
        const end = event.end_time! - firstFrameTs;
        expect(event.label).toBe('person');
        // Start: the first frame the tracker saw the person, which cannot be before any of them is
        // in view, and comes at the latest 1 s after the whole body is in view (people enter
        // head-first at the bottom edge: a sliver of a head is not detected).
        expect(start, `pass ${i + 1} start`).toBeGreaterThanOrEqual(person.first_frame / truth.fps - 0.05);
        expect(start, `pass ${i + 1} start`).toBeLessThanOrEqual(person.fully_visible_from / truth.fps + 1);
        // End: the last frame the person was detected, between 0.5 s before they start to leave the
        // picture and 0.7 s after the last body pixel (their shadow lingers up to 6 frames).
        expect(end, `pass ${i + 1} end`).toBeGreaterThanOrEqual(person.fully_visible_to / truth.fps - 0.5);
        expect(end, `pass ${i + 1} end`).toBeLessThanOrEqual(person.last_frame / truth.fps + 0.7);
        expect(event.top_score).toBeGreaterThan(0.7);
      });
      // What went over MQTT is exactly what the pipeline produced, in order.
      await waitFor(() => sub.on('beats/events').length >= events.length || undefined, 10_000, 'all events on MQTT');
      const received = sub.on('beats/events').map((m) => JSON.parse(m.payload) as EventMessage);
      expect(received.map((m) => m.id)).toEqual(events.map((m) => m.id));
      expect(received[0]!.before).toEqual(received[0]!.after);
    } finally {
      await sub.close();
      await broker.stop();
    }
  }, 120_000);
});

describe.skipIf(needsAssets).each(brokerKinds)('retained state on %s', (kind) => {
  let broker: TestBroker;
  beforeAll(async () => {
    if (brokerMissing(kind)) {
      if (process.env.CI) throw new Error('mosquitto is not installed; CI must install it');
      return;
    }
    broker = await startBroker(kind);
  });
  afterAll(async () => broker?.stop());

  it.skipIf(brokerMissing(kind))('counts per label and zone, snapshots and Home Assistant discovery are retained', async () => {
    const { dir, loaded } = await pipeline(`
status_interval_s: 0
mqtt: { url: ${broker.url}, home_assistant: { enabled: true } }
cameras:
  - name: highway
    source: { url: ${JSON.stringify(assets.highway)} }
    model: yolox-nano
    detect: { labels: [car, truck, bus] }
    zones:
      near: { points: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]], labels: [car], inertia: 2 }
`);
    const seen: number[] = [];
    const { events } = await run(loaded, { maxFrames: 150, onResult: (r) => seen.push(r.tracks.filter((t) => t.confirmed && t.label === 'car').length) });
    expect(events.some((m) => m.type === 'new' && m.after.label === 'car')).toBe(true);
    expect(events.some((m) => m.after.entered_zones.includes('near'))).toBe(true);

    // A subscriber that comes later finds the state retained.
    const late = await subscriber(broker.url, ['beats/highway/#', 'homeassistant/#']);
    try {
      const count = await late.waitForMessage((m) => m.topic === 'beats/highway/car', 5000, 'car count');
      expect(count.retain).toBe(true);
      // The run ended: every event was ended, so nothing is in view any more.
      expect(count.payload).toBe('0');
      await late.waitForMessage((m) => m.topic === 'beats/highway/near/car', 5000, 'zone count');
      const config = await late.waitForMessage((m) => m.topic === 'homeassistant/sensor/beats_highway_car_count/config', 5000, 'discovery');
      expect(JSON.parse(config.payload)).toMatchObject({ state_topic: 'beats/highway/car', availability_topic: 'beats/availability', device: { name: 'Beats highway' } });
      const snapshot = await waitFor(() => late.client && late.messages.find((m) => m.topic === 'beats/highway/car/snapshot'), 5000, 'snapshot');
      expect(snapshot.retain).toBe(true);
      // The snapshot as a Home Assistant image entity, announced (retained) with the first one.
      const image = await late.waitForMessage((m) => m.topic === 'homeassistant/image/beats_highway_car_snapshot/config', 5000, 'image discovery');
      expect(image.retain).toBe(true);
      expect(JSON.parse(image.payload)).toMatchObject({ image_topic: 'beats/highway/car/snapshot', content_type: 'image/jpeg', default_entity_id: 'image.beats_highway_car_snapshot' });
    } finally {
      await late.close();
    }
    // The snapshot is a JPEG of the picture the model saw (416x312 for 320x240), also kept on disk.
    const raw = await new Promise<Buffer>((resolve) => {
      const c = mqtt.connect(broker.url);
      c.on('message', (_t, payload) => {
        c.end(true);
        resolve(payload);
      });
      c.on('connect', () => c.subscribe('beats/highway/car/snapshot'));
    });
    const image = jpeg.decode(raw);
    expect([image.width, image.height]).toEqual([416, 312]);
    const files = await readdir(path.join(dir, '.beats', 'snapshots', 'highway'));
    expect(files.some((f) => f.endsWith('-crop.jpg'))).toBe(true);
    // Plausible counts while it ran: the clip shows 5 to 8 vehicles in most frames.
    expect(Math.max(...seen)).toBeLessThanOrEqual(14);
  });
});

/** Mosquitto with persistence, so a persistent subscriber's session survives the broker's restart. */
async function persistentMosquitto(): Promise<{ url: string; start(): Promise<void>; stop(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-mosq-'));
  const port = await freePort();
  const conf = path.join(dir, 'mosquitto.conf');
  await writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\n# run as root (CI), it would switch to the mosquitto user and could not write the test folder\nuser root\npersistence true\npersistence_location ${dir}/\n`);
  let child: ChildProcess | undefined;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async start() {
      child = spawn(mosquittoPath!, ['-c', conf], { stdio: 'ignore' });
      await waitFor(() => accepts(port), 10_000, 'mosquitto to listen');
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGTERM'); // mosquitto writes its persistence file on the way out
      await exited;
    },
  };
}

describe.skipIf(needsAssets || !mosquittoPath)('no event lost', () => {
  it('Mosquitto stops mid-run and comes back: a persistent subscriber gets every event exactly once after de-duplication, in order', async () => {
    const broker = await persistentMosquitto();
    await broker.start();
    const received: EventMessage[] = [];
    const sub = mqtt.connect(broker.url, { clientId: 'beats-test-persistent', clean: false, reconnectPeriod: 200 });
    sub.on('error', () => undefined);
    sub.on('message', (_topic, payload) => {
      received.push(JSON.parse(payload.toString()) as EventMessage);
    });
    await waitFor(() => sub.connected, 5000, 'subscriber');
    await sub.subscribeAsync('beats/events', { qos: 1 });
    let outage: Promise<void> | undefined;
    try {
      const { loaded } = await pipeline(`
status_interval_s: 0
mqtt: { url: ${broker.url} }
cameras:
  - name: highway
    source: { url: ${JSON.stringify(assets.highway)} }
    model: yolox-nano
    detect: { labels: [car, truck, bus] }
`);
      const events: EventMessage[] = [];
      let waitingDuringOutage = 0;
      // The outage is measured in frames, not seconds: the broker goes at frame 120 and comes back
      // at frame 240, so at least 360 frames run after it is back, however slow the machine is, and
      // the pipeline cannot end before its outbox could drain (what does not drain stays on disk
      // for the next run, which another test covers).
      let stopped: Promise<void> | undefined;
      const summary = await runPipeline(loaded, {
        maxFrames: 600,
        onEvent: (m) => events.push(m),
        onResult: (r) => {
          if (r.frame.index === 120) stopped = broker.stop();
          if (r.frame.index !== 240) return;
          outage = (async () => {
            await stopped;
            // Produced while the broker was away, not received: they wait in the outbox.
            waitingDuringOutage = events.length - new Set(received.map((m) => m.id)).size;
            await broker.start();
          })();
        },
      });
      await outage;
      // Every event reached the broker before the pipeline ended: none is left on disk.
      expect(summary.mqtt.outboxDepth).toBe(0);
      await waitFor(() => new Set(received.map((m) => m.id)).size >= events.length || undefined, 20_000, 'every event at the subscriber');
      expect(waitingDuringOutage).toBeGreaterThan(0);
      const unique = [...new Map(received.map((m) => [m.id, m])).values()];
      expect(unique.map((m) => m.id)).toEqual(events.map((m) => m.id));
      expect(events.length).toBeGreaterThan(10);
    } finally {
      sub.end(true);
      await broker.stop();
    }
  }, 120_000);

  it('a restart of the pipeline sends what the outbox still holds, first', async () => {
    const closedPort = await freePort();
    const { dir, loaded } = await pipeline(`
status_interval_s: 0
mqtt: { url: mqtt://127.0.0.1:${closedPort} }
cameras:
  - name: indoor
    source: { url: ${JSON.stringify(assets.indoor)} }
    model: yolox-nano
    detect: { labels: [person] }
`);
    // No broker: the first person's events wait on disk.
    const first = await run(loaded, { maxFrames: 230 });
    expect(first.events.map((m) => m.type).filter((t) => t !== 'update')).toEqual(['new', 'end']);
    expect(first.summary.mqtt.outboxDepth).toBe(first.events.length);
    expect((await readdir(path.join(dir, '.beats', 'outbox'))).length).toBe(first.events.length);

    const broker = await startBroker('aedes');
    const sub = await subscriber(broker.url, 'beats/events');
    try {
      const second = await run({ ...loaded, config: { ...loaded.config, mqtt: { ...loaded.config.mqtt!, url: broker.url } } }, { maxFrames: 5 });
      await waitFor(() => sub.on('beats/events').length >= first.events.length || undefined, 10_000, 'old events');
      expect(sub.on('beats/events').map((m) => (JSON.parse(m.payload) as EventMessage).id)).toEqual(first.events.map((m) => m.id));
      expect(second.summary.mqtt.outboxDepth).toBe(0);
      expect(await readdir(path.join(dir, '.beats', 'outbox'))).toEqual([]);
    } finally {
      await sub.close();
      await broker.stop();
    }
  }, 120_000);
});
