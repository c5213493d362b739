import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { ModelError, errorMessage } from '../errors.js';
import type { Frame, FrameOutput } from '../source/frame.js';
import { toSourcePixels } from '../source/geometry.js';
import type { ModelCard } from './card.js';
import type { Detection } from './detection.js';
import { cardMismatches } from './card-check.js';
import { decodeOutput, nmsPerClass, type Candidate } from './decode.js';
import { withSymbolicBatch, withSymbolicInputSize } from './onnx-graph.js';
import { createSession, type ProviderName, type ProviderSettings } from './providers.js';
import type { BackendStats, DetectorBackend } from './backends/backend.js';
import { InProcessBackend } from './backends/in-process.js';
import { WorkerBackend } from './backends/worker.js';
import { logger } from '../log.js';
import { resolveModel, type ResolvedModel } from './registry.js';
import { HeadSwappableSession, type FrameHeadFeatures, type HeadLevelWeights, type HeadRunResult, type HeadStamp } from './head.js';

export interface DetectOptions {
  threshold: number;
  nmsIou: number;
  maxDetections: number;
  /** Class names to keep. */
  labels?: readonly string[];
}

export interface DetectorOptions {
  runtime: ProviderSettings;
  /** Square input size overriding the card's (only for cards marked resizable). */
  inputSize?: number;
  /**
   * On-device adaptation (BEATS.md): rewrite the model at load so its class head is fed with every
   * run (`setHead` swaps it between two frames) and its head features come out of every run
   * (`headFeatures`). Needs the card's `head`. Default false: the plain session.
   */
  adaptable?: boolean;
  /**
   * Where onnxruntime runs (model/backends/): 'in-process' (default) on the calling thread, or
   * 'worker' in a worker thread of the detector's own, off the event loop. Adaptable detectors run
   * in-process whatever this says: their head is swapped and their features read on this thread.
   */
  backend?: 'in-process' | 'worker';
  /** Worker backend: frames of several callers in one run, up to `max`, waiting at most `timeoutMs` for a batch to fill. Default: no batching. */
  batch?: { max: number; timeoutMs: number };
}

/** A loaded detector: an onnxruntime session (in a backend) plus the card that says how to feed and decode it. */
export class Detector {
  private constructor(
    readonly model: ResolvedModel,
    /** The plain detector's runner; undefined for an adaptable one, whose `heads` run it. Replaced by `swapWeights`. */
    private backend: DetectorBackend | undefined,
    readonly provider: ProviderName,
    readonly inputWidth: number,
    readonly inputHeight: number,
    /** Present when loaded with `adaptable: true`; `session` is then its session. */
    readonly heads?: HeadSwappableSession,
  ) {}

  /**
   * Input tensor buffers of finished runs, for the next ones: a new one every frame (2 MB at 416 px)
   * is external memory that sets off garbage collections on the frame path. Several, since cameras
   * sharing a worker-backed detector have frames in flight at once.
   */
  private readonly spareInputs: Float32Array[] = [];

  /** Runs in flight per backend: a backend `swapWeights` replaced is closed when its last run has ended. */
  private readonly inFlight = new Map<DetectorBackend, number>();

  /** Features of the frame each `detect` result came from (adaptable detectors only); weak, so they go with the result. */
  private readonly features = new WeakMap<Detection[], FrameHeadFeatures>();

  get card(): ModelCard {
    return this.model.card;
  }

  static async load(ref: string, options: DetectorOptions): Promise<Detector> {
    const model = await resolveModel(ref);
    const card = model.card;
    let bytes: Uint8Array;
    try {
      bytes = await readFile(model.onnxPath);
    } catch (err) {
      throw new ModelError(ref, `cannot read ${model.onnxPath}: ${errorMessage(err)}`);
    }
    const size = options.inputSize;
    if (size !== undefined && (size !== card.input.width || size !== card.input.height)) {
      if (!card.input.resizable) throw new ModelError(ref, `its card does not allow input_size ${size} (fixed ${card.input.width}x${card.input.height})`);
      // A grid decoder needs whole cells at the coarsest stride, or every frame would fail to decode.
      const stride = card.decoder.kind === 'yolox' ? Math.max(...card.decoder.strides) : 32;
      if (!Number.isInteger(size) || size <= 0 || size % stride !== 0) throw new ModelError(ref, `input_size ${size} is not a multiple of ${stride}`);
      try {
        bytes = withSymbolicInputSize(bytes, card.input.name);
      } catch (err) {
        throw new ModelError(ref, `cannot resize its input: ${errorMessage(err)}`);
      }
    }
    const width = size ?? card.input.width;
    const height = size ?? card.input.height;
    if (!options.adaptable && options.backend === 'worker') {
      const backend = await Detector.startWorker(ref, model, bytes, options, width, height);
      return new Detector(model, backend, backend.provider, width, height);
    }
    const heads = options.adaptable ? await HeadSwappableSession.create(bytes, card, options.runtime, { modelName: ref }) : undefined;
    const { session, provider } = heads ?? (await createSession(bytes, options.runtime, { modelName: ref }));
    const problems = cardMismatches(card, session.inputMetadata, session.outputMetadata);
    if (problems.length > 0) {
      // The session holds native memory (the whole model): do not leak it with the error.
      await session.release().catch(() => undefined);
      throw new ModelError(ref, `its card ${model.file} does not fit ${model.onnxPath}: ${problems.join('; ')}`);
    }
    const backend = heads ? undefined : new InProcessBackend(session, provider, { card, inputWidth: width, inputHeight: height });
    return new Detector(model, backend, provider, width, height, heads);
  }

  /** The worker backend for `bytes`, its batch made symbolic when batching is asked for (the thread checks it runs). */
  private static async startWorker(ref: string, model: ResolvedModel, bytes: Uint8Array, options: DetectorOptions, width: number, height: number): Promise<WorkerBackend> {
    let maxBatch = Math.max(1, options.batch?.max ?? 1);
    if (maxBatch > 1) {
      try {
        bytes = withSymbolicBatch(bytes, model.card.input.name);
      } catch (err) {
        logger('model').info(`model ${ref}: runs one frame per run, its batch cannot be made free (${errorMessage(err)})`);
        maxBatch = 1;
      }
    }
    try {
      return await WorkerBackend.start({ model: bytes, modelName: ref, settings: options.runtime, card: model.card, inputWidth: width, inputHeight: height, maxBatch, batchTimeoutMs: options.batch?.timeoutMs ?? 0 });
    } catch (err) {
      throw err instanceof ModelError ? err : new ModelError(ref, `${model.onnxPath}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Where the model runs: 'in-process', 'worker', or 'adaptable' (in-process, with a swappable head). */
  get backendKind(): 'in-process' | 'worker' | 'adaptable' {
    return this.backend?.kind ?? 'adaptable';
  }

  /** The most frames one run takes (1 for in-process and adaptable detectors, and for models whose batch is fixed). */
  get maxBatch(): number {
    return this.backend?.maxBatch ?? 1;
  }

  /**
   * A camera that will call `detect`: a worker backend then sends a batch as soon as every attached
   * camera has a frame waiting (see backends/batch-queue.ts). The returned function detaches it.
   */
  attach(): () => void {
    return this.backend?.attach() ?? (() => undefined);
  }

  /** Runs, frames, failures and worker restarts so far (adaptable detectors: none counted). */
  backendStats(): BackendStats | undefined {
    return this.backend?.stats();
  }

  /** What the source must deliver: ffmpeg letterboxes and converts to this. */
  frameOutput(): FrameOutput {
    const input = this.card.input;
    return { width: this.inputWidth, height: this.inputHeight, pixelFormat: input.channels === 'BGR' ? 'bgr24' : 'rgb24', padValue: input.letterbox.pad, align: input.letterbox.align };
  }

  /** Class ids for a list of names; an unknown name is an error that lists what the model knows. */
  classIds(labels: readonly string[]): Set<number> {
    const ids = new Set<number>();
    for (const label of labels) {
      const id = this.card.classes.indexOf(label);
      if (id < 0) throw new ModelError(this.card.name, `has no class "${label}"`);
      ids.add(id);
    }
    return ids;
  }

  /** Float tensor from the frame's interleaved pixels: (p * scale - mean) / std per channel. */
  toTensor(frame: Frame, into?: Float32Array): ort.Tensor {
    return this.toTensorOf(this.toInput(frame, into), frame);
  }

  /** The model input of a frame, [1, ...] in the card's layout, in `into` when it has the size. */
  private toInput(frame: Frame, into?: Float32Array): Float32Array {
    const { width, height } = frame.geometry;
    const input = this.card.input;
    const plane = width * height;
    const out = into?.length === plane * 3 ? into : new Float32Array(plane * 3);
    const px = frame.pixels;
    const k = [input.scale / input.std[0], input.scale / input.std[1], input.scale / input.std[2]];
    const b = [-input.mean[0] / input.std[0], -input.mean[1] / input.std[1], -input.mean[2] / input.std[2]];
    if (input.layout === 'NCHW') {
      // One pass over the pixels, in the order they lie in memory: about twice as fast as a pass
      // per channel (docs/benchmarks.md, "Small choices").
      const [k0, k1, k2] = k as [number, number, number];
      const [b0, b1, b2] = b as [number, number, number];
      const blue = 2 * plane;
      for (let i = 0, j = 0; i < plane; i++, j += 3) {
        out[i] = px[j]! * k0 + b0;
        out[plane + i] = px[j + 1]! * k1 + b1;
        out[blue + i] = px[j + 2]! * k2 + b2;
      }
      return out;
    }
    for (let i = 0; i < plane * 3; i++) out[i] = px[i]! * k[i % 3]! + b[i % 3]!;
    return out;
  }

  /**
   * Detections in source pixels, best first. The classes kept are `allowed` (ids, precomputed by the
   * pipeline), else `options.labels` (names), else all.
   */
  async detect(frame: Frame, options: DetectOptions, allowed?: ReadonlySet<number>): Promise<Detection[]> {
    const keep = allowed ?? (options.labels ? this.classIds(options.labels) : undefined);
    // The input buffer goes back for a next frame once the run is over; detects that overlap (cameras
    // sharing this detector) take another one or make their own.
    const input = this.toInput(frame, this.spareInputs.pop());
    let run: HeadRunResult | undefined;
    let kept: Candidate[];
    if (this.heads) {
      try {
        run = await this.heads.run({ [this.card.input.name]: this.toTensorOf(input, frame) }, [this.card.output]);
      } finally {
        this.spare(input);
      }
      const out = run.outputs[this.card.output]!;
      const candidates = decodeOutput(this.card, { data: out.data as Float32Array, dims: out.dims }, this.inputWidth, this.inputHeight, { threshold: options.threshold, allowed: keep });
      kept = nmsPerClass(candidates, options.nmsIou, options.maxDetections);
    } else {
      const backend = this.backend!;
      this.inFlight.set(backend, (this.inFlight.get(backend) ?? 0) + 1);
      try {
        const result = await backend.infer({ input, options: { threshold: options.threshold, nmsIou: options.nmsIou, maxDetections: options.maxDetections, allowed: keep ? [...keep] : undefined } });
        this.spare(result.input);
        kept = result.candidates;
      } finally {
        this.runEnded(backend);
      }
    }
    const detections = kept.map((c) => ({
      label: this.card.classes[c.classId] ?? `class${c.classId}`,
      classId: c.classId,
      score: c.score,
      box: toSourcePixels(c.box, frame.geometry, frame.width, frame.height),
    }));
    if (run) this.features.set(detections, { head: run.head, levels: run.levels });
    return detections;
  }

  /**
   * Whole-model adaptation: `bytes` (this model with other weights; its card must fit them) serves
   * every frame from the next one on. The new session is made off the frame path; the swap replaces
   * one reference between two frames; frames in flight finish on the old session, which is released
   * after them. On any error (a file that does not fit the card) the current weights stay.
   */
  async swapWeights(bytes: Uint8Array, runtime: ProviderSettings): Promise<void> {
    if (this.heads || !this.backend) throw new ModelError(this.card.name, 'is loaded adaptable (head only): its head is swapped with setHead, not its weights');
    const { session, provider } = await createSession(bytes, runtime, { modelName: this.card.name });
    const problems = cardMismatches(this.card, session.inputMetadata, session.outputMetadata);
    if (problems.length > 0) {
      await session.release().catch(() => undefined);
      throw new ModelError(this.card.name, `new weights do not fit its card: ${problems.join('; ')}`);
    }
    const old = this.backend;
    this.backend = new InProcessBackend(session, provider, { card: this.card, inputWidth: this.inputWidth, inputHeight: this.inputHeight });
    if (!this.inFlight.get(old)) await old.close();
  }

  private runEnded(backend: DetectorBackend): void {
    const left = (this.inFlight.get(backend) ?? 1) - 1;
    if (left > 0) return void this.inFlight.set(backend, left);
    this.inFlight.delete(backend);
    if (backend !== this.backend) void backend.close().catch(() => undefined);
  }

  /** An input buffer for a next frame; a few are kept (one per frame that may be in flight). */
  private spare(input: Float32Array): void {
    if (input.length > 0 && this.spareInputs.length < Math.max(2, 2 * this.maxBatch)) this.spareInputs.push(input);
  }

  private toTensorOf(input: Float32Array, frame: Frame): ort.Tensor {
    const { width, height } = frame.geometry;
    return new ort.Tensor('float32', input, this.card.input.layout === 'NCHW' ? [1, 3, height, width] : [1, height, width, 3]);
  }

  /**
   * Adaptation: makes `weights` (per head level, [C, D] as `heads.head()` returns them) the class
   * head of every frame detected from now on; a frame in flight finishes with the head it started
   * with. Throws a HeadError (keeping the current head) on a wrong shape, a ModelError when the
   * detector was not loaded with `adaptable: true`.
   */
  setHead(weights: readonly HeadLevelWeights[], label?: string): HeadStamp {
    if (!this.heads) throw new ModelError(this.card.name, 'was not loaded with adaptable: true, so its head cannot be swapped');
    return this.heads.setHead(weights, label);
  }

  /**
   * The head features of the frame `detections` came from (the array `detect` returned), with the
   * head that ran on them; undefined for other arrays and for detectors not loaded adaptable.
   */
  headFeatures(detections: Detection[]): FrameHeadFeatures | undefined {
    return this.features.get(detections);
  }

  async close(): Promise<void> {
    if (this.heads) await this.heads.session.release();
    else await this.backend!.close();
  }
}
