/** The supervise step of a camera's chain: an adapting camera's adapter sees each tracked frame (it copies what it needs and returns at once). */
import { tap, type MonoTypeOperatorFunction } from 'rxjs';
import type { CameraAdapter } from '../adapt/camera-adapter.js';
import type { TrackedFrame } from './types.js';

export function supervise(adapter: CameraAdapter | undefined): MonoTypeOperatorFunction<TrackedFrame> {
  return tap(({ frame, detections, update, sourceFrame }) => adapter?.observe(frame, detections, update.active, sourceFrame));
}
