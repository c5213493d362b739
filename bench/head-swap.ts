/**
 * `npx tsx bench/head-swap.ts`: what the live head swap (src/model/head.ts) costs, on YOLOX-Nano at
 * 416 (real highway frames) and on the Beats CNN beats-s (synthetic street frames):
 *
 * (a) inference per frame: the plain session, vs the surgered session fed its head as inputs
 *     (without and with the head features read back as extra outputs);
 * (b) a swap: feeding a new head (`setHead`: check, copy, new tensors), vs rebuilding an
 *     onnxruntime session from bytes with the new head as initializers, what the first run of the
 *     new session costs, and how long the event loop is blocked while it is built (the stall a
 *     rebuild causes even when it is done beside inference).
 *
 * Modes run in alternating rounds and the best round counts (noise on a shared machine only ever
 * slows a round down). BENCH_ROUNDS (default 5), BENCH_FRAMES (default 60), BENCH_REBUILDS
 * (default 5) set the sizes, BENCH_THREADS onnxruntime's threads (default 0: its choice).
 */
import { readFile } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type * as ort from 'onnxruntime-node';
import { Subject, lastValueFrom, take, tap, toArray } from 'rxjs';
import { HeadSwappableSession, withHeadInitializers, type HeadLevelWeights } from '../src/model/head.js';
import { setLogLevel } from '../src/log.js';
import type { ModelCard } from '../src/model/card.js';
import { Detector } from '../src/model/detector.js';
import { createSession, type ProviderSettings } from '../src/model/providers.js';
import { readFrames } from '../src/source/frames.js';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { assetsDir } from '../src/model/registry.js';

setLogLevel('warn');
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const frameCount = Number(process.env.BENCH_FRAMES ?? 60);
const rebuilds = Number(process.env.BENCH_REBUILDS ?? 5);
const runtime: ProviderSettings = { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '/tmp/beats-trt' }, threads: Number(process.env.BENCH_THREADS ?? 0) };

interface Case {
  name: string;
  ref: string;
  url: string;
}

const cases: Case[] = [];
const highway = path.join(assetsDir(), 'videos', 'highway-cctv-320x240.avi');
if (existsSync(highway)) cases.push({ name: 'YOLOX-Nano 416', ref: 'yolox-nano', url: highway });
else console.warn(`bench: ${highway} not found (set BEATS_ASSETS_DIR): YOLOX-Nano skipped`);
cases.push({ name: 'beats-s 160x120', ref: 'beats-s', url: 'synthetic:scene=street&seed=3' });

const fmt = (ms: number) => (ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

/** A head the model has never seen: the base with every value nudged, a new copy each time. */
function nudged(base: readonly HeadLevelWeights[], k: number): HeadLevelWeights[] {
  return base.map((l) => ({ weight: l.weight.map((v) => v * (1 + 1e-3 * k)), bias: l.bias.map((v) => v - 1e-3 * k), shape: l.shape }));
}

for (const c of cases) {
  const detector = await Detector.load(c.ref, { runtime });
  const card: ModelCard = detector.card;
  const bytes = await readFile(detector.model.onnxPath);
  const demand$ = new Subject<void>();
  const frames = await lastValueFrom(readFrames({ camera: 'bench', url: c.url, output: detector.frameOutput() }, demand$).pipe(take(frameCount), tap(() => demand$.next()), toArray()));
  const inputs = frames.map((f) => detector.toTensor(f));
  await detector.close();

  const plain = (await createSession(bytes, runtime)).session;
  const fed = await HeadSwappableSession.create(bytes, card, runtime);
  const input = card.input.name;
  const modes: Record<string, (x: ort.Tensor) => Promise<unknown>> = {
    plain: (x) => plain.run({ [input]: x }, [card.output]),
    'head fed': (x) => fed.run({ [input]: x }, [card.output], { features: false }),
    'head fed + features': (x) => fed.run({ [input]: x }, [card.output]),
  };
  // Warm-up: onnxruntime's first runs allocate and plan.
  for (const run of Object.values(modes)) for (const x of inputs.slice(0, 5)) await run(x);

  // Interleaved frame by frame (each frame runs through every mode, in an order that rotates), so
  // that a burst of load elsewhere on the machine slows all modes alike; a round's ratios are then
  // fair even when its absolute times are not. Reported: the best round's time per mode, and the
  // median over rounds of each mode's ratio to plain within its round.
  const names = Object.keys(modes);
  const best: Record<string, number> = {};
  const ratios: Record<string, number[]> = {};
  const runs = Math.max(inputs.length, Number(process.env.BENCH_RUNS ?? 0), c.ref === 'beats-s' ? 300 : 0);
  for (let r = 1; r <= rounds; r++) {
    const total: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
    for (let i = 0; i < runs; i++) {
      const x = inputs[i % inputs.length]!;
      for (let j = 0; j < names.length; j++) {
        const mode = names[(i + j) % names.length]!;
        const started = performance.now();
        await modes[mode]!(x);
        total[mode]! += performance.now() - started;
      }
    }
    const line: string[] = [];
    for (const mode of names) {
      const ms = total[mode]! / runs;
      best[mode] = Math.min(best[mode] ?? Infinity, ms);
      (ratios[mode] ??= []).push(total[mode]! / total.plain!);
      line.push(`${mode} ${fmt(ms)}`);
    }
    console.log(`${c.name} round ${r}: ${line.join(', ')} ms/frame`);
  }

  // (b) swaps. Feeding: setHead on a fresh head each time (check, copy, tensors).
  const base = fed.baseHead();
  const heads = Array.from({ length: 200 }, (_, k) => nudged(base, k + 1));
  let setBest = Infinity;
  for (let r = 0; r < rounds; r++) {
    const started = performance.now();
    for (const h of heads) fed.setHead(h);
    setBest = Math.min(setBest, (performance.now() - started) / heads.length);
  }
  fed.resetHead();
  // Rebuilding: rewrite the initializers, build a session, run its first frame; the event loop's
  // longest block while that happens is the stall inference would see even beside it.
  const rewrite: number[] = [];
  const build: number[] = [];
  const firstRun: number[] = [];
  const blocked: number[] = [];
  for (let k = 0; k < rebuilds; k++) {
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const t0 = performance.now();
    const newBytes = withHeadInitializers(bytes, card, heads[k]!);
    const t1 = performance.now();
    const { session } = await createSession(newBytes, runtime);
    const t2 = performance.now();
    await session.run({ [input]: inputs[0]! }, [card.output]);
    const t3 = performance.now();
    delay.disable();
    rewrite.push(t1 - t0);
    build.push(t2 - t1);
    firstRun.push(t3 - t2);
    blocked.push(delay.max / 1e6);
    await session.release();
  }
  const rebuildBest = Math.min(...rewrite.map((v, i) => v + build[i]!));
  const ratio = (mode: string) => `x${median(ratios[mode]!).toFixed(3)} (rounds ${ratios[mode]!.map((v) => v.toFixed(2)).join(' ')})`;
  console.log(`\n${c.name} on cpu (${runtime.threads || 'default'} threads), ${runs} runs over ${inputs.length} frames, ${rounds} rounds:`);
  console.log(`  (a) inference, best round: plain ${fmt(best.plain!)} ms/frame, head fed ${fmt(best['head fed']!)}, head fed + features ${fmt(best['head fed + features']!)}`);
  console.log(`      ratio to plain, median over rounds: head fed ${ratio('head fed')}, head fed + features ${ratio('head fed + features')}`);
  console.log(`  (b) swap: setHead ${fmt(setBest * 1000)} µs; rebuild best ${fmt(rebuildBest)} ms (median: rewrite bytes ${fmt(median(rewrite))} + session ${fmt(median(build))} ms), its first run ${fmt(median(firstRun))} ms vs ${fmt(best.plain!)} steady`);
  console.log(`      rebuild / setHead x${Math.round(rebuildBest / setBest)}; rebuild = ${(rebuildBest / best.plain!).toFixed(1)} frames of inference; event loop blocked up to ${fmt(median(blocked))} ms (median of the longest blocks)\n`);
  await plain.release();
  await fed.release();
}
