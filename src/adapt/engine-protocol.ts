/**
 * Messages between the Beats engine (main thread) and its training worker (src/adapt/worker.ts).
 * A supervised frame travels packed in two typed arrays whose buffers are transferred, not copied;
 * frames travel in batches, acknowledged once a batch.
 */
import type { AdaptConfig, CoreStats, Head, HeadLoss, SupervisedCell, SupervisedFrame, UpdateOutcome } from './engine-types.js';

/** What the worker is started with (workerData). */
export interface WorkerInit {
  camera: string;
  config: AdaptConfig;
  base: Head;
  /** Per level, the loss whose gradient the step follows (default bce). */
  loss?: HeadLoss[];
  /** The guard's holdout F1 counts scores at or above it (the camera's detection threshold; default 0.5). */
  threshold?: number;
  /** The head to start from: the last good one. */
  head: Head;
  /** Results carry it; the engine ignores results of an older generation (before a reset). */
  generation: number;
  seed: number;
  /** Tests: the worker throws (uncaught) when it gets this frame (1 = the first). */
  faultAtFrame?: number;
}

/** A frame, packed: per cell [level, x, y, classId, target] in `meta`, the features one after another. */
export interface PackedFrame {
  time: number;
  meta: Float64Array;
  features: Float32Array;
}

/**
 * The worker's own memory, MB, after a full garbage collection of its heap: its isolate's heap,
 * array buffers and external memory (the main thread's process.memoryUsage() does not count them),
 * and TensorFlow.js's live tensors and their bytes.
 */
export interface WorkerMemory {
  heapUsed: number;
  /** The heap V8 holds for the worker (used or not): what the worker's heap adds to RSS. */
  heapTotal: number;
  arrayBuffers: number;
  external: number;
  tfTensors: number;
  tfBytes: number;
  /** TensorFlow.js's WebAssembly heap (0 on another backend): it adds to RSS and no JS heap counts it. */
  wasmHeap: number;
}

export type ToWorker = { type: 'frames'; frames: PackedFrame[] } | { type: 'reset'; head: Head; generation: number } | { type: 'memory'; id: number };

export type FromWorker =
  | { type: 'ready' }
  /** `frames` frames processed (one batch). */
  | { type: 'ack'; generation: number; frames: number; stats: CoreStats }
  | { type: 'outcome'; generation: number; outcome: UpdateOutcome }
  /** The answer to a `memory` request of the same id. */
  | { type: 'memory'; id: number; memory: WorkerMemory };

const META = 6;

export function packFrame(frame: SupervisedFrame): PackedFrame {
  const meta = new Float64Array(frame.cells.length * META);
  let total = 0;
  for (const c of frame.cells) total += c.features.length;
  const features = new Float32Array(total);
  let o = 0;
  frame.cells.forEach((c, i) => {
    meta.set([c.level, c.x, c.y, c.classId, c.target, c.anchor ? 1 : 0], i * META);
    features.set(c.features, o);
    o += c.features.length;
  });
  return { time: frame.time, meta, features };
}

/** The cells of a packed frame; their features are views into the packed array. `dims[level]` is D. */
export function unpackFrame(packed: PackedFrame, dims: readonly number[]): SupervisedFrame {
  const cells: SupervisedCell[] = [];
  let o = 0;
  for (let i = 0; i < packed.meta.length; i += META) {
    const level = packed.meta[i]!;
    const D = dims[level]!;
    cells.push({
      level,
      x: packed.meta[i + 1]!,
      y: packed.meta[i + 2]!,
      classId: packed.meta[i + 3]!,
      target: packed.meta[i + 4] === 1 ? 1 : 0,
      ...(packed.meta[i + 5] === 1 ? { anchor: true } : {}),
      features: packed.features.subarray(o, o + D),
    });
    o += D;
  }
  return { time: packed.time, cells };
}
