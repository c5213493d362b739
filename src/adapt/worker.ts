/**
 * The Beats engine's training worker (a worker_threads Worker started by src/adapt/engine.ts): it
 * runs the core (local error accumulation, triggers, update, guard) on the frames the engine posts,
 * one at a time, so that inference on the main thread never waits for training.
 *
 * It acknowledges every batch of frames (with the core's counters and error energies) and posts the
 * outcome of every update attempt. It does not catch its own errors: an error ends the worker, and the
 * engine logs it, counts it and starts a new one from the last good head.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadTf } from '../model/tf.js';
import { BeatsCore } from './engine-core.js';
import { unpackFrame, type FromWorker, type ToWorker, type WorkerInit } from './engine-protocol.js';

const port = parentPort;
if (!port) throw new Error('src/adapt/worker.ts runs in a worker thread (started by the Beats engine)');

const init = workerData as WorkerInit;
const { tf } = await loadTf();
const core = new BeatsCore({ config: init.config, base: init.base, head: init.head, tf, seed: init.seed, loss: init.loss });
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
  for (const frame of message.frames) {
    frames++;
    if (init.faultAtFrame !== undefined && frames === init.faultAtFrame) throw new Error(`injected fault at frame ${frames}`);
    const outcome = core.ingest(unpackFrame(frame, dims));
    if (outcome) post({ type: 'outcome', generation, outcome });
  }
  post({ type: 'ack', generation, frames: message.frames.length, stats: core.stats() });
});
post({ type: 'ready' });
