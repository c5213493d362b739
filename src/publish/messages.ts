/**
 * The payloads Beats publishes on MQTT (and shows on the live page): shared by the stages that build
 * them, the publisher, the monitoring and the adaptation; and what a frame's event layer hands to the
 * publisher (EventOutput). Types and one pure builder; imports only the frame's and the detector's
 * vocabulary.
 */
import type { Detection } from '../model/detection.js';
import type { Frame } from '../source/frame.js';

/** The payload of `<prefix>/<camera>/detections`. */
export interface DetectionsMessage {
  camera: string;
  frame: number;
  /** Epoch milliseconds of the frame. */
  ts: number;
  model: { name: string; version: string };
  width: number;
  height: number;
  detections: Array<{ label: string; class_id: number; score: number; box: [number, number, number, number]; track_id?: number }>;
}

export function detectionsMessage(
  camera: string,
  frame: { index: number; ts: number; width: number; height: number },
  model: { name: string; version: string },
  detections: ReadonlyArray<Detection & { trackId?: number }>,
): DetectionsMessage {
  const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;
  return {
    camera,
    frame: frame.index,
    ts: Math.round(frame.ts),
    model,
    width: frame.width,
    height: frame.height,
    detections: detections.map((d) => ({
      label: d.label,
      class_id: d.classId,
      score: round(d.score, 3),
      box: d.box.map((v) => round(v, 1)) as [number, number, number, number],
      ...(d.trackId !== undefined ? { track_id: d.trackId } : {}),
    })),
  };
}

/** The `after` (and `before`) object of a `<prefix>/events` message. */
export interface EventState {
  id: string;
  camera: string;
  label: string;
  score: number;
  top_score: number;
  box: [number, number, number, number];
  /** Epoch seconds, from the frames' stream time. */
  start_time: number;
  end_time: number | null;
  current_zones: string[];
  entered_zones: string[];
  stationary: boolean;
  /** Whether a snapshot of the best frame was published. */
  has_snapshot: boolean;
  model: { name: string; version: string };
}

export interface EventMessage {
  /** Unique per message: `<event id>:<n>`. Subscribers drop duplicates by it. */
  id: string;
  type: 'new' | 'update' | 'end';
  before: EventState;
  after: EventState;
}

/** What the event layer asks to publish for one frame: event messages, snapshots to take, counts that changed. */
export interface SnapshotRequest {
  event: EventState;
  frame: Frame;
  box: readonly [number, number, number, number];
}

export interface CountChange {
  label: string;
  zone?: string;
  count: number;
}

export interface EventOutput {
  messages: EventMessage[];
  snapshots: SnapshotRequest[];
  counts: CountChange[];
}

/** Why the guard refused an update ('persist': accepted, but its version could not be written). */
/** Why the guard refused an update: head updates by holdout loss, holdout F1 or replay loss; whole-model ones by holdout F1, replay F1 or a non-finite loss; either when the accepted version could not be written. */
export type RejectReason = 'holdout_loss' | 'holdout_f1' | 'replay_loss' | 'replay_f1' | 'non_finite' | 'persist';

/** The payload of `<prefix>/<camera>/model`. */
export interface ModelStatusMessage {
  camera: string;
  base: { model: string; version: string };
  adaptation: 'on' | 'off';
  /** The head version inference runs (0: the base model's), and its label in the detector. */
  version: number;
  head: string;
  accepted: number;
  rejected: number;
  rolled_back: number;
  rejected_by: Record<RejectReason, number>;
  /** Epoch seconds. */
  last_update: number | null;
  last_accepted: number | null;
  supervised_frames: number;
  dropped_frames: number;
  cells_trained: number;
  verdicts_used: number;
  /** Keyframes the teacher labelled (and those whose features were gone when it answered), and its stride now. */
  teacher: { model: string; keyframes: number; late: number; stride: number; /** Whole model: keyframes the teacher failed on. */ failed?: number } | null;
  /** Frames on which a confirmed track labelled its own low-score detection. */
  track_miss_frames: number;
  grid: number;
  /** E+ + E- per region, rows top first. */
  error_energy: number[][];
  /** `all` when the whole model adapts (cameras[].adapt.layers); absent for the class head. */
  layers?: 'head' | 'all';
  /** Whole model: supervised frames trained on and held out for the guard, the training worker's share of its time, its restarts. */
  frames_trained?: number;
  frames_held_out?: number;
  train_share?: number;
  worker_restarts?: number;
  /** Whole model: accepted operator verdicts, which carry no frame to train a body on and are not used. */
  verdicts_ignored?: number;
  /** Whole model with a teacher: whose detections the camera publishes, why, and how often that changed (adapt.teacher.serve). */
  serving?: { model: string; by: 'student' | 'teacher'; reason: string; switches: number };
  /** Whole model: the score the camera's published detections count from now (adapt.whole.threshold). */
  threshold?: number;
}
