import type { CameraStats, FrameResult } from '../pipeline/types.js';
import { detectionsMessage, type DetectionsMessage, type EventMessage, type EventState } from '../publish/messages.js';
import { frameJpeg } from './frame-jpeg.js';

/** What the monitor knows of a camera from the start. */
export interface LiveCameraInfo {
  name: string;
  model: { name: string; version: string };
  classes: readonly string[];
  /** The camera's counters, kept by the pipeline (read, never written here). */
  stats: CameraStats;
  /** A camera or stream: it never ends on its own, so an end is a failure. */
  live: boolean;
  /** A file that is not looped: its end is the normal end. */
  finite: boolean;
  /** Running but no processed frame for this long: stalled. */
  stallAfterS: number;
}

/** The payload of `/api/cameras/<name>/live`: one frame, its picture and what was found in it. */
export interface LiveFrame {
  camera: string;
  frame: number;
  /** Epoch ms. */
  ts: number;
  /** Source size: the space of the boxes. */
  width: number;
  height: number;
  /** `data:image/jpeg;base64,...` of the frame (model resolution, no padding). */
  image: string;
  detections: DetectionsMessage['detections'];
  tracks: Array<{ id: number; label: string; score: number; box: number[]; confirmed: boolean; lost: boolean }>;
}

/** An event as the live page lists it: its latest state, and which message brought it. */
export type RecentEvent = Omit<EventState, 'camera' | 'model'> & {
  type: EventMessage['type'];
  /** Epoch ms of the latest message. */
  updated: number;
};

export type CameraHealthState = 'starting' | 'running' | 'stalled' | 'reconnecting' | 'ended';

export interface CameraHealth {
  state: CameraHealthState;
  /** Whether this state is healthy: running, or a finite file that ended. */
  ok: boolean;
  live: boolean;
  /** Seconds since the last processed frame; null before the first. */
  last_frame_age_s: number | null;
  restarts: number;
}

interface CameraLive {
  info: LiveCameraInfo;
  latest?: FrameResult;
  /** Date.now() of the latest processed frame. */
  latestAt?: number;
  ended: boolean;
  rendered?: { index: number; at: number; body: LiveFrame };
  rendering?: Promise<LiveFrame>;
  /** Latest message per event, oldest first, bounded. */
  events: Map<string, RecentEvent>;
}

export interface LiveMonitorOptions {
  /** Most renders per second per camera, whatever the number of viewers. */
  liveFps: number;
  jpegQuality?: number;
  /** Events kept per camera for the page (default 50). */
  maxEvents?: number;
}

/**
 * What the HTTP server shows, fed by the pipeline. The frame path only stores references
 * (`onResult`); pictures are encoded when a viewer asks (`live`), at most `liveFps` times a second
 * per camera: viewers in between get the same picture, a viewer that asks while one is being
 * encoded shares it, and frames that came in the meantime are skipped, never queued.
 */
export class LiveMonitor {
  private readonly cameras = new Map<string, CameraLive>();
  private readonly startedAt = Date.now();
  private readonly minIntervalMs: number;
  private readonly quality: number;
  private readonly maxEvents: number;

  constructor(cameras: readonly LiveCameraInfo[], options: LiveMonitorOptions) {
    for (const info of cameras) this.cameras.set(info.name, { info, ended: false, events: new Map() });
    this.minIntervalMs = 1000 / options.liveFps;
    this.quality = options.jpegQuality ?? 75;
    this.maxEvents = options.maxEvents ?? 50;
  }

  get names(): string[] {
    return [...this.cameras.keys()];
  }

  info(camera: string): LiveCameraInfo | undefined {
    return this.cameras.get(camera)?.info;
  }

  /** A processed frame (the frame path: references only). */
  onResult(result: FrameResult): void {
    const camera = this.cameras.get(result.camera);
    if (!camera) return;
    camera.latest = result;
    camera.latestAt = Date.now();
  }

  onEvent(message: EventMessage): void {
    const camera = this.cameras.get(message.after.camera);
    if (!camera) return;
    const e = message.after;
    camera.events.delete(e.id);
    camera.events.set(e.id, {
      id: e.id,
      type: message.type,
      label: e.label,
      score: e.score,
      top_score: e.top_score,
      box: e.box,
      start_time: e.start_time,
      end_time: e.end_time,
      current_zones: e.current_zones,
      entered_zones: e.entered_zones,
      stationary: e.stationary,
      has_snapshot: e.has_snapshot,
      updated: Date.now(),
    });
    if (camera.events.size > this.maxEvents) camera.events.delete(camera.events.keys().next().value!);
  }

  /** The camera's chain completed (end of a file, --max-frames, or stop). */
  ended(camera: string): void {
    const c = this.cameras.get(camera);
    if (c) c.ended = true;
  }

  /** Most recent first. */
  events(camera: string): RecentEvent[] | undefined {
    const c = this.cameras.get(camera);
    return c ? [...c.events.values()].reverse() : undefined;
  }

  /** The latest frame as a viewer gets it, or undefined before the first frame (or for an unknown camera). */
  async live(camera: string): Promise<LiveFrame | undefined> {
    const c = this.cameras.get(camera);
    const latest = c?.latest;
    if (!c || !latest) return undefined;
    const now = Date.now();
    if (c.rendered && (c.rendered.index === latest.frame.index || now - c.rendered.at < this.minIntervalMs)) return c.rendered.body;
    if (c.rendering) return c.rendering;
    // One render at a time per camera: it is the only one, so it clears itself when done.
    const rendering = this.render(latest)
      .then((body) => {
        c.rendered = { index: body.frame, at: Date.now(), body };
        return body;
      })
      .finally(() => (c.rendering = undefined));
    c.rendering = rendering;
    return rendering;
  }

  health(camera: string, now = Date.now()): CameraHealth | undefined {
    const c = this.cameras.get(camera);
    if (!c) return undefined;
    const { info } = c;
    const source = info.stats.source;
    const age = c.latestAt === undefined ? null : (now - c.latestAt) / 1000;
    let state: CameraHealthState;
    if (c.ended || source.state === 'ended') state = 'ended';
    else if (source.state === 'reconnecting') state = 'reconnecting';
    else if (source.state === 'starting') state = 'starting';
    else state = (now - (c.latestAt ?? this.startedAt)) / 1000 > info.stallAfterS ? 'stalled' : 'running';
    const ok = state === 'running' || (state === 'ended' && info.finite);
    return { state, ok, live: info.live, last_frame_age_s: age === null ? null : Math.round(age * 1000) / 1000, restarts: source.restarts };
  }

  private async render(result: FrameResult): Promise<LiveFrame> {
    const { frame } = result;
    const jpeg = await frameJpeg(frame, this.quality);
    const model = this.cameras.get(result.camera)!.info.model;
    return {
      camera: result.camera,
      frame: frame.index,
      ts: Math.round(frame.ts),
      width: frame.width,
      height: frame.height,
      image: `data:image/jpeg;base64,${jpeg.toString('base64')}`,
      detections: detectionsMessage(result.camera, frame, model, result.detections).detections,
      tracks: result.tracks.map((t) => ({
        id: t.id,
        label: t.label,
        score: Math.round(t.score * 1000) / 1000,
        box: t.box.map((v) => Math.round(v * 10) / 10),
        confirmed: t.confirmed,
        lost: t.detection === undefined,
      })),
    };
  }
}
