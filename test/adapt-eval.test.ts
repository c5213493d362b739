import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateAdaptation, type AdaptEvalReport, type ArmReport } from '../src/adapt/evaluation.js';
import { adaptationSvg, writeAdaptationPlot } from '../src/adapt/plot.js';
import { evaluateAdaptStream } from '../src/cli/eval.js';
import { cameraSchema } from '../src/config/schema.js';
import { MIN_VISIBLE } from '../src/train/beats-train.js';
import type { TruthFrame } from '../src/model/evaluate.js';
import type { ProviderSettings } from '../src/model/providers.js';
import type { Frame } from '../src/source/frame.js';
import { syntheticTruth } from '../src/source/synthetic-source.js';
import { spawnBeats } from './helpers/brokers.js';

// `beats eval --adapt` for real: beats-s on 16 s of the synthetic street, shop mannequins (decoys:
// person-shaped false alarms) from 8 s on; the engine's worker trains between frames (speed 0).
const url = 'synthetic:scene=street&seed=5001&seconds=16&shift=decoys&shift_at=8';
const cpu: ProviderSettings = { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '/nonexistent/trt-cache' }, threads: 1 };
const truthOf = (frame: Frame): TruthFrame | undefined => {
  const boxes = syntheticTruth.get(frame);
  return boxes ? { frame: frame.index, boxes: boxes.map((b) => ({ label: b.label, box: b.box, ignore: b.visible < MIN_VISIBLE })) } : undefined;
};

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'beats-adapt-eval-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const isCount = (n: number) => Number.isInteger(n) && n >= 0;

function expectWindowed(arm: ArmReport, windowS: number, end: number) {
  const points = arm.windowedF1;
  expect(points.length).toBeGreaterThan(0);
  for (const [t, f1] of points) {
    expect(f1).toBeGreaterThanOrEqual(0);
    expect(f1).toBeLessThanOrEqual(1);
    expect(t).toBeGreaterThanOrEqual(windowS);
    expect(t).toBeLessThanOrEqual(end + 1e-9);
  }
  for (let i = 1; i < points.length; i++) expect(points[i]![0]).toBeGreaterThan(points[i - 1]![0]);
}

describe('evaluateAdaptation: frozen and adapting on a stream with a shift, simulated verdicts', () => {
  let report: AdaptEvalReport;
  beforeAll(async () => {
    const camera = cameraSchema.parse({ name: 'eval', source: { url }, model: 'beats-s', detect: { threshold: 0.35 } });
    report = await evaluateAdaptation({ url, frames: 160, camera, runtime: cpu, truthOf, shiftAt: 8, verdicts: { budget: 6, everyS: 1 }, windowS: 4, speed: 0 });
  });

  it('replays the whole stream and says what supervised it', () => {
    expect(report.stream).toEqual({ url, frames: 160, seconds: 16, shiftAt: 8 });
    expect(report.model).toBe('beats-s');
    expect(report.threshold).toBe(0.35);
    // The operator looks from the shift on (the default).
    expect(report.supervision).toEqual({ verdicts: { budget: 6, everyS: 1, from: 8 }, teacher: null, keyframePolicy: null, teacherPositives: null });
    expect(report.labels.teacherKeyframes).toBe(0);
    expect(report.labels.teacherShare).toBe(0);
  });

  it('verdicts: within the budget, the kinds add up, some were given (the decoys are false alarms)', () => {
    const { verdicts, verdictsByKind } = report.labels;
    expect(verdicts).toBeGreaterThan(0);
    expect(verdicts).toBeLessThanOrEqual(6);
    expect(Object.values(verdictsByKind).reduce((a, b) => a + b, 0)).toBe(verdicts);
    expect(verdictsByKind.correct).toBe(0); // the operator flags errors only
    expect(verdictsByKind.false_positive).toBeGreaterThan(0);
    expect(report.labels.cellsTrained).toBeGreaterThan(0);
  });

  it('nothing supervised before the shift: Beats is the frozen model there, and updates come after it', () => {
    expect(report.frozen.beforeShift).not.toBeNull();
    expect(report.beats.beforeShift).not.toBeNull();
    expect(report.frozen.afterShift).not.toBeNull();
    expect(report.beats.afterShift).not.toBeNull();
    expect(report.beats.beforeShift).toEqual(report.frozen.beforeShift);
    for (const t of report.updates.acceptedAt) expect(t).toBeGreaterThanOrEqual(8);
    // The frozen model does well before the shift: the decoys are what it gets wrong.
    expect(report.frozen.beforeShift!.f1).toBeGreaterThan(report.frozen.afterShift!.f1);
    expect(report.frozen.afterShift!.precision).toBeLessThan(report.frozen.beforeShift!.precision);
  });

  it('windowed F1: points in [0, 1] at increasing times, the same times for both', () => {
    expectWindowed(report.frozen, 4, 16);
    expectWindowed(report.beats, 4, 16);
    expect(report.beats.windowedF1.map(([t]) => t)).toEqual(report.frozen.windowedF1.map(([t]) => t));
    for (const arm of [report.frozen, report.beats]) {
      for (const v of [arm.secondsToRecover, arm.secondsToPlateau]) if (v !== null) expect(v).toBeGreaterThanOrEqual(0);
    }
  });

  it('forgetting: the first domain replayed with the final head, against the base head', () => {
    const f = report.forgetting!;
    expect(f).not.toBeNull();
    expect(f.frozenMap50).toBe(report.frozen.beforeShift!.map50);
    expect(f.beatsMap50).toBeGreaterThanOrEqual(0);
    expect(f.beatsMap50).toBeLessThanOrEqual(1);
    expect(f.dropPoints).toBeCloseTo(100 * (f.frozenMap50 - f.beatsMap50), 9);
  });

  it('updates and speed', () => {
    const u = report.updates;
    expect(isCount(u.accepted)).toBe(true);
    expect(isCount(u.rejected)).toBe(true);
    expect(isCount(u.rolledBack)).toBe(true);
    expect(u.accepted + u.rejected).toBeGreaterThan(0);
    expect(u.acceptedAt).toHaveLength(u.accepted);
    expect(Object.values(u.rejectedBy).reduce((a, b) => a + b, 0)).toBe(u.rejected);
    if (u.msMean !== null) expect(u.msMax!).toBeGreaterThanOrEqual(u.msMean);
    expect(report.frozen.fps).toBeGreaterThan(0);
    expect(report.beats.fps).toBeGreaterThan(0);
    expect(report.fpsRatio).toBeGreaterThan(0);
    expect(report.fpsRatio).toBeCloseTo(report.beats.fps / report.frozen.fps, 9);
    expect(report.peakRssMb).toBeGreaterThan(0);
  });

  it('writeAdaptationPlot: a 900x420 PNG with both curves drawn', async () => {
    const file = path.join(tmp, 'adapt.png');
    // The stream's own curves may cross and cover each other: two apart, at the stream's times.
    const level = (curve: Array<[number, number]>, f1: number) => curve.map(([t]): [number, number] => [t, f1]);
    const apart = { ...report, frozen: { ...report.frozen, windowedF1: level(report.frozen.windowedF1, 0.3) }, beats: { ...report.beats, windowedF1: level(report.beats.windowedF1, 0.8) } };
    await writeAdaptationPlot(apart, file, 'beats-s on the street');
    expect(await sharp(file).metadata()).toMatchObject({ format: 'png', width: 900, height: 420 });
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const near = (rgb: [number, number, number]) => {
      let n = 0;
      for (let i = 0; i < info.width * info.height * 3; i += 3) if (Math.abs(data[i]! - rgb[0]) < 25 && Math.abs(data[i + 1]! - rgb[1]) < 25 && Math.abs(data[i + 2]! - rgb[2]) < 25) n++;
      return n;
    };
    // Beats in #d1495b, frozen in #577590: each a polyline across most of the 820 px plot width.
    expect(near([0xd1, 0x49, 0x5b])).toBeGreaterThan(400);
    expect(near([0x57, 0x75, 0x90])).toBeGreaterThan(400);
  });

  it('adaptationSvg: the shift marked where it is, the accepted updates ticked, the title escaped', () => {
    const svg = adaptationSvg(report, 'beats-s <street> & "decoys"');
    // x = 60 + t / 16 * 820: the shift at 8 s is at 470.
    expect(svg).toContain('<line x1="470" x2="470"');
    expect(svg).toMatch(/>shift<\/text>/);
    expect(svg).toContain('90 % of pre-shift F1');
    expect(svg.match(/stroke="#d1495b" stroke-width="1.5"/g) ?? []).toHaveLength(report.updates.acceptedAt.length);
    expect(svg).toContain('beats-s &lt;street&gt; &amp; &quot;decoys&quot;');
    expect(svg).not.toContain('<street>');
    const noShift = adaptationSvg({ ...report, stream: { ...report.stream, shiftAt: null } }, 'x');
    expect(noShift).not.toMatch(/>shift<\/text>/);
    expect(noShift).not.toContain('pre-shift');
  });
});

describe('evaluateAdaptStream (beats eval --adapt)', () => {
  it('--layers all: the whole Beats CNN adapts from the keyframes; the report counts them, and a wrong value is named', async () => {
    const report = await evaluateAdaptStream(url, { adapt: true, teacher: 'truth', keyframes: '5', speed: 0, window: 4, layers: 'all' });
    expect(report.stream.frames).toBe(160);
    expect(report.labels.teacherKeyframes).toBeGreaterThanOrEqual(24);
    expect(report.labels.teacherShare).toBeLessThanOrEqual(0.2);
    // Whole frames go to the worker, not head cells.
    expect(report.labels.cellsTrained).toBe(0);
    expect(report.forgetting).not.toBeNull();
    await expect(evaluateAdaptStream(url, { adapt: true, teacher: 'truth', speed: 0, layers: 'body' })).rejects.toThrow(/--layers: "body"/);
  });

  it('--teacher truth --keyframes 10: a keyframe every 10 frames, a tenth of the frames at most', async () => {
    const report = await evaluateAdaptStream(url, { adapt: true, teacher: 'truth', keyframes: '10', speed: 0, window: 4 });
    expect(report.stream.frames).toBe(160);
    expect(report.stream.shiftAt).toBe(8);
    expect(report.supervision.teacher).toBe('ground truth');
    expect(report.supervision.keyframePolicy).toBe('every 10 frames');
    expect(report.supervision.teacherPositives).toBe('centre');
    expect(report.supervision.verdicts).toBeNull();
    expect(report.labels.verdicts).toBe(0);
    expect(report.labels.teacherKeyframes).toBeGreaterThanOrEqual(12);
    expect(report.labels.teacherKeyframes).toBeLessThanOrEqual(16);
    expect(report.labels.teacherShare).toBeLessThanOrEqual(0.1);
    expect(report.labels.teacherShare).toBeCloseTo(report.labels.teacherKeyframes / 160, 12);
    // Whole keyframes: many more cells than a handful of verdicts.
    expect(report.labels.cellsTrained).toBeGreaterThan(1000);
    expectWindowed(report.beats, 4, 16);
  });

  it('--teacher-positives: assigned > centre > none in cells, the same keyframes; a wrong value is named', async () => {
    const run = (teacherPositives: string) => evaluateAdaptStream(url, { adapt: true, teacher: 'truth', keyframes: '10', speed: 0, window: 4, teacherPositives });
    const assigned = await run('assigned');
    const centre = await run('centre');
    const none = await run('none');
    expect([assigned, centre, none].map((r) => r.supervision.teacherPositives)).toEqual(['assigned', 'centre', 'none']);
    expect(centre.labels.teacherKeyframes).toBe(assigned.labels.teacherKeyframes);
    expect(none.labels.teacherKeyframes).toBe(assigned.labels.teacherKeyframes);
    // Fewer of a box's cells are targets (the stream has objects on every keyframe).
    expect(centre.labels.cellsTrained).toBeLessThan(assigned.labels.cellsTrained);
    expect(none.labels.cellsTrained).toBeLessThan(centre.labels.cellsTrained);
    expect(none.labels.cellsTrained).toBeGreaterThan(1000);
    await expect(run('some')).rejects.toThrow(/--teacher-positives: "some"/);
  });

  it('without --verdicts or --teacher it says which supervision to give', async () => {
    await expect(evaluateAdaptStream(url, { adapt: true, speed: 0 })).rejects.toThrow(/--verdicts.*--teacher/);
  });

  it('--keyframes that is neither a number nor adaptive is named', async () => {
    await expect(evaluateAdaptStream(url, { adapt: true, teacher: 'truth', keyframes: 'abc', speed: 0 })).rejects.toThrow(/--keyframes: "abc"/);
    await expect(evaluateAdaptStream(url, { adapt: true, teacher: 'truth', keyframes: '0', speed: 0 })).rejects.toThrow(/--keyframes: "0"/);
  });
});

describe('beats eval --adapt (the CLI)', () => {
  it('exits 0, prints the report as JSON last, and writes the plot', async () => {
    const plot = path.join(tmp, 'cli', 'p.png');
    const p = spawnBeats(['eval', 'synthetic:scene=street&seed=5001&seconds=12&shift=decoys&shift_at=6', '--adapt', '--verdicts', '4', '--speed', '0', '--json', '--plot', plot]);
    const exit = await p.exit;
    expect(exit.code, p.stderr()).toBe(0);
    const lines = p.stdout().trim().split('\n');
    const report = JSON.parse(lines.at(-1)!) as AdaptEvalReport;
    expect(report.stream.frames).toBe(120);
    expect(report.stream.shiftAt).toBe(6);
    expect(report.frozen.overall.map50).toBeGreaterThan(0);
    expect(report.beats.overall.map50).toBeGreaterThan(0);
    expect(report.labels.verdicts).toBeLessThanOrEqual(4);
    // The table before it names the plot.
    expect(p.stdout()).toContain(`plot: ${plot}`);
    expect(p.stdout()).toMatch(/^mAP@0\.5 overall +[\d.]+ +[\d.]+$/m);
    expect(existsSync(plot)).toBe(true);
    expect(await sharp(plot).metadata()).toMatchObject({ format: 'png', width: 900, height: 420 });
  });

  it('refuses a pace, a window or a verdict spacing that is not a number, naming the option', async () => {
    for (const [option, value] of [['--speed', 'abc'], ['--window', '0'], ['--verdict-every', '-1']] as const) {
      const p = spawnBeats(['eval', 'synthetic:scene=street&seconds=2', '--adapt', '--verdicts', '2', option, value]);
      const exit = await p.exit;
      expect(exit.code).not.toBe(0);
      expect(p.stderr()).toContain(`option '${option} <`);
      expect(p.stderr()).toContain(`'${value}' is invalid`);
    }
  });
});
