/** The specialisation picture: every line's label stays readable, however close the lines are. */
import { describe, expect, it } from 'vitest';
import type { SpecializeReport } from '../src/adapt/specialize.js';
import { specializeSvg } from '../src/adapt/student/plot.js';
import type { ModelScore } from '../src/model/compare.js';

function served(name: string, f1: number): ModelScore {
  const evaluation = { frames: 10, map50: f1, precision: f1, recall: f1, f1, threshold: 0.3, best: { threshold: 0.3, precision: f1, recall: f1, f1 }, perClass: {} };
  return { name, version: '1', input: '256x192', evaluation, fps: 100, msPerFrame: 10 } as ModelScore;
}

describe('specializeSvg', () => {
  it('spreads the labels of close lines (references and the target) at least a line apart, and draws the operating curve', () => {
    const report = {
      video: 'clip.mp4',
      frames: { total: 100, site: 70, test: 30, fps: 25 },
      stream: { minutes: 2, keyframes: 10, keyframeShare: 0.1, distinctLabelled: 10, trainShare: 0.5 },
      threshold: 0.3,
      curve: [
        { minute: 0, f1: 0.3, accepted: 0, rejected: 0 },
        { minute: 1, f1: 0.5, accepted: 1, rejected: 0, operating: { threshold: 0.5, f1: 0.6 } },
      ],
      updates: { accepted: 1, rejected: 0, byReason: {}, meanMs: 1, meanStepsMs: 1, meanCpuMs: 1 },
      served: [served('site', 0.6), served('beats-m', 0.3), served('yolox-nano@320', 0.839), served('yolox-nano@416', 0.912)],
      model: 'site.json',
      operating: { threshold: 0.5, heldOutF1: 0.9, frames: 8 },
    } as SpecializeReport;
    const svg = specializeSvg(report, 'clip', { name: 'yolox-nano@416', f1: 0.9 * 0.912 });
    // Line labels sit right of the plot (x = 900 - 190 + 6).
    const labels = [...svg.matchAll(/<text x="(\d+(?:\.\d+)?)" y="(-?\d+(?:\.\d+)?)"[^>]*>([^<]*)<\/text>/g)].filter((m) => Number(m[1]) === 716).map((m) => ({ y: Number(m[2]), text: m[3]! }));
    expect(labels.map((l) => l.text)).toEqual(['yolox-nano@416 91.2', 'yolox-nano@320 83.9', '0.9 of yolox-nano@416', 'beats-m 30.0']);
    for (let i = 1; i < labels.length; i++) expect(labels[i]!.y - labels[i - 1]!.y).toBeGreaterThanOrEqual(14);
    expect(svg).toContain('at the threshold chosen on held-out keyframes (0.5 at the end)');
    expect(svg).toContain('F1 on the unseen test part at threshold 0.3</text>');
  });
});
