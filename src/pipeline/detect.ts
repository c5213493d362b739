/** The detect step of a camera's chain: the camera's detector on each frame, its time kept in the camera's stats. */
import { concatMap, from, map, type OperatorFunction } from 'rxjs';
import type { CameraConfig } from '../config/schema.js';
import type { SiteAdapter } from '../adapt/site-adapter.js';
import type { Detector } from '../model/detector.js';
import type { CameraFrame, CameraStats, DetectedFrame } from './types.js';

export function detect(detector: Detector, camera: CameraConfig, stats: CameraStats, adapter?: SiteAdapter): OperatorFunction<CameraFrame, DetectedFrame> {
  const allowed = camera.detect.labels ? detector.classIds(camera.detect.labels) : undefined;
  // The detector runs at the tracker's low threshold: low-score boxes keep tracks alive through
  // occlusion and blur (ByteTrack's second stage); only boxes above detect.threshold are published.
  const options = { threshold: camera.events.low_threshold, nmsIou: camera.detect.nms_iou, maxDetections: camera.detect.max_detections };
  return concatMap((input) => {
    const started = performance.now();
    // A teacher serving the camera (adapt.teacher.serve) sees the source's frame, at its own input size.
    const teacher = adapter?.servingTeacher?.();
    if (teacher) return from(teacher.detect(input.sourceFrame, options)).pipe(map((detections) => ({ ...input, detections, servedBy: teacher.model })));
    // Read as the run starts: a weight swap replaces the session between runs and brings its
    // threshold with it, while a run already under way finishes on the weights it started with.
    const threshold = adapter?.servingThreshold?.();
    return from(detector.detect(input.frame, options, allowed)).pipe(
      map((detections) => {
        const ms = performance.now() - started;
        stats.inferenceMs = stats.processed === 0 ? ms : stats.inferenceMs * 0.9 + ms * 0.1;
        stats.lastInferenceMs = ms;
        return { ...input, detections, ...(threshold === undefined ? {} : { threshold }) };
      }),
    );
  });
}
