/**
 * The picture of a specialisation run: the student's F1 on the clip's unseen test part against
 * stream minutes, with the references served on the same frames (YOLOX-Nano at its sizes) as
 * horizontal lines and the target (0.9 of the teacher-sized reference) dashed. SVG to PNG by sharp.
 */
import sharp from 'sharp';
import { writeFileAtomic } from '../../fs-atomic.js';
import type { SpecializeReport } from '../specialize.js';

const W = 900;
const H = 420;
const M = { left: 60, right: 190, top: 50, bottom: 50 };
const COLOURS = ['#2a9d8f', '#e9c46a', '#577590', '#8d99ae'];

export function specializeSvg(report: SpecializeReport, title: string, target?: { name: string; f1: number }): string {
  const tMax = Math.max(1, report.stream.minutes);
  const x = (t: number) => M.left + (t / tMax) * (W - M.left - M.right);
  const y = (f: number) => H - M.bottom - f * (H - M.top - M.bottom);
  const parts: string[] = [`<rect width="${W}" height="${H}" fill="white"/>`];
  for (let f = 0; f <= 1.0001; f += 0.2) {
    parts.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(f)}" y2="${y(f)}" stroke="#ddd"/>`);
    parts.push(`<text x="${M.left - 8}" y="${y(f) + 4}" font-size="12" text-anchor="end" fill="#444">${f.toFixed(1)}</text>`);
  }
  for (let t = 0; t <= tMax; t += Math.max(1, Math.round(tMax / 10))) parts.push(`<text x="${x(t)}" y="${H - M.bottom + 18}" font-size="12" text-anchor="middle" fill="#444">${t}</text>`);
  parts.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 10}" font-size="13" text-anchor="middle" fill="#222">stream minutes; F1 on the unseen test part at threshold ${report.threshold}</text>`);
  parts.push(`<text x="${M.left}" y="24" font-size="15" fill="#222">${escapeXml(title)}</text>`);
  // Labels of lines close together (the references and the target) are spread apart, best on top,
  // so that none hides another.
  const lines = report.served.slice(1).map((m, i) => ({ f1: m.evaluation.f1, text: `${m.name} ${(100 * m.evaluation.f1).toFixed(1)}`, colour: COLOURS[i % COLOURS.length]!, dash: '' }));
  if (target) lines.push({ f1: target.f1, text: `0.9 of ${target.name}`, colour: '#d1495b', dash: ' stroke-dasharray="6 4"' });
  let labelY = -Infinity;
  for (const line of lines.sort((a, b) => b.f1 - a.f1)) {
    const at = Math.max(y(line.f1) + 4, labelY + 14);
    labelY = at;
    parts.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(line.f1)}" y2="${y(line.f1)}" stroke="${line.colour}" stroke-width="1.5"${line.dash}/>`);
    parts.push(`<text x="${W - M.right + 6}" y="${at}" font-size="12" fill="${line.colour}">${escapeXml(line.text)}</text>`);
  }
  const points = report.curve.map((p) => `${x(p.minute).toFixed(1)},${y(p.f1).toFixed(1)}`).join(' ');
  parts.push(`<polyline fill="none" stroke="#d1495b" stroke-width="2.5" points="${points}"/>`);
  // The same weights at the threshold the held-out keyframes chose at that minute.
  const operating = report.curve.filter((p) => p.operating).map((p) => `${x(p.minute).toFixed(1)},${y(p.operating!.f1).toFixed(1)}`).join(' ');
  if (operating) {
    parts.push(`<polyline fill="none" stroke="#9b2226" stroke-width="2" stroke-dasharray="3 3" points="${operating}"/>`);
    parts.push(`<text x="${M.left + 10}" y="${M.top + 10}" font-size="12" fill="#9b2226">dotted: at the threshold chosen on held-out keyframes${report.operating ? ` (${report.operating.threshold} at the end)` : ''}</text>`);
  }
  parts.push(`<text x="${M.left + 10}" y="${M.top - 6}" font-size="12" fill="#d1495b">student being specialised (input pixels; ${report.updates.accepted} updates accepted, ${report.updates.rejected} rejected)</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">${parts.join('')}</svg>`;
}

export async function writeSpecializePlot(report: SpecializeReport, file: string, title: string, target?: { name: string; f1: number }): Promise<void> {
  await writeFileAtomic(file, await sharp(Buffer.from(specializeSvg(report, title, target))).png().toBuffer());
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}
