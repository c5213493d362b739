/**
 * What the pipeline asks of a camera's on-device adaptation, whichever layers adapt: the class head
 * (camera-adapter.ts) or the whole model (whole-adapter.ts). The chain feeds it frames, the command
 * router its verdicts, rollbacks and on/off, the monitoring its status and history.
 */
import { Observable } from 'rxjs';
import type { CameraConfig } from '../config/schema.js';
import type { Detection } from '../model/detection.js';
import type { ModelStatusMessage } from '../publish/messages.js';
import type { Frame, FrameOutput } from '../source/frame.js';
import type { TrackView } from '../track/tracker.js';
import type { AcceptedFeedback } from './feedback.js';
import type { ModelHistory } from './model-history.js';
import type { WorkerMemory } from './engine-protocol.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelVersion } from './model-history.js';

/** A teacher serving a camera: its detections already in the student's classes. */
export interface ServingTeacher {
  model: { name: string; version: string };
  detect(frame: Frame, options: { threshold: number; nmsIou: number; maxDetections: number }): Promise<Detection[]>;
}

export interface SiteAdapter {
  readonly camera: CameraConfig;
  /** What the source should deliver (the larger of the student's and the teacher's inputs). */
  sourceOutput(): FrameOutput;
  /** The source's frame at the student's input. */
  studentFrame(frame: Frame): Frame;
  /** A processed frame, on the frame path: returns at once. */
  observe(frame: Frame, detections: Detection[], tracks: readonly TrackView[], source?: Frame): void;
  onVerdict(feedback: AcceptedFeedback): void;
  /** A rollback command's payload (a version number or `base`); rejects saying why. */
  rollback(payload: string): Promise<void>;
  setEnabled(on: boolean): void;
  statusUpdates(intervalMs?: number): Observable<ModelStatusMessage>;
  statusMessage(): ModelStatusMessage;
  history(): Promise<ModelHistory>;
  /** The score the camera's own model's detections count from now, when it is not detect.threshold (adapted weights that chose theirs). */
  servingThreshold?(): number | undefined;
  /** The model that serves the camera's detections now, when it is not the camera's own (a teacher serving while the student learns). */
  servingTeacher?(): ServingTeacher | undefined;
  /** The training worker's own memory (the soak counts it); undefined when it does not say. */
  trainingMemory(): Promise<WorkerMemory | undefined>;
  close(): Promise<void>;
}

/**
 * A status message whenever it changes: at once, then checked every `intervalMs`, and a last time
 * when `closed$` fires (the final figures); completes then.
 */
export function statusStream(message: () => ModelStatusMessage, closed$: Observable<void>, isClosed: () => boolean, intervalMs: number): Observable<ModelStatusMessage> {
  return new Observable<ModelStatusMessage>((subscriber) => {
    let last: string | undefined;
    const emit = () => {
      const m = message();
      const text = JSON.stringify(m);
      if (text === last) return;
      last = text;
      subscriber.next(m);
    };
    emit();
    if (isClosed()) {
      subscriber.complete();
      return undefined;
    }
    const timer = setInterval(emit, intervalMs).unref();
    const closing = closed$.subscribe(() => {
      clearInterval(timer);
      emit();
      subscriber.complete();
    });
    return () => {
      clearInterval(timer);
      closing.unsubscribe();
    };
  });
}

/**
 * A rollback command's payload (a version number or `base`) carried out by `rollback`; a payload
 * that is no version, or a rollback the engine refuses, is logged (limited: the payload comes from
 * outside) and rethrown, so the command router answers it on `.../rollback/rejected`.
 */
export async function rollbackCommand(log: Logger, camera: string, payload: string, rollback: (target: number | 'base') => Promise<unknown>): Promise<void> {
  const target = parseRollbackTarget(payload);
  try {
    await rollback(target);
  } catch (err) {
    log.limited(`${camera} rollback`).warn(`${camera}: rollback to ${String(target)} refused: ${errorMessage(err)}`);
    throw err;
  }
}

/** `base` or a positive integer; anything else is an Error saying so. */
export function parseRollbackTarget(text: string): number | 'base' {
  const t = text.trim();
  if (t === 'base') return 'base';
  if (/^\d+$/.test(t) && Number(t) >= 1 && Number.isSafeInteger(Number(t))) return Number(t);
  throw new Error(`"${t.slice(0, 100)}" is not a version: give a version number (1, 2, ...) or "base"`);
}

/** What the model panel needs of a version on disk, head or whole weight set. */
interface VersionRecord {
  version: number;
  parent: number;
  kind: 'update' | 'rollback';
  rollbackOf?: number | 'base';
  createdAt: number;
}

/** The model panel's version list: the base model, then each version with its parent or what it rolled back to. */
export function versionRows(versions: readonly VersionRecord[], current: number, base: { version: string }, startedAt: number, updateNote?: string): ModelVersion[] {
  return [
    { version: 'base', created: Math.round(startedAt / 1000), current: current === 0, note: `base model ${base.version}` },
    ...versions.map((v) => ({
      version: `v${v.version}`,
      ...(v.kind === 'update' ? { parent: v.parent === 0 ? 'base' : `v${v.parent}` } : {}),
      created: Math.round(v.createdAt / 1000),
      current: v.version === current,
      ...(v.kind === 'rollback' ? { note: `rollback to ${v.rollbackOf === 'base' ? 'base' : `v${String(v.rollbackOf)}`}` } : updateNote ? { note: updateNote } : {}),
    })),
  ];
}
