// Real footage for the Beats CNN: teacher labels (what becomes a positive, an ignore region, or
// nothing; cached by content), augmentations whose boxes follow the pixels, the recipe's clip
// check, and models scored side by side against a teacher.
import { existsSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { augment, defaultAugment, type StoredFrame } from '../src/train/augment.js';
import { seededRandom } from '../src/train/random.js';
import { teacherBox, teacherLabels, toTruthFrames, type TeacherLabelSettings } from '../src/train/teacher-labels.js';
import { loadRealData, mixedBatch, realRecipe } from '../src/train/real-data.js';
import { RealBatches, gridCells, mosaic } from '../src/train/real-clips.js';
import { withCaptions } from '../src/train/overlay.js';
import { compareModels } from '../src/model/compare.js';
import { defaultSpec } from '../src/train/beats-cnn.js';
import type { ProviderSettings } from '../src/model/providers.js';
import { ffmpegBinary } from '../src/source/ffmpeg-binary.js';
import { assets, needsAssets } from './helpers/assets.js';

const ffmpegPath = () => ffmpegBinary().path;

const runtime: ProviderSettings = { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '' }, threads: 1 };
const classes = ['person', 'car', 'bicycle'];

describe('teacher boxes', () => {
  const settings = { threshold: 0.5, ignoreBelow: 0.25, classes };
  it('a sure box is a positive, an unsure one an ignore region, a faint one nothing', () => {
    const box = [1, 2, 30, 40] as const;
    expect(teacherBox({ label: 'person', score: 0.8, box }, settings)).toEqual({ label: 'person', box, score: 0.8 });
    expect(teacherBox({ label: 'person', score: 0.3, box }, settings)).toEqual({ label: 'person', box, score: 0.3, ignore: true });
    expect(teacherBox({ label: 'person', score: 0.2, box }, settings)).toBeUndefined();
  });
  it('a truck is an ignored car, however sure; a class the student cannot confuse is dropped', () => {
    const box = [1, 2, 30, 40] as const;
    expect(teacherBox({ label: 'truck', score: 0.9, box }, settings)).toEqual({ label: 'car', box, score: 0.9, ignore: true, teacherLabel: 'truck' });
    expect(teacherBox({ label: 'motorcycle', score: 0.9, box }, settings)).toMatchObject({ label: 'bicycle', ignore: true });
    expect(teacherBox({ label: 'dog', score: 0.9, box }, settings)).toBeUndefined();
  });
});

/** A dark frame with one bright rectangle, and its box. */
function rectangleFrame(): StoredFrame {
  const width = 320;
  const height = 240;
  const pixels = new Uint8Array(width * height * 3).fill(20);
  const box: [number, number, number, number] = [100, 60, 180, 200];
  for (let y = box[1]; y < box[3]; y++) for (let x = box[0]; x < box[2]; x++) pixels.fill(240, (y * width + x) * 3, (y * width + x) * 3 + 3);
  return { pixels, width, height, boxes: [{ classId: 0, box, ignore: false }] };
}

/** The bounding box of pixels brighter than 128 in the first channel. */
function brightBounds(pixels: Uint8Array, width: number, height: number): [number, number, number, number] | undefined {
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    if (pixels[(y * width + x) * 3]! > 128) {
      x1 = Math.min(x1, x); y1 = Math.min(y1, y); x2 = Math.max(x2, x + 1); y2 = Math.max(y2, y + 1);
    }
  }
  return x1 === Infinity ? undefined : [x1, y1, x2, y2];
}

describe('augmentation', () => {
  const geometryOnly = { ...defaultAugment, brightness: 0, contrast: 0, saturation: 0, gain: 0, blurShare: 0, noiseShare: 0, rotateShare: 0 };
  it('boxes follow the pixels through zoom, shift and mirror', () => {
    const random = seededRandom(5);
    let checked = 0;
    for (let i = 0; i < 40; i++) {
      const s = augment(rectangleFrame(), 160, 120, random, geometryOnly);
      const bright = brightBounds(s.pixels, 160, 120);
      const b = s.boxes[0];
      if (!bright || !b || b.ignore) continue;
      for (let k = 0; k < 4; k++) expect(Math.abs(b.box[k]! - bright[k]!)).toBeLessThanOrEqual(1.5);
      checked++;
    }
    expect(checked).toBeGreaterThan(20);
  });
  it('a box mostly cut off by the crop is an ignore region, and rotation keeps the box around the object', () => {
    const random = seededRandom(9);
    let cut = 0;
    for (let i = 0; i < 60; i++) {
      const s = augment(rectangleFrame(), 160, 120, random, { ...geometryOnly, zoom: [2.5, 3], rotateShare: 1 });
      const bright = brightBounds(s.pixels, 160, 120);
      const b = s.boxes[0];
      if (!b) continue;
      if (b.ignore) cut++;
      else if (bright) {
        // The rotated rectangle's corners stay inside its box (the box may be a little loose).
        expect(bright[0]).toBeGreaterThanOrEqual(b.box[0] - 1.5);
        expect(bright[2]).toBeLessThanOrEqual(b.box[2] + 1.5);
      }
    }
    expect(cut).toBeGreaterThan(0);
  });
  it('is deterministic for a seed and keeps pixel values in range', () => {
    const a = augment(rectangleFrame(), 160, 120, seededRandom(3));
    const b = augment(rectangleFrame(), 160, 120, seededRandom(3));
    expect(Buffer.from(a.pixels).equals(Buffer.from(b.pixels))).toBe(true);
    expect(a.pixels.length).toBe(160 * 120 * 3);
  });
});

describe('mosaics', () => {
  const quarter = (value: number, box: [number, number, number, number]) => ({ pixels: new Uint8Array(4 * 3 * 3).fill(value), boxes: [{ classId: value % 3, box, ignore: false }] });

  it('puts four half-size samples in a 2x2 grid, each box moved with its quarter', () => {
    const m = mosaic([quarter(10, [0, 0, 2, 2]), quarter(20, [1, 1, 3, 2]), quarter(30, [0, 1, 4, 3]), quarter(40, [2, 0, 4, 3])], 8, 6);
    const at = (x: number, y: number) => m.pixels[(y * 8 + x) * 3]!;
    expect([at(0, 0), at(3, 2), at(4, 0), at(7, 2), at(0, 3), at(3, 5), at(4, 3), at(7, 5)]).toEqual([10, 10, 20, 20, 30, 30, 40, 40]);
    expect(m.boxes.map((b) => b.box)).toEqual([[0, 0, 2, 2], [5, 1, 7, 2], [0, 4, 4, 6], [6, 3, 8, 6]]);
    expect(() => mosaic([quarter(1, [0, 0, 1, 1])], 8, 6)).toThrow(/needs n x n samples/);
    expect(() => mosaic([10, 20, 30, 40].map((v) => ({ ...quarter(v, [0, 0, 1, 1]), pixels: new Uint8Array(3 * 3 * 3) })), 8, 6)).toThrow(/cell 0 is 4x3/);
  });

  it('a 3x3 grid whose cells do not divide the frame: edges at rounded thirds, every pixel covered', () => {
    expect(gridCells(3, 8, 6).map((c) => [c.x, c.y, c.width, c.height])).toEqual([
      [0, 0, 3, 2], [3, 0, 2, 2], [5, 0, 3, 2],
      [0, 2, 3, 2], [3, 2, 2, 2], [5, 2, 3, 2],
      [0, 4, 3, 2], [3, 4, 2, 2], [5, 4, 3, 2],
    ]);
    const cells = gridCells(3, 8, 6).map((c, i) => ({ pixels: new Uint8Array(c.width * c.height * 3).fill(i + 1), boxes: [{ classId: 0, box: [0, 0, 1, 1] as [number, number, number, number], ignore: false }] }));
    const m = mosaic(cells, 8, 6);
    expect([...m.pixels].every((v) => v > 0)).toBe(true);
    expect(m.pixels[(5 * 8 + 7) * 3]).toBe(9);
    expect(m.boxes[8]!.box).toEqual([5, 4, 6, 5]);
  });

  it('mosaic grids drawn from a list: 4x4 mosaics hold objects at a quarter of their size', () => {
    const frame: StoredFrame = { pixels: new Uint8Array(64 * 48 * 3).fill(90), width: 64, height: 48, boxes: [{ classId: 0, box: [16, 8, 48, 40], ignore: false }] };
    const spec = { ...defaultSpec, inputWidth: 64, inputHeight: 48 };
    const samples = new RealBatches([{ name: 'c', frames: [frame] }], 5, { mosaicShare: 1, mosaicGrids: [2, 4] }).take(spec, 30);
    const counts = new Set(samples.map((s) => s.boxes.length));
    // A box is kept (or kept as ignore) per cell, so a 2x2 holds at most 4 and a 4x4 more than 4.
    expect(samples.some((s) => s.boxes.length > 4)).toBe(true);
    expect(samples.some((s) => s.boxes.length <= 4)).toBe(true);
    const big = samples.filter((s) => s.boxes.length > 4).flatMap((s) => s.boxes.map((b) => b.box[3] - b.box[1]));
    // The box is 2/3 of the frame's height: 32 input rows whole, about 8 in a 4x4 cell (zoom aside).
    expect(Math.max(...big)).toBeLessThan(16);
    expect(counts.size).toBeGreaterThan(1);
    expect(() => new RealBatches([{ name: 'c', frames: [frame] }], 5, { mosaicGrids: [1] })).toThrow(/at least 2/);
  });

  it('a share of the real samples are mosaics, their objects at half the size', () => {
    const frame: StoredFrame = { pixels: new Uint8Array(64 * 48 * 3).fill(90), width: 64, height: 48, boxes: [{ classId: 0, box: [16, 8, 48, 40], ignore: false }] };
    const clip = { name: 'c', frames: [frame] };
    const spec = { ...defaultSpec, inputWidth: 32, inputHeight: 24 };
    const plain = new RealBatches([clip], 3).take(spec, 40);
    const mixed = new RealBatches([clip], 3, { mosaicShare: 0.5 }).take(spec, 40);
    const mosaics = mixed.filter((s) => s.boxes.length >= 4).length;
    expect(plain.every((s) => s.boxes.length <= 1)).toBe(true);
    expect(mosaics).toBeGreaterThan(10);
    expect(mosaics).toBeLessThan(30);
    const height = (ss: typeof plain) => ss.flatMap((s) => s.boxes.map((b) => b.box[3] - b.box[1])).reduce((a, b) => a + b, 0) / ss.flatMap((s) => s.boxes).length;
    expect(height(mixed.filter((s) => s.boxes.length >= 4))).toBeLessThan(0.75 * height(plain));
  });

  it('a zoom range below 1 shows the frame smaller, its objects with it', () => {
    const frame: StoredFrame = { pixels: new Uint8Array(64 * 48 * 3).fill(90), width: 64, height: 48, boxes: [{ classId: 0, box: [16, 8, 48, 40], ignore: false }] };
    const spec = { ...defaultSpec, inputWidth: 32, inputHeight: 24 };
    const heights = (zoom: [number, number]) => new RealBatches([{ name: 'c', frames: [frame] }], 3, { zoom }).take(spec, 20).flatMap((s) => s.boxes.map((b) => b.box[3] - b.box[1]));
    // The box is 2/3 of the frame's height: 16 of 24 input rows at zoom 1, 8 at zoom 0.5 (rotation aside).
    for (const h of heights([1, 1])) expect(h).toBeGreaterThan(14);
    for (const h of heights([0.5, 0.5])) expect(h).toBeLessThan(10);
  });

  it('refuses mosaic grids without a mosaic share, or grids that are not n >= 2', async () => {
    await expect(realRecipe([], 0.5, classes, { cacheDir: '/nonexistent', mosaicGrids: [2, 3] })).rejects.toThrow(/--mosaic-grid 2,3: needs --mosaic/);
    await expect(realRecipe([], 0.5, classes, { cacheDir: '/nonexistent', mosaicShare: 0.5, mosaicGrids: [1, 3] })).rejects.toThrow(/--mosaic-grid 1,3: each grid/);
  });

  it('refuses a zoom range that is not LO,HI with 0 < LO <= HI <= 4', async () => {
    await expect(realRecipe([], 0.5, classes, { cacheDir: '/nonexistent', zoom: [1.5, 1] })).rejects.toThrow(/--zoom 1.5,1/);
  });
});

describe('captions', () => {
  const grey = (w: number, h: number) => new Uint8Array(w * h * 3).fill(120);

  it('paints bright or dark strips of glyphs, adds no box, and ignores a box it mostly covers', () => {
    const [w, h] = [64, 48];
    let changedAll = 0;
    let ignored = 0;
    for (let seed = 1; seed <= 40; seed++) {
      // A box the size of the whole picture is never mostly covered; a thin one along the top often is.
      const sample = { pixels: grey(w, h), boxes: [{ classId: 1, box: [0, 0, 64, 48] as [number, number, number, number], ignore: false }, { classId: 1, box: [0, 0, 64, 4] as [number, number, number, number], ignore: false }] };
      const out = withCaptions(sample, w, h, seededRandom(seed));
      expect(out.boxes).toHaveLength(2);
      expect(out.boxes[0]!.ignore).toBe(false);
      if (out.boxes[1]!.ignore) ignored++;
      const changed = out.pixels.reduce((n, v, i) => n + (v !== sample.pixels[i] ? 1 : 0), 0);
      expect(changed).toBeGreaterThan(0);
      expect(changed).toBeLessThan(out.pixels.length / 2);
      changedAll += changed;
      expect(sample.pixels.every((v) => v === 120)).toBe(true); // the input is left as it was
    }
    expect(changedAll).toBeGreaterThan(0);
    expect(ignored).toBeGreaterThan(2);
    expect(ignored).toBeLessThan(38);
  });

  it('is deterministic for a seed, and a share of the real samples carry captions', () => {
    const a = withCaptions({ pixels: grey(32, 24), boxes: [] }, 32, 24, seededRandom(5));
    const b = withCaptions({ pixels: grey(32, 24), boxes: [] }, 32, 24, seededRandom(5));
    expect(Buffer.from(a.pixels).equals(Buffer.from(b.pixels))).toBe(true);
    // A flat frame: a sample with a caption is the only kind whose pixels are not all one value.
    const frame: StoredFrame = { pixels: new Uint8Array(64 * 48 * 3).fill(90), width: 64, height: 48, boxes: [] };
    const spec = { ...defaultSpec, inputWidth: 32, inputHeight: 24 };
    const plain = new RealBatches([{ name: 'c', frames: [frame] }], 3).take(spec, 40);
    const captioned = new RealBatches([{ name: 'c', frames: [frame] }], 3, { captionShare: 0.5 }).take(spec, 40);
    const hasMarks = (p: Uint8Array) => p.some((v) => v <= 20 || v >= 230);
    expect(plain.filter((s) => hasMarks(s.pixels)).length).toBe(0);
    const n = captioned.filter((s) => hasMarks(s.pixels)).length;
    expect(n).toBeGreaterThan(10);
    expect(n).toBeLessThan(30);
  });
});

describe.skipIf(needsAssets)('real clips', () => {
  let dir: string;
  let clip: string;
  const settings: TeacherLabelSettings = { teacher: 'yolox-nano', teacherSize: 320, threshold: 0.5, ignoreBelow: 0.25, nmsIou: 0.45, classes };
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'beats-real-'));
    // The first 60 frames of the highway clip, cut without re-encoding.
    clip = path.join(dir, 'highway.avi');
    execFileSync(ffmpegPath(), ['-v', 'error', '-i', assets.highway, '-frames:v', '60', '-c', 'copy', clip]);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('labels a video once, then reads it from the cache by content', async () => {
    const cacheDir = path.join(dir, 'cache');
    let labelled = 0;
    const first = await teacherLabels(clip, settings, { runtime, cacheDir, onFrame: () => labelled++ });
    expect(labelled).toBe(first.frames.length);
    expect(first.frames.length).toBeGreaterThan(50);
    const boxes = first.frames.flatMap((f) => f.boxes);
    expect(boxes.some((b) => b.label === 'car' && !b.ignore)).toBe(true);
    expect(boxes.every((b) => b.box[0] >= 0 && b.box[2] <= 320 && b.box[1] >= 0 && b.box[3] <= 240)).toBe(true);
    expect(readdirSync(cacheDir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    let cached: string | undefined;
    labelled = 0;
    const again = await teacherLabels(clip, settings, { runtime, cacheDir, onFrame: () => labelled++, onCached: (f) => (cached = f) });
    expect(labelled).toBe(0);
    expect(cached !== undefined && existsSync(cached)).toBe(true);
    expect(again.frames).toEqual(first.frames);
    // A cache entry that is not one (a disk full, an edit) is labelled again and replaced, not read as labels.
    await writeFile(cached!, '{"sha256": "');
    labelled = 0;
    const relabelled = await teacherLabels(clip, settings, { runtime, cacheDir, onFrame: () => labelled++ });
    expect(labelled).toBe(first.frames.length);
    expect(relabelled.frames).toEqual(first.frames);
  }, 120_000);

  it('scores the teacher against its own labels at ~100 % through one decode, beside a student', async () => {
    const labels = await teacherLabels(clip, settings, { runtime, cacheDir: path.join(dir, 'cache') });
    const truth = toTruthFrames(labels).slice(0, 40);
    const scores = await compareModels(clip, truth, [{ ref: 'yolox-nano', inputSize: 320 }, { ref: 'beats-s' }], { threshold: 0.5, nmsIou: 0.45, runtime, classes, maxFrames: 40 });
    expect(scores.map((s) => s.name)).toEqual(['yolox-nano@320', 'beats-s']);
    expect(scores[0]!.evaluation.frames).toBe(40);
    expect(scores[0]!.evaluation.map50).toBeGreaterThan(0.95);
    for (const s of scores) expect(s.fps).toBeGreaterThan(0);
    // Only the truth's classes are scored: no truck class from the teacher's 80.
    expect(Object.keys(scores[0]!.evaluation.perClass).every((c) => classes.includes(c))).toBe(true);
  }, 120_000);

  it('a recipe refuses a clip whose content changed, and batches mix real and synthetic in its share', async () => {
    const cacheDir = path.join(dir, 'cache');
    const recipe = await realRecipe([clip], 0.5, classes, { cacheDir });
    expect(recipe.clips[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    // Labelled at the recipe's teacher size (640): a new cache entry; then the frames load.
    const real = await loadRealData({ ...recipe, maxFramesPerClip: 20 }, defaultSpec, 1, cacheDir);
    const synthetic = { take: (_spec: unknown, n: number) => Array.from({ length: n }, () => ({ pixels: new Uint8Array(160 * 120 * 3), boxes: [] })) };
    const batch = mixedBatch(defaultSpec, 8, synthetic, real, 0.5);
    expect(batch).toHaveLength(8);
    expect(batch.slice(0, 4).some((s) => s.boxes.length > 0)).toBe(true);
    expect(batch.slice(4).every((s) => s.boxes.length === 0)).toBe(true);
    await writeFile(clip, Buffer.from('not the same video'));
    await expect(loadRealData(recipe, defaultSpec, 1, cacheDir)).rejects.toThrow(/sha256 .* is not the recipe's/);
  }, 180_000);
});
