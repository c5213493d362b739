/**
 * Inference in worker threads (src/model/backends/): real onnxruntime sessions in real worker
 * threads give the detections the in-process session gives, one frame at a time and in batches
 * across callers; a crashed thread is started again and the frames it held fail, counted; each
 * bound of the batch queue (batch size, timeout, attached callers, queued frames) holds.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { take } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLogSink, type LogRecord } from '../src/log.js';
import { InferenceWorkerError } from '../src/model/backends/backend.js';
import { BatchQueue } from '../src/model/backends/batch-queue.js';
import { WorkerBackend } from '../src/model/backends/worker.js';
import type { Detection } from '../src/model/detection.js';
import { Detector, type DetectOptions } from '../src/model/detector.js';
import { withSymbolicBatch } from '../src/model/onnx-graph.js';
import { resolveModel } from '../src/model/registry.js';
import type { Frame } from '../src/source/frame.js';
import { assets, needsAssets } from './helpers/assets.js';
import { consumeFrames } from './helpers/frames.js';
import { constantOutputModel, cpuRuntime, writeModel, yolov8Output } from './helpers/model-onnx.js';

const options: DetectOptions = { threshold: 0.3, nmsIou: 0.45, maxDetections: 100 };

async function framesFor(detector: Detector, n: number): Promise<Frame[]> {
  return consumeFrames({ camera: 'test', url: assets.highway, output: detector.frameOutput() }, (f) => f, (f$) => f$.pipe(take(n)));
}

/** Same boxes, labels and scores, up to float noise of a differently shaped graph. */
function expectSameDetections(got: Detection[][], want: Detection[][]): void {
  expect(got.length).toBe(want.length);
  got.forEach((frame, i) => {
    expect(frame.map((d) => d.label), `frame ${i}`).toEqual(want[i]!.map((d) => d.label));
    frame.forEach((d, j) => {
      const w = want[i]![j]!;
      expect(d.score).toBeCloseTo(w.score, 4);
      d.box.forEach((v, k) => expect(v).toBeCloseTo(w.box[k]!, 2));
    });
  });
}

describe.skipIf(needsAssets)('detectors in worker threads give the in-process detections', () => {
  for (const model of ['yolox-nano', 'beats-s']) {
    describe(model, () => {
      let inProcess: Detector;
      let worker: Detector;
      let frames: Frame[];
      let want: Detection[][];

      beforeAll(async () => {
        inProcess = await Detector.load(model, { runtime: cpuRuntime });
        worker = await Detector.load(model, { runtime: cpuRuntime, backend: 'worker', batch: { max: 4, timeoutMs: 5 } });
        frames = await framesFor(inProcess, 10);
        want = [];
        for (const f of frames) want.push(await inProcess.detect(f, options));
      }, 120_000);

      afterAll(async () => {
        await inProcess?.close();
        await worker?.close();
      });

      it('loads in a worker that takes batches', () => {
        expect(inProcess.backendKind).toBe('in-process');
        expect(worker.backendKind).toBe('worker');
        expect(worker.maxBatch).toBe(4);
        // The video has something to find, or the comparison says little.
        expect(want.flat().length).toBeGreaterThan(0);
      });

      it('one frame at a time', async () => {
        const got: Detection[][] = [];
        for (const f of frames) got.push(await worker.detect(f, options));
        expectSameDetections(got, want);
        expect(worker.backendStats()!.batchSizes[1]).toBeGreaterThanOrEqual(frames.length);
      });

      it('frames sent together go in batches of at most 4, each result to its own caller', async () => {
        const before = worker.backendStats()!;
        const got = await Promise.all(frames.map((f) => worker.detect(f, options)));
        expectSameDetections(got, want);
        const after = worker.backendStats()!;
        expect(after.frames - before.frames).toBe(frames.length);
        // 10 frames at once: 4 + 4 + 2.
        expect((after.batchSizes[4] ?? 0) - (before.batchSizes[4] ?? 0)).toBe(2);
        expect(after.batchSizes.length).toBeLessThanOrEqual(5);
      });
    });
  }
});

describe.skipIf(needsAssets)('a crashed inference worker', () => {
  let backend: WorkerBackend;
  let detector: Detector;
  let inputs: Float32Array[];

  beforeAll(async () => {
    detector = await Detector.load('yolox-nano', { runtime: cpuRuntime });
    const model = await resolveModel('yolox-nano');
    const bytes = withSymbolicBatch(await readFile(model.onnxPath), model.card.input.name);
    backend = await WorkerBackend.start({ model: bytes, modelName: 'yolox-nano', settings: cpuRuntime, card: model.card, inputWidth: 416, inputHeight: 416, maxBatch: 2, batchTimeoutMs: 0 });
    inputs = (await framesFor(detector, 4)).map((f) => detector.toTensor(f).data as Float32Array);
  }, 120_000);

  afterAll(async () => {
    await backend?.close();
    await detector?.close();
  });

  it('is started again; the frames it held fail as crashed and are counted, the waiting ones run in the new thread', async () => {
    const reference = await backend.infer({ input: inputs[3]!.slice(), options });
    const first = backend.thread!;
    const sent = inputs.map((input) => backend.infer({ input: input.slice(), options }).then((r) => r.candidates, (err: unknown) => err));
    // Once the first batch of two is in the thread (posted in this turn's microtasks), the thread dies.
    await new Promise((resolve) => setImmediate(resolve));
    await first.terminate();
    const outcomes = await Promise.all(sent);
    for (const lost of outcomes.slice(0, 2)) {
      expect(lost).toBeInstanceOf(InferenceWorkerError);
      expect((lost as InferenceWorkerError).reason).toBe('crashed');
      expect((lost as Error).message).toMatch(/model yolox-nano: inference worker: the thread exited/);
    }
    // The frames that waited went to the new thread, and it computes what the old one did.
    expect(outcomes[3]).toEqual(reference.candidates);
    const stats = backend.stats();
    expect(stats.restarts).toBe(1);
    expect(stats.failedFrames).toBe(2);
    expect(backend.thread).toBeDefined();
    expect(backend.thread).not.toBe(first);
  });

  it('a camera attached but silent does not hold the others: its batch leaves after the timeout', async () => {
    const model = await resolveModel('yolox-nano');
    const bytes = withSymbolicBatch(await readFile(model.onnxPath), model.card.input.name);
    const waiting = await WorkerBackend.start({ model: bytes, modelName: 'yolox-nano', settings: cpuRuntime, card: model.card, inputWidth: 416, inputHeight: 416, maxBatch: 4, batchTimeoutMs: 20 });
    try {
      const detach = [waiting.attach(), waiting.attach(), waiting.attach()];
      // Two of three cameras send; the third is stalled.
      const got = await Promise.all(inputs.slice(0, 2).map((input) => waiting.infer({ input: input.slice(), options })));
      expect(got).toHaveLength(2);
      expect(waiting.stats().batchSizes[2]).toBe(1);
      // With the others detached, one camera's frame is a whole batch.
      detach.slice(1).forEach((d) => d());
      await waiting.infer({ input: inputs[2]!.slice(), options });
      expect(waiting.stats().batchSizes[1]).toBe(1);
      detach[0]!();
    } finally {
      await waiting.close();
    }
  });

  it('refuses frames beyond maxQueued with a typed error, counted', async () => {
    const model = await resolveModel('yolox-nano');
    const small = await WorkerBackend.start({ model: await readFile(model.onnxPath), modelName: 'yolox-nano', settings: cpuRuntime, card: model.card, inputWidth: 416, inputHeight: 416, maxBatch: 1, batchTimeoutMs: 0, maxQueued: 2 });
    try {
      const sent = inputs.slice(0, 3).map((input) => small.infer({ input: input.slice(), options }).then(() => 'ok', (err: unknown) => err));
      const outcomes = await Promise.all(sent);
      expect(outcomes.slice(0, 2)).toEqual(['ok', 'ok']);
      expect(outcomes[2]).toBeInstanceOf(InferenceWorkerError);
      expect((outcomes[2] as InferenceWorkerError).reason).toBe('busy');
      expect(small.stats().failedFrames).toBe(1);
      // Two cameras attached: two frames each may wait, whatever maxQueued says.
      const detach = [small.attach(), small.attach()];
      const more = await Promise.all([...inputs, inputs[0]!].map((input) => small.infer({ input: input.slice(), options }).then(() => 'ok', (err: unknown) => (err as InferenceWorkerError).reason)));
      expect(more).toEqual(['ok', 'ok', 'ok', 'ok', 'busy']);
      detach.forEach((d) => d());
    } finally {
      await small.close();
    }
  });

  it('fails what is waiting when closed, and refuses new frames', async () => {
    const model = await resolveModel('yolox-nano');
    const other = await WorkerBackend.start({ model: await readFile(model.onnxPath), modelName: 'yolox-nano', settings: cpuRuntime, card: model.card, inputWidth: 416, inputHeight: 416, maxBatch: 1, batchTimeoutMs: 0 });
    const sent = inputs.slice(0, 2).map((input) => other.infer({ input: input.slice(), options }).then(() => 'ok', (err: unknown) => err));
    await other.close();
    for (const outcome of await Promise.all(sent)) expect((outcome as InferenceWorkerError).reason).toBe('closed');
    await expect(other.infer({ input: inputs[0]!.slice(), options })).rejects.toThrow(/closed/);
  });
});

describe('a model whose batch is fixed', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'beats-infer-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs one frame per run in the worker, with one log line saying why', async () => {
    const out = yolov8Output([{ cx: 32, cy: 32, w: 20, h: 10, scores: [0.9] }], 1);
    // Its output is a constant of batch 1, whatever the batch fed: a batch of two cannot work.
    const bytes = constantOutputModel({ inputName: 'images', inputDims: [1, 3, 64, 64], outputName: 'output', outputDims: out.dims, output: out.data });
    const card = await writeModel(dir, 'fixed', bytes, {
      version: 'test',
      input: { name: 'images', width: 64, height: 64, layout: 'NCHW', channels: 'RGB', scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1], letterbox: { pad: 114, align: 'center' }, resizable: false },
      output: 'output',
      decoder: { kind: 'yolov8' },
      classes: ['thing'],
    });
    const records: LogRecord[] = [];
    const previous = setLogSink((r) => records.push(r));
    let detector: Detector | undefined;
    try {
      detector = await Detector.load(card, { runtime: cpuRuntime, backend: 'worker', batch: { max: 4, timeoutMs: 5 } });
      expect(detector.maxBatch).toBe(1);
      const frames = await consumeFrames({ camera: 'fixed', url: 'testsrc:size=64x64:rate=10', realtime: false, output: detector.frameOutput() }, (f) => f, (f$) => f$.pipe(take(3)));
      const got = await Promise.all(frames.map((f) => detector!.detect(f, options)));
      for (const found of got) expect(found.map((d) => d.label)).toEqual(['thing']);
      expect(detector.backendStats()!.batchSizes[1]).toBe(3);
    } finally {
      setLogSink(previous);
      await detector?.close();
    }
    const lines = records.filter((r) => /runs one frame per run/.test(r.msg));
    expect(lines).toHaveLength(1);
    expect(lines[0]!.msg).toMatch(/model .*fixed\.json: runs one frame per run, its batch is fixed \(a batch of 2 gives/);
  });
});

describe('the batch queue', () => {
  const policy = { maxBatch: 4, timeoutMs: 10, maxQueued: 6 };

  it('sends a batch as soon as every attached caller has a frame waiting', () => {
    const q = new BatchQueue<string>(policy);
    q.push('a', 0);
    expect(q.next(1, 2)).toEqual({ waitMs: 9 });
    q.push('b', 1);
    expect(q.next(1, 2)).toEqual({ take: ['a', 'b'] });
  });

  it('does not wait for a stalled caller beyond the timeout', () => {
    const q = new BatchQueue<string>(policy);
    q.push('a', 0);
    q.push('b', 3);
    expect(q.next(9, 3)).toEqual({ waitMs: 1 });
    expect(q.next(10, 3)).toEqual({ take: ['a', 'b'] });
  });

  it('counts the timeout from when the model was free, if later: callers out of step come together again', () => {
    const q = new BatchQueue<string>(policy);
    q.push('a', 0);
    q.push('b', 0);
    // Two of four waited 30 ms for a batch to finish; the two just answered have 10 ms to send theirs.
    expect(q.next(31, 4, 30)).toEqual({ waitMs: 9 });
    q.push('c', 32);
    q.push('d', 33);
    expect(q.next(33, 4, 30)).toEqual({ take: ['a', 'b', 'c', 'd'] });
    // A stalled fourth camera holds the others one timeout past the free moment, no more.
    q.push('e', 50);
    q.push('f', 50);
    q.push('g', 50);
    expect(q.next(60, 4, 55)).toEqual({ waitMs: 5 });
    expect(q.next(65, 4, 55)).toEqual({ take: ['e', 'f', 'g'] });
  });

  it('takes at most maxBatch, oldest first, so that every caller has its turn', () => {
    const q = new BatchQueue<string>(policy);
    for (const v of ['a', 'b', 'c', 'd', 'e', 'f']) expect(q.push(v, 0)).toBe(true);
    expect(q.next(0, 8)).toEqual({ take: ['a', 'b', 'c', 'd'] });
    expect(q.next(10, 8)).toEqual({ take: ['e', 'f'] });
    expect(q.next(10, 8)).toBeUndefined();
  });

  it('refuses beyond maxQueued, or beyond the caller\'s bound when that is larger (two frames per attached camera)', () => {
    const q = new BatchQueue<number>(policy);
    for (let i = 0; i < 6; i++) expect(q.push(i, 0)).toBe(true);
    expect(q.push(6, 0)).toBe(false);
    expect(q.push(6, 0, 2)).toBe(false);
    expect(q.length).toBe(6);
    expect(q.push(6, 0, 8)).toBe(true);
    expect(q.push(7, 0, 8)).toBe(true);
    expect(q.push(8, 0, 8)).toBe(false);
  });

  it('with no caller attached (a tool sending frames itself), does not wait', () => {
    const q = new BatchQueue<string>(policy);
    q.push('a', 0);
    expect(q.next(0, 0)).toEqual({ take: ['a'] });
  });

  it('limitBatch: a model with a fixed batch takes one frame per run', () => {
    const q = new BatchQueue<string>(policy);
    q.limitBatch(1);
    q.push('a', 0);
    q.push('b', 0);
    expect(q.next(0, 2)).toEqual({ take: ['a'] });
  });
});
