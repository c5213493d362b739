/**
 * The inference worker thread: one onnxruntime session (the model at one input size, on one
 * provider), running the batches its backend (worker.ts) sends, one at a time, and sending back each
 * frame's candidates with the input buffers (transferred both ways, never copied).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../../errors.js';
import { cardMismatches } from '../card-check.js';
import { createSession } from '../providers.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { batchProbe, runBatch } from './run-batch.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const send = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
const buffers = (inputs: Float32Array[]) => inputs.map((i) => i.buffer as ArrayBuffer);

async function start(): Promise<void> {
  const { session, provider } = await createSession(init.model, init.settings, { modelName: init.modelName });
  const problems = cardMismatches(init.card, session.inputMetadata, session.outputMetadata);
  if (problems.length > 0) {
    await session.release().catch(() => undefined);
    throw new Error(`its card does not fit the model: ${problems.join('; ')}`);
  }
  const shape = { card: init.card, inputWidth: init.inputWidth, inputHeight: init.inputHeight };
  const unbatched = init.maxBatch > 1 ? await batchProbe(session, shape) : undefined;
  const scratch: { buffer?: Float32Array } = {};
  // Batches come one at a time from the backend; the chain keeps them in order all the same.
  let queue = Promise.resolve();
  port.on('message', (message: ToWorker) => {
    queue = queue.then(async () => {
      const inputs = message.items.map((i) => i.input);
      try {
        const candidates = await runBatch(session, shape, message.items, scratch);
        send({ type: 'done', id: message.id, candidates, inputs }, buffers(inputs));
      } catch (err) {
        send({ type: 'error', id: message.id, message: errorMessage(err), inputs }, buffers(inputs));
      }
    });
  });
  send({ type: 'ready', provider, maxBatch: unbatched ? 1 : init.maxBatch, unbatched });
}

start().catch((err: unknown) => send({ type: 'failed', message: errorMessage(err) }));
