/** What the pipeline reports of a camera and of each processed frame (read by the monitoring, serve/, and by tools), and what a frame carries between the steps of a camera's chain. */
import type { Detection } from '../model/detection.js';
import type { SourceStats, Frame } from '../source/frame.js';
import type { EventOutput } from '../publish/messages.js';
import type { TrackView, TrackerUpdate } from '../track/tracker.js';
import { newSourceStats } from '../source/frame.js';
import { LatencyWindow } from './latency.js';

/** What one camera did in this run; read by the status line and returned at the end. */
export interface CameraStats {
  source: SourceStats;
  processed: number;
  detections: number;
  /** Mean inference time (preprocess + onnxruntime + decode) of the last frames, ms. */
  inferenceMs: number;
  /** Inference time of the latest frame, ms (the metrics' histogram). */
  lastInferenceMs: number;
  /** Frames that failed on the way (inference, a crashed inference worker, tracking, publishing): logged, counted, skipped. */
  failed: number;
  /** Each frame's time from decoded to its detections handed to MQTT. */
  latency: LatencyWindow;
}

export function newCameraStats(): CameraStats {
  return { source: newSourceStats(), processed: 0, detections: 0, inferenceMs: 0, lastInferenceMs: 0, failed: 0, latency: new LatencyWindow() };
}

export interface FrameResult {
  camera: string;
  frame: Frame;
  /** Detections above detect.threshold, with the id of the confirmed track each belongs to. */
  detections: Array<Detection & { trackId?: number }>;
  /** Tracks alive after this frame (confirmed and tentative). */
  tracks: readonly TrackView[];
  events: EventOutput;
  /** The model whose detections these are, when not the camera's own (a teacher serving). */
  servedBy?: { name: string; version: string };
}

/** A frame on its way through a camera's chain: as the source delivered it, and as the detector sees it. */
export interface CameraFrame {
  /** The source's frame (with a teacher, at the larger of the two inputs). */
  sourceFrame: Frame;
  /** The detector's input: the source frame, or the student's frame made from it. */
  frame: Frame;
}

/** A frame with every detection above the tracker's low threshold. */
export interface DetectedFrame extends CameraFrame {
  detections: Detection[];
  /** The score its detections count from, when not detect.threshold (adapted weights serving at their own). */
  threshold?: number;
  /** The model whose detections these are, when not the camera's own (a teacher serving). */
  servedBy?: { name: string; version: string };
}

/** A frame after the tracker: its tracks, started and ended. */
export interface TrackedFrame extends DetectedFrame {
  update: TrackerUpdate;
}
