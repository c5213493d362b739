import { take } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bce, lossGradient, sigmoid } from '../src/adapt/engine-core.js';
import type { AcceptedFeedback } from '../src/adapt/feedback.js';
import { SupervisionRing, type LabelledBox, type ObservedFrame } from '../src/adapt/supervision.js';
import { KeyframeSchedule, ModelTeacher, agreement, keyframePolicy } from '../src/adapt/teacher.js';
import { parsePipeline } from '../src/config/load.js';
import { teacherSchema } from '../src/config/schema.js';
import { ConfigError } from '../src/errors.js';
import { iou } from '../src/model/decode.js';
import { Detector } from '../src/model/detector.js';
import type { ProviderSettings } from '../src/model/providers.js';
import type { Frame, FrameOutput } from '../src/source/frame.js';
import { letterbox } from '../src/source/geometry.js';
import { relayoutFrame } from '../src/source/relayout.js';
import { syntheticTruth } from '../src/source/synthetic-source.js';
import { consumeFrames } from './helpers/frames.js';

const cpu: ProviderSettings = { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '/nonexistent/trt-cache' }, threads: 1 };

// ---------------------------------------------------------------------------------------------
// Keyframes

describe('keyframe schedule', () => {
  it('every N frames: frame 0 is due, then every N frames after the last keyframe taken', () => {
    const s = new KeyframeSchedule({ kind: 'every', frames: 4 });
    expect(s.stride).toBe(4);
    const taken: number[] = [];
    for (let i = 0; i < 13; i++) {
      if (s.due(i)) {
        s.taken(i);
        taken.push(i);
      }
    }
    expect(taken).toEqual([0, 4, 8, 12]);
    // A keyframe that could not be taken when due (the teacher was busy) is taken late; the next counts from it.
    const late = new KeyframeSchedule({ kind: 'every', frames: 4 });
    late.taken(0);
    expect(late.due(3)).toBe(false);
    expect(late.due(5)).toBe(true);
    late.taken(5);
    expect(late.due(8)).toBe(false);
    expect(late.due(9)).toBe(true);
    // What the keyframe showed does not move a fixed stride.
    s.observe(0, true);
    s.observe(1, false);
    s.observe(1, false);
    expect(s.stride).toBe(4);
  });

  it('adaptive: starts at min_frames, halves on disagreement or fired buckets, doubles while quiet, within [min, max]', () => {
    const s = new KeyframeSchedule({ kind: 'adaptive', minFrames: 5, maxFrames: 40, agreement: 0.8 });
    expect(s.stride).toBe(5);
    expect(s.due(0)).toBe(true);
    const strides: number[] = [];
    const step = (a: number, fired: boolean) => {
      s.observe(a, fired);
      strides.push(s.stride);
    };
    step(1, false); // quiet: 10
    step(0.9, false); // 20
    step(0.8, false); // agreement exactly at the bar is agreement: 40
    step(1, false); // clamped at max: 40
    step(0.79, false); // disagreement: 20
    step(1, true); // buckets fired, even with full agreement: 10
    step(0, true); // 5
    step(0, false); // clamped at min: 5
    step(1, false); // 10
    expect(strides).toEqual([10, 20, 40, 40, 20, 10, 5, 5, 10]);
    // The stride in force decides when the next keyframe is due.
    s.taken(100);
    expect(s.due(109)).toBe(false);
    expect(s.due(110)).toBe(true);
  });

  it('a stride that is not a power-of-two multiple of min still ends at max and min exactly', () => {
    const s = new KeyframeSchedule({ kind: 'adaptive', minFrames: 3, maxFrames: 20, agreement: 0.5 });
    for (let i = 0; i < 6; i++) s.observe(1, false);
    expect(s.stride).toBe(20);
    s.observe(0, false);
    expect(s.stride).toBe(10);
    for (let i = 0; i < 6; i++) s.observe(0, false);
    expect(s.stride).toBe(3);
  });

  it('policy from the config: every_n_frames, or adaptive with its defaults', () => {
    expect(keyframePolicy(teacherSchema.parse({ model: 'yolox-nano', every_n_frames: 7 }))).toEqual({ kind: 'every', frames: 7 });
    expect(keyframePolicy(teacherSchema.parse({ model: 'yolox-nano', adaptive: {} }))).toEqual({ kind: 'adaptive', minFrames: 5, maxFrames: 80, agreement: 0.8 });
    expect(keyframePolicy(teacherSchema.parse({ model: 'yolox-nano', adaptive: { min_frames: 2, max_frames: 8, agreement: 0.6 } }))).toEqual({ kind: 'adaptive', minFrames: 2, maxFrames: 8, agreement: 0.6 });
  });
});

describe('agreement (F1 of student boxes against teacher boxes)', () => {
  const b = (classId: number, box: number[]): LabelledBox => ({ classId, box });
  const car = b(1, [10, 10, 50, 40]);
  const person = b(0, [100, 20, 120, 80]);
  const bike = b(2, [200, 100, 240, 140]);

  it('identical sets agree fully, disjoint sets not at all, two empty sets fully', () => {
    expect(agreement([car, person, bike], [bike, car, person])).toBe(1);
    expect(agreement([car], [person])).toBe(0);
    expect(agreement([car, person], [bike])).toBe(0);
    expect(agreement([], [])).toBe(1);
    expect(agreement([car], [])).toBe(0);
    expect(agreement([], [car])).toBe(0);
  });

  it('the same box with another class is no match', () => {
    expect(agreement([b(0, car.box as number[])], [car])).toBe(0);
    expect(agreement([b(0, car.box as number[]), person], [car, person])).toBeCloseTo(0.5, 12);
  });

  it('IoU 0.5 matches, under it does not; each teacher box matches once', () => {
    const t = b(1, [0, 0, 10, 10]);
    expect(agreement([b(1, [0, 0, 10, 20])], [t])).toBe(1); // IoU exactly 0.5
    expect(agreement([b(1, [0, 0, 10, 21])], [t])).toBe(0); // IoU 100 / 210
    // Two students on one teacher box: one match of three boxes.
    expect(agreement([t, t], [t])).toBeCloseTo(2 / 3, 12);
    // One of two found: 2 * 1 / 3.
    expect(agreement([car], [car, person])).toBeCloseTo(2 / 3, 12);
  });
});

// ---------------------------------------------------------------------------------------------
// A real model as the teacher

describe('ModelTeacher (beats-s as the teacher)', () => {
  let detector: Detector;
  /** Frame 57 of the stream (a car and a bicycle), delivered at 320x240 (the source size) and at 640x480. */
  let frame: Frame;
  let bigFrame: Frame;
  const url = 'synthetic:scene=street&seed=5001&seconds=6';
  const at = (width: number, height: number): FrameOutput => ({ width, height, pixelFormat: 'rgb24', padValue: 114, align: 'center' });
  // (consumeFrames asks for the next frame once a frame was consumed: frames are dropped after it, not before.)
  const frame57 = async (output: FrameOutput) => (await consumeFrames({ camera: 'c', url, output }, (f) => f, (f$) => f$.pipe(take(58)))).pop()!;
  const options = { threshold: 0.5, nmsIou: 0.45 };

  beforeAll(async () => {
    detector = await Detector.load('beats-s', { runtime: cpu });
    frame = await frame57(at(320, 240));
    bigFrame = await frame57(at(640, 480));
  });
  afterAll(async () => {
    await detector?.close();
  });

  it('labels a frame with its boxes (source pixels), mapped to the student classes by name', async () => {
    const studentClasses = ['bicycle', 'person', 'car'];
    const teacher = new ModelTeacher(detector, studentClasses, options);
    expect(teacher.sharedClasses).toBe(3);
    expect(teacher.name).toBe('beats-s@160');
    expect(teacher.frameOutput()).toEqual(detector.frameOutput());
    const boxes = await teacher.label(frame);
    // What the model finds on the frame at its own input, classes renamed.
    const direct = await detector.detect(relayoutFrame(frame, detector.frameOutput()), { ...options, maxDetections: 300 });
    // The frame's objects, as the synthetic camera's truth has them: a car and a bicycle.
    const truth = syntheticTruth.get(frame)!.filter((b) => b.visible > 0.5);
    expect(truth.map((b) => b.label).sort()).toEqual(['bicycle', 'car']);
    expect(direct.map((d) => d.label).sort()).toEqual(['bicycle', 'car']);
    expect(boxes).toEqual(direct.map((d) => ({ classId: studentClasses.indexOf(d.label), box: d.box })));
    expect(boxes.map((x) => x.classId).sort()).toEqual([0, 2]);
    for (const { box } of boxes) {
      expect(box[0]).toBeGreaterThanOrEqual(0);
      expect(box[2]).toBeLessThanOrEqual(frame.width);
      expect(box[3]).toBeLessThanOrEqual(frame.height);
      expect(box[2]! - box[0]!).toBeGreaterThan(4);
    }
  });

  it('sees a larger frame at its own input and gives the same boxes in source pixels', async () => {
    const teacher = new ModelTeacher(detector, ['person', 'car', 'bicycle'], options);
    const small = await teacher.label(frame);
    const big = await teacher.label(bigFrame);
    expect(big.map((b) => b.classId).sort()).toEqual(small.map((b) => b.classId).sort());
    // The two frames are rendered at their own sizes and scaled to the model's 160x120 from there, so
    // the boxes move by a pixel or two; a box mapped back at the wrong scale (2x) would overlap by 0.25 at most.
    for (const s of small) {
      const same = big.find((b) => b.classId === s.classId)!;
      expect(iou(s.box as [number, number, number, number], same.box as [number, number, number, number])).toBeGreaterThan(0.6);
    }
  });

  it('drops the classes the student does not have', async () => {
    const carsOnly = new ModelTeacher(detector, ['car'], options);
    expect(carsOnly.sharedClasses).toBe(1);
    const boxes = await carsOnly.label(frame);
    expect(boxes).toHaveLength(1);
    expect(boxes[0]!.classId).toBe(0);
    const all = await new ModelTeacher(detector, ['person', 'car', 'bicycle'], options).label(frame);
    expect(boxes[0]!.box).toEqual(all.find((b) => b.classId === 1)!.box);

    const none = new ModelTeacher(detector, ['truck', 'bus'], options);
    expect(none.sharedClasses).toBe(0);
    expect(await none.label(frame)).toEqual([]);
  });

  it('keeps only boxes at or above its threshold', async () => {
    const strict = await new ModelTeacher(detector, ['person', 'car', 'bicycle'], { threshold: 0.99, nmsIou: 0.45 }).label(frame);
    expect(strict).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Teacher targets and track misses in the supervision ring

// As in supervision.test.ts: a 320x240 source letterboxed into 160x160 (scale 0.5, 20 px of padding
// above and below). Level 0: 20x20 cells (stride 8); level 1: 10x10 cells (stride 16). D = 2 features:
// feature 0 of a cell = 10000 * level + gy * 100 + gx, feature 1 = its negation.
const geometry = letterbox(320, 240, 160, 160, 'center');
const LEVELS = [
  { level: 0, stride: 8, n: 20 },
  { level: 1, stride: 16, n: 10 },
];
const D = 2;
function features(): ObservedFrame['features'] {
  return {
    head: { serial: 0, label: 'base' },
    levels: LEVELS.map(({ level, stride, n }) => {
      const data = new Float32Array(D * n * n);
      for (let y = 0; y < n; y++) {
        for (let x = 0; x < n; x++) {
          data[y * n + x] = 10000 * level + y * 100 + x;
          data[n * n + y * n + x] = -(10000 * level + y * 100 + x);
        }
      }
      return { level, stride, features: 'f', dims: [1, D, n, n] as [number, number, number, number], data };
    }),
  };
}
const frameOf = (index: number) => ({ index, streamTime: index / 10, width: 320, height: 240, geometry });
/** Cell key from a cell's features. */
const keyOf = (f: Float32Array) => {
  const v = f[0]!;
  const level = Math.floor(v / 10000);
  return `${level}:${v % 100}:${Math.floor((v % 10000) / 100)}`; // level:gx:gy
};
/** A cell's centre in source pixels: input = source * 0.5 + (0, 20). */
const centre = (stride: number, gx: number, gy: number) => ({ sx: ((gx + 0.5) * stride) / 0.5, sy: ((gy + 0.5) * stride - 20) / 0.5 });
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('SupervisionRing.teacherCells', () => {
  // B: a tall person (class 0), 100x180, centre (70, 130): level-0 cell centres inside it are gx 1..7 x gy 5..15
  // (77 cells), of which gx 3..5 x gy 9..11 are within 1.5 cells (12 input px = 24 source px) of its centre.
  const B: LabelledBox = { classId: 0, box: [20, 40, 120, 220] };
  // A: a car (class 1), 40x40, centre (220, 120): inside are gx 12..14 x gy 9..10, all near its centre,
  // but the centres of gx 12 lie on its left edge: as in training, only strictly inside cells are positive.
  // Those two are inside and left out.
  const A: LabelledBox = { classId: 1, box: [200, 100, 240, 140] };
  // C: a bicycle (class 2) smaller than a cell, centre (292, 62) in cell (18, 6) whose centre (296, 64) is outside it.
  const C: LabelledBox = { classId: 2, box: [290, 60, 294, 64] };

  function ringWith(options: Partial<ConstructorParameters<typeof SupervisionRing>[0]> = {}, frames = 1): SupervisionRing {
    const ring = new SupervisionRing({ classes: 3, frames: 10, backgroundCells: 0, ...options });
    for (let i = 0; i < frames; i++) ring.observe({ frame: frameOf(i), detections: [], tracks: [], features: features() });
    return ring;
  }

  it('whole frame: positives at box centres, negatives outside every box, the rest of a box left out', () => {
    const ring = ringWith();
    const cells = ring.teacherCells(0, [B, A, C])!;
    expect(cells).toBeDefined();
    const byKey = new Map<string, Array<{ classId: number; target: number }>>();
    for (const c of cells) {
      const k = keyOf(c.features);
      const list = byKey.get(k) ?? [];
      list.push({ classId: c.classId, target: c.target });
      byKey.set(k, list);
    }
    const key = (level: number, gx: number, gy: number) => `${level}:${gx}:${gy}`;
    // Every target cell has one entry per class (3 classes: all are targets).
    for (const [k, list] of byKey) expect(list.map((t) => t.classId).sort(), k).toEqual([0, 1, 2]);
    const positives = new Map<string, number>();
    for (const [k, list] of byKey) {
      const pos = list.filter((t) => t.target === 1);
      expect(pos.length, k).toBeLessThanOrEqual(1);
      if (pos.length === 1) positives.set(k, pos[0]!.classId);
    }
    const expected = new Map<string, number>();
    for (const gx of range(3, 5)) for (const gy of range(9, 11)) expected.set(key(0, gx, gy), 0);
    for (const gx of range(13, 14)) for (const gy of range(9, 10)) expected.set(key(0, gx, gy), 1);
    expected.set(key(0, 18, 6), 2);
    // Level 1 (stride 16 input px, centres at x = 32 gx + 16, y = 32 gy - 24 source px; 1.5 cells = 48 px):
    // B's centre cells gx 1..3 x gy 4..6 (x 48..112, y 104..168; its other inside cells, gy 2, 3, 7, are left out);
    // A's inside cells (6..7, 4..5), of which gx 7 has its centres on A's right edge (left out); C's centre
    // (146, 51 input) in cell (9, 3), whose centre (304, 72) is outside C.
    for (const gx of range(1, 3)) for (const gy of range(4, 6)) expected.set(key(1, gx, gy), 0);
    for (const gy of range(4, 5)) expected.set(key(1, 6, gy), 1);
    expected.set(key(1, 9, 3), 2);
    expect(new Map([...positives].sort())).toEqual(new Map([...expected].sort()));

    // Level 0: the cells of the picture (rows 2..17: the others' centres are in the padding) are all
    // targets but the 77 - 9 of B away from its centre and A's two edge cells.
    const level0 = [...byKey.keys()].filter((k) => k.startsWith('0:'));
    expect(level0).toHaveLength(16 * 20 - (77 - 9) - 2);
    for (const gy of range(9, 10)) expect(byKey.has(key(0, 12, gy))).toBe(false);
    // Level 1: rows 1..8 x 10, but B's 9 cells away from its centre and A's two edge cells.
    expect([...byKey.keys()].filter((k) => k.startsWith('1:'))).toHaveLength(8 * 10 - 9 - 2);
    for (const gx of range(1, 3)) for (const gy of [2, 3, 7]) expect(byKey.has(key(1, gx, gy))).toBe(false);
    for (const gx of range(1, 7)) {
      for (const gy of range(5, 15)) {
        const nearCentre = gx >= 3 && gx <= 5 && gy >= 9 && gy <= 11;
        expect(byKey.has(key(0, gx, gy)), `${gx},${gy}`).toBe(nearCentre);
      }
    }
    for (let gx = 0; gx < 20; gx++) for (const gy of [0, 1, 18, 19]) expect(byKey.has(key(0, gx, gy))).toBe(false);
    // Outside every box: negative for all classes, e.g. the top-left and bottom-right picture corners.
    for (const k of [key(0, 0, 2), key(0, 19, 17), key(0, 10, 10), key(1, 0, 1)]) expect(byKey.get(k)!.every((t) => t.target === 0), k).toBe(true);

    // Positions are the cell centres in the source frame, 0..1.
    const one = cells.find((c) => keyOf(c.features) === key(0, 4, 10))!;
    const { sx, sy } = centre(8, 4, 10);
    expect(one.x).toBeCloseTo(sx / 320, 9);
    expect(one.y).toBeCloseTo(sy / 240, 9);
    expect(one.level).toBe(0);
    expect(one.features[1]).toBe(-one.features[0]!);
  });

  it('a model trained with off-centre negatives (its card says so) gets them from the teacher too', () => {
    const cells = ringWith({ offCentre: ['negative', 'negative'] }).teacherCells(0, [B, A, C])!;
    const key = (level: number, gx: number, gy: number) => `${level}:${gx}:${gy}`;
    const byKey = new Map<string, Array<{ classId: number; target: number }>>();
    for (const c of cells) byKey.set(keyOf(c.features), [...(byKey.get(keyOf(c.features)) ?? []), { classId: c.classId, target: c.target }]);
    // Every cell of the picture is a target now: 16 rows x 20 at level 0, 8 x 10 at level 1.
    expect([...byKey.keys()].filter((k) => k.startsWith('0:'))).toHaveLength(16 * 20);
    expect([...byKey.keys()].filter((k) => k.startsWith('1:'))).toHaveLength(8 * 10);
    // B's cells away from its centre and A's edge cells: y = 0 for every class.
    for (const k of [key(0, 1, 5), key(0, 7, 15), key(0, 3, 8), key(0, 12, 9), key(0, 12, 10), key(1, 2, 2), key(1, 7, 4)]) {
      expect(byKey.get(k)?.map((t) => t.classId).sort(), k).toEqual([0, 1, 2]);
      expect(byKey.get(k)!.every((t) => t.target === 0), k).toBe(true);
    }
    // The centres are positives as before.
    expect(byKey.get(key(0, 4, 10))!.find((t) => t.target === 1)?.classId).toBe(0);
    expect(byKey.get(key(0, 13, 9))!.find((t) => t.target === 1)?.classId).toBe(1);
  });

  it("teacherPositives none: the cells assigned to a box are left out, everything else is as with 'assigned'", () => {
    const all = ringWith({ offCentre: ['negative', 'negative'] }).teacherCells(0, [B, A, C])!;
    const negativesOnly = ringWith({ offCentre: ['negative', 'negative'], teacherPositives: 'none' }).teacherCells(0, [B, A, C])!;
    expect(negativesOnly.every((c) => c.target === 0)).toBe(true);
    // Exactly the cells holding a positive are gone, with their entries for every class.
    const positiveCells = new Set(all.filter((c) => c.target === 1).map((c) => keyOf(c.features)));
    expect(positiveCells.size).toBe(9 + 4 + 1 + 9 + 2 + 1);
    const kept = all.filter((c) => !positiveCells.has(keyOf(c.features)));
    expect(negativesOnly.map((c) => `${keyOf(c.features)}/${c.classId}`)).toEqual(kept.map((c) => `${keyOf(c.features)}/${c.classId}`));
  });

  it('teacherPositives centre: one positive cell per box and level, the one holding its centre; its other assigned cells left out', () => {
    const all = ringWith({ offCentre: ['negative', 'negative'] }).teacherCells(0, [B, A, C])!;
    const centre = ringWith({ offCentre: ['negative', 'negative'], teacherPositives: 'centre' }).teacherCells(0, [B, A, C])!;
    const positives = centre.filter((c) => c.target === 1).map((c) => `${keyOf(c.features)}/${c.classId}`);
    expect(positives).toHaveLength(3 * 2);
    // B's centre (70, 130) and C's (292, 62) as the assignment finds them; every positive is one of 'assigned'.
    expect(positives).toEqual(expect.arrayContaining(['0:4:10/0', '0:18:6/2', '1:9:3/2']));
    const assigned = new Set(all.filter((c) => c.target === 1).map((c) => `${keyOf(c.features)}/${c.classId}`));
    for (const p of positives) expect(assigned.has(p), p).toBe(true);
    // The other assigned cells are no targets at all; the rest of the frame is as with 'assigned'.
    const centreCells = new Set(centre.filter((c) => c.target === 1).map((c) => keyOf(c.features)));
    const assignedCells = new Set(all.filter((c) => c.target === 1).map((c) => keyOf(c.features)));
    const leftOut = [...assignedCells].filter((k) => !centreCells.has(k));
    expect(leftOut).toHaveLength(26 - 6);
    for (const k of leftOut) expect(centre.some((c) => keyOf(c.features) === k), k).toBe(false);
    expect(centre.filter((c) => !assignedCells.has(keyOf(c.features))).map((c) => `${keyOf(c.features)}/${c.classId}/${c.target}`)).toEqual(
      all.filter((c) => !assignedCells.has(keyOf(c.features))).map((c) => `${keyOf(c.features)}/${c.classId}/${c.target}`),
    );
  });

  it('no teacher boxes: every cell of every level is a negative for every class', () => {
    const cells = ringWith().teacherCells(0, [])!;
    // Level 0: 16 rows x 20; level 1: rows 1..8 (centres at y 8..232) x 10.
    expect(cells).toHaveLength((16 * 20 + 8 * 10) * 3);
    expect(cells.every((c) => c.target === 0)).toBe(true);
  });

  it('with more than 8 classes only the classes the teacher or the student saw are targets', () => {
    const cells = ringWith({ classes: 12 }).teacherCells(0, [{ classId: 4, box: A.box }], [{ classId: 9, box: [0, 0, 10, 10] }])!;
    expect(new Set(cells.map((c) => c.classId))).toEqual(new Set([4, 9]));
    expect(cells.filter((c) => c.target === 1).every((c) => c.classId === 4)).toBe(true);
    expect(cells.filter((c) => c.target === 1).length).toBeGreaterThan(0);
    // Up to 8 classes, all of them, whatever was seen.
    const eight = ringWith({ classes: 8 }).teacherCells(0, [{ classId: 4, box: A.box }])!;
    expect(new Set(eight.map((c) => c.classId))).toEqual(new Set(range(0, 7)));
  });

  it("undefined once the frame's maps are gone: out of the ring, or over the map budget", () => {
    const ring = ringWith({ frames: 3 }, 5);
    expect(ring.teacherCells(4, [A])).toBeDefined();
    expect(ring.teacherCells(2, [A])).toBeDefined();
    expect(ring.teacherCells(1, [A])).toBeUndefined();
    expect(ring.teacherCells(0, [A])).toBeUndefined();
    expect(ring.teacherCells(99, [A])).toBeUndefined();
    // A budget of one frame's maps: only the newest keeps them; a budget under one frame: none.
    const oneFrame = (20 * 20 + 10 * 10) * D * 4;
    const budget = ringWith({ fullMapBytes: oneFrame }, 3);
    expect(budget.teacherCells(2, [A])).toBeDefined();
    expect(budget.teacherCells(1, [A])).toBeUndefined();
    const tiny = ringWith({ fullMapBytes: 16 }, 2);
    expect(tiny.teacherCells(1, [A])).toBeUndefined();
    expect(tiny.teacherCells(0, [A])).toBeUndefined();
  });
});

describe('SupervisionRing trackMisses: confirmed tracks label their own low-score detections', () => {
  const trackBox = [100, 100, 140, 140];
  // The detection that matched the track this frame, one level-0 cell (16 source px) to the right of the track's box.
  const detBox = [116, 100, 156, 140];
  const cellKeyOf = (box: number[]) => {
    const cx = (box[0]! + box[2]!) / 2;
    const cy = (box[1]! + box[3]!) / 2;
    return LEVELS.map(({ level, stride }) => `${level}:${Math.floor((cx * 0.5) / stride)}:${Math.floor((cy * 0.5 + 20) / stride)}`).sort();
  };
  type Track = ObservedFrame['tracks'][number];
  const good: Track = { id: 1, box: trackBox, confirmed: true, classId: 1, hits: 5, topScore: 0.9, detection: 0 };
  const observe = (ring: SupervisionRing, index: number, track: Partial<Track>, score = 0.3) =>
    ring.observe({ frame: frameOf(index), detections: [{ box: detBox, score, classId: 1 }], tracks: [{ ...good, ...track }], features: features() });
  const ring = () => new SupervisionRing({ classes: 3, frames: 10, backgroundCells: 0, trackMisses: { threshold: 0.5, minHits: 3 } });

  it("a confirmed, often-hit, once-confident track matched by a low-score box: y = 1 for its class on that box's cells", () => {
    const r = ring();
    const out = observe(r, 0, {});
    expect(out).toHaveLength(LEVELS.length);
    expect(out.every((c) => c.classId === 1 && c.target === 1)).toBe(true);
    expect(out.map((c) => keyOf(c.features)).sort()).toEqual(cellKeyOf(detBox));
    expect(cellKeyOf(detBox)).not.toEqual(cellKeyOf(trackBox));
    expect(r.trackMissFrames).toBe(1);
    // At the bars: hits = minHits, topScore = threshold.
    expect(observe(r, 1, { hits: 3, topScore: 0.5 })).toHaveLength(LEVELS.length);
    expect(r.trackMissFrames).toBe(2);
    // Its class, not the detection's.
    expect(observe(r, 2, { classId: 2 }).every((c) => c.classId === 2)).toBe(true);
  });

  it("with the frame's background cells as negatives of the track's class", () => {
    const r = new SupervisionRing({ classes: 3, frames: 10, backgroundCells: 6, seed: 5, trackMisses: { threshold: 0.5, minHits: 3 } });
    const out = observe(r, 0, {});
    const positives = out.filter((c) => c.target === 1);
    const negatives = out.filter((c) => c.target === 0);
    expect(positives.map((c) => keyOf(c.features)).sort()).toEqual(cellKeyOf(detBox));
    expect(negatives.length).toBeGreaterThan(0);
    expect(negatives.length).toBeLessThanOrEqual(6);
    for (const c of [...positives, ...negatives]) expect(c.classId).toBe(1);
    // Background cells: not the cells under the track's or the detection's centre.
    const centres = new Set([...cellKeyOf(trackBox), ...cellKeyOf(detBox)]);
    for (const c of negatives) expect(centres.has(keyOf(c.features)), keyOf(c.features)).toBe(false);
    // No miss, no background negatives either.
    expect(observe(r, 1, {}, 0.9)).toEqual([]);
  });

  it('two tracks missed in one frame count one frame', () => {
    const r = ring();
    const box2 = [200, 60, 240, 100];
    const out = r.observe({
      frame: frameOf(0),
      detections: [
        { box: detBox, score: 0.2, classId: 1 },
        { box: box2, score: 0.1, classId: 0 },
      ],
      tracks: [good, { ...good, id: 2, box: box2, classId: 0, detection: 1 }],
      features: features(),
    });
    expect(out).toHaveLength(2 * LEVELS.length);
    expect(new Set(out.map((c) => c.classId))).toEqual(new Set([0, 1]));
    expect(r.trackMissFrames).toBe(1);
  });

  it('not for unconfirmed tracks, too few hits, a never-confident track, a high-score match, an unmatched track', () => {
    const r = ring();
    const cases: Array<[string, Partial<Track>, number]> = [
      ['unconfirmed', { confirmed: false }, 0.3],
      ['too few hits', { hits: 2 }, 0.3],
      ['no hits given', { hits: undefined }, 0.3],
      ['never above the threshold', { topScore: 0.49 }, 0.3],
      ['matched by a box at the threshold', {}, 0.5],
      ['matched by a confident box', {}, 0.8],
      ['not matched this frame', { detection: undefined }, 0.3],
      ['no class', { classId: undefined }, 0.3],
    ];
    cases.forEach(([what, track, score], i) => expect(observe(r, i, track, score), what).toEqual([]));
    expect(r.trackMissFrames).toBe(0);
    // Off unless asked for.
    const off = new SupervisionRing({ classes: 3, frames: 10, backgroundCells: 0 });
    expect(observe(off, 0, {})).toEqual([]);
    expect(off.trackMissFrames).toBe(0);
  });

  it("a track an operator labelled keeps the operator's label, not its own", () => {
    const r = ring();
    expect(observe(r, 0, {}, 0.9)).toEqual([]);
    const verdict: AcceptedFeedback = {
      camera: 'c',
      verdict: 'false_positive',
      frame: { index: 0, ts: 0, width: 320, height: 240 },
      detection: { label: 'car', classId: 1, score: 0.9, box: [116, 100, 156, 140], trackId: 1 },
      trackId: 1,
      trackFrames: [],
      origin: { via: 'mqtt' },
      receivedAt: 0,
    };
    expect(r.verdictCells(verdict).length).toBeGreaterThan(0);
    const out = observe(r, 1, {});
    // The verdict's label travels along the track (y = 0 for car); no y = 1 from the track itself.
    expect(out.length).toBeGreaterThan(0);
    expect(out.every((c) => c.classId === 1 && c.target === 0)).toBe(true);
    expect(r.trackMissFrames).toBe(0);
    // Once the label is forgotten, the track labels its misses again.
    r.forgetTrack(1);
    expect(observe(r, 2, {}).every((c) => c.target === 1)).toBe(true);
    expect(r.trackMissFrames).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// The loss the engine steps along

describe('lossGradient', () => {
  /** log(sigmoid(z)), stably. */
  const logSigmoid = (z: number) => -(Math.max(-z, 0) + Math.log1p(Math.exp(-Math.abs(z))));
  /** Sigmoid focal loss, alpha 0.25 (0.75 for negatives), gamma 2, computed independently of the engine. */
  const focal = (z: number, y: 0 | 1) => {
    const zt = y === 1 ? z : -z; // p_t = sigmoid(zt)
    const alpha = y === 1 ? 0.25 : 0.75;
    const oneMinusPt = 1 / (1 + Math.exp(zt));
    return -alpha * oneMinusPt ** 2 * logSigmoid(zt);
  };
  const central = (f: (z: number) => number, z: number, h = 1e-4) => (f(z + h) - f(z - h)) / (2 * h);
  const zs = [-6, -4.5, -3, -2, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 2, 3, 4.5, 6];

  it('bce: sigmoid(z) - y, the derivative of the binary cross-entropy', () => {
    for (const z of zs) {
      for (const y of [0, 1] as const) {
        expect(lossGradient(z, y, 'bce')).toBe(sigmoid(z) - y);
        expect(Math.abs(lossGradient(z, y, 'bce') - central((v) => bce(v, y), z))).toBeLessThan(1e-7);
      }
    }
  });

  it('focal: the derivative of -alpha_t (1 - p_t)^2 log p_t, alpha 0.25 for positives and 0.75 for negatives', () => {
    for (const z of zs) {
      for (const y of [0, 1] as const) {
        const want = central((v) => focal(v, y), z);
        const got = lossGradient(z, y, 'focal');
        expect(Math.abs(got - want), `z ${z}, y ${y}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-5 * Math.abs(want) + 1e-12);
        // Raising the logit lowers the loss of a positive and raises that of a negative.
        if (y === 1) expect(got).toBeLessThan(0);
        else expect(got).toBeGreaterThan(0);
      }
    }
    // Not bce under another name: at z = 0 the focal gradient of a positive is 0.0625 * (-log 2 - 0.5) = -0.075, bce's -0.5.
    expect(Math.abs(lossGradient(0, 1, 'focal'))).toBeLessThan(0.2 * Math.abs(lossGradient(0, 1, 'bce')));
  });
});

// ---------------------------------------------------------------------------------------------
// The configuration

describe('cameras[].adapt.teacher and track_misses in the pipeline config', () => {
  const file = '/srv/site/pipelines/main.yaml';
  const pipeline = (adapt: string) => `
cameras:
  - name: gate
    source: { url: "synthetic:" }
    model: beats-s
    adapt:
${adapt
  .trim()
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
`;
  function issuesOf(text: string): string[] {
    try {
      parsePipeline(text, file, { env: {} });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
    }
    throw new Error('expected a ConfigError');
  }

  it('defaults: no teacher, track misses off (min_hits 5); a teacher threshold of 0.5, on one onnxruntime thread, positives at box centres', () => {
    const adapt = parsePipeline(pipeline('enabled: true'), file).cameras[0]!.adapt;
    expect(adapt.teacher).toBeUndefined();
    expect(adapt.track_misses).toEqual({ enabled: false, min_hits: 5 });
    const every = parsePipeline(pipeline('teacher: { model: yolox-nano, every_n_frames: 15 }'), file).cameras[0]!.adapt.teacher;
    expect(every).toEqual({ model: 'yolox-nano', threshold: 0.5, positives: 'centre', threads: 1, serve: 'student', takeover_f1: 0.8, handback_f1: 0.6, every_n_frames: 15 });
    const adaptive = parsePipeline(pipeline('teacher: { model: yolox-nano, input_size: 640, adaptive: {} }'), file).cameras[0]!.adapt.teacher;
    expect(adaptive).toEqual({ model: 'yolox-nano', input_size: 640, threshold: 0.5, positives: 'centre', threads: 1, serve: 'student', takeover_f1: 0.8, handback_f1: 0.6, adaptive: { min_frames: 5, max_frames: 80, agreement: 0.8 } });
    expect(parsePipeline(pipeline('teacher: { model: yolox-nano, every_n_frames: 15, positives: none }'), file).cameras[0]!.adapt.teacher!.positives).toBe('none');
    expect(() => parsePipeline(pipeline('teacher: { model: yolox-nano, every_n_frames: 15, positives: true }'), file)).toThrow(/cameras\[0\]\.adapt\.teacher\.positives/);
    expect(parsePipeline(pipeline('track_misses: { enabled: true }'), file).cameras[0]!.adapt.track_misses).toEqual({ enabled: true, min_hits: 5 });
    expect(parsePipeline(pipeline('track_misses: { enabled: true, min_hits: 9 }'), file).cameras[0]!.adapt.track_misses).toEqual({ enabled: true, min_hits: 9 });
  });

  it('every_n_frames and adaptive together is an error at adaptive', () => {
    const issues = issuesOf(pipeline('teacher: { model: yolox-nano, every_n_frames: 10, adaptive: {} }'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^cameras\[0\]\.adapt\.teacher\.adaptive: .*every_n_frames or adaptive, not both/);
  });

  it('neither is an error that says what to give', () => {
    const issues = issuesOf(pipeline('teacher: { model: yolox-nano }'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^cameras\[0\]\.adapt\.teacher\.every_n_frames: .*every_n_frames.*adaptive/);
  });

  it('adaptive max_frames under min_frames is an error at max_frames (also against the defaults)', () => {
    expect(issuesOf(pipeline('teacher: { model: yolox-nano, adaptive: { min_frames: 20, max_frames: 10 } }'))).toEqual([
      'cameras[0].adapt.teacher.adaptive.max_frames: max_frames must be at least min_frames',
    ]);
    // min_frames 100 against the default max_frames 80.
    expect(issuesOf(pipeline('teacher: { model: yolox-nano, adaptive: { min_frames: 100 } }'))).toEqual([
      'cameras[0].adapt.teacher.adaptive.max_frames: max_frames must be at least min_frames',
    ]);
    // Equal is fine.
    expect(parsePipeline(pipeline('teacher: { model: yolox-nano, adaptive: { min_frames: 10, max_frames: 10 } }'), file).cameras[0]!.adapt.teacher?.adaptive?.max_frames).toBe(10);
  });

  it('bad values name their keys', () => {
    const names = (text: string, re: RegExp) => expect(issuesOf(pipeline(text))).toEqual(expect.arrayContaining([expect.stringMatching(re)]));
    names('teacher: { model: yolox-nano, every_n_frames: 0 }', /^cameras\[0\]\.adapt\.teacher\.every_n_frames: /);
    names('teacher: { model: yolox-nano, every_n_frames: 5, threshold: 1 }', /^cameras\[0\]\.adapt\.teacher\.threshold: /);
    names('teacher: { every_n_frames: 5 }', /^cameras\[0\]\.adapt\.teacher\.model: /);
    names('teacher: { model: yolox-nano, every_n_frames: 5, every: 3 }', /^cameras\[0\]\.adapt\.teacher\.every: unknown key/);
    names('track_misses: { min_hits: 0 }', /^cameras\[0\]\.adapt\.track_misses\.min_hits: /);
  });

  // Like the camera's model path (config.test.ts), not against the working directory.
  it("resolves the teacher's model path against the pipeline folder, like the camera's", () => {
    const teacher = parsePipeline(pipeline('teacher: { model: ./models/big.json, every_n_frames: 10 }'), file).cameras[0]!.adapt.teacher!;
    expect(teacher.model).toBe('/srv/site/pipelines/models/big.json');
  });
});
