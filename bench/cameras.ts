/**
 * `npm run bench -- --cameras 1,2,4,8`: many cameras on one model. For each camera count N, in one
 * run and side by side: the highway clip with YOLOX-Nano and the synthetic camera with beats-s as N
 * cameras through the whole pipeline (ffmpeg or the renderer → the shared inference worker →
 * tracking, events → MQTT through the embedded broker), unpaced (files: as fast as they go) and
 * paced (live cameras at a rate the model can take: 70 % of the limit), beside the inference-only
 * throughput of the same worker at the same batch sizes (N callers on preloaded frames: the limit)
 * and the decode-only throughput of N sources, the ratios of the pipeline to each, p50 / p99 latency (frame decoded → published), RSS and CPU per camera, and
 * how busy the main thread's event loop was (main%: what inference in a worker leaves it).
 * Unpaced and inference-only: the best of BENCH_ROUNDS rounds (default 2), alternating, since on a
 * shared machine noise only slows a round down. BENCH_FRAMES frames per camera (default 96),
 * BENCH_PACED_S seconds per paced run (default 8); runtime.max_batch 4, batch_timeout_ms 5 (the
 * defaults), BENCH_MAX_BATCH to change the first; BENCH_QUEUE_FRAMES the paced cameras'
 * queue_frames; BENCH_PROVIDERS (default cpu) the execution providers, e.g. tensorrt,cuda,cpu on a
 * GPU host. Nothing in it needs a GPU.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { performance as nodePerformance } from 'node:perf_hooks';
import path from 'node:path';
import { Subject, lastValueFrom, take, tap, toArray } from 'rxjs';
import { parsePipeline } from '../src/config/load.js';
import { Detector } from '../src/model/detector.js';
import type { ProviderName } from '../src/model/providers.js';
import { runPipeline } from '../src/pipeline.js';
import { readFrames } from '../src/source/frames.js';
import type { Frame } from '../src/source/frame.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const framesPerCamera = Number(process.env.BENCH_FRAMES ?? 96);
const pacedSeconds = Number(process.env.BENCH_PACED_S ?? 8);
const maxBatch = Number(process.env.BENCH_MAX_BATCH ?? 4);
const batchTimeoutMs = 5;
/** BENCH_QUEUE_FRAMES: the paced cameras' source.queue_frames (default: the source's own, 2). */
const queueFrames = process.env.BENCH_QUEUE_FRAMES ? Number(process.env.BENCH_QUEUE_FRAMES) : undefined;
/** BENCH_PROVIDERS=tensorrt,cuda,cpu on a GPU host (docs/gpu.md); the CPU by default. */
const providers = (process.env.BENCH_PROVIDERS ?? 'cpu').split(',').map((p) => p.trim()) as ProviderName[];
const runtime = { providers, tensorrt: { fp16: true, engineCache: path.join(os.tmpdir(), 'beats-bench-trt') }, threads: 0 };

interface Setup {
  title: string;
  model: string;
  /** The source URL, paced at `rate` frames per second (undefined: unpaced). */
  source: (rate?: number) => { url: string; realtime: boolean; fps?: number; loop?: boolean };
  /** The most a paced camera delivers. */
  maxRate: number;
}

interface PipelineFigures {
  totalFps: number;
  perCamera: number[];
  p50: number;
  p99: number;
  dropped: number;
  failed: number;
  rssMb: number;
  /** Percent of one core per camera: this process and its ffmpeg children. */
  cpuPerCamera: number;
  /** Percent of the run the main thread's event loop was busy (decode hand-over, tracking, events, MQTT; not inference). */
  mainBusy: number;
  /** Percent of the run a batch was out in the inference worker (sent to answered). */
  modelBusy: number;
  batches: string;
}

/** CPU seconds of this process and its reaped children (ffmpeg), from /proc; the process alone elsewhere. */
function cpuSeconds(): number {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
    // utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the command name.
    return [11, 12, 13, 14].reduce((s, i) => s + Number(fields[i]), 0) / 100;
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;

async function pipelineRun(setup: Setup, cameras: number, rate?: number): Promise<PipelineFigures> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-bench-cams-'));
  const frames = rate ? Math.round(rate * pacedSeconds) : framesPerCamera;
  const list = Array.from({ length: cameras }, (_, i) => {
    const s = setup.source(rate);
    const source = JSON.stringify({ url: s.url, realtime: s.realtime, ...(s.fps ? { fps: s.fps } : {}), ...(s.loop ? { loop: true } : {}), ...(rate && queueFrames ? { queue_frames: queueFrames } : {}) });
    return `  - { name: cam${i}, source: ${source}, model: ${setup.model} }`;
  });
  const yaml = `status_interval_s: 0
state_dir: ${JSON.stringify(path.join(dir, 'state'))}
mqtt: { embedded: { host: 127.0.0.1, port: 0 } }
runtime: { providers: [${providers.join(', ')}], tensorrt: { engine_cache: ${JSON.stringify(runtime.tensorrt.engineCache)} }, max_batch: ${maxBatch}, batch_timeout_ms: ${batchTimeoutMs} }
cameras:
${list.join('\n')}
`;
  const file = path.join(dir, 'pipeline.yaml');
  await writeFile(file, yaml);
  const times = new Map<string, number[]>();
  const latencies: number[] = [];
  let rss = 0;
  const sampler = setInterval(() => (rss = Math.max(rss, process.memoryUsage().rss)), 200);
  const cpuBefore = cpuSeconds();
  const eluBefore = nodePerformance.eventLoopUtilization();
  const started = performance.now();
  const summary = await runPipeline({ file, config: parsePipeline(yaml, file) }, {
    maxFrames: frames,
    onResult: (r) => {
      const now = performance.now();
      times.set(r.camera, [...(times.get(r.camera) ?? []), now]);
      if (r.frame.decodedAt !== undefined) latencies.push(now - r.frame.decodedAt);
    },
  });
  const wall = (performance.now() - started) / 1000;
  clearInterval(sampler);
  const cpu = cpuSeconds() - cpuBefore;
  const mainBusy = 100 * nodePerformance.eventLoopUtilization(eluBefore).utilization;
  await rm(dir, { recursive: true, force: true });
  const all = [...times.values()].flat().sort((a, b) => a - b);
  const span = (t: number[]) => (t.length > 1 ? (t.length - 1) / ((t[t.length - 1]! - t[0]!) / 1000) : 0);
  latencies.sort((a, b) => a - b);
  const stats = Object.values(summary.cameras);
  const inference = summary.inference[0]?.stats;
  const modelBusy = inference ? (100 * inference.busyMs) / 1000 / wall : NaN;
  const batches = inference ? inference.batchSizes.map((n, size) => (n ? `${size}:${n}` : '')).filter(Boolean).join(' ') : '';
  return {
    totalFps: span(all),
    perCamera: [...times.values()].map(span),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    dropped: stats.reduce((s, c) => s + c.source.dropped, 0),
    failed: stats.reduce((s, c) => s + c.failed, 0),
    rssMb: rss / 2 ** 20,
    cpuPerCamera: (100 * cpu) / wall / cameras,
    mainBusy,
    modelBusy,
    batches,
  };
}

/** The worker's throughput with `callers` cameras each sending its next frame as soon as the last came back. */
async function inferenceOnly(detector: Detector, frames: Frame[], callers: number): Promise<number> {
  const options = { threshold: 0.3, nmsIou: 0.45, maxDetections: 100 };
  const per = Math.max(8, Math.round(framesPerCamera / 2));
  const detach = Array.from({ length: callers }, () => detector.attach());
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      for (let i = 0; i < per; i++) await detector.detect(frames[(c * 7 + i) % frames.length]!, options);
    }),
  );
  const fps = (callers * per) / ((performance.now() - started) / 1000);
  detach.forEach((d) => d());
  return fps;
}

/** N sources at once, unpaced, nothing but taking their frames: the decode side's limit (ffmpeg, or the synthetic renderer on this thread). */
async function decodeOnly(setup: Setup, detector: Detector, cameras: number): Promise<number> {
  const started = performance.now();
  const counts = await Promise.all(
    Array.from({ length: cameras }, async () => {
      const demand$ = new Subject<void>();
      const frames = readFrames({ camera: 'bench', url: setup.source().url, output: detector.frameOutput() }, demand$).pipe(take(framesPerCamera), tap(() => demand$.next()));
      let n = 0;
      await lastValueFrom(frames.pipe(tap(() => n++)), { defaultValue: undefined });
      return n;
    }),
  );
  return counts.reduce((a, b) => a + b, 0) / ((performance.now() - started) / 1000);
}

async function framesOf(detector: Detector, url: string, n: number): Promise<Frame[]> {
  const demand$ = new Subject<void>();
  return lastValueFrom(readFrames({ camera: 'bench', url, output: detector.frameOutput() }, demand$).pipe(take(n), tap(() => demand$.next()), toArray()));
}

const pad = (v: string | number, n: number) => String(v).padStart(n);
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');

async function benchSetup(setup: Setup, counts: number[]): Promise<void> {
  const detector = await Detector.load(setup.model, { runtime, backend: 'worker', batch: { max: maxBatch, timeoutMs: batchTimeoutMs } });
  const frames = await framesOf(detector, setup.source().url, 64);
  await inferenceOnly(detector, frames, 1); // warm-up
  const limit = new Map<number, number>();
  const decode = new Map<number, number>();
  const unpaced = new Map<number, PipelineFigures>();
  for (let r = 0; r < rounds; r++) {
    for (const n of counts) {
      decode.set(n, Math.max(decode.get(n) ?? 0, await decodeOnly(setup, detector, n)));
      limit.set(n, Math.max(limit.get(n) ?? 0, await inferenceOnly(detector, frames, n)));
      const run = await pipelineRun(setup, n);
      if (!unpaced.has(n) || run.totalFps > unpaced.get(n)!.totalFps) unpaced.set(n, run);
    }
  }
  const single = 1000 / limit.get(counts[0]!)!;
  const paced = new Map<number, { rate: number; run: PipelineFigures }>();
  for (const n of counts) {
    const rate = Math.max(1, Math.min(setup.maxRate, Math.floor((0.7 * Math.min(limit.get(n)!, decode.get(n)!)) / n)));
    paced.set(n, { rate, run: await pipelineRun(setup, n, rate) });
  }
  await detector.close();

  console.log(`\n${setup.title}: ${detector.card.name} ${detector.inputWidth}x${detector.inputHeight} on ${detector.provider}, one worker thread, max_batch ${detector.maxBatch}, batch_timeout_ms ${batchTimeoutMs}`);
  console.log(`  decode: N sources alone; infer: the worker alone with N callers (the limit); /infer and /min: total fps over infer and over min(decode, infer)`);
  console.log(`  unpaced: ${framesPerCamera} frames per camera, best of ${rounds} rounds; paced: ${pacedSeconds} s at 70 % of the limit (at most ${setup.maxRate} fps per camera); inference-only at N=${counts[0]}: ${single.toFixed(1)} ms a frame`);
  console.log(
    `  ${pad('N', 2)} | ${pad('decode', 7)} ${pad('infer', 7)} | ${pad('total fps', 9)} ${pad('per cam min-max', 15)} ${pad('/infer', 6)} ${pad('/min', 5)} ${pad('p50 ms', 6)} ${pad('p99 ms', 6)} ${pad('RSS MB', 6)} ${pad('CPU%/cam', 8)} ${pad('main%', 5)} ${pad('model%', 6)} | ${pad('paced fps/cam', 13)} ${pad('total fps', 9)} ${pad('dropped', 7)} ${pad('p50 ms', 6)} ${pad('p99 ms', 6)} ${pad('CPU%/cam', 8)} | runs by batch size (unpaced)`,
  );
  for (const n of counts) {
    const u = unpaced.get(n)!;
    const p = paced.get(n)!;
    const l = limit.get(n)!;
    const d = decode.get(n)!;
    const perCam = `${f1(Math.min(...u.perCamera))}-${f1(Math.max(...u.perCamera))}`;
    console.log(
      `  ${pad(n, 2)} | ${pad(f1(d), 7)} ${pad(f1(l), 7)} | ${pad(f1(u.totalFps), 9)} ${pad(perCam, 15)} ${pad((u.totalFps / l).toFixed(2), 6)} ${pad((u.totalFps / Math.min(l, d)).toFixed(2), 5)} ${pad(f1(u.p50), 6)} ${pad(f1(u.p99), 6)} ${pad(u.rssMb.toFixed(0), 6)} ${pad(f1(u.cpuPerCamera), 8)} ${pad(u.mainBusy.toFixed(0), 5)} ${pad(u.modelBusy.toFixed(0), 6)} | ${pad(p.rate, 13)} ${pad(f1(p.run.totalFps), 9)} ${pad(p.run.dropped, 7)} ${pad(f1(p.run.p50), 6)} ${pad(f1(p.run.p99), 6)} ${pad(f1(p.run.cpuPerCamera), 8)} | ${u.batches}${u.failed + p.run.failed > 0 ? `  FAILED ${u.failed + p.run.failed}` : ''}`,
    );
  }
}

export async function benchCameras(counts: number[], video: string): Promise<void> {
  const setups: Setup[] = [
    {
      title: `highway-cctv-320x240.avi (748 frames, 25 fps) as N cameras`,
      model: 'yolox-nano',
      source: (rate) => (rate ? { url: video, realtime: true, fps: rate, loop: true } : { url: video, realtime: false }),
      maxRate: 25,
    },
    {
      title: 'the synthetic camera (street, 320x240) as N cameras',
      model: 'beats-s',
      source: (rate) => ({ url: `synthetic:seed=3${rate ? `&fps=${rate}` : ''}`, realtime: rate !== undefined }),
      maxRate: 30,
    },
  ];
  for (const setup of setups) {
    if (setup.model === 'beats-s' && !existsSync(path.join('models', 'beats-s.onnx'))) {
      console.log(`\n${setup.title}: skipped, models/beats-s.onnx not found`);
      continue;
    }
    await benchSetup(setup, counts);
  }
}

/** `--cameras 1,2,4,8` → [1, 2, 4, 8]; a clear error on anything else. */
export function cameraCounts(arg: string | undefined): number[] {
  const counts = (arg ?? '').split(',').map((s) => Number(s.trim()));
  if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) {
    throw new Error(`bench: --cameras takes camera counts from 1 to 64 separated by commas (e.g. 1,2,4,8), not "${arg ?? ''}"`);
  }
  return counts;
}
