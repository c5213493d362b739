/**
 * Whole-model adaptation of one camera, main-thread side: it posts supervised frames to the
 * training worker (worker.ts), writes every accepted weight set as a version (versions.ts) before
 * it announces it, and announces it on `updates$` with the ONNX file inference swaps in. Inference
 * never waits on it: `submit` posts and returns, and at most `maxPending` frames wait for the
 * worker (more are dropped and counted: training is behind, the frame path is not).
 *
 * A worker that dies is started again from the serving weights, and what it was doing is lost (a
 * training step, never a served set: a set serves only once written). Rollback writes a new version
 * holding the earlier set (or the base model's) and restarts the worker on it.
 */
import { Worker } from 'node:worker_threads';
import { Subject } from 'rxjs';
import type { AdaptConfig } from '../../config/schema.js';
import { errorMessage } from '../../errors.js';
import { logger } from '../../log.js';
import type { RejectReason } from '../../publish/messages.js';
import type { BeatsCnnSpec } from '../../train/beats-cnn.js';
import { exportBeatsOnnx } from '../../train/beats-export.js';
import type { WorkerMemory } from '../engine-protocol.js';
import { MemoryRequests } from '../worker-memory.js';
import type { FromStudentWorker, NamedWeights, StudentWorkerInit, StudentWorkerStats, ToStudentWorker } from './protocol.js';
import type { SupervisedImage } from './reservoir.js';
import type { StudentTrainerOptions, StudentUpdateFigures } from './trainer.js';
import type { WeightVersionInfo, WeightVersionStore } from './versions.js';
import { studentWorkerBootstrap } from './worker-bootstrap.js';

/** The trainer's settings from `cameras[].adapt` (its `whole` section). */
export function trainerOptions(config: AdaptConfig, threshold: number, seed: number): Partial<StudentTrainerOptions> {
  const w = config.whole;
  return {
    threshold,
    seed,
    lr: w.lr,
    batch: w.batch,
    stepsPerUpdate: w.steps_per_update,
    holdoutMax: w.holdout_frames,
    minTrain: Math.min(8, w.reservoir_frames),
    reservoir: { maxFrames: w.reservoir_frames, maxBytes: w.reservoir_mb * 1024 * 1024 },
  };
}

export type WeightsEvent =
  | { kind: 'accepted'; version: number; onnx: Uint8Array; figures: StudentUpdateFigures; threshold?: number }
  | { kind: 'rejected'; reason: RejectReason; figures: StudentUpdateFigures }
  | { kind: 'rolled_back'; version: number; target: number | 'base'; onnx: Uint8Array; threshold?: number };

/** The weight set that serves: its version, its weights (or the base model's), and the score it counts from when it chose one. */
interface ServingSet {
  version: number;
  weights: NamedWeights | 'base';
  threshold?: number;
}

export interface StudentEngineOptions {
  camera: string;
  config: AdaptConfig;
  /** The base model's training checkpoint and its architecture. */
  checkpoint: string;
  spec: BeatsCnnSpec;
  base: { name: string; version: string };
  store: WeightVersionStore;
  threshold: number;
  /** Frames posted and not yet acknowledged, at most. */
  maxPending?: number;
  /** Tests: the first worker throws at this frame (1 = the first), as a crash would end it. */
  faultAtFrame?: number;
}

export class StudentEngine {
  private readonly log = logger('adapt');
  readonly updates$ = new Subject<WeightsEvent>();
  private worker: Worker | undefined;
  private generation = 0;
  private pending = 0;
  private closed = false;
  /** Version writes, one after the other, in the order the worker accepted them. */
  private writing: Promise<unknown> = Promise.resolve();
  private serving: ServingSet;
  readonly counts = { submitted: 0, dropped: 0, accepted: 0, rejected: 0, rolledBack: 0, restarts: 0, rejectedBy: { holdout_loss: 0, holdout_f1: 0, replay_loss: 0, replay_f1: 0, non_finite: 0, persist: 0 } as Record<RejectReason, number> };
  lastStats: StudentWorkerStats | undefined;
  private readonly memoryRequests = new MemoryRequests();
  lastUpdateAt: number | undefined;
  lastAcceptedAt: number | undefined;

  private faultAtFrame: number | undefined;

  private constructor(private readonly options: StudentEngineOptions, serving: ServingSet) {
    this.serving = serving;
    this.faultAtFrame = options.faultAtFrame;
  }

  /** Opens the camera's versions and starts the worker on the newest one (or the base model). */
  static async start(options: StudentEngineOptions): Promise<StudentEngine> {
    const latest = await options.store.latest();
    // A rollback to the base model is a version with no weights.
    const engine = new StudentEngine(options, latest ? { version: latest.version, weights: latest.weights.length > 0 ? latest.weights : 'base', threshold: latest.threshold } : { version: 0, weights: 'base' });
    await engine.spawn();
    return engine;
  }

  get version(): number {
    return this.serving.version;
  }

  /** The score the serving set's detections count from, when it chose one and the camera takes it (adapt.whole.threshold: held_out). */
  get threshold(): number | undefined {
    return this.options.config.whole.threshold === 'held_out' ? this.serving.threshold : undefined;
  }

  /** The ONNX file of the serving set (undefined while the base model serves). */
  servingOnnx(): Uint8Array | undefined {
    return this.serving.weights === 'base' ? undefined : this.onnxOf(this.serving.weights);
  }

  /** A supervised frame; false when it was dropped (the worker is behind or gone). */
  submit(image: SupervisedImage, key: number, use: 'auto' | 'train' = 'auto'): boolean {
    if (this.closed || !this.worker || this.pending >= (this.options.maxPending ?? 16)) {
      this.counts.dropped++;
      return false;
    }
    this.pending++;
    this.counts.submitted++;
    const message: ToStudentWorker = { type: 'frame', image, key, use };
    this.worker.postMessage(message, [image.pixels.buffer as ArrayBuffer]);
    return true;
  }

  /** Serves an earlier version's weights (or the base model's) as a new version. */
  async rollback(target: number | 'base'): Promise<number> {
    const held = target === 'base' ? undefined : await this.options.store.read(target);
    const weights: NamedWeights | 'base' = held && held.weights.length > 0 ? held.weights : 'base';
    const threshold = weights === 'base' ? undefined : held?.threshold;
    const run = this.writing.then(async () => {
      const version = await this.options.store.write({ parent: target === 'base' ? 0 : target, kind: 'rollback', rollbackOf: target, replaces: this.serving.version, createdAt: Date.now(), ...(threshold === undefined ? {} : { threshold }) }, weights === 'base' ? [] : weights);
      this.serving = { version, weights, threshold };
      this.counts.rolledBack++;
      this.generation++;
      this.worker?.postMessage({ type: 'reset', weights, generation: this.generation } satisfies ToStudentWorker);
      this.updates$.next({ kind: 'rolled_back', version, target, onnx: weights === 'base' ? new Uint8Array(0) : this.onnxOf(weights), ...(this.threshold === undefined ? {} : { threshold: this.threshold }) });
      return version;
    });
    this.writing = run.catch(() => undefined);
    return run;
  }

  versions(): Promise<WeightVersionInfo[]> {
    return this.options.store.list();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writing;
    await this.worker?.terminate();
    this.worker = undefined;
    this.memoryRequests.cancelAll();
    this.updates$.complete();
  }

  private onnxOf(weights: NamedWeights): Uint8Array {
    return exportBeatsOnnx(this.options.spec, new Map(weights.map((w) => [w.name, { shape: w.shape, data: w.data }])), { version: `${this.options.base.version}+v${this.serving.version}` });
  }

  private spawn(): Promise<void> {
    this.generation++;
    const o = this.options;
    const init: StudentWorkerInit = {
      camera: o.camera,
      checkpoint: o.checkpoint,
      spec: o.spec,
      ...(this.serving.weights === 'base' ? {} : { weights: this.serving.weights }),
      trainer: trainerOptions(o.config, o.threshold, this.generation),
      maxTrainShare: o.config.max_train_share,
      minIntervalMs: o.config.min_interval_s * 1000,
      chooseThreshold: o.config.whole.threshold === 'held_out',
      modelVersion: o.base.version,
      generation: this.generation,
      ...(this.faultAtFrame !== undefined ? { faultAtFrame: this.faultAtFrame } : {}),
    };
    this.faultAtFrame = undefined;
    const worker = new Worker(studentWorkerBootstrap(), { eval: true, workerData: init, name: `beats-adapt-all-${o.camera}` });
    this.worker = worker;
    this.pending = 0;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: FromStudentWorker) => {
        if (message.type === 'ready') {
          ready = true;
          resolve();
        } else this.onMessage(message);
      });
      worker.on('error', (err) => this.log.error(`${o.camera}: whole-model training worker failed: ${errorMessage(err)}`));
      worker.on('exit', (code) => {
        if (!ready) return reject(new Error(`camera ${o.camera}: the whole-model training worker exited (${code}) before it was ready`));
        if (this.closed || this.worker !== worker) return;
        this.counts.restarts++;
        this.log.warn(`${o.camera}: whole-model training worker exited (${code}); starting it again from version ${this.serving.version}`);
        this.spawn().catch((err: unknown) => this.log.error(`${o.camera}: whole-model training worker could not start again: ${errorMessage(err)}`));
      });
    });
  }

  /**
   * The training worker's own memory after a full collection of its heap (not in the main thread's
   * process.memoryUsage()). Answered after the frames posted before, and after an update it is in;
   * undefined when no worker is up or it does not answer within `timeoutMs`.
   */
  workerMemory(timeoutMs = 60_000): Promise<WorkerMemory | undefined> {
    return this.worker ? this.memoryRequests.ask(this.worker, timeoutMs) : Promise.resolve(undefined);
  }

  private onMessage(message: FromStudentWorker): void {
    if (message.type === 'memory') {
      this.memoryRequests.answer(message.id, message.memory);
      return;
    }
    if (message.type === 'ack') {
      this.pending = Math.max(0, this.pending - 1);
      this.lastStats = message.stats;
      return;
    }
    if (message.type !== 'outcome' || message.generation !== this.generation) return;
    this.lastUpdateAt = Date.now();
    const { outcome } = message;
    if (outcome.kind === 'rejected') {
      this.counts.rejected++;
      this.counts.rejectedBy[outcome.reason]++;
      this.updates$.next({ kind: 'rejected', reason: outcome.reason, figures: outcome.figures });
      return;
    }
    const { onnx, weights } = message;
    if (!onnx || !weights) return;
    this.writing = this.writing.then(async () => {
      try {
        const threshold = message.threshold;
        const version = await this.options.store.write({ parent: this.serving.version, kind: 'update', createdAt: Date.now(), figures: outcome.figures, ...(threshold === undefined ? {} : { threshold }) }, weights);
        this.serving = { version, weights, threshold };
        this.counts.accepted++;
        this.lastAcceptedAt = Date.now();
        this.updates$.next({ kind: 'accepted', version, onnx, figures: outcome.figures, ...(this.threshold === undefined ? {} : { threshold: this.threshold }) });
      } catch (err) {
        // Not written, so not served: the worker trains on, and the set it holds is offered again with its next update.
        this.counts.rejectedBy.persist++;
        this.log.error(`${this.options.camera}: accepted weights not written, not served: ${errorMessage(err)}`);
      }
    });
  }
}
