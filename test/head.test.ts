import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { take } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import onnxProto from 'onnx-proto';
import { HeadError, HeadSwappableSession, discoverHeads, headSurgery, proposeHeadEntries, withHeadInitializers, type HeadFeatureMap, type HeadLevelWeights } from '../src/model/head.js';
import { ModelError } from '../src/errors.js';
import { readModelCard, type ModelCard } from '../src/model/card.js';
import { Detector, type DetectOptions } from '../src/model/detector.js';
import { createSession } from '../src/model/providers.js';
import { builtinModelsDir } from '../src/model/registry.js';
import type { Frame } from '../src/source/frame.js';
import { assets, needsAssets } from './helpers/assets.js';
import { consumeFrames } from './helpers/frames.js';
import { cpuRuntime } from './helpers/model-onnx.js';

const { onnx } = onnxProto;
const detectDefaults: DetectOptions = { threshold: 0.35, nmsIou: 0.45, maxDetections: 100 };

let tmp: string;
let savedModelsDir: string | undefined;
let beatsCard: ModelCard;
/** The shipped beats-s's grid, from its card (160x120 input). */
const beatsGrid = () => {
  const stride = beatsCard.head![0]!.stride;
  const gw = beatsCard.input.width / stride;
  const gh = beatsCard.input.height / stride;
  return { stride, gw, gh, cells: gw * gh };
};
let beatsBytes: Uint8Array;
let yoloxCard: ModelCard;

beforeAll(async () => {
  // As in model.test.ts: nothing pulled, so `yolox-nano` resolves to the shared asset on every machine.
  tmp = await mkdtemp(path.join(os.tmpdir(), 'beats-head-'));
  savedModelsDir = process.env.BEATS_MODELS_DIR;
  process.env.BEATS_MODELS_DIR = path.join(tmp, 'pulled');
  beatsCard = (await readModelCard(path.join(builtinModelsDir, 'beats-s.json'))).card;
  beatsBytes = await readFile(path.join(builtinModelsDir, 'beats-s.onnx'));
  yoloxCard = (await readModelCard(path.join(builtinModelsDir, 'yolox-nano.json'))).card;
});

afterAll(async () => {
  if (savedModelsDir === undefined) delete process.env.BEATS_MODELS_DIR;
  else process.env.BEATS_MODELS_DIR = savedModelsDir;
  await rm(tmp, { recursive: true, force: true });
});

function headError(fn: () => unknown): HeadError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HeadError);
    expect(err).toBeInstanceOf(ModelError);
    return err as HeadError;
  }
  throw new Error('expected a HeadError, the call succeeded');
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** Class scores of one level recomputed in plain JS: sigmoid(W · f + b) per cell, `out[cell * C + c]`, cells row-major. */
function scoresFromFeatures(level: HeadFeatureMap, head: HeadLevelWeights): Float32Array {
  const [, d, h, w] = level.dims;
  const [c] = head.shape;
  const cells = h * w;
  const out = new Float32Array(cells * c);
  const f = level.data;
  for (let cell = 0; cell < cells; cell++) {
    for (let k = 0; k < c; k++) {
      let z = head.bias[k]!;
      for (let i = 0; i < d; i++) z += head.weight[k * d + i]! * f[i * cells + cell]!;
      out[cell * c + k] = sigmoid(z);
    }
  }
  return out;
}

/** Column `col` of a [1, cells, width] output, from cell `first` on, `count` cells. */
function column(data: Float32Array, width: number, col: number, first = 0, count = data.length / width - first): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = data[(first + i) * width + col]!;
  return out;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

/** The base head with class `classId`'s bias moved by `delta` on every level. */
function withBiasShift(base: readonly HeadLevelWeights[], classId: number, delta: number): HeadLevelWeights[] {
  return base.map((l) => {
    const bias = Float32Array.from(l.bias);
    bias[classId] = bias[classId]! + delta;
    return { weight: Float32Array.from(l.weight), bias, shape: [l.shape[0], l.shape[1]] };
  });
}

/**
 * A rewritten model loads in onnxruntime without a warning (in a child: onnxruntime logs natively to
 * stderr) and passes ONNX's own checker with shape inference (the declared shapes are consistent).
 */
async function expectCleanModel(bytes: Uint8Array, name: string): Promise<void> {
  const file = path.join(tmp, `${name}.onnx`);
  await writeFile(file, bytes);
  const child = spawnSync(process.execPath, ['-e', `require('onnxruntime-node').InferenceSession.create(${JSON.stringify(file)}, { logSeverityLevel: 2 }).then(() => console.log('loaded'))`], { encoding: 'utf8' });
  expect(child.stdout.trim()).toBe('loaded');
  expect(child.stderr).not.toMatch(/\[(W|E|F):/);
  const python = '/usr/bin/python3';
  if (!(existsSync(python) && spawnSync(python, ['-c', 'import onnx']).status === 0)) {
    if (process.env.CI) throw new Error('python3-onnx is not installed; CI must install it');
    console.warn('python3-onnx not installed: ONNX checker skipped (apt-get install python3-onnx)');
    return;
  }
  const said = execFileSync(python, ['-c', `import onnx; m = onnx.load(${JSON.stringify(file)}); onnx.checker.check_model(m, full_check=True); print('valid')`], { encoding: 'utf8' });
  expect(said.trim()).toBe('valid');
}

// ---------------------------------------------------------------------------------------------
// Discovery and surgery, on the graphs alone
// ---------------------------------------------------------------------------------------------

describe('finding the head in the graph', () => {
  it('finds the Beats CNN head its card names: one level, 3 classes x 48 channels', () => {
    const heads = discoverHeads(beatsBytes, beatsCard);
    expect(heads).toEqual([{ level: 0, features: 'head_features', weight: 'head.cls.weight', bias: 'head.cls.bias', stride: beatsGrid().stride, conv: 'logits', classes: 3, depth: 48 }]);
    // The graph does not tell how the model was trained: a proposal says bce and ignore (the
    // defaults), the card focal and off-centre negatives.
    const withoutTraining = (entries: NonNullable<ModelCard['head']>) => entries.map(({ loss: _loss, off_centre: _offCentre, ...entry }) => entry);
    expect(withoutTraining(proposeHeadEntries(beatsBytes, beatsCard, [beatsGrid().stride]))).toEqual(withoutTraining(beatsCard.head!));
    expect(beatsCard.head![0]).toMatchObject({ loss: 'focal', off_centre: 'negative' });
  });

  it('rejects a card whose head names a missing initializer, naming the card and the initializer', () => {
    const card: ModelCard = { ...beatsCard, head: [{ ...beatsCard.head![0]!, weight: 'head.cls.kernel' }] };
    const err = headError(() => discoverHeads(beatsBytes, card));
    expect(err.message).toContain('model beats-s');
    expect(err.message).toContain('head[0]');
    expect(err.message).toContain('no initializer "head.cls.kernel"');
  });

  it('rejects a head whose features are not what its convolution reads, of the wrong shape, or not named at all', () => {
    const entry = beatsCard.head![0]!;
    expect(headError(() => discoverHeads(beatsBytes, { ...beatsCard, head: [{ ...entry, features: 'mid2.relu' }] })).message).toMatch(/the Conv "logits" reads "head_features", not the features "mid2.relu"/);
    // The box regression is a 1x1 conv on the same features, but with 4 outputs for 3 classes.
    expect(headError(() => discoverHeads(beatsBytes, { ...beatsCard, head: [{ ...entry, weight: 'head.box.weight', bias: 'head.box.bias' }] })).message).toMatch(/"head.box.weight" has 4 output channels but the card has 3 classes/);
    expect(headError(() => discoverHeads(beatsBytes, { ...beatsCard, head: [{ ...entry, bias: 'head.box.bias' }] })).message).toMatch(/"head.box.bias" is \[4\], expected \[3\]/);
    const { head: _, ...noHead } = beatsCard;
    expect(headError(() => discoverHeads(beatsBytes, noHead)).message).toMatch(/model beats-s: its card names no head/);
  });

  it('rewrites the Beats CNN: head weights become inputs, features an output with its shape, nothing else changes', async () => {
    const before = onnx.ModelProto.decode(beatsBytes);
    const { bytes, heads, baseWeights } = headSurgery(beatsBytes, beatsCard);
    const after = onnx.ModelProto.decode(bytes);
    // Decoded messages are class instances (their repeated fields are arrays), typed as interfaces.
    type Graph = InstanceType<typeof onnx.GraphProto>;
    const g0 = before.graph as Graph;
    const g1 = after.graph as Graph;
    expect(heads).toHaveLength(1);
    expect(g1.node.map((n) => onnx.NodeProto.toObject(n as InstanceType<typeof onnx.NodeProto>))).toEqual(g0.node.map((n) => onnx.NodeProto.toObject(n as InstanceType<typeof onnx.NodeProto>)));
    expect(g1.initializer.map((t) => t.name)).toEqual(g0.initializer.map((t) => t.name).filter((n) => n !== 'head.cls.weight' && n !== 'head.cls.bias'));
    const shapeOf = (v: (typeof g1.input)[number]) => [v.name, v.type!.tensorType!.elemType, (v.type!.tensorType!.shape!.dim ?? []).map((d) => Number(d.dimValue))];
    expect(g1.input.map(shapeOf)).toEqual([
      ['images', 1, [1, 3, 120, 160]],
      ['head.cls.weight', 1, [3, 48, 1, 1]],
      ['head.cls.bias', 1, [3]],
    ]);
    expect(g1.output.map(shapeOf)).toEqual([
      ['output', 1, [1, beatsGrid().cells, 7]],
      ['head_features', 1, [1, 48, beatsGrid().gh, beatsGrid().gw]],
    ]);
    const init = (name: string) => {
      const t = g0.initializer.find((i) => i.name === name)!;
      return new Float32Array(Uint8Array.from(t.rawData!).buffer);
    };
    expect(baseWeights).toEqual([{ weight: init('head.cls.weight'), bias: init('head.cls.bias'), shape: [3, 48] }]);
    // Pure: the input bytes are untouched, and a second surgery gives the same bytes.
    expect(headSurgery(beatsBytes, beatsCard).bytes).toEqual(bytes);
    await expectCleanModel(bytes, 'beats-s-surgered');
  });
});

// ---------------------------------------------------------------------------------------------
// YOLOX-Nano, real model and real frames
// ---------------------------------------------------------------------------------------------

describe.skipIf(needsAssets)('YOLOX-Nano with a swappable head', () => {
  let yoloxBytes: Uint8Array;
  let plain: Detector;
  let adaptable: Detector;
  let swappable: HeadSwappableSession;
  let original: Awaited<ReturnType<typeof createSession>>['session'];
  let frames: Frame[];
  const CAR = 2;

  beforeAll(async () => {
    yoloxBytes = await readFile(assets.yoloxNano);
    plain = await Detector.load('yolox-nano', { runtime: cpuRuntime });
    adaptable = await Detector.load('yolox-nano', { runtime: cpuRuntime, adaptable: true });
    swappable = await HeadSwappableSession.create(yoloxBytes, yoloxCard, cpuRuntime);
    original = (await createSession(yoloxBytes, cpuRuntime)).session;
    frames = await consumeFrames({ camera: 'highway', url: assets.highway, output: plain.frameOutput() }, (f) => f, (f$) => f$.pipe(take(3)));
  });

  afterAll(async () => {
    await plain?.close();
    await adaptable?.close();
    await swappable?.release();
    await original?.release();
  });

  const rawPlain = async (frame: Frame) => (await original.run({ images: plain.toTensor(frame) }, ['output'])).output!.data as Float32Array;
  const runHead = (frame: Frame) => swappable.run({ images: plain.toTensor(frame) }, ['output']);

  it('its card names the three cls_preds convolutions, which the graph confirms; the surgered file is valid', async () => {
    expect(yoloxCard.head).toEqual([
      { features: '1044', weight: 'head.cls_preds.0.weight', bias: 'head.cls_preds.0.bias', stride: 8, loss: 'bce', off_centre: 'ignore' },
      { features: '1086', weight: 'head.cls_preds.1.weight', bias: 'head.cls_preds.1.bias', stride: 16, loss: 'bce', off_centre: 'ignore' },
      { features: '1128', weight: 'head.cls_preds.2.weight', bias: 'head.cls_preds.2.bias', stride: 32, loss: 'bce', off_centre: 'ignore' },
    ]);
    expect(proposeHeadEntries(yoloxBytes, yoloxCard, [8, 16, 32])).toEqual(yoloxCard.head);
    const heads = discoverHeads(yoloxBytes, yoloxCard);
    expect(heads.map((h) => [h.conv, h.classes, h.depth, h.stride])).toEqual([
      ['Conv_314', 80, 64, 8],
      ['Conv_347', 80, 64, 16],
      ['Conv_380', 80, 64, 32],
    ]);
    await expectCleanModel(headSurgery(yoloxBytes, yoloxCard).bytes, 'yolox-nano-surgered');
    expect(headError(() => discoverHeads(yoloxBytes, { ...yoloxCard, head: [{ ...yoloxCard.head![0]!, bias: 'head.cls_preds.3.bias' }] })).message).toMatch(/model yolox-nano: head\[0\]: the ONNX file has no initializer "head.cls_preds.3.bias"/);
  });

  it('gives the same output and detections as the original model on real highway frames', async () => {
    for (const frame of frames) {
      const reference = await rawPlain(frame);
      const { outputs } = await runHead(frame);
      expect(outputs.output!.dims).toEqual([1, 3549, 85]);
      expect(maxAbsDiff(outputs.output!.data as Float32Array, reference)).toBeLessThan(1e-4);
      const a = await plain.detect(frame, detectDefaults);
      const b = await adaptable.detect(frame, detectDefaults);
      expect(a.length).toBeGreaterThan(2);
      expect(b.map((d) => d.label)).toEqual(a.map((d) => d.label));
      b.forEach((d, i) => {
        expect(d.score).toBeCloseTo(a[i]!.score, 4);
        d.box.forEach((v, k) => expect(v).toBeCloseTo(a[i]!.box[k]!, 2));
      });
    }
  });

  it('returns the features of every level, [1,64,52,52], [1,64,26,26], [1,64,13,13] at 416, with each detect', async () => {
    const { levels, head } = await runHead(frames[0]!);
    expect(head).toEqual({ serial: 0, label: 'base' });
    expect(levels.map((l) => [l.features, l.stride, l.dims])).toEqual([
      ['1044', 8, [1, 64, 52, 52]],
      ['1086', 16, [1, 64, 26, 26]],
      ['1128', 32, [1, 64, 13, 13]],
    ]);
    const detections = await adaptable.detect(frames[0]!, detectDefaults);
    const features = adaptable.headFeatures(detections)!;
    expect(features.head.serial).toBe(0);
    expect(features.levels.map((l) => l.dims)).toEqual([
      [1, 64, 52, 52],
      [1, 64, 26, 26],
      [1, 64, 13, 13],
    ]);
    expect(maxAbsDiff(features.levels[2]!.data, levels[2]!.data)).toBeLessThan(1e-5);
    expect(plain.headFeatures(await plain.detect(frames[0]!, detectDefaults))).toBeUndefined();
    expect(adaptable.headFeatures([])).toBeUndefined();
  });

  it('class logits recomputed from the features and the base head (a 1x1 conv in plain JS) match the model within 1e-4', async () => {
    const { outputs, levels } = await runHead(frames[0]!);
    const out = outputs.output!.data as Float32Array;
    const base = swappable.baseHead();
    let first = 0;
    for (const level of levels) {
      const cells = level.dims[2] * level.dims[3];
      const mine = scoresFromFeatures(level, base[level.level]!);
      // YOLOX's output columns: x, y, w, h, objectness, then sigmoid(class logit), not multiplied
      // by objectness in this export (the graph's Concat takes the class Sigmoid directly).
      let worst = 0;
      for (let k = 0; k < 80; k++) {
        const theirs = column(out, 85, 5 + k, first, cells);
        const ours = new Float32Array(cells);
        for (let i = 0; i < cells; i++) ours[i] = mine[i * 80 + k]!;
        worst = Math.max(worst, maxAbsDiff(ours, theirs));
      }
      expect(worst).toBeLessThan(1e-4);
      first += cells;
    }
    expect(first).toBe(3549);
  });

  it('a head with the car bias lowered by 10 lowers the car scores on the next run, same session; the base restores them exactly', async () => {
    const session = swappable.session;
    const before = await runHead(frames[0]!);
    const carBefore = column(before.outputs.output!.data as Float32Array, 85, 5 + CAR);
    const personBefore = column(before.outputs.output!.data as Float32Array, 85, 5 + 0);
    const stamp = swappable.setHead(withBiasShift(swappable.baseHead(), CAR, -10), 'no-cars');
    expect(stamp).toEqual({ serial: 1, label: 'no-cars' });
    const lowered = await runHead(frames[0]!);
    expect(swappable.session).toBe(session);
    expect(lowered.head).toEqual(stamp);
    const carLowered = column(lowered.outputs.output!.data as Float32Array, 85, 5 + CAR);
    expect(Math.max(...carBefore)).toBeGreaterThan(0.8);
    expect(Math.max(...carLowered)).toBeLessThan(0.01);
    for (let i = 0; i < carBefore.length; i++) expect(carLowered[i]!).toBeLessThan(carBefore[i]! + 1e-7);
    // Other classes are untouched.
    expect(column(lowered.outputs.output!.data as Float32Array, 85, 5 + 0)).toEqual(personBefore);
    expect(swappable.resetHead()).toEqual({ serial: 2, label: 'base' });
    const restored = await runHead(frames[0]!);
    expect(restored.outputs.output!.data).toEqual(before.outputs.output!.data);
  });

  it('a run in flight keeps the head it started with; weights written after setHead do not leak in', async () => {
    const base = swappable.baseHead();
    const baseline = column((await runHead(frames[1]!)).outputs.output!.data as Float32Array, 85, 5 + CAR);
    const inFlight = runHead(frames[1]!);
    const noCars = withBiasShift(base, CAR, -10);
    swappable.setHead(noCars);
    const next = runHead(frames[1]!);
    // The caller keeps using its arrays (an optimizer stepping on them): the live head must not move.
    noCars[0]!.bias[CAR] = 1000;
    noCars[1]!.weight.fill(Number.NaN);
    const [a, b] = await Promise.all([inFlight, next]);
    expect(column(a.outputs.output!.data as Float32Array, 85, 5 + CAR)).toEqual(baseline);
    expect(Math.max(...column(b.outputs.output!.data as Float32Array, 85, 5 + CAR))).toBeLessThan(0.01);
    expect(b.head.serial).toBe(a.head.serial + 1);
    swappable.resetHead();
  });

  it('rejects a head of the wrong shape with an error naming the shapes, and keeps the current one', () => {
    const before = swappable.current;
    const base = swappable.baseHead();
    const narrow = base.map((l) => ({ weight: new Float32Array(80 * 32), bias: l.bias, shape: [80, 32] as [number, number] }));
    expect(headError(() => swappable.setHead(narrow)).message).toMatch(/head level 0 \("head.cls_preds.0.weight"\): shape \[80, 32\] does not match the model's head \[80, 64\]/);
    expect(headError(() => swappable.setHead(base.slice(0, 2))).message).toMatch(/a head of 2 levels was given, the model's has 3/);
    const short = base.map((l) => ({ ...l, bias: l.bias.subarray(0, 79) }));
    expect(headError(() => swappable.setHead(short)).message).toMatch(/bias has 79 values, shape \[80, 64\] needs 80/);
    const nan = swappable.baseHead();
    nan[2]!.weight[7] = Number.NaN;
    expect(headError(() => swappable.setHead(nan)).message).toMatch(/head level 2 .*weight\[7\] is NaN/);
    expect(swappable.current).toEqual(before);
  });

  it('through the Detector: setHead drops the cars from the next detect, the base brings back the same detections', async () => {
    const frame = frames[2]!;
    const before = await adaptable.detect(frame, detectDefaults);
    expect(before.filter((d) => d.label === 'car').length).toBeGreaterThan(2);
    const heads = adaptable.heads!;
    adaptable.setHead(withBiasShift(heads.baseHead(), CAR, -10), 'no-cars');
    const without = await adaptable.detect(frame, detectDefaults);
    expect(without.filter((d) => d.label === 'car')).toEqual([]);
    expect(adaptable.headFeatures(without)!.head.label).toBe('no-cars');
    adaptable.setHead(heads.baseHead(), 'base');
    expect(await adaptable.detect(frame, detectDefaults)).toEqual(before);
    expect(() => plain.setHead(heads.baseHead())).toThrow(/model yolox-nano: was not loaded with adaptable: true/);
  });

  it('works on a resized model: features [1,64,40,40], [1,64,20,20], [1,64,10,10] at 320', async () => {
    const small = await Detector.load('yolox-nano', { runtime: cpuRuntime, inputSize: 320, adaptable: true });
    try {
      const [detections] = await consumeFrames({ camera: 'highway', url: assets.highway, output: small.frameOutput() }, (f) => small.detect(f, detectDefaults), (f$) => f$.pipe(take(1)));
      expect(detections!.length).toBeGreaterThan(0);
      expect(small.headFeatures(detections!)!.levels.map((l) => l.dims)).toEqual([
        [1, 64, 40, 40],
        [1, 64, 20, 20],
        [1, 64, 10, 10],
      ]);
    } finally {
      await small.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The Beats CNN, on the synthetic camera (no assets needed)
// ---------------------------------------------------------------------------------------------

describe('beats-s with a swappable head', () => {
  let plain: Detector;
  let swappable: HeadSwappableSession;
  let original: Awaited<ReturnType<typeof createSession>>['session'];
  let frame: Frame;
  const CAR = 1;

  beforeAll(async () => {
    plain = await Detector.load('beats-s', { runtime: cpuRuntime });
    swappable = await HeadSwappableSession.create(beatsBytes, beatsCard, cpuRuntime);
    original = (await createSession(beatsBytes, cpuRuntime)).session;
    [frame] = (await consumeFrames({ camera: 'synthetic', url: 'synthetic:scene=street&seed=3', output: plain.frameOutput() }, (f) => f, (f$) => f$.pipe(take(1)))) as [Frame];
  });

  afterAll(async () => {
    await plain?.close();
    await swappable?.release();
    await original?.release();
  });

  const runHead = () => swappable.run({ images: plain.toTensor(frame) }, ['output']);

  it('gives the same output as the original, and its features [1, 48, gh, gw]', async () => {
    const reference = (await original.run({ images: plain.toTensor(frame) }, ['output'])).output!.data as Float32Array;
    const { outputs, levels } = await runHead();
    const { stride, gw, gh, cells } = beatsGrid();
    expect(outputs.output!.dims).toEqual([1, cells, 7]);
    expect(maxAbsDiff(outputs.output!.data as Float32Array, reference)).toBeLessThan(1e-5);
    expect(levels.map((l) => [l.features, l.stride, l.dims])).toEqual([['head_features', stride, [1, 48, gh, gw]]]);
  });

  it('class scores recomputed from the features and the base head match the model within 1e-4', async () => {
    const { outputs, levels } = await runHead();
    const out = outputs.output!.data as Float32Array;
    const mine = scoresFromFeatures(levels[0]!, swappable.baseHead()[0]!);
    for (let k = 0; k < 3; k++) {
      const ours = new Float32Array(beatsGrid().cells);
      for (let i = 0; i < ours.length; i++) ours[i] = mine[i * 3 + k]!;
      expect(maxAbsDiff(ours, column(out, 7, 4 + k))).toBeLessThan(1e-4);
    }
  });

  it('lowers the car scores with a new head on the same session, the base restores them exactly, a wrong shape is refused', async () => {
    const before = await runHead();
    const carBefore = column(before.outputs.output!.data as Float32Array, 7, 4 + CAR);
    swappable.setHead(withBiasShift(swappable.baseHead(), CAR, -10));
    const carAfter = column((await runHead()).outputs.output!.data as Float32Array, 7, 4 + CAR);
    for (let i = 0; i < beatsGrid().cells; i++) expect(carAfter[i]!).toBeLessThan(carBefore[i]! * 1e-3 + 1e-7);
    swappable.resetHead();
    expect((await runHead()).outputs.output!.data).toEqual(before.outputs.output!.data);
    const wrong = [{ weight: new Float32Array(4 * 48), bias: new Float32Array(4), shape: [4, 48] as [number, number] }];
    expect(headError(() => swappable.setHead(wrong)).message).toMatch(/model beats-s: head level 0 \("head.cls.weight"\): shape \[4, 48\] does not match the model's head \[3, 48\]/);
  });

  it('rebuilding a session from bytes with a new head (the alternative) gives the same scores as feeding it', async () => {
    const shifted = withBiasShift(swappable.baseHead(), CAR, -10);
    const rebuilt = await createSession(withHeadInitializers(beatsBytes, beatsCard, shifted), cpuRuntime);
    try {
      const viaBytes = (await rebuilt.session.run({ images: plain.toTensor(frame) }, ['output'])).output!.data as Float32Array;
      swappable.setHead(shifted);
      const viaFeed = (await runHead()).outputs.output!.data as Float32Array;
      expect(maxAbsDiff(viaBytes, viaFeed)).toBeLessThan(1e-5);
    } finally {
      swappable.resetHead();
      await rebuilt.session.release();
    }
  });
});
