import { readFile } from 'node:fs/promises';
import { SingleBar } from 'cli-progress';
import { Subject, concatMap, from, lastValueFrom, map, take, tap, toArray } from 'rxjs';
import { isModelPath, loadPipelineFile } from '../config/load.js';
import { BeatsError } from '../errors.js';
import { logger } from '../log.js';
import { MIN_VISIBLE } from '../model/beats-train.js';
import { Detector } from '../model/detector.js';
import { evaluate, type Evaluation, type PredictedFrame, type TruthFrame } from '../model/evaluate.js';
import { readFrames } from '../source/frames.js';
import { sourceKind } from '../source/kind.js';
import { parseSyntheticUrl } from '../source/synthetic.js';
import { syntheticTruth } from '../source/synthetic-source.js';
import path from 'node:path';

const log = logger('eval');

export interface EvalOptions {
  truth?: string;
  model?: string;
  threshold?: number;
  maxFrames?: number;
  json?: boolean;
}

export interface EvalTarget {
  url: string;
  model: string;
  threshold: number;
  nmsIou: number;
  inputSize?: number;
}

async function resolveTarget(target: string, options: EvalOptions): Promise<EvalTarget> {
  if (/\.ya?ml$/i.test(target)) {
    const { config } = await loadPipelineFile(target);
    const camera = config.cameras[0]!;
    return { url: camera.source.url, model: options.model ?? camera.model, threshold: options.threshold ?? camera.detect.threshold, nmsIou: camera.detect.nms_iou, inputSize: camera.detect.input_size };
  }
  const url = sourceKind(target) === 'file' ? path.resolve(target) : target;
  const model = options.model ?? 'beats-s';
  return { url, model: isModelPath(model) ? path.resolve(model) : model, threshold: options.threshold ?? 0.35, nmsIou: 0.45 };
}

export async function readTruth(file: string): Promise<TruthFrame[]> {
  const text = await readFile(file, 'utf8').catch(() => {
    throw new BeatsError(`${file}: truth file not found`);
  });
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line, i) => {
      try {
        const parsed = JSON.parse(line) as TruthFrame;
        if (typeof parsed.frame !== 'number' || !Array.isArray(parsed.boxes)) throw new Error('needs "frame" and "boxes"');
        return parsed;
      } catch (err) {
        throw new BeatsError(`${file}:${i + 1}: not a truth line (${(err as Error).message})`);
      }
    });
}

/**
 * Runs a detector over a stream with ground truth and measures it. The truth comes from a JSON
 * lines file (`beats synth` writes one) or, for a `synthetic:` URL, from the synthetic camera.
 */
export async function evaluateStream(target: EvalTarget, options: EvalOptions): Promise<Evaluation> {
  const kind = sourceKind(target.url);
  const fileTruth = options.truth ? await readTruth(options.truth) : undefined;
  if (!fileTruth && kind !== 'synthetic') throw new BeatsError(`${target.url}: give --truth FILE.jsonl (only synthetic: sources carry their own)`);
  const detector = await Detector.load(target.model, { runtime: { providers: ['tensorrt', 'cuda', 'cpu'], tensorrt: { fp16: true, engineCache: '.beats/trt-cache' }, threads: 0 }, inputSize: target.inputSize });
  const synthetic = kind === 'synthetic' ? parseSyntheticUrl(target.url) : undefined;
  const total = options.maxFrames ?? fileTruth?.length ?? (synthetic?.seconds ? Math.round(synthetic.seconds * synthetic.fps) : undefined);
  if (total === undefined) throw new BeatsError(`${target.url}: give seconds= in the URL or --max-frames`);
  const bar = new SingleBar({ format: 'eval [{bar}] {value}/{total} frames {eta_formatted}', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000 });
  bar.start(total, 0);
  const demand$ = new Subject<void>();
  const truth: TruthFrame[] = [];
  try {
    const predictions = await lastValueFrom(
      readFrames({ camera: 'eval', url: target.url, output: detector.frameOutput() }, demand$).pipe(
        take(total),
        concatMap((frame) =>
          from(detector.detect(frame, { threshold: 0.01, nmsIou: target.nmsIou, maxDetections: 100 })).pipe(
            map((detections): PredictedFrame => {
              const boxes = syntheticTruth.get(frame);
              if (boxes) truth.push({ frame: frame.index, boxes: boxes.map((b) => ({ label: b.label, box: b.box, ignore: b.visible < MIN_VISIBLE })) });
              return { frame: frame.index, detections };
            }),
          ),
        ),
        tap((p) => {
          bar.update(p.frame + 1);
          demand$.next();
        }),
        toArray(),
      ),
    );
    return evaluate(fileTruth ?? truth, predictions, target.threshold);
  } finally {
    bar.stop();
    await detector.close();
  }
}

export async function evalCommand(target: string, options: EvalOptions): Promise<void> {
  const resolved = await resolveTarget(target, options);
  log.info(`${resolved.model} on ${resolved.url}`);
  const result = await evaluateStream(resolved, options);
  const pct = (v: number) => (100 * v).toFixed(1).padStart(5);
  process.stdout.write(`class        AP@0.5   prec.  recall    F1   truths\n`);
  for (const [label, c] of Object.entries(result.perClass)) {
    process.stdout.write(`${label.padEnd(10)} ${pct(c.ap50)}  ${pct(c.precision)}  ${pct(c.recall)}  ${pct(c.f1)}  ${String(c.truths).padStart(6)}\n`);
  }
  process.stdout.write(`${'all'.padEnd(10)} ${pct(result.map50)}  ${pct(result.precision)}  ${pct(result.recall)}  ${pct(result.f1)}   (mAP@0.5; P/R/F1 at ${result.threshold}, ${result.frames} frames)\n`);
  process.stdout.write(`best F1 ${pct(result.best.f1)} at threshold ${result.best.threshold} (precision ${pct(result.best.precision)}, recall ${pct(result.best.recall)})\n`);
  if (options.json) process.stdout.write(JSON.stringify(result) + '\n');
}
