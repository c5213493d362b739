import { randomBytes } from 'node:crypto';
import type { ZoneConfig } from '../config/schema.js';
import type { CountChange, EventMessage, EventOutput, EventState } from '../publish/messages.js';
import type { Frame } from '../source/frame.js';
import { compileZones, ZonePresence, type Zone } from './zones.js';

/** What the event layer needs of a track (the tracker gives more). */
export interface TrackedObject {
  id: number;
  label: string;
  /** Score of this frame's matched detection, or the last one while the object is lost. */
  score: number;
  box: readonly [number, number, number, number];
  stationary: boolean;
  /** The tracker is sure of it (enough matched frames). */
  confirmed: boolean;
  /** Index of the detection that matched the track in this frame; undefined when none did. */
  detection: number | undefined;
}

export interface EventBuilderOptions {
  camera: string;
  model: { name: string; version: string };
  /** A frame counts toward confirmation when the track's score is at least this. */
  threshold: number;
  minFrames: number;
  updateIntervalS: number;
  zones: Record<string, ZoneConfig>;
  /** Keep the best frame of each event and ask for its snapshot. */
  snapshots: boolean;
  /** Labels whose counts are announced (as 0) before anything is seen. */
  knownLabels?: readonly string[];
}

interface TrackState {
  framesAbove: number;
  presence: ZonePresence;
  firstTs: number;
  lastSeenTs: number;
  lastBox: [number, number, number, number];
  lastScore: number;
  topScore: number;
  best?: { score: number; frame: Frame; box: readonly [number, number, number, number] };
  bestChanged: boolean;
  event?: EventState;
  published?: EventState;
  publishedAt: number;
  messages: number;
  /** The model whose detection last matched the track (a teacher serving the camera, else the camera's). */
  model?: { name: string; version: string };
}

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

/**
 * Turns tracks into events: a confirmed track becomes `new`, then `update` only when something a
 * subscriber cares about changed (zones, label, a better score, stationary), at most once per
 * update interval, then `end` when the tracker gives the object up. Also keeps the per-label and
 * per-zone counts of objects in view, and says when a snapshot is due.
 */
export class EventBuilder {
  private readonly tracks = new Map<number, TrackState>();
  private zones: Zone[] | undefined;
  private readonly counts = new Map<string, number>();
  private readonly opts: EventBuilderOptions;

  constructor(options: EventBuilderOptions) {
    this.opts = options;
  }

  /** Counts at start: 0 for every known label, overall and per zone. */
  initialCounts(): CountChange[] {
    const changes: CountChange[] = [];
    for (const label of this.opts.knownLabels ?? []) {
      changes.push({ label, count: 0 });
      for (const zone of Object.keys(this.opts.zones)) changes.push({ label, zone, count: 0 });
    }
    for (const c of changes) this.counts.set(countKey(c.label, c.zone), 0);
    return changes;
  }

  /** One frame's tracks (alive ones) and the tracks that ended with this frame. */
  /** `model`: the model whose detections these are, when not the camera's own (a teacher serving it); `threshold`: the score they count from, when not the option's. */
  update(frame: Frame, active: readonly TrackedObject[], ended: readonly TrackedObject[], model?: { name: string; version: string }, threshold = this.opts.threshold): EventOutput {
    this.zones ??= compileZones(this.opts.zones, frame.width, frame.height);
    const out: EventOutput = { messages: [], snapshots: [], counts: [] };
    const now = frame.ts / 1000;

    for (const track of active) {
      let state = this.tracks.get(track.id);
      if (!state) {
        state = { framesAbove: 0, presence: new ZonePresence(), firstTs: now, lastSeenTs: now, lastBox: [...track.box], lastScore: track.score, topScore: 0, bestChanged: false, publishedAt: -Infinity, messages: 0 };
        this.tracks.set(track.id, state);
      }
      if (track.detection !== undefined) {
        state.model = model ?? this.opts.model;
        if (track.score >= threshold) state.framesAbove++;
        state.presence.update(this.zones, track.box, track.label);
        state.lastSeenTs = now;
        state.lastBox = [...track.box];
        state.lastScore = track.score;
        if (track.score > state.topScore) state.topScore = track.score;
        if (this.opts.snapshots && track.score > (state.best?.score ?? 0)) {
          state.best = { score: track.score, frame, box: [...track.box] };
          state.bestChanged = true;
        }
      }
      if (!state.event) {
        if (state.framesAbove < this.opts.minFrames || !track.confirmed) continue;
        state.event = this.stateOf(track, state, `${now.toFixed(6)}-${randomBytes(3).toString('hex')}`);
        this.publish(state, 'new', state.event, now, out);
        if (state.best && this.opts.snapshots) out.snapshots.push({ event: state.event, frame: state.best.frame, box: state.best.box });
        state.bestChanged = false;
        continue;
      }
      const next = this.stateOf(track, state, state.event.id);
      state.event = next;
      if (meaningfulChange(state.published!, next) && now - state.publishedAt >= this.opts.updateIntervalS) {
        this.publish(state, 'update', next, now, out);
      }
    }

    for (const track of ended) {
      const state = this.tracks.get(track.id);
      this.tracks.delete(track.id);
      if (!state?.event) continue;
      this.endEvent(state, out);
    }
    this.forgetGone(active, out);
    this.countChanges(out);
    return out;
  }

  /**
   * State lives only while its track does: a track that is neither alive nor ended this frame was
   * dropped (a tentative track the tracker gave up without a word), and its state, best frame
   * included, goes with it. An event it had still gets its `end`.
   */
  private forgetGone(active: readonly TrackedObject[], out: EventOutput): void {
    if (this.tracks.size === active.length) return;
    const alive = new Set(active.map((t) => t.id));
    for (const [id, state] of this.tracks) {
      if (alive.has(id)) continue;
      this.tracks.delete(id);
      if (state.event) this.endEvent(state, out);
    }
  }

  /** Tracks whose state is kept (alive ones only), for tools and tests. */
  get trackedStates(): number {
    return this.tracks.size;
  }

  /** Ends every open event (end of the stream, or shutdown). */
  flush(): EventOutput {
    const out: EventOutput = { messages: [], snapshots: [], counts: [] };
    for (const state of this.tracks.values()) if (state.event) this.endEvent(state, out);
    this.tracks.clear();
    this.countChanges(out);
    return out;
  }

  /** Events currently open, for tools and tests. */
  get openEvents(): EventState[] {
    return [...this.tracks.values()].flatMap((s) => (s.event ? [s.event] : []));
  }

  private endEvent(state: TrackState, out: EventOutput): void {
    const final: EventState = { ...state.event!, end_time: round(state.lastSeenTs, 3) };
    if (state.bestChanged && state.best && this.opts.snapshots) {
      out.snapshots.push({ event: final, frame: state.best.frame, box: state.best.box });
      state.bestChanged = false;
    }
    this.publish(state, 'end', final, state.lastSeenTs, out);
  }

  private publish(state: TrackState, type: EventMessage['type'], after: EventState, now: number, out: EventOutput): void {
    const withSnapshot = { ...after, has_snapshot: this.opts.snapshots && Boolean(state.best) };
    state.messages++;
    out.messages.push({ id: `${after.id}:${state.messages}`, type, before: state.published ?? withSnapshot, after: withSnapshot });
    state.published = withSnapshot;
    state.event = withSnapshot;
    state.publishedAt = now;
  }

  private stateOf(track: TrackedObject, state: TrackState, id: string): EventState {
    return {
      id,
      camera: this.opts.camera,
      label: track.label,
      score: round(state.lastScore, 3),
      top_score: round(state.topScore, 3),
      box: state.lastBox.map((v) => round(v, 1)) as [number, number, number, number],
      start_time: round(state.firstTs, 3),
      end_time: null,
      current_zones: state.presence.current,
      entered_zones: [...state.presence.entered].sort(),
      stationary: track.stationary,
      has_snapshot: this.opts.snapshots && Boolean(state.best),
      model: state.model ?? this.opts.model,
    };
  }

  private countChanges(out: EventOutput): void {
    const now = new Map<string, number>();
    for (const state of this.tracks.values()) {
      const event = state.event;
      if (!event) continue;
      now.set(countKey(event.label), (now.get(countKey(event.label)) ?? 0) + 1);
      for (const zone of event.current_zones) now.set(countKey(event.label, zone), (now.get(countKey(event.label, zone)) ?? 0) + 1);
    }
    for (const key of new Set([...this.counts.keys(), ...now.keys()])) {
      const count = now.get(key) ?? 0;
      if (this.counts.get(key) === count) continue;
      this.counts.set(key, count);
      const [label, zone] = key.split('\u0000') as [string, string | undefined];
      out.counts.push(zone ? { label, zone, count } : { label, count });
    }
  }
}

function countKey(label: string, zone?: string): string {
  return zone ? `${label}\u0000${zone}` : label;
}

function meaningfulChange(before: EventState, after: EventState): boolean {
  return (
    before.label !== after.label ||
    before.stationary !== after.stationary ||
    after.top_score >= before.top_score + 0.02 ||
    before.current_zones.join() !== after.current_zones.join() ||
    before.entered_zones.join() !== after.entered_zones.join()
  );
}
