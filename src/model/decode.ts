import { ModelError } from '../errors.js';
import type { ModelCard } from './card.js';

/** A candidate box in model-input pixels, before NMS. */
export interface Candidate {
  box: [number, number, number, number];
  score: number;
  classId: number;
}

export interface DecodeOptions {
  threshold: number;
  /** Classes to keep; undefined keeps all. */
  allowed?: ReadonlySet<number>;
}

export interface RawOutput {
  data: Float32Array;
  dims: readonly number[];
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/**
 * YOLOX: [1, cells, 5 + classes] with raw x, y, w, h per cell (offsets on a grid, log sizes), then
 * objectness and class scores. Cells run level by level (stride 8, 16, 32), row-major inside a level.
 */
export function decodeYolox(out: RawOutput, inputWidth: number, inputHeight: number, strides: readonly number[], sigmoidApplied: boolean, opts: DecodeOptions): Candidate[] {
  const [, cells, width] = out.dims as [number, number, number];
  const classes = width - 5;
  const d = out.data;
  const act = sigmoidApplied ? (v: number) => v : sigmoid;
  const found: Candidate[] = [];
  let cell = 0;
  for (const stride of strides) {
    const gw = Math.floor(inputWidth / stride);
    const gh = Math.floor(inputHeight / stride);
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++, cell++) {
        const o = cell * width;
        const objectness = act(d[o + 4]!);
        if (objectness < opts.threshold) continue;
        let best = -1;
        let bestScore = 0;
        for (let c = 0; c < classes; c++) {
          if (opts.allowed && !opts.allowed.has(c)) continue;
          const s = act(d[o + 5 + c]!);
          if (s > bestScore) {
            bestScore = s;
            best = c;
          }
        }
        const score = objectness * bestScore;
        if (best < 0 || score < opts.threshold) continue;
        const cx = (d[o]! + gx) * stride;
        const cy = (d[o + 1]! + gy) * stride;
        const w = Math.exp(d[o + 2]!) * stride;
        const h = Math.exp(d[o + 3]!) * stride;
        found.push({ box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], score, classId: best });
      }
    }
  }
  if (cell !== cells) throw new Error(`YOLOX output has ${cells} cells, the grid of strides ${strides.join('/')} at ${inputWidth}x${inputHeight} has ${cell}`);
  return found;
}

/** YOLOv8 / YOLO11: [1, 4 + classes, anchors], cx cy w h in input pixels, class scores in 0..1. */
export function decodeYolov8(out: RawOutput, opts: DecodeOptions): Candidate[] {
  const [, rows, anchors] = out.dims as [number, number, number];
  const classes = rows - 4;
  const d = out.data;
  const found: Candidate[] = [];
  for (let a = 0; a < anchors; a++) {
    let best = -1;
    let bestScore = opts.threshold;
    for (let c = 0; c < classes; c++) {
      if (opts.allowed && !opts.allowed.has(c)) continue;
      const s = d[(4 + c) * anchors + a]!;
      if (s >= bestScore) {
        bestScore = s;
        best = c;
      }
    }
    if (best < 0) continue;
    const cx = d[a]!;
    const cy = d[anchors + a]!;
    const w = d[2 * anchors + a]!;
    const h = d[3 * anchors + a]!;
    found.push({ box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], score: bestScore, classId: best });
  }
  return found;
}

/** Beats CNN: [1, cells, 4 + classes], x1 y1 x2 y2 in input pixels, class scores in 0..1. */
export function decodeBeats(out: RawOutput, opts: DecodeOptions): Candidate[] {
  const [, cells, width] = out.dims as [number, number, number];
  const classes = width - 4;
  const d = out.data;
  const found: Candidate[] = [];
  for (let i = 0; i < cells; i++) {
    const o = i * width;
    let best = -1;
    let bestScore = opts.threshold;
    for (let c = 0; c < classes; c++) {
      if (opts.allowed && !opts.allowed.has(c)) continue;
      const s = d[o + 4 + c]!;
      if (s >= bestScore) {
        bestScore = s;
        best = c;
      }
    }
    if (best >= 0) found.push({ box: [d[o]!, d[o + 1]!, d[o + 2]!, d[o + 3]!], score: bestScore, classId: best });
  }
  return found;
}

export function decodeOutput(card: ModelCard, out: RawOutput, inputWidth: number, inputHeight: number, opts: DecodeOptions): Candidate[] {
  const decoder = card.decoder;
  // A card whose class list does not match the model would label every box wrongly, silently.
  const classes = out.dims.length !== 3 ? undefined : decoder.kind === 'yolox' ? out.dims[2]! - 5 : decoder.kind === 'beats' ? out.dims[2]! - 4 : out.dims[1]! - 4;
  if (classes !== card.classes.length) {
    const shape = `[${out.dims.join(', ')}]`;
    const want = decoder.kind === 'yolox' ? `[1, cells, 5 + ${card.classes.length}]` : decoder.kind === 'beats' ? `[1, cells, 4 + ${card.classes.length}]` : `[1, 4 + ${card.classes.length}, anchors]`;
    throw new ModelError(card.name, classes === undefined ? `output ${card.output} is ${shape}, the ${decoder.kind} decoder expects ${want}` : `output ${card.output} is ${shape}: ${classes} classes, but its card lists ${card.classes.length}`);
  }
  switch (decoder.kind) {
    case 'yolox':
      return decodeYolox(out, inputWidth, inputHeight, decoder.strides, decoder.sigmoid_applied, opts);
    case 'yolov8':
      return decodeYolov8(out, opts);
    case 'beats':
      return decodeBeats(out, opts);
  }
}

export function iou(a: readonly number[], b: readonly number[]): number {
  const ix = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
  const iy = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const inter = ix * iy;
  const union = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter;
  return union > 0 ? inter / union : 0;
}

/** Greedy non-maximum suppression within each class; keeps at most `limit` boxes, best first. */
export function nmsPerClass(candidates: Candidate[], iouThreshold: number, limit: number): Candidate[] {
  const sorted = [...candidates].sort((a, b) => b.score - a.score);
  const kept: Candidate[] = [];
  for (const c of sorted) {
    if (kept.length >= limit) break;
    if (kept.every((k) => k.classId !== c.classId || iou(k.box, c.box) <= iouThreshold)) kept.push(c);
  }
  return kept;
}
