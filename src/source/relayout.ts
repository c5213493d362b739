/**
 * One frame at another model's input: when a camera feeds two models (an adapting student and its
 * teacher, src/adapt/teacher.ts), the source delivers the larger input and the smaller is made
 * from it here, rather than decoding the camera twice (two RTSP sessions would not be in step).
 */
import type { Frame, FrameOutput } from './frame.js';
import { letterbox } from './geometry.js';

/**
 * `frame` letterboxed to `output` instead: the picture is resampled (a box filter over the source
 * pixels of each output pixel when shrinking by 2x or more, bilinear otherwise), the padding is
 * `output.padValue`, and channels are swapped when the pixel formats differ. Same camera, index and
 * times; `geometry` is the new letterbox.
 */
export function relayoutFrame(frame: Frame, output: FrameOutput): Frame {
  const from = frame.geometry;
  const to = letterbox(frame.width, frame.height, output.width, output.height, output.align);
  // The same layout (size, picture and padding placement, pad value when there is padding) and pixel order: nothing to do.
  const padded = from.scaledWidth < from.width || from.scaledHeight < from.height;
  const sameLayout = to.width === from.width && to.height === from.height && to.padX === from.padX && to.padY === from.padY && to.scaledWidth === from.scaledWidth && to.scaledHeight === from.scaledHeight;
  if (sameLayout && output.pixelFormat === frame.pixelFormat && (!padded || frame.padValue === output.padValue)) return frame;
  const src = frame.pixels;
  const out = Buffer.alloc(to.width * to.height * 3, output.padValue);
  const swap = output.pixelFormat !== frame.pixelFormat;
  // Input pixels of `frame` per output pixel, per axis.
  const rx = from.scaleX / to.scaleX;
  const ry = from.scaleY / to.scaleY;
  const box = rx >= 2 && ry >= 2;
  const kx = Math.floor(rx);
  const ky = Math.floor(ry);
  const maxX = from.padX + from.scaledWidth - 1;
  const maxY = from.padY + from.scaledHeight - 1;
  const rgb = [0, 0, 0];
  for (let y = 0; y < to.scaledHeight; y++) {
    // The output pixel's centre, in `frame`'s input pixels.
    const fy = (y + 0.5) * ry + from.padY - 0.5;
    for (let x = 0; x < to.scaledWidth; x++) {
      const fx = (x + 0.5) * rx + from.padX - 0.5;
      if (box) {
        const x0 = Math.max(from.padX, Math.round(fx - (kx - 1) / 2));
        const y0 = Math.max(from.padY, Math.round(fy - (ky - 1) / 2));
        rgb[0] = rgb[1] = rgb[2] = 0;
        let n = 0;
        for (let yy = y0; yy < y0 + ky && yy <= maxY; yy++) {
          for (let xx = x0; xx < x0 + kx && xx <= maxX; xx++) {
            const o = (yy * from.width + xx) * 3;
            rgb[0] += src[o]!;
            rgb[1] += src[o + 1]!;
            rgb[2] += src[o + 2]!;
            n++;
          }
        }
        for (let c = 0; c < 3; c++) rgb[c] = n > 0 ? rgb[c]! / n : output.padValue;
      } else {
        const cx = Math.min(maxX, Math.max(from.padX, fx));
        const cy = Math.min(maxY, Math.max(from.padY, fy));
        const x0 = Math.floor(cx);
        const y0 = Math.floor(cy);
        const x1 = Math.min(maxX, x0 + 1);
        const y1 = Math.min(maxY, y0 + 1);
        const ax = cx - x0;
        const ay = cy - y0;
        for (let c = 0; c < 3; c++) {
          const p = (xx: number, yy: number) => src[(yy * from.width + xx) * 3 + c]!;
          rgb[c] = (p(x0, y0) * (1 - ax) + p(x1, y0) * ax) * (1 - ay) + (p(x0, y1) * (1 - ax) + p(x1, y1) * ax) * ay;
        }
      }
      const o = ((y + to.padY) * to.width + x + to.padX) * 3;
      out[o] = Math.round(rgb[swap ? 2 : 0]!);
      out[o + 1] = Math.round(rgb[1]!);
      out[o + 2] = Math.round(rgb[swap ? 0 : 2]!);
    }
  }
  return { ...frame, pixels: out, pixelFormat: output.pixelFormat, geometry: to, padValue: output.padValue };
}

/** The larger of two inputs (by area): what a source feeding both models should deliver. */
export function largerOutput(a: FrameOutput, b: FrameOutput): FrameOutput {
  return b.width * b.height > a.width * a.height ? b : a;
}
