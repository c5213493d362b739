/**
 * Operator verdicts as supervised frames for whole-model adaptation. The body learns from pixels,
 * and a verdict names a detection (or, `missed`, a box) seconds after its frame went by: so the
 * last few model-input frames are kept here, with the student's detections and which track each
 * one belongs to. A verdict then labels its own frame and every kept frame of its track (labels
 * travel along tracks, as for head adaptation).
 *
 * A labelled frame's targets: the student's own confident detections (at or above the camera's
 * threshold) as positives, its unsure ones (half the threshold up to it) as ignore regions, and the
 * verdict's correction on top: `correct` makes its detection a positive, `false_positive` takes it
 * out (the cells become background), `wrong_class` gives it the right class, `missed` adds the
 * operator's box. Pure: no clock, no I/O.
 */
import { iou } from '../../model/decode.js';
import { toInputPixels, type Letterbox } from '../../source/geometry.js';
import type { AcceptedFeedback } from '../feedback.js';
import type { SupervisedImage } from './reservoir.js';

type Box = [number, number, number, number];

/** A detection on a kept frame, in model-input pixels. */
interface KeptDetection {
  classId: number;
  score: number;
  box: Box;
  trackId?: number;
}

interface KeptFrame {
  index: number;
  time: number;
  pixels: Uint8Array;
  geometry: Letterbox;
  /** The score its detections counted from. */
  threshold: number;
  detections: KeptDetection[];
}

export interface VerdictFramesOptions {
  /** Frames kept (their model-input pixels: width x height x 3 bytes each). */
  capacity: number;
  /** The camera's detect.threshold: a detection at or above it is one the student stands by (unless a frame says its own). */
  threshold: number;
  /** Most frames one verdict labels (its own, then its track's, spread over the track). */
  perVerdict: number;
}

/** A detection as the frame path has it: source pixels, and the track it matched, if any. */
export interface ObservedDetection {
  classId: number;
  score: number;
  box: readonly number[];
  trackId?: number;
}

/** A box the verdict is about matches a kept detection when they overlap this much. */
const MATCH_IOU = 0.5;

export class VerdictFrames {
  private readonly frames: KeptFrame[] = [];

  constructor(private readonly options: VerdictFramesOptions) {}

  get size(): number {
    return this.frames.length;
  }

  /**
   * Keeps a frame (its pixels are copied: the caller's buffer goes back to the source). Called on
   * every frame: once full, the oldest frame's buffer takes the new pixels instead of a new one.
   */
  /** `threshold`: the score this frame's detections counted from, when not the camera's (adapted weights serving at their own). */
  remember(frame: { index: number; streamTime: number; pixels: Uint8Array; geometry: Letterbox }, detections: readonly ObservedDetection[], threshold = this.options.threshold): void {
    const floor = threshold / 2;
    const lb = frame.geometry;
    const oldest = this.frames.length >= this.options.capacity ? this.frames.shift() : undefined;
    const pixels = oldest?.pixels.length === frame.pixels.length ? oldest.pixels : new Uint8Array(frame.pixels.length);
    pixels.set(frame.pixels);
    this.frames.push({
      index: frame.index,
      time: frame.streamTime,
      pixels,
      geometry: lb,
      threshold,
      detections: detections.filter((d) => d.score >= floor).map((d) => ({ classId: d.classId, score: d.score, box: toInputPixels(d.box, lb), trackId: d.trackId })),
    });
    while (this.frames.length > this.options.capacity) this.frames.shift();
  }

  /**
   * The frames a verdict labels: its own frame (if still kept) and the kept frames where its track
   * has a detection. Empty when none is kept any more or the verdict says nothing to train on.
   */
  imagesFor(feedback: Pick<AcceptedFeedback, 'verdict' | 'frame' | 'detection' | 'trackId' | 'label' | 'box'>): SupervisedImage[] {
    const own = this.frames.find((f) => f.index === feedback.frame.index);
    const trackId = feedback.verdict === 'missed' ? undefined : (feedback.trackId ?? feedback.detection?.trackId);
    const out: SupervisedImage[] = [];
    const box = feedback.verdict === 'missed' ? feedback.box : feedback.detection?.box;
    if (own && box) out.push(this.labelled(own, feedback, toInputPixels(box, own.geometry), undefined));
    if (trackId !== undefined) {
      for (const frame of this.frames) {
        const tracked = frame === own ? undefined : frame.detections.find((d) => d.trackId === trackId);
        if (tracked) out.push(this.labelled(frame, feedback, tracked.box, tracked));
      }
    }
    return spread(out, this.options.perVerdict);
  }

  private labelled(frame: KeptFrame, feedback: Pick<AcceptedFeedback, 'verdict' | 'detection' | 'label'>, box: Box, tracked: KeptDetection | undefined): SupervisedImage {
    const about = tracked ?? best(frame.detections, box, feedback.detection?.classId);
    const boxes: SupervisedImage['boxes'] = [];
    for (const d of frame.detections) {
      if (d === about) continue;
      boxes.push({ classId: d.classId, box: d.box, ignore: d.score < frame.threshold });
    }
    const right = feedback.label?.classId;
    switch (feedback.verdict) {
      case 'correct':
        if (about) boxes.push({ classId: about.classId, box: about.box, ignore: false });
        break;
      case 'false_positive':
        // Out of the targets: its cells become background for every class.
        break;
      case 'wrong_class':
        if (about && right !== undefined) boxes.push({ classId: right, box: about.box, ignore: false });
        break;
      case 'missed':
        if (right !== undefined) boxes.push({ classId: right, box, ignore: false });
        break;
    }
    return { pixels: Uint8Array.from(frame.pixels), time: frame.time, boxes };
  }
}

/** The kept detection a verdict's box is about: the most overlapping, of its class when known. */
function best(detections: readonly KeptDetection[], box: Box, classId: number | undefined): KeptDetection | undefined {
  let found: KeptDetection | undefined;
  let bestIou = MATCH_IOU;
  for (const d of detections) {
    if (classId !== undefined && d.classId !== classId) continue;
    const overlap = iou(d.box, box);
    if (overlap >= bestIou) {
      bestIou = overlap;
      found = d;
    }
  }
  return found;
}

/** At most `n` of `items`, evenly spread, the first always among them. */
function spread<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  return Array.from({ length: n }, (_, i) => items[Math.floor((i * items.length) / n)]!);
}
