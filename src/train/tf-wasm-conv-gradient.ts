import type * as tfType from '@tensorflow/tfjs';
import { simpleCase } from './tf-fast-conv.js';

/**
 * The gradient of 2-D convolution as tensor operations, for TensorFlow.js's WebAssembly backend.
 *
 * That backend has no Conv2DBackpropFilter kernel at all, and its Conv2DBackpropInput and
 * transposes are slow, while its forward convolution and plain matrix products (XNNPACK) are fast.
 * So, for the cases the Beats CNN uses (NHWC, stride 1, dilation 1, odd kernels, 'same' or 'valid'
 * padding): the input's gradient is a forward convolution of dY (padded by k-1 for 'valid') with the
 * filter turned by 180° and its channels swapped; the filter's is dYᵀ times the input's k·k shifted
 * copies side by side (im2col), one product whose long axis is the inner one. Every other case, and every other backend
 * (on the pure-JS CPU backend these ops are slower than its kernels), keeps TF.js's own gradient.
 */

let registered = false;

/** The padding, when the gradient below handles the case: simpleCase's, with odd kernels. */
function handled(attrs: Record<string, unknown>, filterShape: number[]): 'same' | 'valid' | undefined {
  const [kh, kw] = filterShape as [number, number];
  return kh % 2 === 1 && kw % 2 === 1 ? simpleCase(attrs)?.pad : undefined;
}

function filterGradient(tf: typeof tfType, x: tfType.Tensor4D, dy: tfType.Tensor4D, filterShape: number[], pad: 'same' | 'valid'): tfType.Tensor4D {
  const [kh, kw, ci, co] = filterShape as [number, number, number, number];
  const [n, oh, ow] = dy.shape;
  const rows = n * oh * ow;
  const dyT = dy.reshape([rows, co]).transpose();
  let columns: tfType.Tensor = x;
  if (kh > 1 || kw > 1) {
    const [py, px] = pad === 'same' ? [(kh - 1) / 2, (kw - 1) / 2] : [0, 0];
    const padded = tf.pad(x, [[0, 0], [py, py], [px, px], [0, 0]]);
    const shifted: tfType.Tensor4D[] = [];
    for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) shifted.push(tf.slice(padded, [0, ky, kx, 0], [n, oh, ow, ci]));
    columns = tf.concat(shifted, 3);
  }
  // [co, rows] x [rows, kh*kw*ci]: the order of the columns is the filter's (ky, kx, ci).
  return tf.matMul(dyT, columns.reshape([rows, kh * kw * ci])).transpose().reshape([kh, kw, ci, co]);
}

function inputGradient(tf: typeof tfType, dy: tfType.Tensor4D, filter: tfType.Tensor4D, pad: 'same' | 'valid'): tfType.Tensor4D {
  const [kh, kw] = filter.shape;
  const turned = tf.reverse(filter, [0, 1]).transpose([0, 1, 3, 2]) as tfType.Tensor4D;
  if (pad === 'same' || (kh === 1 && kw === 1)) return tf.conv2d(dy, turned, 1, 'same');
  const full = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]);
  return tf.conv2d(full, turned, 1, 'valid');
}

/** Registers the Conv2D gradient above (once per process); it acts only while the backend is 'wasm'. */
export function registerWasmConvGradient(tf: typeof tfType): void {
  if (registered) return;
  const original = tf.getGradient('Conv2D');
  if (!original) return;
  registered = true;
  tf.registerGradient({
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved as [tfType.Tensor4D, tfType.Tensor4D];
      const pad = tf.getBackend() === 'wasm' ? handled(attrs as Record<string, unknown>, filter.shape) : undefined;
      if (!pad) return original.gradFunc(dy, saved, attrs);
      const g = dy as tfType.Tensor4D;
      return { x: () => inputGradient(tf, g, filter, pad), filter: () => filterGradient(tf, x, g, filter.shape, pad) };
    },
  });
}
