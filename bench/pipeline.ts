/**
 * `npm run bench`: on the highway video with YOLOX-Nano, in one run and side by side:
 * decode-only fps (ffmpeg → frames), inference-only fps (frames already in memory → detections), and
 * the whole pipeline's fps (ffmpeg → detector → MQTT through the embedded broker), with the ratio
 * pipeline / min(decode, inference). Each is measured in alternating rounds; the best round counts,
 * since on a shared machine noise only ever slows a round down. The pipeline runs its detector as
 * configured by default (a worker thread); inference-only is the in-process detector, frame by frame.
 * `--cameras 1,2,4,8` runs bench/cameras.ts (many cameras on one model) instead.
 */
import { Subject, lastValueFrom, take, tap, toArray } from 'rxjs';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { exportBeatsOnnx, type WeightArrays } from '../src/train/beats-export.js';
import { loadCheckpoint } from '../src/train/beats-train.js';
import type { ModelCard } from '../src/model/card.js';
import { loadTf } from '../src/train/tf.js';
import path from 'node:path';
import { parsePipeline } from '../src/config/load.js';
import { setLogLevel } from '../src/log.js';
import { Detector } from '../src/model/detector.js';
import { assetsDir } from '../src/model/registry.js';
import { runPipeline } from '../src/pipeline.js';
import { readFrames } from '../src/source/frames.js';
import type { Frame } from '../src/source/frame.js';

setLogLevel('warn');
const video = path.join(assetsDir(), 'videos', 'highway-cctv-320x240.avi');
if (!existsSync(video)) {
  console.error(`bench: ${video} not found (set BEATS_ASSETS_DIR to the shared assets)`);
  process.exit(1);
}
// `npm run bench -- --cameras 1,2,4,8`: many cameras on one model (bench/cameras.ts) instead.
const camerasAt = process.argv.indexOf('--cameras');
if (camerasAt > 0) {
  const { benchCameras, cameraCounts } = await import('./cameras.js');
  await benchCameras(cameraCounts(process.argv[camerasAt + 1]), video);
  process.exit(0);
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

async function wholePipeline(inference: 'worker' | 'in-process' = 'worker'): Promise<number> {
  const config = parsePipeline(
    `status_interval_s: 0
mqtt: { embedded: { host: 127.0.0.1, port: 0 } }
runtime: { providers: [cpu], inference: ${inference} }
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

// BENCH_ONLY=models skips the decode and pipeline part.
if (process.env.BENCH_ONLY !== 'models') {
  // Warm-up: onnxruntime's first runs and the page cache.
  const { frames } = await decodeOnly();
  await inferenceOnly(frames.slice(0, 30));

  const best = { decode: 0, inference: 0, pipeline: 0, inProcess: 0 };
  for (let r = 1; r <= rounds; r++) {
    const decode = (await decodeOnly()).fps;
    const inference = await inferenceOnly(frames);
    const pipeline = await wholePipeline();
    const inProcess = await wholePipeline('in-process');
    best.decode = Math.max(best.decode, decode);
    best.inference = Math.max(best.inference, inference);
    best.pipeline = Math.max(best.pipeline, pipeline);
    best.inProcess = Math.max(best.inProcess, inProcess);
    console.log(`round ${r}: decode ${decode.toFixed(1)} fps, inference ${inference.toFixed(1)} fps, pipeline ${pipeline.toFixed(1)} fps (in-process inference: ${inProcess.toFixed(1)} fps)`);
  }
  const limit = Math.min(best.decode, best.inference);
  console.log(`\nhighway-cctv-320x240.avi, ${frames.length} frames, YOLOX-Nano ${detector.inputWidth}x${detector.inputHeight} on ${detector.provider} (best of ${rounds} rounds)`);
  console.log(`decode only      ${best.decode.toFixed(1).padStart(7)} fps`);
  console.log(`inference only   ${best.inference.toFixed(1).padStart(7)} fps`);
  console.log(`whole pipeline   ${best.pipeline.toFixed(1).padStart(7)} fps   (inference in a worker thread, the default)`);
  console.log(`  in-process     ${best.inProcess.toFixed(1).padStart(7)} fps   (runtime.inference: in-process)`);
  console.log(`pipeline / min(decode, inference) = ${(best.pipeline / limit).toFixed(3)}  (target ≥ 0.9; in-process ${(best.inProcess / limit).toFixed(3)})`);
}
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
  // The Beats CNN's input size is a choice (real cameras want more pixels than 160x120): the shipped
  // weights exported at larger inputs cost what a model trained at that size would.
  const sizes = await exportAtSizes([[256, 192], [320, 240]]);
  // Every other Beats CNN that ships (models/*.json with the beats decoder), at its own input.
  const shipped = (await readdir('models')).filter((f) => f.endsWith('.json') && f !== 'beats-s.json');
  const others: string[] = [];
  for (const f of shipped) {
    const card = JSON.parse(await readFile(path.join('models', f), 'utf8')) as ModelCard;
    if (card.decoder.kind === 'beats') others.push(card.name);
  }
  const candidates: Array<{ name: string; detector: Detector }> = [
    { name: 'yolox-nano', detector: await Detector.load('yolox-nano', { runtime, inputSize: 416 }) },
    { name: 'yolox-nano', detector: await Detector.load('yolox-nano', { runtime, inputSize: 320 }) },
    { name: 'beats-s', detector: beats },
    ...(await Promise.all(others.map(async (name) => ({ name, detector: await Detector.load(name, { runtime }) })))),
    ...(await Promise.all(sizes.map(async (card) => ({ name: 'beats-s at', detector: await Detector.load(card, { runtime }) })))),
  ];
  const sets = await Promise.all(candidates.map((c) => framesFor(c.detector, 300)));
  const timeIt = async (d: Detector, f: Frame[]) => {
    const started = performance.now();
    for (const frame of f) await d.detect(frame, detectOptions);
    return f.length / ((performance.now() - started) / 1000);
  };
  for (const [i, c] of candidates.entries()) await timeIt(c.detector, sets[i]!.slice(0, 30));
  const fps = candidates.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of candidates.entries()) fps[i] = Math.max(fps[i]!, await timeIt(c.detector, sets[i]!));
  }
  console.log(`\ninference only, same video, best of ${rounds} rounds (ratio: against YOLOX-Nano 416; target >= 5):`);
  for (const [i, c] of candidates.entries()) {
    console.log(`${c.name.padEnd(13)} ${`${c.detector.inputWidth}x${c.detector.inputHeight}`.padEnd(8)} ${fps[i]!.toFixed(1).padStart(7)} fps   ${(fps[i]! / fps[0]!).toFixed(2)}x`);
  }
  await Promise.all(candidates.map((c) => c.detector.close()));
}

/** The shipped beats-s's weights exported at other input sizes, with their cards, in a temporary folder. */
async function exportAtSizes(sizes: Array<[number, number]>): Promise<string[]> {
  const { tf } = await loadTf();
  const cp = await loadCheckpoint(tf, path.join('models', 'beats-s.checkpoint.bin'));
  const weights: WeightArrays = new Map();
  for (const [name, t] of cp.weights) weights.set(name, { shape: t.shape, data: (await t.data()) as Float32Array });
  const card = JSON.parse(await readFile(path.join('models', 'beats-s.json'), 'utf8')) as ModelCard;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-bench-'));
  const cards: string[] = [];
  for (const [width, height] of sizes) {
    const name = `beats-${width}x${height}`;
    await writeFile(path.join(dir, `${name}.onnx`), exportBeatsOnnx({ ...cp.recipe.spec, inputWidth: width, inputHeight: height }, weights, { version: 'bench' }));
    const file = path.join(dir, `${name}.json`);
    await writeFile(file, JSON.stringify({ ...card, name, onnx: `${name}.onnx`, input: { ...card.input, width, height } }));
    cards.push(file);
  }
  return cards;
}
