/**
 * Whole-model adaptation's training worker (a worker_threads Worker started by engine.ts): the
 * StudentTrainer on the supervised frames the engine posts. After each frame it tries an update
 * when the rate limit and its CPU share allow; an accepted weight set goes back as an ONNX file
 * (exported here, off the main thread) and as raw weights. It does not catch its own errors: an
 * error ends the worker, and the engine starts a new one from the serving weights.
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { loadTf } from '../../train/tf.js';
import { loadCheckpoint } from '../../train/beats-train.js';
import { exportBeatsOnnx } from '../../train/beats-export.js';
import type { Weights } from '../../train/beats-cnn.js';
import type { FromStudentWorker, NamedWeights, StudentWorkerInit, ToStudentWorker } from './protocol.js';
import { StudentTrainer } from './trainer.js';
import { measureWorkerMemory } from '../worker-memory.js';

const port = parentPort;
if (!port) throw new Error('src/adapt/student/worker.ts runs in a worker thread (started by the whole-model engine)');
const init = workerData as StudentWorkerInit;
// Below the frame path's threads, as the head worker is (src/adapt/worker.ts says why).
if (process.platform === 'linux') os.setPriority(10);

const { tf } = await loadTf();
const checkpoint = await loadCheckpoint(tf, init.checkpoint);
const spec = init.spec;

function weightsOf(named: NamedWeights | 'base' | undefined): Weights {
  if (!named || named === 'base') return new Map([...checkpoint.weights].map(([k, t]) => [k, t.clone()]));
  return new Map(named.map((w) => [w.name, tf.tensor(w.data, w.shape)]));
}

function start(named: NamedWeights | 'base' | undefined): StudentTrainer {
  const initial = weightsOf(named);
  const trainer = new StudentTrainer(tf, spec, initial, init.trainer);
  initial.forEach((t) => t.dispose());
  return trainer;
}

let trainer = start(init.weights);
let generation = init.generation;
let nextUpdateAt = 0;
let busyMs = 0;
let frames = 0;
/** The serving weights' held-out F1 at the last update attempt: after it when accepted, before it when rejected. */
let holdoutF1: number | undefined;
const startedAt = performance.now();
const post = (message: FromStudentWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

function tryUpdate(): void {
  const now = performance.now();
  if (now < nextUpdateAt) return;
  const outcome = trainer.update();
  if (outcome.kind === 'waiting') return;
  const took = performance.now() - now;
  busyMs += took;
  // The next update waits long enough that updates take at most the share of the time.
  nextUpdateAt = performance.now() + Math.max(init.minIntervalMs, took * (1 / init.maxTrainShare - 1));
  holdoutF1 = outcome.kind === 'accepted' ? outcome.figures.holdout.f1After : outcome.figures.holdout.f1Before;
  if (outcome.kind === 'rejected') return post({ type: 'outcome', generation, outcome });
  const arrays = trainer.weightArrays();
  const onnx = exportBeatsOnnx(spec, arrays, { version: init.modelVersion, docString: `${init.camera}: whole-model adaptation` });
  const weights: NamedWeights = [...arrays].map(([name, w]) => ({ name, shape: w.shape, data: w.data }));
  // The threshold the accepted set serves at: its best F1 on the held-out frames it was judged on (never trained on).
  const threshold = init.chooseThreshold ? trainer.operatingPoint()?.threshold : undefined;
  post({ type: 'outcome', generation, outcome, onnx, weights, ...(threshold === undefined ? {} : { threshold }) }, [onnx.buffer as ArrayBuffer, ...weights.map((w) => w.data.buffer as ArrayBuffer)]);
}

port.on('message', (message: ToStudentWorker) => {
  if (message.type === 'memory') {
    post({ type: 'memory', id: message.id, memory: measureWorkerMemory(tf) });
    return;
  }
  if (message.type === 'reset') {
    trainer.dispose();
    trainer = start(message.weights);
    generation = message.generation;
    holdoutF1 = undefined;
    return;
  }
  frames++;
  if (frames === init.faultAtFrame) throw new Error(`fault injected at frame ${frames}`);
  trainer.add(message.image, message.key, message.use);
  tryUpdate();
  const c = trainer.counts;
  post({ type: 'ack', generation, stats: { trained: c.trained, heldOut: c.heldOut, reservoir: trainer.reservoirSize, holdout: trainer.holdoutSize, trainShare: busyMs / Math.max(1, performance.now() - startedAt), ...(holdoutF1 === undefined ? {} : { holdoutF1 }) } });
});
post({ type: 'ready' });
