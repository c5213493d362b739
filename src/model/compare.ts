/**
 * Several detectors scored side by side on one stream against one truth: mAP@0.5, F1 and inference
 * speed of each, as `beats eval --models` prints them. The stream is decoded once, at the largest
 * input any of the models needs, and each model gets its own input made from that frame (as a
 * camera feeding a student and its teacher does). On every frame the models run one after the
 * other in an order that rotates, so the machine's load weighs on all of them alike, and only
 * each model's own work (tensor, run, decode, NMS) is timed.
 */
import { BeatsError } from '../errors.js';
import type { Frame } from '../source/frame.js';
import { replay } from '../source/replay.js';
import { largerOutput, relayoutFrame } from '../source/relayout.js';
import { Detector } from './detector.js';
import { evaluate, type Evaluation, type PredictedFrame, type TruthFrame } from './evaluate.js';
import type { ProviderSettings } from './providers.js';

/** A model to score: `yolox-nano@416` is YOLOX-Nano at input size 416. */
export interface ModelUnderTest {
  ref: string;
  inputSize?: number;
  /** Its own operating threshold for precision, recall and F1 (default: the comparison's). */
  threshold?: number;
}

export function parseModelUnderTest(text: string): ModelUnderTest {
  const m = /^(.+?)(?:@(\d+))?$/.exec(text.trim());
  if (!m || !m[1]) throw new BeatsError(`"${text}" is not a model (NAME, a card's path, or NAME@SIZE)`);
  return { ref: m[1], inputSize: m[2] ? Number(m[2]) : undefined };
}

export interface ModelScore {
  /** As given (`yolox-nano@416`). */
  name: string;
  version: string;
  input: string;
  evaluation: Evaluation;
  /** Inference frames per second: 1000 / the mean of this model's own milliseconds per frame. */
  fps: number;
  msPerFrame: number;
}

export interface CompareOptions {
  threshold: number;
  nmsIou: number;
  runtime: ProviderSettings;
  /** Only frames whose index this accepts are scored (all are decoded); default all. */
  frames?: (index: number) => boolean;
  /** Only detections of these classes are scored (the truth's classes: a teacher's 80 against a student's 3). */
  classes?: readonly string[];
  maxFrames?: number;
  onFrame?: (index: number) => void;
}

async function loadAll(models: readonly ModelUnderTest[], runtime: ProviderSettings): Promise<Detector[]> {
  const loaded: Detector[] = [];
  try {
    for (const m of models) loaded.push(await Detector.load(m.ref, { runtime, inputSize: m.inputSize }));
  } catch (err) {
    await Promise.all(loaded.map((d) => d.close()));
    throw err;
  }
  return loaded;
}

export async function compareModels(url: string, truth: readonly TruthFrame[], models: readonly ModelUnderTest[], options: CompareOptions): Promise<ModelScore[]> {
  if (models.length === 0) throw new BeatsError('no model to score');
  const detectors = await loadAll(models, options.runtime);
  const predictions = detectors.map((): PredictedFrame[] => []);
  const ms = detectors.map(() => 0);
  const accept = options.frames ?? (() => true);
  const truthFrames = new Set(truth.map((t) => t.frame));
  let scored = 0;
  try {
    const output = detectors.map((d) => d.frameOutput()).reduce(largerOutput);
    const score = async (frame: Frame): Promise<void> => {
      if (!accept(frame.index) || !truthFrames.has(frame.index)) return;
      for (let k = 0; k < detectors.length; k++) {
        const i = (k + scored) % detectors.length;
        const detector = detectors[i]!;
        const input = relayoutFrame(frame, detector.frameOutput());
        const started = performance.now();
        const detections = await detector.detect(input, { threshold: 0.01, nmsIou: options.nmsIou, maxDetections: 100 });
        ms[i]! += performance.now() - started;
        const kept = options.classes ? detections.filter((d) => options.classes!.includes(d.label)) : detections;
        predictions[i]!.push({ frame: frame.index, detections: kept.map((d) => ({ label: d.label, score: d.score, box: d.box })) });
      }
      scored++;
      options.onFrame?.(frame.index);
    };
    await replay(url, output, score, { frames: options.maxFrames, camera: 'compare' });
  } finally {
    await Promise.all(detectors.map((d) => d.close()));
  }
  if (scored === 0) throw new BeatsError(`${url}: no frame with truth was decoded`);
  const seen = new Set(predictions[0]!.map((p) => p.frame));
  const scoredTruth = truth.filter((t) => seen.has(t.frame));
  return detectors.map((d, i) => ({
    name: models[i]!.inputSize ? `${models[i]!.ref}@${models[i]!.inputSize}` : models[i]!.ref,
    version: d.card.version,
    input: `${d.inputWidth}x${d.inputHeight}`,
    evaluation: evaluate(scoredTruth, predictions[i]!, models[i]!.threshold ?? options.threshold),
    msPerFrame: ms[i]! / scored,
    fps: (1000 * scored) / ms[i]!,
  }));
}
