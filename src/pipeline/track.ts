/**
 * The track and events steps of a camera's chain: the tracker's update for each frame's detections,
 * then the frame's result: the detections above detect.threshold (or the serving weights' own
 * threshold, which the frame carries) with their confirmed track's id,
 * and what the event layer makes of the tracks.
 */
import { map, type OperatorFunction } from 'rxjs';
import type { CameraConfig } from '../config/schema.js';
import type { EventBuilder } from '../track/events.js';
import type { Tracker } from '../track/tracker.js';
import type { DetectedFrame, FrameResult, TrackedFrame } from './types.js';

export function track(tracker: Tracker): OperatorFunction<DetectedFrame, TrackedFrame> {
  return map((input) => ({ ...input, update: tracker.update(input.detections, input.frame, input.threshold) }));
}

export function events(builder: EventBuilder, camera: CameraConfig): OperatorFunction<TrackedFrame, FrameResult> {
  return map(({ frame, detections, update, servedBy, threshold = camera.detect.threshold }) => {
    const trackOf = new Map(update.active.filter((t) => t.confirmed && t.detection !== undefined).map((t) => [t.detection!, t.id]));
    const published = detections.flatMap((d, i) => (d.score >= threshold ? [{ ...d, trackId: trackOf.get(i) }] : []));
    return { camera: camera.name, frame, detections: published, tracks: update.active, events: builder.update(frame, update.active, update.ended, servedBy, threshold), ...(servedBy ? { servedBy } : {}) };
  });
}
