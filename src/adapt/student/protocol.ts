/**
 * Messages between whole-model adaptation's engine (main thread, engine.ts) and its training
 * worker (worker.ts). A supervised frame's pixels are transferred, not copied; an accepted weight
 * set comes back as the ONNX file inference loads and the raw weights a version keeps, both transferred.
 */
import type { BeatsCnnSpec } from '../../train/beats-cnn.js';
import type { WorkerMemory } from '../engine-protocol.js';
import type { SupervisedImage } from './reservoir.js';
import type { StudentTrainerOptions, StudentUpdate } from './trainer.js';

/** Weights by name, as a version keeps them and the trainer starts from. */
export type NamedWeights = Array<{ name: string; shape: number[]; data: Float32Array }>;

export interface StudentWorkerInit {
  camera: string;
  /** The base model's training checkpoint (its architecture and weights). */
  checkpoint: string;
  /**
   * The network the camera serves (its card's recipe): its input may differ from the one the
   * checkpoint trained at (`beats export --input`), and the frames posted are at this one.
   */
  spec: BeatsCnnSpec;
  /** The weights to start from (the last accepted version); absent: the checkpoint's. */
  weights?: NamedWeights;
  trainer: Partial<StudentTrainerOptions>;
  /** Most of its CPU time training may take (cameras[].adapt.max_train_share). */
  maxTrainShare: number;
  /** At least this long between two updates (cameras[].adapt.min_interval_s). */
  minIntervalMs: number;
  /** Whether an accepted set comes with its operating threshold (its best F1 on the held-out frames; adapt.whole.threshold: held_out). */
  chooseThreshold: boolean;
  /** The version the results build on, for the card of an accepted set. */
  modelVersion: string;
  generation: number;
  /** Tests: the worker throws (uncaught) when it gets this frame (1 = the first). */
  faultAtFrame?: number;
}

export type ToStudentWorker =
  /** A supervised frame; `use: 'train'` never goes to the held-out set (a verdict's frames). */
  | { type: 'frame'; image: SupervisedImage; key: number; use?: 'auto' | 'train' }
  /** Start again from these weights (a rollback); results of older generations are ignored. */
  | { type: 'reset'; weights: NamedWeights | 'base'; generation: number }
  /** Its own memory, answered after the frames posted before (memory measurements only). */
  | { type: 'memory'; id: number };

export interface StudentWorkerStats {
  trained: number;
  heldOut: number;
  reservoir: number;
  holdout: number;
  /** Share of the recent wall time spent in updates. */
  trainShare: number;
  /** Held-out F1 of the serving weights as the last update attempt's guard measured it (undefined before one). */
  holdoutF1?: number;
}

export type FromStudentWorker =
  | { type: 'ready' }
  | { type: 'memory'; id: number; memory: WorkerMemory }
  | { type: 'ack'; generation: number; stats: StudentWorkerStats }
  | { type: 'outcome'; generation: number; outcome: Exclude<StudentUpdate, { kind: 'waiting' }>; onnx?: Uint8Array; weights?: NamedWeights; threshold?: number };
