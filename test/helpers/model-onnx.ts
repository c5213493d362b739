import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { ModelCard } from '../../src/model/card.js';
import type { ProviderSettings } from '../../src/model/providers.js';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** CPU only, onnxruntime's own thread count: what every model test runs with on this GPU-less machine. */
export const cpuRuntime: ProviderSettings = { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '/nonexistent/trt-cache' }, threads: 0 };

function valueInfo(name: string, dims: readonly number[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
}

export interface ConstantModelSpec {
  inputName: string;
  /** NCHW, e.g. [1, 3, 64, 64]. */
  inputDims: readonly [number, number, number, number];
  outputName: string;
  outputDims: readonly number[];
  /** What the model outputs, whatever the pixels. */
  output: Float32Array;
}

/**
 * A real ONNX graph whose output is a known tensor: `output = Constant + ReduceSum(input) * 0`.
 * The input really flows through onnxruntime (a wrong input name, rank or type fails the run), but
 * the result does not depend on the pixels, so a decoder can be checked against hand-computed boxes.
 */
export function constantOutputModel(spec: ConstantModelSpec): Uint8Array {
  const expected = spec.outputDims.reduce((a, b) => a * b, 1);
  if (spec.output.length !== expected) throw new Error(`output has ${spec.output.length} values, dims ${spec.outputDims.join('x')} need ${expected}`);
  const tensor = (name: string, dims: readonly number[], values: Float32Array) =>
    onnx.TensorProto.create({ name, dims: [...dims], dataType: FLOAT, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
  const graph = onnx.GraphProto.create({
    name: 'constant_detector',
    input: [valueInfo(spec.inputName, spec.inputDims)],
    output: [valueInfo(spec.outputName, spec.outputDims)],
    initializer: [tensor('zero', [], new Float32Array([0]))],
    node: [
      onnx.NodeProto.create({
        opType: 'Constant',
        output: ['known'],
        attribute: [onnx.AttributeProto.create({ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: tensor('known_value', spec.outputDims, spec.output) })],
      }),
      onnx.NodeProto.create({
        opType: 'ReduceSum',
        input: [spec.inputName],
        output: ['pixel_sum'],
        attribute: [onnx.AttributeProto.create({ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 })],
      }),
      onnx.NodeProto.create({ opType: 'Mul', input: ['pixel_sum', 'zero'], output: ['nothing'] }),
      onnx.NodeProto.create({ opType: 'Add', input: ['known', 'nothing'], output: [spec.outputName] }),
    ],
  });
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'beats-tests', opsetImport: [{ domain: '', version: 13 }], graph });
  return onnx.ModelProto.encode(model).finish();
}

/** One YOLOv8-layout anchor: centre, size in model-input pixels, and a score per class. */
export interface Anchor {
  cx: number;
  cy: number;
  w: number;
  h: number;
  scores: readonly number[];
}

/** The `[1, 4 + classes, anchors]` tensor of YOLOv8 / YOLO11 for these anchors (row-major, anchor fastest). */
export function yolov8Output(anchors: readonly Anchor[], classes: number): { data: Float32Array; dims: [number, number, number] } {
  const n = anchors.length;
  const data = new Float32Array((4 + classes) * n);
  anchors.forEach((a, i) => {
    if (a.scores.length !== classes) throw new Error(`anchor ${i} has ${a.scores.length} scores, expected ${classes}`);
    data[i] = a.cx;
    data[n + i] = a.cy;
    data[2 * n + i] = a.w;
    data[3 * n + i] = a.h;
    a.scores.forEach((s, c) => (data[(4 + c) * n + i] = s));
  });
  return { data, dims: [1, 4 + classes, n] };
}

/** Writes `NAME.onnx` and its card `NAME.json` into `dir`; returns the card's path. */
export async function writeModel(dir: string, name: string, bytes: Uint8Array, card: Omit<ModelCard, 'onnx' | 'name'> & Partial<Pick<ModelCard, 'name'>>): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, `${name}.onnx`), bytes);
  const cardPath = path.join(dir, `${name}.json`);
  await writeFile(cardPath, JSON.stringify({ name, ...card, onnx: `${name}.onnx` }, null, 2));
  return cardPath;
}
