// The whole-model training worker's entry (src/worker-entry.ts says how it is made).
import { workerEntry } from '../../worker-entry.js';

let entry: string | undefined;

export function studentWorkerBootstrap(): string {
  entry ??= workerEntry(import.meta.url, new URL('./worker.js', import.meta.url), new URL('./worker.ts', import.meta.url));
  return entry;
}
