/**
 * Augmentations for real camera footage, applied to a stored frame (letterboxed at twice the model
 * input) to make one training sample at the model's input size:
 * - geometry: zoom in or out (scale and crop, pad 114 outside the picture as the letterbox pads),
 *   a shift, a small rotation, a mirror; boxes follow (the box around the moved corners), and a box
 *   mostly cut off becomes an ignore region;
 * - colour: brightness, contrast, saturation, per-channel gain (white balance);
 * - optics and sensor: a blur, Gaussian noise.
 * JPEG artefacts are made once, when the frames are stored (src/train/real-clips.ts), since
 * encoding is asynchronous and costs more than the rest together.
 *
 * Everything is drawn from a seeded generator, so a recipe replays the same samples.
 */
import type { TrainingSample } from './beats-train.js';
import type { Random } from './random.js';

export interface StoredFrame {
  /** RGB, interleaved, `width * height * 3`. */
  pixels: Uint8Array;
  width: number;
  height: number;
  /** Boxes in stored pixels. */
  boxes: TrainingSample['boxes'];
}

export interface AugmentRanges {
  /** Zoom: 1 shows the whole frame, above 1 a crop, below 1 the frame smaller inside padding. */
  zoom: [number, number];
  /** Degrees, either way; applied to `rotateShare` of the samples. */
  rotate: number;
  rotateShare: number;
  brightness: number;
  contrast: number;
  saturation: number;
  gain: number;
  blurShare: number;
  noiseShare: number;
  /** Largest noise sigma, in 0..255 levels. */
  noise: number;
  /** A box with less than this share of its area inside the sample is an ignore region. */
  minVisible: number;
}

export const defaultAugment: AugmentRanges = { zoom: [0.7, 1.8], rotate: 3, rotateShare: 0.3, brightness: 0.3, contrast: 0.3, saturation: 0.35, gain: 0.08, blurShare: 0.25, noiseShare: 0.3, noise: 8, minVisible: 0.4 };

const PAD = 114;

interface Affine {
  /** Output pixel (u, v) → stored pixel: x = a*u + b*v + c, y = d*u + e*v + f. */
  a: number;
  b: number;
  c: number;
  d: number;
  e: number;
  f: number;
}

function drawAffine(src: StoredFrame, outW: number, outH: number, r: AugmentRanges, random: Random): Affine {
  const [lo, hi] = r.zoom;
  // Log-uniform, so zooming in and out are equally likely around 1.
  const zoom = Math.exp(Math.log(lo) + random() * (Math.log(hi) - Math.log(lo)));
  const k = src.width / outW / zoom;
  const theta = random() < r.rotateShare ? ((random() * 2 - 1) * r.rotate * Math.PI) / 180 : 0;
  const mirror = random() < 0.5 ? -1 : 1;
  // The stored point at the output's centre: anywhere that keeps the view on the picture.
  const viewW = outW * k;
  const viewH = outH * k;
  const spanX = Math.abs(src.width - viewW) / 2;
  const spanY = Math.abs(src.height - viewH) / 2;
  const cx = src.width / 2 + (random() * 2 - 1) * spanX;
  const cy = src.height / 2 + (random() * 2 - 1) * spanY;
  const cos = Math.cos(theta) * k;
  const sin = Math.sin(theta) * k;
  // x = cx + mirror*(u - outW/2)*cos - (v - outH/2)*sin; y = cy + mirror*(u - outW/2)*sin + (v - outH/2)*cos
  return { a: mirror * cos, b: -sin, c: cx - mirror * cos * (outW / 2) + sin * (outH / 2), d: mirror * sin, e: cos, f: cy - mirror * sin * (outW / 2) - cos * (outH / 2) };
}

function invert(m: Affine): Affine {
  const det = m.a * m.e - m.b * m.d;
  const a = m.e / det;
  const b = -m.b / det;
  const d = -m.d / det;
  const e = m.a / det;
  return { a, b, d, e, c: -(a * m.c + b * m.f), f: -(d * m.c + e * m.f) };
}

/** Adds `weight` times the bilinear sample at (x, y), all three channels, into acc[0..2]; the pad value outside. */
function addSample(src: StoredFrame, x: number, y: number, weight: number, acc: Float64Array): void {
  const x0 = Math.floor(x - 0.5);
  const y0 = Math.floor(y - 0.5);
  const fx = x - 0.5 - x0;
  const fy = y - 0.5 - y0;
  const { width, height, pixels } = src;
  for (let corner = 0; corner < 4; corner++) {
    const xx = x0 + (corner & 1);
    const yy = y0 + (corner >> 1);
    const w = weight * ((corner & 1) === 1 ? fx : 1 - fx) * (corner >> 1 === 1 ? fy : 1 - fy);
    if (xx < 0 || yy < 0 || xx >= width || yy >= height) {
      acc[0]! += PAD * w;
      acc[1]! += PAD * w;
      acc[2]! += PAD * w;
    } else {
      const i = (yy * width + xx) * 3;
      acc[0]! += pixels[i]! * w;
      acc[1]! += pixels[i + 1]! * w;
      acc[2]! += pixels[i + 2]! * w;
    }
  }
}

/** Resamples through `m`, with 2x2 supersampling so a zoom-out by 2 does not alias. */
function warp(src: StoredFrame, outW: number, outH: number, m: Affine): Float32Array {
  const out = new Float32Array(outW * outH * 3);
  const acc = new Float64Array(3);
  for (let v = 0; v < outH; v++) {
    for (let u = 0; u < outW; u++) {
      acc.fill(0);
      for (let sub = 0; sub < 4; sub++) {
        const uu = u + 0.25 + 0.5 * (sub & 1);
        const vv = v + 0.25 + 0.5 * (sub >> 1);
        addSample(src, m.a * uu + m.b * vv + m.c, m.d * uu + m.e * vv + m.f, 0.25, acc);
      }
      const o = (v * outW + u) * 3;
      out[o] = acc[0]!;
      out[o + 1] = acc[1]!;
      out[o + 2] = acc[2]!;
    }
  }
  return out;
}

function moveBoxes(boxes: TrainingSample['boxes'], toOut: Affine, outW: number, outH: number, minVisible: number): TrainingSample['boxes'] {
  const moved: TrainingSample['boxes'] = [];
  for (const b of boxes) {
    const [x1, y1, x2, y2] = b.box;
    const xs: number[] = [];
    const ys: number[] = [];
    for (const [x, y] of [[x1, y1], [x2, y1], [x1, y2], [x2, y2]] as const) {
      xs.push(toOut.a * x + toOut.b * y + toOut.c);
      ys.push(toOut.d * x + toOut.e * y + toOut.f);
    }
    const full = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] as const;
    const clipped: [number, number, number, number] = [Math.max(0, full[0]), Math.max(0, full[1]), Math.min(outW, full[2]), Math.min(outH, full[3])];
    const area = (full[2] - full[0]) * (full[3] - full[1]);
    const inside = Math.max(0, clipped[2] - clipped[0]) * Math.max(0, clipped[3] - clipped[1]);
    if (inside <= 0) continue;
    const tiny = clipped[2] - clipped[0] < 2 || clipped[3] - clipped[1] < 2;
    moved.push({ classId: b.classId, box: clipped, ignore: b.ignore || tiny || inside / area < minVisible });
  }
  return moved;
}

function colour(px: Float32Array, r: AugmentRanges, random: Random): void {
  const signed = () => random() * 2 - 1;
  const brightness = 1 + signed() * r.brightness;
  const contrast = 1 + signed() * r.contrast;
  const saturation = 1 + signed() * r.saturation;
  const gains = [1 + signed() * r.gain, 1 + signed() * r.gain, 1 + signed() * r.gain];
  let mean = 0;
  for (let i = 0; i < px.length; i++) mean += px[i]!;
  mean /= px.length;
  for (let i = 0; i < px.length; i += 3) {
    const grey = 0.299 * px[i]! + 0.587 * px[i + 1]! + 0.114 * px[i + 2]!;
    for (let ch = 0; ch < 3; ch++) {
      let v = grey + (px[i + ch]! - grey) * saturation;
      v = mean + (v - mean) * contrast;
      px[i + ch] = v * brightness * gains[ch]!;
    }
  }
}

function blur(px: Float32Array, w: number, h: number): Float32Array {
  const out = new Float32Array(px.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < 3; ch++) {
        let sum = 0;
        let n = 0;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx;
            const yy = y + dy;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
            const weight = (dx === 0 ? 2 : 1) * (dy === 0 ? 2 : 1);
            sum += px[(yy * w + xx) * 3 + ch]! * weight;
            n += weight;
          }
        }
        out[(y * w + x) * 3 + ch] = sum / n;
      }
    }
  }
  return out;
}

/** Box-Muller standard normal. */
function gaussian(random: Random): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** One augmented sample of `outW` x `outH` from a stored frame. */
export function augment(src: StoredFrame, outW: number, outH: number, random: Random, r: AugmentRanges = defaultAugment): TrainingSample {
  const toSrc = drawAffine(src, outW, outH, r, random);
  let px = warp(src, outW, outH, toSrc);
  colour(px, r, random);
  if (random() < r.blurShare) px = blur(px, outW, outH);
  if (random() < r.noiseShare) {
    const sigma = random() * r.noise;
    for (let i = 0; i < px.length; i++) px[i]! += gaussian(random) * sigma;
  }
  const pixels = new Uint8Array(px.length);
  for (let i = 0; i < px.length; i++) pixels[i] = Math.max(0, Math.min(255, Math.round(px[i]!)));
  return { pixels, boxes: moveBoxes(src.boxes, invert(toSrc), outW, outH, r.minVisible) };
}
