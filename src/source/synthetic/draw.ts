/**
 * Sprites: objects and props drawn into small anti-aliased premultiplied-RGBA buffers of their own
 * (signed-distance shapes).
 */
import { clamp01, fbm, hashUnit, hypot, mixRgb, scale, type RGB } from './random.js';
import { HAIR, SKIN, type Palette } from './view.js';
import { CAR_BODIES, type BikeLook, type CarLook, type PersonLook, type Pose } from './actors.js';

export interface PropDef {
  /** Canonical foot position (depth order). */
  x: number;
  y: number;
  draw(sp: Sprite, fx: number, fy: number, px: number, style: number, night: boolean): void;
  /** Half width and height in world units. */
  halfW: number;
  height: number;
}

// ---------------------------------------------------------------------------------------------
// Sprites: objects are drawn into small anti-aliased premultiplied-RGBA buffers of their own.

export class Sprite {
  x0 = 0;
  y0 = 0;
  w = 0;
  h = 0;
  /** Premultiplied RGB. */
  p = new Float32Array(0);
  /** Coverage. */
  a = new Float32Array(0);
  /** 1 where the pixel gives light (lamps, headlights): not darkened at night. */
  e = new Uint8Array(0);

  reset(x0: number, y0: number, w: number, h: number): this {
    this.x0 = x0;
    this.y0 = y0;
    this.w = w;
    this.h = h;
    const n = w * h;
    if (this.a.length < n) {
      this.p = new Float32Array(n * 3);
      this.a = new Float32Array(n);
      this.e = new Uint8Array(n);
    } else {
      this.p.fill(0, 0, n * 3);
      this.a.fill(0, 0, n);
      this.e.fill(0, 0, n);
    }
    return this;
  }
}

interface Shape {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  sd(x: number, y: number): number;
}

const circle = (cx: number, cy: number, r: number): Shape => ({ x0: cx - r, y0: cy - r, x1: cx + r, y1: cy + r, sd: (x, y) => hypot(x - cx, y - cy) - r });

const ellipse = (cx: number, cy: number, rx: number, ry: number): Shape => ({
  x0: cx - rx,
  y0: cy - ry,
  x1: cx + rx,
  y1: cy + ry,
  sd: (x, y) => (hypot((x - cx) / rx, (y - cy) / ry) - 1) * Math.min(rx, ry),
});

const ring = (cx: number, cy: number, r: number, t: number): Shape => ({ x0: cx - r, y0: cy - r, x1: cx + r, y1: cy + r, sd: (x, y) => Math.abs(hypot(x - cx, y - cy) - (r - t / 2)) - t / 2 });

function capsule(ax: number, ay: number, bx: number, by: number, width: number): Shape {
  const r = width / 2;
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy || 1e-9;
  return {
    x0: Math.min(ax, bx) - r,
    y0: Math.min(ay, by) - r,
    x1: Math.max(ax, bx) + r,
    y1: Math.max(ay, by) + r,
    sd: (x, y) => {
      const t = clamp01(((x - ax) * dx + (y - ay) * dy) / len2);
      return hypot(x - ax - t * dx, y - ay - t * dy) - r;
    },
  };
}

function rbox(x0: number, y0: number, x1: number, y1: number, radius = 0): Shape {
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const hx = Math.abs(x1 - x0) / 2;
  const hy = Math.abs(y1 - y0) / 2;
  const r = Math.min(radius, hx, hy);
  return {
    x0: cx - hx,
    y0: cy - hy,
    x1: cx + hx,
    y1: cy + hy,
    sd: (x, y) => {
      const qx = Math.abs(x - cx) - hx + r;
      const qy = Math.abs(y - cy) - hy + r;
      return hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0) - r;
    },
  };
}

/** A convex polygon, points as [x0, y0, x1, y1, ...] in either winding. */
function poly(pts: number[]): Shape {
  const n = pts.length / 2;
  let area = 0;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    area += pts[2 * i]! * pts[2 * j + 1]! - pts[2 * j]! * pts[2 * i + 1]!;
  }
  const sign = area >= 0 ? 1 : -1;
  const edges: number[] = [];
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const ax = pts[2 * i]!;
    const ay = pts[2 * i + 1]!;
    const j = (i + 1) % n;
    const ex = pts[2 * j]! - ax;
    const ey = pts[2 * j + 1]! - ay;
    const len = hypot(ex, ey) || 1e-9;
    // Outward normal of a counter-clockwise (in y-down: area > 0) polygon.
    const nx = (sign * ey) / len;
    const ny = (-sign * ex) / len;
    edges.push(nx, ny, nx * ax + ny * ay);
    x0 = Math.min(x0, ax);
    y0 = Math.min(y0, ay);
    x1 = Math.max(x1, ax);
    y1 = Math.max(y1, ay);
  }
  return {
    x0,
    y0,
    x1,
    y1,
    sd: (x, y) => {
      let d = -Infinity;
      for (let i = 0; i < edges.length; i += 3) d = Math.max(d, edges[i]! * x + edges[i + 1]! * y - edges[i + 2]!);
      return d;
    },
  };
}

/** Intersection of two shapes (bounds of the first). */
const clipBelow = (shape: Shape, yMax: number): Shape => ({ ...shape, y1: Math.min(shape.y1, yMax), sd: (x, y) => Math.max(shape.sd(x, y), y - yMax) });

interface FillOptions {
  /** Vertical gradient: colour at the bottom of the shape's bounds. */
  bottom?: RGB;
  emissive?: boolean;
  alpha?: number;
  /** Brightness multiplier per pixel (sprite coordinates of the pixel centre). */
  texture?: (x: number, y: number) => number;
}

function fill(sp: Sprite, shape: Shape, c: RGB, o: FillOptions = {}): void {
  const alpha = o.alpha ?? 1;
  const ix0 = Math.max(0, Math.floor(shape.x0 - 1));
  const iy0 = Math.max(0, Math.floor(shape.y0 - 1));
  const ix1 = Math.min(sp.w - 1, Math.ceil(shape.x1 + 1));
  const iy1 = Math.min(sp.h - 1, Math.ceil(shape.y1 + 1));
  const gh = shape.y1 - shape.y0 || 1;
  for (let y = iy0; y <= iy1; y++) {
    let r = c[0];
    let g = c[1];
    let b = c[2];
    if (o.bottom) {
      const t = clamp01((y + 0.5 - shape.y0) / gh);
      r += (o.bottom[0] - r) * t;
      g += (o.bottom[1] - g) * t;
      b += (o.bottom[2] - b) * t;
    }
    for (let x = ix0; x <= ix1; x++) {
      const d = shape.sd(x + 0.5, y + 0.5);
      if (d >= 0.5) continue;
      const cov = (d <= -0.5 ? 1 : 0.5 - d) * alpha;
      const i = y * sp.w + x;
      const inv = 1 - cov;
      const k = o.texture ? o.texture(x + 0.5, y + 0.5) * cov : cov;
      sp.p[3 * i] = sp.p[3 * i]! * inv + r * k;
      sp.p[3 * i + 1] = sp.p[3 * i + 1]! * inv + g * k;
      sp.p[3 * i + 2] = sp.p[3 * i + 2]! * inv + b * k;
      sp.a[i] = sp.a[i]! * inv + cov;
      if (cov >= 0.5) sp.e[i] = o.emissive ? 1 : 0;
    }
  }
}

// --- people

export function drawPerson(sp: Sprite, fx: number, fy: number, px: number, look: PersonLook, pose: Pose, pal: Palette): void {
  const H = look.height * px;
  const shirt = pal.shirt[look.shirt]!;
  const trousers = pal.trousers[look.trousers]!;
  const shoe = pal.shoes[look.shoes]!;
  const skin = look.plastic ?? SKIN[look.skin]!;
  const hair = look.plastic ? scale(look.plastic, 0.92) : HAIR[look.hair]!;
  const frontal = Math.abs(pose.hy) > Math.abs(pose.hx) * 0.9;
  const f = pose.hx >= 0 ? 1 : -1;
  const phase = ((2 * Math.PI) / (0.85 * look.height)) * pose.d;
  const swing = pose.moving ? Math.sin(phase) : 0;
  const hipY = fy - 0.48 * H;
  const shoulderY = fy - 0.805 * H;
  const legW = Math.max(1.3, 0.085 * H * look.build);
  const armW = Math.max(1.1, 0.062 * H * look.build);
  const headR = Math.max(1.4, 0.066 * H);
  const headY = fy - H + headR;
  const torsoBottom = hipY + (look.coat ? 0.2 * H : 0.035 * H);
  const far = (c: RGB) => scale(c, 0.78);

  if (!frontal) {
    const a = 0.4 * swing;
    const tw = 0.23 * H * look.build;
    const leg = (angle: number, col: RGB) => {
      const L = 0.45 * H;
      // A knee that bends on the back leg.
      const kx = fx + Math.sin(angle) * L * 0.5;
      const ky = hipY + Math.cos(angle) * L * 0.5;
      const back = angle * f < 0 ? Math.abs(angle) * 0.6 : 0;
      const ex = kx + Math.sin(angle - f * back) * L * 0.5;
      const ey = Math.min(fy - 0.025 * H, ky + Math.cos(angle - f * back) * L * 0.5);
      fill(sp, capsule(fx, hipY, kx, ky, legW), col);
      fill(sp, capsule(kx, ky, ex, ey, legW * 0.9), col);
      fill(sp, capsule(ex - f * 0.02 * H, ey, ex + f * 0.055 * H, ey, Math.max(1.1, 0.045 * H)), col === trousers ? shoe : far(shoe));
    };
    const arm = (angle: number, col: RGB) => {
      const L = 0.36 * H;
      const sx = fx + f * 0.01 * H;
      const sy = shoulderY + 0.035 * H;
      const ex = sx + Math.sin(angle) * L;
      const ey = sy + Math.cos(angle) * L;
      fill(sp, capsule(sx, sy, ex, ey, armW), col);
      fill(sp, circle(ex, ey, armW * 0.55), col === shirt ? skin : far(skin));
    };
    arm(-a * 0.8, far(shirt));
    leg(a, far(trousers));
    if (look.bag === 1) fill(sp, rbox(fx - f * (tw / 2 + 0.08 * H), shoulderY + 0.04 * H, fx - f * (tw / 2 - 0.02 * H), shoulderY + 0.26 * H, 0.03 * H), scale(pal.trousers[(look.trousers + 3) % pal.trousers.length]!, 0.8));
    fill(sp, rbox(fx - tw / 2, shoulderY, fx + tw / 2, torsoBottom, 0.05 * H), scale(shirt, 1.1), { bottom: scale(shirt, 0.85) });
    leg(-a, trousers);
    if (look.bag === 2) fill(sp, rbox(fx - 0.09 * H, hipY - 0.1 * H, fx + 0.05 * H, hipY + 0.02 * H, 0.02 * H), [70, 50, 36]);
    arm(a * 0.8, shirt);
  } else {
    const tw = 0.3 * H * look.build;
    const towards = pose.hy > 0;
    const lift = 0.045 * H;
    for (const side of [-1, 1]) {
      const up = pose.moving ? Math.max(0, side * swing) * lift : 0;
      const lx = fx + side * 0.055 * H * look.build;
      const ey = fy - 0.03 * H - up;
      fill(sp, capsule(lx, hipY, lx, ey, legW), side < 0 ? far(trousers) : trousers);
      fill(sp, ellipse(lx, ey + 0.005 * H, Math.max(0.9, 0.04 * H), Math.max(0.8, 0.022 * H)), shoe);
    }
    fill(sp, rbox(fx - tw / 2, shoulderY, fx + tw / 2, torsoBottom, 0.06 * H), scale(shirt, 1.08), { bottom: scale(shirt, 0.85) });
    if (look.bag === 1 && !towards) fill(sp, rbox(fx - tw * 0.36, shoulderY + 0.05 * H, fx + tw * 0.36, shoulderY + 0.28 * H, 0.04 * H), scale(pal.trousers[(look.trousers + 3) % pal.trousers.length]!, 0.8));
    for (const side of [-1, 1]) {
      const ax = fx + side * (tw / 2 + armW * 0.3);
      const reach = 0.34 * H + (pose.moving ? side * swing * 0.03 * H : 0);
      fill(sp, capsule(ax, shoulderY + 0.04 * H, ax + side * 0.02 * H, shoulderY + reach, armW), scale(shirt, 0.92));
      fill(sp, circle(ax + side * 0.02 * H, shoulderY + reach, armW * 0.55), skin);
    }
  }
  // Neck, head, hair.
  fill(sp, rbox(fx - 0.03 * H, headY + headR * 0.6, fx + 0.03 * H, shoulderY + 0.02 * H), scale(skin, 0.9));
  const hx = frontal ? fx : fx + f * 0.012 * H;
  if (look.longHair) fill(sp, rbox(hx - (frontal ? headR * 1.05 : f * headR * 0.2 + headR * 0.9), headY - headR * 0.3, hx + (frontal ? headR * 1.05 : -f * headR * 1.1 + headR * 0.1), shoulderY + 0.07 * H, headR * 0.5), hair);
  fill(sp, circle(hx, headY, headR), skin);
  if (frontal && pose.hy < 0) fill(sp, circle(hx, headY - headR * 0.05, headR * 1.02), hair);
  else if (frontal) fill(sp, ellipse(hx, headY - headR * 0.45, headR * 1.02, headR * 0.62), hair);
  else fill(sp, ellipse(hx - f * headR * 0.28, headY - headR * 0.3, headR * 0.98, headR * 0.8), hair);
}

export function drawCar(sp: Sprite, fx: number, fy: number, px: number, look: CarLook, pose: Pose, pal: Palette, night: boolean): void {
  const body = CAR_BODIES[look.body]!;
  const L = look.length * px;
  const Hc = L * body.hr;
  const f = pose.hx >= 0 ? 1 : -1;
  const X = (u: number) => fx + f * (u - 0.5) * L;
  const rw = body.wheel * L;
  const top = fy - Hc;
  const belt = fy - Hc * body.belt;
  const bottom = fy - rw * 0.45;
  const paint = pal.paint[look.paint]!;
  const dark: RGB = [26, 26, 28];
  // Lower body: boot, sides, sloping bonnet.
  fill(sp, poly([X(0), bottom, X(0), belt + 0.08 * Hc, X(0.03), belt, X(0.86), belt + 0.03 * Hc, X(0.99), belt + 0.16 * Hc, X(1), bottom]), scale(paint, 1.12), { bottom: scale(paint, 0.68) });
  // Cabin and windows.
  const [b0, r0, r1, b1] = body.cabin;
  fill(sp, poly([X(b0), belt + 1, X(r0), top, X(r1), top, X(b1), belt + 1]), scale(paint, 1.05));
  const inset = 0.13 * (belt - top);
  const glass = poly([X(b0 + 0.025), belt, X(r0 + 0.02), top + inset, X(r1 - 0.015), top + inset, X(b1 - 0.035), belt]);
  fill(sp, glass, night ? [30, 34, 40] : [150, 166, 182], { bottom: night ? [16, 18, 22] : [42, 50, 60] });
  const pillar = (b0 + b1) / 2 + 0.02;
  fill(sp, rbox(X(pillar) - 0.018 * L, top + inset * 0.5, X(pillar) + 0.018 * L, belt + 0.5), scale(paint, 0.95));
  // Beltline highlight, door lines, handle, mirror.
  fill(sp, capsule(X(0.03), belt + 0.6, X(0.86), belt + 0.03 * Hc + 0.6, Math.max(0.8, 0.012 * L)), mixRgb(paint, [255, 255, 255], 0.35), { alpha: 0.7 });
  for (const u of look.body === 3 ? [0.62] : [0.33, 0.6]) fill(sp, capsule(X(u), belt + 1, X(u), bottom - 0.15 * Hc, Math.max(0.6, 0.007 * L)), scale(paint, 0.55), { alpha: 0.8 });
  fill(sp, rbox(X(b1) - 0.015 * L, belt - 0.03 * Hc, X(b1) + 0.02 * L, belt + 0.05 * Hc, 0.5), scale(paint, 0.8));
  // Lights and bumpers.
  const lightY0 = belt + 0.1 * Hc;
  const lightY1 = belt + 0.2 * Hc;
  fill(sp, rbox(X(0.955), lightY0 + 0.02 * Hc, X(1.0), lightY1, 0.01 * L), night ? [255, 248, 220] : [226, 222, 204], { emissive: night });
  fill(sp, rbox(X(0), lightY0 - 0.03 * Hc, X(0.028), lightY1, 0.005 * L), night ? [255, 46, 36] : [170, 24, 28], { emissive: night });
  fill(sp, rbox(X(0) - f * 0.004 * L, bottom - 0.12 * Hc, X(0.1), bottom, 0.01 * L), [40, 40, 44]);
  fill(sp, rbox(X(0.9), bottom - 0.12 * Hc, X(1) + f * 0.004 * L, bottom, 0.01 * L), [40, 40, 44]);
  // Wheels: dark arches, tyres, rims with spokes that turn.
  const turn = (f * pose.d) / (body.wheel * look.length);
  for (const u of [0.2, 0.8]) {
    const wx = X(u);
    const wy = fy - rw;
    fill(sp, clipBelow(circle(wx, wy, rw * 1.18), bottom), [18, 18, 20]);
    fill(sp, circle(wx, wy, rw), dark);
    const rim: RGB = look.darkRims ? [70, 70, 74] : [160, 162, 168];
    fill(sp, circle(wx, wy, rw * 0.58), rim);
    if (rw > 4) {
      for (let k = 0; k < 5; k++) {
        const an = turn + (k * 2 * Math.PI) / 5;
        fill(sp, capsule(wx + Math.cos(an) * rw * 0.15, wy + Math.sin(an) * rw * 0.15, wx + Math.cos(an) * rw * 0.5, wy + Math.sin(an) * rw * 0.5, Math.max(0.6, rw * 0.12)), scale(rim, 0.6));
      }
    }
    fill(sp, circle(wx, wy, Math.max(0.6, rw * 0.16)), scale(rim, 0.8));
  }
}

// --- bicycles

export function drawBike(sp: Sprite, fx: number, fy: number, px: number, look: BikeLook, pose: Pose, pal: Palette): void {
  const r = look.wheel * px;
  const f = pose.hx >= 0 ? 1 : -1;
  const frame = pal.frame[look.frame]!;
  const tyre: RGB = [24, 24, 26];
  const metal: RGB = [150, 152, 156];
  const rear = { x: fx - f * 1.62 * r, y: fy - r };
  const front = { x: fx + f * 1.62 * r, y: fy - r };
  const bb = { x: fx - f * 0.1 * r, y: fy - r * 0.82 };
  const seat = { x: fx - f * 0.66 * r, y: fy - 2.6 * r };
  const head = { x: fx + f * 1.12 * r, y: fy - 2.5 * r };
  const fw = Math.max(1, 0.14 * r);
  const turn = (f * pose.d) / look.wheel;
  for (const w of [rear, front]) {
    fill(sp, ring(w.x, w.y, r, Math.max(1.1, 0.2 * r)), tyre);
    fill(sp, ring(w.x, w.y, r * 0.8, Math.max(0.5, 0.07 * r)), metal, { alpha: 0.9 });
    for (let k = 0; k < 3; k++) {
      const an = turn + (k * Math.PI) / 3;
      fill(sp, capsule(w.x - Math.cos(an) * r * 0.78, w.y - Math.sin(an) * r * 0.78, w.x + Math.cos(an) * r * 0.78, w.y + Math.sin(an) * r * 0.78, 0.6), metal, { alpha: 0.35 });
    }
    fill(sp, circle(w.x, w.y, Math.max(0.7, 0.12 * r)), metal);
  }
  if (look.city) fill(sp, clipBelow(ring(rear.x, rear.y, r * 1.08, Math.max(0.7, 0.1 * r)), rear.y - 0.1 * r), frame);
  const tube = (a: { x: number; y: number }, b: { x: number; y: number }, c: RGB = frame, w = fw) => fill(sp, capsule(a.x, a.y, b.x, b.y, w), c);
  tube(rear, bb);
  tube(rear, seat);
  tube(seat, bb);
  if (look.city) tube(bb, { x: head.x - f * 0.1 * r, y: head.y + 0.55 * r });
  else tube({ x: seat.x + f * 0.05 * r, y: seat.y + 0.1 * r }, { x: head.x, y: head.y + 0.15 * r });
  tube(bb, { x: head.x, y: head.y + 0.3 * r });
  tube(head, front, scale(frame, 0.85));
  // Crank and pedals, turning.
  const crank = turn * 0.6;
  const pedal = { x: bb.x + Math.cos(crank) * 0.42 * r, y: bb.y + Math.sin(crank) * 0.42 * r };
  fill(sp, circle(bb.x, bb.y, Math.max(0.9, 0.2 * r)), [60, 60, 64]);
  tube(bb, pedal, [50, 50, 54], Math.max(0.8, 0.09 * r));
  // Saddle, stem and handlebar.
  tube(seat, { x: seat.x, y: seat.y - 0.18 * r }, metal, Math.max(0.8, 0.08 * r));
  fill(sp, capsule(seat.x - f * 0.32 * r, seat.y - 0.22 * r, seat.x + f * 0.22 * r, seat.y - 0.2 * r, Math.max(1, 0.2 * r)), [30, 28, 26]);
  const bar = { x: head.x - f * 0.12 * r, y: head.y - 0.45 * r };
  tube(head, bar, metal, Math.max(0.8, 0.09 * r));
  tube(bar, { x: bar.x - f * (look.city ? 0.5 : 0.3) * r, y: bar.y + (look.city ? -0.05 : 0.12) * r }, [36, 36, 38], Math.max(0.9, 0.11 * r));
  if (look.basket) fill(sp, rbox(head.x + f * 0.05 * r, head.y - 0.25 * r, head.x + f * 0.75 * r, head.y + 0.35 * r, 0.1 * r), [120, 96, 60]);
}

// --- props (static occluders), drawn in depth order like objects

export function drawLampPost(sp: Sprite, fx: number, fy: number, px: number, style: number, night: boolean): void {
  const H = 226 * px;
  const w = Math.max(1.6, 3.4 * px);
  const pole: RGB = style === 0 ? [52, 56, 58] : [150, 154, 158];
  fill(sp, rbox(fx - w * 0.9, fy - 6 * px, fx + w * 0.9, fy), scale(pole, 0.8));
  fill(sp, rbox(fx - w / 2, fy - H, fx + w / 2, fy), scale(pole, 1.2), { bottom: scale(pole, 0.8) });
  fill(sp, capsule(fx, fy - H + w, fx + 34 * px, fy - H - 2 * px, Math.max(1.1, 2.4 * px)), pole);
  fill(sp, rbox(fx + 28 * px, fy - H - 4 * px, fx + 42 * px, fy - H + 1.5 * px, 1.5 * px), pole);
  fill(sp, rbox(fx + 30 * px, fy - H + 1 * px, fx + 40 * px, fy - H + 3 * px, 1 * px), night ? [255, 230, 170] : [210, 210, 200], { emissive: night });
}

export function drawBin(sp: Sprite, fx: number, fy: number, px: number, style: number): void {
  const c: RGB = style === 0 ? [38, 70, 48] : [120, 122, 126];
  fill(sp, rbox(fx - 7.5 * px, fy - 24 * px, fx + 7.5 * px, fy, 1.5 * px), scale(c, 1.15), { bottom: scale(c, 0.75) });
  fill(sp, rbox(fx - 8.5 * px, fy - 27 * px, fx + 8.5 * px, fy - 23 * px, 1.5 * px), scale(c, 0.8));
}

export function drawTrunk(sp: Sprite, fx: number, fy: number, px: number, style: number): void {
  const bark: RGB = style === 0 ? [88, 68, 48] : [196, 190, 178];
  const w = 8 * px;
  const ox = sp.x0;
  const oy = sp.y0;
  const texture = style === 0 ? (x: number, y: number) => (0.75 + 0.45 * fbm((x + ox) * 0.9, (y + oy) * 0.06, 61)) * (1 - 0.3 * Math.abs((x - fx) / (w * 1.3))) : (x: number, y: number) => (hashUnit(Math.floor((y + oy) / 3), Math.floor((x + ox) / 3), 62) > 0.85 ? 0.35 : 1) * (1 - 0.3 * Math.abs((x - fx) / (w * 1.3)));
  fill(sp, poly([fx - w * 1.3, fy, fx - w * 0.5, fy - 280 * px, fx + w * 0.5, fy - 280 * px, fx + w * 1.3, fy]), bark, { texture });
  // The crown, mostly above the frame.
  const leaf: RGB = style === 0 ? [52, 86, 36] : [96, 120, 52];
  const leaves = (x: number, y: number) => 0.6 + 0.7 * fbm((x + ox) * 0.45, (y + oy) * 0.45, 64);
  for (const [dx, dy, rx, ry] of [[-40, 250, 42, 30], [30, 262, 46, 32], [0, 290, 60, 40], [-10, 236, 26, 16], [52, 244, 22, 16]] as const) {
    fill(sp, ellipse(fx + dx * px, fy - dy * px, rx * px, ry * px), leaf, { texture: leaves });
  }
}

export function drawBush(sp: Sprite, fx: number, fy: number, px: number, style: number): void {
  const leaf: RGB = style === 0 ? [46, 92, 38] : [66, 84, 40];
  const ox = sp.x0;
  const oy = sp.y0;
  const texture = (x: number, y: number) => 0.7 + 0.6 * fbm((x + ox) * 0.5, (y + oy) * 0.5, 63) * (1.15 - (0.5 * (fy - y)) / (30 * px));
  fill(sp, ellipse(fx - 8 * px, fy - 13 * px, 16 * px, 13 * px), scale(leaf, 0.9), { texture });
  fill(sp, ellipse(fx + 9 * px, fy - 12 * px, 15 * px, 12 * px), leaf, { texture });
  fill(sp, ellipse(fx, fy - 17 * px, 14 * px, 13 * px), scale(leaf, 1.1), { texture });
}
