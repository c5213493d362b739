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

/**
 * Declares the batch (dimension 0 of the input and of every output) symbolic, so that frames of
 * several cameras go through one run. Exporters write the batch of 1 into Reshape targets as well
 * (YOLOX-Nano's `[1, 85, -1]`, older Beats CNN exports' `[1, cells, C]`): a constant target that only
 * Reshapes read and that starts with 1 gets 0 there, "the input's own dimension 0", which is the
 * batch. Whether the rewritten model really computes each item as alone is for the caller to check
 * (the inference worker runs a probe: a batch of two against two single runs).
 */
export function withSymbolicBatch(bytes: Uint8Array, inputName: string): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph) throw new Error('ONNX file has no graph');
  const input = (graph.input ?? []).find((i) => i.name === inputName);
  const dims = input?.type?.tensorType?.shape?.dim;
  if (!dims || dims.length < 1) throw new Error(`input ${inputName} has no shape`);
  dims[0] = onnx.TensorShapeProto.Dimension.create({ dimParam: 'batch' });
  for (const output of graph.output ?? []) {
    const outDims = output.type?.tensorType?.shape?.dim ?? [];
    if (outDims.length > 0) outDims[0] = onnx.TensorShapeProto.Dimension.create({ dimParam: 'batch' });
  }
  const nodes = graph.node ?? [];
  const readers = new Map<string, Array<{ op: string; slot: number }>>();
  for (const n of nodes) (n.input ?? []).forEach((name, slot) => readers.set(name, [...(readers.get(name) ?? []), { op: n.opType ?? '', slot }]));
  const onlyReshapeTarget = (name: string) => (readers.get(name) ?? []).every((r) => r.op === 'Reshape' && r.slot === 1);
  const targets = new Set(nodes.filter((n) => n.opType === 'Reshape').map((n) => n.input?.[1] ?? ''));
  for (const t of graph.initializer ?? []) if (targets.has(t.name ?? '') && onlyReshapeTarget(t.name ?? '')) zeroLeadingOne(t);
  for (const n of nodes) {
    const out = n.output?.[0] ?? '';
    const value = n.opType === 'Constant' ? n.attribute?.find((a) => a.name === 'value')?.t : undefined;
    if (value && targets.has(out) && onlyReshapeTarget(out)) zeroLeadingOne(value);
  }
  graph.valueInfo = [];
  return onnx.ModelProto.encode(model).finish();
}

/** An int64 tensor whose first value is 1 gets 0 there (Reshape: copy the input's dimension). */
function zeroLeadingOne(t: onnxProto.onnx.ITensorProto): void {
  if (t.dataType !== onnx.TensorProto.DataType.INT64) return;
  if (t.int64Data && t.int64Data.length > 0) {
    if (Number(t.int64Data[0]) === 1) t.int64Data[0] = 0;
    return;
  }
  const raw = t.rawData;
  if (!raw || raw.length < 8) return;
  const copy = Uint8Array.from(raw);
  const view = new DataView(copy.buffer);
  if (view.getBigInt64(0, true) !== 1n) return;
  view.setBigInt64(0, 0n, true);
  t.rawData = copy;
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
