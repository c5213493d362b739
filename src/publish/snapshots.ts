import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../fs-atomic.js';
import { ensurePrivateDir, privateFile } from '../fs-private.js';
import { logger } from '../log.js';
import type { Frame } from '../source/frame.js';

export type Box = readonly [number, number, number, number];

export interface SnapshotImages {
  /** The picture with the object's box drawn. */
  full: Buffer;
  /** The object with a margin around it. */
  crop: Buffer;
}

/**
 * JPEGs of an event's best frame. The frame is the letterboxed picture the model saw (ffmpeg scaled
 * it), so snapshots are at model resolution, without the padding; boxes come in source pixels.
 * Encoding is libvips' (sharp), on libuv's thread pool rather than the event loop that feeds
 * inference (docs/benchmarks.md, "Small choices").
 */
export async function renderSnapshot(frame: Frame, box: Box, quality: number): Promise<SnapshotImages> {
  const g = frame.geometry;
  const width = g.scaledWidth;
  const height = g.scaledHeight;
  const rgb = Buffer.alloc(width * height * 3);
  const [r, b] = frame.pixelFormat === 'rgb24' ? [0, 2] : [2, 0];
  for (let y = 0; y < height; y++) {
    let src = ((y + g.padY) * g.width + g.padX) * 3;
    let dst = y * width * 3;
    for (let x = 0; x < width; x++, src += 3, dst += 3) {
      rgb[dst] = frame.pixels[src + r]!;
      rgb[dst + 1] = frame.pixels[src + 1]!;
      rgb[dst + 2] = frame.pixels[src + b]!;
    }
  }
  // The box in picture pixels.
  const x1 = Math.max(0, Math.min(width - 1, Math.round(box[0] * g.scaleX)));
  const y1 = Math.max(0, Math.min(height - 1, Math.round(box[1] * g.scaleY)));
  const x2 = Math.max(x1, Math.min(width - 1, Math.round(box[2] * g.scaleX)));
  const y2 = Math.max(y1, Math.min(height - 1, Math.round(box[3] * g.scaleY)));
  const margin = Math.round(Math.max(x2 - x1, y2 - y1) * 0.25);
  const left = Math.max(0, x1 - margin);
  const top = Math.max(0, y1 - margin);
  const crop = {
    left,
    top,
    width: Math.min(width, x2 + margin + 1) - left,
    height: Math.min(height, y2 + margin + 1) - top,
  };
  const raw = { raw: { width, height, channels: 3 as const } };
  const cropJpeg = sharp(rgb, raw).extract(crop).jpeg({ quality }).toBuffer();
  const boxed = Buffer.from(rgb);
  drawRect(boxed, width, height, x1, y1, x2, y2, Math.max(2, Math.round(width / 320)));
  const [full, cropped] = await Promise.all([sharp(boxed, raw).jpeg({ quality }).toBuffer(), cropJpeg]);
  return { full, crop: cropped };
}

function drawRect(rgb: Buffer, width: number, height: number, x1: number, y1: number, x2: number, y2: number, thickness: number): void {
  const put = (x: number, y: number) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const o = (y * width + x) * 3;
    rgb[o] = 255;
    rgb[o + 1] = 64;
    rgb[o + 2] = 32;
  };
  for (let t = 0; t < thickness; t++) {
    for (let x = x1; x <= x2; x++) {
      put(x, y1 + t);
      put(x, y2 - t);
    }
    for (let y = y1; y <= y2; y++) {
      put(x1 + t, y);
      put(x2 - t, y);
    }
  }
}

export interface SnapshotStoreOptions {
  dir: string;
  maxTotalBytes: number;
}

/** Snapshots on disk (`<camera>/<event id>.jpg` and `-crop.jpg`), oldest deleted past a total size. */
export class SnapshotStore {
  private readonly log = logger('snapshots');
  private files: Array<{ file: string; bytes: number; mtime: number }> | undefined;

  constructor(private readonly options: SnapshotStoreOptions) {}

  async save(camera: string, eventId: string, images: SnapshotImages): Promise<string> {
    const dir = path.join(this.options.dir, camera);
    await ensurePrivateDir(dir);
    const files = await this.index();
    const full = path.join(dir, `${eventId}.jpg`);
    const crop = path.join(dir, `${eventId}-crop.jpg`);
    for (const [file, data] of [[full, images.full], [crop, images.crop]] as const) {
      await writeFileAtomic(file, data, privateFile);
      const existing = files.findIndex((f) => f.file === file);
      if (existing >= 0) files.splice(existing, 1);
      files.push({ file, bytes: data.length, mtime: Date.now() });
    }
    await this.enforceBound(files);
    return full;
  }

  private async index(): Promise<Array<{ file: string; bytes: number; mtime: number }>> {
    if (this.files) return this.files;
    const found: Array<{ file: string; bytes: number; mtime: number }> = [];
    const cameras = await readdir(this.options.dir).catch(() => [] as string[]);
    for (const camera of cameras) {
      const names = await readdir(path.join(this.options.dir, camera)).catch(() => [] as string[]);
      for (const name of names.filter((n) => n.endsWith('.jpg'))) {
        const file = path.join(this.options.dir, camera, name);
        const info = await stat(file).catch(() => undefined);
        if (info?.isFile()) found.push({ file, bytes: info.size, mtime: info.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    this.files = found;
    return found;
  }

  private async enforceBound(files: Array<{ file: string; bytes: number; mtime: number }>): Promise<void> {
    let total = files.reduce((sum, f) => sum + f.bytes, 0);
    while (total > this.options.maxTotalBytes && files.length > 2) {
      const oldest = files.shift()!;
      total -= oldest.bytes;
      await rm(oldest.file, { force: true });
      this.log.debug(`deleted ${oldest.file} (snapshots over ${this.options.maxTotalBytes} bytes)`);
    }
  }
}
