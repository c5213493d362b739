/**
 * Frame sources for a camera URL: ffmpeg decodes files, RTSP, HTTP, v4l2 and test patterns behind a
 * bounded mailbox, with reconnects and stall detection; `synthetic:` URLs go to synthetic-source.ts.
 */
import { access } from 'node:fs/promises';
import type { PassThrough } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import { Observable, type Subscriber } from 'rxjs';
import { SourceError, errorMessage } from '../errors.js';
import { logger, type Logger } from '../log.js';
import { redactUrl } from '../redact.js';
import { isLive, sourceKind, type SourceKind } from '../config/source-kind.js';
import { FrameAssembler } from './frame-assembler.js';
import { ffmpegBinary, parseStreamInfo, type StreamInfo } from './ffmpeg-binary.js';
import { newSourceStats, type Frame, type FrameSourceOptions, type SourceStats } from './frame.js';
import { letterbox, type Letterbox } from './geometry.js';
import { readSyntheticFrames } from './synthetic-source.js';

/**
 * Decodes a video source with ffmpeg and emits frames **on demand**: one frame when subscribed, then
 * one more each time `demand$` emits (the stage downstream says it is ready). Between ffmpeg and the
 * consumer sits a bounded mailbox whose policy is where backpressure happens:
 * - live sources (and files with `realtime: true`): `queueFrames` slots (default 2); when a frame
 *   arrives to a full mailbox the oldest is dropped and counted, so the newest frames are the ones
 *   that wait; ffmpeg keeps reading the camera at its own pace. Two slots rather than one let a frame
 *   that arrives while the detector is briefly held up (a batch of other cameras, a garbage
 *   collection) wait instead of replacing its predecessor, at the cost of at most one frame period of
 *   extra latency while the pipeline is behind (docs/benchmarks.md);
 * - files: a small queue (`queueFrames`, default 4); when it is full, ffmpeg's stdout is paused, so
 *   ffmpeg blocks and nothing is dropped: the file is read exactly as fast as the pipeline processes it.
 * Either way memory stays bounded whatever the speeds. Live sources that end, fail or stall are
 * restarted with exponential backoff; files complete at their end (or loop).
 */
export function readFrames(options: FrameSourceOptions, demand$: Observable<unknown>): Observable<Frame> {
  // The synthetic camera renders in process, with ground truth: no ffmpeg (see synthetic-source.ts).
  if (sourceKind(options.url) === 'synthetic') return readSyntheticFrames(options, demand$);
  return new Observable<Frame>((subscriber) => {
    const source = new FfmpegSource(options, subscriber);
    const demandSubscription = demand$.subscribe(() => source.demand());
    source.onTeardown = () => demandSubscription.unsubscribe();
    source.open();
    return () => source.close();
  });
}

/** One subscription to an ffmpeg source: the mailbox, the demand credit, stalls and restarts. */
class FfmpegSource {
  private readonly kind: SourceKind;
  private readonly live: boolean;
  private readonly realtime: boolean;
  private readonly lossless: boolean;
  private readonly capacity: number;
  private readonly stats: SourceStats;
  private readonly log: Logger;
  private readonly shownUrl: string;
  private readonly stallMs: number;
  private readonly backoff: { initialS: number; maxS: number };

  private readonly mailbox: Frame[] = [];
  private credit = 1;
  private ended = false;
  private closed = false;
  private consecutiveFailures = 0;
  private run: FfmpegRun | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private delivered = 0;
  private startedAt = Date.now();
  private firstArrival: number | undefined;
  /** Called once when the source ends or is closed. */
  onTeardown: () => void = () => undefined;

  constructor(
    private readonly options: FrameSourceOptions,
    private readonly subscriber: Subscriber<Frame>,
  ) {
    this.kind = sourceKind(options.url);
    this.live = isLive(this.kind) && this.kind !== 'testsrc';
    this.realtime = options.realtime ?? (this.kind !== 'file');
    this.lossless = !this.realtime && !this.live;
    this.capacity = options.queueFrames ?? (this.lossless ? 4 : 2);
    this.stats = options.stats ?? newSourceStats();
    this.log = options.log ?? logger(`source/${options.camera}`);
    this.shownUrl = redactUrl(options.url);
    this.stallMs = (options.stallTimeoutS ?? 10) * 1000;
    this.backoff = options.reconnect ?? { initialS: 1, maxS: 30 };
  }

  /** Checks the source, then starts ffmpeg. */
  open(): void {
    void preflight(this.kind, this.options).then(
      () => {
        this.startedAt = Date.now();
        this.start();
      },
      (err: unknown) => this.finish(err instanceof SourceError ? err : new SourceError(this.shownUrl, errorMessage(err))),
    );
  }

  /** The consumer is ready for one more frame. */
  demand(): void {
    this.credit++;
    this.emitIfDemanded();
  }

  /** The subscriber unsubscribed. */
  close(): void {
    this.closed = true;
    this.teardown();
  }

  private finish(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.stats.state = 'ended';
    this.teardown();
    if (err) this.subscriber.error(err);
    else this.subscriber.complete();
  }

  private emitIfDemanded(): void {
    while (this.credit > 0 && this.mailbox.length > 0 && !this.closed) {
      this.credit--;
      this.subscriber.next(this.mailbox.shift()!);
    }
    if (this.lossless && this.run?.paused && this.mailbox.length < this.capacity) this.run.resume();
    if (this.ended && this.mailbox.length === 0) this.finish();
  }

  private accept(frame: Frame): void {
    const { mailbox, lossless, capacity } = this;
    if (mailbox.length >= capacity) {
      if (lossless) {
        // Cannot happen while paused; guard anyway so the bound holds.
        this.run?.pause();
      } else {
        mailbox.shift();
        this.stats.dropped++;
      }
    }
    mailbox.push(frame);
    this.stats.maxQueued = Math.max(this.stats.maxQueued, mailbox.length);
    if (lossless && mailbox.length >= capacity) this.run?.pause();
    this.emitIfDemanded();
  }

  private armStallTimer(): void {
    if (!this.live) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => this.restart(`no frame for ${this.stallMs / 1000} s (stalled)`), this.stallMs);
  }

  private restart(reason: string): void {
    if (this.closed) return;
    clearTimeout(this.stallTimer);
    this.run?.kill();
    this.run = undefined;
    const delayS = Math.min(this.backoff.maxS, this.backoff.initialS * 2 ** this.consecutiveFailures);
    this.consecutiveFailures++;
    this.stats.restarts++;
    this.stats.state = 'reconnecting';
    this.log.warn(`${this.shownUrl}: ${reason}; restarting ffmpeg in ${delayS} s (attempt ${this.consecutiveFailures})`, { delay_s: delayS, attempt: this.consecutiveFailures });
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => this.start(), delayS * 1000);
  }

  private start(): void {
    if (this.closed) return;
    this.armStallTimer();
    this.run = spawnFfmpeg(this.kind, this.options, this.realtime, {
      onInfo: (info) => this.log.info(`${this.shownUrl}: ${info.width}x${info.height}${info.fps ? ` @ ${info.fps} fps` : ''}`),
      onFrame: (pixels, info, geometry, rate) => this.onFrame(pixels, info, geometry, rate),
      onExit: (error) => this.onExit(error),
    }, this.log);
  }

  private onFrame(pixels: Buffer, info: StreamInfo, geometry: Letterbox, rate: number): void {
    const now = Date.now();
    const index = this.delivered++;
    this.stats.framesIn++;
    if (this.consecutiveFailures > 0) this.log.info(`${this.shownUrl}: frames are flowing again`);
    this.consecutiveFailures = 0;
    this.stats.state = 'running';
    this.armStallTimer();
    let streamTime: number;
    let ts: number;
    if (this.live) {
      this.firstArrival ??= now;
      streamTime = (now - this.firstArrival) / 1000;
      ts = now;
    } else {
      streamTime = index / rate;
      ts = this.startedAt + streamTime * 1000;
    }
    const out = this.options.output;
    this.accept({ camera: this.options.camera, index, streamTime, ts, width: info.width, height: info.height, pixels, pixelFormat: out.pixelFormat, geometry, padValue: out.padValue, decodedAt: performance.now() });
  }

  private onExit(error: string | undefined): void {
    if (this.closed) return;
    if (this.live) {
      this.restart(error ? `ffmpeg failed: ${error}` : 'stream ended');
    } else if (error) {
      this.finish(new SourceError(this.shownUrl, `ffmpeg failed: ${error}`));
    } else {
      this.ended = true;
      this.emitIfDemanded();
    }
  }

  private teardown(): void {
    clearTimeout(this.stallTimer);
    clearTimeout(this.restartTimer);
    this.onTeardown();
    this.run?.kill();
    this.run = undefined;
    this.mailbox.length = 0;
  }
}

/** Local sources are checked before ffmpeg starts, for an error that names the file. */
async function preflight(kind: SourceKind, options: FrameSourceOptions): Promise<void> {
  if (kind === 'file') {
    try {
      await access(options.url);
    } catch {
      throw new SourceError(options.url, 'file not found');
    }
  }
  if (kind === 'testsrc') testsrcGraph(options.url);
}

/** `testsrc:` or `testsrc:size=320x240:rate=10` → the lavfi graph `testsrc=size=320x240:rate=10`. */
export function testsrcGraph(url: string): string {
  const params = url.slice('testsrc:'.length).replace(/^\?/, '').replace(/&/g, ':');
  if (params && !/^[a-z_]+=[a-zA-Z0-9.]+(:[a-z_]+=[a-zA-Z0-9.]+)*$/.test(params)) {
    throw new SourceError(url, 'testsrc options must look like size=320x240:rate=10');
  }
  return params ? `testsrc=${params}` : 'testsrc=size=640x480:rate=25';
}

interface FfmpegRun {
  paused: boolean;
  pause(): void;
  resume(): void;
  kill(): void;
}

interface RunCallbacks {
  onInfo(info: StreamInfo): void;
  onFrame(pixels: Buffer, info: StreamInfo, geometry: Letterbox, rate: number): void;
  onExit(error?: string): void;
}

/** The ffmpeg command for a source: its input options by kind, scaled and padded to the model's input, raw frames out. */
function ffmpegCommand(kind: SourceKind, options: FrameSourceOptions, realtime: boolean): ffmpeg.FfmpegCommand {
  const out = options.output;
  const padXY = out.align === 'center' ? '(ow-iw)/2:(oh-ih)/2' : '0:0';
  const hex = Math.max(0, Math.min(255, Math.round(out.padValue))).toString(16).padStart(2, '0');
  const filters = [
    ...(options.fps ? [`fps=fps=${options.fps}`] : []),
    `scale=${out.width}:${out.height}:force_original_aspect_ratio=decrease:flags=bilinear`,
    `pad=${out.width}:${out.height}:${padXY}:color=0x${hex}${hex}${hex}`,
  ];

  const command = ffmpeg({ stdoutLines: 0 }).setFfmpegPath(options.ffmpegPath ?? ffmpegBinary().path);
  const inputOptions = ['-hide_banner', '-nostdin'];
  switch (kind) {
    case 'file':
      if (options.loop) inputOptions.push('-stream_loop', '-1');
      if (realtime) inputOptions.push('-re');
      command.input(options.url);
      break;
    case 'testsrc':
      if (realtime) inputOptions.push('-re');
      command.input(testsrcGraph(options.url)).inputFormat('lavfi');
      break;
    case 'rtsp':
      inputOptions.push('-rtsp_transport', 'tcp', '-fflags', 'nobuffer', '-flags', 'low_delay');
      command.input(options.url);
      break;
    case 'http':
      command.input(options.url);
      break;
    case 'v4l2':
      command.input(options.url).inputFormat('v4l2');
      break;
  }
  return command.inputOptions(inputOptions).outputOptions(['-an', '-sn', '-vf', filters.join(','), '-pix_fmt', out.pixelFormat]).format('rawvideo');
}

/** Starts ffmpeg on a source and cuts its output into frames, reported through `callbacks`. */
function spawnFfmpeg(kind: SourceKind, options: FrameSourceOptions, realtime: boolean, callbacks: RunCallbacks, log: Logger): FfmpegRun {
  const out = options.output;
  const frameBytes = out.width * out.height * 3;
  const command = ffmpegCommand(kind, options, realtime);

  let info: StreamInfo | undefined;
  let geometry: Letterbox | undefined;
  let rate = options.fps ?? 25;
  let lastStderr = '';
  let killed = false;
  let inputSection = true;
  // Frames that arrive before the stream banner was parsed (pipes are read in no set order).
  const early: Buffer[] = [];
  const assembler = new FrameAssembler(frameBytes);

  command.on('start', (line: string) => log.debug(`ffmpeg: ${redactUrl(line)}`));
  command.on('stderr', (line: string) => {
    if (line.trim() && !/^(Conversion failed|Exiting normally)/.test(line.trim())) lastStderr = line.trim();
    if (line.startsWith('Output #') || line.startsWith('Stream mapping')) inputSection = false;
    if (!info && inputSection) {
      const found = parseStreamInfo(line);
      if (found) {
        info = found;
        geometry = letterbox(found.width, found.height, out.width, out.height, out.align);
        rate = options.fps ?? found.fps ?? 25;
        callbacks.onInfo(found);
        for (const pixels of early.splice(0)) callbacks.onFrame(pixels, found, geometry, rate);
      }
    }
  });
  // A clean end is reported only once ffmpeg exited AND every byte it wrote became a frame: ffmpeg
  // can exit while its last frames still sit in the pipe (the consumer paused it).
  let exit: { error?: string } | undefined;
  let streamEnded = false;
  let reported = false;
  const maybeReportExit = () => {
    if (reported || killed || !exit) return;
    if (exit.error === undefined && !(streamEnded && assembler.readyFrames === 0)) return;
    reported = true;
    callbacks.onExit(exit.error);
  };
  command.on('error', (err: Error) => {
    exit = { error: redactUrl(lastStderr || err.message) };
    maybeReportExit();
  });
  command.on('end', () => {
    exit = {};
    maybeReportExit();
  });

  const stream = command.pipe() as PassThrough;
  // Hands out whole frames; stops as soon as the consumer paused, so later frames wait here (at most
  // the chunk in flight when it paused, then in the pipe, blocking ffmpeg), never in the mailbox.
  const cutFrames = () => {
    while (assembler.readyFrames > 0 && !handle.paused && !killed) {
      const pixels = assembler.take()!;
      if (info && geometry) callbacks.onFrame(pixels, info, geometry, rate);
      else if (early.length < 8) early.push(pixels);
    }
    maybeReportExit();
  };
  stream.on('data', (chunk: Buffer) => {
    assembler.push(chunk);
    cutFrames();
  });
  stream.on('end', () => {
    streamEnded = true;
    maybeReportExit();
  });
  stream.on('error', () => undefined);

  const handle: FfmpegRun = {
    paused: false,
    pause() {
      if (!handle.paused) {
        handle.paused = true;
        stream.pause();
      }
    },
    resume() {
      if (handle.paused) {
        handle.paused = false;
        cutFrames();
        if (!handle.paused) stream.resume();
      }
    },
    kill() {
      if (killed) return;
      killed = true;
      command.kill('SIGKILL');
    },
  };
  return handle;
}
