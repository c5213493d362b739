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
  /** Events kept at most (default 10,000): bounds the index in memory whatever the snapshots weigh. */
  maxEvents?: number;
}

const DEFAULT_MAX_EVENTS = 10_000;

/**
 * Snapshots on disk (`<camera>/<event id>.jpg` and `-crop.jpg`), oldest event deleted past a total
 * size or a number of events. The index in memory is one entry per event (`<camera>/<event id>` and
 * the bytes of its two files), in the order they were saved, with the total kept as it changes: an
 * event saved again moves to the end, and neither saving nor the bounds walk the index. The count
 * bound is what bounds the index: small snapshots (a plain scene compresses to under 2 KB an event)
 * would otherwise fit some 60,000 events in the default 100 MB, about 10 MB of heap filling for
 * most of an hour; at 10,000 events it is about 1.7 MB.
 */
export class SnapshotStore {
  private readonly log = logger('snapshots');
  private events: Map<string, number> | undefined;
  private totalBytes = 0;

  constructor(private readonly options: SnapshotStoreOptions) {}

  async save(camera: string, eventId: string, images: SnapshotImages): Promise<string> {
    const dir = path.join(this.options.dir, camera);
    await ensurePrivateDir(dir);
    const events = await this.index();
    const key = `${camera}/${eventId}`;
    const full = path.join(dir, `${eventId}.jpg`);
    // Indexed before the files are written, so that a write that fails half way leaves no file the
    // bound does not know of (deleting a file that is not there is no error).
    const bytes = images.full.length + images.crop.length;
    this.totalBytes += bytes - (events.get(key) ?? 0);
    events.delete(key);
    events.set(key, bytes);
    await writeFileAtomic(full, images.full, privateFile);
    await writeFileAtomic(path.join(dir, `${eventId}-crop.jpg`), images.crop, privateFile);
    await this.enforceBound(events);
    return full;
  }

  /** Events indexed (each with up to two files on disk). */
  get size(): number {
    return this.events?.size ?? 0;
  }

  /** The folder as found at the first save: each event's files summed, oldest first. */
  private async index(): Promise<Map<string, number>> {
    if (this.events) return this.events;
    const found = new Map<string, { bytes: number; mtime: number }>();
    const cameras = await readdir(this.options.dir).catch(() => [] as string[]);
    for (const camera of cameras) {
      const names = await readdir(path.join(this.options.dir, camera)).catch(() => [] as string[]);
      for (const name of names.filter((n) => n.endsWith('.jpg'))) {
        const info = await stat(path.join(this.options.dir, camera, name)).catch(() => undefined);
        if (!info?.isFile()) continue;
        const key = `${camera}/${name.replace(/(-crop)?\.jpg$/, '')}`;
        const seen = found.get(key);
        found.set(key, { bytes: (seen?.bytes ?? 0) + info.size, mtime: Math.max(seen?.mtime ?? 0, info.mtimeMs) });
      }
    }
    const events = new Map([...found].sort((a, b) => a[1].mtime - b[1].mtime).map(([key, e]) => [key, e.bytes] as const));
    // Another save may have built it while this one awaited the folder.
    if (this.events) return this.events;
    this.events = events;
    this.totalBytes = [...events.values()].reduce((sum, b) => sum + b, 0);
    return events;
  }

  /** Deletes the oldest events' files while the total or the count is over its bound, keeping the newest event. */
  private async enforceBound(events: Map<string, number>): Promise<void> {
    const maxEvents = Math.max(1, this.options.maxEvents ?? DEFAULT_MAX_EVENTS);
    while ((this.totalBytes > this.options.maxTotalBytes || events.size > maxEvents) && events.size > 1) {
      const [key, bytes] = events.entries().next().value!;
      events.delete(key);
      this.totalBytes -= bytes;
      const base = path.join(this.options.dir, key);
      // A file that cannot be deleted is logged and left: it must not fail the event being saved.
      const removed = await Promise.allSettled([rm(`${base}.jpg`, { force: true }), rm(`${base}-crop.jpg`, { force: true })]);
      const failed = removed.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      for (const r of failed) this.log.warn(`cannot delete an old snapshot: ${(r.reason as Error).message}`);
      if (failed.length === 0) this.log.debug(`deleted ${base}.jpg and -crop.jpg (snapshots over ${this.options.maxTotalBytes} bytes or ${maxEvents} events)`);
    }
  }
}
