import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { SingleBar } from 'cli-progress';
import { logger } from '../log.js';
import { BeatsError } from '../errors.js';
import { SyntheticBatches, asVariables, defaultRecipe, initWeights, loadCheckpoint, saveCheckpoint, setLearningRate, stageStart, trainStep, type Checkpoint, type TrainRecipe } from '../train/beats-train.js';
import { gridSize, type Weights } from '../train/beats-cnn.js';
import type { Tf } from '../train/tf.js';
import { SYNTHETIC_SCENES } from '../source/synthetic/index.js';
import { loadTf } from '../train/tf.js';
import { loadRealData, mixedBatch, realRecipe } from '../train/real-data.js';

const log = logger('train');

export interface TrainOptions {
  out: string;
  steps?: number;
  batch?: number;
  seed?: number;
  lr?: number;
  /** Write a checkpoint every this many steps. */
  every?: number;
  /** Also keep a copy of the checkpoint every this many steps (`step-N.bin`), to choose among on validation. */
  keep?: number;
  /** Start again from scratch even when a checkpoint exists. */
  fresh?: boolean;
  /**
   * The scenes to draw frames from, one per slot (`yard,yard,street` draws twice as many yards).
   * On a resumed run a new mix starts a stage, recorded in the recipe.
   */
  scenes?: string[];
  /**
   * A new run copies the weights of this checkpoint whose names and shapes fit its architecture
   * (the fine grid keeps every layer of the coarse one and adds a fusion layer).
   */
  initFrom?: string;
  /** Real clips to mix in (teacher-labelled, see `beats label`); recorded in the recipe. */
  real?: string[];
  /** Share of each batch that is real (default 0.5). */
  realShare?: number;
  mosaic?: number;
  /** Mosaic grids drawn from (n for n x n), e.g. [2, 3, 4]. */
  mosaicGrid?: number[];
  /** Share of real samples with on-screen-display captions painted on (src/train/overlay.ts). */
  captions?: number;
  /** The real samples' zoom range, e.g. [0.5, 1.6]. */
  zoom?: [number, number];
  /** A new run's input size (default 160x120); each a multiple of 8. */
  input?: { width: number; height: number };
  /** A new run's context stage: channels at stride 16 (input a multiple of 16). */
  context?: number;
  /** A new run's positive radius as a share of a box's shorter side (src/model/assign.ts). */
  sizeRadius?: number;
  /** A new run's class target on positive cells (BeatsCnnSpec.clsTarget). */
  clsTarget?: 'hard' | 'iou';
}

/**
 * `beats train`: trains the Beats CNN on the synthetic camera, with a progress bar, a checkpoint
 * every few steps (resumed automatically: Ctrl-C or a crash loses at most `every` steps), and the
 * recipe recorded in the checkpoint. Export with `beats export`.
 */
export async function trainCommand(options: TrainOptions): Promise<void> {
  const { tf, package: pkg, backend } = await loadTf();
  await mkdir(options.out, { recursive: true });
  const file = path.join(options.out, 'checkpoint.bin');
  let checkpoint: Checkpoint | undefined;
  if (existsSync(file) && !options.fresh) {
    checkpoint = await loadCheckpoint(tf, file);
    log.info(`resuming from ${file} at step ${checkpoint.step} of ${checkpoint.recipe.steps}`);
  }
  const recipe: TrainRecipe = checkpoint?.recipe ?? {
    ...defaultRecipe,
    steps: options.steps ?? defaultRecipe.steps,
    batch: options.batch ?? defaultRecipe.batch,
    seed: options.seed ?? defaultRecipe.seed,
    lr: options.lr ?? defaultRecipe.lr,
    spec: {
      ...defaultRecipe.spec,
      ...(options.input ? { inputWidth: options.input.width, inputHeight: options.input.height } : {}),
      ...(options.context ? { context: options.context } : {}),
      ...(options.sizeRadius ? { sizeRadius: options.sizeRadius } : {}),
      ...(options.clsTarget === 'iou' ? { clsTarget: 'iou' as const } : {}),
    },
    // The synthetic camera renders at twice the input where that stays within 320x240, else at the input.
    data: options.input ? { ...defaultRecipe.data, ...syntheticSize(options.input) } : defaultRecipe.data,
  };
  if (options.sizeRadius && checkpoint && options.sizeRadius !== recipe.spec.sizeRadius) {
    throw new BeatsError(`--size-radius ${options.sizeRadius}: ${file} trains with ${recipe.spec.sizeRadius ?? 'none'} (use --out for a new run)`);
  }
  if (options.clsTarget && checkpoint && options.clsTarget !== (recipe.spec.clsTarget ?? 'hard')) {
    throw new BeatsError(`--cls-target ${options.clsTarget}: ${file} trains with ${recipe.spec.clsTarget ?? 'hard'} (use --out for a new run)`);
  }
  if (options.context && checkpoint && options.context !== recipe.spec.context) {
    throw new BeatsError(`--context ${options.context}: ${file} trains ${recipe.spec.context ? `a context of ${recipe.spec.context}` : 'no context stage'} (use --out for a new run)`);
  }
  if (options.input && checkpoint && (options.input.width !== recipe.spec.inputWidth || options.input.height !== recipe.spec.inputHeight)) {
    throw new BeatsError(`--input ${options.input.width}x${options.input.height}: ${file} trains ${recipe.spec.inputWidth}x${recipe.spec.inputHeight} (use --out for a new run)`);
  }
  try {
    gridSize(recipe.spec);
  } catch (err) {
    throw new BeatsError(`--input ${recipe.spec.inputWidth}x${recipe.spec.inputHeight}: ${(err as Error).message}, which ${recipe.spec.context ? '--context' : 'the body'} needs`);
  }
  if (options.steps && checkpoint) recipe.steps = options.steps;
  if (options.scenes) {
    const unknown = options.scenes.filter((s) => !(SYNTHETIC_SCENES as readonly string[]).includes(s));
    if (unknown.length || options.scenes.length === 0) throw new BeatsError(`--scenes: unknown scene ${unknown.join(', ') || '(none given)'}; known: ${SYNTHETIC_SCENES.join(', ')}`);
    if (checkpoint && options.scenes.join(',') !== recipe.data.scenes.join(',')) {
      recipe.stages = [...(recipe.stages ?? [{ from: 0, scenes: recipe.data.scenes }]), { from: checkpoint.step, scenes: options.scenes }];
      log.info(`data mix ${recipe.data.scenes.join(',')} -> ${options.scenes.join(',')} from step ${checkpoint.step}`);
    }
    recipe.data = { ...recipe.data, scenes: options.scenes };
  }
  const spec = recipe.spec;
  const labelCache = path.join('.beats', 'labels');
  if (options.real?.length) {
    if (checkpoint) log.warn(`--real ignored: resuming ${file}, whose recipe names its own clips`);
    else recipe.data.real = await realRecipe(options.real, options.realShare ?? 0.5, spec.classes, { cacheDir: labelCache, mosaicShare: options.mosaic, mosaicGrids: options.mosaicGrid, captionShare: options.captions, zoom: options.zoom, onClip: (f) => log.info(`labels of ${f} (teacher, cached by sha256)`) });
  }
  let initial = checkpoint?.weights ?? initWeights(tf, spec, recipe.seed);
  if (options.initFrom && !checkpoint) {
    const warm = await warmStart(tf, options.initFrom, initial);
    initial = warm.weights;
    recipe.init = warm.init;
    log.info(`warm start from ${options.initFrom} (step ${warm.init.step}): ${warm.init.weights.length} of ${initial.size} weights copied`);
  } else if (options.initFrom) {
    log.warn(`--init-from ${options.initFrom} ignored: resuming ${file}, which has its own weights`);
  }
  const weights = asVariables(tf, initial);
  const optimizer = tf.train.adam(recipe.lr);
  if (checkpoint?.optimizer?.length) await optimizer.setWeights(checkpoint.optimizer);
  const history = checkpoint?.history ?? [];
  const data = new SyntheticBatches(recipe);
  const real = recipe.data.real;
  // Real samples are drawn afresh on a resumed run (seeded by the step it resumes at): replaying the
  // augmentations up to there would cost as much as the steps themselves.
  const realData = real ? await loadRealData(real, spec, recipe.seed * 100_003 + (checkpoint?.step ?? 0), labelCache) : undefined;
  if (real) log.info(`real footage: ${real.clips.length} clips (${real.clips.map((c) => path.basename(c.file)).join(', ')}), ${Math.round(real.share * 100)} % of each batch`);
  // Resuming replays the data stream (of this stage) up to where it stopped, so a resumed run sees what a straight one would.
  const syntheticPerBatch = recipe.batch - (real ? Math.round(recipe.batch * real.share) : 0);
  for (let s = stageStart(recipe); s < (checkpoint?.step ?? 0); s++) data.take(spec, syntheticPerBatch);

  log.info(`TensorFlow.js ${pkg} (${backend}); ${recipe.steps} steps of ${recipe.batch} frames (synthetic: ${recipe.data.scenes.join(', ')}, seeds ${recipe.data.seeds.join('..')})`);
  const bar = new SingleBar({ format: 'train [{bar}] {value}/{total} loss {loss} (cls {cls}, box {box}) {eta_formatted}', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 10_000, etaBuffer: 50 });
  let step = checkpoint?.step ?? 0;
  bar.start(recipe.steps, step, { loss: '-', cls: '-', box: '-' });
  let stop = false;
  const onSignal = () => {
    stop = true;
    log.info('stopping after this step; the checkpoint keeps the progress');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const every = options.every ?? 50;
  const save = async () => {
    await saveCheckpoint(file, { format: 'beats-cnn-checkpoint/1', step, recipe, history, weights, optimizer: await optimizer.getWeights() });
  };
  let window: Array<{ loss: number; cls: number; box: number }> = [];
  try {
    while (step < recipe.steps && !stop) {
      // Warm-up, then cosine decay to 5 % of the rate.
      const progress = step / recipe.steps;
      const rate = recipe.lr * Math.min(1, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + Math.cos(Math.PI * progress)));
      setLearningRate(optimizer, rate);
      const result = trainStep(tf, spec, weights, optimizer, mixedBatch(spec, recipe.batch, data, realData, real?.share ?? 0));
      if (!Number.isFinite(result.loss)) throw new Error(`loss is ${result.loss} at step ${step}: not saving this`);
      step++;
      window.push(result);
      if (step % 10 === 0 || step === recipe.steps) {
        const mean = (k: 'loss' | 'cls' | 'box') => window.reduce((s, r) => s + r[k], 0) / window.length;
        history.push({ step, loss: mean('loss'), cls: mean('cls'), box: mean('box') });
        bar.update(step, { loss: mean('loss').toFixed(3), cls: mean('cls').toFixed(3), box: mean('box').toFixed(3) });
        window = [];
      }
      if (step % every === 0) await save();
      if (options.keep && step % options.keep === 0) {
        if (step % every !== 0) await save();
        await copyFile(file, path.join(options.out, `step-${step}.bin`));
      }
      // A step is synchronous work: let signals (Ctrl-C) and timers through between steps.
      await new Promise((resolve) => setImmediate(resolve));
    }
    await save();
  } finally {
    bar.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  log.info(`${stop ? 'stopped' : 'done'} at step ${step}; checkpoint ${file}`);
}

function syntheticSize(input: { width: number; height: number }): { width: number; height: number } {
  const factor = input.width * 2 <= 320 && input.height * 2 <= 240 ? 2 : 1;
  return { width: input.width * factor, height: input.height * factor };
}

/** Fresh weights, with every tensor of `from` that has the same name and shape in their place. */
async function warmStart(tf: Tf, from: string, fresh: Weights): Promise<{ weights: Weights; init: NonNullable<TrainRecipe['init']> }> {
  if (!existsSync(from)) throw new BeatsError(`--init-from ${from}: no such checkpoint`);
  const source = await loadCheckpoint(tf, from).catch((err: unknown) => {
    throw new BeatsError(`--init-from ${from}: ${(err as Error).message}`);
  });
  const copied: string[] = [];
  const weights: Weights = new Map();
  for (const [name, t] of fresh) {
    const s = source.weights.get(name);
    if (s && s.shape.join('x') === t.shape.join('x')) {
      weights.set(name, s);
      t.dispose();
      copied.push(name);
    } else weights.set(name, t);
  }
  for (const [name, s] of source.weights) if (!copied.includes(name)) s.dispose();
  for (const { tensor } of source.optimizer ?? []) tensor.dispose();
  if (copied.length === 0) throw new BeatsError(`--init-from ${from}: none of its weights fit this architecture`);
  return { weights, init: { checkpoint: path.basename(from), step: source.step, weights: copied } };
}
