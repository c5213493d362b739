/**
 * The real part of a training run: from the clips a recipe names, the teacher's labels (cached)
 * and the decoded frames, checked against the sha256 the recipe recorded, as endless batches; and
 * the batch that mixes them with synthetic frames in the recipe's share.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { BeatsError } from '../errors.js';
import type { ProviderSettings } from '../model/providers.js';
import type { BeatsCnnSpec } from './beats-cnn.js';
import type { RealDataRecipe, TrainingSample } from './beats-train.js';
import { validMosaicGrids } from './mosaic-grids.js';
import { RealBatches, loadRealClip, type RealClip } from './real-clips.js';
import { defaultLabelSettings, sha256File, teacherLabels, type TeacherLabelSettings } from './teacher-labels.js';

export interface RealDataSource {
  take(spec: BeatsCnnSpec, n: number): TrainingSample[];
}

const runtime: ProviderSettings = { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '.beats/trt-cache' }, threads: 0 };

/** A new recipe's real part: each clip labelled (or found in the cache) and hashed. */
export async function realRecipe(files: readonly string[], share: number, classes: readonly string[], options: { cacheDir: string; mosaicShare?: number; mosaicGrids?: number[]; captionShare?: number; zoom?: [number, number]; onClip?: (file: string) => void }): Promise<RealDataRecipe> {
  if (!(share > 0 && share <= 1)) throw new BeatsError(`--real-share ${share}: must be in (0, 1]`);
  const mosaicShare = options.mosaicShare ?? 0;
  if (!(mosaicShare >= 0 && mosaicShare <= 1)) throw new BeatsError(`--mosaic ${mosaicShare}: must be in [0, 1]`);
  const mosaicGrids = options.mosaicGrids;
  if (mosaicGrids && !validMosaicGrids(mosaicGrids)) throw new BeatsError(`--mosaic-grid ${mosaicGrids.join(',')}: each grid must be an integer from 2 to 8`);
  if (mosaicGrids && !(mosaicShare > 0)) throw new BeatsError(`--mosaic-grid ${mosaicGrids.join(',')}: needs --mosaic, the share of real samples that are mosaics`);
  const captionShare = options.captionShare ?? 0;
  if (!(captionShare >= 0 && captionShare <= 1)) throw new BeatsError(`--captions ${captionShare}: must be in [0, 1]`);
  const zoom = options.zoom;
  if (zoom && !(zoom.length === 2 && zoom[0] > 0 && zoom[0] <= zoom[1] && zoom[1] <= 4)) throw new BeatsError(`--zoom ${zoom.join(',')}: must be LO,HI with 0 < LO <= HI <= 4`);
  const settings: TeacherLabelSettings = { ...defaultLabelSettings, classes };
  const clips: RealDataRecipe['clips'] = [];
  let teacher: RealDataRecipe['teacher'] | undefined;
  for (const file of files) {
    if (!existsSync(file)) throw new BeatsError(`--real: ${file}: no such video`);
    options.onClip?.(file);
    const labels = await teacherLabels(file, settings, { runtime, cacheDir: options.cacheDir });
    teacher = { name: labels.teacher.name, version: labels.teacher.version, size: labels.teacher.size, threshold: settings.threshold, ignoreBelow: settings.ignoreBelow };
    clips.push({ file: path.resolve(file), sha256: labels.sha256, frames: labels.frames.length });
  }
  return { clips, share, teacher: teacher!, maxFramesPerClip: 400, jpegShare: 0.3, ...(mosaicShare > 0 ? { mosaicShare } : {}), ...(mosaicGrids && mosaicGrids.join() !== '2' ? { mosaicGrids } : {}), ...(captionShare > 0 ? { captionShare } : {}), ...(zoom ? { zoom } : {}) };
}

/** The recipe's clips in memory, refusing a file whose content is not what the recipe recorded. */
export async function loadRealData(real: RealDataRecipe, spec: BeatsCnnSpec, seed: number, cacheDir: string): Promise<RealBatches> {
  const settings: TeacherLabelSettings = { ...defaultLabelSettings, teacher: real.teacher.name, teacherSize: real.teacher.size, threshold: real.teacher.threshold, ignoreBelow: real.teacher.ignoreBelow, classes: spec.classes };
  const clips: RealClip[] = [];
  for (const [i, clip] of real.clips.entries()) {
    if (!existsSync(clip.file)) throw new BeatsError(`recipe clip ${clip.file}: no such video (the recipe needs it to resume)`);
    const sha = await sha256File(clip.file);
    if (sha !== clip.sha256) throw new BeatsError(`recipe clip ${clip.file}: sha256 ${sha} is not the recipe's ${clip.sha256}`);
    const labels = await teacherLabels(clip.file, settings, { runtime, cacheDir, sha256: sha });
    clips.push(await loadRealClip(clip.file, labels, spec.classes, { width: spec.inputWidth * 2, height: spec.inputHeight * 2, maxFramesPerClip: real.maxFramesPerClip, jpegShare: real.jpegShare, jpegQuality: [15, 45], seed: seed + i }));
  }
  return new RealBatches(clips, seed, { mosaicShare: real.mosaicShare, mosaicGrids: real.mosaicGrids, captionShare: real.captionShare, zoom: real.zoom });
}

/** A batch of `n`: `round(n * share)` real samples, the rest synthetic. */
export function mixedBatch(spec: BeatsCnnSpec, n: number, synthetic: RealDataSource, real: RealDataSource | undefined, share: number): TrainingSample[] {
  const nReal = real ? Math.round(n * share) : 0;
  return [...(nReal > 0 ? real!.take(spec, nReal) : []), ...(n - nReal > 0 ? synthetic.take(spec, n - nReal) : [])];
}
