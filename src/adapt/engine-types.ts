/**
 * Types shared by the Beats engine (main thread), its core (the training side, in a worker thread)
 * and head versions on disk. No runtime dependencies beyond plain JS: the worker imports this too.
 */
import type { AdaptConfig } from '../config/schema.js';
import type { RejectReason } from '../publish/messages.js';
import type { HeadLevelWeights } from '../model/head-graph.js';

export type { AdaptConfig } from '../config/schema.js';
export type { HeadLevelWeights } from '../model/head-graph.js';

/**
 * A Beats head: per output level, the class weights `weight[c * D + d]` (C x D, row-major) and
 * biases `bias[c]` (the layout of src/model/head-graph.ts, so heads pass between inference and
 * adaptation as they are).
 */
export type Head = readonly HeadLevelWeights[];

/** One supervised cell of a frame: only the cells given count (they are the frame's mask). */
export interface SupervisedCell {
  /** The head level (index in the head) whose feature map the cell is on. */
  level: number;
  /** The cell's centre in the frame, normalised to 0..1 (x to the right, y down): it picks the region. */
  x: number;
  y: number;
  /** The class whose logit is supervised. */
  classId: number;
  /** 1: an object of that class is there; 0: it is not. */
  target: 0 | 1;
  /** The cell's feature vector: the D channels of the level's feature map at the cell. */
  features: Float32Array;
  /**
   * An anchor: not trained on, only offered to the guard's replay sample. What the model detects
   * with confidence and nobody disputed, so that an update that would lose it (a head pushed away
   * from a false alarm's features, and from the true objects' with them) is caught.
   */
  anchor?: boolean;
}

/** What a frame's supervision gives the engine. */
export interface SupervisedFrame {
  /** Stream seconds of the frame (the rate limit runs on stream time). */
  time: number;
  cells: readonly SupervisedCell[];
}

/** A bucket: (level, region, class). Region r = row * grid + column. */
export interface BucketKey {
  level: number;
  region: number;
  classId: number;
}

/** A bucket that fired, as it was when it did. */
export interface FiredBucket extends BucketKey {
  /** Supervised cells in its gradient. */
  n: number;
  /** Miss (y = 1) and false-alarm (y = 0) error energies. */
  ePlus: number;
  eMinus: number;
}

/** A class row moved by an update, and the learning rate it was moved with. */
export interface UpdatedRow {
  level: number;
  classId: number;
  lr: number;
  /** Supervised cells behind the step (over the row's fired buckets). */
  n: number;
}

/** What the guard measured: the figures kept with every version. */
export interface UpdateFigures {
  /** Recent supervised cells never used for training. Loss: mean binary cross-entropy (nats); F1 at 0.5. */
  holdout: { cells: number; lossBefore: number; lossAfter: number; f1Before: number; f1After: number };
  /** Replay reservoir: balanced loss (the mean of the positives' and the negatives' mean BCE). */
  replay: { cells: number; lossBefore: number; lossAfter: number };
  fired: FiredBucket[];
  rows: UpdatedRow[];
  /** Wall milliseconds the update took (step and guard). */
  durationMs: number;
  /** Stream seconds of the frame that triggered it. */
  streamTime: number;
}

export type { RejectReason };

/** Why a fired bucket waits: rate limit (stream time), compute share, too few holdout cells of its class. */
export type DeferReason = 'rate' | 'compute' | 'holdout';

/** The result of one update attempt by the core. */
export type UpdateOutcome =
  | { kind: 'accepted'; head: Head; figures: UpdateFigures }
  | { kind: 'rejected'; reason: Exclude<RejectReason, 'persist'>; figures: UpdateFigures };

/** The core's counters and error energies, as the worker reports them after every frame. */
export interface CoreStats {
  frames: number;
  cellsTrained: number;
  cellsHeldOut: number;
  /** Cells with a non-finite feature, ignored. */
  cellsSkipped: number;
  /** Anchor cells offered to the replay sample. */
  cellsAnchored: number;
  holdoutSize: number;
  replaySize: number;
  attempts: number;
  deferred: Record<DeferReason, number>;
  /** Share of the recent wall time spent training (accumulation and updates), 0..1. */
  trainShare: number;
  /** Wall milliseconds of the last update attempt. */
  lastUpdateMs: number | undefined;
  /** Error energies per region (grid x grid, row-major), summed over classes and levels. */
  missEnergy: number[];
  falseAlarmEnergy: number[];
}

/** Checks that a head's levels have the shapes of another's (the base). Throws RangeError naming the level. */
export function checkSameShape(head: Head, base: Head, what = 'head'): void {
  if (head.length !== base.length) throw new RangeError(`${what} has ${head.length} levels, the base head has ${base.length}`);
  head.forEach((l, i) => {
    const b = base[i]!;
    const [C, D] = b.shape;
    if (l.shape[0] !== C || l.shape[1] !== D || l.weight.length !== C * D || l.bias.length !== C) {
      throw new RangeError(`${what} level ${i} is [${l.shape.join(', ')}] (${l.weight.length} weights, ${l.bias.length} biases), the base head's is [${C}, ${D}]`);
    }
  });
}

export function copyHead(head: Head): HeadLevelWeights[] {
  return head.map((l) => ({ weight: Float32Array.from(l.weight), bias: Float32Array.from(l.bias), shape: [l.shape[0], l.shape[1]] }));
}

/** Region of a normalised position on a grid x grid division of the frame (clamped to the frame). */
export function regionOf(x: number, y: number, grid: number): number {
  const col = Math.min(grid - 1, Math.max(0, Math.floor(x * grid)));
  const row = Math.min(grid - 1, Math.max(0, Math.floor(y * grid)));
  return row * grid + col;
}

/** The classification loss of a head level (its model card's `head[].loss`). */
export type HeadLoss = 'bce' | 'focal';

/** Settings the engine uses; the defaults are those of `cameras[].adapt`. */
export type EngineSettings = AdaptConfig;
