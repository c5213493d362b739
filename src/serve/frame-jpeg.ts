import sharp from 'sharp';
import type { Frame } from '../source/frame.js';

/**
 * A frame as a JPEG: the picture the model saw, without the letterbox padding, at model resolution
 * (boxes, in source pixels, scale onto it by width and height). Cropping, the BGR→RGB swap and the
 * encoding all run in libvips on libuv's thread pool, not on the event loop that feeds inference.
 */
export function frameJpeg(frame: Frame, quality: number): Promise<Buffer> {
  const g = frame.geometry;
  let image = sharp(frame.pixels, { raw: { width: g.width, height: g.height, channels: 3 } }).extract({ left: g.padX, top: g.padY, width: g.scaledWidth, height: g.scaledHeight });
  if (frame.pixelFormat === 'bgr24') {
    image = image.recomb([
      [0, 0, 1],
      [0, 1, 0],
      [1, 0, 0],
    ]);
  }
  return image.jpeg({ quality }).toBuffer();
}
