import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { SingleBar } from 'cli-progress';
import { BeatsError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { logger } from '../log.js';
import { ffmpegBinary } from '../source/ffmpeg-binary.js';
import { SYNTHETIC_CLASSES, SyntheticScene, sceneOptionsFrom, syntheticUrl, type SceneOptions, type SyntheticBox, type SyntheticUrlKey } from '../source/synthetic/index.js';

const log = logger('synth');
const run = promisify(execFile);

/** Boxes whose object is less visible than this are left out of truth.jsonl. */
export const TRUTH_MIN_VISIBLE = 0.3;

export interface SynthCliOptions {
  output: string;
  seconds: string;
  scene?: string;
  seed?: string;
  size?: string;
  fps?: string;
  domain?: string;
  shift?: string;
  shiftAt?: string;
}

const FLAGS: Record<SyntheticUrlKey, string> = {
  scene: '--scene',
  seed: '--seed',
  size: '--size',
  fps: '--fps',
  domain: '--domain',
  shift: '--shift',
  shift_at: '--shift-at',
  seconds: '--seconds',
};

/** One line of truth.jsonl: the boxes of a frame whose objects are at least 30 % visible. */
export function truthLine(frame: number, time: number, boxes: readonly SyntheticBox[]): string {
  const r = (v: number) => Math.round(v * 10) / 10;
  const kept = boxes.filter((b) => b.visible >= TRUTH_MIN_VISIBLE).map((b) => ({ id: b.id, label: b.label, box: b.box.map(r), visible: b.visible }));
  return JSON.stringify({ frame, time: Math.round(time * 1e6) / 1e6, boxes: kept });
}

async function pickEncoder(ffmpeg: string): Promise<{ name: string; args: string[] }> {
  const { stdout } = await run(ffmpeg, ['-hide_banner', '-encoders'], { maxBuffer: 1 << 22 }).catch(() => ({ stdout: '' }));
  return /^\s*V\S*\s+libx264\s/m.test(stdout) ? { name: 'libx264', args: ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '18'] } : { name: 'mpeg4', args: ['-c:v', 'mpeg4', '-q:v', '2'] };
}

/**
 * `beats synth`: renders a synthetic scene to DIR/video.mp4 (raw RGB frames piped into ffmpeg),
 * DIR/truth.jsonl (one line per frame) and DIR/scene.json (the options). Everything is written under
 * temporary names and renamed at the end, scene.json last; an interrupted run leaves nothing behind.
 */
export async function synthCommand(opts: SynthCliOptions): Promise<void> {
  const options = sceneOptions(opts);
  const frames = Math.max(1, Math.ceil(options.seconds * options.fps - 1e-9));

  const dir = path.resolve(opts.output);
  await mkdir(dir, { recursive: true });
  const ffmpeg = ffmpegBinary().path;
  const encoder = await pickEncoder(ffmpeg);
  const suffix = `.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const videoFile = path.join(dir, 'video.mp4');
  const truthFile = path.join(dir, 'truth.jsonl');
  const videoTmp = videoFile + suffix;
  const truthTmp = truthFile + suffix;

  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) return;
    log.warn(`${signal}: stopping; the partial output is removed`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const { child, exited, stderr } = startEncoder(ffmpeg, encoder, options, videoTmp);
  const onAbort = () => child.kill('SIGKILL');
  controller.signal.addEventListener('abort', onAbort);

  const bar = new SingleBar({
    format: `synth ${options.scene} [{bar}] {percentage}% {value}/{total} frames {eta_formatted}`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 1000,
    hideCursor: true,
  });
  const truth = await open(truthTmp, 'w');
  let boxes = 0;
  let completed = false;
  try {
    log.info(`${syntheticUrl(options)}: ${frames} frames → ${dir} (${encoder.name})`);
    bar.start(frames, 0);
    const scene = new SyntheticScene(options);
    let lines: string[] = [];
    for (let i = 0; i < frames; i++) {
      if (controller.signal.aborted) break;
      const frame = scene.next();
      const line = truthLine(frame.index, frame.time, frame.boxes);
      boxes += frame.boxes.filter((b) => b.visible >= TRUTH_MIN_VISIBLE).length;
      lines.push(line);
      if (!child.stdin.write(frame.rgb)) await drained(child, controller.signal, exited);
      if (lines.length >= 100 || i === frames - 1) {
        await truth.write(lines.join('\n') + '\n');
        lines = [];
      }
      if (child.exitCode !== null) break;
      bar.update(i + 1);
    }
    bar.stop();
    child.stdin.end();
    const result = await exited;
    if (controller.signal.aborted) {
      process.exitCode = 130;
      return;
    }
    if (result.error) throw new BeatsError(`ffmpeg (${ffmpeg}) could not start: ${result.error.message}`);
    if (result.code !== 0) throw new BeatsError(`ffmpeg failed (exit ${result.code}): ${stderr().trim().split('\n').slice(-3).join(' | ') || 'no message'}`);
    await truth.sync();
    await truth.close();
    await syncFile(videoTmp);
    await rename(truthTmp, truthFile);
    await rename(videoTmp, videoFile);
    await writeFileAtomic(path.join(dir, 'scene.json'), JSON.stringify(sceneJson(options, frames, encoder.name), null, 2) + '\n');
    completed = true;
    log.info(`wrote ${videoFile} (${frames} frames, ${options.width}x${options.height} @ ${options.fps} fps), ${truthFile} (${boxes} boxes), scene.json`);
  } finally {
    bar.stop();
    controller.signal.removeEventListener('abort', onAbort);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!completed) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await truth.close().catch(() => undefined);
      await rm(truthTmp, { force: true });
      await rm(videoTmp, { force: true });
    }
  }
}

/** The scene from the command's flags; an error names the flag. */
function sceneOptions(opts: SynthCliOptions): SceneOptions & { seconds: number } {
  const values = new Map<string, string>();
  const given: Array<[SyntheticUrlKey, string | undefined]> = [
    ['scene', opts.scene],
    ['seed', opts.seed],
    ['size', opts.size],
    ['fps', opts.fps],
    ['domain', opts.domain],
    ['shift', opts.shift],
    ['shift_at', opts.shiftAt],
    ['seconds', opts.seconds],
  ];
  for (const [key, value] of given) if (value !== undefined) values.set(key, value);
  const flag = (key: string) => (key in FLAGS ? FLAGS[key as SyntheticUrlKey] : key);
  const options = sceneOptionsFrom(
    values,
    (key, message) => {
      throw new BeatsError(`${flag(key)}: ${message}`);
    },
    flag,
  );
  if (options.seconds === undefined) throw new BeatsError('--seconds: required');
  if (options.width % 2 !== 0 || options.height % 2 !== 0) throw new BeatsError(`--size: width and height must be even for a yuv420p video, not ${options.width}x${options.height}`);
  return { ...options, seconds: options.seconds };
}

interface Encoder {
  child: ChildProcessByStdio<Writable, null, Readable>;
  /** Resolves when ffmpeg has exited (never rejects). */
  exited: Promise<{ code: number | null; error?: Error }>;
  /** The last 4000 characters ffmpeg wrote to stderr. */
  stderr(): string;
}

/** ffmpeg encoding raw RGB frames from its stdin into `file` (mp4, yuv420p). */
function startEncoder(ffmpeg: string, encoder: { args: string[] }, options: SceneOptions, file: string): Encoder {
  const args = [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${options.width}x${options.height}`, '-framerate', String(options.fps), '-i', 'pipe:0',
    '-an', ...encoder.args, '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-f', 'mp4', file,
  ];
  const child = spawn(ffmpeg, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
  child.stdin.on('error', () => undefined);
  return { child, exited, stderr: () => stderr };
}

/** Resolves when ffmpeg's stdin drained, the run was aborted, or ffmpeg exited. */
function drained(child: Encoder['child'], signal: AbortSignal, exited: Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      child.stdin.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    child.stdin.on('drain', done);
    signal.addEventListener('abort', done);
    void exited.then(done);
  });
}

/** scene.json: the options, the video's encoder and the rule truth.jsonl follows. */
function sceneJson(options: SceneOptions & { seconds: number }, frames: number, encoder: string) {
  return {
    url: syntheticUrl(options),
    scene: options.scene,
    seed: options.seed,
    width: options.width,
    height: options.height,
    fps: options.fps,
    domain: options.domain,
    shift: options.shift ?? null,
    seconds: options.seconds,
    frames,
    classes: SYNTHETIC_CLASSES,
    video: { file: 'video.mp4', encoder },
    truth: {
      file: 'truth.jsonl',
      min_visible: TRUTH_MIN_VISIBLE,
      rule: `one line per frame; boxes of objects with visible >= ${TRUTH_MIN_VISIBLE} (fraction of the object's silhouette in the frame and not hidden), [x1, y1, x2, y2] visible extent in frame pixels (x2, y2 exclusive), rounded to 0.1`,
    },
  };
}

async function syncFile(file: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
