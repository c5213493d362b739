/**
 * The frame-path cost of swapping a whole weight set into a running detector (Detector.swapWeights):
 * the synchronous part of 20 swaps of beats-s-real's weights into beats-s, beside the event loop's own
 * delay over 2 s with no swap, measured in the same run (docs/adaptation.md, "The whole model").
 *   node --import tsx bench/weights-swap.ts
 */
import { readFile } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Detector } from '../src/model/detector.js';
import { resolveModel } from '../src/model/registry.js';
const runtime = { providers: ['cpu' as const], tensorrt: { fp16: false, engineCache: '/tmp/x' }, threads: 0 };
const d = await Detector.load('beats-s', { runtime, backend: 'in-process' });
const bytes = await readFile((await resolveModel('beats-s-real')).onnxPath);
const h = monitorEventLoopDelay({ resolution: 1 });
let worst = 0;
for (let i = 0; i < 20; i++) {
  // The synchronous part: from the call to its first await.
  const t0 = performance.now();
  const p = d.swapWeights(bytes, runtime);
  const sync = performance.now() - t0;
  h.enable();
  await p;
  h.disable();
  worst = Math.max(worst, sync);
}
const idle = monitorEventLoopDelay({ resolution: 1 });
idle.enable();
await new Promise((r) => setTimeout(r, 2000));
idle.disable();
console.log(`no swap, 2 s: event-loop delay max ${(idle.max / 1e6).toFixed(2)} ms p99 ${(idle.percentile(99) / 1e6).toFixed(2)} ms`);
console.log(`swap: worst synchronous part ${worst.toFixed(2)} ms; event-loop delay during swaps max ${(h.max / 1e6).toFixed(2)} ms p99 ${(h.percentile(99) / 1e6).toFixed(2)} ms`);
await d.close();
