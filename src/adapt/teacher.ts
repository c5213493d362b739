/**
 * The teacher (BEATS.md, "Supervision" 2): a stronger detector run on keyframes only, off the
 * inference path, whose boxes are the targets for the whole keyframe (JITNet-style online
 * distillation). This module decides which frames are keyframes and runs the teacher on them; the
 * targets are made by SupervisionRing.teacherCells.
 *
 * Keyframes come every `every_n_frames` frames, or with an adaptive stride as in JITNet: the stride
 * halves after a keyframe that found the student wrong (teacher and student agree on less than
 * `agreement` of their boxes) or while the engine's buckets fire, and doubles while neither happens,
 * within [min_frames, max_frames].
 */
import type { TeacherConfig } from '../config/schema.js';
import { iou } from '../model/decode.js';
import type { Detector } from '../model/detector.js';
import type { Detection } from '../model/detection.js';
import type { Frame, FrameOutput } from '../source/frame.js';
import { relayoutFrame } from '../source/relayout.js';
import type { LabelledBox } from './supervision.js';

export type KeyframePolicy = { kind: 'every'; frames: number } | { kind: 'adaptive'; minFrames: number; maxFrames: number; agreement: number };

export function keyframePolicy(config: TeacherConfig): KeyframePolicy {
  if (config.adaptive) return { kind: 'adaptive', minFrames: config.adaptive.min_frames, maxFrames: config.adaptive.max_frames, agreement: config.adaptive.agreement };
  return { kind: 'every', frames: config.every_n_frames ?? 10 };
}

export class KeyframeSchedule {
  private last = -Infinity;
  private current: number;

  constructor(readonly policy: KeyframePolicy) {
    this.current = policy.kind === 'every' ? policy.frames : policy.minFrames;
  }

  /** Frames between keyframes now. */
  get stride(): number {
    return this.current;
  }

  /** Whether frame `index` is a keyframe (the first frame is). */
  due(index: number): boolean {
    return index - this.last >= this.current;
  }

  taken(index: number): void {
    this.last = index;
  }

  /**
   * What the last keyframe showed (adaptive policy only): the agreement of student and teacher
   * (F1 of the student's boxes against the teacher's, 0..1), and whether buckets fired since the
   * keyframe before.
   */
  observe(agreement: number, fired: boolean): void {
    if (this.policy.kind !== 'adaptive') return;
    const { minFrames, maxFrames } = this.policy;
    const busy = fired || agreement < this.policy.agreement;
    this.current = busy ? Math.max(minFrames, Math.floor(this.current / 2)) : Math.min(maxFrames, this.current * 2);
  }
}

/** F1 of `student` against `teacher` (same class, IoU at least 0.5, greedy by order): 1 when both are empty. */
export function agreement(student: readonly LabelledBox[], teacher: readonly LabelledBox[]): number {
  if (student.length === 0 && teacher.length === 0) return 1;
  const used = new Set<number>();
  let matched = 0;
  for (const s of student) {
    let best = -1;
    let bestIou = 0.5;
    teacher.forEach((t, i) => {
      if (used.has(i) || t.classId !== s.classId) return;
      const v = iou(s.box, t.box);
      if (v >= bestIou) {
        bestIou = v;
        best = i;
      }
    });
    if (best >= 0) {
      used.add(best);
      matched++;
    }
  }
  return (2 * matched) / (student.length + teacher.length);
}

/** Whatever labels a keyframe: a teacher model, or (evaluation only) the ground truth. */
export interface KeyframeLabeller {
  readonly name: string;
  /** Boxes in source pixels, with the student's class ids. */
  label(frame: Frame): Promise<LabelledBox[]>;
  /** The input it wants (a model's); the source should deliver the larger of this and the student's. */
  frameOutput?(): FrameOutput;
  /** The model, for what its detections say produced them. */
  readonly model?: { name: string; version: string };
  /** Its detections as the student's, to serve the camera (adapt.teacher.serve). */
  detect?(frame: Frame, options: { threshold: number; nmsIou: number; maxDetections: number }, studentClasses: readonly string[]): Promise<Detection[]>;
  close?(): Promise<void>;
}

/**
 * A teacher model as a labeller: it sees the frame at its own input size (made from the student's
 * frame by relayoutFrame, so the source should deliver the larger of the two inputs) and its
 * classes are mapped to the student's by name; classes the student does not have are dropped.
 */
export class ModelTeacher implements KeyframeLabeller {
  private readonly classMap: Map<number, number>;

  constructor(
    readonly detector: Detector,
    studentClasses: readonly string[],
    private readonly options: { threshold: number; nmsIou: number; /** Only these class names (the camera's detect.labels). */ labels?: readonly string[] },
  ) {
    this.classMap = new Map();
    detector.card.classes.forEach((name, id) => {
      const s = studentClasses.indexOf(name);
      if (s >= 0 && (!options.labels || options.labels.includes(name))) this.classMap.set(id, s);
    });
  }

  get name(): string {
    return `${this.detector.card.name}@${this.detector.inputWidth}`;
  }

  get model(): { name: string; version: string } {
    return { name: this.detector.card.name, version: this.detector.card.version };
  }

  /** How many of the student's classes the teacher knows (a teacher that knows none is useless). */
  get sharedClasses(): number {
    return this.classMap.size;
  }

  frameOutput(): FrameOutput {
    return this.detector.frameOutput();
  }

  async label(frame: Frame): Promise<LabelledBox[]> {
    const input = relayoutFrame(frame, this.detector.frameOutput());
    const allowed = new Set(this.classMap.keys());
    const detections: Detection[] = await this.detector.detect(input, { threshold: this.options.threshold, nmsIou: this.options.nmsIou, maxDetections: 300 }, allowed);
    return detections.map((d) => ({ classId: this.classMap.get(d.classId)!, box: d.box }));
  }

  /** The teacher's detections of a frame as the student's (its class ids and names): what the camera publishes while the teacher serves. */
  async detect(frame: Frame, options: { threshold: number; nmsIou: number; maxDetections: number }, studentClasses: readonly string[]): Promise<Detection[]> {
    const input = relayoutFrame(frame, this.detector.frameOutput());
    const found = await this.detector.detect(input, options, new Set(this.classMap.keys()));
    return found.map((d) => {
      const classId = this.classMap.get(d.classId)!;
      return { ...d, classId, label: studentClasses[classId] ?? d.label };
    });
  }

  async close(): Promise<void> {
    await this.detector.close();
  }
}
