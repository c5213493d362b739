/**
 * On-screen-display captions painted onto training samples: the camera name, the date and time,
 * lane counters that CCTV cameras burn into their picture. They are dark boxes of bright glyphs or
 * bare glyphs, mostly along the top and bottom edges; a model that never saw one calls the boxes
 * cars (on the held-out highway clip, its five most confident detections of a frame were captions).
 * A caption is background: it adds no box, and a box it mostly covers becomes an ignore region.
 *
 * The glyphs are random 3x5 dot patterns, not a font: what the model needs to learn is "rows of
 * small high-contrast marks on a flat strip", not to read them.
 */
import type { TrainingSample } from './beats-train.js';
import type { Random } from './random.js';

/** A box with more than this share of its area under captions is an ignore region. */
const MAX_COVERED = 0.3;

interface Caption {
  x: number;
  y: number;
  /** Pixels per glyph dot. */
  dot: number;
  glyphs: number;
  /** RGB of the glyphs and of the strip behind them (absent: bare glyphs on the picture). */
  ink: [number, number, number];
  strip?: [number, number, number];
}

const INKS: Array<[number, number, number]> = [
  [240, 240, 240],
  [250, 240, 60],
  [20, 20, 20],
];

function drawCaption(width: number, height: number, random: Random): Caption {
  const dot = 1 + Math.floor(random() * 2);
  const glyphs = 4 + Math.floor(random() * 17);
  const w = glyphs * 4 * dot + 2 * dot;
  const h = 7 * dot;
  const edge = random() < 0.7;
  const y = edge ? (random() < 0.5 ? Math.floor(random() * height * 0.12) : height - h - Math.floor(random() * height * 0.12)) : Math.floor(random() * (height - h));
  const x = Math.floor(random() * Math.max(1, width - w));
  const ink = INKS[Math.floor(random() * INKS.length)]!;
  const strip: [number, number, number] | undefined = random() < 0.6 ? (ink[0] > 128 ? [10, 10, 10] : [230, 230, 230]) : undefined;
  return { x, y: Math.max(0, y), dot, glyphs, ink, strip };
}

function paint(pixels: Uint8Array, width: number, height: number, c: Caption, random: Random): [number, number, number, number] {
  const w = Math.min(width - c.x, c.glyphs * 4 * c.dot + 2 * c.dot);
  const h = Math.min(height - c.y, 7 * c.dot);
  const set = (x: number, y: number, rgb: readonly number[]) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const i = (y * width + x) * 3;
    pixels[i] = rgb[0]!;
    pixels[i + 1] = rgb[1]!;
    pixels[i + 2] = rgb[2]!;
  };
  if (c.strip) for (let y = c.y; y < c.y + h; y++) for (let x = c.x; x < c.x + w; x++) set(x, y, c.strip);
  for (let g = 0; g < c.glyphs; g++) {
    if (random() < 0.12) continue; // a space
    for (let row = 0; row < 5; row++) {
      for (let col = 0; col < 3; col++) {
        if (random() < 0.45) continue;
        const x0 = c.x + c.dot + (g * 4 + col) * c.dot;
        const y0 = c.y + c.dot + row * c.dot;
        for (let dy = 0; dy < c.dot; dy++) for (let dx = 0; dx < c.dot; dx++) set(x0 + dx, y0 + dy, c.ink);
      }
    }
  }
  return [c.x, c.y, c.x + w, c.y + h];
}

function overlap(a: readonly number[], b: readonly number[]): number {
  return Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!)) * Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
}

/** The sample with one to three captions painted on (a copy); boxes mostly under them are ignored. */
export function withCaptions(sample: TrainingSample, width: number, height: number, random: Random): TrainingSample {
  const pixels = Uint8Array.from(sample.pixels);
  const painted: Array<[number, number, number, number]> = [];
  const count = 1 + Math.floor(random() * 3);
  for (let i = 0; i < count; i++) painted.push(paint(pixels, width, height, drawCaption(width, height, random), random));
  const boxes = sample.boxes.map((b) => {
    const area = (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]);
    const covered = painted.reduce((sum, p) => sum + overlap(b.box, p), 0);
    return area > 0 && covered / area > MAX_COVERED ? { ...b, ignore: true } : b;
  });
  return { pixels, boxes };
}
