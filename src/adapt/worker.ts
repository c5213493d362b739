/**
 * The Beats engine's training worker (a worker_threads Worker started by src/adapt/engine.ts): it
 * runs the core (local error accumulation, triggers, update, guard) on the frames the engine posts,
 * one at a time, so that inference on the main thread never waits for training.
 *
 * It acknowledges every batch of frames (with the core's counters and error energies) and posts the
 * outcome of every update attempt. Asked, it reports its own memory (its heap is not the main
 * thread's: process.memoryUsage() there does not count it). It does not catch its own errors: an
 * error ends the worker, and the engine logs it, counts it and starts a new one from the last good head.
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { loadTf } from '../train/tf.js';
import { measureWorkerMemory } from './worker-memory.js';
import { BeatsCore } from './engine-core.js';
import { unpackFrame, type FromWorker, type ToWorker, type WorkerInit } from './engine-protocol.js';

/** Nice value of the training thread: a lower priority than the frame path's threads (nice 0). */
const TRAINING_NICE = 10;

const port = parentPort;
if (!port) throw new Error('src/adapt/worker.ts runs in a worker thread (started by the Beats engine)');

const init = workerData as WorkerInit;
// On a board with a few cores, the training thread would take turns with onnxruntime's threads and
// ffmpeg at equal priority, and every turn it took would be a frame late. On Linux the nice value
// is per thread (setpriority(2) on the calling thread), so this makes the scheduler prefer the frame
// path without touching it; elsewhere it would renice the whole process, so it is left alone.
// Raising one's own nice value never needs a privilege.
if (process.platform === 'linux') os.setPriority(TRAINING_NICE);
// The head's work is small products over cached features: the pure-JS backend, since the
// WebAssembly heap would grow to about 170 MB per camera for little gain (src/train/tf.ts).
const { tf } = await loadTf({ pure: 'cpu' });
const core = new BeatsCore({ config: init.config, base: init.base, head: init.head, tf, seed: init.seed, loss: init.loss, threshold: init.threshold });
const dims = init.base.map((l) => l.shape[1]);
let generation = init.generation;
let frames = 0;

const post = (message: FromWorker) => port.postMessage(message);

port.on('message', (message: ToWorker) => {
  if (message.type === 'reset') {
    generation = message.generation;
    core.reset(message.head);
    return;
  }
  if (message.type === 'memory') {
    post({ type: 'memory', id: message.id, memory: measureWorkerMemory(tf) });
    return;
  }
  for (const frame of message.frames) {
    frames++;
    if (init.faultAtFrame !== undefined && frames === init.faultAtFrame) throw new Error(`injected fault at frame ${frames}`);
    const outcome = core.ingest(unpackFrame(frame, dims));
    if (outcome) post({ type: 'outcome', generation, outcome });
  }
  post({ type: 'ack', generation, frames: message.frames.length, stats: core.stats() });
});
post({ type: 'ready' });
