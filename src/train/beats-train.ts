/** Training the Beats CNN: samples and targets from synthetic frames, the detection loss, recipes and checkpoints. */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../fs-atomic.js';
import { SyntheticScene, type SceneOptions, type SyntheticBox } from '../source/synthetic/index.js';
import { defaultSpec, forward, gridSize, initWeights, isTrainable, strideOf, type BeatsCnnSpec, type Weights } from './beats-cnn.js';
import { IGNORED, assignCells } from '../model/assign.js';
import type { Tf } from './tf.js';
import { seededRandom, type Random } from './random.js';
import type * as tfType from '@tensorflow/tfjs';

/** Boxes below this visible fraction are neither positives nor negatives (the truth files' rule). */
export const MIN_VISIBLE = 0.3;

export interface TrainingSample {
  /** [H, W, 3] RGB at the model's input size. */
  pixels: Uint8Array;
  /** Boxes in input pixels. */
  boxes: Array<{ classId: number; box: [number, number, number, number]; ignore: boolean }>;
}

/** Area-average downscale by an integer factor (the synthetic camera renders at a multiple of the input). */
export function downscale(rgb: Uint8Array, width: number, height: number, factor: number): Uint8Array {
  const ow = Math.floor(width / factor);
  const oh = Math.floor(height / factor);
  const out = new Uint8Array(ow * oh * 3);
  const n = factor * factor;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let dy = 0; dy < factor; dy++) for (let dx = 0; dx < factor; dx++) sum += rgb[((y * factor + dy) * width + x * factor + dx) * 3 + c]!;
        out[(y * ow + x) * 3 + c] = Math.round(sum / n);
      }
    }
  }
  return out;
}

export function sampleFromSynthetic(spec: BeatsCnnSpec, frame: { rgb: Uint8Array; width: number; height: number; boxes: readonly SyntheticBox[] }): TrainingSample {
  const factor = frame.width / spec.inputWidth;
  if (!Number.isInteger(factor) || frame.height / spec.inputHeight !== factor) throw new Error(`synthetic frames of ${frame.width}x${frame.height} are not an integer multiple of the input ${spec.inputWidth}x${spec.inputHeight}`);
  const pixels = factor === 1 ? frame.rgb : downscale(frame.rgb, frame.width, frame.height, factor);
  return {
    pixels,
    boxes: frame.boxes.map((b) => ({
      classId: spec.classes.indexOf(b.label),
      box: b.box.map((v) => v / factor) as [number, number, number, number],
      ignore: b.visible < MIN_VISIBLE,
    })),
  };
}

export interface Targets {
  /** [gh, gw, C] 0/1 */
  cls: Float32Array;
  /** [gh, gw, C] 0 where a cell must not count (inside an ignored box), else 1 */
  clsWeight: Float32Array;
  /** [gh, gw, 4] l, t, r, b distances from the cell centre, input pixels */
  ltrb: Float32Array;
  /** [gh, gw] 1 for positive cells */
  positive: Float32Array;
}

/**
 * Training targets by the Beats assignment (src/model/assign.ts): a positive cell has its box's
 * class and its distances to the box's sides; cells inside ignored boxes do not count for
 * classification; every other cell is a negative.
 */
export function buildTargets(spec: BeatsCnnSpec, boxes: TrainingSample['boxes']): Targets {
  const { gw, gh } = gridSize(spec);
  const c = spec.classes.length;
  const cls = new Float32Array(gh * gw * c);
  const clsWeight = new Float32Array(gh * gw * c).fill(1);
  const ltrb = new Float32Array(gh * gw * 4);
  const positive = new Float32Array(gh * gw);
  const known = boxes.filter((b) => b.classId >= 0);
  const stride = strideOf(spec);
  const owner = assignCells({ gw, gh, stride, sizeRadius: spec.sizeRadius }, known);
  for (let cell = 0; cell < owner.length; cell++) {
    const k = owner[cell]!;
    if (k === IGNORED) clsWeight.fill(0, cell * c, (cell + 1) * c);
    if (k < 0) continue;
    const { classId, box } = known[k]!;
    positive[cell] = 1;
    cls[cell * c + classId] = 1;
    const cx = ((cell % gw) + 0.5) * stride;
    const cy = (Math.floor(cell / gw) + 0.5) * stride;
    // The centre cell of a box narrower than a cell may have its centre outside: keep distances positive.
    ltrb[cell * 4] = Math.max(0.5, cx - box[0]);
    ltrb[cell * 4 + 1] = Math.max(0.5, cy - box[1]);
    ltrb[cell * 4 + 2] = Math.max(0.5, box[2] - cx);
    ltrb[cell * 4 + 3] = Math.max(0.5, box[3] - cy);
  }
  return { cls, clsWeight, ltrb, positive };
}

/** Per positive cell: the IoU and GIoU of the predicted box (cell centre ± exp(raw) · stride) with its target's. */
function boxOverlap(tf: Tf, stride: number, boxRaw: tfType.Tensor4D, ltrb: tfType.Tensor): { iou: tfType.Tensor; giou: tfType.Tensor } {
  const pred = tf.exp(boxRaw).mul(stride);
  const [pl, pt, pr, pb] = tf.split(pred, 4, 3);
  const [tl, tt, tr, tb] = tf.split(ltrb, 4, 3);
  const interW = tf.minimum(pl!, tl!).add(tf.minimum(pr!, tr!));
  const interH = tf.minimum(pt!, tt!).add(tf.minimum(pb!, tb!));
  const inter = interW.mul(interH);
  const areaP = pl!.add(pr!).mul(pt!.add(pb!));
  const areaT = tl!.add(tr!).mul(tt!.add(tb!));
  const union = areaP.add(areaT).sub(inter).add(1e-6);
  const iou = inter.div(union);
  const enclosing = tf.maximum(pl!, tl!).add(tf.maximum(pr!, tr!)).mul(tf.maximum(pt!, tt!).add(tf.maximum(pb!, tb!))).add(1e-6);
  return { iou, giou: iou.sub(enclosing.sub(union).div(enclosing)) };
}

/** The value of `x` with no gradient through it: a target made from the model's own output. */
function constant(tf: Tf, x: tfType.Tensor): tfType.Tensor {
  const stop = tf.customGrad((...args: Array<tfType.Tensor | tfType.GradSaveFunc>) => {
    const input = args[0] as tfType.Tensor;
    return { value: input.clone(), gradFunc: (dy: tfType.Tensor) => tf.zerosLike(dy) };
  });
  return stop(x);
}

/**
 * The class loss (sigmoid focal loss, alpha 0.25, gamma 2; or with `clsTarget: 'iou'`, quality
 * focal loss, beta 2, whose positive target is the predicted box's IoU) + GIoU box loss, both per
 * positive cell.
 */
export function detectionLoss(
  tf: Tf,
  stride: number,
  logits: tfType.Tensor4D,
  boxRaw: tfType.Tensor4D,
  t: { cls: tfType.Tensor; clsWeight: tfType.Tensor; ltrb: tfType.Tensor; positive: tfType.Tensor },
  clsTarget: 'hard' | 'iou' = 'hard',
): { total: tfType.Scalar; cls: tfType.Scalar; box: tfType.Scalar } {
  const numPos = tf.maximum(t.positive.sum(), 1);
  const { iou, giou } = boxOverlap(tf, stride, boxRaw, t.ltrb);
  const z = logits;
  const p = tf.sigmoid(z);
  const y = clsTarget === 'iou' ? t.cls.mul(constant(tf, tf.maximum(iou, 0))) : t.cls;
  // Cross-entropy from logits, for hard and soft targets alike.
  const ce = tf.relu(z).sub(z.mul(y)).add(tf.log1p(tf.exp(tf.abs(z).neg())));
  let weighted: tfType.Tensor;
  if (clsTarget === 'iou') {
    weighted = tf.square(y.sub(p)).mul(ce);
  } else {
    const pt = p.mul(y).add(tf.scalar(1).sub(p).mul(tf.scalar(1).sub(y)));
    const alpha = y.mul(0.25).add(tf.scalar(1).sub(y).mul(0.75));
    weighted = alpha.mul(tf.pow(tf.scalar(1).sub(pt), 2)).mul(ce);
  }
  const clsLoss = weighted.mul(t.clsWeight).sum().div(numPos) as tfType.Scalar;
  const boxLoss = tf.scalar(1).sub(giou).squeeze([3]).mul(t.positive).sum().div(numPos) as tfType.Scalar;
  return { total: clsLoss.add(boxLoss.mul(2)) as tfType.Scalar, cls: clsLoss, box: boxLoss };
}

export interface TrainRecipe {
  seed: number;
  steps: number;
  batch: number;
  lr: number;
  /** Training data: synthetic scenes with these seeds, frames taken every few frames. */
  data: { scenes: string[]; seeds: [number, number]; domain: string[]; width: number; height: number; fps: number; real?: RealDataRecipe };
  /**
   * Where a resumed run changed the data mix (`beats train --scenes`): the scenes from each step on.
   * The current mix is `data.scenes`; the record keeps the shipped model reproducible.
   */
  stages?: Array<{ from: number; scenes: string[] }>;
  /** A warm start: the checkpoint (file name and step) whose weights of these names began the run. */
  init?: { checkpoint: string; step: number; weights: string[] };
  spec: BeatsCnnSpec;
}

/**
 * Real footage in the mix (`beats train --real`): teacher-labelled clips, each named with its
 * sha256 so the recipe says exactly which footage made a model, and the share of every batch they
 * fill (the rest is synthetic).
 */
export interface RealDataRecipe {
  clips: Array<{ file: string; sha256: string; frames: number }>;
  share: number;
  teacher: { name: string; version: string; size: number; threshold: number; ignoreBelow: number };
  maxFramesPerClip: number;
  jpegShare: number;
  /** Share of real samples that are mosaics (src/train/real-clips.ts; absent: none). */
  mosaicShare?: number;
  /** The mosaics' grids, n for n x n, drawn at random (absent: 2x2 only). */
  mosaicGrids?: number[];
  /** Share of real samples with on-screen-display captions painted on (src/train/overlay.ts; absent: none). */
  captionShare?: number;
  /** The real samples' zoom range (absent: src/train/augment.ts's default). */
  zoom?: [number, number];
}

export const defaultRecipe: TrainRecipe = {
  seed: 7,
  steps: 3000,
  batch: 8,
  lr: 0.003,
  data: { scenes: ['street', 'yard'], seeds: [1000, 1999], domain: ['day'], width: 320, height: 240, fps: 10 },
  spec: defaultSpec,
};

export interface Checkpoint {
  format: 'beats-cnn-checkpoint/1';
  step: number;
  recipe: TrainRecipe;
  /** Mean losses of recent steps, for the record. */
  history: Array<{ step: number; loss: number; cls: number; box: number }>;
  weights: Weights;
  /** Adam's state, so a resumed run continues the same trajectory. */
  optimizer?: Array<{ name: string; tensor: tfType.Tensor }>;
}

/** One file: 4-byte header length, JSON header, float32 data. Written atomically. */
export async function saveCheckpoint(file: string, cp: Checkpoint): Promise<void> {
  const entries: Array<{ name: string; shape: number[]; group: 'w' | 'o'; data: Float32Array }> = [];
  for (const [name, t] of cp.weights) entries.push({ name, shape: t.shape, group: 'w', data: (await t.data()) as Float32Array });
  for (const { name, tensor } of cp.optimizer ?? []) entries.push({ name, shape: tensor.shape, group: 'o', data: (await tensor.data()) as Float32Array });
  let offset = 0;
  const header = {
    format: cp.format,
    step: cp.step,
    recipe: cp.recipe,
    history: cp.history,
    tensors: entries.map((e) => {
      const item = { name: e.name, shape: e.shape, group: e.group, offset, length: e.data.length };
      offset += e.data.length;
      return item;
    }),
  };
  const json = Buffer.from(JSON.stringify(header));
  const body = Buffer.alloc(4 + json.length + offset * 4);
  body.writeUInt32LE(json.length, 0);
  json.copy(body, 4);
  let at = 4 + json.length;
  for (const e of entries) {
    Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).copy(body, at);
    at += e.data.byteLength;
  }
  await writeFileAtomic(file, body);
}

export async function loadCheckpoint(tf: Tf, file: string): Promise<Checkpoint> {
  const buf = await readFile(file);
  const length = buf.readUInt32LE(0);
  const header = JSON.parse(buf.subarray(4, 4 + length).toString('utf8')) as Omit<Checkpoint, 'weights' | 'optimizer'> & { tensors: Array<{ name: string; shape: number[]; group: 'w' | 'o'; offset: number; length: number }> };
  if (header.format !== 'beats-cnn-checkpoint/1') throw new Error(`${file}: not a Beats CNN checkpoint`);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + 4 + length, buf.byteOffset + buf.length));
  const weights: Weights = new Map();
  const optimizer: Array<{ name: string; tensor: tfType.Tensor }> = [];
  for (const t of header.tensors) {
    const tensor = tf.tensor(data.slice(t.offset, t.offset + t.length), t.shape, 'float32');
    if (t.group === 'w') weights.set(t.name, tensor);
    else optimizer.push({ name: t.name, tensor });
  }
  return { format: header.format, step: header.step, recipe: header.recipe, history: header.history, weights, optimizer };
}

/** The step from which the current data mix applies (0 unless a resumed run changed it). */
export function stageStart(recipe: TrainRecipe): number {
  return recipe.stages?.at(-1)?.from ?? 0;
}

/**
 * Endless training batches from several synthetic scenes at once, advancing a few frames each time.
 * In a later stage (see `TrainRecipe.stages`) or a warm start each scene is replaced by a fresh seed after about a
 * minute of stream, so a few hundred steps still see many streets and yards rather than a dozen.
 */
export class SyntheticBatches {
  private readonly scenes: Array<{ scene: SyntheticScene; frames: number; slot: number }> = [];
  private readonly random: Random;
  private next = 0;
  private readonly refreshAfter: number;

  constructor(private readonly recipe: TrainRecipe, count = 12) {
    const from = stageStart(recipe);
    this.random = seededRandom(recipe.seed + from);
    // A run from scratch keeps its first dozen scenes (as the shipped recipes did); a later stage or
    // a warm start is short, and sees more streets and yards by refreshing them.
    this.refreshAfter = from > 0 || recipe.init ? 600 : Infinity;
    for (let i = 0; i < count; i++) this.scenes.push(this.open(i));
  }

  private open(slot: number): { scene: SyntheticScene; frames: number; slot: number } {
    const { data } = this.recipe;
    const [lo, hi] = data.seeds;
    const options: SceneOptions = {
      scene: data.scenes[slot % data.scenes.length]!,
      seed: lo + Math.floor(this.random() * (hi - lo + 1)),
      width: data.width,
      height: data.height,
      fps: data.fps,
      domain: data.domain.filter((d) => d !== 'day') as SceneOptions['domain'],
    };
    const scene = new SyntheticScene(options);
    // Start each scene somewhere in its first minute, so the batch is not all empty streets.
    scene.skip(20 + Math.floor(this.random() * 300));
    return { scene, frames: 0, slot };
  }

  take(spec: BeatsCnnSpec, n: number): TrainingSample[] {
    const out: TrainingSample[] = [];
    for (let i = 0; i < n; i++) {
      const at = this.next++ % this.scenes.length;
      if (this.scenes[at]!.frames > this.refreshAfter) this.scenes[at] = this.open(at);
      const entry = this.scenes[at]!;
      const hop = 2 + Math.floor(this.random() * 6);
      entry.frames += hop;
      // Frames depend only on their index: skipping renders nothing and yields the same samples.
      entry.scene.skip(hop - 1);
      const sample = sampleFromSynthetic(spec, entry.scene.next());
      out.push(this.random() < 0.5 ? sample : mirror(spec, sample));
    }
    return out;
  }
}

/** The sample mirrored left to right, boxes with it. */
export function mirror<T extends TrainingSample>(spec: BeatsCnnSpec, s: T): T {
  const w = spec.inputWidth;
  const h = spec.inputHeight;
  const pixels = new Uint8Array(s.pixels.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const src = (y * w + x) * 3;
      const dst = (y * w + (w - 1 - x)) * 3;
      pixels[dst] = s.pixels[src]!;
      pixels[dst + 1] = s.pixels[src + 1]!;
      pixels[dst + 2] = s.pixels[src + 2]!;
    }
  }
  return { ...s, pixels, boxes: s.boxes.map((b) => ({ ...b, box: [w - b.box[2], b.box[1], w - b.box[0], b.box[3]] as [number, number, number, number] })) };
}

export interface StepResult {
  loss: number;
  cls: number;
  box: number;
}

/** Sets an optimizer's learning rate in place (its moments kept); tfjs reads the field on every step but declares it protected. */
export function setLearningRate(optimizer: tfType.Optimizer, rate: number): void {
  (optimizer as unknown as { learningRate: number }).learningRate = rate;
}

/** One optimizer step on a batch; batch-norm moving statistics follow the batch (momentum 0.99). */
export function trainStep(tf: Tf, spec: BeatsCnnSpec, weights: Weights, optimizer: tfType.Optimizer, batch: TrainingSample[]): StepResult {
  const { gw, gh } = gridSize(spec);
  const c = spec.classes.length;
  const n = batch.length;
  const pix = new Float32Array(n * spec.inputHeight * spec.inputWidth * 3);
  const cls = new Float32Array(n * gh * gw * c);
  const clsWeight = new Float32Array(n * gh * gw * c);
  const ltrb = new Float32Array(n * gh * gw * 4);
  const positive = new Float32Array(n * gh * gw);
  batch.forEach((s, i) => {
    pix.set(s.pixels, i * s.pixels.length);
    const t = buildTargets(spec, s.boxes);
    cls.set(t.cls, i * t.cls.length);
    clsWeight.set(t.clsWeight, i * t.clsWeight.length);
    ltrb.set(t.ltrb, i * t.ltrb.length);
    positive.set(t.positive, i * t.positive.length);
  });
  let parts: StepResult = { loss: 0, cls: 0, box: 0 };
  tf.tidy(() => {
    const x = tf.tensor4d(pix, [n, spec.inputHeight, spec.inputWidth, 3]);
    const targets = {
      cls: tf.tensor4d(cls, [n, gh, gw, c]),
      clsWeight: tf.tensor4d(clsWeight, [n, gh, gw, c]),
      ltrb: tf.tensor4d(ltrb, [n, gh, gw, 4]),
      positive: tf.tensor3d(positive, [n, gh, gw]),
    };
    const trainable = [...weights].filter(([name]) => isTrainable(name)).map(([, t]) => t as tfType.Variable);
    let stats: Map<string, { mean: tfType.Tensor1D; variance: tfType.Tensor1D }> | undefined;
    const cost = optimizer.minimize(
      () => {
        const out = forward(tf, spec, weights, x, true);
        // minimize() disposes what its function made; the batch statistics are needed after it.
        stats = new Map([...(out.batchStats ?? [])].map(([k, v]) => [k, { mean: tf.keep(v.mean), variance: tf.keep(v.variance) }]));
        const loss = detectionLoss(tf, strideOf(spec), out.logits, out.boxRaw, targets, spec.clsTarget);
        parts = { loss: 0, cls: loss.cls.dataSync()[0]!, box: loss.box.dataSync()[0]! };
        return loss.total;
      },
      true,
      trainable,
    );
    parts.loss = cost!.dataSync()[0]!;
    for (const [name, s] of stats ?? []) {
      const mean = weights.get(`${name}.bn.mean`) as tfType.Variable;
      const variance = weights.get(`${name}.bn.variance`) as tfType.Variable;
      mean.assign(mean.mul(0.99).add(s.mean.mul(0.01)));
      variance.assign(variance.mul(0.99).add(s.variance.mul(0.01)));
      s.mean.dispose();
      s.variance.dispose();
    }
  });
  return parts;
}

/** Weights as tf.Variables, so the optimizer can change them in place. */
export function asVariables(tf: Tf, weights: Weights): Weights {
  // Unnamed: tf names variables uniquely, so two models can live in one process.
  return new Map([...weights].map(([name, t]) => [name, tf.variable(t, isTrainable(name))]));
}

export { initWeights };
