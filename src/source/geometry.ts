/**
 * Letterboxing done by ffmpeg's scale and pad filters, and the transform back to source pixels.
 * The scaled size is computed here exactly as ffmpeg's `force_original_aspect_ratio=decrease`
 * computes it (av_rescale rounds to nearest), so the mapping from model pixels back to source
 * pixels is exact without knowing the source size before ffmpeg starts (live cameras).
 */
export type PadAlign = 'top-left' | 'center';

export interface Letterbox {
  /** Model input size. */
  width: number;
  height: number;
  /** Size of the scaled picture inside it. */
  scaledWidth: number;
  scaledHeight: number;
  /** Top-left corner of the picture inside the input. */
  padX: number;
  padY: number;
  /** Model pixels per source pixel, per axis. */
  scaleX: number;
  scaleY: number;
}

export function letterbox(srcWidth: number, srcHeight: number, dstWidth: number, dstHeight: number, align: PadAlign): Letterbox {
  const scaledWidth = Math.min(dstWidth, Math.round((dstHeight * srcWidth) / srcHeight));
  const scaledHeight = Math.min(dstHeight, Math.round((dstWidth * srcHeight) / srcWidth));
  const padX = align === 'center' ? Math.floor((dstWidth - scaledWidth) / 2) : 0;
  const padY = align === 'center' ? Math.floor((dstHeight - scaledHeight) / 2) : 0;
  return { width: dstWidth, height: dstHeight, scaledWidth, scaledHeight, padX, padY, scaleX: scaledWidth / srcWidth, scaleY: scaledHeight / srcHeight };
}

/** A box [x1, y1, x2, y2] in source pixels to model-input pixels (not clipped: the letterbox holds the whole frame). */
export function toInputPixels(box: readonly number[], lb: Letterbox): [number, number, number, number] {
  return [box[0]! * lb.scaleX + lb.padX, box[1]! * lb.scaleY + lb.padY, box[2]! * lb.scaleX + lb.padX, box[3]! * lb.scaleY + lb.padY];
}

/** A box [x1, y1, x2, y2] in model-input pixels to source pixels, clipped to the source frame. */
export function toSourcePixels(box: readonly [number, number, number, number], lb: Letterbox, srcWidth: number, srcHeight: number): [number, number, number, number] {
  const clip = (v: number, max: number) => Math.max(0, Math.min(max, v));
  return [
    clip((box[0] - lb.padX) / lb.scaleX, srcWidth),
    clip((box[1] - lb.padY) / lb.scaleY, srcHeight),
    clip((box[2] - lb.padX) / lb.scaleX, srcWidth),
    clip((box[3] - lb.padY) / lb.scaleY, srcHeight),
  ];
}
