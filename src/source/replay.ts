/**
 * A stream read once, in order, one frame at a time: the next frame is asked for only when
 * `onFrame` has finished with this one, so nothing is dropped and nothing queues (a file is read
 * exactly as fast as its consumer goes). Optionally paced like a live camera. What evaluation,
 * labelling and training data loading use to walk a video.
 */
import { Subject, concatMap, from, lastValueFrom, take, tap } from 'rxjs';
import type { Frame, FrameOutput } from './frame.js';
import { readFrames } from './frames.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ReplayOptions {
  /** At most this many frames (default: to the end). */
  frames?: number;
  /** Times real time (0 or absent: as fast as `onFrame` goes). */
  speed?: number;
  /** The camera name its log lines carry. */
  camera?: string;
}

export async function replay(url: string, output: FrameOutput, onFrame: (frame: Frame) => Promise<void>, options: ReplayOptions = {}): Promise<void> {
  const speed = options.speed ?? 0;
  const demand$ = new Subject<void>();
  const started = performance.now();
  await lastValueFrom(
    readFrames({ camera: options.camera ?? 'replay', url, output }, demand$).pipe(
      take(options.frames ?? Infinity),
      concatMap((frame) =>
        from(
          (async () => {
            if (speed > 0) {
              const wait = started + (frame.streamTime * 1000) / speed - performance.now();
              if (wait > 0) await sleep(wait);
            }
            await onFrame(frame);
          })(),
        ),
      ),
      tap(() => demand$.next()),
    ),
    { defaultValue: undefined },
  );
}
