import { Subject, concatMap, from, lastValueFrom, tap, toArray, type Observable } from 'rxjs';
import { readFrames } from '../../src/source/frames.js';
import type { Frame, FrameSourceOptions } from '../../src/source/frame.js';

/**
 * Reads a source the way the pipeline does: one frame at a time, asking for the next only when
 * `consume` finished with the previous. Resolves with what `consume` returned for each frame.
 */
export function consumeFrames<T>(options: FrameSourceOptions, consume: (frame: Frame) => Promise<T> | T, limit?: (frames$: Observable<Frame>) => Observable<Frame>): Promise<T[]> {
  const demand$ = new Subject<void>();
  const frames$ = readFrames(options, demand$);
  return lastValueFrom(
    (limit ? limit(frames$) : frames$).pipe(
      concatMap((frame) => from(Promise.resolve(consume(frame)))),
      tap(() => demand$.next()),
      toArray(),
    ),
  );
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
