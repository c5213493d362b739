/** What the pipeline reports of a camera and of each processed frame; read by the monitoring (serve/) and by tools. */
import type { Detection } from '../model/detection.js';
import type { SourceStats, Frame } from '../source/frame.js';
import type { EventOutput } from '../publish/messages.js';
import type { TrackView } from '../track/tracker.js';

/** What one camera did in this run; read by the status line and returned at the end. */
export interface CameraStats {
  source: SourceStats;
  processed: number;
  detections: number;
  /** Mean inference time (preprocess + onnxruntime + decode) of the last frames, ms. */
  inferenceMs: number;
  /** Inference time of the latest frame, ms (the metrics' histogram). */
  lastInferenceMs: number;
}

export interface FrameResult {
  camera: string;
  frame: Frame;
  /** Detections above detect.threshold, with the id of the confirmed track each belongs to. */
  detections: Array<Detection & { trackId?: number }>;
  /** Tracks alive after this frame (confirmed and tentative). */
  tracks: readonly TrackView[];
  events: EventOutput;
}
