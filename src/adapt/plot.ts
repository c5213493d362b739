/**
 * The picture of an adaptation run: windowed F1 over stream time, frozen against Beats, with the
 * shift, the accepted updates and the recovery target marked. An SVG, rendered to PNG by sharp
 * (already a dependency for snapshots), written atomically.
 */
import sharp from 'sharp';
import { writeFileAtomic } from '../fs-atomic.js';
import type { AdaptEvalReport } from './evaluation.js';

const W = 900;
const H = 420;
const M = { left: 60, right: 20, top: 60, bottom: 50 };

export function adaptationSvg(report: AdaptEvalReport, title: string): string {
  const all = [...report.frozen.windowedF1, ...report.beats.windowedF1];
  const tMax = Math.max(1, report.stream.seconds, ...all.map(([t]) => t));
  const x = (t: number) => M.left + (t / tMax) * (W - M.left - M.right);
  const y = (f: number) => H - M.bottom - f * (H - M.top - M.bottom);
  const line = (points: Array<[number, number]>, colour: string) =>
    points.length ? `<polyline fill="none" stroke="${colour}" stroke-width="2.5" points="${points.map(([t, f]) => `${x(t).toFixed(1)},${y(f).toFixed(1)}`).join(' ')}"/>` : '';
  const parts: string[] = [];
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  for (let f = 0; f <= 1.0001; f += 0.2) {
    parts.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(f)}" y2="${y(f)}" stroke="#ddd"/>`);
    parts.push(`<text x="${M.left - 8}" y="${y(f) + 4}" font-size="12" text-anchor="end" fill="#444">${f.toFixed(1)}</text>`);
  }
  const step = tMax > 300 ? 60 : tMax > 100 ? 20 : 10;
  for (let t = 0; t <= tMax; t += step) parts.push(`<text x="${x(t)}" y="${H - M.bottom + 18}" font-size="12" text-anchor="middle" fill="#444">${t}</text>`);
  parts.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 10}" font-size="13" text-anchor="middle" fill="#222">stream time (s); windowed F1 at threshold ${report.threshold}</text>`);
  const shift = report.stream.shiftAt;
  if (shift !== null) {
    parts.push(`<line x1="${x(shift)}" x2="${x(shift)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#888" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${x(shift) + 4}" y="${M.top + 12}" font-size="12" fill="#555">shift</text>`);
    const pre = report.frozen.beforeShift?.f1;
    if (pre !== undefined) {
      parts.push(`<line x1="${x(shift)}" x2="${W - M.right}" y1="${y(0.9 * pre)}" y2="${y(0.9 * pre)}" stroke="#2a9d4b" stroke-dasharray="2 4"/>`);
      parts.push(`<text x="${W - M.right - 4}" y="${y(0.9 * pre) - 5}" font-size="11" text-anchor="end" fill="#2a9d4b">90 % of pre-shift F1</text>`);
    }
  }
  for (const t of report.updates.acceptedAt) parts.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${H - M.bottom}" y2="${H - M.bottom - 8}" stroke="#d1495b" stroke-width="1.5"/>`);
  parts.push(line(report.frozen.windowedF1, '#577590'));
  parts.push(line(report.beats.windowedF1, '#d1495b'));
  parts.push(`<text x="${M.left}" y="22" font-size="15" font-weight="bold" fill="#222">${escapeXml(title)}</text>`);
  parts.push(`<rect x="${M.left}" y="36" width="14" height="4" fill="#577590"/><text x="${M.left + 18}" y="42" font-size="12" fill="#222">frozen</text>`);
  parts.push(`<rect x="${M.left + 80}" y="36" width="14" height="4" fill="#d1495b"/><text x="${M.left + 98}" y="42" font-size="12" fill="#222">Beats (ticks at the bottom: accepted updates)</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">${parts.join('')}</svg>`;
}

export async function writeAdaptationPlot(report: AdaptEvalReport, file: string, title: string): Promise<void> {
  const png = await sharp(Buffer.from(adaptationSvg(report, title))).png().toBuffer();
  await writeFileAtomic(file, png);
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}
