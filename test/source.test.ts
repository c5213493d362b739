import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { take } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SourceError } from '../src/errors.js';
import { setLogSink, type LogRecord } from '../src/log.js';
import { locateFfmpeg, parseStreamInfo } from '../src/source/ffmpeg-binary.js';
import { readFrames } from '../src/source/frames.js';
import { newSourceStats, type FrameOutput } from '../src/source/frame.js';
import { assets, needsAssets } from './helpers/assets.js';
import { consumeFrames, sleep } from './helpers/frames.js';

const output: FrameOutput = { width: 416, height: 416, pixelFormat: 'bgr24', padValue: 114, align: 'top-left' };
const small: FrameOutput = { width: 64, height: 64, pixelFormat: 'rgb24', padValue: 0, align: 'center' };

describe('ffmpeg binary', () => {
  it('prefers FFMPEG_PATH, then the system PATH, then the npm package', () => {
    const system = locateFfmpeg({ env: { PATH: process.env.PATH } });
    expect(system.origin).toBe('system');
    expect(locateFfmpeg({ env: { PATH: '', FFMPEG_PATH: system.path } })).toEqual({ path: system.path, origin: 'env' });
    expect(locateFfmpeg({ env: { PATH: '/nonexistent' }, npmBinary: () => system.path })).toEqual({ path: system.path, origin: 'npm' });
  });

  it('says how to get ffmpeg when there is none, and rejects a bad FFMPEG_PATH', async () => {
    expect(() => locateFfmpeg({ env: { PATH: '/nonexistent' }, npmBinary: () => undefined })).toThrow(/apt-get install ffmpeg.*@ffmpeg-installer\/ffmpeg/);
    const notABinary = path.join(await mkdtemp(path.join(os.tmpdir(), 'beats-bin-')), 'ffmpeg.txt');
    await writeFile(notABinary, 'text', { mode: 0o644 });
    expect(() => locateFfmpeg({ env: { FFMPEG_PATH: notABinary } })).toThrow(`FFMPEG_PATH: ${notABinary} is not an executable file`);
  });

  it('reads size and rate from the stream banner of ffmpeg 4 and 5', () => {
    expect(parseStreamInfo('  Stream #0:0: Video: mpeg4 (Simple Profile) (XVID / 0x44495658), yuv420p, 320x240 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 25 tbn')).toEqual({ width: 320, height: 240, fps: 25 });
    expect(parseStreamInfo('    Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 768x432, 420 kb/s, 10 fps, 10 tbr, 10240 tbn (default)')).toEqual({ width: 768, height: 432, fps: 10 });
    expect(parseStreamInfo('  Stream #0:0: Video: rawvideo (RGB[24] / 0x18424752), rgb24, 320x240 [SAR 1:1 DAR 4:3], 25 tbr, 25 tbn')).toEqual({ width: 320, height: 240, fps: 25 });
    expect(parseStreamInfo('  Stream #0:1: Audio: aac, 44100 Hz, stereo')).toBeUndefined();
  });
});

describe('test pattern', () => {
  it('decodes testsrc at its own rate, with stream time from the frame count', async () => {
    const frames = await consumeFrames({ camera: 't', url: 'testsrc:size=160x120:rate=10', realtime: false, output: small }, (f) => f, (f$) => f$.pipe(take(15)));
    expect(frames.map((f) => f.index)).toEqual([...Array(15).keys()]);
    expect(frames.map((f) => f.streamTime)).toEqual(frames.map((_, i) => i / 10));
    const f = frames[0]!;
    expect([f.width, f.height, f.pixels.length]).toEqual([160, 120, 64 * 64 * 3]);
    // 160x120 into 64x64, centred: 64x48 picture, 8 rows of padding above and below.
    expect(f.geometry).toMatchObject({ scaledWidth: 64, scaledHeight: 48, padX: 0, padY: 8 });
    const row = (y: number) => f.pixels.subarray(y * 64 * 3, (y + 1) * 64 * 3);
    expect(row(2).every((v) => v === 0)).toBe(true);
    expect(row(32).some((v) => v > 0)).toBe(true);
  });

  it('rejects testsrc options that are not lavfi key=value pairs', async () => {
    await expect(consumeFrames({ camera: 't', url: 'testsrc:size=1x1;rm -rf /', output: small }, (f) => f)).rejects.toThrow(/testsrc options must look like/);
  });
});

describe.skipIf(needsAssets)('files', () => {
  it('reads every frame of a file, in order, with stream time index / 25', async () => {
    const stats = newSourceStats();
    const frames = await consumeFrames({ camera: 'h', url: assets.highway, output, stats }, (f) => ({ index: f.index, t: f.streamTime, w: f.width, h: f.height, bytes: f.pixels.length }));
    expect(frames).toHaveLength(748);
    expect(frames.map((f) => f.index)).toEqual([...Array(748).keys()]);
    expect(frames[100]).toEqual({ index: 100, t: 4, w: 320, h: 240, bytes: 416 * 416 * 3 });
    expect(stats).toMatchObject({ framesIn: 748, dropped: 0, state: 'ended' });
    expect(stats.maxQueued).toBeLessThanOrEqual(4);
  });

  it('a slow consumer of a file loses nothing and the queue stays within its bound', async () => {
    const stats = newSourceStats();
    const indices = await consumeFrames({ camera: 'h', url: assets.highway, output, stats }, async (f) => {
      await sleep(15);
      return f.index;
    }, (f$) => f$.pipe(take(60)));
    expect(indices).toEqual([...Array(60).keys()]);
    expect(stats.dropped).toBe(0);
    expect(stats.maxQueued).toBeLessThanOrEqual(4);
    // ffmpeg is paused, not read ahead: far fewer frames decoded than the file holds.
    expect(stats.framesIn).toBeLessThan(60 + 8);
  });

  it('caps the rate with fps, and stream time follows the capped rate', async () => {
    const frames = await consumeFrames({ camera: 'h', url: assets.highway, fps: 10, output: small }, (f) => f.streamTime);
    expect(frames.length).toBeGreaterThanOrEqual(298);
    expect(frames.length).toBeLessThanOrEqual(301);
    expect(frames[50]).toBe(5);
  });

  it('realtime: true paces a file at its own frame rate', async () => {
    const started = Date.now();
    const frames = await consumeFrames({ camera: 'h', url: assets.highway, realtime: true, output: small }, (f) => f.index, (f$) => f$.pipe(take(25)));
    // 25 frames at 25 fps cannot arrive faster than ~1 s of stream time (a lower bound: safe on a busy machine).
    expect(Date.now() - started).toBeGreaterThan(800);
    expect(frames.length).toBe(25);
  });

  it('loops a file with loop: true, stream time keeps growing', async () => {
    const stats = newSourceStats();
    const times = await consumeFrames({ camera: 'h', url: assets.highway, loop: true, fps: 50, output: small, stats }, (f) => f.streamTime, (f$) => f$.pipe(take(1700)));
    expect(times).toHaveLength(1700);
    expect(times[1699]).toBeCloseTo(1699 / 50, 6);
  }, 120_000);

  it('decodes the H.264 indoor video at its size and rate', async () => {
    const frames = await consumeFrames({ camera: 'i', url: assets.indoor, output }, (f) => f, (f$) => f$.pipe(take(20)));
    expect(frames[19]).toMatchObject({ width: 768, height: 432, index: 19, streamTime: 1.9 });
    expect(frames[19]!.geometry).toMatchObject({ scaledWidth: 416, scaledHeight: 234, padY: 0 });
  });

  it('decodes with the npm package ffmpeg (4.x) as well', async () => {
    const { createRequire } = await import('node:module');
    const npmFfmpeg = (createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string }).path;
    const frames = await consumeFrames({ camera: 'h', url: assets.highway, output, ffmpegPath: npmFfmpeg }, (f) => f, (f$) => f$.pipe(take(10)));
    expect(frames).toHaveLength(10);
    expect(frames[9]).toMatchObject({ width: 320, height: 240, streamTime: 0.36 });
  });

  it('names the file when it is missing or not a video', async () => {
    await expect(consumeFrames({ camera: 'h', url: '/nonexistent/clip.mp4', output }, (f) => f)).rejects.toThrow(new SourceError('/nonexistent/clip.mp4', 'file not found'));
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-src-'));
    const junk = path.join(dir, 'junk.mp4');
    await writeFile(junk, Buffer.alloc(4096, 7));
    await expect(consumeFrames({ camera: 'h', url: junk, output }, (f) => f)).rejects.toThrow(/junk\.mp4: ffmpeg failed: .*(Invalid data|could not find)/i);
  });
});

describe('live sources', () => {
  /** A slow consumer (100 ms a frame) of a 50 fps test source: what it was handed, against what had been decoded. */
  async function slowConsumer(queueFrames?: number) {
    const stats = newSourceStats();
    const seen: Array<{ index: number; newest: number }> = [];
    await consumeFrames({ camera: 'live', url: 'testsrc:size=160x120:rate=50', output: small, stats, queueFrames }, async (f) => {
      seen.push({ index: f.index, newest: stats.framesIn - 1 });
      await sleep(100);
    }, (f$) => f$.pipe(take(12)));
    const gaps = seen.slice(1).map((s, i) => s.index - seen[i]!.index);
    return { stats, seen, gaps };
  }

  it('a slow consumer of a live source gets the newest frames; older ones are dropped and counted', async () => {
    const { stats, seen, gaps } = await slowConsumer();
    expect(stats.dropped).toBeGreaterThan(12);
    expect(stats.maxQueued).toBe(2);
    // Every frame handed over was one of the two newest decoded at that moment (or the one before them).
    for (const s of seen.slice(1)) expect(s.newest - s.index).toBeLessThanOrEqual(2);
    expect(Math.min(...gaps)).toBeGreaterThan(0);
    expect(Math.max(...gaps)).toBeGreaterThan(1);
  });

  it('queue_frames: 1 keeps only the newest frame', async () => {
    const { stats, seen, gaps } = await slowConsumer(1);
    expect(stats.dropped).toBeGreaterThan(12);
    expect(stats.maxQueued).toBe(1);
    for (const s of seen.slice(1)) expect(s.newest - s.index).toBeLessThanOrEqual(1);
    expect(Math.max(...gaps)).toBeGreaterThan(1);
  });

  it('a frame that arrives while the consumer is briefly held up waits instead of replacing the one before it', async () => {
    // 25 fps (40 ms apart); the consumer takes 10 ms a frame but every fifth takes 100 ms, during
    // which two frames arrive: with two slots both wait, with one the second replaces the first.
    const run = async (queueFrames: number) => {
      const stats = newSourceStats();
      let n = 0;
      await consumeFrames({ camera: 'live', url: 'testsrc:size=160x120:rate=25', output: small, stats, queueFrames }, async () => {
        await sleep(++n % 5 === 0 ? 100 : 10);
      }, (f$) => f$.pipe(take(30)));
      return stats.dropped;
    };
    const [one, two] = [await run(1), await run(2)];
    expect(one).toBeGreaterThanOrEqual(3);
    expect(two).toBeLessThan(one);
  });
});

describe.skipIf(needsAssets)('a live source that drops, stalls and comes back', () => {
  let clip: Buffer;
  let server: Server;
  let port: number;
  let mode: 'serve' | 'stall' = 'serve';
  const logs: LogRecord[] = [];
  let restoreSink: ReturnType<typeof setLogSink>;

  beforeAll(async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-live-'));
    const ts = path.join(dir, 'clip.ts');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-i', assets.highway, '-t', '2', '-c:v', 'mpeg2video', '-q:v', '5', '-f', 'mpegts', ts]);
    clip = await readFile(ts);
    server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp2t' });
      if (mode === 'serve') res.end(clip);
      else res.write(clip.subarray(0, 32 * 1024)); // then nothing more: the camera stalls
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    restoreSink = setLogSink((r) => logs.push(r));
  });

  afterAll(() => {
    setLogSink(restoreSink);
    server.closeAllConnections();
    server.close();
  });

  it('restarts ffmpeg with exponential backoff and frames flow again', async () => {
    const stats = newSourceStats();
    const demand$ = new (await import('rxjs')).Subject<void>();
    let framesAfterReturn = 0;
    let serverBack = false;
    const sub = readFrames({ camera: 'cam', url: `http://127.0.0.1:${port}/live.ts`, output: small, stats, stallTimeoutS: 1, reconnect: { initialS: 0.2, maxS: 1 } }, demand$).subscribe((f) => {
      if (serverBack) framesAfterReturn++;
      expect(f.pixels.length).toBe(64 * 64 * 3);
      demand$.next();
    });
    try {
      // The clip is served whole, then the response ends: for a live source that is a drop.
      await waitUntil(() => stats.restarts >= 1, 10_000);
      const framesFirstRun = stats.framesIn;
      expect(framesFirstRun).toBeGreaterThan(10);
      // The camera disappears: connection refused, again and again.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await waitUntil(() => stats.restarts >= 4, 15_000);
      expect(stats.state).toBe('reconnecting');
      // It comes back.
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      serverBack = true;
      await waitUntil(() => framesAfterReturn > 10, 15_000);
      expect(stats.framesIn).toBeGreaterThan(framesFirstRun);

      const warnings = logs.filter((r) => r.level === 'warn' && r.component === 'source/cam').map((r) => r.msg);
      expect(warnings[0]).toMatch(/stream ended; restarting ffmpeg in 0\.2 s \(attempt 1\)/);
      const delays = logs.filter((r) => r.component === 'source/cam' && r.fields?.delay_s !== undefined).map((r) => r.fields!.delay_s as number);
      // Doubling while the camera is away, capped at max_s.
      expect(delays.slice(0, 4)).toEqual([0.2, 0.4, 0.8, 1]);
      expect(warnings.some((m) => /ffmpeg failed: .*(refused|Connection|Error opening)/i.test(m))).toBe(true);
      expect(logs.some((r) => r.msg.includes('frames are flowing again'))).toBe(true);
    } finally {
      sub.unsubscribe();
    }
  });

  it('a stalled camera (connection open, no data) is restarted after stall_timeout_s', async () => {
    mode = 'stall';
    logs.length = 0;
    const stats = newSourceStats();
    const demand$ = new (await import('rxjs')).Subject<void>();
    const sub = readFrames({ camera: 'stall', url: `http://127.0.0.1:${port}/live.ts`, output: small, stats, stallTimeoutS: 1, reconnect: { initialS: 0.2, maxS: 1 } }, demand$).subscribe(() => demand$.next());
    try {
      await waitUntil(() => stats.restarts >= 1, 10_000);
      expect(logs.find((r) => r.component === 'source/stall' && r.level === 'warn')?.msg).toMatch(/no frame for 1 s \(stalled\); restarting ffmpeg/);
    } finally {
      sub.unsubscribe();
      mode = 'serve';
    }
  });
});

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}
