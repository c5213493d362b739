/**
 * `synthetic:` sources: frames of a SyntheticScene for the pipeline, with the same contract as
 * `readFrames` (frames.ts), and their ground truth on a side channel.
 */
import { Observable } from 'rxjs';
import { SourceError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { newSourceStats, type Frame, type FrameOutput, type FrameSourceOptions, type SourceStats } from './frame.js';
import { letterbox, type Letterbox } from './geometry.js';
import { SyntheticScene, parseSyntheticUrl, type SceneOptions, type SyntheticBox } from './synthetic/index.js';

/**
 * The ground truth of every frame a synthetic source emitted: the boxes of its objects in source
 * pixels (the space published boxes are in), as `SyntheticScene` gives them (every object with a
 * visible pixel, with its `visible` fraction; filter on it as needed). Read it with
 * `syntheticTruth.get(frame)`; entries go away with the frames (a WeakMap), and frames of other
 * sources have none.
 */
export const syntheticTruth = new WeakMap<Frame, SyntheticBox[]>();

/**
 * Renders a `synthetic:` URL (see parseSyntheticUrl) **on demand**, like readFrames: the first frame
 * when subscribed, then one more each time `demand$` emits; nothing is rendered ahead of demand.
 * - Frames are letterboxed to `options.output` as ffmpeg's scale (bilinear) and pad filters do it,
 *   in the output's pixel order; `geometry` is `letterbox()`'s.
 * - `streamTime = index / rate` and `ts = start + streamTime * 1000`, where rate is the scene's fps,
 *   or `options.fps` when that is lower (a cap: scene frames are skipped to that rate and counted in
 *   `stats.dropped`; a higher `options.fps` changes nothing).
 * - By default (`realtime` false) it is like a file: frames come as fast as they are asked for and
 *   none is dropped. With `realtime: true` frames fall due at the scene's rate, like a camera: up to
 *   `queueFrames` due frames (default 2) wait for demand, and beyond that the oldest is dropped.
 * - It never ends unless the URL has `seconds=S`: then it completes after S seconds of stream time
 *   (ceil(S * rate) frames).
 * Errors (a bad URL) arrive as a SourceError naming the URL and the key.
 */
export function readSyntheticFrames(options: FrameSourceOptions, demand$: Observable<unknown>): Observable<Frame> {
  return new Observable<Frame>((subscriber) => {
    const stats: SourceStats = options.stats ?? newSourceStats();
    const log = options.log ?? logger(`source/${options.camera}`);
    let sceneOptions: SceneOptions;
    let scene: SyntheticScene;
    try {
      sceneOptions = parseSyntheticUrl(options.url);
      scene = new SyntheticScene(sceneOptions);
    } catch (err) {
      stats.state = 'ended';
      subscriber.error(err instanceof SourceError ? err : new SourceError(options.url, errorMessage(err)));
      return;
    }
    const sceneFps = sceneOptions.fps;
    const rate = options.fps !== undefined && options.fps > 0 && options.fps < sceneFps ? options.fps : sceneFps;
    const capped = rate !== sceneFps;
    const total = sceneOptions.seconds !== undefined ? Math.max(1, Math.ceil(sceneOptions.seconds * rate - 1e-9)) : Infinity;
    const realtime = options.realtime ?? false;
    const startedAt = Date.now();
    log.info(`${options.url}: ${sceneOptions.width}x${sceneOptions.height} @ ${rate} fps${capped ? ` (scene ${sceneFps} fps, capped)` : ''}`);

    let credit = 1;
    let next = 0;
    let lastSceneIndex = -1;
    let closed = false;
    let scheduled: NodeJS.Immediate | undefined;
    let timer: NodeJS.Timeout | undefined;
    /** Realtime: frames due and not yet asked for, oldest first; beyond the queue's size the oldest is dropped. */
    const due: number[] = [];
    const queueFrames = options.queueFrames ?? 2;

    const finish = (err?: Error) => {
      if (closed) return;
      closed = true;
      stats.state = 'ended';
      teardown();
      if (err) subscriber.error(err);
      else subscriber.complete();
    };

    const render = (index: number): Frame => {
      const sceneIndex = capped ? Math.round((index * sceneFps) / rate) : index;
      if (sceneIndex - lastSceneIndex > 1) stats.dropped += sceneIndex - lastSceneIndex - 1;
      lastSceneIndex = sceneIndex;
      const shown = scene.frameAt(sceneIndex);
      const { pixels, geometry } = letterboxPixels(shown.rgb, shown.width, shown.height, options.output);
      const streamTime = index / rate;
      const frame: Frame = {
        camera: options.camera,
        index,
        streamTime,
        ts: startedAt + streamTime * 1000,
        width: shown.width,
        height: shown.height,
        pixels,
        pixelFormat: options.output.pixelFormat,
        padValue: options.output.padValue,
        geometry,
        decodedAt: performance.now(),
      };
      syntheticTruth.set(frame, shown.boxes);
      stats.state = 'running';
      return frame;
    };

    const emit = (index: number) => {
      let frame: Frame;
      try {
        frame = render(index);
      } catch (err) {
        finish(new SourceError(options.url, errorMessage(err)));
        return;
      }
      subscriber.next(frame);
    };

    // As fast as demanded: one frame per event-loop turn, so a consumer that asks for the next
    // frame synchronously neither recurses nor starves timers and I/O.
    const pump = () => {
      scheduled = undefined;
      if (closed || credit <= 0) return;
      if (next >= total) return finish();
      credit--;
      stats.framesIn++;
      emit(next++);
      if (next >= total) return finish();
      if (credit > 0) schedule();
    };
    const schedule = () => {
      if (!scheduled && !closed) scheduled = setImmediate(pump);
    };

    // Realtime: frames fall due on a timer at the stream rate and wait for demand in `due`.
    const deliver = () => {
      if (closed) return;
      if (credit > 0 && due.length > 0) {
        credit--;
        emit(due.shift()!);
      }
      if (next >= total && due.length === 0) finish();
    };
    const tick = () => {
      timer = undefined;
      if (closed) return;
      stats.framesIn++;
      if (due.length >= queueFrames) {
        due.shift();
        stats.dropped++;
      }
      due.push(next++);
      stats.maxQueued = Math.max(stats.maxQueued, due.length);
      if (next < total) timer = setTimeout(tick, Math.max(0, startedAt + (next / rate) * 1000 - Date.now()));
      deliver();
    };

    const teardown = () => {
      clearImmediate(scheduled);
      clearTimeout(timer);
      demandSubscription.unsubscribe();
    };

    const demandSubscription = demand$.subscribe(() => {
      credit++;
      if (realtime) deliver();
      else schedule();
    });

    if (realtime) timer = setTimeout(tick, 0);
    else schedule();

    return () => {
      closed = true;
      teardown();
    };
  });
}

interface Taps {
  start: Int32Array;
  count: Int32Array;
  /** `maxTaps` weights per output pixel. */
  weights: Float32Array;
  maxTaps: number;
}

/**
 * Bilinear resampling weights from `src` to `dst` pixels along one axis, pixel centres aligned. When
 * shrinking, the tent widens to the scale factor (as swscale's bilinear filter does), so a smaller
 * output is an average, not a sample.
 */
function resampleTaps(src: number, dst: number): Taps {
  const ratio = src / dst;
  const support = Math.max(1, ratio);
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(dst);
  const count = new Int32Array(dst);
  const weights = new Float32Array(dst * maxTaps);
  for (let i = 0; i < dst; i++) {
    const centre = (i + 0.5) * ratio;
    const lo = Math.max(0, Math.floor(centre - support));
    const hi = Math.min(src, Math.ceil(centre + support));
    let sum = 0;
    let n = 0;
    let first = -1;
    for (let j = lo; j < hi && n < maxTaps; j++) {
      const w = Math.max(0, 1 - Math.abs((j + 0.5 - centre) / support));
      if (w === 0 && n === 0) continue; // no zero taps in front
      if (first < 0) first = j;
      weights[i * maxTaps + n] = w;
      sum += w;
      n++;
    }
    while (n > 0 && weights[i * maxTaps + n - 1] === 0) n--;
    if (sum === 0) {
      // Cannot happen with a tent at least one pixel wide; the nearest pixel, to be safe.
      first = Math.min(src - 1, Math.max(0, Math.floor(centre)));
      weights[i * maxTaps] = 1;
      sum = 1;
      n = 1;
    }
    for (let k = 0; k < n; k++) weights[i * maxTaps + k]! /= sum;
    start[i] = first;
    count[i] = n;
  }
  return { start, count, weights, maxTaps };
}

const tapCache = new Map<string, { x: Taps; y: Taps; tmp: Float32Array }>();

function tapsFor(sw: number, sh: number, dw: number, dh: number): { x: Taps; y: Taps; tmp: Float32Array } {
  const key = `${sw}x${sh}>${dw}x${dh}`;
  let t = tapCache.get(key);
  if (!t) {
    t = { x: resampleTaps(sw, dw), y: resampleTaps(sh, dh), tmp: new Float32Array(sh * dw * 3) };
    tapCache.set(key, t);
    if (tapCache.size > 16) tapCache.delete(tapCache.keys().next().value!);
  }
  return t;
}

/**
 * Letterboxes an RGB picture into the model input as frames.ts has ffmpeg do it (`scale=...:
 * force_original_aspect_ratio=decrease:flags=bilinear,pad=...`): the geometry is `letterbox()`'s,
 * the picture is resized bilinearly, the rest is `padValue`, and the bytes are in `pixelFormat` order.
 */
export function letterboxPixels(rgb: Buffer, width: number, height: number, output: FrameOutput): { pixels: Buffer; geometry: Letterbox } {
  const geometry = letterbox(width, height, output.width, output.height, output.align);
  const pad = Math.max(0, Math.min(255, Math.round(output.padValue)));
  const pixels = Buffer.alloc(output.width * output.height * 3, pad);
  const bgr = output.pixelFormat === 'bgr24';
  const { scaledWidth: dw, scaledHeight: dh, padX, padY } = geometry;
  const rowBytes = output.width * 3;
  if (dw === width && dh === height) {
    for (let y = 0; y < height; y++) {
      const o = (padY + y) * rowBytes + padX * 3;
      if (!bgr) rgb.copy(pixels, o, y * width * 3, (y + 1) * width * 3);
      else {
        for (let x = 0, i = y * width * 3, j = o; x < width; x++, i += 3, j += 3) {
          pixels[j] = rgb[i + 2]!;
          pixels[j + 1] = rgb[i + 1]!;
          pixels[j + 2] = rgb[i]!;
        }
      }
    }
    return { pixels, geometry };
  }
  const { x: tx, y: ty, tmp } = tapsFor(width, height, dw, dh);
  // Horizontal pass: every source row to the output width (into a scratch buffer reused per size).
  for (let y = 0; y < height; y++) {
    const srow = y * width * 3;
    const trow = y * dw * 3;
    for (let i = 0; i < dw; i++) {
      const s0 = tx.start[i]!;
      const n = tx.count[i]!;
      const wo = i * tx.maxTaps;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < n; k++) {
        const w = tx.weights[wo + k]!;
        const si = srow + (s0 + k) * 3;
        r += rgb[si]! * w;
        g += rgb[si + 1]! * w;
        b += rgb[si + 2]! * w;
      }
      tmp[trow + i * 3] = r;
      tmp[trow + i * 3 + 1] = g;
      tmp[trow + i * 3 + 2] = b;
    }
  }
  // Vertical pass, a row at a time (contiguous reads), into the padded output.
  const out = new Uint8ClampedArray(pixels.buffer, pixels.byteOffset, pixels.length);
  const acc = new Float32Array(dw * 3);
  const rowLen = dw * 3;
  for (let j = 0; j < dh; j++) {
    const s0 = ty.start[j]!;
    const n = ty.count[j]!;
    const wo = j * ty.maxTaps;
    acc.fill(0);
    for (let k = 0; k < n; k++) {
      const w = ty.weights[wo + k]!;
      const base = (s0 + k) * rowLen;
      for (let m = 0; m < rowLen; m++) acc[m] += tmp[base + m]! * w;
    }
    const orow = (padY + j) * rowBytes + padX * 3;
    if (bgr) {
      for (let m = 0; m < rowLen; m += 3) {
        out[orow + m] = acc[m + 2]!;
        out[orow + m + 1] = acc[m + 1]!;
        out[orow + m + 2] = acc[m]!;
      }
    } else {
      for (let m = 0; m < rowLen; m++) out[orow + m] = acc[m]!;
    }
  }
  return { pixels, geometry };
}
