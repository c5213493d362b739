/**
 * A Beats CNN's detections on supervised frames, straight from its TensorFlow.js weights (what the
 * whole-model guard and the specialisation curve score), in the layout the exported ONNX gives:
 * the same decoder and NMS as inference, so a weight set scores here as it will serve.
 */
import type * as tfType from '@tensorflow/tfjs';
import { predict, type BeatsCnnSpec, type Weights } from '../../train/beats-cnn.js';
import type { Tf } from '../../train/tf.js';
import { decodeBeats, nmsPerClass } from '../../model/decode.js';
import { evaluate, type PredictedFrame, type TruthFrame } from '../../model/evaluate.js';
import type { SupervisedImage } from './reservoir.js';

/** Frames per forward pass: bounds the activations held at once. */
const CHUNK = 8;

/** Detections (input pixels, scores from `floor` up) of each image, in order. */
export function detectImages(tf: Tf, spec: BeatsCnnSpec, weights: Weights, images: readonly Pick<SupervisedImage, 'pixels'>[], floor: number): PredictedFrame['detections'][] {
  const out: PredictedFrame['detections'][] = [];
  const plane = spec.inputWidth * spec.inputHeight * 3;
  for (let at = 0; at < images.length; at += CHUNK) {
    const chunk = images.slice(at, at + CHUNK);
    const pix = new Float32Array(chunk.length * plane);
    chunk.forEach((im, i) => pix.set(im.pixels, i * plane));
    const result = tf.tidy(() => predict(tf, spec, weights, tf.tensor4d(pix, [chunk.length, spec.inputHeight, spec.inputWidth, 3]) as tfType.Tensor4D));
    const data = result.dataSync() as Float32Array;
    const [, cells, width] = result.shape;
    result.dispose();
    for (let i = 0; i < chunk.length; i++) {
      const one = data.subarray(i * cells * width, (i + 1) * cells * width);
      const kept = nmsPerClass(decodeBeats({ data: one, dims: [1, cells, width] }, { threshold: floor }), 0.45, 100);
      out.push(kept.map((c) => ({ label: spec.classes[c.classId] ?? `class${c.classId}`, score: c.score, box: c.box })));
    }
  }
  return out;
}

/** The images' boxes as truth frames (numbered by position), for `evaluate`. */
export function truthOf(spec: BeatsCnnSpec, images: readonly SupervisedImage[]): TruthFrame[] {
  return images.map((im, i) => ({
    frame: i,
    boxes: im.boxes.filter((b) => b.classId >= 0).map((b) => ({ label: spec.classes[b.classId]!, box: b.box, ...(b.ignore ? { ignore: true } : {}) })),
  }));
}

/** F1 at `threshold` of a weight set on supervised images (1 when there is nothing to find and nothing found). */
export function f1On(tf: Tf, spec: BeatsCnnSpec, weights: Weights, images: readonly SupervisedImage[], threshold: number): number {
  if (images.length === 0) return 0;
  const detections = detectImages(tf, spec, weights, images, threshold);
  const result = evaluate(truthOf(spec, images), detections.map((d, frame) => ({ frame, detections: d })), threshold);
  const truths = Object.values(result.perClass).reduce((s, c) => s + c.truths, 0);
  const found = Object.values(result.perClass).reduce((s, c) => s + c.detections, 0);
  return truths === 0 && found === 0 ? 1 : result.f1;
}

/**
 * The threshold (in steps of 0.05, from `floor`) at which a weight set's F1 on supervised images is
 * best, and that F1: a model's operating point chosen on frames it was not trained on.
 */
export function operatingPoint(tf: Tf, spec: BeatsCnnSpec, weights: Weights, images: readonly SupervisedImage[], floor = 0.05): { threshold: number; f1: number } {
  if (images.length === 0) throw new RangeError('an operating point needs at least one supervised image');
  const detections = detectImages(tf, spec, weights, images, floor);
  const { best } = evaluate(truthOf(spec, images), detections.map((d, frame) => ({ frame, detections: d })), floor);
  return { threshold: best.threshold, f1: best.f1 };
}
