/**
 * `beats label VIDEO...`: a teacher's boxes for every frame of each video, as truth lines that
 * `beats eval --truth` reads and `beats train --real` trains on. Cached by content (see
 * src/train/teacher-labels.ts), with a progress bar per video.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { SingleBar } from 'cli-progress';
import { BeatsError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { logger } from '../log.js';
import type { ProviderSettings } from '../model/providers.js';
import { resolveModel } from '../model/registry.js';
import { defaultLabelSettings, teacherLabels, toTruthLines, type TeacherLabelSettings } from '../train/teacher-labels.js';

const log = logger('label');

export interface LabelCliOptions {
  teacher?: string;
  teacherSize?: number;
  threshold?: number;
  ignoreBelow?: number;
  /** The student whose classes are labelled (default beats-s). */
  student?: string;
  out?: string;
  cacheDir?: string;
}

export const labelRuntime: ProviderSettings = { providers: ['tensorrt', 'cuda', 'cpu'], tensorrt: { fp16: true, engineCache: '.beats/trt-cache' }, threads: 0 };

export async function labelSettings(options: LabelCliOptions): Promise<TeacherLabelSettings> {
  const student = await resolveModel(options.student ?? 'beats-s');
  const settings: TeacherLabelSettings = {
    ...defaultLabelSettings,
    teacher: options.teacher ?? defaultLabelSettings.teacher,
    teacherSize: options.teacherSize ?? defaultLabelSettings.teacherSize,
    threshold: options.threshold ?? defaultLabelSettings.threshold,
    ignoreBelow: options.ignoreBelow ?? defaultLabelSettings.ignoreBelow,
    classes: student.card.classes,
  };
  if (!(settings.threshold > 0 && settings.threshold <= 1)) throw new BeatsError(`--threshold ${settings.threshold}: must be in (0, 1]`);
  if (!(settings.ignoreBelow > 0 && settings.ignoreBelow <= settings.threshold)) throw new BeatsError(`--ignore-below ${settings.ignoreBelow}: must be above 0 and at most --threshold (${settings.threshold})`);
  return settings;
}

export async function labelCommand(videos: string[], options: LabelCliOptions): Promise<void> {
  if (options.out && videos.length > 1) throw new BeatsError('-o names one file: give one video, or leave -o out (each video then gets .beats/labels/NAME.labels.jsonl)');
  const settings = await labelSettings(options);
  const cacheDir = options.cacheDir ?? path.join('.beats', 'labels');
  for (const video of videos) {
    const bar = new SingleBar({ format: `label ${path.basename(video)} [{bar}] {value} frames {duration_formatted}`, stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000 });
    bar.start(0, 0);
    let labels;
    try {
      labels = await teacherLabels(video, settings, { runtime: labelRuntime, cacheDir, onFrame: (i) => bar.update(i + 1), onCached: (file) => log.info(`${video}: cached (${file})`) });
    } finally {
      bar.stop();
    }
    const out = options.out ?? path.join(cacheDir, `${path.basename(video).replace(/\.[^.]+$/, '')}.labels.jsonl`);
    await mkdir(path.dirname(path.resolve(out)), { recursive: true });
    await writeFileAtomic(out, toTruthLines(labels));
    const boxes = labels.frames.reduce((n, f) => n + f.boxes.filter((b) => !b.ignore).length, 0);
    const ignored = labels.frames.reduce((n, f) => n + f.boxes.filter((b) => b.ignore).length, 0);
    process.stdout.write(`${video}: ${labels.frames.length} frames, ${boxes} boxes, ${ignored} ignore regions (${labels.teacher.name}@${labels.teacher.size}) -> ${out}\n`);
  }
}

