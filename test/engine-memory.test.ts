// The training worker's own memory, as `beats soak` samples it: reported by the worker after a full
// collection of its heap, and bounded over many head updates (no TensorFlow.js tensor left behind).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from '../src/adapt/engine-core.js';
import { BeatsEngine, VersionStore, type EngineEvent, type Head, type SupervisedCell, type SupervisedFrame } from '../src/adapt/engine.js';
import { adaptSchema } from '../src/config/schema.js';

const D = 8;
const C = 2;
const base = (): Head => [{ weight: Float32Array.from({ length: C * D }, (_, i) => (i % D === Math.floor(i / D) ? 2 : 0)), bias: new Float32Array(C).fill(-3), shape: [C, D] }];

/** A frame of 32 patches over the picture; class 0 objects in the left half look unlike the head's class 0 (it keeps updating). */
function frames(seed: number): (time: number) => SupervisedFrame {
  const random = rng(seed);
  return (time) => {
    const cells: SupervisedCell[] = [];
    for (let i = 0; i < 32; i++) {
      const x = random();
      const y = random();
      const cls = random() < 0.4 ? 0 : random() < 0.5 ? 1 : -1;
      const f = Float32Array.from({ length: D }, () => random() - 0.5);
      if (cls === 0) f[x < 0.5 ? 4 : 0]! += 3;
      if (cls === 1) f[1]! += 3;
      for (let c = 0; c < C; c++) cells.push({ level: 0, x, y, classId: c, target: cls === c ? 1 : 0, features: f });
    }
    return { time, cells };
  };
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'beats-engine-memory-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("the training worker's memory", () => {
  it('is reported by the worker after collecting its heap, and stays flat over many updates', { timeout: 120_000 }, async () => {
    const config = adaptSchema.parse({ enabled: true, min_interval_s: 0, max_train_share: 1, n_min: 4, theta: 0.05, keep_versions: 5, holdout: { share: 0.2, max_cells: 128, min_cells: 2 }, replay: 200 });
    const store = await VersionStore.open({ stateDir: tmp, camera: 'cam', base: base(), keep: config.keep_versions });
    const engine = await BeatsEngine.start({ camera: 'cam', config, store, maxPendingFrames: 64 });
    const updates: EngineEvent[] = [];
    engine.updates$.subscribe((e) => updates.push(e));
    const next = frames(7);
    const feed = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        engine.submit(next(i / 10));
        if (i % 16 === 15) await engine.idle();
      }
      await engine.idle();
    };

    // Warm-up: the holdout and the replay sample fill, the JIT settles.
    await feed(0, 400);
    const warm = await engine.workerMemory();
    const attemptsAtWarm = updates.length;
    await feed(400, 2400);
    const late = await engine.workerMemory();
    const attempts = updates.length - attemptsAtWarm;

    expect(warm, 'the worker answers').toBeDefined();
    expect(late).toBeDefined();
    // The worker's heap, not the main thread's: TensorFlow.js alone is tens of MB there.
    expect(warm!.heapUsed).toBeGreaterThan(5);
    // Hundreds of optimizer steps after the warm-up, each of them in TensorFlow.js.
    expect(attempts).toBeGreaterThan(200);
    expect(late!.tfTensors, 'tensors left behind by the updates').toBe(0);
    // The head trains on the pure-JS backend: no WebAssembly heap (about 170 MB once grown) per camera.
    expect(late!.wasmHeap).toBe(0);
    const shown = `heap ${warm!.heapUsed.toFixed(2)} -> ${late!.heapUsed.toFixed(2)} MB over ${attempts} update attempts`;
    // Bounded: the holdout, replay sample and buckets are full after the warm-up. A head or a
    // figure kept per update (a few hundred bytes each) would add about 1 MB here.
    expect(late!.heapUsed - warm!.heapUsed, shown).toBeLessThan(0.5);
    await engine.close();
    expect(await engine.workerMemory(), 'no worker after close').toBeUndefined();
  });
});
