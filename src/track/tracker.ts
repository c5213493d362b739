import type { CameraConfig } from '../config/schema.js';
import type { Detection } from '../model/detection.js';
import { iou } from '../model/decode.js';
import { assign } from './assign.js';
import { BoxFilter, toCentre, type Box } from './kalman.js';

export type { Box } from './kalman.js';

/**
 * Multi-object tracking, ByteTrack style: every track's box is predicted by a Kalman filter to the
 * frame's stream time, then matched to the frame's detections by IoU in stages:
 *   1. high-score detections (≥ highThreshold) with the confirmed tracks, seen or lost;
 *   2. low-score detections (lowThreshold ≤ score < highThreshold) with the confirmed tracks still
 *      unmatched: an object that blurs or is half hidden scores low, and this keeps its id, while
 *      a low-score box never starts a track of its own (most of them are noise);
 *   3. high-score detections still unmatched with the tentative tracks.
 * High-score detections left over start tentative tracks. Pure and deterministic: no clock, no I/O.
 */

export interface TrackerOptions {
  /** Detections at or above this score are matched first and may start tracks. */
  highThreshold: number;
  /** Detections below this score are ignored; between it and highThreshold they only keep tracks alive. */
  lowThreshold: number;
  /** Least IoU between a track's predicted box and a high-score detection for them to match. */
  matchIou: number;
  /** Least IoU for a low-score detection: stricter, as a low score is more often a stray box. */
  lowMatchIou: number;
  /**
   * Detections of different classes overlapping more than this are one object seen as two classes
   * (the detector's NMS is per class: a van comes out as a car and a truck at the same place). The
   * best one is matched, the others only vote for the label.
   */
  duplicateIou: number;
  /** Consecutive matched frames before a track is confirmed (and reported as started). */
  minHits: number;
  /** A confirmed track not matched for longer than this (stream seconds) ends. */
  maxLostSeconds: number;
  /** A track is stationary when its centre stayed this close over stationarySeconds... */
  stationarySeconds: number;
  /** ...as a fraction of its box's diagonal. */
  stationaryMaxMove: number;
}

/**
 * Defaults and why:
 * - highThreshold 0.5, lowThreshold 0.1: ByteTrack's (its track_thresh and low bound).
 * - matchIou 0.3: a track moved by its velocity overlaps its next box far more than that, so 0.3 is
 *   about what the prediction gets wrong, not how fast things move; lower would let neighbours in
 *   dense traffic steal boxes. (ByteTrack: 0.2 for stage 1, 0.3 for tentative tracks.)
 * - lowMatchIou 0.5: ByteTrack's for its second stage.
 * - duplicateIou 0.7: well above what two real neighbours overlap (per-class NMS already keeps no
 *   two boxes of one class above its nms_iou, 0.45 by default).
 * - minHits 3: a false positive rarely scores ≥ highThreshold three frames in a row (0.12 s at 25
 *   fps, a delay nobody sees in an event).
 * - maxLostSeconds 1.5: carries a car behind a lorry or a person behind a pillar; longer and a
 *   track's predicted box drifts far enough to catch someone else.
 * - stationarySeconds 3, stationaryMaxMove 0.1: a parked car or a person waiting, not a slow crawl;
 *   box jitter on a still object is a few percent of its size.
 */
export const defaultTrackerOptions: Readonly<TrackerOptions> = Object.freeze({
  highThreshold: 0.5,
  lowThreshold: 0.1,
  matchIou: 0.3,
  lowMatchIou: 0.5,
  duplicateIou: 0.7,
  minHits: 3,
  maxLostSeconds: 1.5,
  stationarySeconds: 3,
  stationaryMaxMove: 0.1,
});

/** What a track looks like after an update: a snapshot, safe to keep. */
export interface TrackView {
  /** 1, 2, 3... in order of creation; never reused by this tracker. */
  readonly id: number;
  /** The score-weighted majority of the labels of the detections it matched; classId follows. */
  readonly label: string;
  readonly classId: number;
  /** Score of the last matched detection, and the best so far. */
  readonly score: number;
  readonly topScore: number;
  /** The last matched detection's box, or the predicted one while lost. Source pixels. */
  readonly box: Box;
  /** Estimated velocity of the box centre, px/s. */
  readonly velocity: readonly [number, number];
  /** Frames matched so far. */
  readonly hits: number;
  /** Consecutive frames not matched (0 when matched this frame). */
  readonly missedFrames: number;
  /** Stream time of the first of those missed frames; undefined when matched this frame. */
  readonly lostSince: number | undefined;
  readonly confirmed: boolean;
  readonly stationary: boolean;
  /** Stream seconds of the first and the last matched detection. */
  readonly firstSeen: number;
  readonly lastSeen: number;
  /** Index in this update's `detections` of the detection it matched; undefined if none. */
  readonly detection: number | undefined;
}

/** What the tracker needs of a frame; a `Frame` from the source has it all. */
export interface TrackerFrame {
  /** Stream seconds: the Kalman step is the time since the previous update. */
  streamTime: number;
  /** Source frame size, the space of the boxes: with it, a lost track that leaves the picture ends at once. */
  width?: number;
  height?: number;
}

export interface TrackerUpdate {
  /** Confirmed and tentative tracks alive after this frame, by id. */
  active: readonly TrackView[];
  /** Tracks confirmed in this frame (they are in `active` too). */
  started: TrackView[];
  /** Confirmed tracks that ended in this frame, with their last state. */
  ended: TrackView[];
}

/** A centre position at a stream time, for the stationary test. */
interface Sample {
  time: number;
  cx: number;
  cy: number;
}

/** The mutable side of a track; only the tracker sees it. */
class Track {
  readonly filter: BoxFilter;
  readonly labelVotes = new Map<number, { label: string; weight: number }>();
  /** Matched centres covering the last stationarySeconds (plus the one just before). */
  readonly history: Sample[] = [];
  label = '';
  classId = -1;
  score = 0;
  topScore = 0;
  box: Box;
  hits = 0;
  missedFrames = 0;
  lostSince: number | undefined;
  confirmed = false;
  stationary = false;
  lastSeen: number;
  detection: number | undefined;

  constructor(
    readonly id: number,
    readonly firstSeen: number,
    box: Box,
  ) {
    this.filter = new BoxFilter(box);
    this.box = box;
    this.lastSeen = firstSeen;
  }

  view(): TrackView {
    return {
      id: this.id,
      label: this.label,
      classId: this.classId,
      score: this.score,
      topScore: this.topScore,
      box: [...this.box],
      velocity: this.filter.velocity,
      hits: this.hits,
      missedFrames: this.missedFrames,
      lostSince: this.lostSince,
      confirmed: this.confirmed,
      stationary: this.stationary,
      firstSeen: this.firstSeen,
      lastSeen: this.lastSeen,
      detection: this.detection,
    };
  }
}

/** A detection as the tracker uses it: its place in the input, and the same-object boxes merged into it. */
interface Candidate {
  index: number;
  detection: Detection;
  duplicates: Detection[];
}

/** A camera's tracker settings: its detect.threshold, events.low_threshold, min_frames and end_after_s. */
export function trackerOptions(camera: Pick<CameraConfig, 'detect' | 'events'>): Partial<TrackerOptions> {
  return { highThreshold: camera.detect.threshold, lowThreshold: camera.events.low_threshold, minHits: camera.events.min_frames, maxLostSeconds: camera.events.end_after_s };
}

export class Tracker {
  readonly options: Readonly<TrackerOptions>;
  private tracks: Track[] = [];
  private nextId = 1;
  private lastTime: number | undefined;

  constructor(options: Partial<TrackerOptions> = {}) {
    this.options = Object.freeze({ ...defaultTrackerOptions, ...options });
    const o = this.options;
    if (!(o.lowThreshold <= o.highThreshold)) throw new RangeError(`tracker: lowThreshold (${o.lowThreshold}) must not exceed highThreshold (${o.highThreshold})`);
    if (!(o.minHits >= 1)) throw new RangeError(`tracker: minHits must be at least 1 (got ${o.minHits})`);
    for (const key of ['matchIou', 'lowMatchIou', 'duplicateIou'] as const) {
      if (!(o[key] > 0 && o[key] <= 1)) throw new RangeError(`tracker: ${key} must be in (0, 1] (got ${o[key]})`);
    }
  }

  /**
   * One frame: `detections` as the detector gave them (down to lowThreshold at least, every class the
   * tracks should follow), and the frame's stream time and size (a `Frame` will do). Time that does
   * not move forward counts as no time (a live source's clock is not ours to fix). `highThreshold`
   * replaces the option's for this frame (adapted weights that score on their own scale); it is
   * never taken under lowThreshold.
   */
  update(detections: readonly Detection[], frame: TrackerFrame, highThreshold = this.options.highThreshold): TrackerUpdate {
    const o = this.options;
    const high = Math.max(o.lowThreshold, highThreshold);
    const streamTime = frame.streamTime;
    if (!Number.isFinite(streamTime)) throw new RangeError(`tracker: streamTime must be a finite number of seconds (got ${streamTime})`);
    const dt = this.lastTime === undefined ? 0 : Math.max(0, streamTime - this.lastTime);
    this.lastTime = Math.max(streamTime, this.lastTime ?? streamTime);

    for (const t of this.tracks) {
      t.filter.predict(dt, t.missedFrames > 0);
      t.detection = undefined;
    }

    // A lost track ends before matching (it may not catch a box any more) when it has been lost for
    // too long, or when its prediction carried it out of the picture: it drove out of view, and
    // keeping it would count it as in view for maxLostSeconds more.
    const ended: TrackView[] = [];
    this.tracks = this.tracks.filter((t) => {
      if (t.lostSince === undefined) return true;
      if (streamTime - t.lastSeen <= o.maxLostSeconds && !leftThePicture(t.filter.box, frame)) return true;
      ended.push(t.view());
      return false;
    });

    const candidates = mergeDuplicates(detections, o);
    const highScored = candidates.filter((c) => c.detection.score >= high);
    const low = candidates.filter((c) => c.detection.score < high);
    const confirmed = this.tracks.filter((t) => t.confirmed);
    const tentative = this.tracks.filter((t) => !t.confirmed);

    const stage1 = match(confirmed, highScored, o.matchIou);
    const stage2 = match(stage1.tracks, low, o.lowMatchIou);
    const stage3 = match(tentative, stage1.candidates, o.matchIou);

    const startedIds = new Set<number>();
    for (const [track, candidate] of [...stage1.matches, ...stage2.matches, ...stage3.matches]) {
      const wasConfirmed = track.confirmed;
      this.correct(track, candidate, streamTime);
      if (track.confirmed && !wasConfirmed) startedIds.add(track.id);
    }

    // Unmatched: a tentative track goes without a word; a confirmed one is lost and keeps its
    // predicted box until it is matched again or maxLostSeconds pass.
    const unmatched = new Set([...stage2.tracks, ...stage3.tracks]);
    this.tracks = this.tracks.filter((t) => t.confirmed || !unmatched.has(t));
    for (const t of unmatched) {
      if (!t.confirmed) continue;
      t.missedFrames++;
      t.lostSince ??= streamTime;
      t.box = t.filter.box;
    }

    for (const candidate of stage3.candidates) {
      const track = new Track(this.nextId++, streamTime, [...candidate.detection.box]);
      this.correct(track, candidate, streamTime);
      this.tracks.push(track);
      if (track.confirmed) startedIds.add(track.id);
    }

    // Tracks are kept in creation order, which is id order.
    const active = this.tracks.map((t) => t.view());
    return { active, started: active.filter((t) => startedIds.has(t.id)), ended: ended.sort(byId) };
  }

  /** End of stream: ends every track. Returns the confirmed ones (tentative tracks end silently). */
  flush(): TrackView[] {
    const ended = this.tracks.filter((t) => t.confirmed).map((t) => {
      t.detection = undefined;
      return t.view();
    });
    this.tracks = [];
    return ended.sort(byId);
  }

  /** A track matched a detection (or was just created from one). */
  private correct(track: Track, candidate: Candidate, time: number): void {
    const o = this.options;
    const d = candidate.detection;
    if (track.hits > 0) track.filter.correct(d.box);
    track.box = [...d.box];
    track.score = d.score;
    track.topScore = Math.max(track.topScore, d.score);
    track.hits++;
    track.missedFrames = 0;
    track.lostSince = undefined;
    track.lastSeen = time;
    track.detection = candidate.index;
    for (const vote of [d, ...candidate.duplicates]) {
      const tally = track.labelVotes.get(vote.classId);
      if (tally) tally.weight += vote.score;
      else track.labelVotes.set(vote.classId, { label: vote.label, weight: vote.score });
    }
    let best = -Infinity;
    // Map order is first-voted first, and only a strictly larger weight wins: ties keep the older label.
    for (const [classId, tally] of track.labelVotes) {
      if (tally.weight > best) {
        best = tally.weight;
        track.classId = classId;
        track.label = tally.label;
      }
    }
    if (track.hits >= o.minHits) track.confirmed = true;
    this.updateStationary(track, time);
  }

  /**
   * Stationary: confirmed, seen for at least stationarySeconds, and every matched centre of that
   * window within stationaryMaxMove × diagonal of the current one. It turns false on the first
   * frame whose centre left that circle, as the window then holds a far sample.
   */
  private updateStationary(track: Track, time: number): void {
    const o = this.options;
    const [cx, cy, w, h] = toCentre(track.box);
    const history = track.history;
    history.push({ time, cx, cy });
    const windowStart = time - o.stationarySeconds;
    // Keep one sample at or before the window's start: it proves the window is fully covered.
    while (history.length >= 2 && history[1]!.time <= windowStart) history.shift();
    const covered = history[0]!.time <= windowStart;
    const reach = o.stationaryMaxMove * Math.hypot(w, h);
    track.stationary = track.confirmed && covered && history.every((s) => Math.hypot(s.cx - cx, s.cy - cy) < reach);
  }
}

const byId = (a: TrackView, b: TrackView) => a.id - b.id;

/** Less than half of the box inside the frame (never, when the frame size is not given). */
function leftThePicture(box: Readonly<Box>, frame: TrackerFrame): boolean {
  if (frame.width === undefined || frame.height === undefined) return false;
  const inside = Math.max(0, Math.min(box[2], frame.width) - Math.max(box[0], 0)) * Math.max(0, Math.min(box[3], frame.height) - Math.max(box[1], 0));
  return inside < 0.5 * (box[2] - box[0]) * (box[3] - box[1]);
}

/**
 * Keeps detections at or above lowThreshold with a usable box, best first, each with the lower-score
 * boxes of other classes that cover the same object (IoU > duplicateIou) folded into it.
 */
function mergeDuplicates(detections: readonly Detection[], o: Readonly<TrackerOptions>): Candidate[] {
  const usable = detections
    .map((detection, index) => ({ index, detection, duplicates: [] as Detection[] }))
    .filter(({ detection: d }) => d.score >= o.lowThreshold && d.box.every(Number.isFinite) && d.box[2] > d.box[0] && d.box[3] > d.box[1])
    .sort((a, b) => b.detection.score - a.detection.score || a.index - b.index);
  const kept: Candidate[] = [];
  for (const c of usable) {
    const same = kept.find((k) => iou(k.detection.box, c.detection.box) > o.duplicateIou);
    if (same) same.duplicates.push(c.detection);
    else kept.push(c);
  }
  return kept;
}

/** Optimal IoU matching of tracks (predicted boxes) to candidates; returns what is left of each. */
function match(tracks: Track[], candidates: Candidate[], minIou: number): { matches: Array<[Track, Candidate]>; tracks: Track[]; candidates: Candidate[] } {
  const cost = tracks.map((t) => {
    const predicted = t.filter.box;
    return candidates.map((c) => 1 - iou(predicted, c.detection.box));
  });
  const result = assign(cost, candidates.length, 1 - minIou);
  return {
    matches: result.pairs.map(([r, c]) => [tracks[r]!, candidates[c]!]),
    tracks: result.unmatchedRows.map((r) => tracks[r]!),
    candidates: result.unmatchedColumns.map((c) => candidates[c]!),
  };
}
