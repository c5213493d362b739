// The inference worker's entry (src/worker-entry.ts says how it is made).
import { workerEntry } from '../../worker-entry.js';

let entry: string | undefined;

export function inferenceWorkerBootstrap(): string {
  entry ??= workerEntry(import.meta.url, new URL('./worker-thread.js', import.meta.url), new URL('./worker-thread.ts', import.meta.url));
  return entry;
}
