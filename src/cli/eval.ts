import { mkdir, readFile } from 'node:fs/promises';
import { evaluateAdaptation, labelWithTeacher, type AdaptEvalReport } from '../adapt/evaluation.js';
import { resolveModel } from '../model/registry.js';
import { writeAdaptationPlot } from '../adapt/plot.js';
import { cameraSchema, teacherPositivesSchema, teacherSchema, type CameraConfig, type TeacherConfig } from '../config/schema.js';
import type { ProviderSettings } from '../model/providers.js';
import { SingleBar } from 'cli-progress';
import { Subject, concatMap, from, lastValueFrom, map, take, tap, toArray } from 'rxjs';
import { isModelPath, loadPipelineFile } from '../config/load.js';
import { BeatsError } from '../errors.js';
import { logger } from '../log.js';
import { MIN_VISIBLE } from '../train/beats-train.js';
import { Detector } from '../model/detector.js';
import { evaluate, type Evaluation, type PredictedFrame, type TruthFrame } from '../model/evaluate.js';
import { readFrames } from '../source/frames.js';
import { sourceKind } from '../config/source-kind.js';
import { parseSyntheticUrl, syntheticUrl } from '../source/synthetic/index.js';
import { syntheticTruth } from '../source/synthetic-source.js';
import path from 'node:path';
import { compareModels, parseModelUnderTest, type ModelScore } from '../model/compare.js';
import { teacherLabels, toTruthFrames } from '../train/teacher-labels.js';
import { labelSettings } from './label.js';

const log = logger('eval');

export interface EvalOptions {
  truth?: string;
  model?: string;
  threshold?: number;
  maxFrames?: number;
  json?: boolean;
  /** Synthetic sources: replay the scene with each of these seeds (inclusive range) and pool the figures. */
  seeds?: [number, number];
  /** Beats: replay frozen and adapting side by side (src/adapt/evaluation.ts). */
  adapt?: boolean;
  /** Operator verdicts drawn from the truth: the budget. */
  verdicts?: number;
  verdictEvery?: number;
  verdictsFrom?: number;
  /** `truth` or a model; keyframes every N frames or `adaptive`. */
  teacher?: string;
  teacherSize?: number;
  keyframes?: string;
  /** Where the teacher's boxes are positives (cameras[].adapt.teacher.positives). */
  teacherPositives?: string;
  /** Score these models side by side (NAME or NAME@SIZE) instead of one. */
  models?: string[];
  shiftAt?: number;
  window?: number;
  speed?: number;
  plot?: string;
  /** --adapt: what adapts, `head` or `all` (cameras[].adapt.layers; default the pipeline's, else head). */
  layers?: string;
  /** A video: specialise the Beats CNN on its first 70 %, score on the rest (src/adapt/specialize.ts). */
  specialize?: boolean;
  minutes?: number;
  trainShare?: number;
}

export interface EvalTarget {
  url: string;
  model: string;
  threshold: number;
  nmsIou: number;
  inputSize?: number;
}

async function resolveTarget(target: string, options: EvalOptions): Promise<EvalTarget> {
  if (/\.ya?ml$/i.test(target)) {
    const { config } = await loadPipelineFile(target);
    const camera = config.cameras[0]!;
    return { url: camera.source.url, model: options.model ?? camera.model, threshold: options.threshold ?? camera.detect.threshold, nmsIou: camera.detect.nms_iou, inputSize: camera.detect.input_size };
  }
  const url = sourceKind(target) === 'file' ? path.resolve(target) : target;
  const model = options.model ?? 'beats-s';
  return { url, model: isModelPath(model) ? path.resolve(model) : model, threshold: options.threshold ?? 0.35, nmsIou: 0.45 };
}

export async function readTruth(file: string): Promise<TruthFrame[]> {
  const text = await readFile(file, 'utf8').catch(() => {
    throw new BeatsError(`${file}: truth file not found`);
  });
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line, i) => {
      try {
        const parsed = JSON.parse(line) as TruthFrame;
        if (typeof parsed.frame !== 'number' || !Array.isArray(parsed.boxes)) throw new Error('needs "frame" and "boxes"');
        return parsed;
      } catch (err) {
        throw new BeatsError(`${file}:${i + 1}: not a truth line (${(err as Error).message})`);
      }
    });
}

/**
 * Runs a detector over a stream with ground truth and measures it. The truth comes from a JSON
 * lines file (`beats synth` writes one) or, for a `synthetic:` URL, from the synthetic camera.
 * With `seeds` (synthetic only), the same scene is replayed once per seed and the figures pooled:
 * one 60 s stream is too few objects to judge a detector by.
 */
export async function evaluateStream(target: EvalTarget, options: EvalOptions): Promise<Evaluation & { streams?: Array<{ url: string; map50: number }> }> {
  const kind = sourceKind(target.url);
  const synthetic = kind === 'synthetic' ? parseSyntheticUrl(target.url) : undefined;
  if (options.seeds && !synthetic) throw new BeatsError(`--seeds: only for synthetic: sources (${target.url} is not one)`);
  const fileTruth = options.truth ? await readTruth(options.truth) : undefined;
  if (!fileTruth && kind !== 'synthetic') throw new BeatsError(`${target.url}: give --truth FILE.jsonl (only synthetic: sources carry their own)`);
  const total = options.maxFrames ?? fileTruth?.length ?? (synthetic?.seconds ? Math.round(synthetic.seconds * synthetic.fps) : undefined);
  if (total === undefined) throw new BeatsError(`${target.url}: give seconds= in the URL or --max-frames`);
  const urls = options.seeds && synthetic ? Array.from({ length: options.seeds[1] - options.seeds[0] + 1 }, (_, i) => syntheticUrl({ ...synthetic, seed: options.seeds![0] + i })) : [target.url];
  const detector = await Detector.load(target.model, { runtime: { providers: ['tensorrt', 'cuda', 'cpu'], tensorrt: { fp16: true, engineCache: '.beats/trt-cache' }, threads: 0 }, inputSize: target.inputSize });
  const bar = new SingleBar({ format: 'eval [{bar}] {value}/{total} frames {eta_formatted}', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000 });
  bar.start(total * urls.length, 0);
  const truth: TruthFrame[] = [];
  const predictions: PredictedFrame[] = [];
  const streams: Array<{ url: string; map50: number }> = [];
  try {
    for (const [i, url] of urls.entries()) {
      // Streams are pooled with frame numbers apart.
      const offset = i * 10_000_000;
      const demand$ = new Subject<void>();
      const streamTruth: TruthFrame[] = [];
      const streamPredictions = await lastValueFrom(
        readFrames({ camera: 'eval', url, output: detector.frameOutput() }, demand$).pipe(
          take(total),
          concatMap((frame) =>
            from(detector.detect(frame, { threshold: 0.01, nmsIou: target.nmsIou, maxDetections: 100 })).pipe(
              map((detections): PredictedFrame => {
                const boxes = syntheticTruth.get(frame);
                if (boxes) streamTruth.push({ frame: offset + frame.index, boxes: boxes.map((b) => ({ label: b.label, box: b.box, ignore: b.visible < MIN_VISIBLE })) });
                return { frame: offset + frame.index, detections };
              }),
            ),
          ),
          tap((p) => {
            bar.update(i * total + p.frame - offset + 1);
            demand$.next();
          }),
          toArray(),
        ),
      );
      const t = fileTruth ?? streamTruth;
      streams.push({ url, map50: evaluate(t, streamPredictions, target.threshold).map50 });
      truth.push(...t);
      predictions.push(...streamPredictions);
    }
    const result = evaluate(truth, predictions, target.threshold);
    return urls.length > 1 ? { ...result, streams } : result;
  } finally {
    bar.stop();
    await detector.close();
  }
}

export async function evalCommand(target: string, options: EvalOptions): Promise<void> {
  if (options.specialize) {
    const { evalSpecializeCommand } = await import('./specialize.js');
    await evalSpecializeCommand(target, options);
    return;
  }
  if (options.adapt) return evalAdaptCommand(target, options);
  if (options.truth === 'teacher' || options.models) return evalCompareCommand(target, options);
  const resolved = await resolveTarget(target, options);
  log.info(`${resolved.model} on ${resolved.url}`);
  const result = await evaluateStream(resolved, options);
  const pct = (v: number) => (100 * v).toFixed(1).padStart(5);
  process.stdout.write(`class        AP@0.5   prec.  recall    F1   truths\n`);
  for (const [label, c] of Object.entries(result.perClass)) {
    process.stdout.write(`${label.padEnd(10)} ${pct(c.ap50)}  ${pct(c.precision)}  ${pct(c.recall)}  ${pct(c.f1)}  ${String(c.truths).padStart(6)}\n`);
  }
  process.stdout.write(`${'all'.padEnd(10)} ${pct(result.map50)}  ${pct(result.precision)}  ${pct(result.recall)}  ${pct(result.f1)}   (mAP@0.5; P/R/F1 at ${result.threshold}, ${result.frames} frames)\n`);
  process.stdout.write(`best F1 ${pct(result.best.f1)} at threshold ${result.best.threshold} (precision ${pct(result.best.precision)}, recall ${pct(result.best.recall)})\n`);
  if (result.streams) process.stdout.write(`per stream mAP@0.5: ${result.streams.map((s) => `${/seed=(\d+)/.exec(s.url)?.[1] ?? s.url} ${pct(s.map50).trim()}`).join(', ')}\n`);
  if (options.json) process.stdout.write(JSON.stringify(result) + '\n');
}

/** The camera to adapt: the pipeline's first camera, or the defaults for a model on a stream. */
async function adaptCamera(target: string, options: EvalOptions): Promise<{ camera: CameraConfig; runtime: ProviderSettings; url: string }> {
  const runtime: ProviderSettings = { providers: ['tensorrt', 'cuda', 'cpu'], tensorrt: { fp16: true, engineCache: '.beats/trt-cache' }, threads: 0 };
  if (/\.ya?ml$/i.test(target)) {
    const { config } = await loadPipelineFile(target);
    const camera = config.cameras[0]!;
    const detect = { ...camera.detect, threshold: options.threshold ?? camera.detect.threshold };
    return { camera: { ...camera, detect, model: options.model ?? camera.model }, runtime: { providers: config.runtime.providers, tensorrt: { fp16: config.runtime.tensorrt.fp16, engineCache: config.runtime.tensorrt.engine_cache }, threads: config.runtime.threads }, url: camera.source.url };
  }
  const url = sourceKind(target) === 'file' ? path.resolve(target) : target;
  const model = options.model ?? 'beats-s';
  const camera = cameraSchema.parse({ name: 'eval', source: { url }, model: isModelPath(model) ? path.resolve(model) : model, detect: { threshold: options.threshold ?? 0.35 } });
  return { camera, runtime, url };
}

function teacherPositives(options: EvalOptions): TeacherConfig['positives'] | undefined {
  const p = options.teacherPositives;
  if (p === undefined) return undefined;
  const parsed = teacherPositivesSchema.safeParse(p);
  if (!parsed.success) throw new BeatsError(`--teacher-positives: "${p}" is none of ${teacherPositivesSchema.options.join(', ')}`);
  return parsed.data;
}

function teacherConfig(options: EvalOptions): TeacherConfig | undefined {
  if (!options.teacher) return undefined;
  const k = options.keyframes ?? '10';
  const common = { model: options.teacher, input_size: options.teacherSize, positives: teacherPositives(options) };
  if (k === 'adaptive') return teacherSchema.parse({ ...common, adaptive: {} });
  const n = Number(k);
  if (!Number.isInteger(n) || n < 1) throw new BeatsError(`--keyframes: "${k}" is neither a number of frames nor "adaptive"`);
  return teacherSchema.parse({ ...common, every_n_frames: n });
}

export async function evaluateAdaptStream(target: string, options: EvalOptions): Promise<AdaptEvalReport> {
  const { camera: base, runtime, url } = await adaptCamera(target, options);
  const positives = teacherPositives(options);
  const fromPipeline = base.adapt.teacher && positives ? { ...base.adapt.teacher, positives } : base.adapt.teacher;
  const teacher = teacherConfig(options) ?? fromPipeline;
  if (!teacher && !options.verdicts) throw new BeatsError('--adapt needs supervision: --verdicts N (simulated operator verdicts) and/or --teacher truth|MODEL (or the pipeline\'s adapt.teacher)');
  if (options.layers !== undefined && options.layers !== 'head' && options.layers !== 'all') throw new BeatsError(`--layers: "${options.layers}" is neither head nor all`);
  const camera: CameraConfig = { ...base, adapt: { ...base.adapt, enabled: true, teacher, layers: options.layers ?? base.adapt.layers } };
  const kind = sourceKind(url);
  const synthetic = kind === 'synthetic' ? parseSyntheticUrl(url) : undefined;
  const byTeacher = options.truth === 'teacher';
  if (byTeacher && (!teacher || teacher.model === 'truth')) throw new BeatsError('--truth teacher: give --teacher MODEL (it labels every frame, and keyframes for the student)');
  let fileTruth = options.truth && !byTeacher ? await readTruth(options.truth) : undefined;
  if (!fileTruth && !synthetic && !byTeacher) throw new BeatsError(`${url}: give --truth FILE.jsonl, or --truth teacher (only synthetic: sources carry their own)`);
  // With the teacher as truth, a file is labelled to its end: that is how many frames it has.
  let frames = options.maxFrames ?? fileTruth?.length ?? (synthetic?.seconds ? Math.round(synthetic.seconds * synthetic.fps) : undefined);
  if (frames === undefined && !byTeacher) throw new BeatsError(`${url}: give seconds= in the URL or --max-frames`);
  const shiftAt = options.shiftAt ?? synthetic?.shift?.at;
  const bar = new SingleBar({ format: 'eval --adapt {pass} [{bar}] {value}/{total} frames {eta_formatted}', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000 });
  bar.start(frames ?? 0, 0, { pass: byTeacher ? 'teacher labels' : 'frozen+beats' });
  try {
    if (byTeacher) {
      const student = await resolveModel(camera.model);
      fileTruth = await labelWithTeacher({ url, frames: frames ?? Infinity, teacher: teacher!.model, inputSize: teacher!.input_size, threshold: teacher!.threshold, nmsIou: camera.detect.nms_iou, studentClasses: student.card.classes, labels: camera.detect.labels, runtime, onFrame: (index) => bar.update(index + 1) });
      frames = fileTruth.length;
      bar.setTotal(frames);
    }
    const byIndex = new Map(fileTruth?.map((t) => [t.frame, t]));
    return await evaluateAdaptation({
      url,
      frames: frames!,
      camera,
      runtime,
      shiftAt,
      truthOf: (frame) => {
        if (fileTruth) return byIndex.get(frame.index);
        const boxes = syntheticTruth.get(frame);
        return boxes ? { frame: frame.index, boxes: boxes.map((b) => ({ label: b.label, box: b.box, ignore: b.visible < MIN_VISIBLE })) } : undefined;
      },
      verdicts: options.verdicts ? { budget: options.verdicts, everyS: options.verdictEvery ?? 1, from: options.verdictsFrom } : undefined,
      teacher: teacher ? { model: teacher.model, inputSize: teacher.input_size, threshold: teacher.threshold, threads: teacher.threads } : undefined,
      windowS: options.window,
      speed: options.speed,
      onFrame: (pass, index) => bar.update(index + 1, { pass }),
    });
  } finally {
    bar.stop();
  }
}

async function evalAdaptCommand(target: string, options: EvalOptions): Promise<void> {
  const report = await evaluateAdaptStream(target, options);
  const plot = options.plot ?? path.join('.beats', 'eval', 'adapt-eval.png');
  await mkdir(path.dirname(path.resolve(plot)), { recursive: true });
  await writeAdaptationPlot(report, plot, `${report.model} on ${report.stream.url}`);
  const pct = (v: number | undefined | null) => (v === undefined || v === null ? '    -' : (100 * v).toFixed(1).padStart(5));
  const sec = (v: number | null) => (v === null ? 'never' : `${v.toFixed(0)} s`);
  const out: string[] = [];
  out.push(`                     frozen   Beats`);
  out.push(`mAP@0.5 overall       ${pct(report.frozen.overall.map50)}   ${pct(report.beats.overall.map50)}`);
  out.push(`F1 overall            ${pct(report.frozen.overall.f1)}   ${pct(report.beats.overall.f1)}`);
  out.push(`mAP@0.5 before shift  ${pct(report.frozen.beforeShift?.map50)}   ${pct(report.beats.beforeShift?.map50)}`);
  out.push(`mAP@0.5 after shift   ${pct(report.frozen.afterShift?.map50)}   ${pct(report.beats.afterShift?.map50)}`);
  out.push(`F1 after shift        ${pct(report.frozen.afterShift?.f1)}   ${pct(report.beats.afterShift?.f1)}`);
  out.push(`back to 90 % of pre-shift F1: frozen ${sec(report.frozen.secondsToRecover)}, Beats ${sec(report.beats.secondsToRecover)} after the shift (plateau within 2 points: ${sec(report.beats.secondsToPlateau)})`);
  out.push(`labels: ${report.labels.verdicts} verdicts, ${report.labels.teacherKeyframes} teacher keyframes (${pct(report.labels.teacherShare)} % of frames${report.supervision.teacherPositives ? `, positives: ${report.supervision.teacherPositives}` : ''}), ${report.labels.trackMissFrames} track-miss frames, ${report.labels.cellsTrained} cells trained`);
  if (report.forgetting) out.push(`first domain mAP@0.5: base head ${pct(report.forgetting.frozenMap50)}, final head ${pct(report.forgetting.beatsMap50)} (forgetting ${report.forgetting.dropPoints.toFixed(1)} points)`);
  out.push(`updates: ${report.updates.accepted} accepted, ${report.updates.rejected} rejected, ${report.updates.rolledBack} rolled back; ${report.updates.msMean === null ? '-' : report.updates.msMean.toFixed(1)} ms per update (max ${report.updates.msMax === null ? '-' : report.updates.msMax.toFixed(1)})`);
  out.push(`frame path: frozen ${report.frozen.fps.toFixed(0)} fps, Beats ${report.beats.fps.toFixed(0)} fps (ratio ${report.fpsRatio.toFixed(2)}); peak RSS ${report.peakRssMb.toFixed(0)} MB`);
  out.push(`plot: ${plot}`);
  process.stdout.write(out.join('\n') + '\n');
  if (options.json) process.stdout.write(JSON.stringify(report) + '\n');
}

/**
 * `beats eval VIDEO --truth teacher [--models a,b@416]`: models side by side against a teacher's
 * labels (or a truth file), on a user's own footage: mAP@0.5, F1 and inference fps of each.
 */
export async function evaluateModels(target: string, options: EvalOptions): Promise<{ url: string; truth: string; scores: ModelScore[] }> {
  const resolved = await resolveTarget(target, options);
  if (sourceKind(resolved.url) !== 'file') throw new BeatsError(`${resolved.url}: --truth teacher and --models score a video file`);
  const models = (options.models ?? [resolved.model]).map(parseModelUnderTest);
  const runtime: ProviderSettings = { providers: ['tensorrt', 'cuda', 'cpu'], tensorrt: { fp16: true, engineCache: '.beats/trt-cache' }, threads: 0 };
  const first = await resolveModel(models[0]!.ref);
  let truth: TruthFrame[];
  let truthName: string;
  if (options.truth === 'teacher') {
    const settings = await labelSettings({ teacher: options.teacher, teacherSize: options.teacherSize, student: models[0]!.ref });
    const bar = new SingleBar({ format: 'teacher labels [{bar}] {value} frames {duration_formatted}', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000 });
    bar.start(0, 0);
    const labels = await teacherLabels(resolved.url, settings, { runtime, cacheDir: path.join('.beats', 'labels'), onFrame: (i) => bar.update(i + 1) }).finally(() => bar.stop());
    truth = toTruthFrames(labels);
    truthName = `${labels.teacher.name}@${labels.teacher.size} (threshold ${settings.threshold}, unsure from ${settings.ignoreBelow} ignored)`;
  } else if (options.truth) {
    truth = await readTruth(options.truth);
    truthName = options.truth;
  } else throw new BeatsError(`${resolved.url}: give --truth FILE.jsonl or --truth teacher`);
  const bar = new SingleBar({ format: 'eval [{bar}] {value}/{total} frames {eta_formatted}', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000 });
  bar.start(options.maxFrames ?? truth.length, 0);
  try {
    const scores = await compareModels(resolved.url, truth, models, { threshold: resolved.threshold, nmsIou: resolved.nmsIou, runtime, classes: first.card.classes, maxFrames: options.maxFrames, onFrame: (i) => bar.update(i + 1) });
    return { url: resolved.url, truth: truthName, scores };
  } finally {
    bar.stop();
  }
}

async function evalCompareCommand(target: string, options: EvalOptions): Promise<void> {
  const report = await evaluateModels(target, options);
  const pct = (v: number) => (100 * v).toFixed(1).padStart(7);
  const rows = [`model                       input     mAP@0.5   F1@${report.scores[0]!.evaluation.threshold}  best F1   inference fps`];
  for (const s of report.scores) rows.push(`${s.name.padEnd(27)} ${s.input.padEnd(8)} ${pct(s.evaluation.map50)}  ${pct(s.evaluation.f1)}  ${pct(s.evaluation.best.f1)}   ${s.fps.toFixed(1).padStart(8)}`);
  rows.push(`truth: ${report.truth}; ${report.scores[0]!.evaluation.frames} frames of ${report.url}`);
  process.stdout.write(rows.join('\n') + '\n');
  if (options.json) process.stdout.write(JSON.stringify(report) + '\n');
}
