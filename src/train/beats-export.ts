/** The Beats CNN as an ONNX graph for inference (model/): the layers of beats-cnn.ts from trained weights, with the class head's features named for adaptation. */
import onnxProto from 'onnx-proto';
import { BN_EPSILON, bodyLayers, cellCentres, gridSize, strideOf, type BeatsCnnSpec } from './beats-cnn.js';

const { onnx } = onnxProto;

/** Weights as plain arrays (from a checkpoint or live tensors), shape + data. */
export type WeightArrays = Map<string, { shape: number[]; data: Float32Array }>;

/** The tensor the class head reads, named in the card so adaptation can find it. */
export const HEAD_FEATURES = 'head_features';
export const HEAD_WEIGHT = 'head.cls.weight';
export const HEAD_BIAS = 'head.cls.bias';

function tensor(name: string, dims: number[], data: Float32Array | number[]): InstanceType<typeof onnx.TensorProto> {
  const values = data instanceof Float32Array ? data : Float32Array.from(data);
  return onnx.TensorProto.create({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) });
}

function int64Tensor(name: string, values: number[]): InstanceType<typeof onnx.TensorProto> {
  return onnx.TensorProto.create({ name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, int64Data: values });
}

function node(opType: string, inputs: string[], outputs: string[], attributes: Array<InstanceType<typeof onnx.AttributeProto>> = [], name = outputs[0]!): InstanceType<typeof onnx.NodeProto> {
  return onnx.NodeProto.create({ opType, input: inputs, output: outputs, attribute: attributes, name });
}

const ints = (name: string, values: number[]) => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: values });
const int = (name: string, value: number) => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: value });
const str = (name: string, value: string) => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(value) });

function valueInfo(name: string, dims: Array<number | string>): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: onnx.TensorShapeProto.create({ dim: dims.map((d) => (typeof d === 'number' ? onnx.TensorShapeProto.Dimension.create({ dimValue: d }) : onnx.TensorShapeProto.Dimension.create({ dimParam: d }))) }),
      }),
    }),
  });
}

/** HWIO → OIHW, with batch norm folded in: W' = W·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε). */
function foldConv(weights: WeightArrays, name: string): { w: Float32Array; dims: number[]; b: Float32Array } {
  const get = (k: string) => {
    const t = weights.get(k);
    if (!t) throw new Error(`Beats CNN export: no weight ${k}`);
    return t;
  };
  const kernel = get(`${name}.weight`);
  const [kh, kw, ci, co] = kernel.shape as [number, number, number, number];
  const gamma = get(`${name}.bn.gamma`).data;
  const beta = get(`${name}.bn.beta`).data;
  const mean = get(`${name}.bn.mean`).data;
  const variance = get(`${name}.bn.variance`).data;
  const w = new Float32Array(co * ci * kh * kw);
  const b = new Float32Array(co);
  for (let o = 0; o < co; o++) {
    const scale = gamma[o]! / Math.sqrt(variance[o]! + BN_EPSILON);
    b[o] = beta[o]! - mean[o]! * scale;
    for (let i = 0; i < ci; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) w[((o * ci + i) * kh + y) * kw + x] = kernel.data[((y * kw + x) * ci + i) * co + o]! * scale;
  }
  return { w, dims: [co, ci, kh, kw], b };
}

/** A 1x1 head conv, HWIO [1, 1, D, K] → OIHW [K, D, 1, 1]. */
function headConv(weights: WeightArrays, name: string): { w: Float32Array; dims: number[]; b: Float32Array } {
  const kernel = weights.get(`${name}.weight`)!;
  const bias = weights.get(`${name}.bias`)!;
  const [, , d, k] = kernel.shape as [number, number, number, number];
  const w = new Float32Array(k * d);
  for (let o = 0; o < k; o++) for (let i = 0; i < d; i++) w[o * d + i] = kernel.data[i * k + o]!;
  return { w, dims: [k, d, 1, 1], b: Float32Array.from(bias.data) };
}

/**
 * Writes the Beats CNN as ONNX (opset 13): input `images` [batch, 3, H, W] RGB scaled to 0..1, output
 * `output` [batch, cells, 4 + C] exactly as the TF.js `predict` computes it, batch norm folded into the
 * convolutions. The batch is symbolic (the Reshapes copy it: target 0), so frames of several cameras
 * go through one run. The head's feature map is the tensor `head_features`; its class convolution's
 * initializers are `head.cls.weight` / `head.cls.bias` (BEATS.md).
 */
export function exportBeatsOnnx(spec: BeatsCnnSpec, weights: WeightArrays, meta: { version: string; docString?: string }): Uint8Array {
  const nodes: Array<InstanceType<typeof onnx.NodeProto>> = [];
  const initializers: Array<InstanceType<typeof onnx.TensorProto>> = [];
  const { gw, gh } = gridSize(spec);
  const cells = gw * gh;
  const c = spec.classes.length;
  let x = 'images';
  const layers = bodyLayers(spec);
  const lastConv = [...layers].reverse().find((l) => l.kind !== 's2d')!.name;
  const convOutput = (name: string) => (name === lastConv ? HEAD_FEATURES : `${name}.relu`);
  for (const layer of layers) {
    if (layer.kind === 's2d') {
      nodes.push(node('SpaceToDepth', [x], [layer.name], [int('blocksize', layer.block)]));
      x = layer.name;
      continue;
    }
    if (layer.kind === 'fuse') {
      // Batch norm folded into the 1x1 weight over both inputs, then the weight cut in two: the
      // stride-8 part runs before the upsampling (4x fewer cells), the bias goes with the other.
      const { w, dims, b } = foldConv(weights, layer.name);
      const [out, inChannels, kh, kw] = dims as [number, number, number, number];
      const part = (from: number, count: number) => {
        const cut = new Float32Array(out * count);
        for (let o = 0; o < out; o++) cut.set(w.subarray(o * inChannels + from, o * inChannels + from + count), o * count);
        return cut;
      };
      initializers.push(
        tensor(`${layer.name}.coarse.weight`, [out, layer.coarseChannels, kh, kw], part(0, layer.coarseChannels)),
        tensor(`${layer.name}.fine.weight`, [out, layer.fineChannels, kh, kw], part(layer.coarseChannels, layer.fineChannels)),
        tensor(`${layer.name}.bias`, [out], b),
        tensor(`${layer.name}.scales`, [4], [1, 1, 2, 2]),
      );
      nodes.push(
        node('Conv', [x, `${layer.name}.coarse.weight`], [`${layer.name}.coarse`], [ints('kernel_shape', [1, 1])]),
        // asymmetric + floor: output pixel i reads input i / 2, as TF.js's resizeNearestNeighbor does.
        node('Resize', [`${layer.name}.coarse`, '', `${layer.name}.scales`], [`${layer.name}.up`], [str('mode', 'nearest'), str('coordinate_transformation_mode', 'asymmetric'), str('nearest_mode', 'floor')]),
        node('Conv', [convOutput(layer.fine), `${layer.name}.fine.weight`, `${layer.name}.bias`], [`${layer.name}.fine`], [ints('kernel_shape', [1, 1])]),
        node('Add', [`${layer.name}.up`, `${layer.name}.fine`], [`${layer.name}.conv`]),
      );
      x = convOutput(layer.name);
      nodes.push(node('Relu', [`${layer.name}.conv`], [x]));
      continue;
    }
    const { w, dims, b } = foldConv(weights, layer.name);
    initializers.push(tensor(`${layer.name}.weight`, dims, w), tensor(`${layer.name}.bias`, [dims[0]!], b));
    const pad = (layer.size - 1) / 2;
    nodes.push(node('Conv', [x, `${layer.name}.weight`, `${layer.name}.bias`], [`${layer.name}.conv`], [ints('kernel_shape', [layer.size, layer.size]), ints('pads', [pad, pad, pad, pad]), ints('strides', [1, 1])]));
    const out = convOutput(layer.name);
    nodes.push(node('Relu', [`${layer.name}.conv`], [out]));
    x = out;
  }
  const cls = headConv(weights, 'head.cls');
  const box = headConv(weights, 'head.box');
  initializers.push(tensor(HEAD_WEIGHT, cls.dims, cls.w), tensor(HEAD_BIAS, [c], cls.b), tensor('head.box.weight', box.dims, box.w), tensor('head.box.bias', [4], box.b));
  initializers.push(tensor('stride', [], [strideOf(spec)]), tensor('centres', [1, cells, 2], cellCentres(spec)), int64Tensor('shape_scores', [0, cells, c]), int64Tensor('shape_box', [0, cells, 4]), int64Tensor('split_2_2', [2, 2]));
  nodes.push(
    node('Conv', [HEAD_FEATURES, HEAD_WEIGHT, HEAD_BIAS], ['logits'], [ints('kernel_shape', [1, 1])]),
    node('Transpose', ['logits'], ['logits_nhwc'], [ints('perm', [0, 2, 3, 1])]),
    node('Reshape', ['logits_nhwc', 'shape_scores'], ['logits_cells']),
    node('Sigmoid', ['logits_cells'], ['scores']),
    node('Conv', [HEAD_FEATURES, 'head.box.weight', 'head.box.bias'], ['box_raw'], [ints('kernel_shape', [1, 1])]),
    node('Transpose', ['box_raw'], ['box_nhwc'], [ints('perm', [0, 2, 3, 1])]),
    node('Reshape', ['box_nhwc', 'shape_box'], ['box_cells']),
    node('Exp', ['box_cells'], ['box_exp']),
    node('Mul', ['box_exp', 'stride'], ['ltrb']),
    node('Split', ['ltrb', 'split_2_2'], ['lt', 'rb'], [int('axis', 2)], 'split_ltrb'),
    node('Sub', ['centres', 'lt'], ['x1y1']),
    node('Add', ['centres', 'rb'], ['x2y2']),
    node('Concat', ['x1y1', 'x2y2', 'scores'], ['output'], [int('axis', 2)]),
  );
  const graph = onnx.GraphProto.create({
    name: 'beats-cnn',
    node: nodes,
    initializer: initializers,
    input: [valueInfo('images', ['batch', 3, spec.inputHeight, spec.inputWidth])],
    output: [valueInfo('output', ['batch', cells, 4 + c])],
  });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 13 })],
    producerName: 'beats',
    producerVersion: meta.version,
    docString: meta.docString ?? '',
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}
