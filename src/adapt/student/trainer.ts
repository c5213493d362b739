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
 *   sample (F1 at the camera's threshold): the shadow serves only if held-out F1 does not fall and
 *   replay F1 falls by at most `replayTolerance`. A rejected shadow is thrown away (the weights are
 *   restored, Adam starts again) and the learning rate halves; an accepted one doubles it back.
 *
 * Synchronous and single-threaded: the caller runs it off the frame path (a worker, or the
 * evaluation's simulated stream) and measures its wall time against the CPU share it may take.
 */
import type * as tfType from '@tensorflow/tfjs';
import type { BeatsCnnSpec, Weights } from '../../train/beats-cnn.js';
import { asVariables, mirror, trainStep } from '../../train/beats-train.js';
import type { WeightArrays } from '../../train/beats-export.js';
import { seededRandom, type Random } from '../../train/random.js';
import type { Tf } from '../../train/tf.js';
import { FrameReservoir, type ReservoirBounds, type SupervisedImage } from './reservoir.js';
import { f1On } from './score.js';

export interface StudentTrainerOptions {
  /** F1 of the guard counts detections at or above it (the camera's detection threshold). */
  threshold: number;
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
  seed: number;
}

export const defaultStudentTrainerOptions: StudentTrainerOptions = {
  threshold: 0.35,
  lr: 0.0005,
  batch: 8,
  stepsPerUpdate: 4,
  holdoutEvery: 5,
  holdoutMax: 32,
  minHoldout: 4,
  minTrain: 8,
  reservoir: { maxFrames: 400, maxBytes: 64 * 1024 * 1024 },
  replaySample: 16,
  replayTolerance: 0.02,
  seed: 1,
};

export interface StudentUpdateFigures {
  holdout: { frames: number; f1Before: number; f1After: number };
  replay: { frames: number; f1Before: number; f1After: number };
  /** Mean training loss over the update's steps. */
  loss: number;
  lr: number;
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
  private readonly weights: Weights;
  private readonly reservoir: FrameReservoir;
  private readonly holdout: SupervisedImage[] = [];
  private readonly recent: SupervisedImage[] = [];
  private readonly random: Random;
  private optimizer: tfType.Optimizer;
  private lr: number;
  /** Held-out F1 of the serving weights, while neither they nor the held-out frames changed. */
  private holdoutF1: number | undefined;
  readonly counts = { accepted: 0, rejected: 0, trained: 0, heldOut: 0 };

  constructor(
    private readonly tf: Tf,
    readonly spec: BeatsCnnSpec,
    initial: Weights,
    options: Partial<StudentTrainerOptions> = {},
  ) {
    this.options = { ...defaultStudentTrainerOptions, ...options };
    this.weights = asVariables(tf, initial);
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
    const before = { holdout: (this.holdoutF1 ??= this.score(this.holdout)), replay: this.score(replay) };
    const snapshot = this.snapshot();
    let loss = 0;
    const stepsFrom = performance.now();
    for (let s = 0; s < o.stepsPerUpdate; s++) loss += trainStep(this.tf, this.spec, this.weights, this.optimizer, this.batch()).loss / o.stepsPerUpdate;
    const stepsMs = performance.now() - stepsFrom;
    const after = { holdout: this.score(this.holdout), replay: this.score(replay) };
    const figures: StudentUpdateFigures = {
      holdout: { frames: this.holdout.length, f1Before: before.holdout, f1After: after.holdout },
      replay: { frames: replay.length, f1Before: before.replay, f1After: after.replay },
      loss,
      lr: this.lr,
      durationMs: 0,
      stepsMs,
    };
    const reason = !Number.isFinite(loss) ? 'non_finite' : after.holdout < before.holdout ? 'holdout_f1' : after.replay < before.replay - o.replayTolerance ? 'replay_f1' : undefined;
    if (reason) this.restore(snapshot);
    else this.holdoutF1 = after.holdout;
    snapshot.forEach((t) => t.dispose());
    this.lr = reason ? Math.max(o.lr / 16, this.lr / 2) : Math.min(o.lr, this.lr * 2);
    if (reason) this.resetOptimizer();
    figures.durationMs = performance.now() - started;
    if (reason) {
      this.counts.rejected++;
      return { kind: 'rejected', reason, figures };
    }
    this.counts.accepted++;
    return { kind: 'accepted', figures };
  }

  /** F1 of the serving weights on frames (held-out ones when none are given). */
  score(images: readonly SupervisedImage[] = this.holdout): number {
    return f1On(this.tf, this.spec, this.weights, images, this.options.threshold);
  }

  /** The serving weights, copied out (what exportBeatsOnnx takes). */
  weightArrays(): WeightArrays {
    const out: WeightArrays = new Map();
    for (const [name, t] of this.weights) out.set(name, { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) });
    return out;
  }

  /** The serving weights themselves (for scoring elsewhere); not to be disposed by the caller. */
  get servingWeights(): Weights {
    return this.weights;
  }

  dispose(): void {
    this.weights.forEach((t) => t.dispose());
    this.optimizer.dispose();
  }

  private batch(): SupervisedImage[] {
    const n = this.options.batch;
    const fromRecent = Math.min(this.recent.length, Math.floor(n / 2));
    const picked = [...Array.from({ length: fromRecent }, () => this.recent[Math.floor(this.random() * this.recent.length)]!), ...this.reservoir.sample(n - fromRecent)];
    return picked.map((im) => (this.random() < 0.5 ? im : mirror(this.spec, im)));
  }

  private snapshot(): tfType.Tensor[] {
    return [...this.weights.values()].map((t) => t.clone());
  }

  private restore(snapshot: readonly tfType.Tensor[]): void {
    [...this.weights.values()].forEach((t, i) => (t as tfType.Variable).assign(snapshot[i]!));
  }

  private resetOptimizer(): void {
    this.optimizer.dispose();
    this.optimizer = this.tf.train.adam(this.lr);
  }
}
