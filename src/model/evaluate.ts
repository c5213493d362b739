import { iou } from './decode.js';

/** Ground truth of one frame, as `beats synth` writes it (one JSON line a frame). */
export interface TruthFrame {
  frame: number;
  boxes: Array<{ label: string; box: readonly [number, number, number, number]; /** matches neither count nor hurt */ ignore?: boolean }>;
}

export interface PredictedFrame {
  frame: number;
  detections: Array<{ label: string; score: number; box: readonly [number, number, number, number] }>;
}

export interface ClassFigures {
  ap50: number;
  precision: number;
  recall: number;
  f1: number;
  truths: number;
  detections: number;
}

export interface Evaluation {
  frames: number;
  /** Mean of the per-class AP@0.5 over classes that have ground truth. */
  map50: number;
  /** At the operating threshold, over all classes. */
  precision: number;
  recall: number;
  f1: number;
  threshold: number;
  /** The threshold (in steps of 0.05) with the best overall F1, and its figures: what to configure. */
  best: { threshold: number; precision: number; recall: number; f1: number };
  perClass: Record<string, ClassFigures>;
}

interface Scored {
  score: number;
  tp: boolean;
}

/**
 * mAP@0.5 (VOC all-point interpolation) per class and overall, and precision, recall and F1 at the
 * operating threshold. Predictions must include low scores (the curve needs them); the threshold
 * only decides the operating point. Each truth box matches at most one detection, the best-scoring
 * one with IoU ≥ 0.5 and the same label; a detection on an `ignore` box counts neither way.
 */
export function evaluate(truth: readonly TruthFrame[], predictions: readonly PredictedFrame[], threshold: number): Evaluation {
  const byFrame = new Map(predictions.map((p) => [p.frame, p]));
  const classes = new Set<string>();
  for (const t of truth) for (const b of t.boxes) if (!b.ignore) classes.add(b.label);
  for (const p of predictions) for (const d of p.detections) classes.add(d.label);

  const scored = new Map<string, Scored[]>();
  const truths = new Map<string, number>();
  for (const t of truth) {
    for (const b of t.boxes) if (!b.ignore) truths.set(b.label, (truths.get(b.label) ?? 0) + 1);
    const dets = [...(byFrame.get(t.frame)?.detections ?? [])].sort((a, b) => b.score - a.score);
    const used = new Set<number>();
    for (const d of dets) {
      let best = -1;
      let bestIou = 0.5;
      let ignoredMatch = false;
      t.boxes.forEach((g, i) => {
        if (g.label !== d.label) return;
        const overlap = iou(g.box, d.box);
        if (overlap < 0.5) return;
        if (g.ignore) {
          ignoredMatch = true;
          return;
        }
        if (!used.has(i) && overlap >= bestIou) {
          best = i;
          bestIou = overlap;
        }
      });
      if (best < 0 && ignoredMatch) continue;
      if (best >= 0) used.add(best);
      const list = scored.get(d.label) ?? [];
      list.push({ score: d.score, tp: best >= 0 });
      scored.set(d.label, list);
    }
  }

  const perClass: Record<string, ClassFigures> = {};
  let tpAll = 0;
  let fpAll = 0;
  let truthAll = 0;
  for (const label of [...classes].sort()) {
    const list = (scored.get(label) ?? []).sort((a, b) => b.score - a.score);
    const n = truths.get(label) ?? 0;
    let tp = 0;
    let fp = 0;
    const recall: number[] = [];
    const precision: number[] = [];
    for (const s of list) {
      if (s.tp) tp++;
      else fp++;
      recall.push(n > 0 ? tp / n : 0);
      precision.push(tp / (tp + fp));
    }
    // All-point interpolation: precision made monotone from the right, area under it.
    let ap = 0;
    for (let i = precision.length - 2; i >= 0; i--) precision[i] = Math.max(precision[i]!, precision[i + 1]!);
    let prevRecall = 0;
    for (let i = 0; i < recall.length; i++) {
      ap += (recall[i]! - prevRecall) * precision[i]!;
      prevRecall = recall[i]!;
    }
    const above = list.filter((s) => s.score >= threshold);
    const tpAt = above.filter((s) => s.tp).length;
    const fpAt = above.length - tpAt;
    const p = above.length ? tpAt / above.length : 0;
    const r = n ? tpAt / n : 0;
    perClass[label] = { ap50: n ? ap : 0, precision: p, recall: r, f1: p + r ? (2 * p * r) / (p + r) : 0, truths: n, detections: above.length };
    tpAll += tpAt;
    fpAll += fpAt;
    truthAll += n;
  }
  const all = [...scored.values()].flat();
  let best = { threshold, precision: 0, recall: 0, f1: 0 };
  for (let t = 0.05; t < 0.96; t += 0.05) {
    const above = all.filter((s) => s.score >= t);
    const tp = above.filter((s) => s.tp).length;
    const p = above.length ? tp / above.length : 0;
    const r = truthAll ? tp / truthAll : 0;
    const f1 = p + r ? (2 * p * r) / (p + r) : 0;
    if (f1 > best.f1) best = { threshold: Math.round(t * 100) / 100, precision: p, recall: r, f1 };
  }
  const withTruth = Object.values(perClass).filter((c) => c.truths > 0);
  const precision = tpAll + fpAll ? tpAll / (tpAll + fpAll) : 0;
  const recall = truthAll ? tpAll / truthAll : 0;
  return {
    frames: truth.length,
    map50: withTruth.length ? withTruth.reduce((s, c) => s + c.ap50, 0) / withTruth.length : 0,
    precision,
    recall,
    f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0,
    threshold,
    best,
    perClass,
  };
}
