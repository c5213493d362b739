/**
 * A constant-velocity Kalman filter on a box, in stream seconds (so a frame that came late or frames
 * that were dropped are just a longer step), as in SORT / ByteTrack.
 *
 * The state is the box centre and size (cx, cy, w, h) and their rates, with BoT-SORT's choice of
 * width over ByteTrack's aspect ratio: every coordinate is then in pixels and its noise scales with
 * the box's own size along that axis. ByteTrack's noise is diagonal and each coordinate moves only
 * with its own rate, so the 8x8 covariance stays four independent 2x2 blocks: the filter is four
 * one-dimensional filters, with no matrix code.
 */

export type Box = [number, number, number, number];

// Noise, as fractions of the box's size along the axis (its width for cx and w, height for cy and h).
// ByteTrack's per-frame values (position 1/20, velocity 1/160 of the height, at 30 fps) turned into
// per-second rates: a random walk's variance grows with time, so variance per second = per-frame
// variance × 30, with velocities in px/s (× 30 again).
/** Detector jitter: 1/20 of the size (ByteTrack). */
const MEASUREMENT_STD = 1 / 20;
/** Position random walk: std 0.27 sizes per √s, i.e. ByteTrack's 1/20 per 1/30 s. */
const POSITION_NOISE_PER_SQRT_S = Math.sqrt(30) / 20;
/** Velocity random walk: std ≈ 1 size/s per √s, i.e. ByteTrack's 1/160 of the size per frame², at 30 fps. */
const VELOCITY_NOISE_PER_SQRT_S = (30 * Math.sqrt(30)) / 160;
/** A new track: position as uncertain as two measurements, velocity unknown (±2 sizes/s, ByteTrack's 10/160 per frame). */
const INITIAL_POSITION_STD = 2 * MEASUREMENT_STD;
const INITIAL_VELOCITY_STD = (10 * 30) / 160;
/** No box is ever predicted smaller than this, in pixels (a shrinking box must not flip over). */
const MIN_SIZE = 1;

/** One coordinate: value, rate per second, and their covariance [[pxx, pxv], [pxv, pvv]]. */
interface Axis {
  x: number;
  v: number;
  pxx: number;
  pxv: number;
  pvv: number;
}

function newAxis(x: number, size: number): Axis {
  return { x, v: 0, pxx: (INITIAL_POSITION_STD * size) ** 2, pxv: 0, pvv: (INITIAL_VELOCITY_STD * size) ** 2 };
}

function predictAxis(a: Axis, dt: number, size: number): void {
  a.x += a.v * dt;
  a.pxx += 2 * dt * a.pxv + dt * dt * a.pvv + (POSITION_NOISE_PER_SQRT_S * size) ** 2 * dt;
  a.pxv += dt * a.pvv;
  a.pvv += (VELOCITY_NOISE_PER_SQRT_S * size) ** 2 * dt;
}

function correctAxis(a: Axis, z: number, size: number): void {
  const s = a.pxx + (MEASUREMENT_STD * size) ** 2;
  const kx = a.pxx / s;
  const kv = a.pxv / s;
  const innovation = z - a.x;
  a.x += kx * innovation;
  a.v += kv * innovation;
  a.pvv -= kv * a.pxv;
  a.pxv *= 1 - kx;
  a.pxx *= 1 - kx;
}

export class BoxFilter {
  private readonly cx: Axis;
  private readonly cy: Axis;
  private readonly w: Axis;
  private readonly h: Axis;

  constructor(box: Readonly<Box>) {
    const [cx, cy, w, h] = toCentre(box);
    this.cx = newAxis(cx, w);
    this.cy = newAxis(cy, h);
    this.w = newAxis(w, w);
    this.h = newAxis(h, h);
  }

  /**
   * Moves the state `dt` seconds ahead. `holdSize` stops the size from changing: a track that is not
   * seen has nothing to correct a growing or shrinking box with (ByteTrack zeroes that rate too).
   */
  predict(dt: number, holdSize: boolean): void {
    if (holdSize) {
      this.w.v = 0;
      this.h.v = 0;
    }
    const w = this.width;
    const h = this.height;
    predictAxis(this.cx, dt, w);
    predictAxis(this.cy, dt, h);
    predictAxis(this.w, dt, w);
    predictAxis(this.h, dt, h);
  }

  /** Corrects the state with a detected box. */
  correct(box: Readonly<Box>): void {
    const [cx, cy, w, h] = toCentre(box);
    const sw = this.width;
    const sh = this.height;
    correctAxis(this.cx, cx, sw);
    correctAxis(this.cy, cy, sh);
    correctAxis(this.w, w, sw);
    correctAxis(this.h, h, sh);
  }

  /** The estimated box, [x1, y1, x2, y2]. */
  get box(): Box {
    const w = this.width;
    const h = this.height;
    return [this.cx.x - w / 2, this.cy.x - h / 2, this.cx.x + w / 2, this.cy.x + h / 2];
  }

  /** Estimated velocity of the centre, px/s. */
  get velocity(): [number, number] {
    return [this.cx.v, this.cy.v];
  }

  private get width(): number {
    return Math.max(MIN_SIZE, this.w.x);
  }

  private get height(): number {
    return Math.max(MIN_SIZE, this.h.x);
  }
}

/** [x1, y1, x2, y2] → [cx, cy, w, h]. */
export function toCentre(box: Readonly<Box>): Box {
  return [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]];
}
