/**
 * On-device adaptation of a camera's whole Beats CNN (`cameras[].adapt.layers: all`; BEATS.md,
 * "The whole model"): teacher keyframes become supervised model-input frames for the training
 * worker (student/engine.ts), and every accepted or rolled-back weight set is swapped into the
 * camera's own detector between two frames (`Detector.swapWeights`). The frame path only copies
 * a keyframe's pixels and posts them; the teacher runs detached from it, one keyframe at a time.
 *
 * Operator verdicts label the recent frames kept for them (student/verdict-frames.ts): the verdict's
 * own frame and its track's, which train (never held out: the guard's held-out frames stay the
 * teacher's). A verdict about a frame no longer kept is counted as ignored.
 */
import { readFile } from 'node:fs/promises';
import { Subject, type Observable, type Subscription } from 'rxjs';
import type { CameraConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import type { Detection } from '../model/detection.js';
import type { Detector } from '../model/detector.js';
import type { ProviderSettings } from '../model/providers.js';
import type { ModelStatusMessage } from '../publish/messages.js';
import type { Frame, FrameOutput } from '../source/frame.js';
import { largerOutput, relayoutFrame } from '../source/relayout.js';
import { toInputPixels } from '../source/geometry.js';
import type { TrackView } from '../track/tracker.js';
import type { BeatsCnnSpec } from '../train/beats-cnn.js';
import type { AcceptedFeedback } from './feedback.js';
import type { ModelHistory } from './model-history.js';
import type { WorkerMemory } from './engine-protocol.js';
import { rollbackCommand, statusStream, versionRows, type ServingTeacher, type SiteAdapter } from './site-adapter.js';
import { StudentEngine, type WeightsEvent } from './student/engine.js';
import { VerdictFrames } from './student/verdict-frames.js';
import { checkpointOf } from './student/model-files.js';
import type { SupervisedImage } from './student/reservoir.js';
import { WeightVersionStore } from './student/versions.js';
import { KeyframeSchedule, agreement, keyframePolicy, type KeyframeLabeller } from './teacher.js';

/** Why a camera's model cannot adapt whole; the pipeline names `cameras[i].adapt.layers` with it. */
export function wholeModelProblem(detector: Detector): string | undefined {
  const card = detector.card;
  if (card.decoder.kind !== 'beats') return `model ${card.name} is a ${card.decoder.kind} model: only the Beats CNN adapts whole (use layers: head)`;
  const spec = (card.training?.recipe as { spec?: BeatsCnnSpec } | undefined)?.spec;
  if (!spec) return `model ${card.name}'s card has no training recipe (training.recipe.spec): its architecture is unknown`;
  return undefined;
}

/** Most frames one verdict labels: its engine takes a bounded number of frames at a time. */
const VERDICT_IMAGES = 8;

export class WholeModelAdapter implements SiteAdapter {
  private readonly log = logger('adapt');
  private enabled = true;
  private closed = false;
  private readonly closed$ = new Subject<void>();
  private readonly subscription: Subscription;
  private readonly schedule: KeyframeSchedule | undefined;
  private teacherBusy: Promise<void> | undefined;
  private readonly teacherStats = { keyframes: 0, failed: 0 };
  private verdictsIgnored = 0;
  private verdictsUsed = 0;
  private readonly verdictFrames: VerdictFrames;
  private swaps: Promise<void> = Promise.resolve();
  /** Who serves the camera's detections (adapt.teacher.serve), why, and how often it changed. */
  private serving: { by: 'student' | 'teacher'; reason: string; switches: number };
  private readonly startedAt = Date.now();
  /** The score the weights inference runs now chose (adapt.whole.threshold: held_out); undefined: detect.threshold. */
  private weightsThreshold: number | undefined;

  private constructor(
    readonly camera: CameraConfig,
    readonly detector: Detector,
    private readonly engine: StudentEngine,
    private readonly runtime: ProviderSettings,
    private readonly teacher: KeyframeLabeller | undefined,
    verdictFrames: number,
  ) {
    if (teacher && camera.adapt.teacher) this.schedule = new KeyframeSchedule(keyframePolicy(camera.adapt.teacher));
    const serve = camera.adapt.teacher?.serve ?? 'student';
    this.serving = serve === 'student' || !teacher ? { by: 'student', reason: 'configured', switches: 0 } : { by: 'teacher', reason: serve === 'teacher' ? 'configured' : 'the student has not caught up yet', switches: 0 };
    this.subscription = engine.updates$.subscribe((event) => this.onWeights(event));
    this.verdictFrames = new VerdictFrames({ capacity: verdictFrames, threshold: camera.detect.threshold, perVerdict: VERDICT_IMAGES });
  }

  /** Opens the camera's weight versions, starts training, and serves the newest version before the first frame. */
  static async start(options: { camera: CameraConfig; detector: Detector; stateDir: string; runtime: ProviderSettings; teacher?: KeyframeLabeller; ringFrames?: number }): Promise<WholeModelAdapter> {
    const { camera, detector } = options;
    const problem = wholeModelProblem(detector);
    if (problem) throw new Error(problem);
    const card = detector.card;
    const spec = (card.training!.recipe as { spec: BeatsCnnSpec }).spec;
    const base = { name: card.name, version: card.version };
    const store = await WeightVersionStore.open({ stateDir: options.stateDir, camera: camera.name, base, keep: camera.adapt.keep_versions });
    const engine = await StudentEngine.start({ camera: camera.name, config: camera.adapt, checkpoint: checkpointOf(detector.model.onnxPath, card.name), spec, base, store, threshold: camera.detect.threshold });
    const serving = engine.servingOnnx();
    if (serving) await detector.swapWeights(serving, options.runtime);
    const adapter = new WholeModelAdapter(camera, detector, engine, options.runtime, options.teacher, Math.min(camera.adapt.whole.verdict_frames, options.ringFrames ?? Infinity));
    if (serving) adapter.weightsThreshold = engine.threshold;
    return adapter;
  }

  sourceOutput(): FrameOutput {
    const student = this.detector.frameOutput();
    const teacher = this.teacher?.frameOutput?.();
    return teacher ? largerOutput(student, teacher) : student;
  }

  studentFrame(frame: Frame): Frame {
    return relayoutFrame(frame, this.detector.frameOutput());
  }

  observe(frame: Frame, detections: Detection[], tracks: readonly TrackView[], source: Frame = frame): void {
    if (this.closed || !this.enabled) return;
    const trackOf = new Map<number, number>();
    for (const t of tracks) if (t.detection !== undefined) trackOf.set(t.detection, t.id);
    const threshold = this.servingThreshold() ?? this.camera.detect.threshold;
    this.verdictFrames.remember(frame, detections.map((d, i) => ({ classId: d.classId, score: d.score, box: d.box, trackId: trackOf.get(i) })), threshold);
    if (!this.teacher || !this.schedule || this.teacherBusy || !this.schedule.due(frame.index)) return;
    this.schedule.taken(frame.index);
    // The pixels are copied now (the frame's buffer goes back to the source) and transferred to the worker later.
    const pixels = Uint8Array.from(frame.pixels);
    const student = detections.filter((d) => d.score >= threshold).map((d) => ({ classId: d.classId, box: d.box }));
    this.teacherBusy = this.runTeacher(this.teacher, frame, source, pixels, student).finally(() => {
      this.teacherBusy = undefined;
    });
  }

  private async runTeacher(teacher: KeyframeLabeller, frame: Frame, source: Frame, pixels: Uint8Array, student: Array<{ classId: number; box: readonly number[] }>): Promise<void> {
    try {
      const boxes = await teacher.label(source);
      if (this.closed) return;
      const lb = frame.geometry;
      const image: SupervisedImage = {
        pixels,
        time: frame.streamTime,
        boxes: boxes.map((b) => ({ classId: b.classId, box: toInputPixels(b.box, lb), ignore: false })),
      };
      this.teacherStats.keyframes++;
      this.schedule?.observe(agreement(student, boxes), false);
      this.engine.submit(image, frame.index);
    } catch (err) {
      this.teacherStats.failed++;
      this.log.limited(`${this.camera.name} teacher`).error(`${this.camera.name}: teacher ${teacher.name} failed on frame ${frame.index}: ${errorMessage(err)}`);
    }
  }

  /**
   * The score the camera's detections count from while its own model serves: the serving weights'
   * held-out operating threshold (never under events.low_threshold, the score the detector keeps
   * boxes from); undefined for detect.threshold (the base weights, `threshold: camera`).
   */
  servingThreshold(): number | undefined {
    if (this.weightsThreshold === undefined || (this.serving.by === 'teacher' && this.teacher?.detect)) return undefined;
    return Math.max(this.camera.events.low_threshold, this.weightsThreshold);
  }

  servingTeacher(): ServingTeacher | undefined {
    this.decideServing();
    if (this.serving.by !== 'teacher' || !this.teacher?.detect) return undefined;
    const teacher = this.teacher;
    const classes = this.detector.card.classes;
    return { model: teacher.model ?? { name: teacher.name, version: '' }, detect: (frame, options) => teacher.detect!(frame, options, classes) };
  }

  /**
   * `serve: auto`: the student takes over once its held-out F1 against the teacher (the guard's
   * figure at the last update attempt) reaches takeover_f1, and hands back while it is under
   * handback_f1 (a new scene, drift). A gap between the two keeps it from switching at every update.
   */
  private decideServing(): void {
    const config = this.camera.adapt.teacher;
    if (config?.serve !== 'auto' || !this.teacher) return;
    const f1 = this.engine.lastStats?.holdoutF1;
    if (f1 === undefined) return;
    const pct = (v: number) => (100 * v).toFixed(1);
    if (this.serving.by === 'teacher' && f1 >= config.takeover_f1) this.switchTo('student', `held-out F1 ${pct(f1)} against the teacher reached ${pct(config.takeover_f1)}`);
    else if (this.serving.by === 'student' && f1 < config.handback_f1) this.switchTo('teacher', `held-out F1 ${pct(f1)} against the teacher fell under ${pct(config.handback_f1)}`);
  }

  private switchTo(by: 'student' | 'teacher', reason: string): void {
    this.serving = { by, reason, switches: this.serving.switches + 1 };
    this.log.info(`${this.camera.name}: the ${by} serves now: ${reason}`);
  }

  /** An accepted verdict of this camera: the kept frames it labels go to the training worker. */
  onVerdict(feedback: AcceptedFeedback): void {
    if (this.closed || !this.enabled || feedback.camera !== this.camera.name) return;
    let images: ReturnType<VerdictFrames['imagesFor']>;
    try {
      images = this.verdictFrames.imagesFor(feedback);
    } catch (err) {
      this.verdictsIgnored++;
      this.log.error(`${this.camera.name}: verdict not used: ${errorMessage(err)}`);
      return;
    }
    if (images.length === 0) {
      this.verdictsIgnored++;
      this.log.debug(`${this.camera.name}: ${feedback.verdict} on frame ${feedback.frame.index}: the frame is no longer kept`);
      return;
    }
    this.verdictsUsed++;
    for (const image of images) this.engine.submit(image, feedback.frame.index, 'train');
  }

  async rollback(payload: string): Promise<void> {
    await rollbackCommand(this.log, this.camera.name, payload, (target) => this.engine.rollback(target));
  }

  setEnabled(on: boolean): void {
    if (on !== this.enabled) this.log.info(`${this.camera.name}: whole-model adaptation ${on ? 'on' : 'off'}`);
    this.enabled = on;
  }

  /** Accepted and rolled-back sets go into the detector, one swap after the other. */
  private onWeights(event: WeightsEvent): void {
    if (event.kind === 'rejected') return;
    this.swaps = this.swaps.then(async () => {
      try {
        const onnx = event.onnx.length > 0 ? event.onnx : await readFile(this.detector.model.onnxPath);
        await this.detector.swapWeights(onnx, this.runtime);
        // The threshold follows the weights into service, not before them.
        this.weightsThreshold = event.threshold;
        this.log.info(`${this.camera.name}: inference now runs weight version ${event.version}${event.kind === 'rolled_back' ? ` (rollback to ${String(event.target)})` : ''}`);
      } catch (err) {
        this.log.error(`${this.camera.name}: weight version ${event.version} could not be swapped in: ${errorMessage(err)}`);
      }
    });
  }

  /** The engine's accepted, rejected and rolled-back sets, as they come (evaluation). */
  get weights$(): Observable<WeightsEvent> {
    return this.engine.updates$;
  }

  /** Resolves when the swaps announced so far are done (tests, evaluation). */
  async settled(): Promise<void> {
    await this.teacherBusy;
    await this.swaps;
  }

  statusUpdates(intervalMs = 1000): Observable<ModelStatusMessage> {
    return statusStream(() => this.statusMessage(), this.closed$, () => this.closed, intervalMs);
  }

  statusMessage(): ModelStatusMessage {
    const c = this.engine.counts;
    const stats = this.engine.lastStats;
    return {
      camera: this.camera.name,
      base: { model: this.detector.card.name, version: this.detector.card.version },
      adaptation: this.enabled ? 'on' : 'off',
      version: this.engine.version,
      head: this.engine.version === 0 ? 'base' : `weights v${this.engine.version}`,
      layers: 'all',
      accepted: c.accepted,
      rejected: c.rejected,
      rolled_back: c.rolledBack,
      rejected_by: { ...c.rejectedBy },
      last_update: this.engine.lastUpdateAt === undefined ? null : this.engine.lastUpdateAt / 1000,
      last_accepted: this.engine.lastAcceptedAt === undefined ? null : this.engine.lastAcceptedAt / 1000,
      supervised_frames: c.submitted,
      dropped_frames: c.dropped,
      cells_trained: 0,
      frames_trained: stats?.trained ?? 0,
      frames_held_out: stats?.heldOut ?? 0,
      train_share: stats ? Math.round(stats.trainShare * 1e4) / 1e4 : 0,
      worker_restarts: c.restarts,
      serving: { model: this.serving.by === 'teacher' && this.teacher ? this.teacher.name : `${this.detector.card.name}@${this.detector.inputWidth}`, by: this.serving.by, reason: this.serving.reason, switches: this.serving.switches },
      verdicts_used: this.verdictsUsed,
      verdicts_ignored: this.verdictsIgnored,
      threshold: this.servingThreshold() ?? this.camera.detect.threshold,
      teacher: this.schedule && this.teacher ? { model: this.teacher.name, keyframes: this.teacherStats.keyframes, late: 0, stride: this.schedule.stride, failed: this.teacherStats.failed } : null,
      track_miss_frames: 0,
      grid: 0,
      error_energy: [],
    };
  }

  async history(): Promise<ModelHistory> {
    const versions = await this.engine.versions();
    const current = this.engine.version;
    const card = this.detector.card;
    return {
      model: { name: card.name, version: card.version },
      adaptation: this.enabled ? 'on' : 'paused',
      // Each set's own threshold, where it chose one, beside its row (the panel's only place for it).
      versions: versionRows(versions, current, card, this.startedAt, 'whole model').map((row, i) => {
        const threshold = i > 0 && this.camera.adapt.whole.threshold === 'held_out' ? versions[i - 1]!.threshold : undefined;
        return threshold === undefined ? row : { ...row, note: `${row.note ?? 'whole model'}, threshold ${threshold}` };
      }),
      curves: [
        {
          name: 'held-out F1 (accepted updates)',
          unit: 'F1',
          points: versions.flatMap((v) => (v.kind === 'update' && v.figures ? [[v.createdAt / 1000, v.figures.holdout.f1After] as [number, number]] : [])),
        },
      ],
    };
  }

  /** The training worker's own memory (its heap and TF.js tensors are not the main thread's). */
  trainingMemory(): Promise<WorkerMemory | undefined> {
    return this.engine.workerMemory();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.teacherBusy;
    this.subscription.unsubscribe();
    await this.swaps;
    await this.teacher?.close?.();
    await this.engine.close();
    this.closed$.next();
    this.closed$.complete();
  }
}
