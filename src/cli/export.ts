import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../fs-atomic.js';
import { logger } from '../log.js';
import { gridSize, strideOf } from '../train/beats-cnn.js';
import { BeatsError } from '../errors.js';
import { HEAD_BIAS, HEAD_FEATURES, HEAD_WEIGHT, exportBeatsOnnx, type WeightArrays } from '../train/beats-export.js';
import { loadCheckpoint } from '../train/beats-train.js';
import type { ModelCard } from '../model/card.js';
import { loadTf, type Tf } from '../train/tf.js';

const log = logger('export');

export interface ExportOptions {
  checkpoint: string;
  out: string;
  name: string;
  /**
   * Export for another input size than the run trained at: the network is fully convolutional, so
   * the same weights run at any size that is a multiple of its deepest stride. The card records it.
   */
  input?: { width: number; height: number };
  /** Figures to record in the card (from `beats eval`), merged into `training.figures`. */
  figures?: Record<string, unknown>;
  /**
   * More checkpoints of the same run whose weights are averaged with the checkpoint's (batch-norm
   * statistics included): the mean of a few checkpoints from the end of a run is steadier than any
   * one of them. The card records their steps.
   */
  average?: string[];
}

async function weightArrays(cp: Awaited<ReturnType<typeof loadCheckpoint>>): Promise<WeightArrays> {
  const weights: WeightArrays = new Map();
  for (const [name, t] of cp.weights) weights.set(name, { shape: t.shape, data: (await t.data()) as Float32Array });
  return weights;
}

/** The mean of the checkpoint's weights and those of `others`, which must be checkpoints of the same network. */
async function averaged(tf: Tf, first: string, weights: WeightArrays, others: readonly string[]): Promise<{ weights: WeightArrays; steps: number[] }> {
  const sums = new Map([...weights].map(([name, w]) => [name, { shape: w.shape, data: Float64Array.from(w.data) }]));
  const steps: number[] = [];
  for (const file of others) {
    const checkpoint = await loadCheckpoint(tf, file);
    steps.push(checkpoint.step);
    const other = await weightArrays(checkpoint);
    for (const [name, sum] of sums) {
      const w = other.get(name);
      if (!w || w.shape.join('x') !== sum.shape.join('x')) throw new BeatsError(`--average ${file}: ${w ? `${name} is ${w.shape.join('x')}, not ${sum.shape.join('x')}` : `no ${name}`}: not a checkpoint of ${first}'s network`);
      for (let i = 0; i < w.data.length; i++) sum.data[i]! += w.data[i]!;
    }
    if (other.size !== sums.size) throw new BeatsError(`--average ${file}: ${other.size} weights, ${first} has ${sums.size}`);
  }
  const n = others.length + 1;
  return { weights: new Map([...sums].map(([name, s]) => [name, { shape: s.shape, data: Float32Array.from(s.data, (v) => v / n) }])), steps };
}

/** `beats export`: a training checkpoint → `<name>.onnx` and its model card, both written atomically. */
export async function exportCommand(options: ExportOptions): Promise<{ onnx: string; card: string }> {
  const { tf } = await loadTf();
  const cp = await loadCheckpoint(tf, options.checkpoint);
  let weights = await weightArrays(cp);
  let averagedSteps: number[] | undefined;
  if (options.average?.length) {
    const mean = await averaged(tf, options.checkpoint, weights, options.average);
    weights = mean.weights;
    averagedSteps = [cp.step, ...mean.steps];
  }
  const trained = cp.recipe.spec;
  const spec = options.input ? { ...trained, inputWidth: options.input.width, inputHeight: options.input.height } : trained;
  try {
    gridSize(spec);
  } catch (err) {
    throw new BeatsError(`--input ${spec.inputWidth}x${spec.inputHeight}: ${(err as Error).message}`);
  }
  const resized = spec !== trained;
  // Step and date alone repeat across runs (two runs of 1000 steps on one day); the weights do not.
  const weightsHash = createHash('sha256');
  for (const name of [...weights.keys()].sort()) {
    const { data } = weights.get(name)!;
    weightsHash.update(name).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  const version = `${cp.step}-${new Date().toISOString().slice(0, 10)}-${weightsHash.digest('hex').slice(0, 8)}`;
  const real = cp.recipe.data.real;
  const data = real ? `the synthetic camera and ${real.clips.length} real clips labelled by ${real.teacher.name}@${real.teacher.size}` : 'the synthetic camera';
  const bytes = exportBeatsOnnx(spec, weights, { version, docString: `Beats CNN ${options.name}, trained ${cp.step} steps on ${data}` });
  await mkdir(options.out, { recursive: true });
  const onnxFile = path.join(options.out, `${options.name}.onnx`);
  await writeFileAtomic(onnxFile, bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const last = cp.history.slice(-5);
  const card: ModelCard = {
    name: options.name,
    version,
    description: `The Beats CNN (${options.name}): a compact anchor-free detector for ${spec.classes.join(', ')}, trained by \`beats train\` on ${data}.`,
    license: 'Apache-2.0',
    onnx: `${options.name}.onnx`,
    input: { name: 'images', width: spec.inputWidth, height: spec.inputHeight, layout: 'NCHW', channels: 'RGB', scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1], letterbox: { pad: 114, align: 'center' }, resizable: false },
    output: 'output',
    decoder: { kind: 'beats', stride: strideOf(spec) },
    classes: [...spec.classes],
    head: [{ features: HEAD_FEATURES, weight: HEAD_WEIGHT, bias: HEAD_BIAS, stride: strideOf(spec), loss: 'focal', off_centre: 'negative' }],
    training: {
      // The recipe's spec is the exported network's (what adaptation trains); the run's input, if other, beside it.
      recipe: { ...cp.recipe, spec },
      ...(resized ? { trained_input: `${trained.inputWidth}x${trained.inputHeight}` } : {}),
      steps_done: cp.step,
      ...(averagedSteps ? { averaged_steps: averagedSteps } : {}),
      final_loss: last.length ? last.reduce((s, h) => s + h.loss, 0) / last.length : null,
      sha256,
      ...(options.figures ? { figures: options.figures } : {}),
    },
  };
  const cardFile = path.join(options.out, `${options.name}.json`);
  await writeFileAtomic(cardFile, JSON.stringify(card, null, 2) + '\n');
  log.info(`${onnxFile} (${bytes.length} bytes, sha256 ${sha256.slice(0, 12)}…) and ${cardFile}`);
  return { onnx: onnxFile, card: cardFile };
}
