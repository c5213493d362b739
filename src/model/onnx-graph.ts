import onnxProto from 'onnx-proto';

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
