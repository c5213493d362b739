/**
 * Real footage for training the Beats CNN: teacher-labelled clips (src/train/teacher-labels.ts),
 * decoded once into memory at twice the model input (letterboxed as inference letterboxes them), a
 * share of them through a low-quality JPEG round trip (the artefacts of real camera streams), and
 * drawn as augmented samples (src/train/augment.ts), clip by clip in turn so a long clip does not
 * drown a short one.
 *
 * Frames are taken with a stride that keeps at most `maxFramesPerClip` of a clip: consecutive
 * frames of a 60 fps camera teach the same thing.
 */
import path from 'node:path';
import sharp from 'sharp';
import { BeatsError } from '../errors.js';
import type { BeatsCnnSpec } from './beats-cnn.js';
import type { TrainingSample } from './beats-train.js';
import { replay } from '../source/replay.js';
import { toInputPixels } from '../source/geometry.js';
import { augment, defaultAugment, type AugmentRanges, type StoredFrame } from './augment.js';
import { validMosaicGrids } from './mosaic-grids.js';
import { withCaptions } from './overlay.js';
import { seededRandom, type Random } from './random.js';
import type { TeacherLabelFile } from './teacher-labels.js';

export interface RealClipOptions {
  /** Stored frame size: twice the model input, so zooming in keeps detail. */
  width: number;
  height: number;
  maxFramesPerClip: number;
  /** Share of frames stored through a JPEG round trip, and its quality range. */
  jpegShare: number;
  jpegQuality: [number, number];
  seed: number;
}

export interface RealClip {
  name: string;
  frames: StoredFrame[];
}


async function jpegRoundTrip(pixels: Uint8Array, width: number, height: number, quality: number): Promise<Uint8Array> {
  const raw = { width, height, channels: 3 as const };
  const jpeg = await sharp(pixels, { raw }).jpeg({ quality }).toBuffer();
  const { data } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Decodes `video` and pairs its frames with the teacher's labels (class names to the student's ids). */
export async function loadRealClip(video: string, labels: TeacherLabelFile, classes: readonly string[], options: RealClipOptions): Promise<RealClip> {
  const byFrame = new Map(labels.frames.map((f) => [f.frame, f]));
  const stride = Math.max(1, Math.ceil(labels.frames.length / options.maxFramesPerClip));
  const random = seededRandom(options.seed);
  const frames: StoredFrame[] = [];
  const output = { width: options.width, height: options.height, pixelFormat: 'rgb24', padValue: 114, align: 'center' } as const;
  await replay(
    path.resolve(video),
    output,
    async (frame) => {
      const truth = byFrame.get(frame.index);
      if (!truth || frame.index % stride !== 0) return;
      let pixels: Uint8Array = new Uint8Array(frame.pixels);
      if (random() < options.jpegShare) {
        const [lo, hi] = options.jpegQuality;
        pixels = await jpegRoundTrip(pixels, options.width, options.height, Math.round(lo + random() * (hi - lo)));
      }
      const boxes = truth.boxes.map((b) => ({ classId: classes.indexOf(b.label), box: toInputPixels(b.box, frame.geometry), ignore: b.ignore === true }));
      frames.push({ pixels, width: options.width, height: options.height, boxes });
    },
    { frames: labels.frames.length, camera: 'train' },
  );
  if (frames.length === 0) throw new BeatsError(`${video}: no labelled frame decoded (labels for ${labels.frames.length} frames of ${labels.video})`);
  return { name: path.basename(video), frames };
}

/** The cells of an n x n grid over width x height: edges at rounded multiples of width / n and height / n. */
export function gridCells(n: number, width: number, height: number): Array<{ x: number; y: number; width: number; height: number }> {
  const edge = (i: number, size: number) => Math.round((i * size) / n);
  const cells = [];
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      const [x, y] = [edge(col, width), edge(row, height)];
      cells.push({ x, y, width: edge(col + 1, width) - x, height: edge(row + 1, height) - y });
    }
  }
  return cells;
}

/**
 * Samples side by side in an n x n grid (`gridCells`, row by row), boxes moved with them: the
 * objects of a clip at 1/n of their size, in a picture filled with real footage (the letterbox's
 * padding would fill it otherwise). The real clips' people are large (a median 83 to 124 pixels tall
 * at 256x192, the indoor clip's 90 % of the frame) where a camera over a walkway or a road sees them
 * at 25 to 80: without this, no real person the model trains on is that small. Each sample must be
 * its cell's size.
 */
export function mosaic(cells: readonly TrainingSample[], width: number, height: number): TrainingSample {
  const n = Math.round(Math.sqrt(cells.length));
  const grid = n >= 2 && n * n === cells.length ? gridCells(n, width, height) : undefined;
  if (!grid || grid.some((c) => c.width < 1 || c.height < 1)) throw new BeatsError(`mosaic: ${cells.length} samples for ${width}x${height}: needs n x n samples (n >= 2), each cell at least a pixel`);
  const pixels = new Uint8Array(width * height * 3);
  const boxes: TrainingSample['boxes'] = [];
  cells.forEach((sample, i) => {
    const { x: ox, y: oy, width: cw, height: ch } = grid[i]!;
    if (sample.pixels.length !== cw * ch * 3) throw new BeatsError(`mosaic: cell ${i} is ${cw}x${ch} but its sample has ${sample.pixels.length / 3} pixels`);
    for (let y = 0; y < ch; y++) pixels.set(sample.pixels.subarray(y * cw * 3, (y + 1) * cw * 3), ((oy + y) * width + ox) * 3);
    for (const b of sample.boxes) boxes.push({ ...b, box: [b.box[0] + ox, b.box[1] + oy, b.box[2] + ox, b.box[3] + oy] });
  });
  return { pixels, boxes };
}

export interface RealBatchOptions {
  /** Share of samples that are mosaics (`mosaic`). */
  mosaicShare?: number;
  /** A mosaic's grid, n x n, drawn from these at random (default [2]: 2x2 of half-size samples). */
  mosaicGrids?: readonly number[];
  /** Share of samples with on-screen-display captions painted on. */
  captionShare?: number;
  /** The augmentation's zoom range (src/train/augment.ts; below 1 the frame smaller inside padding). */
  zoom?: readonly [number, number];
}

/**
 * Endless augmented samples from real clips, clip by clip in turn, frames at random; `mosaicShare`
 * of them mosaics, `captionShare` of them with on-screen-display captions painted on.
 */
export class RealBatches {
  private readonly random: Random;
  private readonly mosaicShare: number;
  private readonly mosaicGrids: readonly number[];
  private readonly captionShare: number;
  private readonly ranges: AugmentRanges;
  private next = 0;

  constructor(
    private readonly clips: readonly RealClip[],
    seed: number,
    options: RealBatchOptions = {},
  ) {
    if (clips.length === 0) throw new BeatsError('no real clips to train on');
    this.random = seededRandom(seed);
    this.mosaicShare = options.mosaicShare ?? 0;
    this.mosaicGrids = options.mosaicGrids ?? [2];
    if (!validMosaicGrids(this.mosaicGrids)) throw new BeatsError(`mosaic grids ${this.mosaicGrids.join(',')}: each must be an integer of at least 2 and at most 8`);
    this.captionShare = options.captionShare ?? 0;
    this.ranges = options.zoom ? { ...defaultAugment, zoom: [options.zoom[0], options.zoom[1]] } : defaultAugment;
  }

  private one(width: number, height: number): TrainingSample {
    const clip = this.clips[this.next++ % this.clips.length]!;
    const frame = clip.frames[Math.floor(this.random() * clip.frames.length)]!;
    return augment(frame, width, height, this.random, this.ranges);
  }

  private mosaic(width: number, height: number): TrainingSample {
    // Drawn only when there is a choice, so that a recipe with the default 2x2 replays the same samples.
    const n = this.mosaicGrids.length === 1 ? this.mosaicGrids[0]! : this.mosaicGrids[Math.floor(this.random() * this.mosaicGrids.length)]!;
    return mosaic(gridCells(n, width, height).map((c) => this.one(c.width, c.height)), width, height);
  }

  take(spec: BeatsCnnSpec, n: number): TrainingSample[] {
    const { inputWidth: w, inputHeight: h } = spec;
    const out: TrainingSample[] = [];
    for (let i = 0; i < n; i++) {
      // Drawn only when mosaics are on, so that a recipe without them replays the same samples.
      const asMosaic = this.mosaicShare > 0 && this.random() < this.mosaicShare;
      const sample = asMosaic ? this.mosaic(w, h) : this.one(w, h);
      // Drawn only when captions are on, for the same reason.
      out.push(this.captionShare > 0 && this.random() < this.captionShare ? withCaptions(sample, w, h, this.random) : sample);
    }
    return out;
  }
}
