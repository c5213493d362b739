/** `beats eval VIDEO --specialize`: prints and plots src/adapt/specialize.ts's measurement. */
import path from 'node:path';
import { specialize, type SpecializeReport } from '../adapt/specialize.js';
import { writeSpecializePlot } from '../adapt/student/plot.js';
import { BeatsError } from '../errors.js';
import { logger } from '../log.js';
import { parseModelUnderTest } from '../model/compare.js';
import { loadTf } from '../train/tf.js';

/** The `beats eval` options --specialize reads (a part of eval.ts's EvalOptions). */
export interface SpecializeCliOptions {
  model?: string;
  teacher?: string;
  teacherSize?: number;
  models?: string[];
  keyframes?: string;
  threshold?: number;
  minutes?: number;
  trainShare?: number;
  plot?: string;
  json?: boolean;
}

const log = logger('eval');

function keyframeEvery(options: SpecializeCliOptions): number {
  const n = Number(options.keyframes ?? '10');
  if (!Number.isInteger(n) || n < 1) throw new BeatsError(`--keyframes: "${options.keyframes}" must be a number of frames with --specialize`);
  return n;
}

export async function evalSpecializeCommand(video: string, options: SpecializeCliOptions): Promise<SpecializeReport> {
  if (!video || video.endsWith('.yaml') || video.endsWith('.yml') || video.startsWith('synthetic:')) throw new BeatsError(`--specialize takes a video file (${video} is not one): synthetic shifts use --adapt`);
  const { tf } = await loadTf();
  const teacher = { ref: options.teacher ?? 'yolox-nano', inputSize: options.teacherSize ?? 416 };
  const report = await specialize(tf, {
    video: path.resolve(video),
    student: options.model ?? 'beats-s',
    teacher,
    references: (options.models ?? ['yolox-nano@320', 'yolox-nano@416']).map(parseModelUnderTest),
    truthSize: 640,
    streamMinutes: options.minutes ?? 10,
    keyframeEvery: keyframeEvery(options),
    trainShare: options.trainShare ?? 0.5,
    sitePart: 0.7,
    threshold: options.threshold ?? 0.35,
    runtime: { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '.beats/trt-cache' }, threads: 0 },
    cacheDir: '.beats/labels',
    outDir: path.join('.beats', 'specialize', path.basename(video).replace(/\.[^.]+$/, '')),
    onProgress: (p) => log.info(`stream minute ${p.minute}: test F1 ${(100 * p.f1).toFixed(1)}${p.operating ? `, ${(100 * p.operating.f1).toFixed(1)} at ${p.operating.threshold}` : ''} (${p.accepted} updates accepted, ${p.rejected} rejected)`),
  });
  printReport(report, teacher);
  if (options.plot) {
    const reference = report.served.find((m) => m.name === `${teacher.ref}@${teacher.inputSize}`);
    await writeSpecializePlot(report, options.plot, `${path.basename(video)}: Beats CNN specialised from ${teacher.ref}@${teacher.inputSize}`, reference ? { name: reference.name, f1: 0.9 * reference.evaluation.f1 } : undefined);
    log.info(`plot: ${options.plot}`);
  }
  if (options.json) process.stdout.write(JSON.stringify(report) + '\n');
  return report;
}

function printReport(r: SpecializeReport, teacher: { ref: string; inputSize: number }): void {
  const pct = (v: number) => (100 * v).toFixed(1);
  const out = process.stdout;
  out.write(`${path.basename(r.video)}: site = first ${r.frames.site} frames looped for ${r.stream.minutes} stream minutes; test = last ${r.frames.test} frames (never trained on)\n`);
  out.write(`teacher ${teacher.ref}@${teacher.inputSize} on ${r.stream.keyframes} keyframes (${pct(r.stream.keyframeShare)} % of stream frames, ${r.stream.distinctLabelled} distinct frames); training share ${pct(r.stream.trainShare)} % of one core\n`);
  out.write(`updates: ${r.updates.accepted} accepted, ${r.updates.rejected} rejected ${JSON.stringify(r.updates.byReason)}, ${r.updates.meanMs.toFixed(0)} ms each (${r.updates.meanStepsMs.toFixed(0)} ms of it optimizer steps; ${r.updates.meanCpuMs.toFixed(0)} ms of CPU)\n`);
  out.write(`student test F1 by stream minute, at ${r.threshold}: ${r.curve.map((p) => `${p.minute}:${pct(p.f1)}`).join('  ')}\n`);
  out.write(`  at the threshold the held-out keyframes chose then: ${r.curve.map((p) => `${p.minute}:${p.operating ? `${pct(p.operating.f1)}@${p.operating.threshold}` : '-'}`).join('  ')}\n`);
  if (r.operating) out.write(`specialised model's operating threshold: ${r.operating.threshold} (its best F1, ${pct(r.operating.heldOutF1)}, on ${r.operating.frames} held-out keyframes; set detect.threshold to it)\n`);
  out.write(`served on the test part against yolox-nano@640's labels (F1 at each model's threshold; best F1: at the test part's best threshold, for reference):\nmodel                        input      mAP@0.5    F1  thresh  best F1     fps\n`);
  for (const m of r.served) {
    const e = m.evaluation;
    out.write(`${(m.name.length > 28 ? '…' + m.name.slice(-27) : m.name).padEnd(28)} ${m.input.padEnd(9)} ${pct(e.map50).padStart(7)} ${pct(e.f1).padStart(6)} ${String(e.threshold).padStart(7)} ${pct(e.best.f1).padStart(8)} ${m.fps.toFixed(0).padStart(7)}\n`);
  }
  const reference = r.served.find((m) => m.name === `${teacher.ref}@${teacher.inputSize}`);
  const site = r.served[0]!;
  if (reference) {
    const ratio = (f1: number) => (site.evaluation.f1 / Math.max(1e-9, f1)).toFixed(2);
    out.write(`specialised / ${reference.name}: F1 ${ratio(reference.evaluation.f1)} (target 0.9; ${ratio(reference.evaluation.best.f1)} against its best threshold on the test part), speed ${(site.fps / reference.fps).toFixed(1)}x (target 5x)\n`);
  }
}
