import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { ModelError, errorMessage } from '../errors.js';
import type { Frame, FrameOutput } from '../source/frame.js';
import { toSourcePixels } from '../source/geometry.js';
import type { ModelCard } from './card.js';
import type { Detection } from './detection.js';
import { cardMismatches } from './card-check.js';
import { decodeOutput, nmsPerClass } from './decode.js';
import { withSymbolicInputSize } from './onnx-graph.js';
import { createSession, type ProviderName, type ProviderSettings } from './providers.js';
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
}

/** A loaded detector: an onnxruntime session plus the card that says how to feed and decode it. */
export class Detector {
  private constructor(
    readonly model: ResolvedModel,
    private readonly session: ort.InferenceSession,
    readonly provider: ProviderName,
    readonly inputWidth: number,
    readonly inputHeight: number,
    /** Present when loaded with `adaptable: true`; `session` is then its session. */
    readonly heads?: HeadSwappableSession,
  ) {}

  /**
   * The input tensor's buffer of the last run, for the next one: a new one every frame (2 MB at
   * 416 px) is external memory that sets off garbage collections on the frame path.
   */
  private spareInput: Float32Array | undefined;

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
    const heads = options.adaptable ? await HeadSwappableSession.create(bytes, card, options.runtime, { modelName: ref }) : undefined;
    const { session, provider } = heads ?? (await createSession(bytes, options.runtime, { modelName: ref }));
    const problems = cardMismatches(card, session.inputMetadata, session.outputMetadata);
    if (problems.length > 0) {
      // The session holds native memory (the whole model): do not leak it with the error.
      await session.release().catch(() => undefined);
      throw new ModelError(ref, `its card ${model.file} does not fit ${model.onnxPath}: ${problems.join('; ')}`);
    }
    return new Detector(model, session, provider, size ?? card.input.width, size ?? card.input.height, heads);
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
      return new ort.Tensor('float32', out, [1, 3, height, width]);
    }
    for (let i = 0; i < plane * 3; i++) out[i] = px[i]! * k[i % 3]! + b[i % 3]!;
    return new ort.Tensor('float32', out, [1, height, width, 3]);
  }

  /**
   * Detections in source pixels, best first. The classes kept are `allowed` (ids, precomputed by the
   * pipeline), else `options.labels` (names), else all.
   */
  async detect(frame: Frame, options: DetectOptions, allowed?: ReadonlySet<number>): Promise<Detection[]> {
    const keep = allowed ?? (options.labels ? this.classIds(options.labels) : undefined);
    // The input buffer goes back for the next frame once the run is over; a detect that overlaps
    // this one (none does in the pipeline) makes its own.
    const buffer = this.spareInput;
    this.spareInput = undefined;
    const tensor = this.toTensor(frame, buffer);
    const feeds = { [this.card.input.name]: tensor };
    let run: HeadRunResult | undefined;
    let out: ort.Tensor;
    try {
      run = this.heads ? await this.heads.run(feeds, [this.card.output]) : undefined;
      out = run ? run.outputs[this.card.output]! : (await this.session.run(feeds, [this.card.output]))[this.card.output]!;
    } finally {
      this.spareInput = tensor.data as Float32Array;
    }
    const candidates = decodeOutput(this.card, { data: out.data as Float32Array, dims: out.dims }, this.inputWidth, this.inputHeight, { threshold: options.threshold, allowed: keep });
    const detections = nmsPerClass(candidates, options.nmsIou, options.maxDetections).map((c) => ({
      label: this.card.classes[c.classId] ?? `class${c.classId}`,
      classId: c.classId,
      score: c.score,
      box: toSourcePixels(c.box, frame.geometry, frame.width, frame.height),
    }));
    if (run) this.features.set(detections, { head: run.head, levels: run.levels });
    return detections;
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
    await this.session.release();
  }
}
