import { describe, expect, it } from 'vitest';
import type { AcceptedFeedback } from '../src/adapt/feedback.js';
import { SupervisionRing, verdictTargets } from '../src/adapt/supervision.js';
import { letterbox } from '../src/source/geometry.js';

// A 320x240 source letterboxed into a 160x160 input (scale 0.5, 20 px of padding above and below), one head
// level of 20x20 cells (stride 8) and D = 3 features: feature d of cell (gx, gy) = 1000 * d + gy * 20 + gx.
const W = 20;
const H = 20;
const D = 3;
const geometry = letterbox(320, 240, 160, 160, 'center');
function features(seed = 0) {
  const data = new Float32Array(D * H * W);
  for (let d = 0; d < D; d++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[(d * H + y) * W + x] = 1000 * d + y * W + x + seed;
  return { head: { serial: 0, label: 'base' }, levels: [{ level: 0, stride: 8, features: 'f', dims: [1, D, H, W] as [number, number, number, number], data }] };
}
const frame = (index: number) => ({ index, streamTime: index / 10, width: 320, height: 240, geometry });
/** The cell of a source point: input = src * 0.5 + (0, 20); cell = input / 8. */
const cellOf = (x: number, y: number) => Math.floor((y * 0.5 + 20) / 8) * W + Math.floor((x * 0.5) / 8);

function verdict(over: Partial<AcceptedFeedback>): AcceptedFeedback {
  return { camera: 'c', verdict: 'false_positive', frame: { index: 0, ts: 0, width: 320, height: 240 }, trackFrames: [], origin: { via: 'mqtt' }, receivedAt: 0, ...over };
}

describe('supervision ring', () => {
  it('targets per verdict', () => {
    const det = { label: 'car', classId: 1, score: 0.9, box: [0, 0, 10, 10] as [number, number, number, number] };
    expect(verdictTargets({ verdict: 'correct', detection: det }, 3)).toEqual([
      { classId: 0, target: 0 },
      { classId: 1, target: 1 },
      { classId: 2, target: 0 },
    ]);
    expect(verdictTargets({ verdict: 'false_positive', detection: det }, 3)).toEqual([{ classId: 1, target: 0 }]);
    expect(verdictTargets({ verdict: 'wrong_class', detection: det, label: { name: 'person', classId: 0 } }, 3)).toEqual([
      { classId: 1, target: 0 },
      { classId: 0, target: 1 },
    ]);
    expect(verdictTargets({ verdict: 'missed', label: { name: 'bicycle', classId: 2 } }, 3)).toEqual([{ classId: 2, target: 1 }]);
  });

  it('a verdict labels the cell under the box centre, in source-frame positions, and every buffered frame of its track both ways', () => {
    const ring = new SupervisionRing({ classes: 3, frames: 5, backgroundCells: 0, fullMapBytes: 0 });
    // Track 7 moves right 16 px a frame; frame 3 carries the verdict.
    const box = (i: number) => [100 + 16 * i, 100, 140 + 16 * i, 140] as [number, number, number, number];
    for (let i = 0; i < 6; i++) {
      const out = ring.observe({ frame: frame(i), detections: [{ box: box(i) }], tracks: [{ id: 7, box: box(i), confirmed: true }], features: features() });
      expect(out).toEqual([]);
    }
    // Frame 0 fell out of the ring (5 frames).
    const det = { label: 'car', classId: 1, score: 0.9, box: box(3), trackId: 7 };
    const cells = ring.verdictCells(verdict({ verdict: 'false_positive', frame: { index: 3, ts: 0, width: 320, height: 240 }, detection: det, trackId: 7 }));
    expect(cells).toHaveLength(5);
    expect(cells.every((c) => c.classId === 1 && c.target === 0 && c.level === 0)).toBe(true);
    const cellIds = cells.map((c) => c.features[0]!).sort((a, b) => a - b);
    expect(cellIds).toEqual([1, 2, 3, 4, 5].map((i) => cellOf(120 + 16 * i, 120)));
    expect(cells[0]!.features[2]).toBe(2000 + cellOf(120 + 16 * 3, 120));
    // Positions are in the source frame (0..1), not the letterboxed input: y = 120 / 240 = 0.5 at the centre row.
    for (const c of cells) {
      expect(c.y).toBeGreaterThan(0.45);
      expect(c.y).toBeLessThan(0.55);
    }
    // Frames still to come: the track's label goes on while it lives...
    const later = ring.observe({ frame: frame(6), detections: [], tracks: [{ id: 7, box: box(6), confirmed: true }], features: features() });
    expect(later).toHaveLength(1);
    expect(later[0]).toMatchObject({ classId: 1, target: 0 });
    expect(later[0]!.features[0]).toBe(cellOf(120 + 16 * 6, 120));
    // ...and ends with it.
    expect(ring.observe({ frame: frame(7), detections: [], tracks: [], features: features() })).toEqual([]);
    expect(ring.labelledTracks).toBe(0);
    expect(ring.observe({ frame: frame(8), detections: [], tracks: [{ id: 7, box: box(8), confirmed: true }], features: features() })).toEqual([]);
  });

  it('anchors: every Nth frame, confident undisputed confirmed tracks give guard-only positives and background negatives', () => {
    const ring = new SupervisionRing({ classes: 3, frames: 10, backgroundCells: 2, anchors: { threshold: 0.5, every: 3 } });
    const box = [100, 100, 140, 140] as const;
    const observe = (i: number, score: number, confirmed = true) =>
      ring.observe({ frame: frame(i), detections: [{ box, score, classId: 2 }], tracks: [{ id: 4, box, confirmed, classId: 2, hits: 10, topScore: 0.9, detection: 0 }], features: features() });
    const first = observe(0, 0.8);
    expect(first.every((c) => c.anchor === true && c.classId === 2)).toBe(true);
    expect(first.filter((c) => c.target === 1).map((c) => c.features[0])).toEqual([cellOf(120, 120)]);
    expect(first.filter((c) => c.target === 0)).toHaveLength(2);
    // Frames 1 and 2 give none; frame 3 does again, but not for a low score nor an unconfirmed track.
    expect(observe(1, 0.8)).toEqual([]);
    expect(observe(2, 0.8)).toEqual([]);
    expect(observe(3, 0.4)).toEqual([]);
    expect(observe(6, 0.8, false)).toEqual([]);
    // An operator's verdict on the track takes it out of the anchors (its label is what travels).
    const det = { label: 'bicycle', classId: 2, score: 0.8, box: [...box] as [number, number, number, number], trackId: 4 };
    ring.verdictCells(verdict({ verdict: 'false_positive', frame: { index: 6, ts: 0, width: 320, height: 240 }, detection: det, trackId: 4 }));
    const after = observe(9, 0.8);
    expect(after.some((c) => c.anchor)).toBe(false);
    expect(after.every((c) => c.target === 0 && c.classId === 2)).toBe(true);
  });

  it("missed: y = 1 at the given box while the frame's whole map is kept, nothing once only cells are", () => {
    const ring = new SupervisionRing({ classes: 3, frames: 10, backgroundCells: 0, fullMapBytes: 2 * D * H * W * 4 });
    for (let i = 0; i < 4; i++) ring.observe({ frame: frame(i), detections: [], tracks: [], features: features() });
    const missed = (index: number) => verdict({ verdict: 'missed', frame: { index, ts: 0, width: 320, height: 240 }, label: { name: 'person', classId: 0 }, box: [10, 10, 30, 50] });
    const cells = ring.verdictCells(missed(3));
    expect(cells).toHaveLength(1);
    expect(cells[0]).toMatchObject({ classId: 0, target: 1 });
    expect(cells[0]!.features[0]).toBe(cellOf(20, 30));
    // Frame 0's map was released (budget: two maps), and no detection kept that cell.
    expect(ring.verdictCells(missed(0))).toEqual([]);
    // A frame no longer buffered at all.
    expect(ring.verdictCells(missed(99))).toEqual([]);
  });

  it('positive verdicts add background negatives away from every box', () => {
    const ring = new SupervisionRing({ classes: 3, frames: 10, backgroundCells: 4, fullMapBytes: 0, seed: 3 });
    const box = [100, 100, 140, 140] as [number, number, number, number];
    ring.observe({ frame: frame(0), detections: [{ box }], tracks: [], features: features() });
    const det = { label: 'person', classId: 0, score: 0.9, box };
    const cells = ring.verdictCells(verdict({ verdict: 'correct', detection: det }));
    expect(cells.filter((c) => c.features[0] === cellOf(120, 120))).toHaveLength(3);
    const background = cells.filter((c) => c.features[0] !== cellOf(120, 120));
    expect(background.length).toBeGreaterThan(0);
    expect(background.every((c) => c.classId === 0 && c.target === 0)).toBe(true);
    expect(background.every((c) => c.features[0] !== cellOf(120, 120))).toBe(true);
  });
});
