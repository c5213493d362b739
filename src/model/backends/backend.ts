/**
 * The detector backend interface (one small file per backend beside it): what runs a model on a
 * frame's input tensor and decodes the result. `in-process.ts` runs onnxruntime on the calling
 * thread; `worker.ts` runs it in a worker thread shared by the cameras on the same model, batching
 * frames that wait at the same time. `Detector` (model/detector.ts) makes the input tensor and turns
 * the candidates into detections in source pixels; the backend does what lies between.
 */
import { ModelError } from '../../errors.js';
import type { Candidate } from '../decode.js';
import type { ProviderName } from '../providers.js';

/** How one frame's output is decoded (per frame: cameras on one model have their own). */
export interface ItemOptions {
  threshold: number;
  nmsIou: number;
  maxDetections: number;
  /** Class ids to keep; undefined keeps all. */
  allowed?: readonly number[];
}

export interface InferItem {
  /** The model input of one frame, [1, ...] as the card's layout says; owned by the backend until the result. */
  input: Float32Array;
  options: ItemOptions;
}

export interface InferResult {
  /** After NMS, best first, in model-input pixels. */
  candidates: Candidate[];
  /** The input buffer, handed back for the next frame (a transferred buffer comes back the same way). */
  input: Float32Array;
}

/** What a backend did so far; read by the metrics and the bench. */
export interface BackendStats {
  /** onnxruntime runs. */
  runs: number;
  /** Frames that went through them (runs × batch sizes). */
  frames: number;
  /** Frames whose run failed or was lost with a crashed worker. */
  failedFrames: number;
  /** Worker threads started again after a crash. */
  restarts: number;
  /** Frames per run, counted by batch size (index = size). */
  batchSizes: number[];
  /** Milliseconds a batch was out in the model (sent to answered); against wall time, how busy the model was kept. */
  busyMs: number;
}

export interface DetectorBackend {
  readonly kind: 'in-process' | 'worker';
  readonly provider: ProviderName;
  /** The most frames one run takes (1: the model's batch is fixed, or batching is off). */
  readonly maxBatch: number;
  infer(item: InferItem): Promise<InferResult>;
  /**
   * A camera that will send frames: while every attached camera has a frame waiting, a batch goes
   * at once instead of waiting out the batch timeout. The returned function detaches it.
   */
  attach(): () => void;
  stats(): BackendStats;
  close(): Promise<void>;
}

/** A frame the inference worker could not run: its worker crashed, or it was closed, with the frame in flight or waiting. */
export class InferenceWorkerError extends ModelError {
  constructor(model: string, readonly reason: 'crashed' | 'closed' | 'busy' | 'failed', message: string, options?: { cause?: unknown }) {
    super(model, `inference worker: ${message}`, options);
  }
}

export function emptyStats(): BackendStats {
  return { runs: 0, frames: 0, failedFrames: 0, restarts: 0, batchSizes: [], busyMs: 0 };
}

export function countRun(stats: BackendStats, size: number): void {
  stats.runs++;
  stats.frames += size;
  stats.batchSizes[size] = (stats.batchSizes[size] ?? 0) + 1;
}
