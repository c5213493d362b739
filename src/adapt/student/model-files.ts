/**
 * A Beats CNN as whole-model adaptation needs it: its trainable weights (the training checkpoint
 * that ships beside its ONNX file, `<name>.checkpoint.bin`), and an adapted weight set written back
 * as a model (ONNX and card, atomically) that `beats run` and `beats eval` load like any other.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ModelError } from '../../errors.js';
import { writeFileAtomic } from '../../fs-atomic.js';
import type { ModelCard } from '../../model/card.js';
import { resolveModel } from '../../model/registry.js';
import type { BeatsCnnSpec, Weights } from '../../train/beats-cnn.js';
import { exportBeatsOnnx, type WeightArrays } from '../../train/beats-export.js';
import { loadCheckpoint } from '../../train/beats-train.js';
import type { Tf } from '../../train/tf.js';

export interface StudentModel {
  card: ModelCard;
  spec: BeatsCnnSpec;
  weights: Weights;
  checkpoint: string;
}

/** The checkpoint a Beats CNN's weights train from; a model without one cannot adapt whole. */
export function checkpointOf(onnxPath: string, name: string): string {
  return path.join(path.dirname(onnxPath), `${name}.checkpoint.bin`);
}

export async function loadStudent(tf: Tf, ref: string): Promise<StudentModel> {
  const model = await resolveModel(ref);
  const card = model.card;
  if (card.decoder.kind !== 'beats') throw new ModelError(ref, `is a ${card.decoder.kind} model: only the Beats CNN adapts whole (other models adapt their head)`);
  const checkpoint = checkpointOf(model.onnxPath, card.name);
  if (!existsSync(checkpoint)) throw new ModelError(ref, `has no training checkpoint beside it (${checkpoint}): whole-model adaptation starts from its weights`);
  const cp = await loadCheckpoint(tf, checkpoint);
  // The card's network may take another input than the checkpoint trained at (beats export --input): the same weights.
  const cardSpec = (card.training?.recipe as { spec?: BeatsCnnSpec } | undefined)?.spec;
  const spec = cardSpec && sameWeights(cardSpec, cp.recipe.spec) ? cardSpec : cp.recipe.spec;
  if (spec.inputWidth !== card.input.width || spec.inputHeight !== card.input.height || spec.classes.join() !== card.classes.join()) {
    cp.weights.forEach((t) => t.dispose());
    throw new ModelError(ref, `its checkpoint ${checkpoint} is a ${spec.inputWidth}x${spec.inputHeight} model of ${spec.classes.join(', ')}, its card ${card.input.width}x${card.input.height} of ${card.classes.join(', ')}`);
  }
  return { card, spec, weights: cp.weights, checkpoint };
}

/** Two specs whose networks have the same weights, whatever their input size. */
function sameWeights(a: BeatsCnnSpec, b: BeatsCnnSpec): boolean {
  const shape = (s: BeatsCnnSpec) => JSON.stringify({ classes: s.classes, widths: s.widths, stride: s.stride, context: s.context });
  return shape(a) === shape(b);
}

/** Writes an adapted weight set as `<dir>/<name>.onnx` and its card (the base card's, renamed and re-hashed). */
export async function writeStudentModel(dir: string, name: string, base: ModelCard, spec: BeatsCnnSpec, weights: WeightArrays, note: Record<string, unknown>): Promise<string> {
  const hash = createHash('sha256');
  for (const key of [...weights.keys()].sort()) {
    const { data } = weights.get(key)!;
    hash.update(key).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  const version = `${base.version}+site-${hash.digest('hex').slice(0, 8)}`;
  const bytes = exportBeatsOnnx(spec, weights, { version, docString: `${base.name} adapted whole on one site` });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(path.join(dir, `${name}.onnx`), bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const card: ModelCard = { ...base, name, version, onnx: `${name}.onnx`, description: `${base.name} adapted whole on one site (beats eval --specialize).`, training: { ...(base.training ?? {}), sha256, specialised: note } as ModelCard['training'] };
  const file = path.join(dir, `${name}.json`);
  await writeFileAtomic(file, JSON.stringify(card, null, 2) + '\n');
  return file;
}
