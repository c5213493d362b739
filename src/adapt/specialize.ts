/**
 * `beats eval VIDEO --specialize`: the Beats CNN specialised to one site by whole-model adaptation
 * from a teacher's keyframes (BEATS.md, "The whole model"; JITNet's online distillation), measured
 * on footage of that site it never trained on.
 *
 * The first `sitePart` of the clip is the site: it loops as a live camera would show it, for
 * `streamMinutes` of stream time, with the teacher on one frame in `keyframeEvery` (its label cost).
 * The student trains off the frame path with `trainShare` of one core: each update's CPU time
 * moves the stream clock on by time / share, so the stream sees as many updates as a camera at real
 * time with that share of a core would. The rest of the clip is the test: after every stream minute
 * the serving weights are scored on it against the reference labels (YOLOX-Nano at 640 by default),
 * and at the end the specialised student, the generic one and the teacher-sized references are
 * served through onnxruntime side by side on it (F1, mAP@0.5, fps).
 */
import path from 'node:path';
import { BeatsError } from '../errors.js';
import { Detector } from '../model/detector.js';
import { compareModels, type ModelScore, type ModelUnderTest } from '../model/compare.js';
import type { ProviderSettings } from '../model/providers.js';
import type { Frame } from '../source/frame.js';
import { replay } from '../source/replay.js';
import { largerOutput, relayoutFrame } from '../source/relayout.js';
import { toInputPixels, type Letterbox } from '../source/geometry.js';
import { defaultLabelSettings, teacherBox, teacherLabels, toTruthFrames, type TeacherBox } from '../train/teacher-labels.js';
import type { Tf } from '../train/tf.js';
import { loadStudent, writeStudentModel } from './student/model-files.js';
import type { SupervisedImage } from './student/reservoir.js';
import { StudentTrainer, type StudentTrainerOptions, type StudentUpdate } from './student/trainer.js';

export interface SpecializeOptions {
  video: string;
  student: string;
  teacher: ModelUnderTest;
  /** Models served side by side with the students at the end (the teacher-sized references). */
  references: readonly ModelUnderTest[];
  /** The reference labels' teacher size (YOLOX-Nano at this size labels the test part). */
  truthSize: number;
  streamMinutes: number;
  keyframeEvery: number;
  trainShare: number;
  sitePart: number;
  threshold: number;
  runtime: ProviderSettings;
  cacheDir: string;
  /** Where the specialised model is written. */
  outDir: string;
  trainer?: Partial<StudentTrainerOptions>;
  onProgress?: (p: SpecializeReport['curve'][number]) => void;
}

export interface SpecializeReport {
  video: string;
  frames: { total: number; site: number; test: number; fps: number };
  stream: { minutes: number; keyframes: number; keyframeShare: number; distinctLabelled: number; trainShare: number };
  /** The camera's detection threshold: the curve's `f1` and the references are scored at it. */
  threshold: number;
  /**
   * Held-out F1 on the test part (input pixels, against the reference labels) after each stream
   * minute, at the camera's threshold and at the operating threshold chosen then on the held-out
   * keyframes (`operating`; absent while none are held out).
   */
  curve: Array<{ minute: number; f1: number; accepted: number; rejected: number; operating?: { threshold: number; f1: number } }>;
  /** The specialised model's operating threshold at the end: its best F1 on the held-out keyframes (never trained on). */
  operating?: { threshold: number; heldOutF1: number; frames: number };
  updates: { accepted: number; rejected: number; byReason: Record<string, number>; meanMs: number; meanStepsMs: number; meanCpuMs: number };
  /** The end: each model served on the test part through onnxruntime. */
  served: ModelScore[];
  model: string;
}

interface ClipFrames {
  student: Uint8Array[];
  geometry: Letterbox[];
  /** Teacher boxes (student input pixels) of the site frames it labelled. */
  teacher: Map<number, SupervisedImage['boxes']>;
  fps: number;
}

function asTargets(boxes: readonly Pick<TeacherBox, 'label' | 'box' | 'ignore'>[], classes: readonly string[], lb: Letterbox): SupervisedImage['boxes'] {
  return boxes.filter((b) => classes.includes(b.label)).map((b) => ({ classId: classes.indexOf(b.label), box: toInputPixels(b.box, lb), ignore: b.ignore === true }));
}

/** Whether stream frame `i` is a keyframe: one in `every` (the 10th, 20th, ...), so no prefix of the stream exceeds the share. */
export function isKeyframe(i: number, every: number): boolean {
  return (i + 1) % every === 0;
}

/**
 * The site frame that stream frame `i` shows: the site in a loop that skips one frame more at each
 * pass, so that a loop whose length is a multiple of the keyframe stride does not show the teacher
 * the same few frames forever (a live camera never repeats itself exactly).
 */
export function siteFrameOf(i: number, siteFrames: number): number {
  return (i + Math.floor(i / siteFrames)) % siteFrames;
}

/** The site frames the keyframes visit in `streamFrames` frames (the teacher runs once per such frame). */
export function keyframeFrames(siteFrames: number, every: number, streamFrames: number): Set<number> {
  const out = new Set<number>();
  for (let i = every - 1; i < streamFrames && out.size < siteFrames; i += every) out.add(siteFrameOf(i, siteFrames));
  return out;
}

async function decodeClip(options: SpecializeOptions, studentOutput: ReturnType<Detector['frameOutput']>, siteFrames: number, keyframes: Set<number>, classes: readonly string[]): Promise<ClipFrames> {
  const teacher = await Detector.load(options.teacher.ref, { runtime: options.runtime, inputSize: options.teacher.inputSize });
  const settings = { ...defaultLabelSettings, classes };
  const clip: ClipFrames = { student: [], geometry: [], teacher: new Map(), fps: 0 };
  try {
    await replay(
      options.video,
      largerOutput(studentOutput, teacher.frameOutput()),
      async (frame: Frame) => {
        const student = relayoutFrame(frame, studentOutput);
        clip.student.push(Uint8Array.from(student.pixels));
        clip.geometry.push(student.geometry);
        if (frame.index === 1) clip.fps = 1 / Math.max(1e-3, frame.streamTime);
        if (frame.index >= siteFrames || !keyframes.has(frame.index)) return;
        const found = await teacher.detect(relayoutFrame(frame, teacher.frameOutput()), { threshold: settings.ignoreBelow, nmsIou: settings.nmsIou, maxDetections: 100 });
        const boxes = found.map((d) => teacherBox(d, settings)).filter((b): b is TeacherBox => b !== undefined);
        clip.teacher.set(frame.index, asTargets(boxes, classes, student.geometry));
      },
      { camera: 'specialize' },
    );
  } finally {
    await teacher.close();
  }
  return clip;
}

/** Runs the whole measurement; see the file's comment. */
export async function specialize(tf: Tf, options: SpecializeOptions): Promise<SpecializeReport> {
  if (!(options.trainShare > 0 && options.trainShare <= 1)) throw new BeatsError(`--train-share ${options.trainShare}: must be in (0, 1]`);
  if (!(options.sitePart > 0 && options.sitePart < 1)) throw new BeatsError(`site part ${options.sitePart}: must be in (0, 1)`);
  const student = await loadStudent(tf, options.student);
  const classes = student.card.classes;
  const labels = await teacherLabels(options.video, { ...defaultLabelSettings, teacherSize: options.truthSize, classes }, { runtime: options.runtime, cacheDir: options.cacheDir });
  const total = labels.frames.length;
  const siteFrames = Math.floor(total * options.sitePart);
  if (siteFrames < 10 || total - siteFrames < 5) throw new BeatsError(`${options.video}: ${total} frames are too few to split into a site and a test part`);
  const studentDetector = await Detector.load(options.student, { runtime: options.runtime });
  const studentOutput = studentDetector.frameOutput();
  await studentDetector.close();
  const fpsGuess = 30;
  const keyframes = keyframeFrames(siteFrames, options.keyframeEvery, Math.ceil(options.streamMinutes * 60 * fpsGuess * 2));
  const clip = await decodeClip(options, studentOutput, siteFrames, keyframes, classes);
  const truth = toTruthFrames(labels);
  const test: SupervisedImage[] = truth.filter((t) => t.frame >= siteFrames && t.frame < clip.student.length).map((t) => ({ pixels: clip.student[t.frame]!, boxes: asTargets(t.boxes, classes, clip.geometry[t.frame]!), time: 0 }));
  const trainer = new StudentTrainer(tf, student.spec, student.weights, { threshold: options.threshold, ...options.trainer });
  try {
    const run = simulateStream(trainer, clip, siteFrames, test, options);
    // The specialised model is scored at the threshold its own held-out keyframes chose (the test
    // part plays no part in it); the others at the comparison's.
    const operating = trainer.operatingPoint();
    const modelFile = await writeStudentModel(options.outDir, `${student.card.name}-site`, student.card, student.spec, trainer.weightArrays(), {
      video: path.basename(options.video),
      sitePart: options.sitePart,
      streamMinutes: options.streamMinutes,
      teacher: `${options.teacher.ref}${options.teacher.inputSize ? `@${options.teacher.inputSize}` : ''}`,
      keyframeEvery: options.keyframeEvery,
      trainShare: options.trainShare,
      ...(operating ? { threshold: operating.threshold } : {}),
    });
    const models: ModelUnderTest[] = [{ ref: modelFile, threshold: operating?.threshold }, { ref: options.student }, ...options.references];
    const served = await compareModels(options.video, truth, models, { threshold: options.threshold, nmsIou: 0.45, runtime: options.runtime, frames: (i) => i >= siteFrames, classes });
    return {
      video: options.video,
      frames: { total, site: siteFrames, test: test.length, fps: clip.fps },
      stream: { minutes: options.streamMinutes, keyframes: run.keyframes, keyframeShare: run.keyframes / Math.max(1, run.streamFrames), distinctLabelled: clip.teacher.size, trainShare: options.trainShare },
      threshold: options.threshold,
      curve: run.curve,
      updates: run.updates,
      served,
      model: modelFile,
      ...(operating ? { operating: { threshold: operating.threshold, heldOutF1: operating.f1, frames: operating.frames } } : {}),
    };
  } finally {
    trainer.dispose();
  }
}

interface StreamRun {
  curve: SpecializeReport['curve'];
  updates: SpecializeReport['updates'];
  keyframes: number;
  streamFrames: number;
}

/** The site looped as a live camera: keyframes feed the trainer, updates cost stream time by the share. */
function simulateStream(trainer: StudentTrainer, clip: ClipFrames, siteFrames: number, test: readonly SupervisedImage[], options: SpecializeOptions): StreamRun {
  const fps = clip.fps > 0 ? clip.fps : 25;
  const end = options.streamMinutes * 60;
  const point = (minute: number): SpecializeReport['curve'][number] => {
    const chosen = trainer.operatingPoint();
    const operating = chosen ? { threshold: chosen.threshold, f1: trainer.score(test, chosen.threshold) } : undefined;
    return { minute, f1: trainer.score(test), accepted: trainer.counts.accepted, rejected: trainer.counts.rejected, ...(operating ? { operating } : {}) };
  };
  const curve: SpecializeReport['curve'] = [point(0)];
  const byReason: Record<string, number> = {};
  let streamTime = 0;
  let streamFrame = 0;
  let keyframes = 0;
  let updateMs = 0;
  let stepsMs = 0;
  let updateCpuMs = 0;
  let nextMinute = 1;
  while (streamTime < end) {
    // The frames the stream shows until now: every keyframe among them is labelled and supervised.
    const upTo = Math.floor(streamTime * fps);
    for (; streamFrame <= upTo; streamFrame++) {
      if (!isKeyframe(streamFrame, options.keyframeEvery)) continue;
      const site = siteFrameOf(streamFrame, siteFrames);
      const boxes = clip.teacher.get(site);
      if (!boxes) continue;
      keyframes++;
      trainer.add({ pixels: clip.student[site]!, boxes, time: streamFrame / fps }, site);
    }
    // The share is of CPU time (what a core gives training), not of wall time, which a loaded machine stretches.
    const cpu = process.cpuUsage();
    const outcome: StudentUpdate = trainer.update();
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000;
    if (outcome.kind === 'waiting') streamTime = (streamFrame + options.keyframeEvery) / fps;
    else {
      updateMs += outcome.figures.durationMs;
      stepsMs += outcome.figures.stepsMs;
      updateCpuMs += cpuMs;
      if (outcome.kind === 'rejected') byReason[outcome.reason] = (byReason[outcome.reason] ?? 0) + 1;
      streamTime += cpuMs / 1000 / options.trainShare;
    }
    while (streamTime >= nextMinute * 60 && nextMinute <= options.streamMinutes) {
      const at = point(nextMinute);
      curve.push(at);
      options.onProgress?.(at);
      nextMinute++;
    }
  }
  const attempts = trainer.counts.accepted + trainer.counts.rejected;
  return { curve, updates: { accepted: trainer.counts.accepted, rejected: trainer.counts.rejected, byReason, meanMs: attempts ? updateMs / attempts : 0, meanStepsMs: attempts ? stepsMs / attempts : 0, meanCpuMs: attempts ? updateCpuMs / attempts : 0 }, keyframes, streamFrames: streamFrame };
}
