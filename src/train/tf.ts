/**
 * TensorFlow.js for training and adaptation, loaded once. In order: `@tensorflow/tfjs-node` (native
 * libtensorflow) when it is installed; else the WebAssembly backend (XNNPACK; the same on x64 and
 * arm64, about 18x the pure-JS backend on the Beats CNN's training step), with its convolution
 * gradient supplied; else the pure-JS CPU backend with fast convolution gradients.
 * `BEATS_TF_BACKEND=wasm|cpu` picks one of the last two (the native one is then not tried).
 * A caller may prefer the pure-JS one (`loadTf({ pure: 'cpu' })`): the WebAssembly heap grows to the
 * largest step's tensors and never shrinks, about 170 MB for a Beats CNN batch, which small work
 * does not repay.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { BeatsError } from '../errors.js';
import { registerFastConvGradients } from './tf-fast-conv.js';
import { registerWasmConvGradient } from './tf-wasm-conv-gradient.js';

export type Tf = typeof tfType;

export interface LoadedTf {
  tf: Tf;
  /** The backend that runs: 'tensorflow' (native), 'wasm' or 'cpu'. */
  backend: string;
  /** The package that provides it. */
  package: string;
  /** Why the backends before it were not used (empty when the first was). */
  skipped: string[];
}

export type PureBackend = 'wasm' | 'cpu';

let loaded: Promise<LoadedTf> | undefined;

function requested(): PureBackend | undefined {
  const value = process.env.BEATS_TF_BACKEND;
  if (value === undefined || value === '') return undefined;
  if (value === 'wasm' || value === 'cpu') return value;
  throw new BeatsError(`BEATS_TF_BACKEND=${value}: expected wasm or cpu`);
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

async function loadWasm(tf: Tf): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const require = createRequire(import.meta.url);
  wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm')) + path.sep);
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
  registerWasmConvGradient(tf);
}

/** Switches the loaded TensorFlow.js to one of the pure backends (tests compare them). */
export async function usePureBackend(tf: Tf, backend: PureBackend): Promise<void> {
  if (backend === 'wasm') await loadWasm(tf);
  else {
    await tf.setBackend('cpu');
    registerFastConvGradients(tf);
  }
  await tf.ready();
}

/** The bytes of the WebAssembly backend's heap (0 on any other backend): memory no JS heap counts. */
export function wasmHeapBytes(tf: Tf): number {
  if (tf.getBackend() !== 'wasm') return 0;
  return (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.byteLength ?? 0;
}

/**
 * TensorFlow.js, loaded once per thread (the first caller's `pure` holds for the thread): `pure` is
 * the pure backend to use when the native one is not installed (default wasm).
 */
export function loadTf(options: { pure?: PureBackend } = {}): Promise<LoadedTf> {
  loaded ??= (async () => {
    const skipped: string[] = [];
    const forced = requested();
    const choice = forced ?? options.pure;
    if (!forced) {
      try {
        const tf = (await import('@tensorflow/tfjs-node' as string)) as Tf;
        await tf.ready();
        return { tf, backend: tf.getBackend(), package: '@tensorflow/tfjs-node', skipped };
      } catch (err) {
        skipped.push(`@tensorflow/tfjs-node: ${(err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' ? 'not installed' : firstLine(err)}`);
      }
    }
    const tf = await import('@tensorflow/tfjs');
    if (choice !== 'cpu') {
      try {
        await usePureBackend(tf, 'wasm');
        return { tf, backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm', skipped };
      } catch (err) {
        if (choice === 'wasm') throw err;
        skipped.push(`wasm: ${firstLine(err)}`);
      }
    }
    await usePureBackend(tf, 'cpu');
    return { tf, backend: 'cpu', package: '@tensorflow/tfjs', skipped };
  })();
  return loaded;
}
