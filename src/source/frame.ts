/**
 * The vocabulary of frame sources: a decoded frame, the output a source is asked for, its counters
 * and options. A leaf: the sources (frames.ts, synthetic-source.ts) and everything downstream import it.
 */
import type { Logger } from '../log.js';
import type { Letterbox, PadAlign } from './geometry.js';

/** One decoded frame, already letterboxed by ffmpeg to the model's input size. */
export interface Frame {
  camera: string;
  /** Position of the frame in what the source delivered in this run, from 0 (dropped ones count). */
  index: number;
  /**
   * Seconds since the start of the stream. Files and test patterns: index / frame rate, so results
   * do not depend on how fast the machine reads. Live sources: time since the first frame arrived.
   */
  streamTime: number;
  /** Epoch milliseconds: the run's start plus streamTime for files, arrival time for live sources. */
  ts: number;
  /** Source frame size, the space that published boxes are in. */
  width: number;
  height: number;
  /** Model input pixels, interleaved, `geometry.width * geometry.height * 3` bytes. */
  pixels: Buffer;
  pixelFormat: PixelFormat;
  geometry: Letterbox;
  /** The letterbox's pad value, when the source knows it (the output it was asked for). */
  padValue?: number;
  /**
   * `performance.now()` when the source had the frame decoded (before it waited in the mailbox):
   * where a frame's latency to its MQTT publish starts (beats_frame_latency_seconds).
   */
  decodedAt?: number;
}

export type PixelFormat = 'rgb24' | 'bgr24';

export interface FrameOutput {
  width: number;
  height: number;
  pixelFormat: PixelFormat;
  padValue: number;
  align: PadAlign;
}

/** Counters a source keeps while it runs; read by the status line and the metrics. */
export interface SourceStats {
  framesIn: number;
  dropped: number;
  restarts: number;
  /** The most frames that ever waited in the mailbox at once (its bound: 1 live, 4 files). */
  maxQueued: number;
  state: 'starting' | 'running' | 'reconnecting' | 'ended';
}

export function newSourceStats(): SourceStats {
  return { framesIn: 0, dropped: 0, restarts: 0, maxQueued: 0, state: 'starting' };
}

export interface FrameSourceOptions {
  camera: string;
  url: string;
  output: FrameOutput;
  fps?: number;
  loop?: boolean;
  realtime?: boolean;
  /** Frames that may wait in the mailbox (default: 2 live or paced, 4 files). */
  queueFrames?: number;
  stallTimeoutS?: number;
  reconnect?: { initialS: number; maxS: number };
  /** ffmpeg binary; default: the system one, else the npm package's. */
  ffmpegPath?: string;
  stats?: SourceStats;
  log?: Logger;
}
