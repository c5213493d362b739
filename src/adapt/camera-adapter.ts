/**
 * On-device adaptation of one camera inside the running pipeline (BEATS.md): its own adaptable
 * detector (heads are per camera), its version store under `state_dir`, its BeatsEngine, the ring of
 * supervision cells (supervision.ts), and what the camera's commands call (the pipeline routes
 * them from MQTT: src/pipeline/commands.ts):
 *
 * - `statusUpdates()`: the engine's status summarised, whenever it changes, at most once a second
 *   (published retained on `<prefix>/<camera>/model`).
 * - `rollback(payload)`: a version number or `base`; a bad one rejects with the reason.
 * - `setEnabled(on)`: off stops submitting supervision; inference goes on with the current head.
 * - `onVerdict(feedback)`: an accepted operator verdict.
 *
 * Accepted and rolled-back heads are swapped into the detector from the engine's `updates$` (between
 * two frames: `setHead` only replaces a reference). Nothing here waits on the frame path: `observe`
 * copies a few feature vectors and `engine.submit` returns at once.
 */
import { Subject, type Observable, type Subscription } from 'rxjs';
import type { CameraConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import type { Detector } from '../model/detector.js';
import type { Detection } from '../model/detection.js';
import type { ModelStatusMessage } from '../publish/messages.js';
import type { ModelHistory, ModelHistorySource } from './model-history.js';
import type { Frame, FrameOutput } from '../source/frame.js';
import { largerOutput, relayoutFrame } from '../source/relayout.js';
import type { TrackView } from '../track/tracker.js';
import { BeatsEngine, VersionStore, type EngineStatus, type RollbackTarget } from './engine.js';
import type { AcceptedFeedback } from './feedback.js';
import { SupervisionRing } from './supervision.js';
import type { FrameHeadFeatures } from '../model/head.js';
import { KeyframeSchedule, agreement, keyframePolicy, type KeyframeLabeller } from './teacher.js';
import { rollbackCommand, statusStream, versionRows, type SiteAdapter } from './site-adapter.js';
import type { WorkerMemory } from './engine-protocol.js';


export { parseRollbackTarget } from './site-adapter.js';

export class CameraAdapter implements SiteAdapter {
  private readonly log = logger('adapt');
  private readonly ring: SupervisionRing;
  private enabled = true;
  private lastTime = 0;
  private verdictsUsed = 0;
  private subscriptions: Subscription[] = [];
  private closed = false;
  /** Emits once the adapter has closed (its engine too). */
  private readonly closed$ = new Subject<void>();
  private readonly startedAt = Date.now();
  private readonly schedule: KeyframeSchedule | undefined;
  /** One teacher run at a time: keyframes that fall due while it runs wait for the next one. */
  private teacherBusy: Promise<void> | undefined;
  private teacherStats = { keyframes: 0, late: 0, failed: 0 };
  private attemptsAtKeyframe = 0;

  private constructor(
    readonly camera: CameraConfig,
    readonly detector: Detector,
    readonly engine: BeatsEngine,
    ringFrames: number,
    readonly teacher: KeyframeLabeller | undefined,
  ) {
    const misses = camera.adapt.track_misses;
    this.ring = new SupervisionRing({
      classes: detector.card.classes.length,
      frames: ringFrames,
      trackMisses: misses.enabled ? { threshold: camera.detect.threshold, minHits: misses.min_hits } : undefined,
      // What the model is sure of, for the guard only: one frame in 10 keeps the replay sample current without flooding it.
      anchors: { threshold: Math.max(camera.detect.threshold, 0.5), every: 10 },
      offCentre: detector.card.head?.map((h) => h.off_centre),
      teacherPositives: camera.adapt.teacher?.positives,
    });
    if (teacher && camera.adapt.teacher) this.schedule = new KeyframeSchedule(keyframePolicy(camera.adapt.teacher));
    this.subscriptions.push(
      engine.updates$.subscribe((event) => {
        if (event.kind === 'rejected') return;
        try {
          detector.setHead(event.head, `v${event.version}`);
          this.log.info(`${camera.name}: inference now runs head version ${event.version}${event.kind === 'rolled_back' ? ` (rollback to ${String(event.target)})` : ''}`);
        } catch (err) {
          this.log.error(`${camera.name}: head version ${event.version} could not be swapped in: ${errorMessage(err)}`);
        }
      }),
    );
  }

  /**
   * Opens the camera's versions under `stateDir`, starts its engine, and puts the latest version's
   * head into the detector (loaded with `adaptable: true`) before the first frame.
   */
  static async start(options: { camera: CameraConfig; detector: Detector; stateDir: string; ringFrames?: number; teacher?: KeyframeLabeller; seed?: number }): Promise<CameraAdapter> {
    const { camera, detector } = options;
    if (!detector.heads) throw new Error(`camera ${camera.name}: the detector was not loaded adaptable`);
    const store = await VersionStore.open({ stateDir: options.stateDir, camera: camera.name, base: detector.heads.baseHead(), keep: camera.adapt.keep_versions });
    const engine = await BeatsEngine.start({ camera: camera.name, config: camera.adapt, store, seed: options.seed, loss: detector.card.head?.map((h) => h.loss), threshold: camera.detect.threshold });
    if (engine.version > 0) detector.setHead(engine.head, `v${engine.version}`);
    return new CameraAdapter(camera, detector, engine, Math.min(options.ringFrames ?? 150, 150), options.teacher);
  }

  /**
   * What the camera's source should deliver: the larger of the student's and the teacher's inputs
   * (the student's frame is then made by `studentFrame`).
   */
  sourceOutput(): FrameOutput {
    const student = this.detector.frameOutput();
    const teacher = this.teacher?.frameOutput?.();
    return teacher ? largerOutput(student, teacher) : student;
  }

  /** The source's frame at the student's input (the frame itself when the sizes agree). */
  studentFrame(frame: Frame): Frame {
    return relayoutFrame(frame, this.detector.frameOutput());
  }

  /** Teacher keyframes: counts, and the stride now (undefined without a teacher). */
  get teacherStatus(): { keyframes: number; late: number; failed: number; stride: number } | undefined {
    return this.schedule ? { ...this.teacherStats, stride: this.schedule.stride } : undefined;
  }

  /** Resolves when no teacher run is in flight (an evaluation waits for the last one before it reads the figures). */
  async teacherIdle(): Promise<void> {
    await this.teacherBusy;
  }

  /** Whether supervision is submitted (`adapt/set`). */
  get adapting(): boolean {
    return this.enabled;
  }

  setEnabled(on: boolean): void {
    if (on !== this.enabled) this.log.info(`${this.camera.name}: adaptation ${on ? 'on' : 'off'}`);
    this.enabled = on;
  }

  /**
   * A processed frame (on the frame path): keeps its cells; submits those of labelled tracks and of
   * confirmed tracks' misses; on a keyframe, starts the teacher (not awaited). `frame` is the
   * student's; `source` the source's frame when it is larger (the teacher's input is made from it);
   * `features` those of the detect call the detections come from, when `detections` is a filtered copy.
   */
  observe(frame: Frame, detections: Detection[], tracks: readonly TrackView[], source: Frame = frame, features: FrameHeadFeatures | undefined = this.detector.headFeatures(detections)): void {
    if (this.closed) return;
    if (!features) return;
    this.lastTime = Math.max(this.lastTime, frame.streamTime);
    try {
      const cells = this.ring.observe({ frame, detections, tracks, features });
      if (cells.length > 0 && this.enabled) this.engine.submit({ time: this.lastTime, cells });
    } catch (err) {
      this.log.error(`${this.camera.name}: supervision of frame ${frame.index} failed: ${errorMessage(err)}`);
    }
    if (this.schedule && this.teacher && this.enabled && !this.teacherBusy && this.schedule.due(frame.index)) {
      this.schedule.taken(frame.index);
      const student = detections.filter((d) => d.score >= this.camera.detect.threshold).map((d) => ({ classId: d.classId, box: d.box }));
      this.teacherBusy = this.runTeacher(this.teacher, frame.index, source, student).finally(() => {
        this.teacherBusy = undefined;
      });
    }
  }

  private async runTeacher(teacher: KeyframeLabeller, index: number, source: Frame, student: Array<{ classId: number; box: readonly number[] }>): Promise<void> {
    let boxes;
    try {
      boxes = await teacher.label(source);
    } catch (err) {
      this.teacherStats.failed++;
      this.log.error(`${this.camera.name}: teacher ${teacher.name} failed on frame ${index}: ${errorMessage(err)}`);
      return;
    }
    if (this.closed) return;
    // Nothing may escape: this runs detached from the frame path (a rejection would be unhandled).
    try {
      const cells = this.ring.teacherCells(index, boxes, student);
      if (!cells) {
        this.teacherStats.late++;
        return;
      }
      this.teacherStats.keyframes++;
      const attempts = this.engine.updateAttempts;
      this.schedule?.observe(agreement(student, boxes), attempts > this.attemptsAtKeyframe);
      this.attemptsAtKeyframe = attempts;
      if (cells.length > 0 && this.enabled) this.engine.submit({ time: this.lastTime, cells });
    } catch (err) {
      this.teacherStats.failed++;
      this.log.error(`${this.camera.name}: teacher labels of frame ${index} not used: ${errorMessage(err)}`);
    }
  }

  /** An accepted verdict of this camera: its cells (and its track's) go to the engine. */
  onVerdict(feedback: AcceptedFeedback): void {
    if (this.closed || !this.enabled || feedback.camera !== this.camera.name) return;
    try {
      const cells = this.ring.verdictCells(feedback);
      if (cells.length === 0) {
        this.log.debug(`${this.camera.name}: ${feedback.verdict} on frame ${feedback.frame.index}: its features are no longer buffered`);
        return;
      }
      this.verdictsUsed++;
      this.engine.submit({ time: this.lastTime, cells });
    } catch (err) {
      this.log.error(`${this.camera.name}: verdict not used: ${errorMessage(err)}`);
    }
  }

  /**
   * A rollback command's payload (a version number or `base`): the engine writes a new version
   * holding that head. Rejects with an Error saying why when the payload is no version or the
   * engine refuses it (a version that does not exist, a head that cannot be written).
   */
  async rollback(payload: string): Promise<void> {
    await rollbackCommand(this.log, this.camera.name, payload, (target) => this.engine.rollback(target));
  }

  /**
   * The status message whenever it changes: at once, then checked every `intervalMs`, and a last
   * time when the adapter closes (the final figures); completes then.
   */
  statusUpdates(intervalMs = 1000): Observable<ModelStatusMessage> {
    return statusStream(() => this.statusMessage(), this.closed$, () => this.closed, intervalMs);
  }

  statusMessage(): ModelStatusMessage {
    const s = this.engine.status();
    const round = (v: number) => Math.round(v * 1e4) / 1e4;
    return {
      camera: this.camera.name,
      base: { model: this.detector.card.name, version: this.detector.card.version },
      adaptation: this.enabled ? 'on' : 'off',
      version: s.version,
      head: this.detector.heads?.current.label ?? 'base',
      accepted: s.accepted,
      rejected: s.rejected,
      rolled_back: s.rolledBack,
      rejected_by: s.rejectedBy,
      last_update: s.lastUpdateAt === undefined ? null : s.lastUpdateAt / 1000,
      last_accepted: s.lastAcceptedAt === undefined ? null : s.lastAcceptedAt / 1000,
      supervised_frames: s.framesSubmitted,
      dropped_frames: s.framesDropped,
      cells_trained: s.cellsTrained,
      verdicts_used: this.verdictsUsed,
      teacher: this.schedule && this.teacher ? { model: this.teacher.name, keyframes: this.teacherStats.keyframes, late: this.teacherStats.late, stride: this.schedule.stride } : null,
      track_miss_frames: this.ring.trackMissFrames,
      grid: s.grid,
      error_energy: s.errorEnergy.map((row) => row.map(round)),
    };
  }

  /** The live page's model panel. */
  async history(): Promise<ModelHistory> {
    const versions = await this.engine.versions();
    const current = this.engine.version;
    const card = this.detector.card;
    return {
      model: { name: card.name, version: card.version },
      adaptation: this.enabled ? 'on' : 'paused',
      versions: versionRows(versions, current, card, this.startedAt),
      // Per accepted update, as the guard measured it: the holdout loss before and after the update.
      curves: [
        {
          name: 'holdout loss (accepted updates)',
          unit: 'nats',
          points: versions.flatMap((v) => (v.kind === 'update' && v.figures ? [[v.createdAt / 1000, v.figures.holdout.lossAfter] as [number, number]] : [])),
        },
        {
          name: 'replay loss (accepted updates)',
          unit: 'nats',
          points: versions.flatMap((v) => (v.kind === 'update' && v.figures ? [[v.createdAt / 1000, v.figures.replay.lossAfter] as [number, number]] : [])),
        },
      ],
    };
  }

  trainingMemory(): Promise<WorkerMemory | undefined> {
    return this.engine.workerMemory();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.subscriptions) s.unsubscribe();
    this.subscriptions = [];
    await this.teacherBusy;
    await this.teacher?.close?.();
    await this.engine.close();
    // The last figures, for whoever looks after the run (statusUpdates).
    this.closed$.next();
    this.closed$.complete();
  }
}

/** The model panel: adapting cameras from their engines, the others from `fallback`. */
export function adaptiveModelHistory(adapters: ReadonlyMap<string, SiteAdapter>, fallback: ModelHistorySource): ModelHistorySource {
  return {
    history(camera) {
      const adapter = adapters.get(camera);
      return adapter ? adapter.history() : fallback.history(camera);
    },
  };
}
