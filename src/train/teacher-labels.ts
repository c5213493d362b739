/**
 * Teacher labels for real footage: a large detector (YOLOX-Nano at 640 by default) run over every
 * frame of a video, its boxes written in the truth format that `beats eval --truth` reads, so the
 * Beats CNN can be trained and scored on cameras that have no ground truth (distillation).
 *
 * What a small student learns best from: a box the teacher is sure of (score >= threshold) is a
 * positive; one it is unsure of (between `ignoreBelow` and the threshold), and one of a class the
 * student does not have but would confuse with one of its own (a truck for a car), is an ignore
 * region: neither rewarded nor punished, in training and in scoring.
 *
 * Labels are cached by the video's sha256 and the teacher's name, version and settings, so a
 * second run over the same clip (another training run, an eval) costs nothing.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { BeatsError, errorMessage } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { Detector } from '../model/detector.js';
import type { TruthFrame } from '../model/evaluate.js';
import type { ProviderSettings } from '../model/providers.js';
import { replay } from '../source/replay.js';

/** COCO classes that a three-class student would call by one of its own names: ignored there, not negatives. */
export const CONFUSABLE: Readonly<Record<string, string>> = { truck: 'car', bus: 'car', motorcycle: 'bicycle' };

export interface TeacherLabelSettings {
  teacher: string;
  /** Square input size of the teacher (resizable cards). */
  teacherSize?: number;
  /** A box at or above this score is a positive. */
  threshold: number;
  /** A box between this and `threshold` is an ignore region. */
  ignoreBelow: number;
  nmsIou: number;
  /** The student's classes: only these are labelled. */
  classes: readonly string[];
}

export const defaultLabelSettings: Omit<TeacherLabelSettings, 'classes'> = { teacher: 'yolox-nano', teacherSize: 640, threshold: 0.5, ignoreBelow: 0.25, nmsIou: 0.45 };

/** One labelled box: the truth format's fields, plus the teacher's score and its own class name. */
export interface TeacherBox {
  label: string;
  box: readonly [number, number, number, number];
  ignore?: boolean;
  score: number;
  /** The teacher's class when it differs from `label` (a truck labelled as an ignored car). */
  teacherLabel?: string;
}

export interface TeacherLabelFile {
  video: string;
  sha256: string;
  teacher: { name: string; version: string; size: number };
  settings: Omit<TeacherLabelSettings, 'teacher' | 'teacherSize'>;
  /** Source frame size (the space of the boxes). */
  width: number;
  height: number;
  frames: Array<{ frame: number; boxes: TeacherBox[] }>;
}

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('error', (err) => reject(new BeatsError(`${file}: cannot read (${errorMessage(err)})`)))
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** Keeps a teacher detection as a positive, an ignore region, or nothing. */
export function teacherBox(d: { label: string; score: number; box: readonly [number, number, number, number] }, settings: Pick<TeacherLabelSettings, 'threshold' | 'ignoreBelow' | 'classes'>): TeacherBox | undefined {
  if (d.score < settings.ignoreBelow) return undefined;
  const box = [d.box[0], d.box[1], d.box[2], d.box[3]] as const;
  if (settings.classes.includes(d.label)) return d.score >= settings.threshold ? { label: d.label, box, score: d.score } : { label: d.label, box, score: d.score, ignore: true };
  const alias = CONFUSABLE[d.label];
  if (alias && settings.classes.includes(alias)) return { label: alias, box, score: d.score, ignore: true, teacherLabel: d.label };
  return undefined;
}

/** Runs the teacher over every frame of `video` (to its end, or `maxFrames`). */
export async function labelVideo(video: string, settings: TeacherLabelSettings, runtime: ProviderSettings, onFrame?: (index: number) => void, maxFrames = Infinity): Promise<Omit<TeacherLabelFile, 'sha256'>> {
  const detector = await Detector.load(settings.teacher, { runtime, inputSize: settings.teacherSize });
  const frames: TeacherLabelFile['frames'] = [];
  let size = { width: 0, height: 0 };
  try {
    await replay(
      path.resolve(video),
      detector.frameOutput(),
      async (frame) => {
        size = { width: frame.width, height: frame.height };
        const detections = await detector.detect(frame, { threshold: settings.ignoreBelow, nmsIou: settings.nmsIou, maxDetections: 300 });
        const boxes = detections.map((d) => teacherBox(d, settings)).filter((b): b is TeacherBox => b !== undefined);
        frames.push({ frame: frame.index, boxes });
        onFrame?.(frame.index);
      },
      { frames: maxFrames, camera: 'label' },
    );
  } finally {
    await detector.close();
  }
  if (frames.length === 0) throw new BeatsError(`${video}: no frame could be decoded`);
  const { teacher: _teacher, teacherSize: _size, ...rest } = settings;
  return { video: path.basename(video), teacher: { name: detector.card.name, version: detector.card.version, size: detector.inputWidth }, settings: rest, ...size, frames };
}

function cacheKey(sha256: string, settings: TeacherLabelSettings): string {
  const h = createHash('sha256').update(JSON.stringify({ ...settings, classes: [...settings.classes] })).digest('hex').slice(0, 12);
  return `${sha256.slice(0, 16)}-${settings.teacher.replace(/[^\w.-]/g, '_')}-${settings.teacherSize ?? 'card'}-${h}.json`;
}

/**
 * The teacher's labels of `video`: from the cache when this video (by content) was labelled with
 * these settings, else labelled now and cached (written atomically: a stopped run leaves no
 * half-file to be read as labels).
 */
export async function teacherLabels(video: string, settings: TeacherLabelSettings, options: { runtime: ProviderSettings; cacheDir: string; onFrame?: (index: number) => void; onCached?: (file: string) => void; /** The video's sha256 when the caller has just computed it. */ sha256?: string }): Promise<TeacherLabelFile> {
  if (!existsSync(video)) throw new BeatsError(`${video}: no such video`);
  const sha256 = options.sha256 ?? (await sha256File(video));
  const file = path.join(options.cacheDir, cacheKey(sha256, settings));
  const cached = existsSync(file) ? await readCached(file) : undefined;
  if (cached?.sha256 === sha256 && Array.isArray(cached.frames)) {
    options.onCached?.(file);
    return cached;
  }
  const labelled: TeacherLabelFile = { ...(await labelVideo(video, settings, options.runtime, options.onFrame)), sha256 };
  await mkdir(options.cacheDir, { recursive: true });
  await writeFileAtomic(file, JSON.stringify(labelled));
  return labelled;
}

/** A cache entry, or undefined when it cannot be read as one (it is then labelled again and replaced). */
async function readCached(file: string): Promise<TeacherLabelFile | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as TeacherLabelFile;
  } catch {
    return undefined;
  }
}

/** The labels as truth lines (`beats eval --truth` reads them). */
export function toTruthLines(labels: TeacherLabelFile): string {
  return labels.frames.map((f) => JSON.stringify({ frame: f.frame, boxes: f.boxes })).join('\n') + '\n';
}

/** The labels as the evaluator's truth frames. */
export function toTruthFrames(labels: TeacherLabelFile): TruthFrame[] {
  return labels.frames.map((f) => ({ frame: f.frame, boxes: f.boxes.map((b) => ({ label: b.label, box: b.box, ignore: b.ignore })) }));
}
