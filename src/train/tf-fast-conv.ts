import type * as tfType from '@tensorflow/tfjs';

/**
 * Faster gradients of 2-D convolution for TensorFlow.js's pure-JS CPU backend.
 *
 * The CPU backend's Conv2DBackpropFilter / Conv2DBackpropInput kernels are written for generality
 * and run at a small fraction of what its forward convolution does: training the Beats CNN's body
 * in pure JS took about 30 s per batch of 8 with them. These replacements handle the case the Beats
 * CNN uses (NHWC, stride 1, dilation 1, 'same' or 'valid' padding) as the two matrix products they
 * are, with the innermost loop over contiguous output channels, and hand every other case to the
 * original kernels. They are registered only for the 'cpu' backend (tfjs-node has native kernels).
 */

interface CpuBackend {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tfType.TensorInfo;
}

interface KernelArgs {
  inputs: Record<string, tfType.TensorInfo>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

type KernelFunc = (args: KernelArgs) => tfType.TensorInfo | tfType.TensorInfo[];

let registered = false;

/** The case both backends' replacement gradients handle: NHWC, stride 1, dilation 1, 'same' or 'valid' padding. */
export function simpleCase(attrs: Record<string, unknown> | undefined): { pad: 'same' | 'valid' } | undefined {
  if (!attrs) return undefined;
  const strides = attrs.strides;
  const dilations = attrs.dilations;
  const one = (v: unknown) => v === undefined || v === 1 || (Array.isArray(v) && v.every((d) => d === 1));
  if (!one(strides) || !one(dilations)) return undefined;
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') return undefined;
  if (attrs.pad !== 'same' && attrs.pad !== 'valid') return undefined;
  return { pad: attrs.pad };
}

/** dW[ky,kx,ci,co] = Σ_{n,y,x} X[n, y+ky-p, x+kx-p, ci] · dY[n, y, x, co] */
function filterGradient(x: Float32Array, xShape: number[], dy: Float32Array, dyShape: number[], kh: number, kw: number, pad: 'same' | 'valid'): Float32Array {
  const [n, h, w, ci] = xShape as [number, number, number, number];
  const [, oh, ow, co] = dyShape as [number, number, number, number];
  const py = pad === 'same' ? Math.floor((kh - 1) / 2) : 0;
  const px = pad === 'same' ? Math.floor((kw - 1) / 2) : 0;
  const dw = new Float32Array(kh * kw * ci * co);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < oh; y++) {
      for (let xo = 0; xo < ow; xo++) {
        const dyo = ((b * oh + y) * ow + xo) * co;
        for (let ky = 0; ky < kh; ky++) {
          const iy = y + ky - py;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ix = xo + kx - px;
            if (ix < 0 || ix >= w) continue;
            const xoff = ((b * h + iy) * w + ix) * ci;
            const woff = (ky * kw + kx) * ci * co;
            for (let c = 0; c < ci; c++) {
              const xv = x[xoff + c]!;
              if (xv === 0) continue; // after a ReLU, many are
              const wo = woff + c * co;
              for (let o = 0; o < co; o++) dw[wo + o]! += xv * dy[dyo + o]!;
            }
          }
        }
      }
    }
  }
  return dw;
}

/** dX[n, y+ky-p, x+kx-p, ci] += Σ_co W[ky,kx,ci,co] · dY[n,y,x,co] */
function inputGradient(dy: Float32Array, dyShape: number[], wt: Float32Array, wShape: number[], xShape: number[], pad: 'same' | 'valid'): Float32Array {
  const [n, h, w, ci] = xShape as [number, number, number, number];
  const [, oh, ow, co] = dyShape as [number, number, number, number];
  const [kh, kw] = wShape as [number, number];
  const py = pad === 'same' ? Math.floor((kh - 1) / 2) : 0;
  const px = pad === 'same' ? Math.floor((kw - 1) / 2) : 0;
  const dx = new Float32Array(n * h * w * ci);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < oh; y++) {
      for (let xo = 0; xo < ow; xo++) {
        const dyo = ((b * oh + y) * ow + xo) * co;
        for (let ky = 0; ky < kh; ky++) {
          const iy = y + ky - py;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kw; kx++) {
            const ix = xo + kx - px;
            if (ix < 0 || ix >= w) continue;
            const xoff = ((b * h + iy) * w + ix) * ci;
            const woff = (ky * kw + kx) * ci * co;
            for (let c = 0; c < ci; c++) {
              const wo = woff + c * co;
              let sum = 0;
              for (let o = 0; o < co; o++) sum += wt[wo + o]! * dy[dyo + o]!;
              dx[xoff + c]! += sum;
            }
          }
        }
      }
    }
  }
  return dx;
}

/** Replaces the CPU backend's convolution gradient kernels (once per process). */
export function registerFastConvGradients(tf: typeof tfType): void {
  if (registered) return;
  registered = true;
  const original = {
    filter: tf.getKernel('Conv2DBackpropFilter', 'cpu')?.kernelFunc as KernelFunc | undefined,
    input: tf.getKernel('Conv2DBackpropInput', 'cpu')?.kernelFunc as KernelFunc | undefined,
  };
  if (!original.filter || !original.input) return;
  tf.unregisterKernel('Conv2DBackpropFilter', 'cpu');
  tf.unregisterKernel('Conv2DBackpropInput', 'cpu');
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'cpu',
    kernelFunc: ((args: KernelArgs) => {
      const simple = simpleCase(args.attrs);
      if (!simple) return original.filter!(args);
      const backend = args.backend as CpuBackend;
      const { x, dy } = args.inputs as { x: tfType.TensorInfo; dy: tfType.TensorInfo };
      const filterShape = args.attrs!.filterShape as number[];
      const values = filterGradient(backend.data.get(x.dataId).values, x.shape, backend.data.get(dy.dataId).values, dy.shape, filterShape[0]!, filterShape[1]!, simple.pad);
      return backend.makeTensorInfo(filterShape, 'float32', values);
    }) as unknown as tfType.KernelFunc,
  });
  tf.registerKernel({
    kernelName: 'Conv2DBackpropInput',
    backendName: 'cpu',
    kernelFunc: ((args: KernelArgs) => {
      const simple = simpleCase(args.attrs);
      if (!simple) return original.input!(args);
      const backend = args.backend as CpuBackend;
      const { dy, filter } = args.inputs as { dy: tfType.TensorInfo; filter: tfType.TensorInfo };
      const inputShape = args.attrs!.inputShape as number[];
      const values = inputGradient(backend.data.get(dy.dataId).values, dy.shape, backend.data.get(filter.dataId).values, filter.shape, inputShape, simple.pad);
      return backend.makeTensorInfo(inputShape, 'float32', values);
    }) as unknown as tfType.KernelFunc,
  });
}
