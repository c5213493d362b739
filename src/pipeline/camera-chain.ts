/**
 * One camera's chain: frames on demand, then for each frame its named steps
 * `detect → track → supervise → events → publish`, then ask for the next frame.
 */
import { EMPTY, Subject, asapScheduler, catchError, observeOn, concatMap, concatWith, defer, finalize, from, ignoreElements, of, pipe, startWith, take, takeUntil, tap, type Observable } from 'rxjs';
import type { SiteAdapter } from '../adapt/site-adapter.js';
import type { CameraConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import type { Detector } from '../model/detector.js';
import type { EventPublisher } from '../publish/events.js';
import type { EventMessage } from '../publish/messages.js';
import type { MqttPublisher } from '../publish/mqtt.js';
import { readFrames } from '../source/frames.js';
import { EventBuilder } from '../track/events.js';
import { Tracker, trackerOptions } from '../track/tracker.js';
import { concatMapEager } from './concat-map-eager.js';
import { detect } from './detect.js';
import { cameraEventQueue, publish } from './publish.js';
import { supervise } from './supervise.js';
import type { Frame } from '../source/frame.js';
import { events as eventsOf, track } from './track.js';
import type { CameraStats, FrameResult } from './types.js';

const log = logger('pipeline');

/** Frames of a camera in detection at once when the detector is off the event loop (see cameraChain). */
const DETECT_DEPTH = 2;

export interface CameraParts {
  camera: CameraConfig;
  detector: Detector;
  publisher: MqttPublisher;
  events: EventPublisher;
  stats: CameraStats;
  /** On-device adaptation, when the camera has it (src/adapt/camera-adapter.ts). */
  adapter?: SiteAdapter;
}

export interface ChainOptions {
  /** Stop after this many processed frames. */
  maxFrames?: number;
  /** Every event message, in the order it is published. */
  onEvent?: (message: EventMessage) => void;
}

/**
 * The source emits a frame only when `processed$` asks for it, so frames wait in the source's
 * bounded mailbox and nowhere else (see readFrames): an in-process detector has one frame in the
 * chain at a time, asked for once the previous one is published. A detector off the event loop (a
 * worker) overlaps: two frames are in detection at once (the worker infers one while the next waits
 * there, its model input ready, so the worker starts it the moment it answers), a frame is asked for
 * as soon as one leaves detection for tracking, and this thread tracks and publishes frame n while
 * the worker infers frame n + 1 (at most two frames in detection, one in tracking and publishing,
 * and one detected in between; frames stay in order). A frame that fails is
 * logged, counted in `stats.failed` and skipped; the camera goes on. At the end of a finite source,
 * or when `stop$` fires, open events are ended.
 */
export function cameraChain({ camera, detector, publisher, events, stats, adapter }: CameraParts, stop$: Observable<void>, options: ChainOptions): Observable<FrameResult> {
  const processed$ = new Subject<void>();
  const model = { name: detector.card.name, version: detector.card.version };
  const tracker = new Tracker(trackerOptions(camera));
  const builder = new EventBuilder({
    camera: camera.name,
    model,
    threshold: camera.detect.threshold,
    minFrames: camera.events.min_frames,
    updateIntervalS: camera.events.update_interval_s,
    zones: camera.zones,
    snapshots: camera.events.snapshots,
    knownLabels: camera.detect.labels,
  });
  const eventQueue = cameraEventQueue(camera, events, log, (message) => options.onEvent?.(message));
  const detectStep = detect(detector, camera, stats, adapter);
  const afterDetect = pipe(track(tracker), supervise(adapter), eventsOf(builder, camera), publish(camera, model, publisher, eventQueue, stats));
  const overlap = detector.backendKind === 'worker';
  const failed = (frame: Frame) => (err: unknown) => {
    stats.failed++;
    log.error(`camera ${camera.name}: frame ${frame.index} failed: ${errorMessage(err)}`);
    return EMPTY;
  };

  const endOpenEvents = defer(() => {
    tracker.flush();
    const output = builder.flush();
    return from(eventQueue.push(output).then(() => eventQueue.drain())).pipe(ignoreElements());
  });

  const source = camera.source;
  const frames$ = readFrames(
    {
      camera: camera.name,
      url: source.url,
      // With a teacher, the larger of the two inputs; the student's frame is made from it.
      output: adapter?.sourceOutput() ?? detector.frameOutput(),
      fps: source.fps,
      loop: source.loop,
      realtime: source.realtime,
      queueFrames: source.queue_frames,
      stallTimeoutS: source.stall_timeout_s,
      reconnect: { initialS: source.reconnect.initial_s, maxS: source.reconnect.max_s },
      stats: stats.source,
    },
    // The source sends one frame when subscribed; with a worker, one more, so that DETECT_DEPTH are in detection.
    overlap ? processed$.pipe(startWith(...Array<undefined>(DETECT_DEPTH - 1).fill(undefined))) : processed$,
  ).pipe(
    // Stopping ends the frames, not the chain: open events still get their `end`.
    takeUntil(stop$),
    options.maxFrames ? take(options.maxFrames) : tap(),
  );
  const detectOne = (sourceFrame: Frame) => {
    const frame = adapter ? adapter.studentFrame(sourceFrame) : sourceFrame;
    return of({ sourceFrame, frame }).pipe(
      detectStep,
      catchError((err: unknown) => {
        processed$.next();
        return failed(frame)(err);
      }),
    );
  };
  const detected$ = frames$.pipe(overlap ? concatMapEager(detectOne, DETECT_DEPTH) : concatMap(detectOne));
  return defer(() => {
    // While attached, a worker batches this camera's frames with the other cameras' on the same model.
    const detach = detector.attach();
    return detected$.pipe(
      concatMap((detected) => {
        // Overlap: frame n leaves detection here, so frame n + 1 may enter it while n is tracked and published.
        if (overlap) processed$.next();
        return of(detected).pipe(
          // Tracking and publishing wait for the end of this turn: every camera whose result came
          // back in the same message hands its next frame to the worker first, so that batch leaves
          // before this thread's work on the frames just detected, and overlaps it.
          overlap ? observeOn(asapScheduler) : tap(),
          afterDetect,
          catchError(failed(detected.frame)),
          finalize(() => {
            if (!overlap) processed$.next();
          }),
        );
      }),
      finalize(detach),
      concatWith(endOpenEvents),
    );
  });
}
