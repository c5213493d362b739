/**
 * Many cameras on one model (issue 16): the pipeline runs their shared detector in a worker thread,
 * batches their frames, gives each camera its own results in its own order, and finds what the
 * in-process detector finds. Real ffmpeg, real onnxruntime, the embedded MQTT broker.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it, vi } from 'vitest';
import { parsePipeline } from '../src/config/load.js';
import { Detector } from '../src/model/detector.js';
import type { ConfigError } from '../src/errors.js';
import { LatencyWindow } from '../src/pipeline/latency.js';
import type { FrameResult } from '../src/pipeline/types.js';
import { runPipeline, type RunSummary } from '../src/pipeline.js';
import { assets, needsAssets } from './helpers/assets.js';

const FRAMES = 24;

async function run(inference: 'worker' | 'in-process', cameras: number, onStarted?: () => void): Promise<{ summary: RunSummary; results: Map<string, FrameResult[]> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-many-'));
  const file = path.join(dir, 'pipeline.yaml');
  const yaml = `status_interval_s: 0
state_dir: ${JSON.stringify(path.join(dir, 'state'))}
mqtt: { embedded: { host: 127.0.0.1, port: 0 } }
runtime: { providers: [cpu], inference: ${inference}, max_batch: 4, batch_timeout_ms: 50 }
cameras:
${Array.from({ length: cameras }, (_, i) => `  - { name: cam${i}, source: { url: ${JSON.stringify(assets.highway)} }, model: yolox-nano, events: { snapshots: false } }`).join('\n')}
`;
  await writeFile(file, yaml);
  const results = new Map<string, FrameResult[]>();
  const summary = await runPipeline({ file, config: parsePipeline(yaml, file) }, { maxFrames: FRAMES, onStarted, onResult: (r) => results.set(r.camera, [...(results.get(r.camera) ?? []), r]) });
  return { summary, results };
}

const boxesOf = (r: FrameResult) => r.detections.map((d) => ({ label: d.label, score: d.score, box: d.box }));

describe.skipIf(needsAssets)('four cameras on one model in a worker', () => {
  it('each camera gets its own frames in order, all of them, with the in-process detections; frames went in batches', async () => {
    const worker = await run('worker', 4);
    const alone = await run('in-process', 1);
    const reference = alone.results.get('cam0')!;
    expect(reference).toHaveLength(FRAMES);
    expect(alone.summary.inference).toEqual([expect.objectContaining({ backend: 'in-process', cameras: ['cam0'] })]);

    const [shared] = worker.summary.inference;
    expect(worker.summary.inference).toHaveLength(1);
    expect(shared).toMatchObject({ model: 'yolox-nano', backend: 'worker', maxBatch: 4, cameras: ['cam0', 'cam1', 'cam2', 'cam3'] });
    expect(shared!.stats!.frames).toBe(4 * FRAMES);
    expect(shared!.stats!.failedFrames).toBe(0);
    // Frames of several cameras shared runs: fewer runs than frames.
    expect(shared!.stats!.runs).toBeLessThan(4 * FRAMES);
    expect(shared!.stats!.batchSizes.length).toBeGreaterThan(2);

    for (let c = 0; c < 4; c++) {
      const got = worker.results.get(`cam${c}`)!;
      expect(got.map((r) => r.frame.index)).toEqual(reference.map((r) => r.frame.index));
      const stats = worker.summary.cameras[`cam${c}`]!;
      expect(stats.processed).toBe(FRAMES);
      expect(stats.failed).toBe(0);
      expect(stats.source.dropped).toBe(0);
      expect(stats.latency.count).toBe(FRAMES);
      got.forEach((r, i) => {
        const want = boxesOf(reference[i]!);
        const have = boxesOf(r);
        expect(have.map((d) => d.label), `cam${c} frame ${i}`).toEqual(want.map((d) => d.label));
        have.forEach((d, j) => {
          expect(d.score).toBeCloseTo(want[j]!.score, 4);
          d.box.forEach((v, k) => expect(v).toBeCloseTo(want[j]!.box[k]!, 2));
        });
      });
    }
    expect(reference.some((r) => r.detections.length > 0)).toBe(true);
  }, 240_000);

  it('a camera keeps a second frame waiting at the worker while one is inferred (none in process), and the model was busy for part of the run', async () => {
    const inFlight = { now: 0, most: 0 };
    const detect = Detector.prototype.detect;
    const spy = vi.spyOn(Detector.prototype, 'detect').mockImplementation(async function (this: Detector, ...args: Parameters<Detector['detect']>) {
      inFlight.most = Math.max(inFlight.most, ++inFlight.now);
      try {
        return await detect.apply(this, args);
      } finally {
        inFlight.now--;
      }
    });
    try {
      const worker = await run('worker', 1);
      expect(inFlight.most).toBe(2);
      expect(worker.results.get('cam0')!.map((r) => r.frame.index)).toEqual(Array.from({ length: FRAMES }, (_, i) => i));
      const stats = worker.summary.inference[0]!.stats!;
      expect(stats.busyMs).toBeGreaterThan(0);
      inFlight.most = 0;
      await run('in-process', 1);
      expect(inFlight.most).toBe(1);
    } finally {
      spy.mockRestore();
    }
  }, 240_000);
});

describe('runtime settings for inference', () => {
  const camera = 'cameras: [{ name: a, source: { url: "testsrc:" }, model: m }]';
  it('default to a worker thread, batches of up to 4, a 5 ms batch timeout', () => {
    expect(parsePipeline(camera, 'p.yaml').runtime).toMatchObject({ inference: 'worker', max_batch: 4, batch_timeout_ms: 5 });
  });
  it('refuse bad values at their path', () => {
    const issues = (runtime: string) => {
      try {
        parsePipeline(`runtime: ${runtime}\n${camera}`, 'p.yaml');
        return [];
      } catch (err) {
        return (err as ConfigError).issues.map((i) => i.path);
      }
    };
    expect(issues('{ max_batch: 0 }')).toEqual(['runtime.max_batch']);
    expect(issues('{ max_batch: 2.5 }')).toEqual(['runtime.max_batch']);
    expect(issues('{ batch_timeout_ms: -1 }')).toEqual(['runtime.batch_timeout_ms']);
    expect(issues('{ inference: gpu }')).toEqual(['runtime.inference']);
  });
});

describe('the latency window', () => {
  it('gives nearest-rank quantiles of its last values', () => {
    const w = new LatencyWindow(100);
    expect(w.quantile(0.5)).toBeUndefined();
    for (let i = 1; i <= 100; i++) w.add(i);
    expect(w.quantile(0.5)).toBe(50);
    expect(w.quantile(0.99)).toBe(99);
    expect(w.lastMs).toBe(100);
    // Older values leave the window.
    for (let i = 0; i < 100; i++) w.add(1000);
    expect(w.quantile(0.5)).toBe(1000);
    expect(w.count).toBe(100);
  });
});

describe.skipIf(needsAssets)('an inference worker that dies while cameras run', () => {
  it('is started again; the frames it held fail, counted on their cameras; every other frame is processed, in order', async () => {
    // The thread is killed as a crash would end it: from outside, with a batch in it (the 5th run).
    const post = Worker.prototype.postMessage;
    let runs = 0;
    let killed: Promise<number> | undefined;
    const spy = vi.spyOn(Worker.prototype, 'postMessage').mockImplementation(function (this: Worker, message: unknown, transfer?: readonly import('node:worker_threads').TransferListItem[]) {
      post.call(this, message, transfer);
      if ((message as { type?: string }).type === 'run' && ++runs === 5) killed = this.terminate();
    });
    try {
      const { summary, results } = await run('worker', 2);
      expect(killed).toBeDefined();
      await killed;
      const [shared] = summary.inference;
      expect(shared!.stats!.restarts).toBe(1);
      const lost = shared!.stats!.failedFrames;
      expect(lost).toBeGreaterThanOrEqual(1);
      expect(lost).toBeLessThanOrEqual(2);
      let failed = 0;
      for (const camera of ['cam0', 'cam1']) {
        const stats = summary.cameras[camera]!;
        failed += stats.failed;
        expect(stats.processed + stats.failed).toBe(FRAMES);
        const indices = results.get(camera)!.map((r) => r.frame.index);
        expect(indices).toEqual([...indices].sort((a, b) => a - b));
        expect(results.get(camera)!.length).toBe(stats.processed);
      }
      expect(failed).toBe(lost);
      // Frames after the restart were detected: the new thread works.
      expect(results.get('cam0')!.at(-1)!.frame.index).toBe(FRAMES - 1);
    } finally {
      spy.mockRestore();
    }
  }, 240_000);
});
