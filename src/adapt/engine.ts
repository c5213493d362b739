/**
 * The Beats engine (BEATS.md): on-device adaptation of a camera's Beats head from supervised
 * frames, off the inference path.
 *
 * The main-thread side is this class. `submit(frame)` packs a frame's supervised cells for a worker
 * thread (src/adapt/worker.ts), returning at once, and posts them in batches (a message and its
 * acknowledgement per frame would cost the frame path a tenth of a beats-s inference); the
 * worker runs the core (src/adapt/engine-core.ts): local error accumulation in (region, class)
 * buckets, triggers, an optimizer step on a shadow head (TensorFlow.js), the guard. Accepted heads
 * become versions on disk (src/adapt/versions.ts) and come out of `updates$` with their version
 * number; inference swaps them in between two frames (`HeadSwappableSession.setHead`,
 * src/model/head.ts).
 *
 * How it behaves
 * - Buckets: per head level, a bucket per (region, class), region r of an R x R grid (R = grid) from
 *   the cell's normalised centre. Each keeps G = sum of e * [f, 1] (the gradient of the binary
 *   cross-entropy of its class row, e = sigmoid(z) - y), n, and the error energies E+ (sum of e^2 over
 *   cells with y = 1: misses) and E- (y = 0: false alarms). E+ and E- are multiplied by `decay` at
 *   every supervised frame; G and n are sums since the bucket last fired (BEATS.md decays only the
 *   energies). Memory: R*R*C*(D+1) float32 per level, plus four numbers per bucket.
 * - Triggers: a bucket fires when n >= n_min and max(E+, E-) >= theta. An update then starts unless
 *   the last attempt was less than min_interval_s ago in stream time, or the training share of the
 *   last 10 s of wall time (accumulation and updates, measured) plus the expected duration of the
 *   update (the mean of the last ones, counted for at most half the budget so that a machine too
 *   slow for the budget still trains when the window is quiet) would exceed max_train_share, or the
 *   holdout has fewer than holdout.min_cells cells of the fired class (it could not judge it). A
 *   waiting bucket keeps accumulating.
 * - Update: each fired class row [W_c, b_c] (its fired buckets pooled: g = sum G / sum n) takes one
 *   SGD-with-momentum step on g + lambda' (w - w0) in TensorFlow.js, on a shadow copy of the head.
 *   The step is normalised (NLMS): the learning rate is divided by m, the mean of |[f, 1]|^2 over the
 *   row's cells, and lambda' = l2_to_base * m, so `lr` and `l2_to_base` mean the same for any model:
 *   with lr 1 a cell's logit moves by about its error, and every update takes back lr * l2_to_base of
 *   the drift from the base. Fired buckets are reset, accepted or not; the others keep accumulating.
 * - Guard: the shadow against the current head on (a) the holdout, a random `holdout.share` of the
 *   supervised cells, never trained on, the last `holdout.max_cells` of them kept, and (b) the replay
 *   reservoir, a uniform sample of everything supervised so far (half positives, half negatives,
 *   `replay` cells in all; held-out cells join it when they leave the holdout). Accepted iff the
 *   holdout loss (mean BCE) does not rise, the holdout F1 at the camera's detection threshold does
 *   not fall (an update that lifts background over it makes false alarms), and the replay loss
 *   (the mean of the positives' and the negatives' mean BCE) rises by at most epsilon. A rejected
 *   update halves its classes' learning rates (down to lr / 1024) and clears their momentum; each
 *   accepted one grows them back by 25 %, up to lr.
 * - Versions: the engine starts from the store's latest version (a restart resumes), writes every
 *   accepted head before announcing it (a head that cannot be written is rejected, reason
 *   `persist`, and the worker is put back on the last written head), and `rollback(v | 'base')`
 *   writes a new version holding that head (versions.ts).
 * - Faults: a worker that throws or exits is logged and counted, and a new one is started from the
 *   last good (written) head, at once for the first fault and with a backoff doubling from 0.5 s up
 *   to 30 s for faults that follow within a minute. Its buckets, holdout and reservoir are lost.
 *   Frames submitted meanwhile are dropped (counted); so are frames past `maxPendingFrames` waiting
 *   for the worker, so memory stays bounded whatever the speeds.
 *
 * Defaults (cameras[].adapt) and why:
 * - grid 4, n_min 8, decay 0.99, min_interval_s 2, max_train_share 0.2: BEATS.md's.
 * - theta 2: the energy of n_min (8) cells each on the wrong side of the decision threshold
 *   (e = 0.5, e^2 = 0.25), or in steady state with decay 0.99, an error energy of 0.02 per
 *   supervised frame (one cell a frame wrong by 0.14). Confident correct cells (e ~ 0.01..0.05) of a
 *   bucket with ~20 cells a frame sit an order of magnitude below it, so a well-calibrated region
 *   does not fire; lower values fire on fewer, noisier cells.
 * - lr 1, momentum 0.5 (normalised SGD): a cell's logit moves by about its error per update, so a
 *   confident miss (z = -3) is fixed in a few updates (a few seconds at min_interval_s 2); momentum
 *   carries the direction across updates of a row without overshooting. Not Adam: with one step
 *   per update its first steps are sign steps that move every coordinate, noise included, by the
 *   full learning rate. (Neighbouring values compared: docs/adaptation.md, "The engine's defaults".)
 * - l2_to_base 0.01: each update takes back 1 % of the drift from the base; the pull balances the data
 *   when the remaining error is ~ l2_to_base times the logit shift (e ~ 0.05 for a shift of 5).
 * - epsilon 0.01 nats: a head's replay loss is ~0.05..0.3; 0.01 is noise-level there, while a head
 *   that forgets a class of the earlier scene raises it by far more.
 * - holdout share 0.2, max_cells 512, min_cells 4: one cell in five kept out is the usual
 *   validation split; 512 recent cells judge an update in well under a millisecond; 4 cells of a
 *   class at the least before its row may change.
 * - replay 2000 cells: 2000 x D floats (512 KB for D = 64) and under a millisecond to evaluate; a
 *   uniform sample, so it stays mostly the earlier scenes for a long time after a shift.
 * - keep_versions 100: a history to roll back through that stays small on disk.
 */
import { Worker } from 'node:worker_threads';
import { Subject, type Observable } from 'rxjs';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { packFrame, type FromWorker, type PackedFrame, type ToWorker, type WorkerInit, type WorkerMemory } from './engine-protocol.js';
import { MemoryRequests } from './worker-memory.js';
import {
  copyHead,
  type AdaptConfig,
  type CoreStats,
  type DeferReason,
  type Head,
  type HeadLoss,
  type RejectReason,
  type SupervisedFrame,
  type UpdateFigures,
} from './engine-types.js';
import type { HeadVersion, RollbackTarget, VersionInfo, VersionStore } from './versions.js';
import { workerBootstrap } from './worker-bootstrap.js';

export * from './engine-types.js';
export type { WorkerMemory } from './engine-protocol.js';
export type { HeadVersion, RollbackTarget, VersionInfo } from './versions.js';
export { VersionError, VersionStore, versionsDir } from './versions.js';
export { cellFeatures, supervisedCell, type FeatureMapView } from './engine-cells.js';

/** What `updates$` emits. Every event that changes the head carries it: swap it into inference. */
export type EngineEvent =
  | { kind: 'accepted'; camera: string; version: number; parent: number; head: Head; figures: UpdateFigures; at: number }
  | { kind: 'rejected'; camera: string; reason: RejectReason; figures: UpdateFigures; at: number }
  | { kind: 'rolled_back'; camera: string; version: number; target: RollbackTarget; replaces: number; head: Head; at: number };

/** Counters for `<prefix>/<camera>/model` and the metrics. Energies: rows of the R x R grid, top first. */
export interface EngineStatus {
  camera: string;
  /** The version of the head inference should run (0: the base model's). */
  version: number;
  accepted: number;
  rejected: number;
  rolledBack: number;
  rejectedBy: Record<RejectReason, number>;
  /** Frames on which fired buckets waited, by reason. */
  deferred: Record<DeferReason, number>;
  /** Epoch ms of the last update attempt's result (accepted or rejected), and of the last accepted one. */
  lastUpdateAt: number | undefined;
  lastAcceptedAt: number | undefined;
  /** Wall ms of the last update attempt (step and guard). */
  lastUpdateMs: number | undefined;
  /** Share of the last 10 s the worker spent training. */
  trainShare: number;
  framesSubmitted: number;
  framesDropped: number;
  framesPending: number;
  cellsTrained: number;
  cellsHeldOut: number;
  cellsSkipped: number;
  cellsAnchored: number;
  holdoutSize: number;
  replaySize: number;
  worker: { up: boolean; faults: number; restarts: number; lastError: string | undefined };
  persistFailures: number;
  grid: number;
  /** E+ + E- per region, summed over classes and levels. */
  errorEnergy: number[][];
  missEnergy: number[][];
  falseAlarmEnergy: number[][];
}

export interface BeatsEngineOptions {
  camera: string;
  /** cameras[].adapt (parsed: defaults filled in). `enabled` is the caller's business. */
  config: AdaptConfig;
  /** The camera's versions; its base head is the model's own (W0, b0). */
  store: VersionStore;
  /** Frames submitted and not yet processed by the worker; past it, submit drops (default 32). */
  maxPendingFrames?: number;
  /**
   * Submitted frames go to the worker `frames` at a time, or `ms` after the first of a batch when
   * fewer come (default 8 frames, 1000 ms: at 10 fps, a message every 0.8 s).
   */
  batch?: { frames: number; ms: number };
  /** Seed of the holdout split and the reservoirs (default 1). */
  seed?: number;
  /** Per head level, the loss the model was trained with (its card's head[].loss; default bce). */
  loss?: HeadLoss[];
  /** The camera's detection threshold: the guard's holdout F1 is counted there (default 0.5). */
  threshold?: number;
  /** Restart backoff after repeated worker faults (default 500 ms doubling to 30 s). */
  restart?: { initialMs: number; maxMs: number };
  /** Tests: the first worker throws when it gets its Nth frame. */
  faultAtFrame?: number;
}

const emptyStats = (grid: number): CoreStats => ({
  frames: 0,
  cellsTrained: 0,
  cellsHeldOut: 0,
  cellsSkipped: 0,
  cellsAnchored: 0,
  holdoutSize: 0,
  replaySize: 0,
  attempts: 0,
  deferred: { rate: 0, compute: 0, holdout: 0 },
  trainShare: 0,
  lastUpdateMs: undefined,
  missEnergy: new Array<number>(grid * grid).fill(0),
  falseAlarmEnergy: new Array<number>(grid * grid).fill(0),
});

/** A worker that lived this long without a fault resets the restart backoff. */
const STABLE_MS = 60_000;

export class BeatsEngine {
  readonly camera: string;
  readonly config: AdaptConfig;
  private readonly store: VersionStore;
  private readonly base: Head;
  private readonly log = logger('adapt');
  private readonly events = new Subject<EngineEvent>();
  /** Accepted, rejected and rolled-back heads, in order; completes on close. */
  readonly updates$: Observable<EngineEvent> = this.events.asObservable();
  private current: Head;
  private currentVersion: number;
  private worker: Worker | undefined;
  private workerStartedAt = 0;
  private generation = 0;
  private pending = 0;
  private readonly maxPending: number;
  private readonly batch: { frames: number; ms: number };
  /** Packed frames not yet posted (counted in `pending`). */
  private outbox: PackedFrame[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushSoon: NodeJS.Immediate | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private chainDepth = 0;
  private closed = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private consecutiveFaults = 0;
  private faultAtFrame: number | undefined;
  private readonly seed: number;
  private readonly loss: HeadLoss[] | undefined;
  private readonly threshold: number | undefined;
  private readonly restart: { initialMs: number; maxMs: number };
  private waiters: Array<() => void> = [];
  /** Memory requests to the worker waiting for their answer. */
  private readonly memoryRequests = new MemoryRequests();
  /** The live worker's last stats, and the sums of those of the workers before it. */
  private stats: CoreStats;
  private carried: CoreStats;
  private counts = {
    accepted: 0,
    rejected: 0,
    rolledBack: 0,
    rejectedBy: { holdout_loss: 0, holdout_f1: 0, replay_loss: 0, replay_f1: 0, non_finite: 0, persist: 0 } as Record<RejectReason, number>,
    lastUpdateAt: undefined as number | undefined,
    lastAcceptedAt: undefined as number | undefined,
    framesSubmitted: 0,
    framesDropped: 0,
    faults: 0,
    restarts: 0,
    lastError: undefined as string | undefined,
    persistFailures: 0,
  };

  private constructor(options: BeatsEngineOptions, head: Head, version: number) {
    this.camera = options.camera;
    this.config = options.config;
    this.store = options.store;
    this.base = options.store.baseHead();
    this.current = head;
    this.currentVersion = version;
    this.maxPending = options.maxPendingFrames ?? 32;
    this.batch = options.batch ?? { frames: 8, ms: 1000 };
    this.seed = options.seed ?? 1;
    this.loss = options.loss;
    this.threshold = options.threshold;
    this.restart = options.restart ?? { initialMs: 500, maxMs: 30_000 };
    this.faultAtFrame = options.faultAtFrame;
    this.stats = emptyStats(options.config.grid);
    this.carried = emptyStats(options.config.grid);
  }

  /**
   * Starts the engine from the store's latest version (the base head when there is none) and its
   * worker; resolves when the worker is ready. Rejects if the first worker cannot start at all.
   */
  static async start(options: BeatsEngineOptions): Promise<BeatsEngine> {
    const latest = await options.store.latest();
    const engine = new BeatsEngine(options, latest?.head ?? options.store.baseHead(), latest?.version ?? 0);
    if (latest) engine.log.info(`${options.camera}: resuming from head version ${latest.version}`);
    await engine.spawn(true);
    return engine;
  }

  /** The head inference should run: the last accepted (and written) or rolled-back one. Do not change it. */
  get head(): Head {
    return this.current;
  }

  /** Its version (0: the base model's head). */
  get version(): number {
    return this.currentVersion;
  }

  /**
   * A supervised frame, for training: never waits. Returns false when it was dropped (the worker
   * is restarting or `maxPendingFrames` frames are waiting). A frame without cells is not a
   * supervised frame (nothing decays). Throws RangeError for a malformed cell (a caller's bug).
   */
  submit(frame: SupervisedFrame): boolean {
    if (this.closed) return false;
    this.counts.framesSubmitted++;
    if (!Number.isFinite(frame.time)) throw new RangeError(`supervised frame: time ${frame.time} is not a finite number`);
    for (const [i, c] of frame.cells.entries()) {
      const level = this.base[c.level];
      const where = `supervised frame at ${frame.time} s, cell ${i}`;
      if (!level) throw new RangeError(`${where}: level ${c.level}, the head has ${this.base.length}`);
      const [C, D] = level.shape;
      if (!(Number.isInteger(c.classId) && c.classId >= 0 && c.classId < C)) throw new RangeError(`${where}: class ${c.classId}, level ${c.level} has ${C}`);
      if (c.features.length !== D) throw new RangeError(`${where}: ${c.features.length} features, level ${c.level} has ${D} channels`);
      if (c.target !== 0 && c.target !== 1) throw new RangeError(`${where}: target ${String(c.target)}, must be 0 or 1`);
      if (!Number.isFinite(c.x) || !Number.isFinite(c.y)) throw new RangeError(`${where}: position (${c.x}, ${c.y}) is not finite`);
    }
    if (frame.cells.length === 0) return true;
    if (!this.worker || this.pending >= this.maxPending) {
      this.counts.framesDropped++;
      return false;
    }
    this.outbox.push(packFrame(frame));
    this.pending++;
    // A full batch is posted once the caller's frame is done (setImmediate), not inside its frame path.
    if (this.outbox.length >= Math.min(this.batch.frames, this.maxPending)) this.flushSoon ??= setImmediate(() => this.flush());
    else this.flushTimer ??= setTimeout(() => this.flush(), this.batch.ms).unref();
    return true;
  }

  /** Posts the batch waiting in the outbox. */
  private flush(): void {
    this.cancelFlush();
    const frames = this.outbox;
    if (frames.length === 0 || !this.worker) return;
    this.outbox = [];
    this.worker.postMessage({ type: 'frames', frames } satisfies ToWorker, frames.flatMap((f) => [f.meta.buffer as ArrayBuffer, f.features.buffer as ArrayBuffer]));
  }

  /** Forgets a flush that was scheduled (by timer, or after the caller's frame). */
  private cancelFlush(): void {
    clearTimeout(this.flushTimer);
    clearImmediate(this.flushSoon);
    this.flushTimer = undefined;
    this.flushSoon = undefined;
  }

  /** Frames submitted but never to be processed (a worker fault, a restart, close). */
  private dropOutbox(): void {
    this.cancelFlush();
    this.outbox = [];
    this.pending = 0;
  }

  /**
   * Makes a version's head (or the base model's) current again: written as a new version
   * (versions.ts), emitted as `rolled_back`, and the worker starts again from it. A version that does
   * not exist is a VersionError naming it, and nothing changes.
   */
  rollback(target: RollbackTarget): Promise<HeadVersion> {
    return this.serial(async () => {
      const v = await this.store.rollback(target);
      this.setCurrent(v.head, v.version);
      this.counts.rolledBack++;
      this.log.info(`${this.camera}: rolled back to ${target === 'base' ? 'the base head' : `version ${target}`} (now version ${v.version})`);
      this.resetWorker();
      this.events.next({ kind: 'rolled_back', camera: this.camera, version: v.version, target, replaces: v.replaces ?? 0, head: copyHead(v.head), at: v.createdAt });
      return v;
    });
  }

  /** The versions kept on disk, oldest first. */
  versions(): Promise<VersionInfo[]> {
    return this.store.list();
  }

  /**
   * Updates the triggers asked for so far: accepted, rejected, or deferred by the rate or compute
   * limits (a bucket firing counts even when the limits held it back). Cheaper than `status()`.
   */
  get updateAttempts(): number {
    const { deferred: s } = this.stats;
    const { deferred: c } = this.carried;
    return this.counts.accepted + this.counts.rejected + s.rate + s.compute + c.rate + c.compute;
  }

  status(): EngineStatus {
    const R = this.config.grid;
    const s = this.stats;
    const c = this.carried;
    const grid = (values: number[]) => Array.from({ length: R }, (_, row) => values.slice(row * R, (row + 1) * R));
    return {
      camera: this.camera,
      version: this.currentVersion,
      accepted: this.counts.accepted,
      rejected: this.counts.rejected,
      rolledBack: this.counts.rolledBack,
      rejectedBy: { ...this.counts.rejectedBy },
      deferred: { rate: c.deferred.rate + s.deferred.rate, compute: c.deferred.compute + s.deferred.compute, holdout: c.deferred.holdout + s.deferred.holdout },
      lastUpdateAt: this.counts.lastUpdateAt,
      lastAcceptedAt: this.counts.lastAcceptedAt,
      lastUpdateMs: s.lastUpdateMs ?? c.lastUpdateMs,
      trainShare: s.trainShare,
      framesSubmitted: this.counts.framesSubmitted,
      framesDropped: this.counts.framesDropped,
      framesPending: this.pending,
      cellsTrained: c.cellsTrained + s.cellsTrained,
      cellsHeldOut: c.cellsHeldOut + s.cellsHeldOut,
      cellsSkipped: c.cellsSkipped + s.cellsSkipped,
      cellsAnchored: c.cellsAnchored + s.cellsAnchored,
      holdoutSize: s.holdoutSize,
      replaySize: s.replaySize,
      worker: { up: this.worker !== undefined, faults: this.counts.faults, restarts: this.counts.restarts, lastError: this.counts.lastError },
      persistFailures: this.counts.persistFailures,
      grid: R,
      errorEnergy: grid(s.missEnergy.map((m, i) => m + s.falseAlarmEnergy[i]!)),
      missEnergy: grid(s.missEnergy),
      falseAlarmEnergy: grid(s.falseAlarmEnergy),
    };
  }

  /**
   * The training worker's own memory after a full collection of its heap (the main thread's
   * process.memoryUsage() does not count a worker's heap). Answered after the frames already posted;
   * undefined when no worker is up or it does not answer within `timeoutMs`.
   */
  workerMemory(timeoutMs = 10_000): Promise<WorkerMemory | undefined> {
    return this.worker ? this.memoryRequests.ask(this.worker, timeoutMs) : Promise.resolve(undefined);
  }

  /** Resolves when every submitted frame has been processed and every result handled (tests, shutdown). */
  async idle(): Promise<void> {
    this.flush();
    while (this.pending > 0 || this.chainDepth > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.restartTimer);
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
    this.memoryRequests.cancelAll();
    await this.chain.catch(() => undefined);
    this.dropOutbox();
    this.wake();
    this.events.complete();
  }

  // -------------------------------------------------------------------------------------------

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    this.chainDepth++;
    const run = this.chain.then(fn, fn);
    this.chain = run
      .catch(() => undefined)
      .finally(() => {
        this.chainDepth--;
        this.wake();
      });
    return run;
  }

  private setCurrent(head: Head, version: number): void {
    this.current = head;
    this.currentVersion = version;
  }

  /** Puts the live worker on the current head (its results until then are ignored). */
  private resetWorker(): void {
    this.generation++;
    this.worker?.postMessage({ type: 'reset', head: this.current, generation: this.generation });
  }

  private spawn(first: boolean): Promise<void> {
    this.generation++;
    const init: WorkerInit = {
      camera: this.camera,
      config: this.config,
      base: this.base,
      head: this.current,
      generation: this.generation,
      seed: this.seed,
      ...(this.loss ? { loss: this.loss } : {}),
      ...(this.threshold !== undefined ? { threshold: this.threshold } : {}),
      ...(this.faultAtFrame !== undefined ? { faultAtFrame: this.faultAtFrame } : {}),
    };
    this.faultAtFrame = undefined;
    const worker = new Worker(workerBootstrap(), { eval: true, workerData: init, name: `beats-adapt-${this.camera}` });
    this.worker = worker;
    this.workerStartedAt = Date.now();
    this.dropOutbox();
    let faulted = false;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      const fault = (err: Error) => {
        if (faulted) return;
        faulted = true;
        if (!ready && first) {
          this.worker = undefined;
          void worker.terminate();
          reject(err);
          return;
        }
        this.onFault(worker, err);
      };
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          ready = true;
          resolve();
        } else this.onMessage(message);
      });
      worker.on('error', fault);
      worker.on('exit', (code) => {
        if (!this.closed && this.worker === worker) fault(new Error(`the worker exited (code ${code})`));
      });
      if (!first) resolve();
    });
  }

  private onFault(worker: Worker, err: Error): void {
    if (this.worker !== worker || this.closed) return;
    this.worker = undefined;
    void worker.terminate();
    this.counts.faults++;
    this.counts.lastError = err.message;
    // Counters of the dead worker are carried over; its frames in flight are lost.
    this.carry();
    this.dropOutbox();
    this.wake();
    if (Date.now() - this.workerStartedAt > STABLE_MS) this.consecutiveFaults = 0;
    this.consecutiveFaults++;
    const delay = this.consecutiveFaults <= 1 ? 0 : Math.min(this.restart.maxMs, this.restart.initialMs * 2 ** (this.consecutiveFaults - 2));
    this.log.error(`${this.camera}: the training worker failed: ${err.message}; restarting it from head version ${this.currentVersion}${delay > 0 ? ` in ${delay} ms` : ''}`, { faults: this.counts.faults });
    this.restartTimer = setTimeout(() => {
      // After results still being written, so that the new worker starts from the last good head.
      void this.serial(async () => {
        if (this.closed) return;
        this.counts.restarts++;
        await this.spawn(false);
      });
    }, delay);
  }

  private carry(): void {
    const c = this.carried;
    const s = this.stats;
    c.cellsTrained += s.cellsTrained;
    c.cellsHeldOut += s.cellsHeldOut;
    c.cellsSkipped += s.cellsSkipped;
    c.cellsAnchored += s.cellsAnchored;
    c.deferred.rate += s.deferred.rate;
    c.deferred.compute += s.deferred.compute;
    c.deferred.holdout += s.deferred.holdout;
    c.lastUpdateMs = s.lastUpdateMs ?? c.lastUpdateMs;
    this.stats = emptyStats(this.config.grid);
  }

  private onMessage(message: FromWorker): void {
    if (message.type === 'ack') {
      this.pending = Math.max(0, this.pending - message.frames);
      this.stats = message.stats;
      if (this.pending === 0) this.wake();
      return;
    }
    if (message.type === 'memory') {
      this.memoryRequests.answer(message.id, message.memory);
      return;
    }
    if (message.type !== 'outcome') return;
    const { generation, outcome } = message;
    void this.serial(async () => {
      // Results of a worker since put on another head (rollback, restart, failed write) are stale.
      if (generation !== this.generation || this.closed) return;
      const at = Date.now();
      this.counts.lastUpdateAt = at;
      if (outcome.kind === 'rejected') {
        this.counts.rejected++;
        this.counts.rejectedBy[outcome.reason]++;
        this.events.next({ kind: 'rejected', camera: this.camera, reason: outcome.reason, figures: outcome.figures, at });
        return;
      }
      let v: HeadVersion;
      try {
        v = await this.store.append({ head: outcome.head, figures: outcome.figures, streamTime: outcome.figures.streamTime, parent: this.currentVersion });
      } catch (err) {
        this.counts.rejected++;
        this.counts.rejectedBy.persist++;
        this.counts.persistFailures++;
        this.log.error(`${this.camera}: an accepted head could not be written, so it is not used: ${errorMessage(err)}`);
        this.resetWorker();
        this.events.next({ kind: 'rejected', camera: this.camera, reason: 'persist', figures: outcome.figures, at });
        return;
      }
      const parent = this.currentVersion;
      this.setCurrent(v.head, v.version);
      this.counts.accepted++;
      this.counts.lastAcceptedAt = at;
      this.log.debug(`${this.camera}: head version ${v.version} accepted`, {
        holdoutLoss: [round(outcome.figures.holdout.lossBefore), round(outcome.figures.holdout.lossAfter)],
        holdoutF1: [round(outcome.figures.holdout.f1Before), round(outcome.figures.holdout.f1After)],
        buckets: outcome.figures.fired.length,
      });
      this.events.next({ kind: 'accepted', camera: this.camera, version: v.version, parent, head: copyHead(v.head), figures: outcome.figures, at });
    });
  }
}

const round = (x: number) => Math.round(x * 1e4) / 1e4;
