/**
 * From operator verdicts to the engine's supervised cells (BEATS.md, "Supervision" and
 * "Bidirectional"), for one adapting camera.
 *
 * A bounded ring of the last `frames` processed frames keeps, per frame, only the head features of
 * the cells that a verdict may need, never whole feature maps (YOLOX's are 0.9 MB a frame): per head
 * level, the cell under the centre of each detection (low-score ones included: a `missed` object
 * often has one) and of each confirmed track's box, and `backgroundCells` random cells away from every
 * box (negatives). The full maps of the newest frames are also kept by reference, within
 * `fullMapBytes`, so that a `missed` box where nothing was detected can still be read when the
 * verdict comes quickly.
 *
 * Targets, on the cell(s) under a box centre, every level:
 * - correct: y = 1 for its class, y = 0 for the model's other classes;
 * - false_positive: y = 0 for its class;
 * - wrong_class: y = 0 for the detected class, y = 1 for the right one;
 * - missed: y = 1 for the given class at the given box.
 * A positive verdict (correct, wrong_class, missed) also gives the frame's background cells y = 0
 * for the positive class, so that a camera whose operator only confirms still has negatives for the
 * guard's balanced replay loss.
 *
 * Along the track (both directions of time): a verdict on a detection of a confirmed track labels
 * every buffered frame of that track the same way (its box in each frame), and the label is
 * remembered for the frames still to come while the track lives (at most `maxTrackLabels` tracks,
 * the oldest forgotten first).
 *
 * Confirmed tracks label their own misses (`trackMisses`): a track that has been matched at least
 * `minHits` times, with a best score at or above `threshold`, and that is matched in this frame by a
 * detection under `threshold` (ByteTrack's second stage kept it alive), gives y = 1 for its class on
 * that detection's cells, and y = 0 for it on the frame's background cells. A track an operator
 * labelled is left to the operator's label.
 *
 * A teacher (`teacherCells`) speaks for the whole frame: every cell of every level is a target, y = 1
 * for a teacher box's class on the cells assigned to it as the Beats CNN is trained (src/model/assign.ts:
 * the cell holding its centre, and those inside it within 1.5 cells of it) and y = 0 for the other
 * classes there; y = 0 on every cell outside all teacher boxes. Cells inside a box but away from its
 * centre get what the model learnt there (`offCentre`, from its card): y = 0 for every class for the
 * Beats CNN, whose training makes them negatives; left out for a detector trained to find objects
 * there too (YOLOX), and by default. With many classes (YOLOX's 80), only the classes the teacher
 * or the student saw in the frame are targets. `teacherPositives` (cameras[].adapt.teacher.positives)
 * narrows a box's positives to the cell holding its centre (`centre`, the pipeline's default), or
 * leaves them all out (`none`: the teacher only says where there is nothing); the cells left out
 * are no targets at all.
 */
import type { AcceptedFeedback, Box } from './feedback.js';
import type { FrameHeadFeatures } from '../model/head.js';
import { INSIDE, assignCells, centreCell } from '../model/assign.js';
import { cellFeatures, type FeatureMapView } from './engine-cells.js';
import { rng } from './engine-core.js';
import type { SupervisedCell } from './engine-types.js';
import { toInputPixels, type Letterbox } from '../source/geometry.js';

/** A stored cell: its features and its centre in the source frame (0..1). */
interface StoredCell {
  level: number;
  x: number;
  y: number;
  features: Float32Array;
}

interface RingFrame {
  index: number;
  streamTime: number;
  width: number;
  height: number;
  geometry: Letterbox;
  /** Per level: map dims [H, W]. */
  grids: Array<{ level: number; H: number; W: number }>;
  /** `level:gx:gy` → cell. */
  cells: Map<string, StoredCell>;
  /** Confirmed tracks' boxes in this frame. */
  tracks: Map<number, Box>;
  background: string[];
  /** The whole maps, while within the byte budget (released oldest first). */
  maps?: FeatureMapView[];
  mapBytes: number;
}

/** What the ring reads of a processed frame. */
export interface ObservedFrame {
  frame: { index: number; streamTime: number; width: number; height: number; geometry: Letterbox };
  /** Every detection of the frame (low-score ones too), source pixels. */
  detections: ReadonlyArray<{ box: readonly number[]; score?: number; classId?: number }>;
  tracks: ReadonlyArray<{ id: number; box: readonly number[]; confirmed: boolean; classId?: number; hits?: number; topScore?: number; detection?: number }>;
  features: FrameHeadFeatures;
}

export interface Target {
  classId: number;
  target: 0 | 1;
}

export interface SupervisionOptions {
  classes: number;
  /** Frames kept (default 150). */
  frames?: number;
  /** Background cells kept per frame (default 4). */
  backgroundCells?: number;
  /** Whole feature maps kept for the newest frames, in bytes (default 4 MB). */
  fullMapBytes?: number;
  maxTrackLabels?: number;
  seed?: number;
  /** Confirmed tracks label their own misses (see the header); absent: they do not. */
  trackMisses?: { threshold: number; minHits: number };
  /**
   * Anchors for the guard (SupervisedCell.anchor): every `every` frames, confirmed tracks matched by a
   * detection at or above `threshold` and not labelled by an operator give their class y = 1 on
   * that detection's cells, and y = 0 on the frame's background.
   */
  anchors?: { threshold: number; every: number };
  /**
   * Per head level, the teacher's targets on cells inside a box but assigned to none (the model
   * card's head[].off_centre): negatives, or left out (the default).
   */
  offCentre?: ReadonlyArray<'negative' | 'ignore'>;
  /**
   * Where a teacher's box is a positive: on every cell assigned to it (`assigned`, the default: as the
   * Beats CNN is trained), only on the cell holding its centre (`centre`: the box's other assigned
   * cells are left out), or nowhere (`none`: its assigned cells are left out, the teacher only gives
   * negatives).
   */
  teacherPositives?: TeacherPositives;
}

export type TeacherPositives = 'assigned' | 'centre' | 'none';

/** A box of a teacher or of the student, source pixels. */
export interface LabelledBox {
  classId: number;
  box: readonly number[];
}

/** Above this many classes, teacher targets cover only the classes seen in the frame. */
const ALL_CLASSES_UP_TO = 8;

export class SupervisionRing {
  private readonly ring: RingFrame[] = [];
  private readonly capacity: number;
  private readonly backgroundCells: number;
  private readonly fullMapBytes: number;
  private readonly maxTrackLabels: number;
  private mapBytes = 0;
  private readonly random: () => number;
  /** Tracks labelled by a verdict: their targets for frames still to come. */
  private readonly trackLabels = new Map<number, Target[]>();
  private missFrames = 0;
  private observed = 0;

  constructor(private readonly options: SupervisionOptions) {
    this.capacity = options.frames ?? 150;
    this.backgroundCells = options.backgroundCells ?? 4;
    this.fullMapBytes = options.fullMapBytes ?? 4 * 1024 * 1024;
    this.maxTrackLabels = options.maxTrackLabels ?? 256;
    this.random = rng(options.seed ?? 1);
  }

  get size(): number {
    return this.ring.length;
  }

  /** Frames on which a confirmed track labelled its own low-score detection. */
  get trackMissFrames(): number {
    return this.missFrames;
  }

  /** Tracks whose later frames are labelled as they arrive. */
  get labelledTracks(): number {
    return this.trackLabels.size;
  }

  /** Stores what a frame's verdicts may need; returns the cells of labelled tracks in this frame. */
  observe(observed: ObservedFrame): SupervisedCell[] {
    const { frame, features } = observed;
    const maps: FeatureMapView[] = features.levels.map((l) => ({ level: l.level, dims: l.dims, data: l.data }));
    const rf: RingFrame = {
      index: frame.index,
      streamTime: frame.streamTime,
      width: frame.width,
      height: frame.height,
      geometry: frame.geometry,
      grids: maps.map((m) => ({ level: m.level, H: m.dims[2], W: m.dims[3] })),
      cells: new Map(),
      tracks: new Map(),
      background: [],
      maps,
      mapBytes: maps.reduce((s, m) => s + m.data.byteLength, 0),
    };
    const boxes: Array<readonly number[]> = [];
    for (const d of observed.detections) {
      boxes.push(d.box);
      this.keep(rf, d.box);
    }
    const alive = new Set<number>();
    for (const t of observed.tracks) {
      alive.add(t.id);
      if (!t.confirmed) continue;
      const box: Box = [t.box[0]!, t.box[1]!, t.box[2]!, t.box[3]!];
      rf.tracks.set(t.id, box);
      boxes.push(box);
      this.keep(rf, box);
    }
    this.pickBackground(rf, boxes);

    this.ring.push(rf);
    this.mapBytes += rf.mapBytes;
    while (this.ring.length > this.capacity) this.release(this.ring.shift()!);
    for (const old of this.ring) {
      if (this.mapBytes <= this.fullMapBytes) break;
      if (old.maps && old !== rf) this.dropMaps(old);
    }
    if (this.mapBytes > this.fullMapBytes) this.dropMaps(rf);

    // Labels travel forward along their tracks; a track that ended is forgotten.
    const out: SupervisedCell[] = [];
    for (const [id, targets] of this.trackLabels) {
      if (!alive.has(id)) {
        this.trackLabels.delete(id);
        continue;
      }
      const box = rf.tracks.get(id);
      if (box) out.push(...this.cellsAt(rf, box, targets));
    }
    const anchors = this.options.anchors;
    if (anchors && this.observed++ % anchors.every === 0) {
      for (const t of observed.tracks) {
        const d = this.unlabelledMatch(t, observed.detections);
        if (!d || d.score < anchors.threshold) continue;
        const cells = [...this.cellsAt(rf, d.box, [{ classId: t.classId!, target: 1 }]), ...this.backgroundNegatives(rf, t.classId!)];
        for (const c of cells) out.push({ ...c, anchor: true });
      }
    }
    const misses = this.options.trackMisses;
    if (misses) {
      const before = out.length;
      for (const t of observed.tracks) {
        if ((t.hits ?? 0) < misses.minHits || (t.topScore ?? 0) < misses.threshold) continue;
        const d = this.unlabelledMatch(t, observed.detections);
        if (!d || d.score >= misses.threshold) continue;
        // With the frame's background as negatives of that class, as a positive verdict has.
        out.push(...this.cellsAt(rf, d.box, [{ classId: t.classId!, target: 1 }]), ...this.backgroundNegatives(rf, t.classId!));
      }
      if (out.length > before) this.missFrames++;
    }
    return out;
  }

  /**
   * A teacher's boxes on a buffered frame as targets for the whole frame (see the header).
   * `student`: the student's detections on that frame (their classes are targets too).
   * Undefined when the frame's feature maps are no longer kept (the teacher came too late).
   */
  teacherCells(frameIndex: number, teacher: readonly LabelledBox[], student: readonly LabelledBox[] = []): SupervisedCell[] | undefined {
    const rf = this.find(frameIndex);
    if (!rf?.maps) return undefined;
    const C = this.options.classes;
    const classes = C <= ALL_CLASSES_UP_TO ? Array.from({ length: C }, (_, c) => c) : [...new Set([...teacher, ...student].map((b) => b.classId))].filter((c) => c >= 0 && c < C);
    const g = rf.geometry;
    // Teacher boxes in model-input pixels, where the assignment of training applies.
    const inInput = teacher.map((t) => ({ box: toInputPixels(t.box, g) }));
    const out: SupervisedCell[] = [];
    const positives = this.options.teacherPositives ?? 'assigned';
    rf.grids.forEach((grid, i) => {
      const map = rf.maps![i]!;
      const assignGrid = { gw: grid.W, gh: grid.H, stride: g.width / grid.W };
      const owner = assignCells(assignGrid, inInput);
      const offCentreNegative = this.options.offCentre?.[grid.level] === 'negative';
      const centres = inInput.map((t) => centreCell(assignGrid, t.box));
      const holdsCentre = (k: number, gx: number, gy: number) => centres[k]![0] === gx && centres[k]![1] === gy;
      for (let gy = 0; gy < grid.H; gy++) {
        for (let gx = 0; gx < grid.W; gx++) {
          const k = owner[gy * grid.W + gx]!;
          if (k === INSIDE && !offCentreNegative) continue;
          if (k >= 0 && (positives === 'none' || (positives === 'centre' && !holdsCentre(k, gx, gy)))) continue;
          // The cell's centre in source pixels (through the letterbox); cells of the padding are not the picture.
          const sx = (((gx + 0.5) * g.width) / grid.W - g.padX) / g.scaleX;
          const sy = (((gy + 0.5) * g.height) / grid.H - g.padY) / g.scaleY;
          if (sx < 0 || sy < 0 || sx > rf.width || sy > rf.height) continue;
          const positiveClass = k >= 0 ? teacher[k]!.classId : -1;
          const features = cellFeatures(map, gx, gy);
          const x = clamp01(sx / rf.width);
          const y = clamp01(sy / rf.height);
          for (const c of classes) out.push({ level: grid.level, x, y, classId: c, target: positiveClass === c ? 1 : 0, features });
        }
      }
    });
    return out;
  }

  /** The supervised cells of an accepted verdict (the verdict frame and its track's buffered frames). */
  verdictCells(feedback: AcceptedFeedback): SupervisedCell[] {
    const frame = this.find(feedback.frame.index);
    const targets = verdictTargets(feedback, this.options.classes);
    if (targets.length === 0) return [];
    const out: SupervisedCell[] = [];
    const box = feedback.verdict === 'missed' ? feedback.box : feedback.detection?.box;
    if (frame && box) out.push(...this.cellsAt(frame, box, targets));
    const trackId = feedback.verdict === 'missed' ? undefined : (feedback.trackId ?? feedback.detection?.trackId);
    if (trackId !== undefined) {
      for (const rf of this.ring) {
        if (rf === frame) continue;
        const tbox = rf.tracks.get(trackId);
        if (tbox) out.push(...this.cellsAt(rf, tbox, targets));
      }
      this.trackLabels.delete(trackId);
      this.trackLabels.set(trackId, targets);
      while (this.trackLabels.size > this.maxTrackLabels) this.trackLabels.delete(this.trackLabels.keys().next().value!);
    }
    // Background negatives for the positive class, on the verdict frame.
    const positive = targets.find((t) => t.target === 1);
    if (frame && positive) out.push(...this.backgroundNegatives(frame, positive.classId));
    return out;
  }

  /** Forgets a track's label (its frames to come are no longer supervised). */
  forgetTrack(trackId: number): void {
    this.trackLabels.delete(trackId);
  }

  private find(index: number): RingFrame | undefined {
    for (let i = this.ring.length - 1; i >= 0; i--) {
      const f = this.ring[i]!;
      if (f.index === index) return f;
      if (f.index < index) return undefined;
    }
    return undefined;
  }

  /**
   * The detection a confirmed track with a class matched in this frame, when no operator labelled
   * the track (its label is what travels then), and the detection has a score.
   */
  private unlabelledMatch(t: ObservedFrame['tracks'][number], detections: ObservedFrame['detections']): { box: readonly number[]; score: number } | undefined {
    if (!t.confirmed || t.detection === undefined || t.classId === undefined || this.trackLabels.has(t.id)) return undefined;
    const d = detections[t.detection];
    return d && d.score !== undefined ? { box: d.box, score: d.score } : undefined;
  }

  /** y = 0 for `classId` on the frame's background cells. */
  private backgroundNegatives(rf: RingFrame, classId: number): SupervisedCell[] {
    return rf.background.flatMap((key) => {
      const c = rf.cells.get(key);
      return c ? [{ level: c.level, x: c.x, y: c.y, classId, target: 0 as const, features: c.features }] : [];
    });
  }

  /** Supervised cells at a box centre, every level, one per target. */
  private cellsAt(rf: RingFrame, box: readonly number[], targets: readonly Target[]): SupervisedCell[] {
    const out: SupervisedCell[] = [];
    for (const key of this.keep(rf, box)) {
      const c = rf.cells.get(key);
      if (!c) continue;
      for (const t of targets) out.push({ level: c.level, x: c.x, y: c.y, classId: t.classId, target: t.target, features: c.features });
    }
    return out;
  }

  /** The cell keys under a box centre; stores the cells when the full maps are still at hand. */
  private keep(rf: RingFrame, box: readonly number[]): string[] {
    const cx = (box[0]! + box[2]!) / 2;
    const cy = (box[1]! + box[3]!) / 2;
    const g = rf.geometry;
    const mx = cx * g.scaleX + g.padX;
    const my = cy * g.scaleY + g.padY;
    const keys: string[] = [];
    rf.grids.forEach((grid, i) => {
      const gx = clampInt(Math.floor((mx * grid.W) / g.width), grid.W);
      const gy = clampInt(Math.floor((my * grid.H) / g.height), grid.H);
      keys.push(this.store(rf, i, gx, gy));
    });
    return keys.filter((k) => rf.cells.has(k));
  }

  private store(rf: RingFrame, i: number, gx: number, gy: number): string {
    const grid = rf.grids[i]!;
    const key = `${grid.level}:${gx}:${gy}`;
    if (rf.cells.has(key) || !rf.maps) return key;
    const g = rf.geometry;
    // The cell's centre in the source frame, normalised: regions divide the picture, not the padding.
    const sx = (((gx + 0.5) * g.width) / grid.W - g.padX) / g.scaleX;
    const sy = (((gy + 0.5) * g.height) / grid.H - g.padY) / g.scaleY;
    rf.cells.set(key, { level: grid.level, x: clamp01(sx / rf.width), y: clamp01(sy / rf.height), features: cellFeatures(rf.maps[i]!, gx, gy) });
    return key;
  }

  private pickBackground(rf: RingFrame, boxes: ReadonlyArray<readonly number[]>): void {
    if (!rf.maps || this.backgroundCells === 0) return;
    for (let tries = 0; rf.background.length < this.backgroundCells && tries < this.backgroundCells * 8; tries++) {
      const sx = this.random() * rf.width;
      const sy = this.random() * rf.height;
      // Away from every box (with a margin of a quarter of its size).
      const near = boxes.some((b) => {
        const mw = (b[2]! - b[0]!) / 4;
        const mh = (b[3]! - b[1]!) / 4;
        return sx >= b[0]! - mw && sx <= b[2]! + mw && sy >= b[1]! - mh && sy <= b[3]! + mh;
      });
      if (near) continue;
      const keys = this.keep(rf, [sx, sy, sx, sy]);
      // One level at random per background point (the coarse levels would repeat otherwise).
      const key = keys[Math.floor(this.random() * keys.length)];
      if (key !== undefined && !rf.background.includes(key)) rf.background.push(key);
    }
  }

  private dropMaps(rf: RingFrame): void {
    if (!rf.maps) return;
    rf.maps = undefined;
    this.mapBytes -= rf.mapBytes;
  }

  private release(rf: RingFrame): void {
    this.dropMaps(rf);
  }

}

/** The targets a verdict sets on its box's cells (see the header). */
export function verdictTargets(feedback: Pick<AcceptedFeedback, 'verdict' | 'detection' | 'label'>, classes: number): Target[] {
  const detected = feedback.detection?.classId;
  switch (feedback.verdict) {
    case 'correct':
      if (detected === undefined) return [];
      return Array.from({ length: classes }, (_, c) => ({ classId: c, target: c === detected ? 1 : 0 }) as Target);
    case 'false_positive':
      return detected === undefined ? [] : [{ classId: detected, target: 0 }];
    case 'wrong_class': {
      const right = feedback.label?.classId;
      const out: Target[] = [];
      if (detected !== undefined) out.push({ classId: detected, target: 0 });
      if (right !== undefined && right !== detected) out.push({ classId: right, target: 1 });
      return out;
    }
    case 'missed':
      return feedback.label ? [{ classId: feedback.label.classId, target: 1 }] : [];
  }
}

const clampInt = (v: number, n: number): number => Math.max(0, Math.min(n - 1, v));
const clamp01 = (v: number): number => Math.max(0, Math.min(1, v));
