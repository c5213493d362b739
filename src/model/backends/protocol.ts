/** The messages between a worker backend (worker.ts) and its thread (worker-thread.ts). */
import type { ModelCard } from '../card.js';
import type { Candidate } from '../decode.js';
import type { ProviderName, ProviderSettings } from '../providers.js';
import type { InferItem } from './backend.js';

/** The thread's workerData. */
export interface WorkerInit {
  /** The ONNX model, already rewritten for the input size and batch it runs at. */
  model: Uint8Array;
  modelName: string;
  settings: ProviderSettings;
  card: ModelCard;
  inputWidth: number;
  inputHeight: number;
  /** The batch asked for; the thread answers with the batch the model really takes. */
  maxBatch: number;
}

export type ToWorker = { type: 'run'; id: number; items: InferItem[] };

export type FromWorker =
  | { type: 'ready'; provider: ProviderName; maxBatch: number; unbatched?: string }
  | { type: 'failed'; message: string }
  | { type: 'done'; id: number; candidates: Candidate[][]; inputs: Float32Array[] }
  | { type: 'error'; id: number; message: string; inputs: Float32Array[] };
