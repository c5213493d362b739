/** The supervise step of a camera's chain: an adapting camera's adapter sees each tracked frame (it copies what it needs and returns at once). */
import { tap, type MonoTypeOperatorFunction } from 'rxjs';
import type { SiteAdapter } from '../adapt/site-adapter.js';
import type { TrackedFrame } from './types.js';

export function supervise(adapter: SiteAdapter | undefined): MonoTypeOperatorFunction<TrackedFrame> {
  return tap(({ frame, detections, update, sourceFrame }) => adapter?.observe(frame, detections, update.active, sourceFrame));
}
