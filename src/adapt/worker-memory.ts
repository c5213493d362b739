/**
 * A training worker's own memory (its heap is not the main thread's: process.memoryUsage() there
 * does not count it): measured in the worker after a full collection of its heap, and asked for from
 * the main thread by id, with a timeout. Both adaptation workers (head and whole model) use these.
 */
import type { Worker } from 'node:worker_threads';
import { forcedGc } from '../forced-gc.js';
import { wasmHeapBytes, type Tf } from '../train/tf.js';
import type { WorkerMemory } from './engine-protocol.js';

const MB = 1024 * 1024;

/** This thread's memory after a full collection of its heap (asked for by memory measurements only). */
export function measureWorkerMemory(tf: Tf): WorkerMemory {
  forcedGc()();
  const m = process.memoryUsage();
  const t = tf.memory();
  return { heapUsed: m.heapUsed / MB, heapTotal: m.heapTotal / MB, arrayBuffers: m.arrayBuffers / MB, external: m.external / MB, tfTensors: t.numTensors, tfBytes: t.numBytes / MB, wasmHeap: wasmHeapBytes(tf) / MB };
}

/** The main thread's side: `{type: 'memory', id}` posted, the answer of the same id resolving it. */
export class MemoryRequests {
  private readonly waiting = new Map<number, (m: WorkerMemory | undefined) => void>();
  private lastId = 0;

  /** Resolves with the worker's answer, or undefined after `timeoutMs` or when `cancelAll` runs first. */
  ask(worker: Worker, timeoutMs: number): Promise<WorkerMemory | undefined> {
    const id = ++this.lastId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.answer(id, undefined), timeoutMs).unref();
      this.waiting.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      worker.postMessage({ type: 'memory', id });
    });
  }

  answer(id: number, memory: WorkerMemory | undefined): void {
    const resolve = this.waiting.get(id);
    this.waiting.delete(id);
    resolve?.(memory);
  }

  /** Every request still waiting gets undefined (the worker is gone). */
  cancelAll(): void {
    for (const id of [...this.waiting.keys()]) this.answer(id, undefined);
  }
}
