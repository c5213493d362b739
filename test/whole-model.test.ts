/**
 * Whole-model adaptation of the Beats CNN (src/adapt/student/, BEATS.md "The whole model"): the
 * frame reservoir's bounds, the guard (a rejected update leaves the serving weights bit for bit as
 * they were; garbage never trains), the weight swap into a real onnxruntime session between two
 * frames, and the looped site's keyframes.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StudentEngine, type WeightsEvent } from '../src/adapt/student/engine.js';
import { WeightVersionStore } from '../src/adapt/student/versions.js';
import { WholeModelAdapter } from '../src/adapt/whole-adapter.js';
import type { AcceptedFeedback } from '../src/adapt/feedback.js';
import { adaptSchema, cameraSchema } from '../src/config/schema.js';
import { letterbox } from '../src/source/geometry.js';
import { take } from 'rxjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { FrameReservoir, type SupervisedImage } from '../src/adapt/student/reservoir.js';
import { StudentTrainer, type StudentTrainerOptions } from '../src/adapt/student/trainer.js';
import { loadStudent } from '../src/adapt/student/model-files.js';
import { isKeyframe, keyframeFrames, siteFrameOf } from '../src/adapt/specialize.js';
import { ModelError } from '../src/errors.js';
import { Detector, type DetectOptions } from '../src/model/detector.js';
import { resolveModel } from '../src/model/registry.js';
import { SyntheticScene } from '../src/source/synthetic/index.js';
import type { DomainShift } from '../src/source/synthetic/types.js';
import { sampleFromSynthetic } from '../src/train/beats-train.js';
import type { WeightArrays } from '../src/train/beats-export.js';
import { seededRandom } from '../src/train/random.js';
import { loadTf, type Tf } from '../src/train/tf.js';
import { consumeFrames } from './helpers/frames.js';
import { assets, needsAssets } from './helpers/assets.js';
import { cpuRuntime } from './helpers/model-onnx.js';

let tf: Tf;
beforeAll(async () => {
  tf = (await loadTf()).tf;
});

function image(bytes: number, time = 0): SupervisedImage {
  return { pixels: new Uint8Array(bytes), boxes: [], time };
}

describe('frame reservoir', () => {
  it('holds at most maxFrames frames, however many are offered, and keeps early ones', () => {
    const r = new FrameReservoir({ maxFrames: 50, maxBytes: 1e9 }, seededRandom(3));
    for (let i = 0; i < 2000; i++) r.offer(image(10, i));
    expect(r.size).toBe(50);
    expect(r.seen).toBe(2000);
    const times = r.all().map((f) => f.time);
    // Uniform over the stream: about a quarter from each quarter, so the first scene stays in the replay.
    expect(times.filter((t) => t < 500).length).toBeGreaterThan(3);
    expect(times.filter((t) => t >= 1500).length).toBeGreaterThan(3);
  });

  it('holds at most maxBytes of pixels', () => {
    const r = new FrameReservoir({ maxFrames: 1000, maxBytes: 10_000 }, seededRandom(4));
    for (let i = 0; i < 300; i++) r.offer(image(1_000, i));
    expect(r.size).toBe(10);
    expect(r.bytes).toBeLessThanOrEqual(10_000);
  });

  it('refuses bounds below one', () => {
    expect(() => new FrameReservoir({ maxFrames: 0, maxBytes: 10 }, seededRandom(1))).toThrow(/at least 1/);
  });
});

describe('keyframes of a looped site', () => {
  it('take one frame in N, never more in any prefix of the stream, and reach every site frame even when the loop is a multiple of N', () => {
    const site = 170;
    const frames = 20 * site;
    let count = 0;
    for (let i = 0; i < frames; i++) {
      if (isKeyframe(i, 10)) count++;
      expect(count / (i + 1)).toBeLessThanOrEqual(0.1);
    }
    expect(count / frames).toBeCloseTo(0.1, 6);
    expect(keyframeFrames(site, 10, frames).size).toBe(site);
    for (let i = 0; i < frames; i++) expect(siteFrameOf(i, site)).toBeLessThan(site);
  });
});

function weightsEqual(a: WeightArrays, b: WeightArrays): boolean {
  return [...a].every(([name, w]) => {
    const o = b.get(name)!;
    return o.data.length === w.data.length && o.data.every((v, i) => Object.is(v, w.data[i]));
  });
}

describe('whole-model trainer', () => {
  async function trainer(lr: number, options: Partial<StudentTrainerOptions> = {}, domain: DomainShift[] = []): Promise<{ trainer: StudentTrainer; frames: SupervisedImage[] }> {
    const student = await loadStudent(tf, 'beats-s');
    const scene = new SyntheticScene({ scene: 'street', seed: 4242, width: 320, height: 240, fps: 10, domain });
    scene.skip(30);
    const frames: SupervisedImage[] = [];
    for (let i = 0; i < 24; i++) {
      scene.skip(3);
      frames.push({ ...sampleFromSynthetic(student.spec, scene.next()), time: i });
    }
    const t = new StudentTrainer(tf, student.spec, student.weights, { lr, stepsPerUpdate: 2, batch: 4, minTrain: 4, minHoldout: 2, holdoutEvery: 4, seed: 5, ...options });
    frames.forEach((f, i) => t.add(f, i));
    return { trainer: t, frames };
  }

  it('waits for held-out frames before it updates', async () => {
    const student = await loadStudent(tf, 'beats-s');
    const t = new StudentTrainer(tf, student.spec, student.weights, { minHoldout: 4 });
    expect(t.update()).toEqual({ kind: 'waiting', reason: 'holdout' });
    t.dispose();
  });

  it('every shipped Beats CNN loads as a student at its own input size (beats-m is the one --specialize recommends)', async () => {
    for (const [name, size] of [['beats-s', '160x120'], ['beats-s-real', '160x120'], ['beats-m', '256x192']] as const) {
      const student = await loadStudent(tf, name);
      expect(`${student.spec.inputWidth}x${student.spec.inputHeight}`, name).toBe(size);
      expect(student.card.input.width, name).toBe(student.spec.inputWidth);
      const t = new StudentTrainer(tf, student.spec, student.weights);
      expect(() => t.add(image(100), 1), name).toThrow(new RegExp(size));
      t.dispose();
    }
  });

  it('chooses its operating threshold on the held-out frames: F1 there at least that at the camera threshold', async () => {
    const { trainer: t } = await trainer(0.0005);
    const point = t.operatingPoint()!;
    expect(point.frames).toBe(t.holdoutSize);
    expect(point.threshold).toBeGreaterThanOrEqual(0.05);
    expect(point.threshold).toBeLessThan(1);
    expect(point.f1).toBeGreaterThanOrEqual(t.score() - 1e-9);
    expect(t.score(undefined, point.threshold)).toBeCloseTo(point.f1, 6);
    t.dispose();
  });

  it('with guard "best", compares each weight set at its own best threshold on the held-out frames, and serves at the one it was accepted at', async () => {
    // In fog, where the base weights leave something to win.
    const { trainer: t } = await trainer(0.001, { guard: 'best', threshold: 0.3, replayTolerance: 1, stepsPerUpdate: 16 }, ['fog']);
    let accepted = 0;
    for (let i = 0; i < 4; i++) {
      const point = t.operatingPoint()!;
      const outcome = t.update();
      if (outcome.kind === 'waiting') throw new Error('the trainer should have frames enough');
      expect(outcome.figures.holdout.f1Before).toBeCloseTo(point.f1, 9);
      if (outcome.kind !== 'accepted') continue;
      accepted++;
      // The accepted set's operating point is the threshold and F1 the guard took it at.
      expect(t.operatingPoint()).toMatchObject({ threshold: outcome.figures.holdout.threshold, f1: outcome.figures.holdout.f1After });
    }
    expect(accepted).toBeGreaterThan(0); // seeded: the same updates every run
    t.dispose();
  }, 120_000);

  it('refuses a frame of the wrong size, naming the input size', async () => {
    const student = await loadStudent(tf, 'beats-s');
    const t = new StudentTrainer(tf, student.spec, student.weights);
    expect(() => t.add(image(100), 1)).toThrow(/160x120/);
    t.dispose();
  });

  it('rejects an update that lowers held-out F1 and leaves the serving weights exactly as they were', async () => {
    const { trainer: t } = await trainer(5);
    const before = t.weightArrays();
    const f1 = t.score();
    const outcome = t.update();
    expect(outcome.kind).toBe('rejected');
    if (outcome.kind === 'rejected') expect(['holdout_f1', 'replay_f1', 'non_finite']).toContain(outcome.reason);
    expect(weightsEqual(t.weightArrays(), before)).toBe(true);
    expect(t.score()).toBe(f1);
    t.dispose();
  }, 120_000);

  it('keeps training the shadow after a rejection, and takes it back to the serving weights after resetAfterRejections in a row when that is set', async () => {
    // A guard that can never be satisfied (replay F1 would have to rise by 2): every update is rejected, none may serve.
    const { trainer: t } = await trainer(0.0005, { replayTolerance: -2, resetAfterRejections: 3, driftTolerance: 2 });
    const serving = t.weightArrays();
    const outcomes = Array.from({ length: 6 }, () => t.update());
    expect(outcomes.map((o) => o.kind)).toEqual(Array(6).fill('rejected'));
    expect(outcomes.map((o) => ('figures' in o ? o.figures.reset : undefined))).toEqual([false, false, true, false, false, true]);
    expect(t.counts.resets).toBe(2);
    // Reset halves the rate; rejections short of a reset leave it.
    expect(outcomes.map((o) => ('figures' in o ? o.figures.lr : 0))).toEqual([0.0005, 0.0005, 0.0005, 0.00025, 0.00025, 0.00025]);
    expect(weightsEqual(t.weightArrays(), serving)).toBe(true);
    t.dispose();
  }, 120_000);

  it('takes the shadow back at once when its held-out F1 drifts more than driftTolerance under the serving weights\'', async () => {
    // A tolerance below zero: every rejected shadow counts as drifted.
    const { trainer: t } = await trainer(0.0005, { replayTolerance: -2, driftTolerance: -2 });
    const outcomes = [t.update(), t.update()];
    expect(outcomes.map((o) => ('figures' in o ? o.figures.reset : undefined))).toEqual([true, true]);
    expect(t.counts.resets).toBe(2);
    t.dispose();
  }, 120_000);

  it('accepts only updates whose held-out F1 did not fall', async () => {
    const { trainer: t } = await trainer(0.0005);
    for (let i = 0; i < 2; i++) {
      const outcome = t.update();
      expect(outcome.kind === 'accepted' || outcome.kind === 'rejected').toBe(true);
      if (outcome.kind === 'accepted') expect(outcome.figures.holdout.f1After).toBeGreaterThanOrEqual(outcome.figures.holdout.f1Before);
      if (outcome.kind !== 'waiting') expect(outcome.figures.holdout.threshold).toBe(0.35); // guard 'threshold': the camera's
    }
    t.dispose();
  }, 120_000);
});

describe.skipIf(needsAssets)('weights swapped into a running detector', () => {
  const options: DetectOptions = { threshold: 0.2, nmsIou: 0.45, maxDetections: 100 };

  it('serves the new weights from the next frame on, and keeps the old ones when the new do not fit', async () => {
    const detector = await Detector.load('beats-s', { runtime: cpuRuntime });
    const reference = await Detector.load('beats-s-real', { runtime: cpuRuntime });
    try {
      const frames = await consumeFrames({ camera: 'test', url: assets.highway, output: detector.frameOutput() }, (f) => f, (f$) => f$.pipe(take(3)));
      const before = await detector.detect(frames[0]!, options);
      await expect(detector.swapWeights(await readFile(assets.yoloxNano), cpuRuntime)).rejects.toBeInstanceOf(ModelError);
      expect(await detector.detect(frames[0]!, options)).toEqual(before);
      const real = await resolveModel('beats-s-real');
      // A detect in flight while the swap happens finishes on the session it started with.
      const inFlight = detector.detect(frames[1]!, options);
      await detector.swapWeights(await readFile(real.onnxPath), cpuRuntime);
      await inFlight;
      for (const frame of frames) expect(await detector.detect(frame, options)).toEqual(await reference.detect(frame, options));
    } finally {
      await detector.close();
      await reference.close();
    }
  });
});

describe('whole-model faults', () => {
  const until = async (ok: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return ok();
  };

  async function frames(n: number): Promise<SupervisedImage[]> {
    const student = await loadStudent(tf, 'beats-s');
    student.weights.forEach((t) => t.dispose());
    const scene = new SyntheticScene({ scene: 'yard', seed: 77, width: 320, height: 240, fps: 10, domain: [] });
    return Array.from({ length: n }, (_, i) => {
      scene.skip(2);
      return { ...sampleFromSynthetic(student.spec, scene.next()), time: i };
    });
  }

  /** beats-s's whole-model engine on a fresh state folder, small batches, no rate limit. */
  async function openEngine(prefix: string, options: { input?: { width: number; height: number }; faultAtFrame?: number } = {}) {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), prefix));
    const base = { name: 'beats-s', version: 'test' };
    const store = await WeightVersionStore.open({ stateDir, camera: 'c', base, keep: 5 });
    const config = adaptSchema.parse({ enabled: true, layers: 'all', min_interval_s: 0, max_train_share: 1, whole: { batch: 2, steps_per_update: 1, holdout_frames: 4 } });
    const student = await loadStudent(tf, 'beats-s');
    student.weights.forEach((t) => t.dispose());
    const spec = options.input ? { ...student.spec, inputWidth: options.input.width, inputHeight: options.input.height } : student.spec;
    const engine = await StudentEngine.start({ camera: 'c', config, checkpoint: student.checkpoint, spec, base, store, threshold: 0.35, ...(options.faultAtFrame ? { faultAtFrame: options.faultAtFrame } : {}) });
    return { stateDir, store, engine, spec };
  }

  it('an accepted set comes with the threshold of its best F1 on the held-out frames, written with its version (whole.threshold: held_out)', { timeout: 180_000 }, async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-whole-threshold-'));
    const base = { name: 'beats-s', version: 'test' };
    const store = await WeightVersionStore.open({ stateDir, camera: 'c', base, keep: 5 });
    const config = adaptSchema.parse({ enabled: true, layers: 'all', min_interval_s: 0, max_train_share: 1, whole: { batch: 2, steps_per_update: 1, holdout_frames: 4 } });
    const student = await loadStudent(tf, 'beats-s');
    student.weights.forEach((t) => t.dispose());
    const engine = await StudentEngine.start({ camera: 'c', config, checkpoint: student.checkpoint, spec: student.spec, base, store, threshold: 0.3 });
    const accepted: Array<Extract<WeightsEvent, { kind: 'accepted' }>> = [];
    engine.updates$.subscribe((e) => e.kind === 'accepted' && accepted.push(e));
    try {
      // Plain grey frames with nothing on them: nothing to find and nothing found, before an update
      // and after it, so the guard accepts every update.
      const plane = student.spec.inputWidth * student.spec.inputHeight * 3;
      for (let i = 0; i < 16; i++) engine.submit({ pixels: new Uint8Array(plane).fill(128), boxes: [], time: i }, i);
      expect(await until(() => accepted.length > 0, 60_000)).toBe(true);
      const [first] = accepted;
      expect(first!.threshold).toBeGreaterThanOrEqual(0.05);
      expect(first!.threshold).toBeLessThan(1);
      expect(first!.figures.holdout.threshold).toBe(0.3); // the guard judged it at the camera's threshold
      expect((await store.read(first!.version)).threshold).toBe(first!.threshold);
    } finally {
      await engine.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('trains the network the card serves, at an input other than its checkpoint\'s (beats export --input), and reports its own memory', { timeout: 120_000 }, async () => {
    const { stateDir, engine, spec } = await openEngine('beats-whole-size-', { input: { width: 192, height: 144 } });
    try {
      const scene = new SyntheticScene({ scene: 'yard', seed: 78, width: 384, height: 288, fps: 10, domain: [] });
      for (let i = 0; i < 4; i++) engine.submit({ ...sampleFromSynthetic(spec, scene.next()), time: i }, i);
      expect(await until(() => (engine.lastStats?.trained ?? 0) + (engine.lastStats?.heldOut ?? 0) === 4, 60_000)).toBe(true);
      expect(engine.counts.restarts).toBe(0);
      const memory = await engine.workerMemory();
      expect(memory?.heapUsed).toBeGreaterThan(1);
      expect(memory?.tfTensors).toBeGreaterThan(10);
    } finally {
      await engine.close();
      await rm(stateDir, { recursive: true, force: true });
    }
    expect(await engine.workerMemory()).toBeUndefined();
  });

  it('a training worker that dies is started again from the serving weights, and nothing it held serves', { timeout: 120_000 }, async () => {
    const { stateDir, engine, store } = await openEngine('beats-whole-fault-', { faultAtFrame: 3 });
    try {
      for (const [i, f] of (await frames(4)).entries()) {
        engine.submit(f, i);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await until(() => engine.counts.restarts === 1, 60_000)).toBe(true);
      expect(engine.version).toBe(0);
      expect(await store.list()).toEqual([]);
      // The new worker takes frames again.
      const before = engine.lastStats?.trained ?? 0;
      for (const [i, f] of (await frames(3)).entries()) engine.submit(f, 100 + i);
      expect(await until(() => (engine.lastStats?.trained ?? 0) + (engine.lastStats?.heldOut ?? 0) > before, 60_000)).toBe(true);
    } finally {
      await engine.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('a teacher that fails, and operator verdicts, change nothing that serves; a verdict on a kept frame trains, one on a forgotten frame is counted as ignored', { timeout: 120_000 }, async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-whole-fault-'));
    const camera = cameraSchema.parse({ name: 'c', source: { url: 'synthetic:scene=yard&seed=1' }, model: 'beats-s', adapt: { enabled: true, layers: 'all', teacher: { model: 'x', every_n_frames: 1 } } });
    const detector = await Detector.load('beats-s', { runtime: cpuRuntime, backend: 'in-process' });
    let asked = 0;
    const failing = {
      name: 'broken-teacher',
      label: () => {
        asked++;
        return Promise.reject(new Error('teacher down'));
      },
    };
    const adapter = await WholeModelAdapter.start({ camera, detector, stateDir, runtime: cpuRuntime, teacher: failing });
    try {
      const scene = new SyntheticScene({ scene: 'yard', seed: 5, width: 160, height: 120, fps: 10, domain: [] });
      for (let i = 0; i < 5; i++) {
        const rendered = scene.next();
        const frame = { camera: 'c', index: i, streamTime: i / 10, ts: Date.now(), width: 160, height: 120, pixels: Buffer.from(rendered.rgb), pixelFormat: 'rgb24' as const, geometry: letterbox(160, 120, 160, 120, 'center') };
        adapter.observe(frame, [{ label: 'person', classId: 0, score: 0.9, box: [10, 10, 30, 60] }], []);
        await adapter.settled();
      }
      const verdict = (index: number): AcceptedFeedback => ({
        camera: 'c',
        verdict: 'false_positive',
        frame: { index, ts: 0, width: 160, height: 120 },
        detection: { label: 'person', classId: 0, score: 0.9, box: [10, 10, 30, 60] },
        trackFrames: [],
        origin: 'mqtt',
        receivedAt: Date.now(),
      }) as unknown as AcceptedFeedback;
      adapter.onVerdict(verdict(3));
      adapter.onVerdict(verdict(999));
      adapter.onVerdict({ camera: 'c' } as AcceptedFeedback);
      const status = adapter.statusMessage();
      expect(asked).toBeGreaterThan(0);
      expect(status.teacher?.keyframes).toBe(0);
      expect(status.supervised_frames).toBe(1);
      expect(status.version).toBe(0);
      expect(status.verdicts_used).toBe(1);
      expect(status.verdicts_ignored).toBe(2);
      expect(status.teacher?.failed).toBe(asked);
    } finally {
      await adapter.close();
      await detector.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
