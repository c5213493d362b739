// A model is what its card says or it is refused at load: the card against the ONNX file's tensors, and a pinned sha256 against the file.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../src/errors.js';
import type { ModelCard } from '../src/model/card.js';
import { Detector } from '../src/model/detector.js';
import { builtinModelsDir, listModels, resolveModel, sha256File } from '../src/model/registry.js';
import { assets, needsAssets } from './helpers/assets.js';
import { spawnBeats } from './helpers/brokers.js';
import { cpuRuntime } from './helpers/model-onnx.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'beats-model-integrity-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const shippedOnnx = path.join(builtinModelsDir, 'beats-s.onnx');

/** beats-s's card, changed by `edit`, beside nothing: its `onnx` points at the shipped file. */
async function cardFile(name: string, edit: (card: ModelCard) => void): Promise<string> {
  const card = JSON.parse(await readFile(path.join(builtinModelsDir, 'beats-s.json'), 'utf8')) as ModelCard;
  card.onnx = shippedOnnx;
  delete card.head;
  edit(card);
  const file = path.join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify(card));
  return file;
}

describe('a card that does not fit its ONNX file', () => {
  const cases: Array<[string, (card: ModelCard) => void, RegExp]> = [
    ['input size', (c) => Object.assign(c.input, { width: 320, height: 240 }), /input "images" is 160x120 \(shape \[1, 3, 120, 160\], NCHW\); the card says 320x240/],
    ['input name', (c) => (c.input.name = 'pixels'), /the ONNX file has no input "pixels" \(it has images\)/],
    ['layout', (c) => (c.input.layout = 'NHWC'), /input "images" has 160 channels .*the card feeds 3/],
    ['class count', (c) => c.classes.push('bus'), /output "output" has shape \[1, 1200, 7\]; the beats decoder reads \[1, cells, 4 \+ classes\], 8 values for the card's 4 classes/],
    ['decoder kind', (c) => (c.decoder = { kind: 'yolov8' }), /the yolov8 decoder reads \[1, 4 \+ classes, anchors\], 7 values for the card's 3 classes/],
    ['decoder stride', (c) => (c.decoder = { kind: 'beats', stride: 8 }), /output "output" has 1200 cells .*grid at 160x120 has 300/],
    ['yolox decoder', (c) => (c.decoder = { kind: 'yolox', strides: [8, 16, 32], sigmoid_applied: true }), /the yolox decoder reads \[1, cells, 5 \+ classes\], 8 values/],
  ];
  for (const [what, edit, reason] of cases) {
    it(`is refused at load with what differs: ${what}`, async () => {
      const file = await cardFile(what.replace(/\W/g, '-'), edit);
      const err = await Detector.load(file, { runtime: cpuRuntime }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelError);
      expect((err as Error).message).toContain(`its card ${file} does not fit ${shippedOnnx}`);
      expect((err as Error).message).toMatch(reason);
    });
  }

  it('the same card unchanged loads and detects', async () => {
    const detector = await Detector.load(await cardFile('unchanged', () => undefined), { runtime: cpuRuntime });
    expect(detector.inputWidth).toBe(160);
    await detector.close();
  });

  it('beats run and beats doctor refuse it (exit 1, with the reason), not run it frame after frame', async () => {
    const card = await cardFile('run-classes', (c) => c.classes.push('bus'));
    const pipeline = path.join(dir, 'bad-card.yaml');
    await writeFile(pipeline, `status_interval_s: 0\nstate_dir: ${JSON.stringify(path.join(dir, 'state'))}\nmqtt: { embedded: { host: 127.0.0.1, port: 0 } }\ncameras: [{ name: cam, source: { url: "synthetic:seconds=2" }, model: ${JSON.stringify(card)} }]\n`);
    const run = spawnBeats(['run', pipeline]);
    expect((await run.exit).code, run.stderr()).toBe(1);
    expect(run.stderr()).toMatch(/does not fit .*8 values for the card's 4 classes/);
    expect(run.stderr()).not.toMatch(/frame \d+ failed/);
    const doctor = spawnBeats(['doctor', '--json', '--timeout', '2', pipeline]);
    await doctor.exit;
    const report = JSON.parse(doctor.stdout()) as { checks: Array<{ name: string; status: string; detail: string }> };
    expect(report.checks.find((c) => c.name === `model ${card}`)).toMatchObject({ status: 'fail', detail: expect.stringMatching(/8 values for the card's 4 classes/) });
  });
});

describe.skipIf(needsAssets)('a pulled model whose weights changed on disk', () => {
  it('is refused at load, by models list and by doctor, with the path and both hashes', async () => {
    const models = path.join(dir, 'models');
    const env = { ...process.env, BEATS_MODELS_DIR: models, BEATS_ASSETS_DIR: path.join(dir, 'no-assets') };
    await rm(models, { recursive: true, force: true });
    await mkdir(models, { recursive: true });
    const file = path.join(models, 'yolox_nano.onnx');
    await copyFile(assets.yoloxNano, file);
    const pinned = await sha256File(file);
    expect((await resolveModel('yolox-nano', env)).origin).toBe('pulled');

    // One bit of one weight, deep in the file.
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length * 0.7)]! ^= 0x01;
    await writeFile(file, bytes);
    const flipped = await sha256File(file);
    const refusal = new RegExp(`${file.replace(/[.]/g, '\\.')} is damaged or not this model: its sha256 is ${flipped}, its card pins ${pinned}; pull it again: npx beats models pull yolox-nano`);

    await expect(resolveModel('yolox-nano', env)).rejects.toThrow(refusal);
    const saved = process.env.BEATS_MODELS_DIR;
    process.env.BEATS_MODELS_DIR = models;
    try {
      await expect(Detector.load('yolox-nano', { runtime: cpuRuntime })).rejects.toThrow(refusal);
    } finally {
      if (saved === undefined) delete process.env.BEATS_MODELS_DIR;
      else process.env.BEATS_MODELS_DIR = saved;
    }
    expect((await listModels(env)).find((m) => m.name === 'yolox-nano')).toMatchObject({ file: undefined, problem: expect.stringMatching(refusal) });

    const list = spawnBeats(['models', 'list'], { env });
    expect((await list.exit).code).toBe(1);
    expect(list.stdout()).toMatch(/yolox-nano .* REFUSED: .*is damaged or not this model/);

    const pipeline = path.join(dir, 'flipped.yaml');
    await writeFile(pipeline, `mqtt: { embedded: { host: 127.0.0.1, port: 0 } }\ncameras: [{ name: cam, source: { url: "synthetic:" }, model: yolox-nano }]\n`);
    const doctor = spawnBeats(['doctor', '--json', '--timeout', '2', pipeline], { env });
    await doctor.exit;
    const report = JSON.parse(doctor.stdout()) as { checks: Array<{ name: string; status: string; detail: string }> };
    expect(report.checks.find((c) => c.name === 'model yolox-nano')).toMatchObject({ status: 'fail', detail: expect.stringMatching(refusal) });
  });
});
