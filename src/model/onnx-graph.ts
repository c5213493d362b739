import onnxProto from 'onnx-proto';
import type { TensorInfo } from './card-check.js';

const { onnx } = onnxProto;

/**
 * Declares the input's height and width (and every output dimension but the batch) symbolic, so that
 * a detector exported at one size runs at another (YOLOX-Nano at 320 or 640). Only for models whose
 * card says nothing inside depends on the size. Stale intermediate shapes are dropped.
 */
export function withSymbolicInputSize(bytes: Uint8Array, inputName: string): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph) throw new Error('ONNX file has no graph');
  const input = (graph.input ?? []).find((i) => i.name === inputName);
  const dims = input?.type?.tensorType?.shape?.dim;
  if (!dims || dims.length !== 4) throw new Error(`input ${inputName} is not a 4-D tensor`);
  dims[2] = onnx.TensorShapeProto.Dimension.create({ dimParam: 'height' });
  dims[3] = onnx.TensorShapeProto.Dimension.create({ dimParam: 'width' });
  for (const output of graph.output ?? []) {
    const outDims = output.type?.tensorType?.shape?.dim ?? [];
    for (let i = 1; i < outDims.length; i++) outDims[i] = onnx.TensorShapeProto.Dimension.create({ dimParam: `${output.name}_d${i}` });
  }
  graph.valueInfo = [];
  return onnx.ModelProto.encode(model).finish();
}

/** ONNX element types as onnxruntime names them (the ones a detector may use). */
const ELEMENT_TYPES: Record<number, string> = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 10: 'float16', 11: 'float64' };

/**
 * The graph's inputs (initializers left out) and outputs as onnxruntime's session metadata gives
 * them, read from the file without a session (`beats doctor` checks cards this way).
 */
export function graphTensors(bytes: Uint8Array): { inputs: TensorInfo[]; outputs: TensorInfo[] } {
  const graph = onnx.ModelProto.decode(bytes).graph;
  if (!graph) throw new Error('ONNX file has no graph');
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  const info = (v: onnxProto.onnx.IValueInfoProto): TensorInfo => {
    const tensor = v.type?.tensorType;
    if (!tensor) return { name: v.name ?? '', isTensor: false };
    const dims = tensor.shape?.dim ?? [];
    return {
      name: v.name ?? '',
      isTensor: true,
      type: ELEMENT_TYPES[tensor.elemType ?? 0] ?? `type ${tensor.elemType}`,
      shape: dims.map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null ? Number(d.dimValue) : '?')),
    };
  };
  return { inputs: (graph.input ?? []).filter((v) => !initializers.has(v.name ?? '')).map(info), outputs: (graph.output ?? []).map(info) };
}
