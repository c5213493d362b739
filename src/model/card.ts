import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ModelError } from '../errors.js';
import { describeIssue } from '../config/load.js';

/**
 * A model card: the JSON beside an .onnx file that says how to feed the model and read its output.
 * Everything model-specific lives here, so adding a detector is writing a card (and, for a new
 * output layout, a decoder).
 */
export const modelCardSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9._-]+$/),
  version: z.string().min(1),
  description: z.string().optional(),
  license: z.string().optional(),
  /** The ONNX file, relative to the card. */
  onnx: z.string().min(1),
  /** Where `beats models pull` fetches the ONNX file, and its pinned checksum. */
  download: z.strictObject({ url: z.string().url(), sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().positive().optional() }).optional(),
  input: z.strictObject({
    name: z.string().min(1),
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    layout: z.enum(['NCHW', 'NHWC']).default('NCHW'),
    channels: z.enum(['RGB', 'BGR']),
    /** value = (pixel * scale - mean[c]) / std[c], pixel in 0..255 */
    scale: z.number().positive().default(1),
    mean: z.tuple([z.number(), z.number(), z.number()]).default([0, 0, 0]),
    std: z.tuple([z.number(), z.number(), z.number()]).default([1, 1, 1]),
    letterbox: z.strictObject({ pad: z.number().min(0).max(255), align: z.enum(['top-left', 'center']) }),
    /** True when the file's height and width may be made symbolic (nothing inside depends on them). */
    resizable: z.boolean().default(false),
  }),
  output: z.string().min(1),
  decoder: z.discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('yolox'),
      strides: z.array(z.number().int().positive()).min(1),
      /** Whether objectness and class scores leave the model already through a sigmoid. */
      sigmoid_applied: z.boolean().default(true),
    }),
    z.strictObject({
      /** YOLOv8 / YOLO11: [1, 4 + classes, N], cx cy w h in input pixels, class scores in 0..1. */
      kind: z.literal('yolov8'),
    }),
    z.strictObject({
      /** Beats CNN: [1, cells, 4 + classes], x1 y1 x2 y2 in input pixels, class scores in 0..1. */
      kind: z.literal('beats'),
      stride: z.number().int().positive(),
    }),
  ]),
  classes: z.array(z.string().min(1)).min(1),
  /**
   * The Beats head (BEATS.md), per output level: the feature tensor that feeds the final 1x1 class
   * convolution, and that convolution's weight [C, D, 1, 1] and bias [C] initializers.
   */
  head: z
    .array(
      z.strictObject({
        features: z.string().min(1),
        weight: z.string().min(1),
        bias: z.string().min(1),
        stride: z.number().int().positive(),
        /**
         * The classification loss the model was trained with: adaptation steps along its gradient,
         * so that on the model's own domain a good teacher moves nothing. YOLOX: bce; the Beats CNN: focal.
         */
        loss: z.enum(['bce', 'focal']).default('bce'),
        /**
         * What the model learnt to score in cells inside an object's box but away from its centre
         * (assigned to no object): `negative` when its training made them negatives (the Beats CNN,
         * src/model/assign.ts); `ignore` when that is not known (YOLOX assigns cells per object by
         * cost, so some of them were positives). A teacher's targets there follow it.
         */
        off_centre: z.enum(['negative', 'ignore']).default('ignore'),
      }),
    )
    .min(1)
    .optional(),
  /** How the model was made (the recipe) and what it measured, for models the project trains. */
  training: z.record(z.string(), z.unknown()).optional(),
});

export type ModelCard = z.infer<typeof modelCardSchema>;

export interface LoadedCard {
  card: ModelCard;
  /** Absolute path of the card file. */
  file: string;
  /** Absolute path of the ONNX file as the card names it (it may not exist yet). */
  onnxPath: string;
}

export async function readModelCard(file: string): Promise<LoadedCard> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new ModelError(file, 'model card not found');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(file, `model card is not JSON: ${(err as Error).message}`);
  }
  const parsed = modelCardSchema.safeParse(json, { reportInput: true });
  if (!parsed.success) {
    throw new ModelError(file, 'invalid model card:\n' + parsed.error.issues.flatMap(describeIssue).map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n'));
  }
  return { card: parsed.data, file, onnxPath: path.resolve(path.dirname(file), parsed.data.onnx) };
}
