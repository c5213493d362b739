/**
 * `beats eval --adapt` (BEATS.md, "How it is measured"): a stream with ground truth, replayed in
 * order, through the frozen model and through the same model adapting with Beats, side by side on
 * every frame, with the pipeline's own parts (detector, tracker, CameraAdapter with its
 * supervision ring, engine worker and versions in a scratch directory).
 *
 * Supervision is simulated: operator verdicts drawn from the ground truth (with a budget, from a
 * given stream time on, at most one every `everyS` seconds: the operator flags an error the
 * published detections make: a false alarm, a wrong class or a miss), and/or a teacher on keyframes
 * (a model, or the ground truth standing in for a perfect one).
 *
 * The replay is paced at `speed` times real time, so the engine's worker trains while frames come
 * as they would from a camera (0: as fast as frames are processed).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { filter, map, type Observable } from 'rxjs';
import type { ModelStatusMessage } from '../publish/messages.js';
import type { CameraConfig } from '../config/schema.js';
import { BeatsError, errorMessage } from '../errors.js';
import { iou } from '../model/decode.js';
import { Detector } from '../model/detector.js';
import type { Detection } from '../model/detection.js';
import { evaluate, type PredictedFrame, type TruthFrame } from '../model/evaluate.js';
import type { ProviderSettings } from '../model/providers.js';
import { replay } from '../source/replay.js';
import type { Frame, FrameOutput } from '../source/frame.js';
import { largerOutput, relayoutFrame } from '../source/relayout.js';
import { Tracker, trackerOptions } from '../track/tracker.js';
import { CameraAdapter } from './camera-adapter.js';
import type { SiteAdapter } from './site-adapter.js';
import { WholeModelAdapter } from './whole-adapter.js';
import type { EngineEvent } from './engine.js';
import type { AcceptedFeedback, Verdict } from './feedback.js';
import type { LabelledBox, TeacherPositives } from './supervision.js';
import { ModelTeacher, type KeyframeLabeller } from './teacher.js';

export interface VerdictPolicy {
  /** Verdicts the operator gives at most. */
  budget: number;
  /** Stream seconds from which the operator looks (default: the shift, else 0). */
  from?: number;
  /** At most one verdict per this many stream seconds. */
  everyS: number;
}

export interface AdaptEvalOptions {
  url: string;
  /** Frames to replay. */
  frames: number;
  /** Ground truth of a frame of the source (source pixels). */
  truthOf: (frame: Frame) => TruthFrame | undefined;
  /** The camera as configured: model, detect, events (tracker) and adapt (enabled or not, it adapts here). */
  camera: CameraConfig;
  runtime: ProviderSettings;
  /** Stream seconds of the domain shift, when there is one. */
  shiftAt?: number;
  verdicts?: VerdictPolicy;
  /** `truth`: the ground truth on keyframes; else a model (name or card) with its input size. */
  teacher?: { model: 'truth' | string; inputSize?: number; threshold: number; threads?: number };
  /** Windowed F1: window length, seconds (default 10). */
  windowS?: number;
  /** Stream seconds per wall second (default 1: real time; 0: unpaced). */
  speed?: number;
  /** Each replayed frame (progress). */
  onFrame?: (pass: 'frozen+beats' | 'first-domain', index: number) => void;
}

export interface Figures {
  map50: number;
  f1: number;
  precision: number;
  recall: number;
}

export interface ArmReport {
  overall: Figures;
  beforeShift: Figures | null;
  afterShift: Figures | null;
  /** [window end (stream s), F1 at the threshold over the window]. */
  windowedF1: Array<[number, number]>;
  /** Seconds after the shift until windowed F1 (a window wholly after it) is back to 90 % of the pre-shift F1; null: never. */
  secondsToRecover: number | null;
  /** Seconds after the shift until windowed F1 is within 2 points of its plateau (the mean of the last 30 s). */
  secondsToPlateau: number | null;
  /** Frames per second of the frame path: detection, and for Beats its adaptation work (not the worker's training). */
  fps: number;
}

export interface AdaptEvalReport {
  stream: { url: string; frames: number; seconds: number; shiftAt: number | null };
  model: string;
  threshold: number;
  supervision: { verdicts: VerdictPolicy | null; teacher: string | null; keyframePolicy: string | null; teacherPositives: TeacherPositives | null };
  frozen: ArmReport;
  beats: ArmReport;
  labels: { verdicts: number; verdictsByKind: Record<Verdict, number>; teacherKeyframes: number; teacherShare: number; trackMissFrames: number; cellsTrained: number };
  updates: { accepted: number; rejected: number; rolledBack: number; rejectedBy: Record<string, number>; msMean: number | null; msMax: number | null; acceptedAt: number[] };
  /** mAP@0.5 on the first domain (the pre-shift part, replayed) with the base head and with the final head. */
  forgetting: { frozenMap50: number; beatsMap50: number; dropPoints: number } | null;
  /** Beats fps / frozen fps. */
  fpsRatio: number;
  peakRssMb: number;
}

const toPredicted = (index: number, detections: readonly Detection[]): PredictedFrame => ({ frame: index, detections: detections.map((d) => ({ label: d.label, score: d.score, box: d.box })) });

function figures(truth: readonly TruthFrame[], predictions: readonly PredictedFrame[], threshold: number): Figures {
  const e = evaluate(truth, predictions, threshold);
  return { map50: e.map50, f1: e.f1, precision: e.precision, recall: e.recall };
}

/**
 * F1 at the threshold over sliding windows ending at each whole second. A window with nothing to
 * find and nothing found (an empty street) has no F1 and no point, rather than a false 0.
 */
export function windowedF1(times: readonly number[], truth: readonly TruthFrame[], predictions: readonly PredictedFrame[], threshold: number, windowS: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const end = times.at(-1) ?? 0;
  for (let t = windowS; t <= end + 1e-9; t += 1) {
    const idx = times.flatMap((s, i) => (s > t - windowS - 1e-9 && s < t - 1e-9 ? [i] : []));
    const empty = idx.every((i) => truth[i]!.boxes.every((b) => b.ignore) && predictions[i]!.detections.every((d) => d.score < threshold));
    if (idx.length === 0 || empty) continue;
    out.push([t, evaluate(idx.map((i) => truth[i]!), idx.map((i) => predictions[i]!), threshold).f1]);
  }
  return out;
}

function armReport(times: number[], truth: TruthFrame[], predictions: PredictedFrame[], threshold: number, shiftAt: number | undefined, windowS: number, frameMs: number[], preShiftF1: number | undefined): ArmReport {
  const split = (after: boolean) => times.flatMap((t, i) => ((t >= (shiftAt ?? Infinity)) === after ? [i] : []));
  const part = (idx: number[]) => (idx.length ? figures(idx.map((i) => truth[i]!), idx.map((i) => predictions[i]!), threshold) : null);
  const windowed = windowedF1(times, truth, predictions, threshold, windowS);
  let secondsToRecover: number | null = null;
  let secondsToPlateau: number | null = null;
  if (shiftAt !== undefined) {
    const after = windowed.filter(([t]) => t - windowS >= shiftAt - 1e-9);
    if (preShiftF1 !== undefined) {
      const hit = after.find(([, f1]) => f1 >= 0.9 * preShiftF1);
      secondsToRecover = hit ? hit[0] - shiftAt : null;
    }
    const end = times.at(-1) ?? 0;
    const tail = after.filter(([t]) => t > end - 30);
    if (tail.length) {
      const plateau = tail.reduce((s, [, f]) => s + f, 0) / tail.length;
      const hit = after.find(([, f1]) => f1 >= plateau - 0.02);
      secondsToPlateau = hit ? hit[0] - shiftAt : null;
    }
  }
  const meanMs = frameMs.reduce((s, v) => s + v, 0) / Math.max(1, frameMs.length);
  return { overall: figures(truth, predictions, threshold), beforeShift: part(split(false)), afterShift: part(split(true)), windowedF1: windowed, secondsToRecover, secondsToPlateau, fps: meanMs > 0 ? 1000 / meanMs : 0 };
}

/** The ground truth as a keyframe labeller: a perfect teacher, for evaluation only. */
class TruthTeacher implements KeyframeLabeller {
  readonly name = 'ground truth';
  constructor(
    private readonly truthOf: (frame: Frame) => TruthFrame | undefined,
    private readonly classes: readonly string[],
  ) {}

  async label(frame: Frame): Promise<LabelledBox[]> {
    return (this.truthOf(frame)?.boxes ?? []).filter((b) => !b.ignore && this.classes.includes(b.label)).map((b) => ({ classId: this.classes.indexOf(b.label), box: b.box }));
  }
}

/**
 * The simulated operator: from `from` on, at most one verdict every `everyS` stream seconds and
 * `budget` in all, on an error of the published detections: a false alarm first (the
 * highest-scoring), else a wrong class, else a miss (the biggest). A track it has judged is not
 * judged again (its label travels along it).
 */
class SimulatedOperator {
  used = 0;
  readonly byKind: Record<Verdict, number> = { correct: 0, false_positive: 0, wrong_class: 0, missed: 0 };
  private last = -Infinity;
  private readonly judgedTracks = new Set<number>();

  constructor(
    private readonly policy: VerdictPolicy & { from: number },
    private readonly classes: readonly string[],
  ) {}

  verdict(frame: Frame, published: ReadonlyArray<Detection & { trackId?: number }>, truth: TruthFrame | undefined, camera: string): AcceptedFeedback | undefined {
    if (!truth || this.used >= this.policy.budget || frame.streamTime < this.policy.from || frame.streamTime - this.last < this.policy.everyS - 1e-9) return undefined;
    const boxes = truth.boxes.filter((b) => !b.ignore && this.classes.includes(b.label));
    const candidates: Record<'missed' | 'false_positive' | 'wrong_class', AcceptedFeedback[]> = { missed: [], false_positive: [], wrong_class: [] };
    const base = { camera, frame: { index: frame.index, ts: frame.ts, width: frame.width, height: frame.height }, trackFrames: [], origin: { via: 'simulated' as const }, receivedAt: Date.now() };
    for (const b of boxes) {
      if (published.some((d) => d.label === b.label && iou(d.box, b.box) >= 0.5)) continue;
      candidates.missed.push({ ...base, verdict: 'missed', label: { name: b.label, classId: this.classes.indexOf(b.label) }, box: [...b.box] as [number, number, number, number] });
    }
    for (const d of published) {
      if (d.trackId !== undefined && this.judgedTracks.has(d.trackId)) continue;
      const truthSameLabel = boxes.some((b) => b.label === d.label && iou(d.box, b.box) >= 0.5);
      if (truthSameLabel) continue;
      const other = boxes.find((b) => iou(d.box, b.box) >= 0.5);
      if (other) candidates.wrong_class.push({ ...base, verdict: 'wrong_class', detection: d, trackId: d.trackId, label: { name: other.label, classId: this.classes.indexOf(other.label) } });
      else if (!boxes.some((b) => iou(d.box, b.box) >= 0.1)) candidates.false_positive.push({ ...base, verdict: 'false_positive', detection: d, trackId: d.trackId });
    }
    // An operator sees false alarms (they raise events) before misses (nothing shows them).
    for (const kind of ['false_positive', 'wrong_class', 'missed'] as const) {
      const list = candidates[kind];
      if (list.length === 0) continue;
      // The most visible error: the biggest missed box, the highest-scoring false alarm.
      const pick = kind === 'missed' ? list.reduce((a, b) => (area(b.box!) > area(a.box!) ? b : a)) : list.reduce((a, b) => (b.detection!.score > a.detection!.score ? b : a));
      this.last = frame.streamTime;
      this.used++;
      this.byKind[pick.verdict]++;
      if (pick.trackId !== undefined) this.judgedTracks.add(pick.trackId);
      return pick;
    }
    return undefined;
  }
}

const area = (b: readonly number[]) => (b[2]! - b[0]!) * (b[3]! - b[1]!);

/**
 * A teacher's boxes on every frame of a stream, as ground truth (for a real video without labels:
 * the student is then measured against the teacher). Boxes at or above `threshold`, in the
 * student's class names, only `labels` when given.
 */
export async function labelWithTeacher(options: { url: string; frames: number; teacher: string; inputSize?: number; threshold: number; nmsIou: number; studentClasses: readonly string[]; labels?: readonly string[]; runtime: ProviderSettings; onFrame?: (index: number) => void }): Promise<TruthFrame[]> {
  const detector = await Detector.load(options.teacher, { runtime: options.runtime, inputSize: options.inputSize });
  const teacher = new ModelTeacher(detector, options.studentClasses, { threshold: options.threshold, nmsIou: options.nmsIou, labels: options.labels });
  const out: TruthFrame[] = [];
  try {
    await replay(options.url, detector.frameOutput(), async (frame) => {
      const boxes = await teacher.label(frame);
      out.push({ frame: frame.index, boxes: boxes.map((b) => ({ label: options.studentClasses[b.classId]!, box: [b.box[0]!, b.box[1]!, b.box[2]!, b.box[3]!] as const })) });
      options.onFrame?.(frame.index);
    }, { frames: options.frames, camera: 'eval' });
  } finally {
    await teacher.close();
  }
  return out;
}

export async function evaluateAdaptation(options: AdaptEvalOptions): Promise<AdaptEvalReport> {
  const { camera, runtime } = options;
  const speed = options.speed ?? 1;
  const windowS = options.windowS ?? 10;
  const threshold = camera.detect.threshold;
  const low = camera.events.low_threshold;
  const evalDetect = { threshold: Math.min(0.01, low), nmsIou: camera.detect.nms_iou, maxDetections: camera.detect.max_detections, labels: camera.detect.labels };
  const inputSize = camera.detect.input_size;
  if (options.teacher && !camera.adapt.teacher) throw new BeatsError(`camera ${camera.name}: a teacher needs its keyframe policy in adapt.teacher (every_n_frames or adaptive)`);
  const truth: TruthFrame[] = [];
  const times: number[] = [];

  // The teacher first: with a model teacher the source delivers the larger input, and both arms
  // make their frame from it the same way (relayoutFrame), so they see the same pixels.
  const frozen = await Detector.load(camera.model, { runtime, inputSize });
  const teacher = await loadTeacher(options, frozen).catch(async (err: unknown) => {
    await frozen.close();
    throw err;
  });
  const teacherOutput = teacher?.frameOutput?.();
  const sourceOutput = teacherOutput ? largerOutput(frozen.frameOutput(), teacherOutput) : frozen.frameOutput();

  // One replay, both arms on every frame: the frozen model, and the same model adapting. Their frame
  // paths (detection and tracking, and for Beats its adaptation work) are timed on the same frames,
  // in alternating order, so that the machine's load (a shared machine drifts over minutes), the
  // engine worker's training and the garbage collector weigh on both alike: what the ratio shows is
  // the frame path's own cost of adapting. The worker's CPU is reported beside it (ms per update).
  const { step: frozenStep, predictions: frozenPredictions, ms: frozenMs } = frozenArmOf(frozen, camera, evalDetect);

  const stateDir = await mkdtemp(path.join(tmpdir(), 'beats-adapt-eval-'));
  let student: Detector | undefined;
  let adapter: SiteAdapter | undefined;
  const beatsPredictions: PredictedFrame[] = [];
  const beatsMs: number[] = [];
  const updateMs: number[] = [];
  const acceptedAt: number[] = [];
  let operator: SimulatedOperator | undefined;
  let forgetting: AdaptEvalReport['forgetting'] = null;
  let status: ModelStatusMessage | undefined;
  const shiftAt = options.shiftAt;
  let preIdx: number[] = [];
  try {
    const whole = camera.adapt.layers === 'all';
    student = await Detector.load(camera.model, { runtime, inputSize, ...(whole ? { backend: 'in-process' as const } : { adaptable: true }) });
    const adaptive = student;
    const adaptCamera: CameraConfig = { ...camera, adapt: { ...camera.adapt, enabled: true } };
    const started = await startAdapter(adaptCamera, adaptive, stateDir, teacher, runtime, () => times.at(-1) ?? 0);
    adapter = started.adapter;
    const active = started.adapter;
    const sub = started.updates$.subscribe((u) => {
      updateMs.push(u.ms);
      if (u.acceptedAt !== undefined) acceptedAt.push(u.acceptedAt);
    });
    if (options.verdicts) operator = new SimulatedOperator({ ...options.verdicts, from: options.verdicts.from ?? shiftAt ?? 0 }, adaptive.card.classes);
    const beatsStep = beatsArmOf(active, adaptive, options, evalDetect, operator, { predictions: beatsPredictions, ms: beatsMs });
    let n = 0;
    await replay(options.url, sourceOutput, async (source) => {
      if (n++ % 2 === 0) {
        await frozenStep(source);
        await beatsStep(source);
      } else {
        await beatsStep(source);
        await frozenStep(source);
      }
      const t = options.truthOf(source);
      truth.push({ frame: source.index, boxes: t?.boxes ?? [] });
      times.push(source.streamTime);
      options.onFrame?.('frozen+beats', source.index);
    }, { frames: options.frames, speed, camera: 'eval' });
    await started.idle();
    sub.unsubscribe();
    status = active.statusMessage();

    // Then the first domain again, with the final head.
    preIdx = times.flatMap((t, i) => (t < (shiftAt ?? -Infinity) ? [i] : []));
    if (preIdx.length > 0) {
      const preTruth = preIdx.map((i) => truth[i]!);
      forgetting = await measureForgetting(options, sourceOutput, adaptive, evalDetect, preTruth, preIdx.map((i) => frozenPredictions[i]!));
    }
  } finally {
    await adapter?.close().catch((err: unknown) => {
      throw new Error(`closing the adaptation: ${errorMessage(err)}`);
    });
    if (!adapter) await teacher?.close?.();
    await student?.close();
    await frozen.close();
    await rm(stateDir, { recursive: true, force: true });
  }
  const preShiftF1 = preIdx.length ? evaluate(preIdx.map((i) => truth[i]!), preIdx.map((i) => frozenPredictions[i]!), threshold).f1 : undefined;

  const frozenArm = armReport(times, truth, frozenPredictions, threshold, shiftAt, windowS, frozenMs, preShiftF1);
  const beatsArm = armReport(times, truth, beatsPredictions, threshold, shiftAt, windowS, beatsMs, preShiftF1);
  const s = status!;
  return {
    stream: { url: options.url, frames: times.length, seconds: times.length ? times.at(-1)! - times[0]! + (times[1] ?? 0) - times[0]! : 0, shiftAt: shiftAt ?? null },
    model: camera.model,
    threshold,
    supervision: supervisionReport(options, teacher),
    frozen: frozenArm,
    beats: beatsArm,
    labels: {
      verdicts: operator?.used ?? 0,
      verdictsByKind: operator?.byKind ?? { correct: 0, false_positive: 0, wrong_class: 0, missed: 0 },
      teacherKeyframes: s.teacher?.keyframes ?? 0,
      teacherShare: (s.teacher?.keyframes ?? 0) / Math.max(1, times.length),
      trackMissFrames: s.track_miss_frames,
      cellsTrained: s.cells_trained,
    },
    updates: {
      accepted: s.accepted,
      rejected: s.rejected,
      rolledBack: s.rolled_back,
      rejectedBy: s.rejected_by,
      msMean: updateMs.length ? updateMs.reduce((a, b) => a + b, 0) / updateMs.length : null,
      msMax: updateMs.length ? Math.max(...updateMs) : null,
      acceptedAt,
    },
    forgetting,
    fpsRatio: frozenArm.fps > 0 ? beatsArm.fps / frozenArm.fps : 0,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

type EvalDetect = Parameters<Detector['detect']>[1];

/** The keyframe teacher the options ask for: the stream's truth, a model, or none. */
async function loadTeacher(options: AdaptEvalOptions, frozen: Detector): Promise<KeyframeLabeller | undefined> {
  const { camera, runtime } = options;
  if (options.teacher?.model === 'truth') return new TruthTeacher(options.truthOf, frozen.card.classes);
  if (!options.teacher) return undefined;
  const detector = await Detector.load(options.teacher.model, { runtime: { ...runtime, threads: options.teacher.threads ?? runtime.threads }, inputSize: options.teacher.inputSize });
  return new ModelTeacher(detector, frozen.card.classes, { threshold: options.teacher.threshold, nmsIou: camera.detect.nms_iou, labels: camera.detect.labels });
}

/** The frozen arm: detection and tracking on each frame, timed, its predictions kept. */
function frozenArmOf(frozen: Detector, camera: CameraConfig, evalDetect: EvalDetect) {
  const predictions: PredictedFrame[] = [];
  const ms: number[] = [];
  const tracker = new Tracker(trackerOptions(camera));
  const step = async (source: Frame): Promise<void> => {
    const t0 = performance.now();
    const frame = relayoutFrame(source, frozen.frameOutput());
    const detections = await frozen.detect(frame, evalDetect);
    tracker.update(
      detections.filter((d) => d.score >= camera.events.low_threshold),
      frame,
    );
    ms.push(performance.now() - t0);
    predictions.push(toPredicted(source.index, detections));
  };
  return { step, predictions, ms };
}

/**
 * The adapting arm: detection, tracking and the adapter's observation on each frame, timed up to
 * where a pipeline would publish; the simulated operator's verdicts come after, off the frame path.
 */
function beatsArmOf(
  active: SiteAdapter,
  adaptive: Detector,
  options: AdaptEvalOptions,
  evalDetect: EvalDetect,
  operator: SimulatedOperator | undefined,
  record: { predictions: PredictedFrame[]; ms: number[] },
): (source: Frame) => Promise<void> {
  const { camera } = options;
  const { predictions, ms } = record;
  const tracker = new Tracker(trackerOptions(camera));
  const step = async (source: Frame): Promise<void> => {
    const t0 = performance.now();
    const frame = active.studentFrame(source);
    const all = await adaptive.detect(frame, evalDetect);
    const features = adaptive.headFeatures(all);
    const kept = all.filter((d) => d.score >= camera.events.low_threshold);
    const update = tracker.update(kept, frame);
    if (active instanceof CameraAdapter) active.observe(frame, kept, update.active, source, features);
    else active.observe(frame, kept, update.active, source);
    // The frame path ends here, as the frozen arm's does after tracking. What the simulated
    // operator sees is what a pipeline publishes; its verdicts reach a pipeline from MQTT, off the
    // frame path.
    ms.push(performance.now() - t0);
    const trackOf = new Map(update.active.filter((t) => t.confirmed && t.detection !== undefined).map((t) => [t.detection!, t.id]));
    const published = kept.flatMap((d, i) => (d.score >= camera.detect.threshold ? [{ ...d, trackId: trackOf.get(i) }] : []));
    const verdict = operator?.verdict(frame, published, options.truthOf(source), camera.name);
    if (verdict) active.onVerdict(verdict);
    predictions.push(toPredicted(frame.index, all));
  };
  return step;
}

/**
 * The adapting arm's adapter: the class head's (CameraAdapter) or the whole model's
 * (`adapt.layers: all`), with its updates as (milliseconds, stream time when accepted) and a way to
 * wait for what is in flight. A whole-model update is stamped with the stream time of the newest
 * frame when it arrives (its worker does not know the stream's clock).
 */
async function startAdapter(
  camera: CameraConfig,
  detector: Detector,
  stateDir: string,
  teacher: KeyframeLabeller | undefined,
  runtime: ProviderSettings,
  now: () => number,
): Promise<{ adapter: SiteAdapter; updates$: Observable<{ ms: number; acceptedAt?: number }>; idle: () => Promise<void> }> {
  if (camera.adapt.layers === 'all') {
    const adapter = await WholeModelAdapter.start({ camera, detector, stateDir, runtime, teacher });
    const updates$ = adapter.weights$.pipe(
      filter((e) => e.kind !== 'rolled_back'),
      map((e) => ({ ms: 'figures' in e ? e.figures.durationMs : 0, ...(e.kind === 'accepted' ? { acceptedAt: now() } : {}) })),
    );
    return { adapter, updates$, idle: () => adapter.settled() };
  }
  const adapter = await CameraAdapter.start({ camera, detector, stateDir, teacher });
  const updates$ = adapter.engine.updates$.pipe(
    filter((e: EngineEvent) => e.kind !== 'rolled_back'),
    map((e) => ({ ms: 'figures' in e ? e.figures.durationMs : 0, ...(e.kind === 'accepted' ? { acceptedAt: e.figures.streamTime } : {}) })),
  );
  return {
    adapter,
    updates$,
    idle: async () => {
      await adapter.teacherIdle();
      await adapter.engine.idle();
    },
  };
}

/** The first domain's frames again with the final head, against the frozen model's mAP on them. */
async function measureForgetting(
  options: AdaptEvalOptions,
  sourceOutput: FrameOutput,
  adaptive: Detector,
  evalDetect: EvalDetect,
  preTruth: TruthFrame[],
  frozenPre: PredictedFrame[],
): Promise<NonNullable<AdaptEvalReport['forgetting']>> {
  const threshold = options.camera.detect.threshold;
  const again: PredictedFrame[] = [];
  await replay(options.url, sourceOutput, async (source) => {
    again.push(toPredicted(source.index, await adaptive.detect(relayoutFrame(source, adaptive.frameOutput()), evalDetect)));
    options.onFrame?.('first-domain', source.index);
  }, { frames: preTruth.length, camera: 'eval' });
  const frozenMap = evaluate(preTruth, frozenPre, threshold).map50;
  const beatsMap = evaluate(preTruth, again, threshold).map50;
  return { frozenMap50: frozenMap, beatsMap50: beatsMap, dropPoints: 100 * (frozenMap - beatsMap) };
}

/** The report's supervision block: the verdict policy, the teacher and its keyframe policy. */
function supervisionReport(options: AdaptEvalOptions, teacher: KeyframeLabeller | undefined): AdaptEvalReport['supervision'] {
  const policy = options.camera.adapt.teacher;
  return {
    verdicts: options.verdicts ? { ...options.verdicts, from: options.verdicts.from ?? options.shiftAt ?? 0 } : null,
    teacher: teacher ? teacher.name : null,
    teacherPositives: policy?.positives ?? null,
    keyframePolicy: policy ? (policy.adaptive ? `adaptive ${policy.adaptive.min_frames}..${policy.adaptive.max_frames} frames` : `every ${policy.every_n_frames} frames`) : null,
  };
}
