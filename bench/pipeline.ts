/**
 * `npm run bench`: on the highway video with YOLOX-Nano, in one run and side by side:
 * decode-only fps (ffmpeg → frames), inference-only fps (frames already in memory → detections), and
 * the whole pipeline's fps (ffmpeg → detector → MQTT through the embedded broker), with the ratio
 * pipeline / min(decode, inference). Each is measured in alternating rounds; the best round counts,
 * since on a shared machine noise only ever slows a round down.
 */
import { Subject, lastValueFrom, take, tap, toArray } from 'rxjs';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../src/config/load.js';
import { setLogLevel } from '../src/log.js';
import { Detector } from '../src/model/detector.js';
import { assetsDir } from '../src/model/registry.js';
import { runPipeline } from '../src/pipeline.js';
import { readFrames, type Frame } from '../src/source/frames.js';

setLogLevel('warn');
const video = path.join(assetsDir(), 'videos', 'highway-cctv-320x240.avi');
if (!existsSync(video)) {
  console.error(`bench: ${video} not found (set BEATS_ASSETS_DIR to the shared assets)`);
  process.exit(1);
}
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const runtime = { providers: ['cpu'] as const, tensorrt: { fp16: true, engineCache: '/tmp' }, threads: 0 };
const detectOptions = { threshold: 0.35, nmsIou: 0.45, maxDetections: 100 };
const detector = await Detector.load('yolox-nano', { runtime: { ...runtime, providers: ['cpu'] } });

async function decodeOnly(): Promise<{ fps: number; frames: Frame[] }> {
  const demand$ = new Subject<void>();
  const started = performance.now();
  const frames = await lastValueFrom(readFrames({ camera: 'bench', url: video, output: detector.frameOutput() }, demand$).pipe(tap(() => demand$.next()), toArray()));
  return { fps: frames.length / ((performance.now() - started) / 1000), frames };
}

async function inferenceOnly(frames: Frame[]): Promise<number> {
  const sample = frames.slice(0, 300);
  const started = performance.now();
  for (const frame of sample) await detector.detect(frame, detectOptions);
  return sample.length / ((performance.now() - started) / 1000);
}

async function wholePipeline(): Promise<number> {
  const config = parsePipeline(
    `status_interval_s: 0
mqtt: { embedded: { host: 127.0.0.1, port: 0 } }
runtime: { providers: [cpu] }
cameras: [{ name: bench, source: { url: ${JSON.stringify(video)} }, model: yolox-nano }]`,
    path.resolve('bench/pipeline.yaml'),
  );
  let first = 0;
  let last = 0;
  let n = 0;
  await runPipeline({ file: 'bench', config }, {
    onResult: () => {
      const now = performance.now();
      if (n === 0) first = now;
      last = now;
      n++;
    },
  });
  return (n - 1) / ((last - first) / 1000);
}

// Warm-up: onnxruntime's first runs and the page cache.
const { frames } = await decodeOnly();
await inferenceOnly(frames.slice(0, 30));

const best = { decode: 0, inference: 0, pipeline: 0 };
for (let r = 1; r <= rounds; r++) {
  const decode = (await decodeOnly()).fps;
  const inference = await inferenceOnly(frames);
  const pipeline = await wholePipeline();
  best.decode = Math.max(best.decode, decode);
  best.inference = Math.max(best.inference, inference);
  best.pipeline = Math.max(best.pipeline, pipeline);
  console.log(`round ${r}: decode ${decode.toFixed(1)} fps, inference ${inference.toFixed(1)} fps, pipeline ${pipeline.toFixed(1)} fps`);
}
const limit = Math.min(best.decode, best.inference);
console.log(`\nhighway-cctv-320x240.avi, ${frames.length} frames, YOLOX-Nano ${detector.inputWidth}x${detector.inputHeight} on ${detector.provider} (best of ${rounds} rounds)`);
console.log(`decode only      ${best.decode.toFixed(1).padStart(7)} fps`);
console.log(`inference only   ${best.inference.toFixed(1).padStart(7)} fps`);
console.log(`whole pipeline   ${best.pipeline.toFixed(1).padStart(7)} fps`);
console.log(`pipeline / min(decode, inference) = ${(best.pipeline / limit).toFixed(3)}  (target ≥ 0.9)`);
await detector.close();

// The project's own detector against YOLOX-Nano, inference only, on the same video, alternating rounds.
async function framesFor(d: Detector, n: number): Promise<Frame[]> {
  const demand$ = new Subject<void>();
  return lastValueFrom(readFrames({ camera: 'bench', url: video, output: d.frameOutput() }, demand$).pipe(take(n), tap(() => demand$.next()), toArray()));
}
const beats = await Detector.load('beats-s', { runtime: { ...runtime, providers: ['cpu'] } }).catch((err: unknown) => {
  console.log(`\nbeats-s: not available (${(err as Error).message}); train and export it first`);
  return undefined;
});
if (beats) {
  const yolox = await Detector.load('yolox-nano', { runtime: { ...runtime, providers: ['cpu'] } });
  const sets = { beats: await framesFor(beats, 300), yolox: await framesFor(yolox, 300) };
  const timeIt = async (d: Detector, f: Frame[]) => {
    const started = performance.now();
    for (const frame of f) await d.detect(frame, detectOptions);
    return f.length / ((performance.now() - started) / 1000);
  };
  await timeIt(beats, sets.beats.slice(0, 30));
  const fps = { beats: 0, yolox: 0 };
  for (let r = 0; r < rounds; r++) {
    fps.yolox = Math.max(fps.yolox, await timeIt(yolox, sets.yolox));
    fps.beats = Math.max(fps.beats, await timeIt(beats, sets.beats));
  }
  console.log(`\ninference only, same video, best of ${rounds} rounds:`);
  console.log(`yolox-nano ${yolox.inputWidth}x${yolox.inputHeight}   ${fps.yolox.toFixed(1).padStart(7)} fps`);
  console.log(`beats-s    ${beats.inputWidth}x${beats.inputHeight}   ${fps.beats.toFixed(1).padStart(7)} fps`);
  console.log(`beats-s / yolox-nano = ${(fps.beats / fps.yolox).toFixed(2)}x  (target ≥ 2)`);
  await Promise.all([beats.close(), yolox.close()]);
}
