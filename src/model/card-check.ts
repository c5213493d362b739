import type { ModelCard } from './card.js';

/**
 * Whether an ONNX file is the model its card describes, from the session's input and output
 * metadata: the names, the input's element type, layout and size, and the output's layout for the
 * card's decoder and class count. A card that does not match its file would otherwise load and fail
 * on every frame. A symbolic dimension (a resizable input, a dynamic batch) matches any value.
 */

/** What onnxruntime says of one input or output (`session.inputMetadata` items have it). */
export interface TensorInfo {
  readonly name: string;
  /** False for a sequence or a map. */
  readonly isTensor?: boolean;
  readonly type?: string;
  /** Empty when the file does not say; a string is a symbolic dimension. */
  readonly shape?: ReadonlyArray<number | string>;
}

const shown = (shape: ReadonlyArray<number | string>) => `[${shape.join(', ')}]`;
const fixed = (d: number | string | undefined): d is number => typeof d === 'number' && d > 0;

/** The problems found, each a sentence naming the tensor, what the file has and what the card says; empty when none. */
export function cardMismatches(card: ModelCard, inputs: readonly TensorInfo[], outputs: readonly TensorInfo[]): string[] {
  const input = inputs.find((t) => t.name === card.input.name);
  const output = outputs.find((t) => t.name === card.output);
  const problems: string[] = [];
  if (!input) problems.push(`the ONNX file has no input "${card.input.name}" (it has ${inputs.map((t) => t.name).join(', ') || 'none'})`);
  if (!output) problems.push(`the ONNX file has no output "${card.output}" (it has ${outputs.map((t) => t.name).join(', ') || 'none'})`);
  const inputSize = input ? checkInput(card, input, problems) : undefined;
  if (output) checkOutput(card, output, inputSize, problems);
  return problems;
}

/** Checks the input; returns its fixed height and width when the file gives both. */
function checkInput(card: ModelCard, info: TensorInfo, problems: string[]): { height: number; width: number } | undefined {
  const name = `input "${info.name}"`;
  if (info.isTensor === false) return void problems.push(`${name} is not a tensor`);
  if (info.type !== undefined && info.type !== 'float32') problems.push(`${name} takes ${info.type}; the card feeds float32`);
  const shape = info.shape ?? [];
  if (shape.length === 0) return undefined;
  const { layout, width, height } = card.input;
  if (shape.length !== 4) return void problems.push(`${name} has shape ${shown(shape)}; the card's ${layout} layout needs 4 dimensions`);
  const [c, h, w] = layout === 'NCHW' ? [shape[1], shape[2], shape[3]] : [shape[3], shape[1], shape[2]];
  if (fixed(c) && c !== 3) problems.push(`${name} has ${c} channels (shape ${shown(shape)}, ${layout}); the card feeds 3 (${card.input.channels})`);
  if ((fixed(h) && h !== height) || (fixed(w) && w !== width)) {
    problems.push(`${name} is ${fixed(w) ? w : '?'}x${fixed(h) ? h : '?'} (shape ${shown(shape)}, ${layout}); the card says ${width}x${height}`);
  }
  return fixed(h) && fixed(w) ? { height: h, width: w } : undefined;
}

function checkOutput(card: ModelCard, info: TensorInfo, inputSize: { height: number; width: number } | undefined, problems: string[]): void {
  const name = `output "${info.name}"`;
  if (info.isTensor === false) return void problems.push(`${name} is not a tensor`);
  if (info.type !== undefined && info.type !== 'float32') problems.push(`${name} is ${info.type}; the ${card.decoder.kind} decoder reads float32`);
  const shape = info.shape ?? [];
  if (shape.length === 0) return;
  const decoder = card.decoder;
  const classes = card.classes.length;
  if (shape.length !== 3) return void problems.push(`${name} has shape ${shown(shape)}; the ${decoder.kind} decoder reads 3 dimensions`);
  const layout = decoder.kind === 'yolov8' ? '[1, 4 + classes, anchors]' : decoder.kind === 'yolox' ? '[1, cells, 5 + classes]' : '[1, cells, 4 + classes]';
  const [values, perRow, rows] = decoder.kind === 'yolov8' ? [shape[1], 4 + classes, shape[2]] : [shape[2], (decoder.kind === 'yolox' ? 5 : 4) + classes, shape[1]];
  if (fixed(values) && values !== perRow) {
    problems.push(`${name} has shape ${shown(shape)}; the ${decoder.kind} decoder reads ${layout}, ${perRow} values for the card's ${classes} classes: the card's classes or decoder do not fit this file`);
  }
  const cells = inputSize ? expectedCells(card, inputSize) : undefined;
  if (cells !== undefined && fixed(rows) && rows !== cells) {
    problems.push(`${name} has ${rows} cells (shape ${shown(shape)}); the ${decoder.kind} decoder's grid at ${inputSize!.width}x${inputSize!.height} has ${cells}: the card's strides do not fit this file`);
  }
}

/** Grid cells the decoder reads at this input size (YOLOv8's anchors are the file's business). */
function expectedCells(card: ModelCard, size: { height: number; width: number }): number | undefined {
  const d = card.decoder;
  const grid = (stride: number) => Math.floor(size.width / stride) * Math.floor(size.height / stride);
  if (d.kind === 'yolox') return d.strides.reduce((sum, s) => sum + grid(s), 0);
  if (d.kind === 'beats') return grid(d.stride);
  return undefined;
}
