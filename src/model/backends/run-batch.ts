/**
 * One onnxruntime run over the inputs of one or more frames, decoded per frame; shared by the
 * in-process backend and the inference worker. And the probe that says whether a model's batch
 * really is free: a batch of two against two single runs.
 */
import * as ort from 'onnxruntime-node';
import type { ModelCard } from '../card.js';
import { decodeOutput, nmsPerClass, type Candidate } from '../decode.js';
import type { InferItem } from './backend.js';

/** What a run needs to know of the model beyond its session. */
export interface ModelShape {
  card: ModelCard;
  inputWidth: number;
  inputHeight: number;
}

/** One frame's input dims, [1, 3, H, W] or [1, H, W, 3] as the card's layout says. */
export function itemDims(shape: ModelShape): number[] {
  return shape.card.input.layout === 'NCHW' ? [1, 3, shape.inputHeight, shape.inputWidth] : [1, shape.inputHeight, shape.inputWidth, 3];
}

/**
 * Runs `items` as one batch. One frame is fed as it is; several are copied one after the other
 * into `scratch` (one contiguous tensor is what onnxruntime takes; the copy is of the model input
 * only, ~2 MB at 416 px, well under a millisecond), reused from one batch to the next.
 */
export async function runBatch(session: ort.InferenceSession, shape: ModelShape, items: readonly InferItem[], scratch?: { buffer?: Float32Array }): Promise<Candidate[][]> {
  const dims = itemDims(shape);
  const per = dims.reduce((a, b) => a * b, 1);
  for (const [i, item] of items.entries()) {
    if (item.input.length !== per) throw new Error(`frame ${i} of the batch has ${item.input.length} input values, the model takes ${per}`);
  }
  let data: Float32Array;
  if (items.length === 1) data = items[0]!.input;
  else {
    const holder = scratch ?? {};
    if (holder.buffer?.length !== per * items.length) holder.buffer = new Float32Array(per * items.length);
    data = holder.buffer;
    items.forEach((item, i) => data.set(item.input, i * per));
  }
  const card = shape.card;
  const outputs = await session.run({ [card.input.name]: new ort.Tensor('float32', data, [items.length, ...dims.slice(1)]) }, [card.output]);
  const out = outputs[card.output]!;
  if (out.dims[0] !== items.length) throw new Error(`output ${card.output} has batch ${out.dims[0]} for ${items.length} frames`);
  const values = out.data as Float32Array;
  const each = values.length / items.length;
  const itemOut = [1, ...out.dims.slice(1)];
  return items.map((item, i) => {
    const o = item.options;
    const allowed = o.allowed ? new Set(o.allowed) : undefined;
    const candidates = decodeOutput(card, { data: values.subarray(i * each, (i + 1) * each), dims: itemOut }, shape.inputWidth, shape.inputHeight, { threshold: o.threshold, allowed });
    return nmsPerClass(candidates, o.nmsIou, o.maxDetections);
  });
}

/** The raw output of one run, for the probe. */
async function rawRun(session: ort.InferenceSession, card: ModelCard, data: Float32Array, dims: number[]): Promise<Float32Array> {
  const out = await session.run({ [card.input.name]: new ort.Tensor('float32', data, dims) }, [card.output]);
  return Float32Array.from(out[card.output]!.data as Float32Array);
}

/**
 * Whether a batch of two frames gives what two single runs give: undefined when it does, else why
 * not (a fixed batch, a Reshape that folds the batch away). The frames are seeded noise through the
 * card's normalisation, so every value of the output is exercised.
 */
export async function batchProbe(session: ort.InferenceSession, shape: ModelShape): Promise<string | undefined> {
  const dims = itemDims(shape);
  const per = dims.reduce((a, b) => a * b, 1);
  const input = shape.card.input;
  let seed = 12345;
  const noise = () => {
    const frame = new Float32Array(per);
    for (let i = 0; i < per; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const c = input.layout === 'NCHW' ? Math.floor(i / (per / 3)) : i % 3;
      frame[i] = ((seed >>> 24) * input.scale - input.mean[c]!) / input.std[c]!;
    }
    return frame;
  };
  const a = noise();
  const b = noise();
  try {
    const [ra, rb] = [await rawRun(session, shape.card, a, dims), await rawRun(session, shape.card, b, dims)];
    const both = new Float32Array(per * 2);
    both.set(a);
    both.set(b, per);
    const rab = await rawRun(session, shape.card, both, [2, ...dims.slice(1)]);
    if (rab.length !== ra.length + rb.length) return `a batch of 2 gives ${rab.length} output values, not ${ra.length + rb.length}`;
    let worst = 0;
    for (let i = 0; i < rab.length; i++) {
      const want = i < ra.length ? ra[i]! : rb[i - ra.length]!;
      worst = Math.max(worst, Math.abs(rab[i]! - want) / Math.max(1, Math.abs(want)));
    }
    return worst > 1e-3 ? `a batch of 2 differs from single runs (relative ${worst.toExponential(2)})` : undefined;
  } catch (err) {
    return `a batch of 2 does not run (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
  }
}
