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

/**
 * Four samples of half the width and height, side by side in a 2x2 grid, boxes moved with them: the
 * objects of a clip at half their size, in a picture filled with real footage (the letterbox's
 * padding would fill it otherwise). The real clips' people are large (a median 83 to 124 pixels tall
 * at 256x192) where a camera over a walkway sees them at 40: without this, no real person the model
 * trains on is that small.
 */
export function mosaic(quarters: readonly TrainingSample[], width: number, height: number): TrainingSample {
  const [qw, qh] = [width / 2, height / 2];
  if (quarters.length !== 4 || !Number.isInteger(qw) || !Number.isInteger(qh)) throw new BeatsError(`mosaic: four samples of ${qw}x${qh} for ${width}x${height}`);
  const pixels = new Uint8Array(width * height * 3);
  const boxes: TrainingSample['boxes'] = [];
  quarters.forEach((q, i) => {
    const [ox, oy] = [(i % 2) * qw, Math.floor(i / 2) * qh];
    for (let y = 0; y < qh; y++) pixels.set(q.pixels.subarray(y * qw * 3, (y + 1) * qw * 3), ((oy + y) * width + ox) * 3);
    for (const b of q.boxes) boxes.push({ ...b, box: [b.box[0] + ox, b.box[1] + oy, b.box[2] + ox, b.box[3] + oy] });
  });
  return { pixels, boxes };
}

export interface RealBatchOptions {
  /** Share of samples that are 2x2 mosaics of half-size samples. */
  mosaicShare?: number;
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
    this.captionShare = options.captionShare ?? 0;
    this.ranges = options.zoom ? { ...defaultAugment, zoom: [options.zoom[0], options.zoom[1]] } : defaultAugment;
  }

  private one(width: number, height: number): TrainingSample {
    const clip = this.clips[this.next++ % this.clips.length]!;
    const frame = clip.frames[Math.floor(this.random() * clip.frames.length)]!;
    return augment(frame, width, height, this.random, this.ranges);
  }

  take(spec: BeatsCnnSpec, n: number): TrainingSample[] {
    const { inputWidth: w, inputHeight: h } = spec;
    const out: TrainingSample[] = [];
    for (let i = 0; i < n; i++) {
      // Drawn only when mosaics are on, so that a recipe without them replays the same samples.
      const asMosaic = this.mosaicShare > 0 && this.random() < this.mosaicShare;
      const sample = asMosaic ? mosaic([0, 1, 2, 3].map(() => this.one(w / 2, h / 2)), w, h) : this.one(w, h);
      // Drawn only when captions are on, for the same reason.
      out.push(this.captionShare > 0 && this.random() < this.captionShare ? withCaptions(sample, w, h, this.random) : sample);
    }
    return out;
  }
}
