/**
 * The class head in a detector's ONNX graph: finds it (the card's `head` entries), rewrites it so its
 * weights are graph inputs (head surgery, used by head.ts), and writes weights back as initializers.
 */
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { ModelError } from '../errors.js';
import type { ModelCard } from './card.js';

const { onnx } = onnxProto;

type Model = O.IModelProto;
type Graph = O.IGraphProto;
type Tensor = O.ITensorProto;
type Node = O.INodeProto;
type ValueInfo = O.IValueInfoProto;
type Dim = O.TensorShapeProto.IDimension;

/**
 * One level of a Beats head (BEATS.md) as found in the graph: the 1x1 class convolution `conv`,
 * reading the feature map `features` (D channels) and writing C class logits per cell.
 */
export interface HeadSpec {
  /** Index in the card's `head` list. */
  level: number;
  /** The feature tensor (input 0 of the class convolution). */
  features: string;
  /** Initializer names of the weight [C, D, 1, 1] and bias [C]. After `headSurgery`: graph inputs of those names. */
  weight: string;
  bias: string;
  stride: number;
  /** The Conv node's name (for messages). */
  conv: string;
  /** C: classes, D: feature channels. */
  classes: number;
  depth: number;
}

/** A head's numbers for one level: `weight[c * D + d]` (the [C, D, 1, 1] kernel, row-major), `bias[c]`. */
export interface HeadLevelWeights {
  weight: Float32Array;
  bias: Float32Array;
  /** [C, D]. */
  shape: [number, number];
}

/**
 * Checks a head against the model's: as many levels, each [C, D] as the model's, weight C * D and
 * bias C values, all finite (one NaN would silently blank a class on every frame). Returns copies,
 * so that the caller may keep writing into its arrays without touching what inference reads.
 */
export function checkHeadWeights(cardName: string, heads: readonly HeadSpec[], weights: readonly HeadLevelWeights[]): HeadLevelWeights[] {
  if (weights.length !== heads.length) throw new HeadError(cardName, `a head of ${weights.length} level${weights.length === 1 ? '' : 's'} was given, the model's has ${heads.length}`);
  return heads.map((h, i) => {
    const lw = weights[i]!;
    const where = `head level ${i} ("${h.weight}")`;
    const expected = `[${h.classes}, ${h.depth}]`;
    const shape = Array.isArray(lw.shape) ? lw.shape : [];
    if (shape.length !== 2 || shape[0] !== h.classes || shape[1] !== h.depth) throw new HeadError(cardName, `${where}: shape [${shape.join(', ')}] does not match the model's head ${expected} (classes x feature channels)`);
    if (lw.weight.length !== h.classes * h.depth) throw new HeadError(cardName, `${where}: weight has ${lw.weight.length} values, shape ${expected} needs ${h.classes * h.depth}`);
    if (lw.bias.length !== h.classes) throw new HeadError(cardName, `${where}: bias has ${lw.bias.length} values, shape ${expected} needs ${h.classes}`);
    const weight = Float32Array.from(lw.weight);
    const bias = Float32Array.from(lw.bias);
    for (const [name, values] of [['weight', weight], ['bias', bias]] as const) {
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new HeadError(cardName, `${where}: ${name}[${bad}] is ${values[bad]}, not a finite number`);
    }
    return { weight, bias, shape: [h.classes, h.depth] };
  });
}

/** A head that cannot be found or used: names the card (the model) and what is wrong or missing. */
export class HeadError extends ModelError {
  constructor(
    readonly card: string,
    readonly problem: string,
  ) {
    super(card, problem);
  }
}

const toNumber = (v: number | { toNumber(): number }): number => (typeof v === 'number' ? v : v.toNumber());

function decodeModel(bytes: Uint8Array, cardName: string): { model: Model; graph: Graph } {
  let model: Model;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new HeadError(cardName, `the ONNX file cannot be parsed: ${(err as Error).message}`);
  }
  if (!model.graph) throw new HeadError(cardName, 'the ONNX file has no graph');
  return { model, graph: model.graph };
}

function ints(node: Node, name: string): number[] | undefined {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a ? (a.ints ?? []).map(toNumber) : undefined;
}

function int(node: Node, name: string): number | undefined {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a?.i != null ? toNumber(a.i) : undefined;
}

/** Why a Conv is not a plain 1x1 convolution (stride 1, no padding, no dilation, one group), or undefined. */
function notPlain1x1(node: Node): string | undefined {
  const k = ints(node, 'kernel_shape');
  if (k && !k.every((v) => v === 1)) return `kernel_shape [${k.join(', ')}]`;
  const s = ints(node, 'strides');
  if (s && !s.every((v) => v === 1)) return `strides [${s.join(', ')}]`;
  const d = ints(node, 'dilations');
  if (d && !d.every((v) => v === 1)) return `dilations [${d.join(', ')}]`;
  const p = ints(node, 'pads');
  if (p && !p.every((v) => v === 0)) return `pads [${p.join(', ')}]`;
  const g = int(node, 'group');
  if (g !== undefined && g !== 1) return `group ${g}`;
  const autoPad = (node.attribute ?? []).find((x) => x.name === 'auto_pad');
  const ap = autoPad?.s && autoPad.s.length > 0 ? new TextDecoder().decode(autoPad.s) : 'NOTSET';
  if (ap !== 'NOTSET' && ap !== 'VALID' && ap !== 'SAME_UPPER' && ap !== 'SAME_LOWER') return `auto_pad ${ap}`;
  return undefined;
}

/** Float values of a FLOAT initializer (raw_data or float_data), copied into a fresh, aligned array. */
export function floatValues(t: Tensor): Float32Array {
  if (t.dataType !== onnx.TensorProto.DataType.FLOAT) throw new Error(`initializer ${t.name} is not float32 (data type ${t.dataType})`);
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) throw new Error(`initializer ${t.name} is stored outside the file (external data)`);
  if (t.rawData && t.rawData.length > 0) {
    const copy = new Uint8Array(t.rawData.length);
    copy.set(t.rawData);
    // ONNX raw data is little-endian, like every platform onnxruntime-node runs on.
    return new Float32Array(copy.buffer, 0, copy.length / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

function dims(t: Tensor): number[] {
  return (t.dims ?? []).map(toNumber);
}

/**
 * Finds and checks the card's head in the graph: for each `head` entry, the weight and bias
 * initializers exist, are float32 [C, D, 1, 1] and [C] with C the card's class count, and are
 * inputs 1 and 2 of a plain 1x1 Conv whose input 0 is the named feature tensor. Every problem is a
 * HeadError naming the card, the level and what is missing.
 */
export function discoverHeads(bytes: Uint8Array, card: ModelCard): HeadSpec[] {
  return findHeadsInGraph(decodeModel(bytes, card.name).graph, card);
}

function findHeadsInGraph(graph: Graph, card: ModelCard): HeadSpec[] {
  const fail = (problem: string): never => {
    throw new HeadError(card.name, problem);
  };
  if (!card.head || card.head.length === 0) fail('its card names no head (`head`: features, weight, bias, stride per level), so it cannot be adapted');
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t] as const));
  const heads: HeadSpec[] = [];
  card.head!.forEach((entry, level) => {
    const where = `head[${level}]`;
    const w = inits.get(entry.weight) ?? fail(`${where}: the ONNX file has no initializer "${entry.weight}" (the head's weight)`);
    const b = inits.get(entry.bias) ?? fail(`${where}: the ONNX file has no initializer "${entry.bias}" (the head's bias)`);
    const wd = dims(w);
    const bd = dims(b);
    if (w.dataType !== onnx.TensorProto.DataType.FLOAT || b.dataType !== onnx.TensorProto.DataType.FLOAT) fail(`${where}: "${entry.weight}" and "${entry.bias}" must be float32`);
    if (wd.length !== 4 || wd[2] !== 1 || wd[3] !== 1) fail(`${where}: "${entry.weight}" is [${wd.join(', ')}], expected [C, D, 1, 1]`);
    const [c, d] = wd as [number, number];
    if (bd.length !== 1 || bd[0] !== c) fail(`${where}: "${entry.bias}" is [${bd.join(', ')}], expected [${c}] to match "${entry.weight}" [${wd.join(', ')}]`);
    if (c !== card.classes.length) fail(`${where}: "${entry.weight}" has ${c} output channels but the card has ${card.classes.length} classes`);
    const users = (graph.node ?? []).filter((n) => (n.input ?? []).includes(entry.weight) || (n.input ?? []).includes(entry.bias));
    const conv = users.find((n) => n.opType === 'Conv' && (n.domain ?? '') === '' && n.input?.[1] === entry.weight && n.input?.[2] === entry.bias);
    if (!conv) fail(`${where}: no Conv node takes "${entry.weight}" and "${entry.bias}" as its weight and bias`);
    if (users.length > 1) fail(`${where}: "${entry.weight}" / "${entry.bias}" are used by ${users.length} nodes (${users.map((n) => n.name || n.opType).join(', ')}); a head must be used by its class convolution only`);
    if (conv!.input?.[0] !== entry.features) fail(`${where}: the Conv "${conv!.name}" reads "${conv!.input?.[0]}", not the features "${entry.features}" the card names`);
    const odd = notPlain1x1(conv!);
    if (odd) fail(`${where}: the Conv "${conv!.name}" is not a plain 1x1 convolution (${odd})`);
    heads.push({ level, features: entry.features, weight: entry.weight, bias: entry.bias, stride: entry.stride, conv: conv!.name ?? '', classes: c, depth: d });
  });
  const seen = new Set<string>();
  for (const h of heads) for (const name of [h.weight, h.bias]) {
    if (seen.has(name)) fail(`"${name}" is named by two head levels`);
    seen.add(name);
  }
  return heads;
}

/**
 * Proposes a card's `head` entries from the graph alone: every plain 1x1 Conv whose weight and
 * bias are float32 initializers [C, D, 1, 1] and [C], with C the card's class count, in graph order
 * (the order YOLOX's levels are built in, stride 8 then 16 then 32), with the strides given. This is
 * how models/yolox-nano.json's entries were written; the card, not this guess, is what the code uses.
 */
export function proposeHeadEntries(bytes: Uint8Array, card: ModelCard, strides: readonly number[]): NonNullable<ModelCard['head']> {
  const { graph } = decodeModel(bytes, card.name);
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t] as const));
  const found = (graph.node ?? []).filter((n) => {
    const inputs = n.input ?? [];
    if (n.opType !== 'Conv' || inputs.length < 3 || notPlain1x1(n)) return false;
    const w = inits.get(inputs[1]!);
    const b = inits.get(inputs[2]!);
    if (!w || !b) return false;
    const wd = dims(w);
    return wd.length === 4 && wd[0] === card.classes.length && wd[2] === 1 && wd[3] === 1 && dims(b).join() === `${card.classes.length}`;
  });
  if (found.length !== strides.length) throw new HeadError(card.name, `found ${found.length} 1x1 convolutions with ${card.classes.length} outputs (${found.map((n) => n.name).join(', ') || 'none'}), expected ${strides.length} (one per stride)`);
  // YOLOX and YOLOv8 train their class scores with binary cross-entropy.
  return found.map((n, i) => ({ features: n.input![0]!, weight: n.input![1]!, bias: n.input![2]!, stride: strides[i]!, loss: 'bce' as const, off_centre: 'ignore' as const }));
}

function dim(v: number | string): Dim {
  return typeof v === 'number' ? onnx.TensorShapeProto.Dimension.create({ dimValue: v }) : onnx.TensorShapeProto.Dimension.create({ dimParam: v });
}

function floatValueInfo(name: string, shape: ReadonlyArray<number | string>): ValueInfo {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({ elemType: onnx.TensorProto.DataType.FLOAT, shape: onnx.TensorShapeProto.create({ dim: shape.map(dim) }) }),
    }),
  });
}

/**
 * The shape of a head's feature map: from the graph's shape information where it has it (YOLOX's
 * export does), else [N, D, H / stride, W / stride] from the image input's declared size, with
 * symbolic height and width where the input's are symbolic (a resized model).
 */
function featureShape(graph: Graph, card: ModelCard, head: HeadSpec): Array<number | string> {
  const known = (graph.valueInfo ?? []).find((v) => v.name === head.features)?.type?.tensorType?.shape?.dim;
  if (known && known.length === 4 && known.every((d) => d.dimValue != null && toNumber(d.dimValue) > 0 && !d.dimParam)) {
    const shape = known.map((d) => toNumber(d.dimValue!));
    if (shape[1] === head.depth) return shape;
  }
  const input = (graph.input ?? []).find((i) => i.name === card.input.name)?.type?.tensorType?.shape?.dim ?? [];
  const fixed = (d: Dim | undefined): number | undefined => (d && d.dimValue != null && !d.dimParam && toNumber(d.dimValue) > 0 ? toNumber(d.dimValue) : undefined);
  const nhwc = card.input.layout === 'NHWC';
  const n = fixed(input[0]) ?? 'batch';
  const h = fixed(input[nhwc ? 1 : 2]);
  const w = fixed(input[nhwc ? 2 : 3]);
  const cells = (size: number | undefined, axis: string): number | string => (size !== undefined && size % head.stride === 0 ? size / head.stride : `${head.features}_${axis}`);
  return [n, head.depth, cells(h, 'height'), cells(w, 'width')];
}

export interface SurgeryResult {
  /** The rewritten model. */
  bytes: Uint8Array;
  heads: HeadSpec[];
  /** The head the file shipped with, per level (copies). */
  baseWeights: HeadLevelWeights[];
}

/**
 * Rewrites a model for adaptation, as a pure function of its bytes and its card:
 * - each head level's feature tensor is also a graph output (with its shape), so one inference pass
 *   yields detections and the features adaptation trains on;
 * - each head level's weight and bias are graph inputs instead of initializers (same names, shapes
 *   [C, D, 1, 1] and [C]), so a new head is fed with any run, without rebuilding the session.
 * Nothing else changes: the same nodes, the same other initializers, the same outputs first.
 * Apply it after `withSymbolicInputSize` when the model is resized.
 */
export function headSurgery(bytes: Uint8Array, card: ModelCard): SurgeryResult {
  const { model, graph } = decodeModel(bytes, card.name);
  const heads = findHeadsInGraph(graph, card);
  const byName = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t] as const));
  const baseWeights: HeadLevelWeights[] = heads.map((h) => ({
    weight: floatValues(byName.get(h.weight)!),
    bias: floatValues(byName.get(h.bias)!),
    shape: [h.classes, h.depth],
  }));
  const moved = new Set(heads.flatMap((h) => [h.weight, h.bias]));
  graph.initializer = (graph.initializer ?? []).filter((t) => !moved.has(t.name ?? ''));
  // IR < 4 files list initializers among the inputs too: those entries already declare the input.
  graph.input ??= [];
  graph.output ??= [];
  const declared = new Set(graph.input.map((i) => i.name));
  for (const h of heads) {
    if (!declared.has(h.weight)) graph.input.push(floatValueInfo(h.weight, [h.classes, h.depth, 1, 1]));
    if (!declared.has(h.bias)) graph.input.push(floatValueInfo(h.bias, [h.classes]));
  }
  const outputs = new Set(graph.output.map((o) => o.name));
  for (const h of heads) {
    if (outputs.has(h.features)) continue;
    graph.output.push(floatValueInfo(h.features, featureShape(graph, card, h)));
    outputs.add(h.features);
  }
  return { bytes: onnx.ModelProto.encode(model).finish(), heads, baseWeights };
}

/**
 * The same model with its head initializers replaced by `weights` (per level, as `headSurgery`
 * returns them): how a head would be swapped by rebuilding the session. Used by the benchmark that
 * compares the two ways (src/model/head.ts).
 */
export function withHeadInitializers(bytes: Uint8Array, card: ModelCard, weights: readonly HeadLevelWeights[]): Uint8Array {
  const { model, graph } = decodeModel(bytes, card.name);
  const heads = findHeadsInGraph(graph, card);
  checkHeadWeights(card.name, heads, weights);
  const raw = (values: Float32Array) => new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  for (const h of heads) {
    const lw = weights[h.level]!;
    const w = (graph.initializer ?? []).find((t) => t.name === h.weight)!;
    const b = (graph.initializer ?? []).find((t) => t.name === h.bias)!;
    w.rawData = raw(lw.weight);
    w.floatData = [];
    b.rawData = raw(lw.bias);
    b.floatData = [];
  }
  return onnx.ModelProto.encode(model).finish();
}
