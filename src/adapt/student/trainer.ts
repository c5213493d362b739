/**
 * Whole-model adaptation of the Beats CNN (BEATS.md, "The whole model"): every layer trains, from
 * supervised model-input frames (teacher keyframes, verdict-labelled frames), on a shadow of the
 * serving weights, and a guard decides whether the shadow serves.
 *
 * - Supervised frames go either to the held-out set (one in `holdoutEvery`, by the caller's frame
 *   key, so a frame seen again never changes side) or to the replay reservoir (reservoir.ts).
 * - An update is `stepsPerUpdate` Adam steps on batches half from the newest frames and half from
 *   the reservoir, mirrored at random; batch-norm statistics follow the batches as in training.
 * - The guard scores the serving weights and the shadow on the held-out frames and on a replay
 *   sample: the shadow serves (a copy of it becomes the serving weights) only if held-out F1 does
 *   not fall and replay F1 falls by at most `replayTolerance`. F1 is taken at the camera's
 *   threshold (`guard: 'threshold'`, the default), or at each weight set's own best on those frames
 *   (`guard: 'best'`: it forgave updates that moved every score, docs/adaptation.md, so it is an
 *   option for measurements, not what cameras run).
 * - A rejected shadow keeps training: a few steps seldom move F1 on a few dozen frames at once,
 *   and throwing each such update away would keep a site from ever being learnt. The shadow goes
 *   back to the serving weights (Adam starts again, the learning rate halves) only when its loss is
 *   not finite, or when its held-out F1 falls more than `driftTolerance` below the serving weights'
 *   (or after `resetAfterRejections` rejections in a row, when set: taking the shadow back after a
 *   fixed count measured worse on a validation clip). An accepted update doubles the rate back.
 *
 * Synchronous and single-threaded: the caller runs it off the frame path (a worker, or the
 * evaluation's simulated stream) and measures its wall time against the CPU share it may take.
 */
import type * as tfType from '@tensorflow/tfjs';
import type { BeatsCnnSpec, Weights } from '../../train/beats-cnn.js';
import { asVariables, mirror, setLearningRate, trainStep } from '../../train/beats-train.js';
import type { WeightArrays } from '../../train/beats-export.js';
import { seededRandom, type Random } from '../../train/random.js';
import type { Tf } from '../../train/tf.js';
import { FrameReservoir, type ReservoirBounds, type SupervisedImage } from './reservoir.js';
import { f1On, operatingPoint } from './score.js';

export interface StudentTrainerOptions {
  /** The camera's detection threshold: F1 of the guard counts detections at or above it with `guard: 'threshold'`. */
  threshold: number;
  /** Whether the guard scores F1 at `threshold` or at each weight set's best threshold. */
  guard: 'threshold' | 'best';
  /** Adam's learning rate at its largest. */
  lr: number;
  batch: number;
  stepsPerUpdate: number;
  /** One supervised frame in this many is held out (by its key). */
  holdoutEvery: number;
  /** The newest held-out frames kept. */
  holdoutMax: number;
  /** An update waits until this many frames are held out and this many can be trained on. */
  minHoldout: number;
  minTrain: number;
  reservoir: ReservoirBounds;
  /** Frames of the replay sample the guard scores. */
  replaySample: number;
  /** Replay F1 may fall by at most this. */
  replayTolerance: number;
  /** The shadow goes back to the serving weights after this many rejected updates in a row (default never)... */
  resetAfterRejections: number;
  /** ...or as soon as its held-out F1 is more than this below the serving weights'. */
  driftTolerance: number;
  seed: number;
}

export const defaultStudentTrainerOptions: StudentTrainerOptions = {
  threshold: 0.35,
  guard: 'threshold',
  lr: 0.0005,
  batch: 8,
  stepsPerUpdate: 4,
  holdoutEvery: 5,
  holdoutMax: 64,
  minHoldout: 4,
  minTrain: 8,
  reservoir: { maxFrames: 400, maxBytes: 64 * 1024 * 1024 },
  replaySample: 16,
  replayTolerance: 0.02,
  resetAfterRejections: Number.POSITIVE_INFINITY,
  driftTolerance: 0.1,
  seed: 1,
};

export interface StudentUpdateFigures {
  /** `threshold`: where the shadow's held-out F1 was taken (its operating threshold with `guard: 'best'`). */
  holdout: { frames: number; f1Before: number; f1After: number; threshold: number };
  replay: { frames: number; f1Before: number; f1After: number };
  /** Mean training loss over the update's steps. */
  loss: number;
  lr: number;
  /** Whether the shadow went back to the serving weights after this update. */
  reset: boolean;
  durationMs: number;
  /** Of which the optimizer steps. */
  stepsMs: number;
}

export type StudentUpdate =
  | { kind: 'accepted'; figures: StudentUpdateFigures }
  | { kind: 'rejected'; reason: 'holdout_f1' | 'replay_f1' | 'non_finite'; figures: StudentUpdateFigures }
  | { kind: 'waiting'; reason: 'holdout' | 'train' };

export class StudentTrainer {
  private readonly options: StudentTrainerOptions;
  /** What trains: Adam's variables. */
  private readonly shadow: Weights;
  /** What serves: a copy of the shadow as it was when the guard last accepted it. */
  private serving: Weights;
  private readonly reservoir: FrameReservoir;
  private readonly holdout: SupervisedImage[] = [];
  private readonly recent: SupervisedImage[] = [];
  private readonly random: Random;
  private optimizer: tfType.Optimizer;
  private lr: number;
  private rejectedInARow = 0;
  /** Held-out F1 of the serving weights, while neither they nor the held-out frames changed. */
  private holdoutF1: number | undefined;
  readonly counts = { accepted: 0, rejected: 0, resets: 0, trained: 0, heldOut: 0 };

  constructor(
    private readonly tf: Tf,
    readonly spec: BeatsCnnSpec,
    initial: Weights,
    options: Partial<StudentTrainerOptions> = {},
  ) {
    this.options = { ...defaultStudentTrainerOptions, ...options };
    this.shadow = asVariables(tf, initial);
    this.serving = copyOf(this.shadow);
    this.random = seededRandom(this.options.seed);
    this.reservoir = new FrameReservoir(this.options.reservoir, this.random);
    this.lr = this.options.lr;
    this.optimizer = tf.train.adam(this.lr);
  }

  /**
   * A supervised frame; `key` (a frame number, a hash) decides held out or trained, the same every
   * time, unless `use` is 'train' (a verdict's frames: few, and labelled only where the verdict is).
   */
  add(image: SupervisedImage, key: number, use: 'auto' | 'train' = 'auto'): 'holdout' | 'train' {
    const expected = this.spec.inputWidth * this.spec.inputHeight * 3;
    if (image.pixels.length !== expected) throw new RangeError(`supervised frame of ${image.pixels.length} bytes; the model's input takes ${expected} (${this.spec.inputWidth}x${this.spec.inputHeight} RGB)`);
    // A multiplicative hash of the key: keys in steps of the stride (frame 0, 10, 20...) spread over both sides.
    if (use === 'auto' && (Math.imul(key, 2654435761) >>> 0) % this.options.holdoutEvery === 0) {
      this.holdout.push(image);
      if (this.holdout.length > this.options.holdoutMax) this.holdout.shift();
      this.holdoutF1 = undefined;
      this.counts.heldOut++;
      return 'holdout';
    }
    this.reservoir.offer(image);
    this.recent.push(image);
    if (this.recent.length > this.options.batch * 4) this.recent.shift();
    this.counts.trained++;
    return 'train';
  }

  get reservoirSize(): number {
    return this.reservoir.size;
  }

  get holdoutSize(): number {
    return this.holdout.length;
  }

  /** Tries one update (synchronous: the steps and the guard). */
  update(): StudentUpdate {
    const o = this.options;
    if (this.holdout.length < o.minHoldout) return { kind: 'waiting', reason: 'holdout' };
    if (this.reservoir.size < o.minTrain) return { kind: 'waiting', reason: 'train' };
    const started = performance.now();
    const replay = this.reservoir.sample(Math.min(o.replaySample, this.reservoir.size));
    const before = { holdout: (this.holdoutF1 ??= this.guardScore(this.serving, this.holdout).f1), replay: this.guardScore(this.serving, replay).f1 };
    let loss = 0;
    const stepsFrom = performance.now();
    for (let s = 0; s < o.stepsPerUpdate; s++) loss += trainStep(this.tf, this.spec, this.shadow, this.optimizer, this.batch()).loss / o.stepsPerUpdate;
    const stepsMs = performance.now() - stepsFrom;
    const finite = Number.isFinite(loss);
    const shadowHoldout = finite ? this.guardScore(this.shadow, this.holdout) : { f1: 0, threshold: this.options.threshold };
    const after = { holdout: shadowHoldout.f1, replay: finite ? this.guardScore(this.shadow, replay).f1 : 0 };
    const reason = !finite ? 'non_finite' : after.holdout < before.holdout ? 'holdout_f1' : after.replay < before.replay - o.replayTolerance ? 'replay_f1' : undefined;
    const reset = reason !== undefined && (!finite || ++this.rejectedInARow >= o.resetAfterRejections || after.holdout < before.holdout - o.driftTolerance);
    const figures: StudentUpdateFigures = {
      holdout: { frames: this.holdout.length, f1Before: before.holdout, f1After: after.holdout, threshold: shadowHoldout.threshold },
      replay: { frames: replay.length, f1Before: before.replay, f1After: after.replay },
      loss,
      lr: this.lr,
      reset,
      durationMs: 0,
      stepsMs,
    };
    if (reason === undefined) this.accept(after.holdout);
    else if (reset) this.resetShadow();
    figures.durationMs = performance.now() - started;
    if (reason) {
      this.counts.rejected++;
      return { kind: 'rejected', reason, figures };
    }
    this.counts.accepted++;
    return { kind: 'accepted', figures };
  }

  /** F1 of the serving weights on frames (held-out ones when none are given), at the camera's threshold unless told. */
  score(images: readonly SupervisedImage[] = this.holdout, threshold = this.options.threshold): number {
    return f1On(this.tf, this.spec, this.serving, images, threshold);
  }

  /** The serving weights' best-F1 threshold on the held-out frames (never trained on); undefined while none are held out. */
  operatingPoint(): { threshold: number; f1: number; frames: number } | undefined {
    if (this.holdout.length === 0) return undefined;
    return { ...operatingPoint(this.tf, this.spec, this.serving, this.holdout), frames: this.holdout.length };
  }

  /** The serving weights, copied out (what exportBeatsOnnx takes). */
  weightArrays(): WeightArrays {
    const out: WeightArrays = new Map();
    for (const [name, t] of this.serving) out.set(name, { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) });
    return out;
  }

  /** The serving weights themselves (for scoring elsewhere); not to be disposed by the caller. */
  get servingWeights(): Weights {
    return this.serving;
  }

  dispose(): void {
    this.shadow.forEach((t) => t.dispose());
    this.serving.forEach((t) => t.dispose());
    this.optimizer.dispose();
  }

  /** F1 as the guard takes it, and the threshold it was taken at. */
  private guardScore(weights: Weights, images: readonly SupervisedImage[]): { f1: number; threshold: number } {
    if (this.options.guard === 'threshold' || images.length === 0) return { f1: f1On(this.tf, this.spec, weights, images, this.options.threshold), threshold: this.options.threshold };
    return operatingPoint(this.tf, this.spec, weights, images);
  }

  private accept(holdoutF1: number): void {
    this.serving.forEach((t) => t.dispose());
    this.serving = copyOf(this.shadow);
    this.holdoutF1 = holdoutF1;
    this.rejectedInARow = 0;
    this.lr = Math.min(this.options.lr, this.lr * 2);
    setLearningRate(this.optimizer, this.lr);
  }

  /** The shadow goes back to the serving weights; Adam starts again at half the rate. */
  private resetShadow(): void {
    const serving = [...this.serving.values()];
    [...this.shadow.values()].forEach((t, i) => (t as tfType.Variable).assign(serving[i]!));
    this.rejectedInARow = 0;
    this.counts.resets++;
    this.lr = Math.max(this.options.lr / 16, this.lr / 2);
    this.optimizer.dispose();
    this.optimizer = this.tf.train.adam(this.lr);
  }

  private batch(): SupervisedImage[] {
    const n = this.options.batch;
    const fromRecent = Math.min(this.recent.length, Math.floor(n / 2));
    const picked = [...Array.from({ length: fromRecent }, () => this.recent[Math.floor(this.random() * this.recent.length)]!), ...this.reservoir.sample(n - fromRecent)];
    return picked.map((im) => (this.random() < 0.5 ? im : mirror(this.spec, im)));
  }
}

function copyOf(weights: Weights): Weights {
  return new Map([...weights].map(([name, t]) => [name, t.clone()]));
}
