/**
 * `node --import tsx bench/train-step.ts`: one Beats CNN training step (8 frames, forward, gradient,
 * Adam) on TensorFlow.js's pure backends side by side, the pure-JS CPU one and the WebAssembly one,
 * at 160x120 and at 256x192 with a context stage; alternating rounds, the best of BENCH_ROUNDS
 * (default 3), since on a shared machine noise only slows a round down. The model's step alone:
 * drawing and augmenting the frames is not in it.
 */
import { defaultSpec, initWeights, type BeatsCnnSpec } from '../src/train/beats-cnn.js';
import { asVariables, trainStep, type TrainingSample } from '../src/train/beats-train.js';
import { loadTf, usePureBackend, type PureBackend } from '../src/train/tf.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const { tf } = await loadTf();
const specs: Array<[string, BeatsCnnSpec]> = [
  ['160x120', defaultSpec],
  ['256x192, context 64', { ...defaultSpec, inputWidth: 256, inputHeight: 192, context: 64 }],
];

function batchFor(spec: BeatsCnnSpec): TrainingSample[] {
  return Array.from({ length: 8 }, (_, i) => ({
    pixels: Uint8Array.from({ length: spec.inputWidth * spec.inputHeight * 3 }, (_, j) => (j * 31 + i * 97) % 256),
    boxes: [{ classId: i % 3, box: [10 + i * 5, 12, 60 + i * 5, 90] as [number, number, number, number], ignore: false }],
  }));
}

async function stepMs(backend: PureBackend, spec: BeatsCnnSpec, steps: number): Promise<number> {
  await usePureBackend(tf, backend);
  const weights = asVariables(tf, initWeights(tf, spec, 1));
  const optimizer = tf.train.adam(0.001);
  const batch = batchFor(spec);
  trainStep(tf, spec, weights, optimizer, batch);
  const started = performance.now();
  for (let i = 0; i < steps; i++) trainStep(tf, spec, weights, optimizer, batch);
  const ms = (performance.now() - started) / steps;
  weights.forEach((t) => t.dispose());
  optimizer.dispose();
  return ms;
}

console.log(`one training step of 8 frames, best of ${rounds} rounds:`);
for (const [name, spec] of specs) {
  const best = { cpu: Infinity, wasm: Infinity };
  for (let r = 0; r < rounds; r++) {
    best.cpu = Math.min(best.cpu, await stepMs('cpu', spec, 2));
    best.wasm = Math.min(best.wasm, await stepMs('wasm', spec, 4));
  }
  console.log(`${name.padEnd(20)} pure-JS CPU ${best.cpu.toFixed(0).padStart(6)} ms   WebAssembly ${best.wasm.toFixed(0).padStart(5)} ms   ${(best.cpu / best.wasm).toFixed(1)}x`);
}
