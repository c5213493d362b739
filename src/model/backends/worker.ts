/**
 * The worker backend: onnxruntime in a worker thread of its own, one per (model, input size,
 * provider), shared by the cameras that use it, so that inference leaves the event loop and the
 * main thread decodes, tracks and publishes meanwhile.
 *
 * Hand-over: the frame's model input (a Float32Array the detector fills) is transferred to the
 * thread and back with the result, never copied; the frame's pixels stay on the main thread, where
 * tracking, snapshots and adaptation read them. A batch of several frames is copied once into one
 * tensor in the thread (run-batch.ts).
 *
 * Bounds: one batch in the thread at a time (at most `maxBatch` frames in flight), frames waiting
 * in a BatchQueue (batch-queue.ts: fairness, the batch timeout, `maxQueued` or two per attached
 * camera, whichever is more). A thread that exits
 * unasked is started again; the frames it held fail with an InferenceWorkerError ('crashed') and are
 * counted in `stats().failedFrames`; frames waiting go to the new thread.
 */
import { Worker } from 'node:worker_threads';
import { errorMessage } from '../../errors.js';
import { logger } from '../../log.js';
import type { ProviderName } from '../providers.js';
import { countRun, emptyStats, InferenceWorkerError, type BackendStats, type DetectorBackend, type InferItem, type InferResult } from './backend.js';
import { BatchQueue } from './batch-queue.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { inferenceWorkerBootstrap } from './worker-bootstrap.js';

export interface WorkerBackendOptions extends WorkerInit {
  /** How long the oldest waiting frame may wait for a batch to fill, ms. */
  batchTimeoutMs: number;
  /** Frames waiting at most (default 64), and never fewer than two per attached camera (a camera keeps two in detection; more is a caller's bug). */
  maxQueued?: number;
}

interface Pending {
  item: InferItem;
  resolve: (result: InferResult) => void;
  reject: (err: Error) => void;
}

const log = logger('model');

export class WorkerBackend implements DetectorBackend {
  readonly kind = 'worker';
  private worker: Worker | undefined;
  private ready = false;
  private starting: Promise<void> | undefined;
  private inFlight: { id: number; batch: Pending[]; sentAt: number } | undefined;
  private nextId = 1;
  private attached = 0;
  private timer: NodeJS.Timeout | undefined;
  private pumpQueued = false;
  private closed = false;
  private readonly counts = emptyStats();
  private readonly queue: BatchQueue<Pending>;
  private providerName: ProviderName = 'cpu';
  private unbatchedLogged = false;
  /** When the thread finished its last batch (the batch timeout counts from it too; see batch-queue.ts). */
  private freeSince = -Infinity;

  private constructor(private readonly options: WorkerBackendOptions) {
    this.queue = new BatchQueue({ maxBatch: Math.max(1, options.maxBatch), timeoutMs: options.batchTimeoutMs, maxQueued: options.maxQueued ?? 64 });
  }

  /** Starts the thread and waits until its session is loaded (a ModelError when it cannot be). */
  static async start(options: WorkerBackendOptions): Promise<WorkerBackend> {
    const backend = new WorkerBackend(options);
    await backend.spawn();
    return backend;
  }

  get provider(): ProviderName {
    return this.providerName;
  }

  get maxBatch(): number {
    return this.queue.maxBatch;
  }

  /** The thread now running the model (undefined between a crash and its restart). */
  get thread(): Worker | undefined {
    return this.worker;
  }

  infer(item: InferItem): Promise<InferResult> {
    if (this.closed) return Promise.reject(new InferenceWorkerError(this.options.modelName, 'closed', 'closed'));
    return new Promise((resolve, reject) => {
      if (!this.queue.push({ item, resolve, reject }, performance.now(), 2 * this.attached)) {
        this.counts.failedFrames++;
        reject(new InferenceWorkerError(this.options.modelName, 'busy', `${this.queue.length} frames already wait (the most a worker takes)`));
        return;
      }
      if (!this.worker && !this.starting) void this.spawn().catch(() => undefined);
      this.schedule();
    });
  }

  attach(): () => void {
    this.attached++;
    let attached = true;
    return () => {
      if (!attached) return;
      attached = false;
      this.attached--;
      // The others need not wait for this camera's frame any more.
      this.schedule();
    };
  }

  stats(): BackendStats {
    return { ...this.counts, batchSizes: [...this.counts.batchSizes] };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
    this.fail(this.queue.drain().concat(this.inFlight?.batch ?? []), 'closed', 'closed with the frame waiting');
    this.inFlight = undefined;
  }

  /** Starts a thread; resolves once it is ready, rejects (and fails the waiting frames) when it cannot load the model. */
  private spawn(): Promise<void> {
    this.starting = new Promise<void>((resolve, reject) => {
      const worker = new Worker(inferenceWorkerBootstrap(), { eval: true, workerData: this.init(), name: `beats-infer-${this.options.modelName}` });
      this.worker = worker;
      this.ready = false;
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          this.onReady(message);
          resolve();
        } else if (message.type === 'failed') {
          const err = new InferenceWorkerError(this.options.modelName, 'failed', `cannot load the model: ${message.message}`);
          this.worker = undefined;
          void worker.terminate();
          this.fail(this.queue.drain(), 'failed', err.message);
          reject(err);
        } else this.onResult(message);
      });
      worker.on('error', (err) => log.error(`inference worker of ${this.options.modelName} failed: ${errorMessage(err)}`));
      worker.on('exit', (code) => {
        // Settles the start when the thread ends before it is ready (a no-op after).
        reject(new InferenceWorkerError(this.options.modelName, this.closed ? 'closed' : 'crashed', `exited with code ${code} while loading the model`));
        if (this.worker === worker) this.onExit(code);
      });
    }).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private init(): WorkerInit {
    const { batchTimeoutMs: _t, maxQueued: _q, ...init } = this.options;
    return init;
  }

  private onReady(message: Extract<FromWorker, { type: 'ready' }>): void {
    this.providerName = message.provider;
    this.queue.limitBatch(message.maxBatch);
    if (message.unbatched && !this.unbatchedLogged) {
      this.unbatchedLogged = true;
      log.info(`model ${this.options.modelName}: runs one frame per run, its batch is fixed (${message.unbatched})`);
    }
    this.ready = true;
    this.schedule();
  }

  private onResult(message: Extract<FromWorker, { type: 'done' | 'error' }>): void {
    const flight = this.inFlight;
    if (!flight || flight.id !== message.id) return;
    this.inFlight = undefined;
    this.freeSince = performance.now();
    this.counts.busyMs += this.freeSince - flight.sentAt;
    if (message.type === 'done') {
      countRun(this.counts, flight.batch.length);
      flight.batch.forEach((p, i) => p.resolve({ candidates: message.candidates[i]!, input: message.inputs[i]! }));
    } else {
      this.counts.failedFrames += flight.batch.length;
      flight.batch.forEach((p) => p.reject(new InferenceWorkerError(this.options.modelName, 'failed', message.message)));
    }
    this.schedule();
  }

  /** The thread ended unasked: its frames fail and are counted, a new thread takes the waiting ones. */
  private onExit(code: number): void {
    this.worker = undefined;
    this.ready = false;
    const lost = this.inFlight?.batch ?? [];
    this.inFlight = undefined;
    if (this.closed) return;
    this.fail(lost, 'crashed', `the thread exited (code ${code}) with the frame in flight`);
    this.counts.restarts++;
    log.warn(`inference worker of ${this.options.modelName} exited (code ${code}) with ${lost.length} frame${lost.length === 1 ? '' : 's'} in flight; starting it again`);
    void this.spawn().catch((err: unknown) => log.error(errorMessage(err)));
  }

  private fail(pending: Pending[], reason: 'crashed' | 'closed' | 'failed', message: string): void {
    if (reason !== 'closed') this.counts.failedFrames += pending.length;
    for (const p of pending) p.reject(new InferenceWorkerError(this.options.modelName, reason, message));
  }

  /** One look at the queue per turn of the event loop: frames sent in the same turn batch together. */
  private schedule(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed || !this.worker || !this.ready || this.inFlight) return;
    const decision = this.queue.next(performance.now(), this.attached, this.freeSince);
    if (!decision) return;
    if ('waitMs' in decision) {
      this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(decision.waitMs)));
      return;
    }
    const id = this.nextId++;
    this.inFlight = { id, batch: decision.take, sentAt: performance.now() };
    const items = decision.take.map((p) => p.item);
    const message: ToWorker = { type: 'run', id, items };
    // Transferred: the buffers leave this thread (their arrays read as empty here) until the result brings them back.
    this.worker.postMessage(message, items.map((i) => i.input.buffer as ArrayBuffer));
  }
}
