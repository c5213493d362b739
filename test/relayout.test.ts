import { take } from 'rxjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Frame, FrameOutput } from '../src/source/frame.js';
import { letterbox, type PadAlign } from '../src/source/geometry.js';
import { largerOutput, relayoutFrame } from '../src/source/relayout.js';
import { consumeFrames } from './helpers/frames.js';

// The synthetic camera (320x240) delivered at two model inputs; the smaller is then made from the
// larger by relayoutFrame and compared with what the source delivers at that size directly.
const url = 'synthetic:scene=street&seed=3&seconds=1';
const out = (width: number, height = width, o: { align?: PadAlign; pixelFormat?: FrameOutput['pixelFormat']; padValue?: number } = {}): FrameOutput => ({
  width,
  height,
  pixelFormat: o.pixelFormat ?? 'rgb24',
  padValue: o.padValue ?? 114,
  align: o.align ?? 'center',
});

/** The last frame of the 1 s stream (frame 9: cars on the street). */
async function render(output: FrameOutput, source = url): Promise<Frame> {
  const frames = await consumeFrames({ camera: 'cam', url: source, output }, (f) => f, (f$) => f$.pipe(take(10)));
  return frames.at(-1)!;
}

/** Channel c of `f` at (x, y) in its input pixels, bilinear between pixels, clamped to its picture; `swap` reads channel 2 - c. */
function sample(f: Frame, x: number, y: number, c: number): number {
  const g = f.geometry;
  const maxX = g.padX + g.scaledWidth - 1;
  const maxY = g.padY + g.scaledHeight - 1;
  const cx = Math.min(maxX, Math.max(g.padX, x));
  const cy = Math.min(maxY, Math.max(g.padY, y));
  const x0 = Math.floor(cx);
  const y0 = Math.floor(cy);
  const x1 = Math.min(maxX, x0 + 1);
  const y1 = Math.min(maxY, y0 + 1);
  const ax = cx - x0;
  const ay = cy - y0;
  const p = (xx: number, yy: number) => f.pixels[(yy * g.width + xx) * 3 + c]!;
  return (p(x0, y0) * (1 - ax) + p(x1, y0) * ax) * (1 - ay) + (p(x0, y1) * (1 - ax) + p(x1, y1) * ax) * ay;
}

/**
 * Mean absolute difference (grey levels) over the picture of `want` between `got`, read `dx`, `dy`
 * input pixels off (to see what a shifted result would score), and `want`.
 */
function meanDiff(got: Frame, want: Frame, o: { dx?: number; dy?: number; swap?: boolean } = {}): number {
  const g = want.geometry;
  let sum = 0;
  let n = 0;
  for (let y = g.padY; y < g.padY + g.scaledHeight; y++) {
    for (let x = g.padX; x < g.padX + g.scaledWidth; x++) {
      for (let c = 0; c < 3; c++) {
        sum += Math.abs(sample(got, x + (o.dx ?? 0), y + (o.dy ?? 0), o.swap ? 2 - c : c) - want.pixels[(y * g.width + x) * 3 + c]!);
        n++;
      }
    }
  }
  return sum / n;
}

/** Every byte of the rows [y0, y1) and columns [x0, x1) of a frame. */
function region(f: Frame, x0: number, x1: number, y0: number, y1: number): number[] {
  const out: number[] = [];
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) for (let c = 0; c < 3; c++) out.push(f.pixels[(y * f.geometry.width + x) * 3 + c]!);
  return out;
}
const allEqual = (values: number[], v: number) => values.length > 0 && values.every((p) => p === v);

describe('relayoutFrame', () => {
  let f640: Frame;
  let f320: Frame;
  let f416: Frame;
  let f160x120: Frame;
  beforeAll(async () => {
    [f640, f320, f416, f160x120] = await Promise.all([render(out(640)), render(out(320)), render(out(416)), render(out(160, 120))]);
  });

  it("640 -> 320: letterbox()'s geometry, padding rows of padValue, the same camera, index and times", () => {
    const r = relayoutFrame(f640, out(320));
    expect(r.geometry).toEqual(letterbox(320, 240, 320, 320, 'center'));
    expect(r.geometry).toEqual(f320.geometry);
    expect(r.geometry).toMatchObject({ width: 320, height: 320, scaledWidth: 320, scaledHeight: 240, padX: 0, padY: 40 });
    expect(r.pixels.length).toBe(320 * 320 * 3);
    expect(r.pixelFormat).toBe('rgb24');
    expect({ camera: r.camera, index: r.index, streamTime: r.streamTime, ts: r.ts, width: r.width, height: r.height }).toEqual({
      camera: f640.camera,
      index: 9,
      streamTime: f640.streamTime,
      ts: f640.ts,
      width: 320,
      height: 240,
    });
    expect(allEqual(region(r, 0, 320, 0, 40), 114)).toBe(true);
    expect(allEqual(region(r, 0, 320, 280, 320), 114)).toBe(true);
    // The picture is there: its first and last rows are not padding.
    expect(allEqual(region(r, 0, 320, 40, 41), 114)).toBe(false);
    expect(allEqual(region(r, 0, 320, 279, 280), 114)).toBe(false);
    // The frame it was made from is untouched.
    expect(f640.geometry.width).toBe(640);
    expect(f640.pixels.length).toBe(640 * 640 * 3);
  });

  it('padding is the output padValue, not the source frame padding', () => {
    const r = relayoutFrame(f640, out(320, 320, { padValue: 0 }));
    expect(allEqual(region(r, 0, 320, 0, 40), 0)).toBe(true);
    expect(allEqual(region(r, 0, 320, 280, 320), 0)).toBe(true);
    // Only the padding differs from the 114-padded result.
    const r114 = relayoutFrame(f640, out(320));
    expect(region(r, 0, 320, 40, 280)).toEqual(region(r114, 0, 320, 40, 280));
  });

  it('2x shrink: each pixel is the mean of its 2x2 source block, and close to the frame delivered at 320', () => {
    const r = relayoutFrame(f640, out(320));
    // Exactly the box filter, pixel for pixel (f640's picture starts at row 80).
    let worst = 0;
    for (let y = 0; y < 240; y++) {
      for (let x = 0; x < 320; x++) {
        for (let c = 0; c < 3; c++) {
          const s = (yy: number, xx: number) => f640.pixels[((80 + yy) * 640 + xx) * 3 + c]!;
          const mean = (s(2 * y, 2 * x) + s(2 * y, 2 * x + 1) + s(2 * y + 1, 2 * x) + s(2 * y + 1, 2 * x + 1)) / 4;
          worst = Math.max(worst, Math.abs(r.pixels[((40 + y) * 320 + x) * 3 + c]! - mean));
        }
      }
    }
    expect(worst).toBeLessThanOrEqual(0.5);
    // Against the direct render (the original 320x240 picture; the 640 frame is a bilinear 2x of it,
    // so shrinking it back blurs): measured 3.9 grey levels; read half a pixel off in x it is 5.8,
    // in y 7.9, with red and blue swapped 18.
    const diff = meanDiff(r, f320);
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(4.9);
    expect(meanDiff(r, f320, { dx: 0.5 })).toBeGreaterThan(4.9);
    expect(meanDiff(r, f320, { dy: 0.5 })).toBeGreaterThan(4.9);
    expect(meanDiff(r, f320, { swap: true })).toBeGreaterThan(4.9);
  });

  it('640 -> 416 (a factor of 1.54): bilinear, close to the frame delivered at 416', () => {
    const r = relayoutFrame(f640, out(416));
    expect(r.geometry).toEqual(letterbox(320, 240, 416, 416, 'center'));
    expect(r.geometry).toMatchObject({ scaledWidth: 416, scaledHeight: 312, padX: 0, padY: 52 });
    expect(allEqual(region(r, 0, 416, 0, 52), 114)).toBe(true);
    expect(allEqual(region(r, 0, 416, 364, 416), 114)).toBe(true);
    // Measured 1.1; half a pixel off in x 2.8, in y 4.6; swapped channels 16.5.
    const diff = meanDiff(r, f416);
    expect(diff).toBeLessThan(2);
    expect(meanDiff(r, f416, { dx: 0.5 })).toBeGreaterThan(2);
    expect(meanDiff(r, f416, { dy: 0.5 })).toBeGreaterThan(2);
    expect(meanDiff(r, f416, { swap: true })).toBeGreaterThan(2);
    // Bilinear, not nearest neighbour.
    const nearest = Buffer.alloc(r.pixels.length, 114);
    for (let y = 0; y < 312; y++) {
      for (let x = 0; x < 416; x++) {
        const sx = Math.round((x + 0.5) * (640 / 416) - 0.5);
        const sy = 80 + Math.round((y + 0.5) * (480 / 312) - 0.5);
        f640.pixels.copy(nearest, ((52 + y) * 416 + x) * 3, (sy * 640 + sx) * 3, (sy * 640 + sx) * 3 + 3);
      }
    }
    expect(r.pixels.equals(nearest)).toBe(false);
  });

  it('640x640 -> 160x120 (a model input of another shape, no padding left): close to the frame delivered at 160x120', () => {
    const r = relayoutFrame(f640, out(160, 120));
    expect(r.geometry).toEqual(letterbox(320, 240, 160, 120, 'center'));
    expect(r.geometry).toMatchObject({ scaledWidth: 160, scaledHeight: 120, padX: 0, padY: 0 });
    expect(r.pixels.length).toBe(160 * 120 * 3);
    // Measured 1.6; half a pixel off in x 3.7, in y 5.8.
    expect(meanDiff(r, f160x120)).toBeLessThan(2.6);
    expect(meanDiff(r, f160x120, { dx: 0.5 })).toBeGreaterThan(2.6);
    expect(meanDiff(r, f160x120, { dy: 0.5 })).toBeGreaterThan(2.6);
  });

  it('top-left alignment: the picture at the top, the padding below', async () => {
    const direct = await render(out(320, 320, { align: 'top-left' }));
    const r = relayoutFrame(f640, out(320, 320, { align: 'top-left' }));
    expect(r.geometry).toEqual(letterbox(320, 240, 320, 320, 'top-left'));
    expect(r.geometry.padY).toBe(0);
    expect(allEqual(region(r, 0, 320, 240, 320), 114)).toBe(true);
    expect(allEqual(region(r, 0, 320, 0, 1), 114)).toBe(false);
    expect(meanDiff(r, direct)).toBeLessThan(4.9);
    // The same picture as the centred one, 40 rows up.
    expect(region(r, 0, 320, 0, 240)).toEqual(region(relayoutFrame(f640, out(320)), 0, 320, 40, 280));
  });

  it('a portrait source: padding left and right', async () => {
    const portrait = 'synthetic:scene=street&seed=3&seconds=1&size=240x320';
    const [big, small] = await Promise.all([render(out(640), portrait), render(out(320), portrait)]);
    const r = relayoutFrame(big, out(320));
    expect(r.geometry).toEqual(letterbox(240, 320, 320, 320, 'center'));
    expect(r.geometry).toMatchObject({ scaledWidth: 240, scaledHeight: 320, padX: 40, padY: 0 });
    expect(allEqual(region(r, 0, 40, 0, 320), 114)).toBe(true);
    expect(allEqual(region(r, 280, 320, 0, 320), 114)).toBe(true);
    expect(meanDiff(r, small)).toBeLessThan(4.9);
  });

  it('rgb24 -> bgr24 swaps the channels (same size: a byte-exact swap, equal to the source delivering bgr24)', async () => {
    const bgr = relayoutFrame(f320, out(320, 320, { pixelFormat: 'bgr24' }));
    expect(bgr).not.toBe(f320);
    expect(bgr.pixelFormat).toBe('bgr24');
    expect(bgr.geometry).toEqual(f320.geometry);
    const swapped = Buffer.from(f320.pixels);
    for (let i = 0; i < swapped.length; i += 3) {
      swapped[i] = f320.pixels[i + 2]!;
      swapped[i + 2] = f320.pixels[i]!;
    }
    expect(swapped.equals(f320.pixels)).toBe(false); // the picture has colour
    expect(bgr.pixels.equals(swapped)).toBe(true);
    const direct = await render(out(320, 320, { pixelFormat: 'bgr24' }));
    expect(bgr.pixels.equals(direct.pixels)).toBe(true);
    // And back.
    expect(relayoutFrame(bgr, out(320)).pixels.equals(f320.pixels)).toBe(true);
    // While resampling, too: the bgr24 result is the rgb24 one with red and blue swapped.
    const rgb416 = relayoutFrame(f640, out(416));
    const bgr416 = relayoutFrame(f640, out(416, 416, { pixelFormat: 'bgr24' }));
    let same = true;
    for (let i = 0; i < rgb416.pixels.length && same; i += 3) {
      same = bgr416.pixels[i] === rgb416.pixels[i + 2] && bgr416.pixels[i + 1] === rgb416.pixels[i + 1] && bgr416.pixels[i + 2] === rgb416.pixels[i];
    }
    expect(same).toBe(true);
  });

  it('identity when the size and the pixel format agree: the same frame object back', () => {
    expect(relayoutFrame(f320, out(320))).toBe(f320);
    expect(relayoutFrame(f160x120, out(160, 120))).toBe(f160x120);
    expect(relayoutFrame(f640, out(640))).toBe(f640);
    // Not when the format differs, nor the size.
    expect(relayoutFrame(f320, out(320, 320, { pixelFormat: 'bgr24' }))).not.toBe(f320);
    expect(relayoutFrame(f320, out(320, 240))).not.toBe(f320);
  });

  // A model of the same input size but another letterbox (yolox-nano's card pads top-left, beats-s's
  // centre) gets the frame laid out its way, with its pad value.
  it('same size, another alignment: laid out as the output says', () => {
    const r = relayoutFrame(f320, out(320, 320, { align: 'top-left' }));
    expect(r.geometry).toEqual(letterbox(320, 240, 320, 320, 'top-left'));
  });

  it('same size, another pad value: padded with the output padValue', () => {
    const r = relayoutFrame(f320, out(320, 320, { padValue: 0 }));
    expect(allEqual(region(r, 0, 320, 0, 40), 0)).toBe(true);
  });

  it('upscaling (320 -> 640) is bilinear and close to the frame delivered at 640', () => {
    const r = relayoutFrame(f320, out(640));
    expect(r.geometry).toEqual(f640.geometry);
    expect(allEqual(region(r, 0, 640, 0, 80), 114)).toBe(true);
    // Measured 0.03: the synthetic camera's own 2x is bilinear too.
    expect(meanDiff(r, f640)).toBeLessThan(0.5);
  });
});

describe('largerOutput', () => {
  it('the larger input by area, the first on a tie', () => {
    const a = out(320);
    const b = out(640);
    const c = out(160, 120);
    expect(largerOutput(a, b)).toBe(b);
    expect(largerOutput(b, a)).toBe(b);
    expect(largerOutput(c, a)).toBe(a);
    // 400x256 (102400 px) against 320x320 (102400 px): a tie keeps the first.
    const wide = out(400, 256);
    expect(largerOutput(wide, a)).toBe(wide);
    expect(largerOutput(a, wide)).toBe(a);
    // Area, not width: 640x100 is smaller than 320x320.
    expect(largerOutput(out(640, 100), a)).toBe(a);
  });
});
