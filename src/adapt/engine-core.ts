/**
 * The training side of the Beats engine (BEATS.md: local error accumulation, triggers, the update,
 * the guard). Synchronous and single-threaded: the engine runs it in a worker thread
 * (src/adapt/worker.ts), tests run it directly. Everything it keeps is bounded: the buckets are a
 * fixed R*R*C*(D+1) floats per level, the holdout a ring of at most `holdout.max_cells` cells, the
 * replay reservoir at most `replay` cells; nothing per frame is kept beyond those.
 */
import type { Tensor2D } from '@tensorflow/tfjs';
import type { Tf } from '../train/tf.js';
import {
  copyHead,
  checkSameShape,
  regionOf,
  type AdaptConfig,
  type CoreStats,
  type DeferReason,
  type FiredBucket,
  type Head,
  type HeadLevelWeights,
  type HeadLoss,
  type RejectReason,
  type SupervisedFrame,
  type UpdatedRow,
  type UpdateFigures,
  type UpdateOutcome,
} from './engine-types.js';

/** A cell as the holdout and the replay reservoir keep it (its own copy of the features). */
export interface StoredCell {
  level: number;
  region: number;
  classId: number;
  target: 0 | 1;
  features: Float32Array;
}

/** The compute share is measured over this much recent wall time. */
export const COMPUTE_WINDOW_MS = 10_000;
/** A class's learning rate is never halved below the configured one / this. */
export const MIN_LR_DIVISOR = 1024;
/** After an accepted update, a halved learning rate grows back by this factor (up to the configured one). */
export const LR_RECOVERY = 1.25;

// ---------------------------------------------------------------------------------------------
// Small pieces, exported for tests

/** mulberry32: a small seeded PRNG, so that holdout splits and reservoirs are reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** Binary cross-entropy of a logit, computed stably. */
export const bce = (z: number, y: number): number => Math.max(z, 0) - z * y + Math.log1p(Math.exp(-Math.abs(z)));

/** Focal loss parameters of the Beats CNN's training (src/train/beats-train.ts). */
const FOCAL_ALPHA = 0.25;
const FOCAL_GAMMA = 2;

/**
 * d loss / d z for a cell with logit z and target y: sigmoid(z) - y for bce; for the sigmoid focal
 * loss (alpha 0.25, gamma 2) the same derivative of -alpha_t (1 - p_t)^gamma log p_t.
 */
export function lossGradient(z: number, y: 0 | 1, loss: HeadLoss): number {
  const p = sigmoid(z);
  if (loss === 'bce') return p - y;
  if (y === 1) return FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA * (FOCAL_GAMMA * p * Math.log(Math.max(p, 1e-12)) - (1 - p));
  return (1 - FOCAL_ALPHA) * p ** FOCAL_GAMMA * (p - FOCAL_GAMMA * (1 - p) * Math.log(Math.max(1 - p, 1e-12)));
}

/** The logit z = W[c] . f + b[c]. */
export function logit(level: HeadLevelWeights, classId: number, f: Float32Array): number {
  const D = level.shape[1];
  const w = level.weight;
  const o = classId * D;
  let z = level.bias[classId]!;
  for (let d = 0; d < D; d++) z += w[o + d]! * f[d]!;
  return z;
}

/**
 * Mean BCE and F1 of a head on cells, a cell counting positive when its score is at least
 * `threshold` (0.5 by default). F1 is 2TP / (2TP + FP + FN), and 1 when that is 0 / 0.
 */
export function evaluateCells(head: Head, cells: readonly StoredCell[], threshold = 0.5): { loss: number; f1: number; tp: number; fp: number; fn: number } {
  const zThreshold = Math.log(threshold / (1 - threshold));
  let loss = 0;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (const c of cells) {
    const z = logit(head[c.level]!, c.classId, c.features);
    loss += bce(z, c.target);
    const positive = z >= zThreshold;
    if (positive && c.target === 1) tp++;
    else if (positive) fp++;
    else if (c.target === 1) fn++;
  }
  const denominator = 2 * tp + fp + fn;
  return { loss: cells.length > 0 ? loss / cells.length : 0, f1: denominator === 0 ? 1 : (2 * tp) / denominator, tp, fp, fn };
}

/** The replay loss: the mean of the positives' and the negatives' mean BCE (either alone when the other is empty). */
export function balancedLoss(head: Head, positives: readonly StoredCell[], negatives: readonly StoredCell[]): number {
  const p = evaluateCells(head, positives).loss;
  const n = evaluateCells(head, negatives).loss;
  if (positives.length === 0) return n;
  if (negatives.length === 0) return p;
  return (p + n) / 2;
}

/**
 * The guard's verdict on figures: undefined (accept) when the holdout loss did not rise, the holdout
 * F1 did not fall and the replay loss rose by at most epsilon; else the first reason it fails.
 */
export function judge(figures: Pick<UpdateFigures, 'holdout' | 'replay'>, epsilon: number): Exclude<RejectReason, 'persist'> | undefined {
  const h = figures.holdout;
  if (!(h.lossAfter <= h.lossBefore)) return 'holdout_loss';
  if (!(h.f1After >= h.f1Before)) return 'holdout_f1';
  const r = figures.replay;
  if (r.cells > 0 && !(r.lossAfter <= r.lossBefore + epsilon)) return 'replay_loss';
  return undefined;
}

/**
 * Wall time spent training over the last `windowMs`, in fixed bins (so memory does not grow with
 * the frame rate). An update may start only when the busy time in the window plus the expected
 * duration of the update stays within `share` of the window.
 */
export class ComputeBudget {
  private readonly bins: Float64Array;
  private readonly binIds: Float64Array;
  private readonly binMs: number;

  constructor(
    readonly share: number,
    readonly windowMs = COMPUTE_WINDOW_MS,
    binCount = 50,
  ) {
    this.bins = new Float64Array(binCount);
    this.binIds = new Float64Array(binCount).fill(-1);
    this.binMs = windowMs / binCount;
  }

  /** A span of training work, wall milliseconds. */
  record(start: number, end: number): void {
    if (!(end > start)) return;
    const first = Math.floor(start / this.binMs);
    const last = Math.floor(end / this.binMs);
    for (let id = Math.max(first, last - this.bins.length + 1); id <= last; id++) {
      const from = Math.max(start, id * this.binMs);
      const to = Math.min(end, (id + 1) * this.binMs);
      const slot = ((id % this.bins.length) + this.bins.length) % this.bins.length;
      if (this.binIds[slot] !== id) {
        this.binIds[slot] = id;
        this.bins[slot] = 0;
      }
      this.bins[slot]! += to - from;
    }
  }

  /** Busy milliseconds within (now - window, now]. */
  busy(now: number): number {
    const newest = Math.floor(now / this.binMs);
    let sum = 0;
    for (let slot = 0; slot < this.bins.length; slot++) {
      const id = this.binIds[slot]!;
      if (id > newest - this.bins.length && id <= newest) sum += this.bins[slot]!;
    }
    return sum;
  }

  /** Share of the window spent training. */
  usage(now: number): number {
    return this.busy(now) / this.windowMs;
  }

  /**
   * Whether work expected to take `estimateMs` may start now. The estimate counts for at most half
   * the budget, so that work longer than the whole budget (a very slow machine) still runs when the
   * window is quiet, instead of never again.
   */
  allows(now: number, estimateMs: number): boolean {
    const budget = this.share * this.windowMs;
    return this.busy(now) + Math.min(estimateMs, budget / 2) <= budget;
  }
}

/** Reservoir sampling (Vitter's algorithm R): a uniform sample of at most `capacity` of all offered items. */
export class Reservoir<T> {
  readonly items: T[] = [];
  seen = 0;

  constructor(
    readonly capacity: number,
    private readonly random: () => number,
  ) {}

  /** `make` is called only when the item is kept (so a refused cell's features are never copied). */
  offer(make: () => T): void {
    this.seen++;
    if (this.capacity <= 0) return;
    if (this.items.length < this.capacity) this.items.push(make());
    else {
      const j = Math.floor(this.random() * this.seen);
      if (j < this.capacity) this.items[j] = make();
    }
  }
}

/** A ring of the most recent items; `push` returns the one that fell out. */
export class Ring<T> {
  private readonly slots: Array<T | undefined>;
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<T | undefined>(capacity);
  }

  push(item: T): T | undefined {
    if (this.count < this.capacity) {
      this.slots[(this.start + this.count++) % this.capacity] = item;
      return undefined;
    }
    const out = this.slots[this.start];
    this.slots[this.start] = item;
    this.start = (this.start + 1) % this.capacity;
    return out;
  }

  get size(): number {
    return this.count;
  }

  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.slots[(this.start + i) % this.capacity]!);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------

/** The buckets and optimizer state of one head level. Bucket b = region * C + class. */
interface LevelState {
  C: number;
  D: number;
  /**
   * R*R*C*2 gradients of D + 1 numbers: sum of e * [f, 1], kept apart for negative (y = 0) and
   * positive (y = 1) cells, so that the step weighs misses and false alarms alike however many easy
   * negatives a teacher's frame brings. Bucket b, target t: offset ((b * 2) + t) * (D + 1).
   */
  G: Float32Array;
  /** Cells per bucket and target ((b * 2) + t). */
  n: Float64Array;
  ePlus: Float64Array;
  eMinus: Float64Array;
  /** Sum of |f|^2 over the bucket's cells: the step is normalised by their mean. */
  sq: Float64Array;
  /** Momentum per class row (D + 1). */
  velocity: Float32Array;
  /** Learning rate per class. */
  lr: Float64Array;
}

export interface CoreOptions {
  config: AdaptConfig;
  /** The base head (W0, b0): what the L2 pull pulls toward. */
  base: Head;
  /** The head to start from (a resumed version); the base when omitted. */
  head?: Head;
  /** TensorFlow.js (from loadTf()): the optimizer step runs on it. */
  tf: Tf;
  /** Monotonic wall milliseconds, for the compute share (default performance.now). */
  clock?: () => number;
  /** Seed of the holdout split and the reservoirs (default 1). */
  seed?: number;
  /** The compute share's window, wall ms (default COMPUTE_WINDOW_MS). */
  computeWindowMs?: number;
  /** Per level, the loss the model was trained with: the gradient G accumulates (default bce). */
  loss?: readonly HeadLoss[];
  /** The score at which the guard counts a cell positive for its holdout F1: the camera's detection threshold (default 0.5). */
  threshold?: number;
}

interface RowPlan {
  level: number;
  classId: number;
  /** Every bucket of the row holding cells: the step is made from them all. */
  buckets: number[];
}

/** What `bucket()` shows of a bucket. */
export interface BucketView {
  /** Sum of e * [f, 1] (D + 1 numbers). */
  gradient: Float32Array;
  n: number;
  ePlus: number;
  eMinus: number;
}

export class BeatsCore {
  readonly config: AdaptConfig;
  readonly grid: number;
  private readonly tf: Tf;
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly base: HeadLevelWeights[];
  private current: HeadLevelWeights[];
  private readonly levels: LevelState[];
  private readonly loss: readonly HeadLoss[];
  private readonly threshold: number;
  private readonly holdout: Ring<StoredCell>;
  private readonly replayPositives: Reservoir<StoredCell>;
  private readonly replayNegatives: Reservoir<StoredCell>;
  private readonly budget: ComputeBudget;
  private lastAttempt: number | undefined;
  /** Expected duration of the next update (moving average of the last ones), ms. */
  private updateEstimateMs = 0;
  private counters = { frames: 0, cellsTrained: 0, cellsHeldOut: 0, cellsSkipped: 0, cellsAnchored: 0, attempts: 0, lastUpdateMs: undefined as number | undefined };
  private deferred: Record<DeferReason, number> = { rate: 0, compute: 0, holdout: 0 };

  constructor(options: CoreOptions) {
    this.config = options.config;
    this.grid = options.config.grid;
    this.tf = options.tf;
    this.clock = options.clock ?? (() => performance.now());
    this.random = rng(options.seed ?? 1);
    this.base = copyHead(options.base);
    const head = options.head ?? options.base;
    checkSameShape(head, this.base);
    this.current = copyHead(head);
    this.loss = this.base.map((_, i) => options.loss?.[i] ?? 'bce');
    this.threshold = options.threshold ?? 0.5;
    if (!(this.threshold > 0 && this.threshold < 1)) throw new RangeError(`threshold ${this.threshold}: a score strictly between 0 and 1`);
    const R2 = this.grid * this.grid;
    this.levels = this.base.map((l) => {
      const [C, D] = l.shape;
      return {
        C,
        D,
        G: new Float32Array(R2 * C * 2 * (D + 1)),
        n: new Float64Array(R2 * C * 2),
        ePlus: new Float64Array(R2 * C),
        eMinus: new Float64Array(R2 * C),
        sq: new Float64Array(R2 * C),
        velocity: new Float32Array(C * (D + 1)),
        lr: new Float64Array(C).fill(options.config.lr),
      };
    });
    this.holdout = new Ring(options.config.holdout.max_cells);
    const replay = options.config.replay;
    this.replayPositives = new Reservoir(Math.ceil(replay / 2), this.random);
    this.replayNegatives = new Reservoir(Math.floor(replay / 2), this.random);
    this.budget = new ComputeBudget(options.config.max_train_share, options.computeWindowMs ?? COMPUTE_WINDOW_MS);
  }

  /** The current head. Read only: copy it before changing anything. */
  get head(): Head {
    return this.current;
  }

  /**
   * One supervised frame: its cells are accumulated (or held out), then, when buckets fired and the
   * limits allow, one update is tried. Returns what the update did, or undefined when none ran.
   */
  ingest(frame: SupervisedFrame): UpdateOutcome | undefined {
    this.accumulate(frame);
    return this.tryUpdate(frame.time);
  }

  /** Local error accumulation for one supervised frame (no update). */
  accumulate(frame: SupervisedFrame): void {
    const start = this.clock();
    this.counters.frames++;
    // Anchors are not supervision: a frame of anchors only does not age the errors.
    const a = frame.cells.some((c) => !c.anchor) ? this.config.decay : 1;
    for (const s of this.levels) {
      if (a === 1) break;
      for (let b = 0; b < s.ePlus.length; b++) {
        s.ePlus[b]! *= a;
        s.eMinus[b]! *= a;
      }
    }
    const share = this.config.holdout.share;
    for (const cell of frame.cells) {
      const s = this.levels[cell.level];
      if (!s) throw new RangeError(`cell level ${cell.level}: the head has ${this.levels.length} levels`);
      const { C, D } = s;
      if (!(Number.isInteger(cell.classId) && cell.classId >= 0 && cell.classId < C)) throw new RangeError(`cell class ${cell.classId}: level ${cell.level} has ${C} classes`);
      if (cell.features.length !== D) throw new RangeError(`cell features: ${cell.features.length} values, level ${cell.level} has ${D} channels`);
      if (cell.target !== 0 && cell.target !== 1) throw new RangeError(`cell target ${String(cell.target)}: must be 0 or 1`);
      const f = cell.features;
      let sq = 0;
      for (let d = 0; d < D; d++) sq += f[d]! * f[d]!;
      if (!Number.isFinite(sq)) {
        // A NaN or infinite feature would poison its bucket's gradient for good.
        this.counters.cellsSkipped++;
        continue;
      }
      const region = regionOf(cell.x, cell.y, this.grid);
      const stored = (): StoredCell => ({ level: cell.level, region, classId: cell.classId, target: cell.target, features: Float32Array.from(cell.features) });
      if (cell.anchor) {
        this.counters.cellsAnchored++;
        this.offerReplay(cell.target, stored);
        continue;
      }
      if (this.random() < share) {
        this.counters.cellsHeldOut++;
        const out = this.holdout.push(stored());
        // Held-out cells join the replay sample only once they are no longer in the holdout.
        if (out) this.offerReplay(out.target, () => out);
        continue;
      }
      this.counters.cellsTrained++;
      const z = logit(this.current[cell.level]!, cell.classId, f);
      // The error (BEATS.md) drives the triggers; the gradient of the model's own loss drives the step.
      const e = sigmoid(z) - cell.target;
      const grad = this.loss[cell.level] === 'bce' ? e : lossGradient(z, cell.target, this.loss[cell.level]!);
      const b = region * C + cell.classId;
      const bt = b * 2 + cell.target;
      const o = bt * (D + 1);
      for (let d = 0; d < D; d++) s.G[o + d]! += grad * f[d]!;
      s.G[o + D]! += grad;
      s.n[bt]! += 1;
      s.sq[b]! += sq;
      if (cell.target === 1) s.ePlus[b]! += e * e;
      else s.eMinus[b]! += e * e;
      this.offerReplay(cell.target, stored);
    }
    this.budget.record(start, this.clock());
  }

  private offerReplay(target: 0 | 1, make: () => StoredCell): void {
    (target === 1 ? this.replayPositives : this.replayNegatives).offer(make);
  }

  /** Buckets past both thresholds now: n >= n_min and max(E+, E-) >= theta. */
  firedBuckets(): FiredBucket[] {
    const fired: FiredBucket[] = [];
    const { n_min: nMin, theta } = this.config;
    this.levels.forEach((s, level) => {
      for (let b = 0; b < s.ePlus.length; b++) {
        const n = s.n[2 * b]! + s.n[2 * b + 1]!;
        if (n >= nMin && Math.max(s.ePlus[b]!, s.eMinus[b]!) >= theta) {
          fired.push({ level, region: Math.floor(b / s.C), classId: b % s.C, n, ePlus: s.ePlus[b]!, eMinus: s.eMinus[b]! });
        }
      }
    });
    return fired;
  }

  /**
   * An update when buckets fired and the rate limit (stream time), the compute share and the holdout
   * allow; undefined when none ran (a waiting bucket keeps accumulating and fires later).
   */
  tryUpdate(time: number): UpdateOutcome | undefined {
    const fired = this.firedBuckets();
    if (fired.length === 0) return undefined;
    // Stream time that went back (a source that restarted) starts the interval afresh.
    if (this.lastAttempt !== undefined && time < this.lastAttempt) this.lastAttempt = undefined;
    if (this.lastAttempt !== undefined && time - this.lastAttempt < this.config.min_interval_s) {
      this.deferred.rate++;
      return undefined;
    }
    if (!this.budget.allows(this.clock(), this.updateEstimateMs)) {
      this.deferred.compute++;
      return undefined;
    }
    // A class row is updated only when the holdout can judge it: enough held-out cells of its class.
    const rows = this.rowsOf(fired);
    const held = new Map<string, number>();
    for (const c of this.holdout.toArray()) {
      const key = `${c.level}:${c.classId}`;
      held.set(key, (held.get(key) ?? 0) + 1);
    }
    const ready = rows.filter((r) => (held.get(`${r.level}:${r.classId}`) ?? 0) >= this.config.holdout.min_cells);
    if (ready.length === 0) {
      this.deferred.holdout++;
      return undefined;
    }
    const readyKeys = new Set(ready.map((r) => `${r.level}:${r.classId}`));
    return this.update(
      ready,
      fired.filter((f) => readyKeys.has(`${f.level}:${f.classId}`)),
      time,
    );
  }

  /**
   * The step the fired buckets would make now, on a shadow copy: nothing is changed (no bucket
   * reset, no momentum kept). For inspection; `tryUpdate` makes and judges the same step.
   */
  proposeStep(): Head | undefined {
    const fired = this.firedBuckets();
    if (fired.length === 0) return undefined;
    return this.step(this.rowsOf(fired)).shadow;
  }

  /**
   * The class rows of the fired buckets, each with the buckets its step is made from: every bucket
   * of that row holding cells, not the fired ones alone. The trigger is local (BEATS.md), but the row
   * is shared by every region: a step on the fired regions only is biased toward what made them fire
   * (misses, mostly) and lifts every score (docs/adaptation.md, "How a step's gradient is pooled").
   * The row's whole accumulated gradient is the gradient of the supervised cells' loss, as in training.
   */
  private rowsOf(fired: readonly FiredBucket[]): RowPlan[] {
    const rows = new Map<string, RowPlan>();
    for (const f of fired) {
      const key = `${f.level}:${f.classId}`;
      if (rows.has(key)) continue;
      const s = this.levels[f.level]!;
      const buckets: number[] = [];
      for (let region = 0; region < this.grid * this.grid; region++) {
        const b = region * s.C + f.classId;
        if (s.n[2 * b]! + s.n[2 * b + 1]! > 0) buckets.push(b);
      }
      rows.set(key, { level: f.level, classId: f.classId, buckets });
    }
    return [...rows.values()];
  }

  /** One optimizer step (TensorFlow.js) of the rows' class rows on a shadow copy of the current head. */
  private step(rows: readonly RowPlan[]): { shadow: HeadLevelWeights[]; velocities: Map<RowPlan, Float32Array>; updated: UpdatedRow[] } {
    const { momentum, l2_to_base: lambda } = this.config;
    const shadow = copyHead(this.current);
    const velocities = new Map<RowPlan, Float32Array>();
    const updated: UpdatedRow[] = [];
    const byLevel = new Map<number, RowPlan[]>();
    for (const r of rows) byLevel.set(r.level, [...(byLevel.get(r.level) ?? []), r]);
    for (const [level, plans] of byLevel) {
      const s = this.levels[level]!;
      const { D } = s;
      const D1 = D + 1;
      const k = plans.length;
      const cur = this.current[level]!;
      const base = this.base[level]!;
      const w = new Float32Array(k * D1);
      const w0 = new Float32Array(k * D1);
      const g = new Float32Array(k * D1);
      const v = new Float32Array(k * D1);
      const lr = new Float32Array(k);
      const lam = new Float32Array(k);
      plans.forEach((p, i) => {
        const c = p.classId;
        w.set(cur.weight.subarray(c * D, (c + 1) * D), i * D1);
        w[i * D1 + D] = cur.bias[c]!;
        w0.set(base.weight.subarray(c * D, (c + 1) * D), i * D1);
        w0[i * D1 + D] = base.bias[c]!;
        v.set(s.velocity.subarray(c * D1, (c + 1) * D1), i * D1);
        // The sum of the row's gradient over all its cells (where the model is at its training
        // optimum, a good teacher on its own domain, that sum is about zero whatever fired), divided
        // as detectors divide their training loss: by the positives (not the fired buckets' alone,
        // which lets a teacher's frames lift every score: docs/adaptation.md). Negatives alone
        // (false-alarm verdicts): by their number.
        let negatives = 0;
        let positives = 0;
        let sq = 0;
        for (const b of p.buckets) {
          negatives += s.n[2 * b]!;
          positives += s.n[2 * b + 1]!;
          sq += s.sq[b]!;
          for (let d = 0; d < 2 * D1; d++) g[i * D1 + (d % D1)]! += s.G[2 * b * D1 + d]!;
        }
        const n = negatives + positives;
        const per = positives > 0 ? positives : n;
        for (let d = 0; d < D1; d++) g[i * D1 + d]! /= per;
        // Normalised step (NLMS): in units of the mean squared norm of [f, 1] over the cells, so
        // that lr means the same for any model's features; the pull is scaled alike.
        const m = sq / n + 1;
        lr[i] = s.lr[c]! / m;
        lam[i] = lambda * m;
        updated.push({ level, classId: c, lr: s.lr[c]!, n });
      });
      const tf = this.tf;
      const [W2, V2] = tf.tidy((): [Tensor2D, Tensor2D] => {
        const W = tf.tensor2d(w, [k, D1]);
        const W0 = tf.tensor2d(w0, [k, D1]);
        const grad = tf.tensor2d(g, [k, D1]).add(W.sub(W0).mul(tf.tensor2d(lam, [k, 1])));
        const velocity = tf.tensor2d(v, [k, D1]).mul(momentum).add<Tensor2D>(grad);
        return [W.sub<Tensor2D>(velocity.mul<Tensor2D>(tf.tensor2d(lr, [k, 1]))), velocity];
      });
      const wNext = W2.dataSync<'float32'>();
      const vNext = V2.dataSync<'float32'>();
      W2.dispose();
      V2.dispose();
      const out = shadow[level]!;
      plans.forEach((p, i) => {
        const c = p.classId;
        out.weight.set(wNext.subarray(i * D1, i * D1 + D), c * D);
        out.bias[c] = wNext[i * D1 + D]!;
        velocities.set(p, vNext.slice(i * D1, (i + 1) * D1));
      });
    }

    return { shadow, velocities, updated };
  }

  private update(rows: RowPlan[], fired: FiredBucket[], time: number): UpdateOutcome {
    const start = this.clock();
    this.lastAttempt = time;
    this.counters.attempts++;
    const { shadow, velocities: newVelocity, updated } = this.step(rows);

    // The guard: the shadow head against the current one.
    const holdout = this.holdout.toArray();
    // F1 where the camera publishes: a head that lifts background cells over the detection
    // threshold but not over 0.5 makes false alarms that an F1 at 0.5 would not see.
    const before = evaluateCells(this.current, holdout, this.threshold);
    const after = evaluateCells(shadow, holdout, this.threshold);
    // The holdout's loss is balanced like the replay's: a teacher's frame is mostly easy negatives.
    const heldPositives = holdout.filter((c) => c.target === 1);
    const heldNegatives = holdout.filter((c) => c.target === 0);
    before.loss = balancedLoss(this.current, heldPositives, heldNegatives);
    after.loss = balancedLoss(shadow, heldPositives, heldNegatives);
    const pos = this.replayPositives.items;
    const neg = this.replayNegatives.items;
    const figures: UpdateFigures = {
      holdout: { cells: holdout.length, lossBefore: before.loss, lossAfter: after.loss, f1Before: before.f1, f1After: after.f1 },
      replay: { cells: pos.length + neg.length, lossBefore: balancedLoss(this.current, pos, neg), lossAfter: balancedLoss(shadow, pos, neg) },
      fired,
      rows: updated,
      durationMs: 0,
      streamTime: time,
    };
    const reason = judge(figures, this.config.epsilon);

    // The buckets of the stepped rows start again, whatever the verdict (their gradient was used);
    // the other rows' keep accumulating.
    for (const p of rows) {
      const s = this.levels[p.level]!;
      for (const b of p.buckets) {
        s.G.fill(0, 2 * b * (s.D + 1), (2 * b + 2) * (s.D + 1));
        s.n[2 * b] = 0;
        s.n[2 * b + 1] = 0;
        s.sq[b] = 0;
        s.ePlus[b] = 0;
        s.eMinus[b] = 0;
      }
    }
    for (const p of rows) {
      const s = this.levels[p.level]!;
      const D1 = s.D + 1;
      if (reason === undefined) {
        s.velocity.set(newVelocity.get(p)!, p.classId * D1);
        s.lr[p.classId] = Math.min(this.config.lr, s.lr[p.classId]! * LR_RECOVERY);
      } else {
        s.velocity.fill(0, p.classId * D1, (p.classId + 1) * D1);
        s.lr[p.classId] = Math.max(this.config.lr / MIN_LR_DIVISOR, s.lr[p.classId]! / 2);
      }
    }
    if (reason === undefined) this.current = shadow;

    const end = this.clock();
    this.budget.record(start, end);
    figures.durationMs = end - start;
    this.counters.lastUpdateMs = figures.durationMs;
    this.updateEstimateMs = this.counters.attempts === 1 ? figures.durationMs : 0.5 * this.updateEstimateMs + 0.5 * figures.durationMs;
    return reason === undefined ? { kind: 'accepted', head: copyHead(shadow), figures } : { kind: 'rejected', reason, figures };
  }

  /**
   * A new current head (a rollback, or a restart from a version): buckets, momentum and learning
   * rates start afresh (their gradients were of the old head); the holdout and the replay reservoir
   * stay (features do not depend on the head).
   */
  reset(head: Head): void {
    checkSameShape(head, this.base);
    this.current = copyHead(head);
    for (const s of this.levels) {
      s.G.fill(0);
      s.n.fill(0);
      s.ePlus.fill(0);
      s.eMinus.fill(0);
      s.sq.fill(0);
      s.velocity.fill(0);
      s.lr.fill(this.config.lr);
    }
    this.lastAttempt = undefined;
  }

  /** A copy of a bucket's state. */
  bucket(level: number, region: number, classId: number): BucketView {
    const s = this.levels[level]!;
    const b = region * s.C + classId;
    const D1 = s.D + 1;
    const gradient = s.G.slice(2 * b * D1, (2 * b + 1) * D1);
    for (let d = 0; d < D1; d++) gradient[d]! += s.G[(2 * b + 1) * D1 + d]!;
    return { gradient, n: s.n[2 * b]! + s.n[2 * b + 1]!, ePlus: s.ePlus[b]!, eMinus: s.eMinus[b]! };
  }

  learningRate(level: number, classId: number): number {
    return this.levels[level]!.lr[classId]!;
  }

  /** The held-out cells, oldest first (copies of the list, the cells themselves shared: do not change them). */
  holdoutCells(): StoredCell[] {
    return this.holdout.toArray();
  }

  replayCells(): { positives: readonly StoredCell[]; negatives: readonly StoredCell[] } {
    return { positives: this.replayPositives.items, negatives: this.replayNegatives.items };
  }

  /** What the core holds, in numbers of floats and cells: constant but for the capped holdout and replay. */
  memory(): { bucketFloats: number; holdoutCells: number; replayCells: number; holdoutCapacity: number; replayCapacity: number } {
    return {
      bucketFloats: this.levels.reduce((sum, s) => sum + s.G.length, 0),
      holdoutCells: this.holdout.size,
      replayCells: this.replayPositives.items.length + this.replayNegatives.items.length,
      holdoutCapacity: this.holdout.capacity,
      replayCapacity: this.replayPositives.capacity + this.replayNegatives.capacity,
    };
  }

  stats(): CoreStats {
    const R2 = this.grid * this.grid;
    const missEnergy = new Array<number>(R2).fill(0);
    const falseAlarmEnergy = new Array<number>(R2).fill(0);
    for (const s of this.levels) {
      for (let b = 0; b < s.ePlus.length; b++) {
        const r = Math.floor(b / s.C);
        missEnergy[r]! += s.ePlus[b]!;
        falseAlarmEnergy[r]! += s.eMinus[b]!;
      }
    }
    return {
      frames: this.counters.frames,
      cellsTrained: this.counters.cellsTrained,
      cellsHeldOut: this.counters.cellsHeldOut,
      cellsSkipped: this.counters.cellsSkipped,
      cellsAnchored: this.counters.cellsAnchored,
      holdoutSize: this.holdout.size,
      replaySize: this.replayPositives.items.length + this.replayNegatives.items.length,
      attempts: this.counters.attempts,
      deferred: { ...this.deferred },
      trainShare: this.budget.usage(this.clock()),
      lastUpdateMs: this.counters.lastUpdateMs,
      missEnergy,
      falseAlarmEnergy,
    };
  }
}
