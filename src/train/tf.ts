/** TensorFlow.js for training and adaptation, loaded once: the native backend when installed, else the pure-JS CPU one with fast convolution gradients. */
import type * as tfType from '@tensorflow/tfjs';
import { registerFastConvGradients } from './tf-fast-conv.js';

export type Tf = typeof tfType;

let loaded: Promise<{ tf: Tf; backend: string; package: string }> | undefined;

/**
 * TensorFlow.js: `@tensorflow/tfjs-node` (native libtensorflow) when it is installed, else the pure
 * JS `@tensorflow/tfjs` on its CPU backend, with faster convolution gradients registered.
 */
export function loadTf(): Promise<{ tf: Tf; backend: string; package: string }> {
  loaded ??= (async () => {
    try {
      const tf = (await import('@tensorflow/tfjs-node' as string)) as Tf;
      await tf.ready();
      return { tf, backend: tf.getBackend(), package: '@tensorflow/tfjs-node' };
    } catch {
      const tf = await import('@tensorflow/tfjs');
      await tf.setBackend('cpu');
      await tf.ready();
      registerFastConvGradients(tf);
      return { tf, backend: tf.getBackend(), package: '@tensorflow/tfjs' };
    }
  })();
  return loaded;
}
