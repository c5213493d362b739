import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { take } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../src/errors.js';
import { readModelCard, type ModelCard } from '../src/model/card.js';
import { decodeYolox, iou, nmsPerClass, type Candidate } from '../src/model/decode.js';
import { Detector, type DetectOptions } from '../src/model/detector.js';
import type { Detection } from '../src/model/detection.js';
import { builtinModelsDir } from '../src/model/registry.js';
import type { Frame, FrameSourceOptions } from '../src/source/frame.js';
import { letterbox, toSourcePixels } from '../src/source/geometry.js';
import { assets, needsAssets } from './helpers/assets.js';
import { consumeFrames } from './helpers/frames.js';
import { constantOutputModel, cpuRuntime, writeModel, yolov8Output, type Anchor } from './helpers/model-onnx.js';

const detectDefaults: DetectOptions = { threshold: 0.35, nmsIou: 0.45, maxDetections: 100 };

let tmp: string;
let savedModelsDir: string | undefined;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'beats-model-'));
  // A registry name must resolve the same way on every machine: nothing pulled (an empty models
  // directory), so `yolox-nano` falls back to the shared asset after checking its sha256.
  savedModelsDir = process.env.BEATS_MODELS_DIR;
  process.env.BEATS_MODELS_DIR = path.join(tmp, 'pulled');
});

afterAll(async () => {
  if (savedModelsDir === undefined) delete process.env.BEATS_MODELS_DIR;
  else process.env.BEATS_MODELS_DIR = savedModelsDir;
  await rm(tmp, { recursive: true, force: true });
});

const builtinCard = async (): Promise<ModelCard> => JSON.parse(await readFile(path.join(builtinModelsDir, 'yolox-nano.json'), 'utf8')) as ModelCard;

function expectModelError(err: unknown): ModelError {
  expect(err).toBeInstanceOf(ModelError);
  return err as ModelError;
}

async function rejection(promise: Promise<unknown>): Promise<ModelError> {
  return promise.then(
    () => {
      throw new Error('expected a ModelError, the call succeeded');
    },
    (err: unknown) => expectModelError(err),
  );
}

// ---------------------------------------------------------------------------------------------
// Pure parts: geometry, IoU, NMS, YOLOX grid decoding
// ---------------------------------------------------------------------------------------------

describe('letterbox and the way back to source pixels', () => {
  it('fits a landscape source at the top left, as ffmpeg scale+pad does', () => {
    // 320x240 into 416x416: 416 wide, 416 * 240/320 = 312 high, no offset.
    const lb = letterbox(320, 240, 416, 416, 'top-left');
    expect(lb).toEqual({ width: 416, height: 416, scaledWidth: 416, scaledHeight: 312, padX: 0, padY: 0, scaleX: 1.3, scaleY: 1.3 });
    expect(toSourcePixels([13, 26, 130, 312], lb, 320, 240)).toEqual([10, 20, 100, 240]);
  });

  it('centres a landscape source vertically and a portrait one horizontally', () => {
    const wide = letterbox(128, 64, 64, 64, 'center');
    expect(wide).toMatchObject({ scaledWidth: 64, scaledHeight: 32, padX: 0, padY: 16, scaleX: 0.5, scaleY: 0.5 });
    expect(toSourcePixels([12, 24, 28, 36], wide, 128, 64)).toEqual([24, 16, 56, 40]);

    // 240x320 into 416x416: 312 wide, (416 - 312) / 2 = 52 columns of padding on the left.
    const tall = letterbox(240, 320, 416, 416, 'center');
    expect(tall).toMatchObject({ scaledWidth: 312, scaledHeight: 416, padX: 52, padY: 0 });
    expect(toSourcePixels([52 + 13, 26, 52 + 130, 416], tall, 240, 320)).toEqual([10, 20, 100, 320]);
  });

  it('rounds the scaled size to the nearest pixel and floors the centring offset', () => {
    // 768x432 into 416x416: 416 * 432 / 768 = 234 exactly; (416 - 234) / 2 = 91.
    expect(letterbox(768, 432, 416, 416, 'center')).toMatchObject({ scaledWidth: 416, scaledHeight: 234, padX: 0, padY: 91 });
    // 100x33 into 64x64: 64 * 33 / 100 = 21.12 → 21; (64 - 21) / 2 = 21.5 → 21.
    expect(letterbox(100, 33, 64, 64, 'center')).toMatchObject({ scaledWidth: 64, scaledHeight: 21, padX: 0, padY: 21 });
  });

  it('clips boxes that reach into the padding or past the picture to the source frame', () => {
    const lb = letterbox(128, 64, 64, 64, 'center');
    // y 10 is in the top padding (above 16), x 70 is past the right edge of the 64-wide input.
    expect(toSourcePixels([-4, 10, 70, 60], lb, 128, 64)).toEqual([0, 0, 128, 64]);
  });
});

describe('iou and class-aware NMS', () => {
  it('computes intersection over union', () => {
    expect(iou([0, 0, 10, 10], [0, 0, 10, 10])).toBe(1);
    expect(iou([0, 0, 10, 10], [5, 0, 15, 10])).toBeCloseTo(50 / 150, 12);
    expect(iou([0, 0, 10, 10], [10, 0, 20, 10])).toBe(0);
    expect(iou([0, 0, 10, 10], [2, 2, 4, 4])).toBeCloseTo(4 / 100, 12);
    expect(iou([3, 3, 3, 3], [3, 3, 3, 3])).toBe(0);
  });

  const c = (classId: number, score: number, box: [number, number, number, number]): Candidate => ({ classId, score, box });

  it('keeps the best of overlapping boxes of one class, and overlapping boxes of different classes', () => {
    const a = c(0, 0.9, [0, 0, 10, 10]);
    const aWeaker = c(0, 0.8, [1, 0, 11, 10]); // IoU 90/110 with a
    const b = c(1, 0.7, [0, 0, 10, 10]); // same place, another class
    const far = c(0, 0.5, [50, 50, 60, 60]);
    expect(nmsPerClass([far, aWeaker, b, a], 0.45, 100)).toEqual([a, b, far]);
    // Above the threshold they are two objects.
    expect(nmsPerClass([far, aWeaker, b, a], 0.95, 100)).toEqual([a, aWeaker, b, far]);
  });

  it('returns at most `limit` boxes, best first', () => {
    const boxes = [0.3, 0.9, 0.5, 0.7].map((s, i) => c(0, s, [i * 20, 0, i * 20 + 10, 10]));
    expect(nmsPerClass(boxes, 0.45, 2).map((k) => k.score)).toEqual([0.9, 0.7]);
    expect(nmsPerClass([], 0.45, 2)).toEqual([]);
  });
});

describe('YOLOX decoding', () => {
  // 64x64 input, strides 8/16/32: 8x8 + 4x4 + 2x2 = 84 cells of [x, y, w, h, obj, c0, c1].
  const width = 7;
  const cells = 84;
  const at = (level: 'stride8' | 'stride16' | 'stride32', gx: number, gy: number) => {
    const offsets = { stride8: [0, 8], stride16: [64, 4], stride32: [80, 2] } as const;
    const [start, gw] = offsets[level];
    return start + gy * gw + gx;
  };

  function output(set: (row: Float32Array, cell: number) => void): { data: Float32Array; dims: number[] } {
    const data = new Float32Array(cells * width);
    for (let i = 0; i < cells; i++) set(data.subarray(i * width, (i + 1) * width), i);
    return { data, dims: [1, cells, width] };
  }

  it('turns grid offsets and log sizes of a known cell into an input-pixel box', () => {
    const target = at('stride16', 2, 1);
    const out = output((row, cell) => {
      if (cell !== target) return;
      row.set([0.5, 0.25, Math.log(2), 0, 0.9, 0.1, 0.8]);
    });
    const found = decodeYolox(out, 64, 64, [8, 16, 32], true, { threshold: 0.35 });
    expect(found).toHaveLength(1);
    const [only] = found;
    // centre ((0.5 + 2) * 16, (0.25 + 1) * 16) = (40, 20), size (2 * 16, 1 * 16) = (32, 16)
    expect(only!.classId).toBe(1);
    expect(only!.score).toBeCloseTo(0.9 * 0.8, 6);
    only!.box.forEach((v, i) => expect(v).toBeCloseTo([24, 12, 56, 28][i]!, 5));
  });

  it('applies the sigmoid when the model does not, and honours the threshold and allowed classes', () => {
    const logit = (p: number) => Math.log(p / (1 - p));
    const target = at('stride32', 1, 1);
    const out = output((row, cell) => {
      row.set([0, 0, 0, 0, logit(0.01), logit(0.5), logit(0.5)]);
      if (cell === target) row.set([0, 0, 0, 0, logit(0.9), logit(0.6), logit(0.3)]);
    });
    const found = decodeYolox(out, 64, 64, [8, 16, 32], false, { threshold: 0.25 });
    expect(found).toHaveLength(1);
    expect(found[0]!.classId).toBe(0);
    expect(found[0]!.score).toBeCloseTo(0.54, 5);
    // cell (1, 1) of the 2x2 grid, stride 32: centre (32, 32), size 32.
    found[0]!.box.forEach((v, i) => expect(v).toBeCloseTo([16, 16, 48, 48][i]!, 5));

    expect(decodeYolox(out, 64, 64, [8, 16, 32], false, { threshold: 0.6 })).toEqual([]);
    const onlyClass1 = decodeYolox(out, 64, 64, [8, 16, 32], false, { threshold: 0.25, allowed: new Set([1]) });
    expect(onlyClass1.map((f) => [f.classId, Number(f.score.toFixed(4))])).toEqual([[1, 0.27]]);
  });

  it('rejects an output whose cell count does not match the grid', () => {
    const out = { data: new Float32Array(80 * width), dims: [1, 80, width] };
    expect(() => decodeYolox(out, 64, 64, [8, 16, 32], true, { threshold: 0.35 })).toThrow(/80 cells.*84/);
  });
});

// ---------------------------------------------------------------------------------------------
// Model cards
// ---------------------------------------------------------------------------------------------

/** sha256 of ../shared/assets/models/coco.names. */
const COCO_NAMES_SHA256 = '634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84';
const cocoNamesFile = path.join(path.dirname(assets.yoloxNano), 'coco.names');

describe('model cards', () => {
  it('reads the shipped yolox-nano card with its defaults', async () => {
    const loaded = await readModelCard(path.join(builtinModelsDir, 'yolox-nano.json'));
    expect(loaded.card.classes).toHaveLength(80);
    // The 80 COCO names in model order: the card's list, one a line, is the shared assets' coco.names
    // byte for byte (that file's sha256; compared with the file itself where it is present).
    const names = loaded.card.classes.join('\n') + '\n';
    expect(createHash('sha256').update(names).digest('hex')).toBe(COCO_NAMES_SHA256);
    if (existsSync(cocoNamesFile)) expect(names).toBe(await readFile(cocoNamesFile, 'utf8'));
    expect(loaded.onnxPath).toBe(path.join(builtinModelsDir, 'yolox_nano.onnx'));
  });

  it('names the card file and the key path of a missing key', async () => {
    const card = (await builtinCard()) as Partial<ModelCard>;
    delete card.output;
    delete (card.input as Partial<ModelCard['input']>).channels;
    const file = path.join(tmp, 'missing-key.json');
    await writeFile(file, JSON.stringify(card));
    const err = await rejection(readModelCard(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/^\s+output: .*required/m);
    expect(err.message).toMatch(/^\s+input\.channels: .*required/m);
  });

  it('names the card file and the full path of an unknown key', async () => {
    const card = await builtinCard();
    const withTypo = { ...card, input: { ...card.input, colour: 'BGR' }, decoder: { ...card.decoder, anchors: 3 } };
    const file = path.join(tmp, 'unknown-key.json');
    await writeFile(file, JSON.stringify(withTypo));
    const err = await rejection(readModelCard(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/^\s+input\.colour: unknown key/m);
    expect(err.message).toMatch(/^\s+decoder\.anchors: unknown key/m);
  });

  it('tells a value of the wrong type from a missing one', async () => {
    const card = await builtinCard();
    const file = path.join(tmp, 'wrong-type.json');
    await writeFile(file, JSON.stringify({ ...card, input: { ...card.input, width: '416' }, decoder: { ...card.decoder, kind: 'detr' } }));
    const err = await rejection(readModelCard(file));
    expect(err.message).toMatch(/^\s+input\.width: .*expected number, received string$/m);
    expect(err.message).not.toMatch(/width: is required/);
    expect(err.message).toMatch(/^\s+decoder\.kind: /m);
  });

  it('says when a card is missing or is not JSON', async () => {
    const absent = path.join(tmp, 'absent.json');
    expect((await rejection(readModelCard(absent))).message).toBe(`model ${absent}: model card not found`);
    const broken = path.join(tmp, 'broken.json');
    await writeFile(broken, '{"name": "x",');
    expect((await rejection(readModelCard(broken))).message).toMatch(new RegExp(`^model ${broken}: model card is not JSON`));
  });
});

// ---------------------------------------------------------------------------------------------
// YOLOv8 / YOLO11 layout, through a real onnxruntime session on a real ffmpeg frame
// ---------------------------------------------------------------------------------------------

describe('YOLOv8 layout [1, 4 + classes, N] end to end', () => {
  const classes = ['cat', 'dog', 'bird'];
  // Boxes in model-input pixels (64x64). The 128x64 test pattern is scaled by 0.5 to 64x32 and
  // centred: 16 rows of padding above. Source pixels: x / 0.5, (y - 16) / 0.5.
  const anchors: Anchor[] = [
    { cx: 20, cy: 30, w: 16, h: 12, scores: [0.9, 0.05, 0] }, // cat   [12,24,28,36] → [24,16,56,40]
    { cx: 21, cy: 31, w: 16, h: 12, scores: [0.8, 0, 0] }, //    cat, IoU 0.75 with the first: suppressed
    { cx: 20, cy: 30, w: 16, h: 12, scores: [0.1, 0.7, 0] }, //  dog on the cat: another class, kept
    { cx: 48, cy: 40, w: 8, h: 8, scores: [0, 0, 0.3] }, //      bird below 0.35 → [88,40,104,56]
    { cx: 32, cy: 32, w: 20, h: 20, scores: [0.05, 0.05, 0.05] }, // nothing
    { cx: 60, cy: 20, w: 10, h: 10, scores: [0, 0.6, 0] }, //    dog [55,15,65,25] → [110,-2,130,18], clipped
  ];
  const expected = {
    cat: [24, 16, 56, 40],
    dog: [24, 16, 56, 40],
    dogClipped: [110, 0, 128, 18],
    bird: [88, 40, 104, 56],
  };

  let dir: string;
  let cardPath: string;
  let detector: Detector;
  let frame: Frame;

  beforeAll(async () => {
    dir = path.join(tmp, 'yolov8');
    const out = yolov8Output(anchors, classes.length);
    const bytes = constantOutputModel({ inputName: 'images', inputDims: [1, 3, 64, 64], outputName: 'output', outputDims: out.dims, output: out.data });
    cardPath = await writeModel(dir, 'tiny-v8', bytes, {
      version: 'test',
      input: { name: 'images', width: 64, height: 64, layout: 'NCHW', channels: 'RGB', scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1], letterbox: { pad: 114, align: 'center' }, resizable: false },
      output: 'output',
      decoder: { kind: 'yolov8' },
      classes,
    });
    detector = await Detector.load(cardPath, { runtime: cpuRuntime });
    const frames = await consumeFrames({ camera: 'v8', url: 'testsrc:size=128x64:rate=10', realtime: false, output: detector.frameOutput() }, (f) => f, (f$) => f$.pipe(take(1)));
    frame = frames[0]!;
  });

  afterAll(async () => {
    await detector?.close();
  });

  const summary = (found: Detection[]) => found.map((d) => ({ label: d.label, score: Number(d.score.toFixed(3)), box: d.box.map((v) => Number(v.toFixed(3))) }));

  it('gets a real letterboxed frame from ffmpeg: 64x64 RGB, 16 padded rows above and below', () => {
    expect(detector.frameOutput()).toEqual({ width: 64, height: 64, pixelFormat: 'rgb24', padValue: 114, align: 'center' });
    expect(detector.model.origin).toBe('path');
    expect([frame.width, frame.height]).toEqual([128, 64]);
    expect(frame.geometry).toMatchObject({ scaledWidth: 64, scaledHeight: 32, padX: 0, padY: 16 });
    const row = (y: number) => frame.pixels.subarray(y * 64 * 3, (y + 1) * 64 * 3);
    const allPad = (y: number) => row(y).every((v) => v === 114);
    expect([0, 8, 15, 48, 56, 63].every(allPad)).toBe(true);
    expect([16, 32, 47].some(allPad)).toBe(false);
  });

  it('maps boxes back to source pixels and keeps overlapping boxes only across classes', async () => {
    const found = await detector.detect(frame, detectDefaults);
    expect(summary(found)).toEqual([
      { label: 'cat', score: 0.9, box: expected.cat },
      { label: 'dog', score: 0.7, box: expected.dog },
      { label: 'dog', score: 0.6, box: expected.dogClipped },
    ]);
    expect(found.map((d) => d.classId)).toEqual([0, 1, 1]);
  });

  it('applies the score threshold, the NMS IoU and the detection limit', async () => {
    const low = await detector.detect(frame, { ...detectDefaults, threshold: 0.25 });
    expect(summary(low).map((d) => d.label)).toEqual(['cat', 'dog', 'dog', 'bird']);
    expect(summary(low)[3]!.box).toEqual(expected.bird);

    const loose = await detector.detect(frame, { ...detectDefaults, nmsIou: 0.8 });
    expect(summary(loose).map((d) => `${d.label}:${d.score}`)).toEqual(['cat:0.9', 'cat:0.8', 'dog:0.7', 'dog:0.6']);

    const one = await detector.detect(frame, { ...detectDefaults, maxDetections: 1 });
    expect(summary(one).map((d) => d.label)).toEqual(['cat']);
  });

  it('keeps only the wanted labels, given as options or as class ids', async () => {
    const byOption = await detector.detect(frame, { ...detectDefaults, labels: ['dog'] });
    expect(summary(byOption).map((d) => d.label)).toEqual(['dog', 'dog']);
    const byIds = await detector.detect(frame, detectDefaults, detector.classIds(['bird', 'cat']));
    expect(summary(byIds).map((d) => d.label)).toEqual(['cat']);
    expect(() => detector.classIds(['cat', 'horse'])).toThrow(/has no class "horse"/);
  });

  it('reuses its input buffer from frame to frame without changing a result; overlapping detects each get their own', async () => {
    const beats = await Detector.load('beats-s', { runtime: cpuRuntime });
    try {
      const frames = await consumeFrames({ camera: 'b', url: 'synthetic:scene=street&seed=3&seconds=10', output: beats.frameOutput() }, (f) => f, (f$) => f$.pipe(take(40)));
      const [a, b] = [frames[0]!, frames[39]!];
      const fresh = async (f: Frame) => {
        const once = await Detector.load('beats-s', { runtime: cpuRuntime });
        try {
          return await once.detect(f, detectDefaults);
        } finally {
          await once.close();
        }
      };
      const [wantA, wantB] = [await fresh(a), await fresh(b)];
      expect(wantA).not.toEqual(wantB);
      // In turn: a, b, a on one detector, each run on the buffer the one before used.
      expect(await beats.detect(a, detectDefaults)).toEqual(wantA);
      expect(await beats.detect(b, detectDefaults)).toEqual(wantB);
      expect(await beats.detect(a, detectDefaults)).toEqual(wantA);
      // At once: the second cannot take the buffer the first holds.
      expect(await Promise.all([beats.detect(b, detectDefaults), beats.detect(a, detectDefaults)])).toEqual([wantB, wantA]);
    } finally {
      await beats.close();
    }
  });

  it('builds the input tensor from the interleaved pixels: planar NCHW, or NHWC with mean and std', async () => {
    const plane = 64 * 64;
    const px = frame.pixels;
    const nchw = detector.toTensor(frame);
    expect(nchw.dims).toEqual([1, 3, 64, 64]);
    const a = nchw.data as Float32Array;
    for (const i of [0, 17 * 64 + 5, 30 * 64 + 40, plane - 1]) {
      for (let c = 0; c < 3; c++) expect(a[c * plane + i]).toBeCloseTo(px[3 * i + c]! / 255, 6);
    }

    const mean = [0.485, 0.456, 0.406] as const;
    const std = [0.229, 0.224, 0.225] as const;
    const out = yolov8Output(anchors, classes.length);
    const bytes = constantOutputModel({ inputName: 'input', inputDims: [1, 64, 64, 3], outputName: 'output', outputDims: out.dims, output: out.data });
    const card = JSON.parse(await readFile(cardPath, 'utf8')) as ModelCard;
    const nhwcCard = await writeModel(dir, 'tiny-v8-nhwc', bytes, { ...card, input: { ...card.input, name: 'input', layout: 'NHWC', mean: [...mean], std: [...std] } });
    const nhwc = await Detector.load(nhwcCard, { runtime: cpuRuntime });
    try {
      const t = nhwc.toTensor(frame);
      expect(t.dims).toEqual([1, 64, 64, 3]);
      const b = t.data as Float32Array;
      for (const i of [0, 17 * 64 + 5, 30 * 64 + 40, plane - 1]) {
        for (let c = 0; c < 3; c++) expect(b[3 * i + c]).toBeCloseTo((px[3 * i + c]! / 255 - mean[c]) / std[c], 5);
      }
      // onnxruntime checks the fed shape against the graph's [1, 64, 64, 3].
      expect((await nhwc.detect(frame, detectDefaults)).map((d) => d.label)).toEqual(['cat', 'dog', 'dog']);
    } finally {
      await nhwc.close();
    }
  });

  it('loads the same model from its .onnx path, the card beside it', async () => {
    const viaOnnx = await Detector.load(path.join(dir, 'tiny-v8.onnx'), { runtime: cpuRuntime });
    try {
      expect(summary(await viaOnnx.detect(frame, detectDefaults))).toEqual(summary(await detector.detect(frame, detectDefaults)));
    } finally {
      await viaOnnx.close();
    }
  });

  it('rejects a card whose input, output or classes do not fit the ONNX file', async () => {
    const card = JSON.parse(await readFile(cardPath, 'utf8')) as ModelCard;
    const variant = async (name: string, change: Partial<ModelCard>) => {
      const file = path.join(dir, `${name}.json`);
      await writeFile(file, JSON.stringify({ ...card, ...change }));
      return file;
    };
    const badInput = await rejection(Detector.load(await variant('bad-input', { input: { ...card.input, name: 'pixels' } }), { runtime: cpuRuntime }));
    expect(badInput.message).toMatch(/no input "pixels" \(it has images\)/);
    const badOutput = await rejection(Detector.load(await variant('bad-output', { output: 'boxes' }), { runtime: cpuRuntime }));
    expect(badOutput.message).toMatch(/no output "boxes" \(it has output\)/);

    // Refused at load, not on every frame: the output's shape says how many classes the file has.
    const twoClasses = await rejection(Detector.load(await variant('two-classes', { classes: ['cat', 'dog'] }), { runtime: cpuRuntime }));
    expect(twoClasses.message).toMatch(/output "output" has shape \[1, 7, 6\]; the yolov8 decoder reads \[1, 4 \+ classes, anchors\], 6 values for the card's 2 classes/);
  });

  it('refuses input_size on a card that is not resizable', async () => {
    const err = await rejection(Detector.load(cardPath, { runtime: cpuRuntime, inputSize: 128 }));
    expect(err.message).toContain('does not allow input_size 128 (fixed 64x64)');
    // The card's own size is no change, so it is allowed.
    const same = await Detector.load(cardPath, { runtime: cpuRuntime, inputSize: 64 });
    expect(same.frameOutput()).toMatchObject({ width: 64, height: 64 });
    await same.close();
  });
});

// ---------------------------------------------------------------------------------------------
// The real YOLOX-Nano on the real videos
// ---------------------------------------------------------------------------------------------

describe.skipIf(needsAssets)('YOLOX-Nano on real video', () => {
  const detectors = new Map<number, Detector>();
  const highwayResults = new Map<number, Detection[][]>();

  const highwaySource = (detector: Detector): FrameSourceOptions => ({ camera: 'highway', url: assets.highway, output: detector.frameOutput() });
  const cars = (found: Detection[]) => found.filter((d) => d.label === 'car');

  async function highwayFrames(size: number, frames: number): Promise<Detection[][]> {
    const detector = detectors.get(size)!;
    return consumeFrames(highwaySource(detector), (f) => detector.detect(f, detectDefaults), (f$) => f$.pipe(take(frames)));
  }

  beforeAll(async () => {
    detectors.set(416, await Detector.load('yolox-nano', { runtime: cpuRuntime }));
    highwayResults.set(416, await highwayFrames(416, 50));
  });

  afterAll(async () => {
    for (const d of detectors.values()) await d.close();
  });

  it('resolves the registry name to the shared asset after checking its sha256', () => {
    const detector = detectors.get(416)!;
    expect(detector.model.origin).toBe('assets');
    expect(detector.model.onnxPath).toBe(assets.yoloxNano);
    expect(detector.provider).toBe('cpu');
    expect(detector.frameOutput()).toEqual({ width: 416, height: 416, pixelFormat: 'bgr24', padValue: 114, align: 'top-left' });
  });

  it('finds several cars on the first highway frame, in source pixels', () => {
    const first = highwayResults.get(416)![0]!;
    const found = cars(first);
    expect(found.length).toBeGreaterThanOrEqual(3);
    for (const d of first) {
      expect(d.score).toBeGreaterThanOrEqual(0.35);
      const [x1, y1, x2, y2] = d.box;
      expect(x1).toBeGreaterThanOrEqual(0);
      expect(y1).toBeGreaterThanOrEqual(0);
      expect(x2).toBeLessThanOrEqual(320);
      expect(y2).toBeLessThanOrEqual(240);
      expect(x2).toBeGreaterThan(x1);
      expect(y2).toBeGreaterThan(y1);
    }
    // Cars on a 320x240 CCTV picture are small: none as big as half the frame.
    for (const d of found) expect((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).toBeLessThan((320 * 240) / 4);
    // Sorted best first, and no two cars are the same object after NMS.
    expect(first.map((d) => d.score)).toEqual([...first.map((d) => d.score)].sort((a, b) => b - a));
    for (const [i, a] of found.entries()) for (const b of found.slice(i + 1)) expect(iou(a.box, b.box)).toBeLessThanOrEqual(0.45);
  });

  it('sees a plausible number of cars over 50 frames', () => {
    const counts = highwayResults.get(416)!.map((f) => cars(f).length);
    expect(counts).toHaveLength(50);
    const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
    expect(mean).toBeGreaterThanOrEqual(3);
    expect(mean).toBeLessThanOrEqual(15);
    expect(counts.filter((n) => n === 0)).toEqual([]);
  });

  // A detection's source-pixel box depends on the input size only through the letterbox: the same
  // cars must come back at the same places at 320 and 640.
  it.each([320, 640])('runs at input_size %i with symbolic input dims and finds the same cars', async (size) => {
    const detector = await Detector.load('yolox-nano', { runtime: cpuRuntime, inputSize: size });
    detectors.set(size, detector);
    expect([detector.inputWidth, detector.inputHeight]).toEqual([size, size]);
    expect(detector.frameOutput()).toMatchObject({ width: size, height: size });
    const results = await highwayFrames(size, 5);
    expect(results).toHaveLength(5);
    for (const [i, found] of results.entries()) {
      expect(cars(found).length).toBeGreaterThanOrEqual(2);
      for (const d of found) expect(d.box[2]).toBeLessThanOrEqual(320);
      // The confident cars at 416 are found here too, at the same place.
      const reference = cars(highwayResults.get(416)![i]!).filter((d) => d.score >= 0.7);
      for (const ref of reference) {
        const best = Math.max(0, ...cars(found).map((d) => iou(d.box, ref.box)));
        expect(best, `frame ${i}: car at ${ref.box.map(Math.round).join(',')} (${ref.score.toFixed(2)})`).toBeGreaterThan(0.5);
      }
    }
  });

  it('refuses an input_size that is not a whole number of cells at the coarsest stride', async () => {
    const err = await rejection(Detector.load('yolox-nano', { runtime: cpuRuntime, inputSize: 330 }));
    expect(err.message).toBe('model yolox-nano: input_size 330 is not a multiple of 32');
  });

  it('refuses input_size when a card of the same ONNX does not say resizable', async () => {
    const card = await builtinCard();
    const file = path.join(tmp, 'yolox-fixed.json');
    await writeFile(file, JSON.stringify({ ...card, name: 'yolox-fixed', onnx: assets.yoloxNano, input: { ...card.input, resizable: false } }));
    const err = await rejection(Detector.load(file, { runtime: cpuRuntime, inputSize: 320 }));
    expect(err.message).toBe(`model ${file}: its card does not allow input_size 320 (fixed 416x416)`);
  });

  describe('indoor camera, people walking through one at a time', () => {
    // Sampled at 2 fps: 279 frames over 139 s. Looked at by eye (ffmpeg -ss T -frames:v 1):
    // someone stands by the table at 10 s, 30 s and 100 s; the room is empty at 2 s, 47 s and 121 s.
    const seenPerson = [10, 30, 100];
    const seenEmpty = [2, 47, 121];
    let samples: { t: number; people: Detection[] }[];

    beforeAll(async () => {
      const detector = detectors.get(416)!;
      samples = await consumeFrames({ camera: 'indoor', url: assets.indoor, fps: 2, output: detector.frameOutput() }, async (f) => ({
        t: f.streamTime,
        people: await detector.detect(f, { ...detectDefaults, labels: ['person'] }),
      }));
    });

    it('samples the whole video', () => {
      expect(samples.length).toBeGreaterThanOrEqual(270);
      expect(samples.length).toBeLessThanOrEqual(282);
      expect(samples.every((s) => s.people.every((d) => d.label === 'person'))).toBe(true);
    });

    it('finds a person in most sampled frames but not in the empty stretches', () => {
      const withPerson = samples.filter((s) => s.people.length > 0).length / samples.length;
      expect(withPerson).toBeGreaterThan(0.5);
      expect(withPerson).toBeLessThan(0.9);
    });

    it('finds the person seen at 10, 30 and 100 s, standing at the table right of centre', () => {
      for (const t of seenPerson) {
        const sample = samples.find((s) => s.t === t);
        expect(sample, `sample at ${t} s`).toBeDefined();
        const best = sample!.people[0];
        expect(best, `person at ${t} s`).toBeDefined();
        expect(best!.score).toBeGreaterThan(0.6);
        const [x1, y1, x2, y2] = best!.box;
        // In the 768x432 frame the person stands around x 380..540 and fills most of the height.
        expect((x1 + x2) / 2).toBeGreaterThan(350);
        expect((x1 + x2) / 2).toBeLessThan(600);
        expect(y2 - y1).toBeGreaterThan(250);
        expect(y2).toBeLessThanOrEqual(432);
      }
    });

    it('finds nobody in the empty room at 2, 47 and 121 s', () => {
      for (const t of seenEmpty) {
        const sample = samples.find((s) => s.t === t);
        expect(sample, `sample at ${t} s`).toBeDefined();
        expect(sample!.people, `people at ${t} s`).toEqual([]);
      }
    });
  });
});
