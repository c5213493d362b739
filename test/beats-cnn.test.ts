import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cellCentres, defaultSpec, initWeights, predict, upsample2, type BeatsCnnSpec, type Weights } from '../src/train/beats-cnn.js';
import { exportBeatsOnnx, type WeightArrays } from '../src/train/beats-export.js';
import { SyntheticBatches, asVariables, buildTargets, defaultRecipe, detectionLoss, loadCheckpoint, saveCheckpoint, trainStep } from '../src/train/beats-train.js';
import { readModelCard } from '../src/model/card.js';
import { evaluate } from '../src/model/evaluate.js';
import { evaluateStream } from '../src/cli/eval.js';
import { loadTf, usePureBackend, type Tf } from '../src/train/tf.js';

let tf: Tf;
beforeAll(async () => {
  tf = (await loadTf()).tf;
});

/** Random weights with batch-norm statistics far from identity, so folding them is really tested. */
function randomised(seed: number, spec: BeatsCnnSpec = defaultSpec): Weights {
  const weights = initWeights(tf, spec, seed);
  let s = seed * 101;
  for (const [name, t] of weights) {
    if (name.endsWith('.bn.mean')) weights.set(name, tf.randomNormal(t.shape, 0, 0.5, 'float32', s++));
    if (name.endsWith('.bn.variance')) weights.set(name, tf.randomUniform(t.shape, 0.2, 3, 'float32', s++));
    if (name.endsWith('.bn.gamma')) weights.set(name, tf.randomUniform(t.shape, 0.5, 1.5, 'float32', s++));
    if (name.endsWith('.bn.beta')) weights.set(name, tf.randomNormal(t.shape, 0, 0.3, 'float32', s++));
    if (name === 'head.box.weight' || name === 'head.cls.weight') weights.set(name, tf.randomNormal(t.shape, 0, 0.05, 'float32', s++));
  }
  return weights;
}

async function arrays(weights: Weights): Promise<WeightArrays> {
  const out: WeightArrays = new Map();
  for (const [name, t] of weights) out.set(name, { shape: t.shape, data: (await t.data()) as Float32Array });
  return out;
}

const coarseSpec: BeatsCnnSpec = { ...defaultSpec, stride: 8 };
const contextSpec: BeatsCnnSpec = { ...defaultSpec, inputWidth: 256, inputHeight: 192, context: 64 };

describe.each([
  ['the fine grid (stride 4)', defaultSpec],
  ['the coarse grid of earlier models (stride 8)', coarseSpec],
  ['a context stage at stride 16, 256x192', contextSpec],
])('Beats CNN export to ONNX, %s', (_grid, spec) => {
  it('onnxruntime gives the same output as TensorFlow.js for the same input, within 1e-4', async () => {
    const weights = randomised(3, spec);
    const bytes = exportBeatsOnnx(spec, await arrays(weights), { version: 'test' });
    const { inputWidth: w, inputHeight: h } = spec;
    const pixels = new Float32Array(h * w * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37 + Math.floor(i / 7)) % 256;
    const expected = predict(tf, spec, weights, tf.tensor4d(pixels, [1, h, w, 3]));
    const nchw = new Float32Array(pixels.length);
    for (let i = 0; i < h * w; i++) for (let c = 0; c < 3; c++) nchw[c * h * w + i] = pixels[i * 3 + c]! / 255;
    const session = await ort.InferenceSession.create(bytes);
    const out = (await session.run({ images: new ort.Tensor('float32', nchw, [1, 3, h, w]) })).output!;
    expect(out.dims).toEqual(expected.shape);
    const a = expected.dataSync();
    const b = out.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(a[i]!)));
    expect(worst).toBeLessThan(1e-4);
    // The boxes are around their cells: x1 < cell centre < x2 for every cell.
    const centres = cellCentres(spec);
    const cols = 4 + spec.classes.length;
    for (let cell = 0; cell < b.length / cols; cell++) {
      expect(b[cell * cols]!).toBeLessThan(centres[cell * 2]!);
      expect(b[cell * cols + 2]!).toBeGreaterThan(centres[cell * 2]!);
    }
    await session.release();
  });

  it('takes a batch: its batch is symbolic, and two frames in one run give what each gives alone', async () => {
    const bytes = exportBeatsOnnx(spec, await arrays(randomised(4, spec)), { version: 'test' });
    const { inputWidth: w, inputHeight: h } = spec;
    const frame = (k: number) => Float32Array.from({ length: 3 * h * w }, (_, i) => ((i * k + 11) % 256) / 255);
    const session = await ort.InferenceSession.create(bytes);
    expect(session.inputMetadata[0]).toMatchObject({ shape: ['batch', 3, h, w] });
    const one = async (x: Float32Array) => Float32Array.from((await session.run({ images: new ort.Tensor('float32', x, [1, 3, h, w]) })).output!.data as Float32Array);
    const [a, b] = [await one(frame(7)), await one(frame(13))];
    const both = new Float32Array(6 * h * w);
    both.set(frame(7));
    both.set(frame(13), 3 * h * w);
    const out = (await session.run({ images: new ort.Tensor('float32', both, [2, 3, h, w]) })).output!;
    expect(out.dims[0]).toBe(2);
    const ab = out.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < ab.length; i++) worst = Math.max(worst, Math.abs(ab[i]! - (i < a.length ? a[i]! : b[i - a.length]!)));
    expect(worst).toBeLessThan(1e-4);
    await session.release();
  });

  it('loads in onnxruntime with no warning, and passes ONNX\'s own checker', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-onnx-'));
    const file = path.join(dir, 'beats.onnx');
    await writeFile(file, exportBeatsOnnx(spec, await arrays(randomised(5, spec)), { version: 'test' }));
    // onnxruntime logs natively, to the process's stderr: load it in a child at warning level (2).
    const child = spawnSync(process.execPath, ['-e', `require('onnxruntime-node').InferenceSession.create(${JSON.stringify(file)}, { logSeverityLevel: 2 }).then(() => console.log('loaded'))`], { encoding: 'utf8' });
    expect(child.stdout.trim()).toBe('loaded');
    expect(child.stderr).not.toMatch(/\[(W|E|F):/);
    const python = '/usr/bin/python3';
    const haveChecker = existsSync(python) && spawnSync(python, ['-c', 'import onnx']).status === 0;
    if (!haveChecker) {
      if (process.env.CI) throw new Error('python3-onnx is not installed; CI must install it');
      console.warn('python3-onnx not installed: ONNX checker skipped (apt-get install python3-onnx)');
      return;
    }
    const said = execFileSync(python, ['-c', `import onnx; m = onnx.load(${JSON.stringify(file)}); onnx.checker.check_model(m, full_check=True); print('valid', m.opset_import[0].version)`], { encoding: 'utf8' });
    expect(said.trim()).toBe('valid 13');
  });

  it('names the head in the graph: the feature tensor and the class convolution\'s initializers', async () => {
    const onnxProto = (await import('onnx-proto')).default;
    const model = onnxProto.onnx.ModelProto.decode(exportBeatsOnnx(spec, await arrays(randomised(1, spec)), { version: 'test' }));
    const cls = model.graph!.node!.find((n) => n.input?.[0] === 'head_features' && n.input?.[1] === 'head.cls.weight');
    expect(cls?.opType).toBe('Conv');
    const weight = model.graph!.initializer!.find((t) => t.name === 'head.cls.weight');
    expect(weight?.dims?.map(Number)).toEqual([3, spec.widths.head, 1, 1]);
    // Batch norm is folded: no BatchNormalization node is left.
    expect(model.graph!.node!.some((n) => n.opType === 'BatchNormalization')).toBe(false);
  });
});

describe('Beats CNN training', () => {
  it('assigns each box to the cell holding its centre and its near neighbours, the smaller box winning', () => {
    const t = buildTargets(coarseSpec, [
      { classId: 1, box: [40, 40, 88, 64], ignore: false },
      { classId: 0, box: [60, 44, 68, 60], ignore: false },
      { classId: 2, box: [120, 80, 140, 100], ignore: true },
    ]);
    const gw = defaultSpec.inputWidth / 8;
    const cell = (x: number, y: number) => Math.floor(y / 8) * gw + Math.floor(x / 8);
    // The person (smaller) owns its centre cell, though it is inside the car.
    expect(t.cls[cell(64, 52) * 3]).toBe(1);
    expect(t.cls[cell(64, 52) * 3 + 1]).toBe(0);
    // The car owns a cell near its centre that the person does not cover.
    expect(t.cls[cell(52, 52) * 3 + 1]).toBe(1);
    // Distances from that cell's centre (52, 52) to the car's edges.
    expect(Array.from(t.ltrb.subarray(cell(52, 52) * 4, cell(52, 52) * 4 + 4))).toEqual([12, 12, 36, 12]);
    // Inside the ignored bicycle nothing counts for classification; elsewhere everything does.
    expect(t.clsWeight[cell(132, 92) * 3]).toBe(0);
    expect(t.clsWeight[cell(4, 4) * 3]).toBe(1);
    expect(t.positive.reduce((s, v) => s + v, 0)).toBeGreaterThan(2);
  });

  it('with sizeRadius, a large box has positives out to that share of its shorter side; a small one keeps 1.5 cells', () => {
    const count = (spec: BeatsCnnSpec, box: [number, number, number, number]) => buildTargets(spec, [{ classId: 0, box, ignore: false }]).positive.reduce((s, v) => s + v, 0);
    const large: [number, number, number, number] = [40, 8, 80, 112];
    const small: [number, number, number, number] = [60, 40, 72, 64];
    // 1.5 cells of 4 pixels: cell centres (54, 58, 62, 66) within 6 of the centre (60, 60), 4 across and down.
    expect(count(defaultSpec, large)).toBe(16);
    // A quarter of the 40-pixel side is 10 pixels: cell centres 50 to 70, 6 across and down.
    expect(count({ ...defaultSpec, sizeRadius: 0.25 }, large)).toBe(36);
    expect(count({ ...defaultSpec, sizeRadius: 0.25 }, small)).toBe(count(defaultSpec, small));
  });

  it('on the fine grid, a far person and the bicycle they push each hold the cell of their own centre', () => {
    // Centres (58, 44) and (63, 45): one cell at stride 8 (the smaller person takes it), two at stride 4.
    const boxes = [
      { classId: 0, box: [56, 36, 60, 52] as [number, number, number, number], ignore: false },
      { classId: 2, box: [55, 42, 71, 48] as [number, number, number, number], ignore: false },
    ];
    const centreCellClasses = (spec: BeatsCnnSpec) => {
      const stride = spec.stride ?? 8;
      const gw = spec.inputWidth / stride;
      const t = buildTargets(spec, boxes);
      return boxes.map(({ box }) => {
        const cell = Math.floor((box[1] + box[3]) / 2 / stride) * gw + Math.floor((box[0] + box[2]) / 2 / stride);
        return [0, 1, 2].find((k) => t.cls[cell * 3 + k] === 1);
      });
    };
    expect(centreCellClasses(coarseSpec)).toEqual([0, 0]);
    expect(centreCellClasses(defaultSpec)).toEqual([0, 2]);
  });

  it('the fine grid\'s upsampling repeats each pixel 2x2, and its gradient sums each 2x2 block', () => {
    const x = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 1) as import('@tensorflow/tfjs').Tensor4D;
    const r = tf.randomNormal([2, 6, 8, 5], 0, 1, 'float32', 2);
    const repeated = x.reshape([2, 3, 1, 4, 1, 5]).tile([1, 1, 2, 1, 2, 1]).reshape([2, 6, 8, 5]);
    expect(tf.abs(upsample2(tf, x).sub(repeated)).max().dataSync()[0]).toBe(0);
    const grad = tf.grad((input: import('@tensorflow/tfjs').Tensor) => upsample2(tf, input as import('@tensorflow/tfjs').Tensor4D).mul(r).sum())(x);
    const blockSums = r.reshape([2, 3, 2, 4, 2, 5]).sum([2, 4]);
    expect(tf.abs(grad.sub(blockSums)).max().dataSync()[0]).toBeLessThan(1e-5);
  });

  it('a few steps on one batch lower the loss (the gradients are right, the model can learn)', async () => {
    const recipe = { ...defaultRecipe, seed: 11 };
    const batch = new SyntheticBatches(recipe, 2).take(defaultSpec, 2);
    const weights = new Map([...asVariables(tf, initWeights(tf, defaultSpec, 2))]);
    const optimizer = tf.train.adam(0.01);
    const first = trainStep(tf, defaultSpec, weights, optimizer, batch);
    let last = first;
    for (let i = 0; i < 10; i++) last = trainStep(tf, defaultSpec, weights, optimizer, batch);
    expect(last.loss).toBeLessThan(first.loss * 0.7);
    expect(Number.isFinite(last.box)).toBe(true);
  }, 120_000);

  it('with clsTarget iou, a positive cell learns its box\'s IoU as its score, and no gradient reaches the box through it', () => {
    // One cell, one class, stride 4; the target box is 8x8 around the centre, the predicted one 8x4 (IoU 0.5).
    const target = { cls: tf.ones([1, 1, 1, 1]), clsWeight: tf.ones([1, 1, 1, 1]), ltrb: tf.tensor4d([4, 4, 4, 4], [1, 1, 1, 4]), positive: tf.ones([1, 1, 1]) };
    const boxRaw = tf.tensor4d([0, -Math.log(2), 0, -Math.log(2)], [1, 1, 1, 4]);
    const clsAt = (logit: number, kind: 'hard' | 'iou') => detectionLoss(tf, 4, tf.tensor4d([logit], [1, 1, 1, 1]), boxRaw, target, kind).cls.dataSync()[0]!;
    const logitOf = (p: number) => Math.log(p / (1 - p));
    // Hard targets want the score at 1; quality targets at the IoU, 0.5.
    expect(clsAt(logitOf(0.9), 'hard')).toBeLessThan(clsAt(logitOf(0.5), 'hard'));
    expect(clsAt(logitOf(0.5), 'iou')).toBeLessThan(clsAt(logitOf(0.9), 'iou'));
    expect(clsAt(logitOf(0.5), 'iou')).toBeLessThan(clsAt(logitOf(0.2), 'iou'));
    const gradOfCls = tf.grad((raw) => detectionLoss(tf, 4, tf.tensor4d([0.3], [1, 1, 1, 1]), raw as typeof boxRaw, target, 'iou').cls)(boxRaw);
    expect(tf.abs(gradOfCls).max().dataSync()[0]).toBe(0);
    const gradOfBox = tf.grad((raw) => detectionLoss(tf, 4, tf.tensor4d([0.3], [1, 1, 1, 1]), raw as typeof boxRaw, target, 'iou').box)(boxRaw);
    expect(tf.abs(gradOfBox).max().dataSync()[0]).toBeGreaterThan(0.01);
  });

  it('checkpoints round-trip the weights and the optimizer state', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-ckpt-'));
    const weights = asVariables(tf, randomised(9));
    const optimizer = tf.train.adam(0.01);
    trainStep(tf, defaultSpec, weights, optimizer, new SyntheticBatches(defaultRecipe, 1).take(defaultSpec, 1));
    const file = path.join(dir, 'c.bin');
    await saveCheckpoint(file, { format: 'beats-cnn-checkpoint/1', step: 1, recipe: defaultRecipe, history: [{ step: 1, loss: 1, cls: 0.5, box: 0.25 }], weights, optimizer: await optimizer.getWeights() });
    const back = await loadCheckpoint(tf, file);
    expect(back.step).toBe(1);
    expect([...back.weights.keys()]).toEqual([...weights.keys()]);
    for (const [name, t] of weights) expect(Array.from(back.weights.get(name)!.dataSync())).toEqual(Array.from(t.dataSync()));
    expect(back.optimizer!.length).toBe((await optimizer.getWeights()).length);
  });
});

describe('beats train --init-from (a warm start)', () => {
  it('copies the weights whose names and shapes fit, trains the rest from fresh, and records it in the recipe', async () => {
    const { trainCommand } = await import('../src/cli/train.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-warm-'));
    // A coarse (stride-8) checkpoint, as the shipped models before the fine grid.
    const coarse = asVariables(tf, randomised(4, coarseSpec));
    const from = path.join(dir, 'coarse.bin');
    await saveCheckpoint(from, { format: 'beats-cnn-checkpoint/1', step: 77, recipe: { ...defaultRecipe, spec: coarseSpec }, history: [], weights: coarse });
    await trainCommand({ out: path.join(dir, 'fine'), steps: 1, batch: 1, initFrom: from });
    const fine = await loadCheckpoint(tf, path.join(dir, 'fine', 'checkpoint.bin'));
    expect(fine.recipe.spec.stride).toBe(4);
    expect(fine.recipe.init?.checkpoint).toBe('coarse.bin');
    expect(fine.recipe.init?.step).toBe(77);
    // Every coarse layer fits the fine body; the fusion layer is new.
    expect(fine.recipe.init?.weights).toContain('c5.weight');
    expect(fine.recipe.init?.weights).toContain('head.cls.weight');
    expect(fine.recipe.init?.weights.some((w) => w.startsWith('c6.'))).toBe(false);
    // One step of a warming-up learning rate moves a copied weight by little, and keeps its moving statistics.
    const before = coarse.get('c3.weight')!.dataSync();
    const after = fine.weights.get('c3.weight')!.dataSync();
    let worst = 0;
    for (let i = 0; i < before.length; i++) worst = Math.max(worst, Math.abs(after[i]! - before[i]!));
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan(1e-3);
    expect(Array.from(fine.weights.get('c3.bn.mean')!.dataSync()).slice(0, 4)).not.toEqual([0, 0, 0, 0]);
    await expect(trainCommand({ out: path.join(dir, 'none'), steps: 1, initFrom: path.join(dir, 'missing.bin') })).rejects.toThrow(/--init-from .*missing\.bin: no such checkpoint/);
  }, 120_000);
});

describe('beats export', () => {
  it('writes the ONNX and its card; the version tells apart two checkpoints of the same step and day', async () => {
    const { exportCommand } = await import('../src/cli/export.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-export-'));
    const versions: string[] = [];
    for (const seed of [4, 5]) {
      const file = path.join(dir, `c${seed}.bin`);
      await saveCheckpoint(file, { format: 'beats-cnn-checkpoint/1', step: 1000, recipe: { ...defaultRecipe, seed }, history: [{ step: 1000, loss: 0.5, cls: 0.1, box: 0.3 }], weights: asVariables(tf, randomised(seed, defaultSpec)) });
      const out = path.join(dir, `m${seed}`);
      const written = await exportCommand({ checkpoint: file, out, name: 'beats-t' });
      const { card } = await readModelCard(written.card);
      expect(card.version).toMatch(/^1000-\d{4}-\d{2}-\d{2}-[0-9a-f]{8}$/);
      expect((card.training as { recipe: { seed: number } }).recipe.seed).toBe(seed);
      expect((card.training as { sha256: string }).sha256).toBe(createHash('sha256').update(await readFile(written.onnx)).digest('hex'));
      versions.push(card.version);
    }
    expect(versions[0]).not.toBe(versions[1]);
  }, 60_000);

  it('--average exports the mean of checkpoints of one network, the card naming their steps; another network is refused', async () => {
    const { exportCommand } = await import('../src/cli/export.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-export-'));
    const files = [path.join(dir, 'a.bin'), path.join(dir, 'b.bin')];
    const sets = [randomised(7), randomised(8)];
    for (const [i, file] of files.entries()) await saveCheckpoint(file, { format: 'beats-cnn-checkpoint/1', step: 100 * (i + 1), recipe: defaultRecipe, history: [], weights: asVariables(tf, sets[i]!) });
    const written = await exportCommand({ checkpoint: files[1]!, average: [files[0]!], out: path.join(dir, 'm'), name: 'beats-t' });
    const { card } = await readModelCard(written.card);
    expect(card.training?.averaged_steps).toEqual([200, 100]);
    // The ONNX holds the mean: the class bias (not folded into anything) is the mean of the two.
    const model = (await import('onnx-proto')).default.onnx.ModelProto.decode(await readFile(written.onnx));
    const bias = model.graph!.initializer!.find((t) => t.name === 'head.cls.bias')!;
    const mean = [...sets[0]!.get('head.cls.bias')!.dataSync()].map((v, i) => (v + sets[1]!.get('head.cls.bias')!.dataSync()[i]!) / 2);
    const values = bias.floatData?.length ? bias.floatData : [...new Float32Array(new Uint8Array(bias.rawData!).slice().buffer)];
    values.forEach((v, i) => expect(v).toBeCloseTo(mean[i]!, 5));
    const other = path.join(dir, 'c.bin');
    await saveCheckpoint(other, { format: 'beats-cnn-checkpoint/1', step: 10, recipe: { ...defaultRecipe, spec: contextSpec }, history: [], weights: asVariables(tf, randomised(6, contextSpec)) });
    await expect(exportCommand({ checkpoint: files[1]!, average: [other], out: path.join(dir, 'n'), name: 'beats-t' })).rejects.toThrow(/--average .*c\.bin/);
  }, 60_000);

  it('--input exports the same weights at another size, which the card records; a size the body cannot take is refused', async () => {
    const { exportCommand } = await import('../src/cli/export.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-export-'));
    const file = path.join(dir, 'c.bin');
    await saveCheckpoint(file, { format: 'beats-cnn-checkpoint/1', step: 10, recipe: { ...defaultRecipe, spec: contextSpec }, history: [], weights: asVariables(tf, randomised(6, contextSpec)) });
    const written = await exportCommand({ checkpoint: file, out: path.join(dir, 'm'), name: 'beats-t', input: { width: 320, height: 240 } });
    const { card } = await readModelCard(written.card);
    expect([card.input.width, card.input.height]).toEqual([320, 240]);
    expect(card.training?.trained_input).toBe('256x192');
    expect((card.training as { recipe: { spec: BeatsCnnSpec } }).recipe.spec).toMatchObject({ inputWidth: 320, inputHeight: 240, context: 64 });
    const session = await ort.InferenceSession.create(await readFile(written.onnx));
    const out = await session.run({ images: new ort.Tensor('float32', new Float32Array(3 * 240 * 320).fill(0.5), [1, 3, 240, 320]) });
    expect(out.output!.dims).toEqual([1, 80 * 60, 7]);
    await expect(exportCommand({ checkpoint: file, out: path.join(dir, 'n'), name: 'beats-t', input: { width: 160, height: 120 } })).rejects.toThrow(/--input 160x120: .*not a multiple of 16/);
    // Whole-model adaptation starts from the checkpoint beside it, and trains the card's network.
    const { loadStudent } = await import('../src/adapt/student/model-files.js');
    await copyFile(file, path.join(dir, 'm', 'beats-t.checkpoint.bin'));
    const student = await loadStudent(tf, written.card);
    expect([student.spec.inputWidth, student.spec.inputHeight]).toEqual([320, 240]);
    student.weights.forEach((t) => t.dispose());
  }, 60_000);
});

describe('convolution gradients of the pure backends (CPU kernels; WebAssembly as tensor ops)', () => {
  type T4 = import('@tensorflow/tfjs').Tensor4D;
  afterEach(async () => {
    await tf.setBackend((await loadTf()).backend);
  });

  it('a training step on the WebAssembly backend gives the loss and weights the CPU backend gives', async () => {
    const spec: BeatsCnnSpec = { ...defaultSpec, inputWidth: 64, inputHeight: 48, context: 16 };
    const batch = Array.from({ length: 2 }, (_, i) => ({
      pixels: Uint8Array.from({ length: 64 * 48 * 3 }, (_, j) => (j * 37 + i * 101) % 256),
      boxes: [{ classId: i, box: [8 + i * 4, 6, 30, 40] as [number, number, number, number], ignore: false }],
    }));
    const results: Array<{ loss: number; weights: Map<string, Float32Array> }> = [];
    for (const backend of ['cpu', 'wasm'] as const) {
      await usePureBackend(tf, backend);
      const weights = asVariables(tf, randomised(3, spec));
      const optimizer = tf.train.sgd(0.05);
      const { loss } = trainStep(tf, spec, weights, optimizer, batch);
      results.push({ loss, weights: new Map([...weights].map(([name, t]) => [name, t.dataSync() as Float32Array])) });
      weights.forEach((t) => t.dispose());
      optimizer.dispose();
    }
    const [cpu, wasm] = results as [typeof results[0], typeof results[0]];
    expect(wasm.loss).toBeCloseTo(cpu.loss, 4);
    let moved = 0;
    for (const [name, values] of cpu.weights) {
      const other = wasm.weights.get(name)!;
      for (let i = 0; i < values.length; i++) expect(Math.abs(other[i]! - values[i]!), `${name}[${i}]`).toBeLessThan(1e-4 * Math.max(1, Math.abs(values[i]!)));
      moved++;
    }
    expect(moved).toBe(cpu.weights.size);
  });

  it.each(['cpu', 'wasm'] as const)('on %s agree with finite differences (same and valid padding, 1x1 and 3x3; stride 2 goes to the original kernel)', async (backend) => {
    await usePureBackend(tf, backend);
    type Shape4 = [number, number, number, number];
    const cases: Array<{ x: Shape4; w: Shape4; pad: 'same' | 'valid'; stride: 1 | 2 }> = [
      { x: [2, 5, 6, 3], w: [3, 3, 3, 4], pad: 'same', stride: 1 },
      { x: [1, 4, 4, 5], w: [1, 1, 5, 2], pad: 'valid', stride: 1 },
      { x: [2, 6, 5, 2], w: [3, 3, 2, 3], pad: 'valid', stride: 1 },
      { x: [1, 6, 6, 2], w: [3, 3, 2, 2], pad: 'same', stride: 2 },
    ];
    for (const c of cases) {
      if (backend === 'wasm' && c.stride !== 1) {
        // The WebAssembly backend has no kernel for a strided convolution's filter gradient.
        const [x, w] = [tf.ones(c.x) as T4, tf.ones(c.w) as T4];
        expect(() => tf.grads((a: import('@tensorflow/tfjs').Tensor, b: import('@tensorflow/tfjs').Tensor) => tf.conv2d(a as T4, b as T4, c.stride, c.pad).sum())([x, w])).toThrow(/Conv2DBackpropFilter/);
        continue;
      }
      const x = tf.randomNormal(c.x, 0, 1, 'float32', 1) as T4;
      const w = tf.randomNormal(c.w, 0, 1, 'float32', 2) as T4;
      const loss = (a: T4, b: T4) => tf.conv2d(a, b, c.stride, c.pad).square().sum();
      const [dx, dw] = tf.grads((a: import('@tensorflow/tfjs').Tensor, b: import('@tensorflow/tfjs').Tensor) => loss(a as T4, b as T4))([x, w]);
      const numeric = (t: T4, other: T4, which: 'x' | 'w', index: number) => {
        const h = 1e-2;
        const bump = (sign: number) => {
          const values = t.dataSync().slice();
          values[index]! += sign * h;
          const moved = tf.tensor4d(values, t.shape);
          return (which === 'x' ? loss(moved, other) : loss(other, moved)).dataSync()[0]!;
        };
        return (bump(1) - bump(-1)) / (2 * h);
      };
      for (const index of [0, 7, 13, x.size - 1]) {
        const expected = numeric(x, w, 'x', index);
        expect(Math.abs(dx!.dataSync()[index]! - expected), `dx ${JSON.stringify(c)} at ${index}`).toBeLessThan(2e-2 * Math.max(1, Math.abs(expected)));
      }
      for (const index of [0, 5, w.size - 1]) {
        const expected = numeric(w, x, 'w', index);
        expect(Math.abs(dw!.dataSync()[index]! - expected), `dw ${JSON.stringify(c)} at ${index}`).toBeLessThan(2e-2 * Math.max(1, Math.abs(expected)));
      }
    }
  });
});

describe('evaluation', () => {
  const truth = [
    { frame: 0, boxes: [{ label: 'car', box: [0, 0, 10, 10] as const }, { label: 'person', box: [20, 20, 30, 40] as const }] },
    { frame: 1, boxes: [{ label: 'car', box: [0, 0, 10, 10] as const }, { label: 'car', box: [50, 50, 60, 60] as const, ignore: true }] },
  ];

  it('perfect detections give mAP 1, precision, recall and F1 1', () => {
    const result = evaluate(truth, [
      { frame: 0, detections: [{ label: 'car', score: 0.9, box: [0, 0, 10, 10] }, { label: 'person', score: 0.8, box: [20, 21, 30, 40] }] },
      { frame: 1, detections: [{ label: 'car', score: 0.7, box: [1, 0, 10, 10] }, { label: 'car', score: 0.9, box: [50, 50, 60, 60] }] },
    ], 0.5);
    expect(result.map50).toBe(1);
    expect([result.precision, result.recall, result.f1]).toEqual([1, 1, 1]);
    expect(result.perClass.car!.truths).toBe(2);
    // Every detection is right and at least 0.7: the best F1 is 1, reached at a threshold up to 0.7.
    expect(result.best.f1).toBe(1);
    expect(result.best.threshold).toBeLessThanOrEqual(0.7);
  });

  it('a confident false positive ranks above a true one and costs AP; a miss costs recall', () => {
    const result = evaluate(truth, [
      { frame: 0, detections: [{ label: 'car', score: 0.95, box: [70, 70, 80, 80] }, { label: 'car', score: 0.9, box: [0, 0, 10, 10] }] },
      { frame: 1, detections: [{ label: 'car', score: 0.3, box: [0, 0, 10, 10] }] },
    ], 0.5);
    // car: FP (0.95), TP (0.9), TP (0.3): precision 0, 1/2, 2/3 at recall 0, 1/2, 1 → AP = 0.5·0.667 + 0.5·0.667
    expect(result.perClass.car!.ap50).toBeCloseTo(2 / 3, 5);
    expect(result.perClass.person!.ap50).toBe(0);
    expect(result.map50).toBeCloseTo(1 / 3, 5);
    // At 0.5: car TP 1, FP 1; person missed: precision 1/2, recall 1/3.
    expect(result.precision).toBeCloseTo(0.5, 5);
    expect(result.recall).toBeCloseTo(1 / 3, 5);
  });

  it('beats eval pools several seeds of a synthetic scene: every stream\'s truths counted once, each stream\'s mAP given', { timeout: 60_000 }, async () => {
    const target = { url: 'synthetic:scene=street&seed=5001&seconds=4', model: 'beats-s', threshold: 0.35, nmsIou: 0.45 };
    const one = await evaluateStream({ ...target, url: 'synthetic:scene=street&seed=5001&seconds=4' }, {});
    const two = await evaluateStream({ ...target, url: 'synthetic:scene=street&seed=5002&seconds=4' }, {});
    const pooled = await evaluateStream(target, { seeds: [5001, 5002] });
    expect(pooled.frames).toBe(one.frames + two.frames);
    for (const label of Object.keys(pooled.perClass)) expect(pooled.perClass[label]!.truths).toBe((one.perClass[label]?.truths ?? 0) + (two.perClass[label]?.truths ?? 0));
    expect(pooled.streams!.map((s) => /seed=(\d+)/.exec(s.url)![1])).toEqual(['5001', '5002']);
    expect(pooled.streams![0]!.map50).toBeCloseTo(one.map50, 10);
    expect(pooled.streams![1]!.map50).toBeCloseTo(two.map50, 10);
    await expect(evaluateStream({ ...target, url: path.resolve('x.mp4') }, { seeds: [1, 2], truth: 'test/fixtures/indoor-people.truth.json' })).rejects.toThrow(/--seeds: only for synthetic/);
  });
});
