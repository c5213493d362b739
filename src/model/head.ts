/**
 * The Beats head (BEATS.md) inside inference: head surgery at load time and a live head swap.
 *
 * The head is a graph INPUT fed with every run, not initializers swapped by rebuilding the
 * session: feeding it costs nothing measurable, while a rebuild is hundreds of times dearer, blocks
 * the event loop for the whole build (every camera of the process stalls) and, under TensorRT, is
 * an engine build. The rebuild path stays as `withHeadInitializers`, for the benchmark and as a
 * cross-check (test/head.test.ts). Figures, and the command that makes them
 * (`npx tsx bench/head-swap.ts`): docs/adaptation.md, "The head swap".
 *
 * API
 * - `discoverHeads(bytes, card)`: the card's `head` entries checked against the graph (HeadError
 *   naming the card and what is missing otherwise). `proposeHeadEntries` guesses them from the graph.
 * - `headSurgery(bytes, card)`: the rewritten model (features are outputs, head weights are inputs),
 *   the heads found, and the base head weights.
 * - `HeadSwappableSession`: an onnxruntime session over the surgered model that feeds the current
 *   head with every run. `setHead(weights)` swaps it between two runs; `run` returns the model's
 *   outputs and every level's features.
 * - `Detector.load(ref, { runtime, adaptable: true })` builds one; `detector.setHead(weights)`,
 *   `detector.headFeatures(detections)` (the features of the frame those detections came from).
 */
import type * as ort from 'onnxruntime-node';
import { Tensor } from 'onnxruntime-node';
import type { ModelCard } from './card.js';
import { createSession, type ProviderName, type ProviderSettings } from './providers.js';
import { checkHeadWeights, headSurgery, type HeadLevelWeights, type HeadSpec } from './head-graph.js';

export { HeadError, checkHeadWeights, discoverHeads, headSurgery, proposeHeadEntries, withHeadInitializers, type HeadLevelWeights, type HeadSpec, type SurgeryResult } from './head-graph.js';

/** Which head a run used: `serial` counts swaps (0 = the model's own head), `label` is the caller's name for it. */
export interface HeadStamp {
  serial: number;
  label: string;
}

/** One level's feature map from a run: NCHW, `data[((n * D + d) * H + y) * W + x]`. */
export interface HeadFeatureMap {
  level: number;
  stride: number;
  /** The tensor's name in the graph. */
  features: string;
  dims: [number, number, number, number];
  data: Float32Array;
}

/** What adaptation gets from every inference pass: the features of each head level, and the head that ran on them. */
export interface FrameHeadFeatures {
  head: HeadStamp;
  levels: HeadFeatureMap[];
}

export interface HeadRunResult extends FrameHeadFeatures {
  /** The outputs asked for, by name. */
  outputs: Record<string, ort.Tensor>;
}

/** A head as it is fed: immutable once built (new arrays and tensors on every swap, never written again). */
interface LiveHead {
  stamp: HeadStamp;
  levels: readonly HeadLevelWeights[];
  feeds: Readonly<Record<string, ort.Tensor>>;
}

function liveHead(heads: readonly HeadSpec[], levels: HeadLevelWeights[], stamp: HeadStamp): LiveHead {
  const feeds: Record<string, ort.Tensor> = {};
  heads.forEach((h, i) => {
    feeds[h.weight] = new Tensor('float32', levels[i]!.weight, [h.classes, h.depth, 1, 1]);
    feeds[h.bias] = new Tensor('float32', levels[i]!.bias, [h.classes]);
  });
  return { stamp, levels, feeds: Object.freeze(feeds) };
}

const copyLevels = (levels: readonly HeadLevelWeights[]): HeadLevelWeights[] => levels.map((l) => ({ weight: Float32Array.from(l.weight), bias: Float32Array.from(l.bias), shape: [l.shape[0], l.shape[1]] }));

/**
 * An onnxruntime session whose class head is fed with every run (after `headSurgery`), so that a new
 * head takes effect on the next run without rebuilding anything.
 *
 * Swapping is atomic by construction: the live head is one reference to immutable arrays and
 * tensors. `setHead` checks and copies the new weights, builds new tensors, then replaces the
 * reference in one assignment; `run` reads the reference once, synchronously, when it is called. So
 * a run in flight keeps the head it started with, the next run uses the new one, and no run ever
 * sees half-written weights (nor weights the caller keeps writing into after `setHead`).
 */
export class HeadSwappableSession {
  private live: LiveHead;
  private serial = 0;
  private readonly featureNames: string[];

  private constructor(
    readonly modelName: string,
    readonly session: ort.InferenceSession,
    readonly provider: ProviderName,
    readonly heads: readonly HeadSpec[],
    private readonly base: readonly HeadLevelWeights[],
  ) {
    this.live = liveHead(heads, copyLevels(base), { serial: 0, label: 'base' });
    this.featureNames = [...new Set(heads.map((h) => h.features))];
  }

  /**
   * Surgery on `bytes` (the model as it will run: resize it first), then an onnxruntime session on it.
   * Throws HeadError when the card's head is not in the graph, ModelError when onnxruntime cannot load it.
   */
  static async create(bytes: Uint8Array, card: ModelCard, runtime: ProviderSettings, options: { modelName?: string } = {}): Promise<HeadSwappableSession> {
    const surgery = headSurgery(bytes, card);
    const { session, provider } = await createSession(surgery.bytes, runtime, { modelName: options.modelName ?? card.name });
    return new HeadSwappableSession(options.modelName ?? card.name, session, provider, surgery.heads, surgery.baseWeights);
  }

  /** The head the next run will use. */
  get current(): HeadStamp {
    return this.live.stamp;
  }

  /** Copies of the head the next run will use, per level. */
  head(): HeadLevelWeights[] {
    return copyLevels(this.live.levels);
  }

  /** Copies of the model's own head (what adaptation starts from and is pulled toward). */
  baseHead(): HeadLevelWeights[] {
    return copyLevels(this.base);
  }

  /**
   * Makes `weights` the head of every run started from now on. Throws HeadError (and keeps the
   * current head) when a level's shape is not the model's [C, D] or a value is not finite.
   */
  setHead(weights: readonly HeadLevelWeights[], label = `head-${this.serial + 1}`): HeadStamp {
    const levels = checkHeadWeights(this.modelName, this.heads, weights);
    const next = liveHead(this.heads, levels, { serial: this.serial + 1, label });
    this.serial++;
    this.live = next;
    return next.stamp;
  }

  /** Back to the model's own head (a rollback to base). */
  resetHead(): HeadStamp {
    return this.setHead(this.base, 'base');
  }

  /**
   * Runs the model with the current head: `outputs` are the outputs asked for, `levels` every head
   * level's features (set `features: false` to skip reading them back), `head` the head that ran.
   */
  async run(feeds: Readonly<Record<string, ort.Tensor>>, outputNames: readonly string[], options: { features?: boolean } = {}): Promise<HeadRunResult> {
    const live = this.live;
    const withFeatures = options.features !== false;
    const fetch = withFeatures ? [...new Set([...outputNames, ...this.featureNames])] : [...outputNames];
    const results = await this.session.run({ ...feeds, ...live.feeds }, fetch);
    const outputs: Record<string, ort.Tensor> = {};
    for (const name of outputNames) outputs[name] = results[name]!;
    const levels: HeadFeatureMap[] = withFeatures
      ? this.heads.map((h) => {
          const t = results[h.features]!;
          return { level: h.level, stride: h.stride, features: h.features, dims: t.dims.slice(0, 4) as [number, number, number, number], data: t.data as Float32Array };
        })
      : [];
    return { outputs, head: live.stamp, levels };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
