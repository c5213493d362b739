import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import type { WorkerMemory } from '../adapt/engine.js';
import type { FeedbackIntake } from '../adapt/feedback.js';
import { parsePipeline } from '../config/load.js';
import { forcedGc } from '../forced-gc.js';
import { setLogLevel } from '../log.js';
import { runPipeline } from '../pipeline.js';
import type { FrameResult } from '../pipeline/types.js';

/**
 * `beats soak`: the whole pipeline under load for a while, to see whether memory stays flat. N
 * synthetic cameras unpaced (and a looped video file when given) run beats-s with on-device
 * adaptation on and a trickle of valid operator verdicts; every few seconds memory is sampled after
 * a forced garbage collection. The figure is the growth per minute from the first window after the
 * warm-up to the last window of the same run, so that it compares the process with itself.
 */

export interface SoakOptions {
  /** Synthetic cameras, unpaced (default 4). */
  cameras: number;
  /** A video file played in a loop as one more camera. */
  file?: string;
  /** How long the pipeline runs, seconds. */
  seconds: number;
  /** Not measured at the start: models load, rings and caches fill, the JIT settles (seconds). */
  warmupS: number;
  /** The length of the first and of the last window compared (seconds). */
  windowS: number;
  /** Seconds between samples. */
  sampleS: number;
  /** One valid verdict per camera this often (seconds); 0: none. */
  verdictEveryS: number;
  /** RSS growth per minute above which the verdict is a leak (MB). */
  maxRssGrowthMbPerMin: number;
  /** Keep state (outbox, head versions, snapshots) here instead of a temporary folder removed after. */
  stateDir?: string;
}

export const soakDefaults: SoakOptions = { cameras: 4, seconds: 600, warmupS: 60, windowS: 60, sampleS: 5, verdictEveryS: 2, maxRssGrowthMbPerMin: 1 };

/**
 * Process memory after a full garbage collection, MB; `t` is seconds since the pipeline started.
 * heapUsed, arrayBuffers and external are the main thread's; the training workers' (one per adapting
 * camera, each collected in its own thread first) are summed apart: `workerHeap` their heaps,
 * `workerArrayBuffers` theirs, `tfTensors` TensorFlow.js's live tensors in them (a count). RSS
 * covers every thread.
 */
export interface MemorySample {
  t: number;
  rss: number;
  heapUsed: number;
  arrayBuffers: number;
  external: number;
  workerHeap: number;
  workerHeapTotal: number;
  workerArrayBuffers: number;
  /** The workers' TensorFlow.js WebAssembly heaps (MB): in RSS, in no JS heap. */
  workerWasmHeap: number;
  tfTensors: number;
}

export type MemoryKey = Exclude<keyof MemorySample, 't'>;
const MEMORY_KEYS: MemoryKey[] = ['rss', 'heapUsed', 'arrayBuffers', 'external', 'workerHeap', 'workerHeapTotal', 'workerArrayBuffers', 'workerWasmHeap', 'tfTensors'];

/**
 * One measure, first window against last: the least each window held (MB) and the growth between
 * them per minute. The least, not the mean: buffers in flight (a frame in the detector, a batch on
 * its way to the adaptation worker) come and go between samples; what a leak raises is the floor.
 */
export interface Growth {
  first: number;
  last: number;
  perMinute: number;
}

export interface SoakReport {
  options: SoakOptions;
  frames: number;
  fps: number;
  verdicts: { sent: number; accepted: number };
  headVersions: number;
  samples: MemorySample[];
  growth: Record<MemoryKey, Growth>;
  /** Seconds (since start) of the centres of the two windows compared. */
  windows: { first: [number, number]; last: [number, number] };
  leak: boolean;
  verdict: string;
}

const MB = 1024 * 1024;
const SOAK_THRESHOLD = 0.2;

/** The workers collect their heaps first (each in its own thread), then the main thread; RSS last. */
async function sample(gc: () => void, startedAt: number, workers: () => Promise<Map<string, WorkerMemory | undefined>>): Promise<MemorySample> {
  const w = [...(await workers()).values()].filter((m): m is WorkerMemory => m !== undefined);
  const sum = (k: keyof WorkerMemory) => w.reduce((total, m) => total + m[k], 0);
  gc();
  const m = process.memoryUsage();
  return {
    t: (performance.now() - startedAt) / 1000,
    rss: m.rss / MB,
    heapUsed: m.heapUsed / MB,
    arrayBuffers: m.arrayBuffers / MB,
    external: m.external / MB,
    workerHeap: sum('heapUsed'),
    workerHeapTotal: sum('heapTotal'),
    workerArrayBuffers: sum('arrayBuffers'),
    workerWasmHeap: sum('wasmHeap'),
    tfTensors: sum('tfTensors'),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The first window after the warm-up against the last window of the run: the least of each measure
 * in each, and the growth per minute between the windows' centres. Undefined when a window has no sample.
 */
export function memoryGrowth(samples: readonly MemorySample[], warmupS: number, windowS: number): { growth: Record<MemoryKey, Growth>; windows: SoakReport['windows'] } | undefined {
  const end = samples.at(-1)?.t ?? 0;
  const first = samples.filter((s) => s.t >= warmupS && s.t < warmupS + windowS);
  const last = samples.filter((s) => s.t > end - windowS && s.t >= warmupS + windowS);
  if (first.length === 0 || last.length === 0) return undefined;
  const centre = (w: MemorySample[]) => median(w.map((s) => s.t));
  const minutes = (centre(last) - centre(first)) / 60;
  const growth = Object.fromEntries(
    MEMORY_KEYS.map((k) => {
      const a = Math.min(...first.map((s) => s[k]));
      const b = Math.min(...last.map((s) => s[k]));
      return [k, { first: a, last: b, perMinute: minutes > 0 ? (b - a) / minutes : 0 }];
    }),
  ) as Record<MemoryKey, Growth>;
  return { growth, windows: { first: [first[0]!.t, first.at(-1)!.t], last: [last[0]!.t, last.at(-1)!.t] } };
}

/** The pipeline the soak runs: N synthetic cameras unpaced (+ the looped file), beats-s, adaptation on. */
function soakPipeline(options: SoakOptions, stateDir: string): string {
  // A low threshold: more detections, tracks that never confirm and events than a site would have,
  // so that whatever the track and event paths keep per object shows sooner.
  const camera = (name: string, source: Record<string, unknown>) => ({ name, source, model: 'beats-s', detect: { threshold: SOAK_THRESHOLD }, adapt: { enabled: true } });
  const cameras = Array.from({ length: options.cameras }, (_, i) => camera(`soak${i + 1}`, { url: `synthetic:scene=${i % 2 ? 'yard' : 'street'}&seed=${i + 1}`, realtime: false }));
  if (options.file) cameras.push(camera('file', { url: path.resolve(options.file), loop: true, realtime: false }));
  return stringify({ state_dir: stateDir, status_interval_s: 0, mqtt: { embedded: { host: '127.0.0.1', port: 0 } }, cameras });
}

/**
 * A valid verdict on the latest frame of each camera with a detection, in turn `correct` and
 * `false_positive`, sent as an operator would (it goes through the same intake and checks).
 */
function verdictTrickle(intake: FeedbackIntake, latest: Map<string, FrameResult>, counts: SoakReport['verdicts']): () => void {
  let n = 0;
  return () => {
    for (const [camera, result] of latest) {
      const d = result.detections[0];
      if (!d) continue;
      const verdict = n++ % 2 ? 'false_positive' : 'correct';
      counts.sent++;
      if (intake.submit(camera, JSON.stringify({ detection: { frame: result.frame.index, box: d.box }, verdict }), { via: 'simulated', operator: true }).accepted) counts.accepted++;
    }
    latest.clear();
  };
}

export async function soak(options: SoakOptions, onSample?: (s: MemorySample) => void): Promise<SoakReport> {
  const gc = forcedGc();
  const stateDir = options.stateDir ?? (await mkdtemp(path.join(os.tmpdir(), 'beats-soak-')));
  const loaded = { file: path.join(stateDir, 'soak.yaml'), config: parsePipeline(soakPipeline(options, stateDir), path.join(stateDir, 'soak.yaml')) };
  const controller = new AbortController();
  const samples: MemorySample[] = [];
  const verdicts = { sent: 0, accepted: 0 };
  const latest = new Map<string, FrameResult>();
  const timers: NodeJS.Timeout[] = [];
  let startedAt = performance.now();
  let stopped = false;
  try {
    const summary = await runPipeline(loaded, {
      signal: controller.signal,
      // The frame path: keeps one reference per camera, for the verdicts.
      onResult: (result) => {
        if (result.detections.length > 0) latest.set(result.camera, result);
      },
      onStarted: (run) => {
        startedAt = performance.now();
        let sampling = false;
        timers.push(
          setInterval(() => {
            // A sample waits for the workers' answers; one at a time.
            if (sampling || stopped) return;
            sampling = true;
            void sample(gc, startedAt, run.trainingMemory)
              .then((s) => {
                if (stopped) return;
                samples.push(s);
                onSample?.(s);
              })
              .finally(() => (sampling = false));
          }, options.sampleS * 1000),
        );
        if (options.verdictEveryS > 0) timers.push(setInterval(verdictTrickle(run.feedback, latest, verdicts), options.verdictEveryS * 1000));
        // Sampling stops before the pipeline does: stopping ends every open event and frees its state.
        timers.push(
          setTimeout(() => {
            stopped = true;
            for (const t of timers) clearInterval(t);
            controller.abort();
          }, options.seconds * 1000),
        );
      },
    });
    for (const t of timers) clearInterval(t);
    const frames = Object.values(summary.cameras).reduce((sum, c) => sum + c.processed, 0);
    const headVersions = await countHeadVersions(stateDir, loaded.config.cameras.map((c) => c.name));
    const measured = memoryGrowth(samples, options.warmupS, options.windowS);
    const growth = measured?.growth ?? emptyGrowth();
    const rss = growth.rss.perMinute;
    const leak = measured !== undefined && rss > options.maxRssGrowthMbPerMin;
    const verdict = !measured
      ? `no verdict: the run was too short for a ${options.windowS} s window on each side after a ${options.warmupS} s warm-up`
      : `${leak ? 'LEAK' : 'ok'}: RSS ${signed(rss)} MB/min (at most ${options.maxRssGrowthMbPerMin}), heap ${signed(growth.heapUsed.perMinute)}, array buffers ${signed(growth.arrayBuffers.perMinute)}, training workers' heap ${signed(growth.workerHeap.perMinute)}`;
    return { options, frames, fps: frames / Math.max(options.seconds, 1e-9), verdicts, headVersions, samples, growth, windows: measured?.windows ?? { first: [0, 0], last: [0, 0] }, leak, verdict };
  } finally {
    for (const t of timers) clearInterval(t);
    if (!options.stateDir) await rm(stateDir, { recursive: true, force: true });
  }
}

const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;

function emptyGrowth(): Record<MemoryKey, Growth> {
  const none = { first: 0, last: 0, perMinute: 0 };
  return Object.fromEntries(MEMORY_KEYS.map((k) => [k, none])) as Record<MemoryKey, Growth>;
}

async function countHeadVersions(stateDir: string, cameras: readonly string[]): Promise<number> {
  let n = 0;
  for (const camera of cameras) n += (await readdir(path.join(stateDir, 'adapt', camera)).catch(() => [] as string[])).filter((f) => /^v\d+\.json$/.test(f)).length;
  return n;
}

export function formatReport(r: SoakReport): string {
  const o = r.options;
  const what = `${o.cameras} synthetic camera${o.cameras === 1 ? '' : 's'} unpaced${o.file ? ` + ${path.basename(o.file)} looped` : ''}`;
  const lines = [
    `soak: ${what}, beats-s with adaptation, ${o.seconds} s: ${r.frames} frames (${r.fps.toFixed(1)} fps in all), ${r.verdicts.accepted}/${r.verdicts.sent} verdicts accepted, ${r.headVersions} head versions`,
    `memory after forced GC, ${o.windowS} s after a ${o.warmupS} s warm-up (t ${r.windows.first[0].toFixed(0)}-${r.windows.first[1].toFixed(0)} s) against the last ${o.windowS} s (t ${r.windows.last[0].toFixed(0)}-${r.windows.last[1].toFixed(0)} s), the least of each window:`,
  ];
  const names: Record<MemoryKey, string> = {
    rss: 'RSS',
    heapUsed: 'heap used',
    arrayBuffers: 'array buffers',
    external: 'external',
    workerHeap: 'workers: heap',
    workerHeapTotal: '  heap held',
    workerArrayBuffers: '  array buffers',
    workerWasmHeap: '  wasm heap',
    tfTensors: '  tf tensors',
  };
  for (const [k, name] of Object.entries(names) as Array<[MemoryKey, string]>) {
    const g = r.growth[k];
    const unit = k === 'tfTensors' ? ['   ', '/min   '] : ['MB ', 'MB/min'];
    lines.push(`  ${name.padEnd(16)} ${g.first.toFixed(1).padStart(8)} -> ${g.last.toFixed(1).padStart(8)} ${unit[0]}  ${signed(g.perMinute).padStart(7)} ${unit[1]}`);
  }
  lines.push(`verdict: ${r.verdict}`);
  return lines.join('\n') + '\n';
}

export async function soakCommand(opts: Partial<SoakOptions> & { json?: boolean }): Promise<number> {
  const { json, ...given } = opts;
  const options: SoakOptions = { ...soakDefaults, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) };
  if (!process.env.BEATS_LOG_LEVEL) setLogLevel('warn');
  process.stderr.write(`soak: ${options.seconds} s, sampling every ${options.sampleS} s after forced GC\n`);
  const report = await soak(options, (s) => process.stderr.write(`  t ${s.t.toFixed(0).padStart(5)} s  rss ${s.rss.toFixed(1)} MB  heap ${s.heapUsed.toFixed(1)} MB  array buffers ${s.arrayBuffers.toFixed(1)} MB  workers' heap ${s.workerHeap.toFixed(1)} MB (held ${s.workerHeapTotal.toFixed(1)}, wasm ${s.workerWasmHeap.toFixed(1)})  tf tensors ${s.tfTensors}\n`));
  process.stdout.write(json ? JSON.stringify(report) + '\n' : formatReport(report));
  return report.leak ? 1 : 0;
}
