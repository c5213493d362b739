import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import type { ModelStatusMessage } from '../src/publish/messages.js';
import { parsePipeline } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';
import { runPipeline, type StartedRun } from '../src/pipeline.js';

const yaml = (stateDir: string, teacher: string) => `
status_interval_s: 0
state_dir: ${JSON.stringify(stateDir)}
mqtt: { embedded: { host: 127.0.0.1, port: 0 } }
cameras:
  - name: yard
    source: { url: "synthetic:scene=yard&seed=31&seconds=20" }
    model: beats-s
    adapt:
      enabled: true
      teacher: ${teacher}
`;

describe('a teacher on keyframes in the running pipeline', () => {
  it('labels one frame in N off the frame path, and the status says so', { timeout: 60_000 }, async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-teacher-'));
    const file = path.join(stateDir, 'pipeline.yaml');
    const loaded = { file, config: parsePipeline(yaml(stateDir, '{ model: beats-s, threshold: 0.4, every_n_frames: 10 }'), file) };
    const statuses: ModelStatusMessage[] = [];
    let client: mqtt.MqttClient | undefined;
    let subscribed: Promise<unknown> | undefined;
    let frames = 0;
    await runPipeline(loaded, {
      onStarted: (run: StartedRun) => {
        subscribed = (async () => {
          client = await mqtt.connectAsync(run.brokerUrl);
          client.on('message', (_topic, payload) => statuses.push(JSON.parse(payload.toString('utf8')) as ModelStatusMessage));
          await client.subscribeAsync('beats/yard/model', { qos: 1 });
        })();
      },
      onResult: () => frames++,
    });
    await subscribed;
    await client?.endAsync();
    expect(frames).toBe(200);
    const last = statuses.at(-1)!;
    expect(last.teacher).not.toBeNull();
    expect(last.teacher!.model).toBe('beats-s@160');
    expect(last.teacher!.stride).toBe(10);
    // One keyframe every 10 frames at most; a keyframe due while the teacher still runs waits for the next one.
    expect(last.teacher!.keyframes + last.teacher!.late).toBeLessThanOrEqual(20);
    expect(last.teacher!.keyframes).toBeGreaterThanOrEqual(10);
    // Whole keyframes went to the engine: every cell of the grid (300 at least) x 3 classes, a fifth held out.
    expect(last.supervised_frames).toBeGreaterThanOrEqual(last.teacher!.keyframes);
    expect(last.cells_trained).toBeGreaterThan(last.teacher!.keyframes * 300);
    await rm(stateDir, { recursive: true, force: true });
  });

  it('a teacher that cannot load, or shares no class with the student, is a config error naming the key', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-teacher-'));
    const file = path.join(stateDir, 'pipeline.yaml');
    const missing = { file, config: parsePipeline(yaml(stateDir, '{ model: no-such-model, every_n_frames: 10 }'), file) };
    const err = await runPipeline(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).toMatch(/cameras\[0\]\.adapt\.teacher\.model/);
    await rm(stateDir, { recursive: true, force: true });
  });

  it('every_n_frames and adaptive are exclusive, and one is needed', () => {
    expect(() => parsePipeline(yaml('/tmp/x', '{ model: beats-s, every_n_frames: 5, adaptive: {} }'), 'p.yaml')).toThrow(/cameras\[0\]\.adapt\.teacher\.adaptive.*not both/s);
    expect(() => parsePipeline(yaml('/tmp/x', '{ model: beats-s }'), 'p.yaml')).toThrow(/cameras\[0\]\.adapt\.teacher\.every_n_frames/);
    const adaptive = parsePipeline(yaml('/tmp/x', '{ model: beats-s, adaptive: { min_frames: 4 } }'), 'p.yaml');
    expect(adaptive.cameras[0]!.adapt.teacher!.adaptive).toEqual({ min_frames: 4, max_frames: 80, agreement: 0.8 });
  });
});
