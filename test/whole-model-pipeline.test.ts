/**
 * `cameras[].adapt.layers: all` in the running pipeline: the Beats CNN trains whole in a worker from
 * teacher keyframes, every accepted weight set is written as a version before it serves, a restart
 * serves the newest one, and the weight store never loads a torn or foreign file. Bad configs are
 * refused naming the YAML path.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { WeightVersionStore } from '../src/adapt/student/versions.js';
import { loadStudent } from '../src/adapt/student/model-files.js';
import { loadTf } from '../src/train/tf.js';
import type { ModelHistory } from '../src/adapt/model-history.js';
import { parsePipeline } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';
import { runPipeline, type StartedRun } from '../src/pipeline.js';
import type { DetectionsMessage, ModelStatusMessage } from '../src/publish/messages.js';
import { needsAssets } from './helpers/assets.js';

const yaml = (stateDir: string, adapt: string, model = 'beats-s') => `
status_interval_s: 0
state_dir: ${JSON.stringify(stateDir)}
mqtt: { embedded: { host: 127.0.0.1, port: 0 } }
cameras:
  - name: yard
    source: { url: "synthetic:scene=yard&seed=31&seconds=600" }
    model: ${model}
    adapt: ${adapt}
`;

// Small updates (a batch of 2, one step), so that one comes within the test's time on a loaded machine.
const whole = '{ enabled: true, layers: all, min_interval_s: 0, max_train_share: 1, whole: { batch: 2, steps_per_update: 1, holdout_frames: 4 }, teacher: { model: beats-s, threshold: 0.4, every_n_frames: 2 } }';

/** Runs until `done` says so of the camera's model status (or `limitMs`), then stops; returns the statuses (and the models of the detection messages, in order). */
async function runUntil(stateDir: string, done: (s: ModelStatusMessage) => boolean, limitMs: number, adapt = whole): Promise<ModelStatusMessage[] & { detectedBy?: string[]; scores?: number[] }> {
  const file = path.join(stateDir, 'pipeline.yaml');
  const loaded = { file, config: parsePipeline(yaml(stateDir, adapt), file) };
  const statuses: ModelStatusMessage[] & { detectedBy?: string[]; scores?: number[] } = [];
  const detectedBy: string[] = [];
  const scores: number[] = [];
  statuses.detectedBy = detectedBy;
  statuses.scores = scores;
  const abort = new AbortController();
  const limit = setTimeout(() => abort.abort(), limitMs);
  let client: mqtt.MqttClient | undefined;
  let subscribed: Promise<unknown> | undefined;
  await runPipeline(loaded, {
    signal: abort.signal,
    onStarted: (run: StartedRun) => {
      subscribed = (async () => {
        client = await mqtt.connectAsync(run.brokerUrl);
        client.on('message', (topic, payload) => {
          if (topic.endsWith('/detections')) {
            const message = JSON.parse(payload.toString('utf8')) as DetectionsMessage;
            detectedBy.push(message.model.name);
            return void scores.push(...message.detections.map((d) => d.score));
          }
          const status = JSON.parse(payload.toString('utf8')) as ModelStatusMessage;
          statuses.push(status);
          if (done(status)) abort.abort();
        });
        await client.subscribeAsync(['beats/yard/model', 'beats/yard/detections'], { qos: 1 });
      })();
    },
  });
  clearTimeout(limit);
  await subscribed;
  await client?.endAsync();
  return statuses;
}

describe('whole-model adaptation in the running pipeline', () => {
  it('trains from keyframes off the frame path, writes each accepted set before serving it, and serves the newest after a restart', { timeout: 400_000 }, async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-whole-'));
    const first = await runUntil(stateDir, (s) => s.accepted + s.rejected >= 1, 240_000);
    const last = first.at(-1)!;
    expect(last.layers).toBe('all');
    expect(last.teacher?.keyframes).toBeGreaterThan(0);
    expect(last.supervised_frames).toBeGreaterThan(0);
    expect(last.accepted + last.rejected).toBeGreaterThanOrEqual(1);
    // The base weights count detections from detect.threshold.
    expect(first[0]!.threshold).toBe(0.35);
    const files = await readdir(path.join(stateDir, 'adapt', 'yard', 'weights'));
    // Exactly one file per accepted set: none for a rejected one, nothing half-written left behind.
    expect(files.filter((f) => /^w\d{6}\.bin$/.test(f)).length).toBe(last.accepted);
    expect(files.every((f) => /^w\d{6}\.bin$/.test(f))).toBe(true);
    if (last.accepted > 0) {
      expect(last.version).toBe(last.accepted);
      expect(last.head).toBe(`weights v${last.version}`);
      // The serving set's threshold is the one its held-out keyframes chose (adapt.whole.threshold: held_out), as written with it.
      const newest = await readFile(path.join(stateDir, 'adapt', 'yard', 'weights', `w${String(last.version).padStart(6, '0')}.bin`));
      const header = JSON.parse(newest.subarray(4, 4 + newest.readUInt32LE(0)).toString('utf8')) as { threshold?: number };
      expect(header.threshold).toBeGreaterThanOrEqual(0.05);
      expect(header.threshold).toBeLessThan(1);
      expect(last.threshold).toBe(Math.max(0.1, header.threshold!));
      const again = await runUntil(stateDir, () => true, 60_000);
      expect(again[0]!.version).toBe(last.version);
    }
    await rm(stateDir, { recursive: true, force: true });
  });

  it('serves the teacher while the student learns, and hands over once the student agrees with it (serve: auto)', { timeout: 400_000 }, async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-serve-'));
    const teacher = (serve: string) => `{ enabled: true, layers: all, min_interval_s: 0, max_train_share: 1, whole: { batch: 2, steps_per_update: 1, holdout_frames: 4 }, teacher: { model: beats-s-real, threshold: 0.3, every_n_frames: 2, serve: ${serve}, takeover_f1: 0.01, handback_f1: 0 } }`;
    const fixed = await runUntil(stateDir, (s) => (s.teacher?.keyframes ?? 0) >= 3, 120_000, teacher('teacher'));
    expect(fixed.detectedBy!.length).toBeGreaterThan(0);
    expect(new Set(fixed.detectedBy)).toEqual(new Set(['beats-s-real']));
    expect(fixed.at(-1)!.serving).toMatchObject({ by: 'teacher', reason: 'configured', switches: 0 });
    await rm(stateDir, { recursive: true, force: true });

    const autoDir = await mkdtemp(path.join(os.tmpdir(), 'beats-serve-'));
    const auto = await runUntil(autoDir, (s) => (s.serving?.switches ?? 0) >= 1 && s.serving?.by === 'student', 300_000, teacher('auto'));
    const last = auto.at(-1)!;
    expect(auto[0]!.serving?.by).toBe('teacher');
    expect(last.serving).toMatchObject({ by: 'student', switches: 1 });
    expect(last.serving!.reason).toMatch(/held-out F1 .* reached 1\.0/);
    // The detections say which model made them: the teacher's first, the student's after the switch.
    expect(auto.detectedBy![0]).toBe('beats-s-real');
    await rm(autoDir, { recursive: true, force: true });
  });

  it('serves a weight set at the threshold written with it (after a restart), and at detect.threshold with whole.threshold: camera', { timeout: 200_000 }, async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-threshold-'));
    const { tf } = await loadTf();
    const student = await loadStudent(tf, 'beats-s');
    const weights = [...student.weights].map(([name, t]) => ({ name, shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) }));
    student.weights.forEach((t) => t.dispose());
    const store = await WeightVersionStore.open({ stateDir, camera: 'yard', base: { name: student.card.name, version: student.card.version }, keep: 10 });
    await store.write({ parent: 0, kind: 'update', createdAt: Date.now(), threshold: 0.6 }, weights);
    // Frames enough for detections: until the teacher has labelled a few keyframes.
    const held = await runUntil(stateDir, (s) => (s.teacher?.keyframes ?? 0) >= 4, 120_000);
    expect(held[0]!.version).toBe(1);
    expect(held.at(-1)!.threshold).toBe(0.6);
    expect(held.scores!.length).toBeGreaterThan(0);
    expect(Math.min(...held.scores!)).toBeGreaterThanOrEqual(0.6);
    // The live page's model panel shows it beside the version.
    const file = path.join(stateDir, 'pipeline.yaml');
    const served = parsePipeline(yaml(stateDir, whole).replace('mqtt:', 'http: { port: 0 }\nmqtt:'), file);
    const abort = new AbortController();
    let history: ModelHistory | undefined;
    await runPipeline({ file, config: served }, {
      signal: abort.signal,
      onStarted: (run) => {
        void (async () => {
          history = (await (await fetch(`${run.httpUrl!}/api/cameras/yard/model`)).json()) as ModelHistory;
          abort.abort();
        })();
      },
    });
    expect(history!.versions.find((v) => v.version === 'v1')).toMatchObject({ current: true, note: 'whole model, threshold 0.6' });
    const camera = await runUntil(stateDir, (s) => (s.teacher?.keyframes ?? 0) >= 4, 120_000, whole.replace('holdout_frames: 4 }', 'holdout_frames: 4, threshold: camera }'));
    expect(camera.at(-1)!.threshold).toBe(0.35);
    // The same weights at 0.35 publish boxes the set's own threshold kept back.
    expect(Math.min(...camera.scores!)).toBeLessThan(0.6);
    await rm(stateDir, { recursive: true, force: true });
  });

  it('refuses a camera without a teacher, and a model that is not the Beats CNN, naming the YAML path', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-whole-'));
    const file = path.join(stateDir, 'pipeline.yaml');
    const noTeacher = await runPipeline({ file, config: parsePipeline(yaml(stateDir, '{ enabled: true, layers: all }'), file) }).catch((e: unknown) => e);
    expect(noTeacher).toBeInstanceOf(ConfigError);
    expect(String((noTeacher as Error).message)).toMatch(/cameras\[0\]\.adapt\.teacher/);
    if (!needsAssets) {
      const yolox = await runPipeline({ file, config: parsePipeline(yaml(stateDir, whole, 'yolox-nano'), file) }).catch((e: unknown) => e);
      expect(yolox).toBeInstanceOf(ConfigError);
      expect(String((yolox as Error).message)).toMatch(/cameras\[0\]\.adapt\.layers.*only the Beats CNN/s);
    }
    expect(() => parsePipeline(yaml(stateDir, '{ enabled: true, layers: body }'), file)).toThrow(/cameras\[0\]\.adapt\.layers/);
    const headServe = await runPipeline({ file, config: parsePipeline(yaml(stateDir, '{ enabled: true, teacher: { model: beats-s, every_n_frames: 5, serve: auto } }'), file) }).catch((e: unknown) => e);
    expect(headServe).toBeInstanceOf(ConfigError);
    expect(String((headServe as Error).message)).toMatch(/cameras\[0\]\.adapt\.teacher\.serve.*layers: all/s);
    expect(() => parsePipeline(yaml(stateDir, '{ enabled: true, layers: all, teacher: { model: beats-s, every_n_frames: 5, takeover_f1: 0.5, handback_f1: 0.7 } }'), file)).toThrow(/handback_f1.*at most takeover_f1/s);
    await rm(stateDir, { recursive: true, force: true });
  });
});

describe('weight versions on disk', () => {
  const base = { name: 'beats-s', version: '1' };
  const weights = (v: number) => [{ name: 'a', shape: [2], data: Float32Array.from([v, v + 1]) }];

  it('reads back what it wrote, skips a torn newest file, and never loads another model\'s sets', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-wv-'));
    const store = await WeightVersionStore.open({ stateDir, camera: 'c', base, keep: 10 });
    expect(await store.latest()).toBeUndefined();
    await store.write({ parent: 0, kind: 'update', createdAt: 1 }, weights(1));
    const v2 = await store.write({ parent: 1, kind: 'update', createdAt: 2 }, weights(2));
    expect(Array.from((await store.latest())!.weights[0]!.data)).toEqual([2, 3]);
    // Flip a byte of the newest set's data: its checksum fails, the previous one is the latest.
    const file = path.join(store.dir, `w${String(v2).padStart(6, '0')}.bin`);
    const bytes = await readFile(file);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(file, bytes);
    await expect(store.read(v2)).rejects.toThrow(/checksum/);
    expect((await store.latest())!.version).toBe(1);
    const other = await WeightVersionStore.open({ stateDir, camera: 'c', base: { name: 'beats-s', version: '2' }, keep: 10 });
    await expect(other.read(1)).rejects.toThrow(/not of the camera's model/);
    expect(await other.latest()).toBeUndefined();
    // Numbers are never reused, even over a skipped file.
    expect(await store.write({ parent: 1, kind: 'update', createdAt: 3 }, weights(3))).toBe(3);
    await rm(stateDir, { recursive: true, force: true });
  });

  it('keeps the threshold a set chose, and drops one that is not a score (the header is outside the checksum)', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-wv-'));
    const store = await WeightVersionStore.open({ stateDir, camera: 'c', base, keep: 10 });
    const v1 = await store.write({ parent: 0, kind: 'update', createdAt: 1, threshold: 0.45 }, weights(1));
    expect((await store.read(v1)).threshold).toBe(0.45);
    const v2 = await store.write({ parent: 1, kind: 'update', createdAt: 2, threshold: 7 }, weights(2));
    expect((await store.read(v2)).threshold).toBeUndefined();
    expect((await store.read(await store.write({ parent: 2, kind: 'update', createdAt: 3 }, weights(3)))).threshold).toBeUndefined();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('keeps the newest `keep` versions', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-wv-'));
    const store = await WeightVersionStore.open({ stateDir, camera: 'c', base, keep: 2 });
    for (let i = 1; i <= 5; i++) await store.write({ parent: i - 1, kind: 'update', createdAt: i }, weights(i));
    expect((await store.list()).map((v) => v.version)).toEqual([4, 5]);
    await rm(stateDir, { recursive: true, force: true });
  });
});
