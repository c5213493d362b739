import { Subject, type Observable } from 'rxjs';
import { z } from 'zod';
import { describeIssue } from '../config/load.js';
import { logger } from '../log.js';
import { iou } from '../model/decode.js';
import type { Detection } from '../model/detection.js';
import type { EventMessage, EventState } from '../publish/messages.js';

/**
 * Operator feedback: verdicts on what the detector published, from MQTT (`<prefix>/<camera>/feedback`)
 * and from the live page's buttons, through one function (`submit`). Each verdict is checked
 * against what the camera actually produced in its last frames: a verdict that names a frame no
 * longer buffered, a box that matches no detection, an event this run never published, a class the
 * model does not have... is rejected, said on `<prefix>/<camera>/feedback/rejected`, and never passed
 * on. Accepted ones come out of `accepted$`, resolved to the detection, track and event they are
 * about, for the adaptation stage (BEATS.md, "Supervision").
 */

export const verdicts = ['correct', 'false_positive', 'wrong_class', 'missed'] as const;
export type Verdict = (typeof verdicts)[number];
export type Box = [number, number, number, number];

const boxSchema = z
  .tuple([z.number(), z.number(), z.number(), z.number()])
  .refine((b) => b[2] > b[0] && b[3] > b[1], 'must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1');

/** The payload, on MQTT and over HTTP alike. Strict: an unknown key is an error. */
export const feedbackPayloadSchema = z
  .strictObject({
    /** A detection of a published frame: its `frame` and (but for `missed`) its `box`, source pixels. */
    detection: z.strictObject({ frame: z.number().int().min(0), box: boxSchema.optional() }).optional(),
    /** An event id (`after.id` of `<prefix>/events`): the verdict is about its track. */
    event: z.string().min(1).max(128).optional(),
    verdict: z.enum(verdicts),
    /** The right class (wrong_class) or the missed object's class (missed). */
    label: z.string().min(1).max(100).optional(),
    /** missed: where the object is in the frame, source pixels. */
    box: boxSchema.optional(),
  })
  .superRefine((p, ctx) => {
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    if ((p.detection === undefined) === (p.event === undefined)) issue([], 'give either detection or event (one of them)');
    if (p.verdict === 'wrong_class' || p.verdict === 'missed') {
      if (p.label === undefined) issue(['label'], `is required for ${p.verdict}`);
    } else if (p.label !== undefined) issue(['label'], 'is only for wrong_class and missed');
    if (p.verdict === 'missed') {
      if (p.box === undefined) issue(['box'], 'is required for missed (where the missed object is)');
      // A missed object has no detection and no event: the verdict names the frame it was missed in.
      if (p.event !== undefined) issue(['event'], 'missed needs detection.frame (the frame the object was missed in), not an event');
      if (p.detection?.box !== undefined) issue(['detection', 'box'], 'is not for missed: give the missed object\'s box as "box"');
    } else {
      if (p.box !== undefined) issue(['box'], 'is only for missed');
      if (p.detection !== undefined && p.detection.box === undefined) issue(['detection', 'box'], `is required for ${p.verdict}`);
    }
  });

export type FeedbackPayload = z.infer<typeof feedbackPayloadSchema>;

/** Why a verdict was rejected, as a bounded set (metrics label); `reason` says it in words. */
export type RejectionCode =
  | 'rate_limited'
  | 'too_large'
  | 'malformed'
  | 'invalid'
  | 'unknown_label'
  | 'unknown_event'
  | 'stale'
  | 'out_of_range'
  | 'no_match'
  | 'unknown_camera'
  | 'implausible'
  | 'untrusted';

/** The payload of `<prefix>/<camera>/feedback/rejected`. */
export interface Rejection {
  reason: string;
  code: RejectionCode;
  /** The payload as received: parsed JSON when it is, else its text; at most its first 500 characters. */
  received: unknown;
}

export type BufferedDetection = Detection & { trackId?: number };

/** A frame as the intake keeps it: references to what the pipeline produced, nothing copied. */
export interface BufferedFrame {
  index: number;
  /** Epoch ms. */
  ts: number;
  width: number;
  height: number;
  detections: readonly BufferedDetection[];
}

export interface FeedbackOrigin {
  via: 'mqtt' | 'http' | 'simulated';
  /** Who sent it, when known. */
  user?: string;
  /**
   * The sender is known to be an operator: the broker lets only mqtt.feedback_users publish
   * verdicts, or the request carried http.token. Only operators may say an object was missed.
   */
  operator?: boolean;
}

/** Who may send `missed` verdicts (feedback.missed_from): operators only, or any sender. */
export type MissedFrom = 'operators' | 'anyone';

/** An accepted verdict, resolved against the camera's buffered frames. */
export interface AcceptedFeedback {
  camera: string;
  verdict: Verdict;
  /** The frame the verdict is about (for an event: the last buffered frame of its track). */
  frame: { index: number; ts: number; width: number; height: number };
  /** The detection it is about (every verdict but missed). */
  detection?: BufferedDetection;
  trackId?: number;
  /** The event of that track: its id and its label as last published. */
  event?: EventRef;
  /** wrong_class: the right class; missed: the missed object's class. */
  label?: { name: string; classId: number };
  /** missed: where the object is, source pixels. */
  box?: Box;
  /** Buffered frames in which the track has a detection, oldest first (labels travel along tracks). */
  trackFrames: number[];
  origin: FeedbackOrigin;
  /** Epoch ms when it was accepted. */
  receivedAt: number;
}

/** A verdict the intake refused, and the camera it was for. */
export interface RejectedFeedback {
  camera: string;
  rejection: Rejection;
}

export type FeedbackResult = { accepted: true; feedback: AcceptedFeedback } | { accepted: false; rejection: Rejection };

export interface FeedbackCamera {
  name: string;
  /** The model's classes: labels in verdicts must be one of them. */
  classes: readonly string[];
}

export interface FeedbackIntakeOptions {
  cameras: readonly FeedbackCamera[];
  /** Frames per camera whose detections are kept to resolve verdicts (default 300). */
  ringFrames?: number;
  /** Token bucket per camera: verdicts per second, and the burst (default 5/s, 20). */
  rate?: { perSecond: number; burst: number };
  /** Events per camera remembered for `{"event": id}` verdicts (default 1000). */
  maxEvents?: number;
  /** Payloads larger than this are rejected unread (default 4096 bytes). */
  maxBytes?: number;
  /** Monotonic milliseconds, for the token bucket (tests). */
  now?: () => number;
  /** Who may send `missed` verdicts (default operators: see FeedbackOrigin.operator). */
  missedFrom?: MissedFrom;
}

export interface FeedbackCounts {
  accepted: Record<Verdict, number>;
  rejected: Partial<Record<RejectionCode, number>>;
}

/** A verdict needs at least this IoU with a buffered detection to be about it. */
export const MATCH_IOU = 0.5;

/**
 * What a missed object's box may be. A `missed` verdict needs no detection, so nothing the camera
 * saw vouches for it; a box is refused when no real object could have it:
 * - a side under 4 px: smaller than the stride-8 cell that would learn it (and than any detector's
 *   smallest box at its input size);
 * - more than half the picture: an object that large is not missed by a working detector, and its
 *   centre cell would teach the head the whole scene;
 * - longer than 10 times its width, or the other way round: a person is about 1:3, a bus side-on 1:4.
 */
export const MISSED_BOX = Object.freeze({ minSidePx: 4, maxFrameFraction: 0.5, maxAspect: 10 });

/** A fixed-size ring of frames in index order (indices only grow), found by binary search. */
class FrameRing {
  private readonly slots: Array<BufferedFrame | undefined>;
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<BufferedFrame | undefined>(capacity);
  }

  push(frame: BufferedFrame): void {
    if (this.count < this.capacity) {
      this.slots[(this.start + this.count) % this.capacity] = frame;
      this.count++;
    } else {
      this.slots[this.start] = frame;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  at(i: number): BufferedFrame {
    return this.slots[(this.start + i) % this.capacity]!;
  }

  get size(): number {
    return this.count;
  }

  oldest(): BufferedFrame | undefined {
    return this.count > 0 ? this.at(0) : undefined;
  }

  newest(): BufferedFrame | undefined {
    return this.count > 0 ? this.at(this.count - 1) : undefined;
  }

  find(index: number): BufferedFrame | undefined {
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const f = this.at(mid);
      if (f.index === index) return f;
      if (f.index < index) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }
}

/** What a verdict needs of an event. */
export type EventRef = Pick<EventState, 'id' | 'label'>;

/**
 * An event the camera published, as the intake keeps it (up to maxEvents per camera): only what
 * resolving a verdict needs, since thousands are kept.
 */
interface KnownEvent {
  trackId: number | undefined;
  state: EventRef;
}

interface CameraState {
  classes: readonly string[];
  ring: FrameRing;
  /** Insertion-ordered, oldest first; bounded by maxEvents. */
  events: Map<string, KnownEvent>;
  bucket: { tokens: number; at: number };
  counts: FeedbackCounts;
}

/** What the intake reads of a processed frame (a pipeline FrameResult has it all). */
export interface IntakeFrame {
  camera: string;
  frame: { index: number; ts: number; width: number; height: number };
  detections: readonly BufferedDetection[];
  tracks: ReadonlyArray<{ id: number; box: readonly number[] }>;
  events: { messages: readonly EventMessage[] };
}

class Rejected {
  constructor(
    readonly code: RejectionCode,
    readonly reason: string,
  ) {}
}

export class FeedbackIntake {
  private readonly cameras = new Map<string, CameraState>();
  private readonly accepted = new Subject<AcceptedFeedback>();
  /** Accepted verdicts, resolved; completes when the intake closes. */
  readonly accepted$: Observable<AcceptedFeedback> = this.accepted.asObservable();
  private readonly rejected = new Subject<RejectedFeedback>();
  /**
   * Rejected verdicts of known cameras, with the reason (the pipeline publishes them on
   * `<prefix>/<camera>/feedback/rejected`); completes when the intake closes.
   */
  readonly rejected$: Observable<RejectedFeedback> = this.rejected.asObservable();
  private readonly rate: { perSecond: number; burst: number };
  private readonly maxEvents: number;
  private readonly maxBytes: number;
  private readonly now: () => number;
  private readonly log = logger('feedback');

  constructor(private readonly options: FeedbackIntakeOptions) {
    this.rate = options.rate ?? { perSecond: 5, burst: 20 };
    this.maxEvents = options.maxEvents ?? 1000;
    this.maxBytes = options.maxBytes ?? 4096;
    this.now = options.now ?? (() => performance.now());
    const ringFrames = options.ringFrames ?? 300;
    for (const camera of options.cameras) {
      this.cameras.set(camera.name, {
        classes: camera.classes,
        ring: new FrameRing(ringFrames),
        events: new Map(),
        bucket: { tokens: this.rate.burst, at: this.now() },
        counts: { accepted: { correct: 0, false_positive: 0, wrong_class: 0, missed: 0 }, rejected: {} },
      });
    }
  }

  get cameraNames(): string[] {
    return [...this.cameras.keys()];
  }

  /** Accepted and rejected verdicts of a camera so far (for the metrics). */
  counts(camera: string): FeedbackCounts | undefined {
    return this.cameras.get(camera)?.counts;
  }

  /**
   * A processed frame: kept by reference in the camera's ring (the oldest falls out). Called on the
   * frame path, so it stores and does nothing else; events (rare) have their track noted.
   */
  record(result: IntakeFrame): void {
    const camera = this.cameras.get(result.camera);
    if (!camera) return;
    const f = result.frame;
    camera.ring.push({ index: f.index, ts: f.ts, width: f.width, height: f.height, detections: result.detections });
    for (const message of result.events.messages) this.noteEvent(result.camera, message, result.tracks);
  }

  /**
   * An event message. The first one of an event comes with the frame's tracks: the event's box is
   * its track's box in that frame, which ties the event id to a track id (messages do not carry it).
   */
  noteEvent(cameraName: string, message: EventMessage, tracks?: IntakeFrame['tracks']): void {
    const camera = this.cameras.get(cameraName);
    if (!camera) return;
    const id = message.after.id;
    let known = camera.events.get(id);
    if (!known) {
      known = { trackId: undefined, state: { id, label: message.after.label } };
      camera.events.set(id, known);
      if (camera.events.size > this.maxEvents) camera.events.delete(camera.events.keys().next().value!);
    }
    known.state.label = message.after.label;
    // The same message may come first without the frame's tracks (the event hook), then with them.
    if (known.trackId === undefined && tracks) known.trackId = trackOf(message.after.box, tracks);
  }

  /**
   * One verdict, from MQTT or HTTP: checked, resolved, then emitted on accepted$, or rejected and
   * emitted on rejected$. Never throws on bad input.
   */
  submit(cameraName: string, payload: Buffer | string, origin: FeedbackOrigin): FeedbackResult {
    const text = typeof payload === 'string' ? payload : payload.toString('utf8');
    const camera = this.cameras.get(cameraName);
    if (!camera) {
      // Not reported on MQTT: a topic named after whatever a caller sent is not ours to create.
      return { accepted: false, rejection: { code: 'unknown_camera', reason: `unknown camera "${cameraName}"`, received: received(text) } };
    }
    try {
      const feedback = this.resolve(cameraName, camera, text, origin);
      camera.counts.accepted[feedback.verdict]++;
      this.log.info(`${cameraName}: ${feedback.verdict} accepted (frame ${feedback.frame.index}${feedback.trackId !== undefined ? `, track ${feedback.trackId}` : ''}, via ${origin.via})`);
      this.accepted.next(feedback);
      return { accepted: true, feedback };
    } catch (err) {
      if (!(err instanceof Rejected)) throw err;
      const rejection: Rejection = { reason: err.reason, code: err.code, received: received(text) };
      camera.counts.rejected[err.code] = (camera.counts.rejected[err.code] ?? 0) + 1;
      this.log.debug(`${cameraName}: verdict rejected (${err.reason}, via ${origin.via})`);
      this.rejected.next({ camera: cameraName, rejection });
      return { accepted: false, rejection };
    }
  }

  close(): void {
    this.accepted.complete();
    this.rejected.complete();
  }

  private takeToken(camera: CameraState): boolean {
    const now = this.now();
    const b = camera.bucket;
    b.tokens = Math.min(this.rate.burst, b.tokens + ((now - b.at) / 1000) * this.rate.perSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private resolve(cameraName: string, camera: CameraState, text: string, origin: FeedbackOrigin): AcceptedFeedback {
    // The bucket comes first: a flood of garbage costs no parsing.
    if (!this.takeToken(camera)) throw new Rejected('rate_limited', 'rate limited');
    const bytes = Buffer.byteLength(text);
    if (bytes > this.maxBytes) throw new Rejected('too_large', `payload too large (${bytes} bytes, at most ${this.maxBytes})`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Rejected('malformed', `malformed JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    const parsed = feedbackPayloadSchema.safeParse(json, { reportInput: true });
    if (!parsed.success) {
      const issues = parsed.error.issues.flatMap(describeIssue).map((i) => `${i.path || '(payload)'}: ${i.message}`);
      throw new Rejected('invalid', `invalid payload: ${issues.join('; ')}`);
    }
    const p = parsed.data;
    const label = p.label === undefined ? undefined : this.classOf(camera, p.label);
    const base = { camera: cameraName, verdict: p.verdict, origin, receivedAt: Date.now(), ...(label ? { label } : {}) };

    if (p.event !== undefined) {
      const known = camera.events.get(p.event);
      if (!known) throw new Rejected('unknown_event', `unknown event "${p.event}" (not one of the last ${this.maxEvents} events of ${cameraName})`);
      const trackFrames = known.trackId === undefined ? [] : this.framesOfTrack(camera, known.trackId);
      if (trackFrames.length === 0) throw new Rejected('stale', `stale event "${p.event}": none of its frames is in the buffer of the last ${camera.ring.capacity} frames`);
      const last = camera.ring.find(trackFrames[trackFrames.length - 1]!)!;
      const detection = last.detections.find((d) => d.trackId === known.trackId)!;
      if (label && label.name === known.state.label) throw new Rejected('invalid', `label "${label.name}" is already the event's label`);
      return { ...base, frame: frameOf(last), detection, trackId: known.trackId, event: known.state, trackFrames };
    }

    const ref = p.detection!;
    const frame = this.frame(camera, ref.frame);
    if (p.verdict === 'missed') {
      const box = p.box!;
      checkInside(box, frame, 'box');
      checkPlausible(box, frame);
      if ((this.options.missedFrom ?? 'operators') === 'operators' && !origin.operator) {
        throw new Rejected(
          'untrusted',
          `missed verdicts are taken from operators only (an mqtt.feedback_users user, or the live page with http.token); this one came over ${origin.via} from a sender not known to be one (feedback.missed_from: anyone lifts this)`,
        );
      }
      const covered = frame.detections.find((d) => d.label === label!.name && iou(d.box, box) >= MATCH_IOU);
      if (covered) throw new Rejected('invalid', `not missed: a ${covered.label} detection of frame ${frame.index} covers the box (IoU ${iou(covered.box, box).toFixed(2)})`);
      return { ...base, frame: frameOf(frame), box: [...box], trackFrames: [] };
    }
    const box = ref.box!;
    checkInside(box, frame, 'detection.box');
    let detection: BufferedDetection | undefined;
    let best = 0;
    for (const d of frame.detections) {
      const overlap = iou(d.box, box);
      if (overlap > best) {
        best = overlap;
        detection = d;
      }
    }
    if (!detection || best < MATCH_IOU) {
      throw new Rejected('no_match', `no detection of frame ${frame.index} matches the box (best IoU ${best.toFixed(2)}, at least ${MATCH_IOU} needed)`);
    }
    if (label && label.name === detection.label) throw new Rejected('invalid', `label "${label.name}" is already the detection's label`);
    const trackId = detection.trackId;
    const event = trackId === undefined ? undefined : [...camera.events.values()].reverse().find((e) => e.trackId === trackId)?.state;
    return {
      ...base,
      frame: frameOf(frame),
      detection,
      ...(trackId !== undefined ? { trackId } : {}),
      ...(event ? { event } : {}),
      trackFrames: trackId === undefined ? [frame.index] : this.framesOfTrack(camera, trackId),
    };
  }

  private classOf(camera: CameraState, name: string): { name: string; classId: number } {
    const classId = camera.classes.indexOf(name);
    if (classId < 0) throw new Rejected('unknown_label', `unknown label "${name}" (not a class of the model)`);
    return { name, classId };
  }

  private frame(camera: CameraState, index: number): BufferedFrame {
    const found = camera.ring.find(index);
    if (found) return found;
    const oldest = camera.ring.oldest();
    const newest = camera.ring.newest();
    if (!newest || index > newest.index) throw new Rejected('out_of_range', `frame ${index} has not been processed${newest ? ` (the newest is ${newest.index})` : ' (no frame yet)'}`);
    if (index < oldest!.index) throw new Rejected('stale', `stale frame ${index}: the oldest frame kept is ${oldest!.index} (the last ${camera.ring.capacity} are kept)`);
    throw new Rejected('out_of_range', `frame ${index} was dropped, not processed`);
  }

  private framesOfTrack(camera: CameraState, trackId: number): number[] {
    const frames: number[] = [];
    for (let i = 0; i < camera.ring.size; i++) {
      const f = camera.ring.at(i);
      if (f.detections.some((d) => d.trackId === trackId)) frames.push(f.index);
    }
    return frames;
  }
}

/** The track whose box is the event's box in the frame of its message (its last matched box). */
function trackOf(box: readonly number[], tracks: IntakeFrame['tracks']): number | undefined {
  let trackId: number | undefined;
  let best = MATCH_IOU;
  for (const t of tracks) {
    const overlap = iou(t.box, box);
    if (overlap >= best) {
      best = overlap;
      trackId = t.id;
    }
  }
  return trackId;
}

function frameOf(f: BufferedFrame): AcceptedFeedback['frame'] {
  return { index: f.index, ts: f.ts, width: f.width, height: f.height };
}

/** Boxes are published clipped to the frame and rounded to 0.1 px: half a pixel of slack. */
function checkInside(box: readonly number[], frame: BufferedFrame, name: string): void {
  const [x1, y1, x2, y2] = box as Box;
  const slack = 0.5;
  if (x1 < -slack || y1 < -slack || x2 > frame.width + slack || y2 > frame.height + slack) {
    throw new Rejected('out_of_range', `${name} [${box.join(', ')}] is outside the ${frame.width}x${frame.height} frame`);
  }
}

/** A missed object's box that no real object could have (MISSED_BOX) is refused. */
function checkPlausible(box: readonly number[], frame: BufferedFrame): void {
  const [x1, y1, x2, y2] = box as Box;
  const w = x2 - x1;
  const h = y2 - y1;
  const shown = `box [${box.join(', ')}]`;
  if (Math.min(w, h) < MISSED_BOX.minSidePx) throw new Rejected('implausible', `${shown} is ${round1(w)}x${round1(h)} px: a missed object's box needs sides of at least ${MISSED_BOX.minSidePx} px`);
  if (w * h > MISSED_BOX.maxFrameFraction * frame.width * frame.height) {
    throw new Rejected('implausible', `${shown} covers ${Math.round((100 * w * h) / (frame.width * frame.height))} % of the ${frame.width}x${frame.height} frame: a missed object's box covers at most ${MISSED_BOX.maxFrameFraction * 100} %`);
  }
  if (Math.max(w / h, h / w) > MISSED_BOX.maxAspect) throw new Rejected('implausible', `${shown} is ${round1(w)}x${round1(h)} px: no object is more than ${MISSED_BOX.maxAspect} times longer than wide`);
}

const round1 = (v: number) => Math.round(v * 10) / 10;

/** What a rejection says it received: the JSON when it parses (and is short), else the first 500 characters. */
function received(text: string): unknown {
  if (text.length <= 500) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text.slice(0, 500);
}
