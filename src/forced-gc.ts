/**
 * A full garbage collection on demand, without starting node with --expose-gc: the flag is set at
 * run time and `gc` taken from a fresh context. Works in the main thread and in a worker thread
 * (each collects its own isolate's heap). For memory measurements (`beats soak`).
 */
import v8 from 'node:v8';
import vm from 'node:vm';

export function forcedGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}
