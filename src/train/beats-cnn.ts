import type * as tfType from '@tensorflow/tfjs';

/**
 * The Beats CNN, defined once, in TensorFlow.js. A compact body for CPUs, then the Beats head of
 * BEATS.md: per-cell class logits from a final 1x1 convolution, beside a 1x1 box regression,
 * anchor-free on one grid (stride 4, or 8 for a spec without `stride`).
 *
 * Body: space-to-depth by 4 (pixels become channels: no expensive full-resolution convolution),
 * 1x1 and 3x3 convolutions with batch norm and ReLU, space-to-depth by 2, three more. Every
 * convolution has stride 1, so it maps to one ONNX Conv, and training can use fast gradients.
 * The stride-4 grid then fuses the stride-8 map, brought up by 2 (nearest), with the stride-4 map
 * of c2: one 1x1 convolution over both, with batch norm and ReLU: at stride 8 a far person and the
 * bicycle they push hold one cell between them, and far bicycles are missed.
 *
 * Output, per cell in row-major order (the same in TF.js and in the exported ONNX):
 *   [x1, y1, x2, y2, score_0 .. score_C-1], box in input pixels, scores after a sigmoid.
 * The box is the cell centre minus/plus exp(l, t, r, b) · stride.
 */
export interface BeatsCnnSpec {
  inputWidth: number;
  inputHeight: number;
  classes: readonly string[];
  /** Channels of the body's convolutions. */
  widths: { stem: number; mid: number; head: number };
  /** The head's grid, in input pixels per cell. Absent: 8 (the grid of the first trained models). */
  stride?: 4 | 8;
  /**
   * Channels of a context stage at stride 16 (absent: none). Its map, brought up by 2, is fused into
   * the stride-8 map before that goes to the head's grid: it widens what one cell sees from about
   * 60 input pixels to about 190, which objects larger in input pixels (a higher input) need.
   */
  context?: number;
  /**
   * Training only: positive cells within this share of a box's shorter side from its centre, when
   * more than 1.5 cells (src/model/assign.ts, `sizeRadius`). Absent: 1.5 cells whatever the size.
   */
  sizeRadius?: number;
  /**
   * Training only: what a positive cell's class score learns. `hard` (absent): 1, by focal loss.
   * `iou`: the IoU of the cell's predicted box with its object's, by quality focal loss (GFL), so
   * that a better-placed box scores higher: non-maximum suppression keeps it, and the ranking that
   * mAP@0.5 measures follows how well boxes are placed, not only whether something is there.
   */
  clsTarget?: 'hard' | 'iou';
}

export const defaultSpec: BeatsCnnSpec = {
  inputWidth: 160,
  inputHeight: 120,
  classes: ['person', 'car', 'bicycle'],
  widths: { stem: 24, mid: 48, head: 48 },
  stride: 4,
};

export function strideOf(spec: BeatsCnnSpec): 4 | 8 {
  return spec.stride ?? 8;
}

export type Layer =
  | { kind: 's2d'; name: string; block: number }
  | { kind: 'conv'; name: string; size: 1 | 3; inChannels: number; outChannels: number }
  /**
   * A 1x1 convolution over [the running map upsampled by 2 (nearest), the output of the earlier
   * conv `fine`], channels in that order: weight [1, 1, coarseChannels + fineChannels, out].
   * Computed as up2(conv(coarse)) + conv(fine), which is the same and never builds the joined map.
   */
  | { kind: 'fuse'; name: string; fine: string; coarseChannels: number; fineChannels: number; outChannels: number };

/** The body, in order. The last conv's output is the head's feature map (D = widths.head). */
export function bodyLayers(spec: BeatsCnnSpec): Layer[] {
  const { stem, mid, head } = spec.widths;
  const coarse: Layer[] = [
    { kind: 's2d', name: 's2d4', block: 4 },
    { kind: 'conv', name: 'c1', size: 1, inChannels: 48, outChannels: stem },
    { kind: 'conv', name: 'c2', size: 3, inChannels: stem, outChannels: stem },
    { kind: 's2d', name: 's2d2', block: 2 },
    { kind: 'conv', name: 'c3', size: 1, inChannels: stem * 4, outChannels: mid },
    { kind: 'conv', name: 'c4', size: 3, inChannels: mid, outChannels: mid },
    { kind: 'conv', name: 'c5', size: 3, inChannels: mid, outChannels: head },
  ];
  const context: Layer[] = spec.context
    ? [
        { kind: 's2d', name: 's2d2c', block: 2 },
        { kind: 'conv', name: 'c7', size: 1, inChannels: head * 4, outChannels: spec.context },
        { kind: 'conv', name: 'c8', size: 3, inChannels: spec.context, outChannels: spec.context },
        { kind: 'conv', name: 'c9', size: 3, inChannels: spec.context, outChannels: spec.context },
        { kind: 'fuse', name: 'c10', fine: 'c5', coarseChannels: spec.context, fineChannels: head, outChannels: head },
      ]
    : [];
  if (strideOf(spec) === 8) return [...coarse, ...context];
  return [
    ...coarse,
    ...context,
    { kind: 'fuse', name: 'c6', fine: 'c2', coarseChannels: head, fineChannels: stem, outChannels: head },
  ];
}

/** Named weights: `<conv>.weight` [k, k, in, out] (HWIO), `<conv>.bn.{gamma,beta,mean,variance}`, `head.{cls,box}.{weight,bias}`. */
export type Weights = Map<string, tfType.Tensor>;

export const BN_EPSILON = 1e-3;

export function gridSize(spec: BeatsCnnSpec): { gw: number; gh: number } {
  // The body always goes down to stride 8 (16 with a context stage), even when the head's grid is finer.
  const deepest = spec.context ? 16 : 8;
  if (spec.inputHeight % deepest !== 0 || spec.inputWidth % deepest !== 0) throw new Error(`input ${spec.inputWidth}x${spec.inputHeight} is not a multiple of ${deepest}`);
  const stride = strideOf(spec);
  return { gw: spec.inputWidth / stride, gh: spec.inputHeight / stride };
}

/**
 * Fresh weights: He-normal convolutions, batch norm at identity, class bias at a 1 % prior. A fusion
 * whose fine input has its own width (the context stage's) starts as that input passed through, the
 * coarse part near zero, so a warm start from a model without the stage starts close to it.
 */
export function initWeights(tf: typeof tfType, spec: BeatsCnnSpec, seed: number): Weights {
  const weights: Weights = new Map();
  let s = seed;
  for (const layer of bodyLayers(spec)) {
    if (layer.kind === 's2d') continue;
    const [size, inChannels] = layer.kind === 'conv' ? [layer.size, layer.inChannels] : [1, layer.coarseChannels + layer.fineChannels];
    const fanIn = size * size * inChannels;
    if (layer.kind === 'fuse' && layer.fineChannels === layer.outChannels) {
      const coarse = tf.randomNormal([1, 1, layer.coarseChannels, layer.outChannels], 0, 0.01, 'float32', s++);
      const fine = tf.eye(layer.outChannels).reshape([1, 1, layer.outChannels, layer.outChannels]);
      weights.set(`${layer.name}.weight`, tf.concat([coarse, fine], 2));
    } else {
      weights.set(`${layer.name}.weight`, tf.randomNormal([size, size, inChannels, layer.outChannels], 0, Math.sqrt(2 / fanIn), 'float32', s++));
    }
    weights.set(`${layer.name}.bn.gamma`, tf.ones([layer.outChannels]));
    weights.set(`${layer.name}.bn.beta`, tf.zeros([layer.outChannels]));
    weights.set(`${layer.name}.bn.mean`, tf.zeros([layer.outChannels]));
    weights.set(`${layer.name}.bn.variance`, tf.ones([layer.outChannels]));
  }
  const d = spec.widths.head;
  const c = spec.classes.length;
  weights.set('head.cls.weight', tf.randomNormal([1, 1, d, c], 0, 0.01, 'float32', s++));
  weights.set('head.cls.bias', tf.fill([c], -Math.log((1 - 0.01) / 0.01)));
  weights.set('head.box.weight', tf.randomNormal([1, 1, d, 4], 0, 0.01, 'float32', s++));
  weights.set('head.box.bias', tf.fill([4], Math.log(1.5)));
  return weights;
}

/** Weights that training changes (batch-norm statistics are updated separately). */
export function isTrainable(name: string): boolean {
  return !name.endsWith('.bn.mean') && !name.endsWith('.bn.variance');
}

export function spaceToDepth(tf: typeof tfType, x: tfType.Tensor4D, block: number): tfType.Tensor4D {
  const [n, h, w, c] = x.shape;
  return x.reshape([n, h / block, block, w / block, block, c]).transpose([0, 1, 3, 2, 4, 5]).reshape([n, h / block, w / block, block * block * c]);
}

/**
 * Nearest-neighbour upsampling by 2 of an NHWC map. The value is TF.js's resizeNearestNeighbor; the
 * gradient is written here, each input pixel summing its 2x2 block, because the CPU backend's
 * ResizeNearestNeighborGrad returns wrong values for this case (tfjs 4.22: off by up to 8 on a 3x4
 * map, which silently corrupted the coarse branch of a training run; test/beats-cnn.test.ts checks it).
 */
export function upsample2(tf: typeof tfType, x: tfType.Tensor4D): tfType.Tensor4D {
  const up = tf.customGrad((...args: Array<tfType.Tensor | tfType.GradSaveFunc>) => {
    const input = args[0] as tfType.Tensor4D;
    const [n, h, w, c] = input.shape;
    return {
      value: tf.image.resizeNearestNeighbor(input, [2 * h, 2 * w]),
      gradFunc: (dy: tfType.Tensor) => dy.reshape([n, h, 2, w, 2, c]).sum([2, 4]),
    };
  });
  return up(x) as tfType.Tensor4D;
}

export interface ForwardResult {
  /** The head's input: [N, gh, gw, D]. */
  features: tfType.Tensor4D;
  /** Class logits [N, gh, gw, C] and raw box regression [N, gh, gw, 4]. */
  logits: tfType.Tensor4D;
  boxRaw: tfType.Tensor4D;
  /** Training only: the batch statistics of each batch norm, to update the moving ones. */
  batchStats?: Map<string, { mean: tfType.Tensor1D; variance: tfType.Tensor1D }>;
}

/**
 * Forward pass. `pixels` is [N, H, W, 3] RGB in 0..255. In training, batch norm uses the batch's
 * statistics (returned); otherwise the moving ones.
 */
export function forward(tf: typeof tfType, spec: BeatsCnnSpec, weights: Weights, pixels: tfType.Tensor4D, training: boolean): ForwardResult {
  const w = (name: string) => {
    const t = weights.get(name);
    if (!t) throw new Error(`Beats CNN: no weight ${name}`);
    return t;
  };
  let x = pixels.div(255) as tfType.Tensor4D;
  const batchStats = training ? new Map<string, { mean: tfType.Tensor1D; variance: tfType.Tensor1D }>() : undefined;
  const outputs = new Map<string, tfType.Tensor4D>();
  for (const layer of bodyLayers(spec)) {
    if (layer.kind === 's2d') {
      x = spaceToDepth(tf, x, layer.block);
      continue;
    }
    let y: tfType.Tensor4D;
    if (layer.kind === 'fuse') {
      const fine = outputs.get(layer.fine);
      if (!fine) throw new Error(`Beats CNN: ${layer.name} fuses ${layer.fine}, which is not an earlier convolution`);
      const weight = w(`${layer.name}.weight`) as tfType.Tensor4D;
      const [coarseWeight, fineWeight] = tf.split(weight, [layer.coarseChannels, layer.fineChannels], 2) as [tfType.Tensor4D, tfType.Tensor4D];
      const coarse = tf.conv2d(x, coarseWeight, 1, 'valid');
      y = upsample2(tf, coarse).add(tf.conv2d(fine, fineWeight, 1, 'valid'));
    } else {
      y = tf.conv2d(x, w(`${layer.name}.weight`) as tfType.Tensor4D, 1, 'same');
    }
    let mean: tfType.Tensor1D;
    let variance: tfType.Tensor1D;
    if (training) {
      const moments = tf.moments(y, [0, 1, 2]);
      mean = moments.mean as tfType.Tensor1D;
      variance = moments.variance as tfType.Tensor1D;
      batchStats!.set(layer.name, { mean, variance });
    } else {
      mean = w(`${layer.name}.bn.mean`) as tfType.Tensor1D;
      variance = w(`${layer.name}.bn.variance`) as tfType.Tensor1D;
    }
    const beta = w(`${layer.name}.bn.beta`) as tfType.Tensor1D;
    const gamma = w(`${layer.name}.bn.gamma`) as tfType.Tensor1D;
    // In training, the same normalisation as per-channel arithmetic: its gradient is a few broadcast
    // products, where batchNorm's tiles every statistic to the whole map first.
    const normed = training ? y.sub(mean).mul(gamma.mul(variance.add(BN_EPSILON).rsqrt())).add(beta) : tf.batchNorm(y, mean, variance, beta, gamma, BN_EPSILON);
    x = normed.relu() as tfType.Tensor4D;
    outputs.set(layer.name, x);
  }
  const logits = tf.conv2d(x, w('head.cls.weight') as tfType.Tensor4D, 1, 'valid').add(w('head.cls.bias')) as tfType.Tensor4D;
  const boxRaw = tf.conv2d(x, w('head.box.weight') as tfType.Tensor4D, 1, 'valid').add(w('head.box.bias')) as tfType.Tensor4D;
  return { features: x, logits, boxRaw, batchStats };
}

/** Cell centres in input pixels, [gh * gw, 2], row-major. */
export function cellCentres(spec: BeatsCnnSpec): Float32Array {
  const { gw, gh } = gridSize(spec);
  const stride = strideOf(spec);
  const out = new Float32Array(gw * gh * 2);
  for (let gy = 0; gy < gh; gy++) {
    for (let gx = 0; gx < gw; gx++) {
      out[(gy * gw + gx) * 2] = (gx + 0.5) * stride;
      out[(gy * gw + gx) * 2 + 1] = (gy + 0.5) * stride;
    }
  }
  return out;
}

/** The model's output as the ONNX file gives it: [N, cells, 4 + C]. */
export function predict(tf: typeof tfType, spec: BeatsCnnSpec, weights: Weights, pixels: tfType.Tensor4D): tfType.Tensor3D {
  return tf.tidy(() => {
    const { logits, boxRaw } = forward(tf, spec, weights, pixels, false);
    const n = pixels.shape[0];
    const cells = logits.shape[1] * logits.shape[2];
    const centres = tf.tensor2d(cellCentres(spec), [cells, 2]);
    const ltrb = boxRaw.reshape([n, cells, 4]).exp().mul(strideOf(spec));
    const [l, t, r, b] = tf.split(ltrb, 4, 2) as [tfType.Tensor3D, tfType.Tensor3D, tfType.Tensor3D, tfType.Tensor3D];
    const [cx, cy] = tf.split(centres.expandDims(0), 2, 2) as [tfType.Tensor3D, tfType.Tensor3D];
    const boxes = tf.concat([cx.sub(l), cy.sub(t), cx.add(r), cy.add(b)], 2);
    const scores = tf.sigmoid(logits.reshape([n, cells, spec.classes.length]));
    return tf.concat([boxes, scores], 2) as tfType.Tensor3D;
  });
}
