import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { MAX_DURATION_S } from '../config/schema.js';
import { BeatsError, ConfigError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { validMosaicGrids } from '../train/mosaic-grids.js';
import { packageVersion } from '../version.js';
import type { SynthCliOptions } from './synth.js';
import { EXIT, helpFooter } from './usage.js';

const log = logger('beats');

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Seconds a timer waits: Node's timers fire after 1 ms past MAX_DURATION_S. */
function timerSeconds(value: string): number {
  const n = positiveInt(value);
  if (n > MAX_DURATION_S) throw new InvalidArgumentError(`must be at most ${MAX_DURATION_S} (about 24 days)`);
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a number above 0');
  return n;
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number, 0 or more');
  return n;
}

const program = new Command()
  .name('beats')
  .description('Edge video analytics: cameras → ffmpeg → ONNX detector → MQTT')
  .version(packageVersion, '-V, --version', 'print the version')
  .addHelpText('after', helpFooter())
  .showHelpAfterError()
  // Usage errors throw (every subcommand inherits it) so that they exit with EXIT.invalid below.
  .exitOverride();

program
  .command('run')
  .description('run a pipeline file (Ctrl-C stops it cleanly)')
  .argument('<file>', 'pipeline YAML')
  .option('--max-frames <n>', 'stop each camera after N processed frames', positiveInt)
  .option('--broker <url>', 'MQTT broker URL (overrides mqtt.url; default: embedded broker)')
  .action(async (file: string, opts: { maxFrames?: number; broker?: string }) => {
    const { runCommand } = await import('./run.js');
    await runCommand(file, opts);
  });

const models = program.command('models').description('the model registry');
models
  .command('pull')
  .description('download a model, check its sha256, write it atomically')
  .argument('<name>', 'model name, e.g. yolox-nano')
  .option('--from <file-or-url>', 'take the file from here instead (offline sites)')
  .action(async (name: string, opts: { from?: string }) => {
    const { modelsPullCommand } = await import('./models.js');
    await modelsPullCommand(name, opts);
  });
models
  .command('list')
  .description('known models and whether they are pulled')
  .action(async () => {
    const { modelsListCommand } = await import('./models.js');
    await modelsListCommand();
  });

const model = program
  .command('model')
  .description("a camera's adapted head versions (on-device adaptation), on disk under state_dir")
  .addHelpText(
    'after',
    '\nThese commands work on the files of a pipeline that is not running. For a running pipeline, publish the\nversion number (or base) on <prefix>/<camera>/model/rollback over MQTT; watch <prefix>/<camera>/model.',
  );
model
  .command('versions')
  .description("list a camera's head versions (* marks the one the pipeline starts from)")
  .argument('<camera>', 'camera name')
  .requiredOption('--pipeline <file>', 'pipeline YAML (its state_dir holds the versions)')
  .option('--json', 'print them as JSON')
  .action(async (camera: string, opts: { pipeline: string; json?: boolean }) => {
    const { modelVersionsCommand } = await import('./model.js');
    await modelVersionsCommand(camera, opts);
  });
model
  .command('rollback')
  .description("make a version's head (or the base model's: base) current again, as a new version; for a running pipeline use the MQTT topic <prefix>/<camera>/model/rollback instead")
  .argument('<camera>', 'camera name')
  .argument('<version>', 'version number, or base')
  .requiredOption('--pipeline <file>', 'pipeline YAML (its state_dir holds the versions)')
  .action(async (camera: string, version: string, opts: { pipeline: string }) => {
    const { modelRollbackCommand } = await import('./model.js');
    await modelRollbackCommand(camera, version, opts);
  });

program
  .command('synth')
  .description('render a synthetic camera scene with exact ground truth: DIR/video.mp4, truth.jsonl, scene.json')
  .requiredOption('-o, --output <dir>', 'output folder')
  .requiredOption('--seconds <s>', 'stream seconds to render')
  .option('--scene <name>', 'scene preset: street, yard (default street)')
  .option('--seed <n>', 'random seed (default 1)')
  .option('--size <WxH>', 'frame size (default 320x240)')
  .option('--fps <n>', 'frames per second (default 10)')
  .option('--domain <list>', 'domain shifts, comma-separated: night, rain, fog, palette, moved, background, decoys')
  .option('--shift <list>', 'switch to these domain shifts at --shift-at')
  .option('--shift-at <s>', 'stream second of the switch')
  .action(async (opts: SynthCliOptions) => {
    const { synthCommand } = await import('./synth.js');
    await synthCommand(opts);
  });

program
  .command('train')
  .description('train the Beats CNN on the synthetic camera and real footage (resumes from its checkpoint)')
  .option('--out <dir>', 'where the checkpoint goes', '.beats/train/beats-s')
  .option('--steps <n>', 'optimizer steps', positiveInt)
  .option('--batch <n>', 'frames per step', positiveInt)
  .option('--seed <n>', 'seed of the recipe', positiveInt)
  .option('--every <n>', 'checkpoint every N steps', positiveInt)
  .option('--keep <n>', 'also keep a copy of the checkpoint every N steps (step-N.bin), to choose among on validation', positiveInt)
  .option('--fresh', 'ignore an existing checkpoint')
  .option('--scenes <list>', 'scenes, one per slot, comma separated (yard,yard,street: twice as many yards); a new mix on a resumed run starts a stage', (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .option('--lr <rate>', 'peak learning rate', (v: string) => {
    const n = Number(v);
    if (!(n > 0 && n < 1)) throw new InvalidArgumentError(`"${v}" is not a learning rate between 0 and 1`);
    return n;
  })
  .option('--init-from <checkpoint>', 'a new run starts from the weights of this checkpoint that fit its architecture (a warm start, recorded in the recipe)')
  .option('--real <videos>', 'real clips to mix in, comma separated: labelled by the teacher (yolox-nano at 640, cached) and recorded in the recipe with their sha256', (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .option('--real-share <share>', 'share of each batch that is real footage (default 0.5)', Number)
  .option('--mosaic <share>', "share of a new run's real samples that are mosaics of smaller samples (2x2 unless --mosaic-grid; default 0)", Number)
  .option('--input <WxH>', 'a new run\'s input size, each a multiple of 8 (default 160x120)', inputSize)
  .option('--size-radius <share>', "a new run's positive cells: within this share of a box's shorter side from its centre, when more than 1.5 cells", (v: string) => {
    const n = Number(v);
    if (!(n > 0 && n <= 0.5)) throw new InvalidArgumentError(`"${v}" is not a share between 0 and 0.5`);
    return n;
  })
  .option('--context <channels>', "a new run's context stage at stride 16 (a wider view per cell; the input a multiple of 16)", positiveInt)
  .option('--captions <share>', "share of a new run's real samples with on-screen-display captions painted on, as background (default 0)", Number)
  .option('--zoom <lo,hi>', "a new run's zoom range for real samples (default 0.7,1.8; below 1 the frame smaller inside padding)", (v: string) => {
    const [lo, hi, ...rest] = v.split(',').map(Number);
    if (rest.length > 0 || !(lo! > 0 && lo! <= hi! && hi! <= 4)) throw new InvalidArgumentError(`"${v}" is not a zoom range LO,HI with 0 < LO <= HI <= 4`);
    return [lo!, hi!] as [number, number];
  })
  .option('--mosaic-grid <list>', "a new run's mosaic grids, drawn at random: 2 (2x2 of half-size samples, the default), 3, 4 ... comma separated", (v: string) => {
    const grids = v.split(',').map(Number);
    if (!validMosaicGrids(grids)) throw new InvalidArgumentError(`"${v}" is not a list of grids, each an integer from 2 to 8`);
    return grids;
  })
  .option('--cls-target <hard|iou>', "a new run's class target on positive cells: 1 (hard, focal loss) or the predicted box's IoU (iou, quality focal loss)", (v: string) => {
    if (v !== 'hard' && v !== 'iou') throw new InvalidArgumentError(`"${v}" is not a class target (hard or iou)`);
    return v;
  })
  .action(async (opts: { out: string; steps?: number; batch?: number; seed?: number; lr?: number; every?: number; keep?: number; fresh?: boolean; scenes?: string[]; initFrom?: string; real?: string[]; realShare?: number; mosaic?: number; mosaicGrid?: number[]; captions?: number; zoom?: [number, number]; input?: { width: number; height: number }; context?: number; sizeRadius?: number; clsTarget?: 'hard' | 'iou' }) => {
    const { trainCommand } = await import('./train.js');
    await trainCommand(opts);
  });

program
  .command('label')
  .description("a teacher's boxes for every frame of real footage, as truth lines (cached by the video's sha256)")
  .argument('<videos...>', 'video files')
  .option('--teacher <model>', 'the teacher (default yolox-nano)')
  .option('--teacher-size <n>', "the teacher's input size (default 640)", positiveInt)
  .option('--threshold <t>', 'a box at or above this score is a positive (default 0.5)', Number)
  .option('--ignore-below <t>', 'boxes between this and --threshold are ignore regions (default 0.25)', Number)
  .option('--student <model>', 'the model whose classes are labelled (default beats-s)')
  .option('-o, --out <file>', 'the truth file (one video only; default .beats/labels/NAME.labels.jsonl)')
  .option('--cache-dir <dir>', 'label cache (default .beats/labels)')
  .action(async (videos: string[], opts: import('./label.js').LabelCliOptions) => {
    const { labelCommand } = await import('./label.js');
    await labelCommand(videos, opts);
  });

type EvalCliOptions = import('./eval.js').EvalOptions;

function inputSize(v: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/.exec(v.trim());
  const size = m ? { width: Number(m[1]), height: Number(m[2]) } : undefined;
  if (!size || size.width % 8 || size.height % 8 || size.width < 32 || size.height < 32) throw new InvalidArgumentError(`"${v}" is not WIDTHxHEIGHT with each a multiple of 8 (32 or more)`);
  return size;
}

function seedRange(value: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(value.trim());
  const range: [number, number] | undefined = m ? [Number(m[1]), Number(m[2] ?? m[1])] : undefined;
  if (!range || range[1] < range[0] || range[1] - range[0] >= 100) throw new InvalidArgumentError(`"${value}" is not a range of seeds such as 5001-5005 (at most 100)`);
  return range;
}

program
  .command('eval')
  .description('mAP@0.5, precision, recall and F1 of a model on a stream with ground truth')
  .argument('<target>', 'pipeline YAML, video file, or synthetic: URL (which carries its own truth)')
  .option('--truth <file>', 'ground truth, JSON lines as beats synth or beats label write them; or "teacher": the --teacher model (default yolox-nano at 640) labels every frame')
  .option('--models <list>', 'score these models side by side, comma separated: NAME, a card, or NAME@SIZE (yolox-nano@416)', (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .option('--model <name>', 'model name or card (default: the pipeline\'s, else beats-s)')
  .option('--threshold <t>', 'operating threshold for precision/recall/F1', Number)
  .option('--max-frames <n>', 'evaluate only the first N frames', positiveInt)
  .option('--json', 'print the figures as one JSON object last')
  .option('--seeds <a-b>', 'synthetic: replay the scene once per seed in a..b and pool the figures', seedRange)
  .option('--adapt', 'Beats: replay the stream through the frozen model and through the model adapting, side by side')
  .option('--verdicts <n>', '--adapt: simulated operator verdicts drawn from the truth, at most N', positiveInt)
  .option('--verdict-every <s>', '--adapt: at most one verdict per S stream seconds (default 1)', positiveNumber)
  .option('--verdicts-from <s>', '--adapt: the operator starts at S stream seconds (default: the shift)', nonNegativeNumber)
  .option('--teacher <model>', 'the teacher of --truth teacher; with --adapt, on keyframes: a model, or "truth" (the ground truth as a perfect teacher)')
  .option('--teacher-size <n>', 'the teacher\'s input size (resizable models)', positiveInt)
  .option('--keyframes <n|adaptive>', '--adapt: a teacher keyframe every N frames (default 10), or adaptive')
  .option('--teacher-positives <where>', "--adapt: where the teacher's boxes are positives: centre (default), assigned or none (adapt.teacher.positives)")
  .option('--shift-at <s>', '--adapt: stream seconds of the domain shift (synthetic URLs carry it)', nonNegativeNumber)
  .option('--window <s>', '--adapt: windowed F1 window, seconds (default 10)', positiveNumber)
  .option('--speed <x>', '--adapt: replay at X times real time (default 1; 0: unpaced)', nonNegativeNumber)
  .option('--plot <file>', '--adapt: the windowed F1 plot (PNG); --specialize: the test F1 by stream minute')
  .option('--layers <head|all>', '--adapt: what adapts: the class head (default) or the whole Beats CNN (adapt.layers)')
  .option('--specialize', 'a video: the Beats CNN (--model) specialised whole on the first 70 % looped, from --teacher (default yolox-nano@416) keyframes; scored on the last 30 % against yolox-nano@640 beside --models')
  .option('--minutes <m>', '--specialize: stream minutes the site loops (default 10)', positiveNumber)
  .option('--train-share <s>', '--specialize: share of one core training gets at real time (default 0.5)', positiveNumber)
  .action(async (target: string, opts: EvalCliOptions) => {
    const { evalCommand } = await import('./eval.js');
    await evalCommand(target, opts);
  });

program
  .command('export')
  .description('write a trained Beats CNN checkpoint as ONNX with its model card')
  .option('--checkpoint <file>', 'training checkpoint', '.beats/train/beats-s/checkpoint.bin')
  .option('--out <dir>', 'folder for NAME.onnx and NAME.json', 'models')
  .option('--name <name>', 'model name', 'beats-s')
  .option('--input <WxH>', 'the input size of the exported network, if not the one it trained at (the same weights: it is fully convolutional)', inputSize)
  .option('--average <checkpoints>', "more checkpoints of the same run, comma separated, whose weights are averaged with --checkpoint's", (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .action(async (opts: { checkpoint: string; out: string; name: string; input?: { width: number; height: number }; average?: string[] }) => {
    const { exportCommand } = await import('./export.js');
    await exportCommand(opts);
  });

program
  .command('soak')
  .description('memory under load: N synthetic cameras unpaced (and a looped file) with adaptation and verdicts; growth per minute after forced GC, first window against last')
  .option('--cameras <n>', 'synthetic cameras, unpaced (default 4)', positiveInt)
  .option('--file <video>', 'a video file played in a loop as one more camera')
  .option('--seconds <s>', 'how long it runs (default 600)', positiveNumber)
  .option('--warmup <s>', 'seconds not measured at the start (default 60)', nonNegativeNumber)
  .option('--window <s>', 'length of the first and the last window compared (default 60)', positiveNumber)
  .option('--sample-every <s>', 'seconds between samples (default 5)', positiveNumber)
  .option('--verdict-every <s>', 'one valid verdict per camera this often, 0 for none (default 2)', nonNegativeNumber)
  .option('--max-growth <mb>', 'RSS growth per minute above which it is a leak (default 1)', positiveNumber)
  .option('--state-dir <dir>', 'keep the state here (default: a temporary folder, removed after)')
  .option('--json', 'print the report, samples included, as one JSON object')
  .action(async (opts: { cameras?: number; file?: string; seconds?: number; warmup?: number; window?: number; sampleEvery?: number; verdictEvery?: number; maxGrowth?: number; stateDir?: string; json?: boolean }) => {
    const { soakCommand } = await import('./soak.js');
    process.exitCode = await soakCommand({
      cameras: opts.cameras,
      file: opts.file,
      seconds: opts.seconds,
      warmupS: opts.warmup,
      windowS: opts.window,
      sampleS: opts.sampleEvery,
      verdictEveryS: opts.verdictEvery,
      maxRssGrowthMbPerMin: opts.maxGrowth,
      stateDir: opts.stateDir,
      json: opts.json,
    });
  });

program
  .command('doctor')
  .description('pre-flight check: ffmpeg and hardware decoders, onnxruntime providers, TensorFlow.js, disk, and with a pipeline file its broker, cameras and models')
  .argument('[file]', 'pipeline YAML to check')
  .option('--broker <url>', 'MQTT broker URL to check (overrides mqtt.url)')
  .option('--json', 'print the checks as JSON')
  .option('--timeout <s>', 'seconds to wait for the broker and for each live camera (default 8)', timerSeconds)
  .action(async (file: string | undefined, opts: { broker?: string; json?: boolean; timeout?: number }) => {
    const { doctorCommand } = await import('./doctor.js');
    process.exitCode = await doctorCommand(file, { broker: opts.broker, json: opts.json, timeoutS: opts.timeout });
  });

try {
  await program.parseAsync();
} catch (err) {
  // commander has printed the usage error (or the help, or the version: exit code 0).
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.invalid);
  // A record per line: the logger escapes newlines, and each problem of a file reads best on its own.
  const message = err instanceof BeatsError ? err.message : `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : errorMessage(err)}`;
  for (const line of message.split('\n')) log.error(line);
  process.exit(err instanceof ConfigError ? EXIT.invalid : EXIT.runtime);
}
