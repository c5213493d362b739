/**
 * `TRAINER='{"holdoutMax":32}' node --import tsx bench/specialize-options.ts VIDEO [MINUTES]`: the
 * measurement of `beats eval VIDEO --specialize --model beats-s-real --threshold 0.3` (STUDENT=beats-m
 * for another student) with the whole-model trainer's options (src/adapt/student/trainer.ts) changed, for choosing them on a
 * validation clip; prints the test F1 by stream minute and one JSON line of the outcome.
 */
import path from 'node:path';
import { specialize } from '../src/adapt/specialize.js';
import type { StudentTrainerOptions } from '../src/adapt/student/trainer.js';
import { loadTf } from '../src/train/tf.js';

const [video, minutes] = process.argv.slice(2);
if (!video) throw new Error('usage: bench/specialize-options.ts VIDEO [MINUTES]');
const trainer = JSON.parse(process.env.TRAINER ?? '{}') as Partial<StudentTrainerOptions>;
const { tf } = await loadTf();
const report = await specialize(tf, {
  video: path.resolve(video),
  student: process.env.STUDENT ?? 'beats-s-real',
  teacher: { ref: 'yolox-nano', inputSize: 416 },
  references: [{ ref: 'yolox-nano', inputSize: 416 }],
  truthSize: 640,
  streamMinutes: Number(minutes ?? 10),
  keyframeEvery: 10,
  trainShare: 0.5,
  sitePart: 0.7,
  threshold: 0.3,
  runtime: { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '' }, threads: 0 },
  cacheDir: path.join('.beats', 'labels'),
  outDir: path.join('.beats', 'specialize-options', path.basename(video)),
  trainer,
  onProgress: (p) => console.log(`minute ${p.minute}: test F1 ${(100 * p.f1).toFixed(1)}${p.operating ? `, ${(100 * p.operating.f1).toFixed(1)} at its operating threshold ${p.operating.threshold}` : ''} (${p.accepted} accepted, ${p.rejected} rejected)`),
});
const pct = (v: number) => +(100 * v).toFixed(1);
console.log(JSON.stringify({ trainer, updates: report.updates, operating: report.operating, served: report.served.map((m) => ({ name: m.name, f1: pct(m.evaluation.f1), map50: pct(m.evaluation.map50), fps: Math.round(m.fps) })) }));
