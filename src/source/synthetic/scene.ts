/**
 * SyntheticScene: renders a frame at a stream time (compositing actors and props far to near, the
 * domain's transform, rain, headlights, noise) and its ground truth from the ownership mask.
 */
import type { DomainShift, SceneOptions, SyntheticBox, SyntheticFrame, SyntheticSceneName } from './types.js';
import { hash3, hypot, Rng } from './random.js';
import { depthScale, REF_H, toScreenX, toScreenY } from './view.js';
import { CAR_BODIES, halfWidth, samplePose, type Actor, type Pose } from './actors.js';
import { SCENES, type SceneDef } from './scenes.js';
import { drawBike, drawCar, drawPerson, Sprite } from './draw.js';
import { surfaceAffine, type Affine } from './domains.js';
import { noise, renderContext, vignette, type PropSprite } from './render-context.js';
import { Simulation } from './simulation.js';
import { validateSceneOptions } from './options.js';


interface Drawn {
  actor: Actor;
  slot: number;
  sprite: Sprite;
  total: number;
}

export class SyntheticScene {
  readonly options: SceneOptions;
  private readonly def: SceneDef;
  private readonly sim: Simulation;
  private readonly work: Float32Array;
  private readonly mask: Uint8Array;
  private readonly sprites: Sprite[] = [];
  private readonly phase: [number, number];
  private cursor = 0;

  constructor(options: SceneOptions) {
    validateSceneOptions(options);
    this.options = { ...options, domain: [...options.domain], shift: options.shift ? { at: options.shift.at, domain: [...options.shift.domain] } : undefined };
    this.def = SCENES[options.scene as SyntheticSceneName];
    const wc = (REF_H * options.width) / options.height;
    this.sim = new Simulation(this.def, options.seed >>> 0, wc);
    this.work = new Float32Array(options.width * options.height * 3);
    this.mask = new Uint8Array(options.width * options.height);
    const r = new Rng(hash3(options.seed, 0x11ed, 0));
    this.phase = [r.range(0, 2 * Math.PI), r.range(0, 2 * Math.PI)];
  }

  /** The domain in force at stream time t. */
  domainAt(time: number): DomainShift[] {
    const shift = this.options.shift;
    return shift && time >= shift.at ? shift.domain : this.options.domain;
  }

  /** The next frame: 0, 1, 2, ... */
  next(): SyntheticFrame {
    return this.frameAt(this.cursor++);
  }

  /** Skips `frames` frames of next() without rendering them (cheap: the scene is a function of time). */
  skip(frames = 1): void {
    this.cursor += Math.max(0, Math.floor(frames));
  }

  /** Frame `index` (time index / fps). Going forward is cheap; going back re-simulates from the start. */
  frameAt(index: number): SyntheticFrame {
    const { rgb, boxes } = this.render(index, true);
    return { index, time: index / this.options.fps, width: this.options.width, height: this.options.height, rgb, boxes };
  }

  /** Frame `index` without its objects: same background, lighting, rain and noise. */
  backgroundAt(index: number): Buffer {
    return this.render(index, false).rgb;
  }

  private render(index: number, withObjects: boolean): { rgb: Buffer; boxes: SyntheticBox[] } {
    if (!Number.isInteger(index) || index < 0) throw new Error(`synthetic scene: frame index must be a whole number >= 0, not ${index}`);
    const { width: W, height: H, fps, seed } = this.options;
    const time = index / fps;
    const ctx = renderContext(this.def, W, H, this.domainAt(time));
    const view = ctx.view;
    const frame = this.work;
    const mask = this.mask;
    frame.set(ctx.background);
    mask.fill(0);

    // Actors in view and props, far to near.
    const items: Array<{ depth: number; id: number; actor?: Actor; pose?: Pose; prop?: PropSprite }> = [];
    if (withObjects) {
      this.sim.advance(time);
      for (const actor of this.sim.actors) {
        const pose: Pose = { x: 0, y: 0, d: 0, moving: false, hx: 1, hy: 0 };
        if (!samplePose(actor, time, pose)) continue;
        const sx = toScreenX(view, pose.x);
        const half = halfWidth(actor.look) * depthScale(pose.y) * view.zoom * view.q + 4;
        if (sx + half < 0 || sx - half > W) continue;
        items.push({ depth: pose.y, id: actor.id, actor, pose });
      }
    }
    for (const prop of ctx.props) items.push({ depth: prop.def.y, id: 0, prop });
    items.sort((a, b) => a.depth - b.depth || a.id - b.id);

    const drawn: Drawn[] = [];
    for (const item of items) {
      if (item.prop) {
        composite(frame, mask, W, H, item.prop.sprite, 255, item.prop.affine, item.prop.emissiveAffine);
        continue;
      }
      const actor = item.actor!;
      const pose = item.pose!;
      const sprite = this.sprites[drawn.length] ?? (this.sprites[drawn.length] = new Sprite());
      const px = depthScale(pose.y) * view.zoom * view.q;
      const fx = toScreenX(view, pose.x);
      const fy = toScreenY(view, pose.y);
      const look = actor.look;
      const half = halfWidth(look) * px * 1.15 + 3;
      const tall = (look.kind === 'person' ? look.height : look.kind === 'car' ? look.length * CAR_BODIES[look.body]!.hr : look.wheel * 3.1) * px + 3;
      const x0 = Math.floor(fx - half);
      const y0 = Math.floor(fy - tall);
      sprite.reset(x0, y0, Math.ceil(fx + half) - x0 + 1, Math.ceil(fy) - y0 + 2);
      const lfx = fx - x0;
      const lfy = fy - y0;
      if (look.kind === 'person') drawPerson(sprite, lfx, lfy, px, look, pose, ctx.palette);
      else if (look.kind === 'car') drawCar(sprite, lfx, lfy, px, look, pose, ctx.palette, ctx.flags.night);
      else drawBike(sprite, lfx, lfy, px, look, pose, ctx.palette);
      // Shadow on the ground, then the object.
      const shadowW = look.kind === 'person' ? look.height * 0.17 : look.kind === 'car' ? look.length * 0.56 : look.wheel * 2.9;
      shade(frame, W, H, fx + 0.15 * shadowW * px, fy - 0.3 * px, shadowW * px, Math.max(1, shadowW * px * (look.kind === 'car' ? 0.09 : 0.2)), ctx.shadow);
      const slot = drawn.length + 1;
      const affine = surfaceAffine(ctx.flags, ctx.lamps, pose.x, pose.y, 30, view.wc, false);
      const emissive = surfaceAffine({ ...ctx.flags, night: false }, ctx.lamps, pose.x, pose.y, 0, view.wc, true);
      const total = composite(frame, mask, W, H, sprite, slot <= 254 ? slot : 0, affine, emissive);
      drawn.push({ actor, slot, sprite, total });
      if (ctx.flags.night && look.kind === 'car') headlightBeam(frame, W, H, fx, fy, look.length * px, pose.hx >= 0 ? 1 : -1);
    }

    const fr = new Rng(hash3(seed, index, 0xf4a3));
    if (ctx.flags.rain) rainStreaks(frame, W, H, fr, ctx.flags.night);

    // Lighting drift, vignette, sensor noise.
    const gain = ctx.flags.night ? 1 : 1 + 0.045 * Math.sin((2 * Math.PI * time) / 47 + this.phase[0]) + 0.02 * Math.sin((2 * Math.PI * time) / 9.3 + this.phase[1]);
    const table = noise();
    const tmask = table.length - 1;
    const offset = fr.int(table.length);
    const k = ctx.sigma / 32;
    const vig = vignette(W, H);
    const rgb = Buffer.allocUnsafe(W * H * 3);
    const out = new Uint8ClampedArray(rgb.buffer, rgb.byteOffset, rgb.length);
    for (let p = 0, i = 0; p < W * H; p++) {
      const g = vig[p]! * gain;
      out[i] = frame[i]! * g + table[(offset + i) & tmask]! * k;
      i++;
      out[i] = frame[i]! * g + table[(offset + i) & tmask]! * k;
      i++;
      out[i] = frame[i]! * g + table[(offset + i) & tmask]! * k;
      i++;
    }

    // Ground truth from the ownership mask.
    const boxes: SyntheticBox[] = [];
    for (const d of drawn) {
      if (d.slot > 254 || d.total === 0) continue;
      const sp = d.sprite;
      let count = 0;
      let minX = Infinity;
      let minY = Infinity;
      let maxX = -1;
      let maxY = -1;
      const ys = Math.max(0, sp.y0);
      const ye = Math.min(H, sp.y0 + sp.h);
      const xs = Math.max(0, sp.x0);
      const xe = Math.min(W, sp.x0 + sp.w);
      for (let y = ys; y < ye; y++) {
        const row = y * W;
        for (let x = xs; x < xe; x++) {
          if (mask[row + x] !== d.slot) continue;
          count++;
          if (x < minX) minX = x;
          if (x > maxX) maxX = x;
          if (y < minY) minY = y;
          if (y > maxY) maxY = y;
        }
      }
      if (count === 0) continue;
      boxes.push({ id: d.actor.id, label: d.actor.label, box: [minX, minY, maxX + 1, maxY + 1], visible: Math.round((Math.min(1, count / d.total)) * 1000) / 1000 });
    }
    boxes.sort((a, b) => a.id - b.id);
    return { rgb, boxes };
  }
}

/** Composites a sprite through a colour transform; returns its silhouette size (pixels >= 50 %). */
function composite(frame: Float32Array, mask: Uint8Array, W: number, H: number, sp: Sprite, slot: number, t: Affine, te: Affine): number {
  let total = 0;
  for (let ly = 0; ly < sp.h; ly++) {
    const fy = sp.y0 + ly;
    const inY = fy >= 0 && fy < H;
    for (let lx = 0; lx < sp.w; lx++) {
      const li = ly * sp.w + lx;
      const A = sp.a[li]!;
      if (A <= 0.002) continue;
      if (A >= 0.5) total++;
      const fx = sp.x0 + lx;
      if (!inY || fx < 0 || fx >= W) continue;
      const tr = sp.e[li] ? te : t;
      const pi = fy * W + fx;
      const o = pi * 3;
      const p = li * 3;
      const inv = 1 - A;
      frame[o] = frame[o]! * inv + sp.p[p]! * tr.m[0] + tr.a[0] * A;
      frame[o + 1] = frame[o + 1]! * inv + sp.p[p + 1]! * tr.m[1] + tr.a[1] * A;
      frame[o + 2] = frame[o + 2]! * inv + sp.p[p + 2]! * tr.m[2] + tr.a[2] * A;
      if (A >= 0.5 && slot > 0) mask[pi] = slot;
    }
  }
  return total;
}

/** Darkens an ellipse of the frame (a shadow on the ground). */
function shade(frame: Float32Array, W: number, H: number, cx: number, cy: number, rx: number, ry: number, strength: number): void {
  const x0 = Math.max(0, Math.floor(cx - rx));
  const x1 = Math.min(W - 1, Math.ceil(cx + rx));
  const y0 = Math.max(0, Math.floor(cy - ry));
  const y1 = Math.min(H - 1, Math.ceil(cy + ry));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const d = hypot((x + 0.5 - cx) / rx, (y + 0.5 - cy) / ry);
      if (d >= 1) continue;
      const k = 1 - strength * (1 - d * d);
      const o = (y * W + x) * 3;
      frame[o] = frame[o]! * k;
      frame[o + 1] = frame[o + 1]! * k;
      frame[o + 2] = frame[o + 2]! * k;
    }
  }
}

/** Light of the headlights on the road ahead of a car, and their glare. */
function headlightBeam(frame: Float32Array, W: number, H: number, fx: number, fy: number, L: number, f: number): void {
  const bx = fx + f * L * 1.05;
  const rx = L * 0.6;
  const ry = Math.max(2, L * 0.09);
  const x0 = Math.max(0, Math.floor(bx - rx));
  const x1 = Math.min(W - 1, Math.ceil(bx + rx));
  const y0 = Math.max(0, Math.floor(fy - ry * 1.5));
  const y1 = Math.min(H - 1, Math.ceil(fy + ry));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const d2 = ((x + 0.5 - bx) / rx) ** 2 + ((y + 0.5 - fy + ry * 0.3) / ry) ** 2;
      if (d2 >= 1) continue;
      const k = 70 * (1 - d2) * (1 - d2);
      const o = (y * W + x) * 3;
      frame[o] = frame[o]! + k;
      frame[o + 1] = frame[o + 1]! + k * 0.95;
      frame[o + 2] = frame[o + 2]! + k * 0.8;
    }
  }
  // Glare around the lamp itself.
  const gx = fx + f * L * 0.49;
  const gy = fy - L * 0.34 * 0.35;
  const gr = Math.max(2, L * 0.06);
  for (let y = Math.max(0, Math.floor(gy - 2 * gr)); y <= Math.min(H - 1, Math.ceil(gy + 2 * gr)); y++) {
    for (let x = Math.max(0, Math.floor(gx - 2 * gr)); x <= Math.min(W - 1, Math.ceil(gx + 2 * gr)); x++) {
      const d2 = ((x + 0.5 - gx) ** 2 + (y + 0.5 - gy) ** 2) / (gr * gr);
      const k = 90 * Math.exp(-d2);
      const o = (y * W + x) * 3;
      frame[o] = frame[o]! + k;
      frame[o + 1] = frame[o + 1]! + k;
      frame[o + 2] = frame[o + 2]! + k * 0.85;
    }
  }
}

function rainStreaks(frame: Float32Array, W: number, H: number, r: Rng, night: boolean): void {
  const n = Math.round((170 * W * H) / 76800);
  const unit = H / REF_H;
  const k = night ? 22 : 38;
  for (let i = 0; i < n; i++) {
    const x = r.range(-10, W + 10);
    const y = r.range(-10, H);
    const len = r.range(4, 12) * unit;
    const bright = k * r.range(0.5, 1);
    const steps = Math.ceil(len);
    for (let s = 0; s <= steps; s++) {
      const px = Math.floor(x - 0.25 * s);
      const py = Math.floor(y + s);
      if (px < 0 || px >= W || py < 0 || py >= H) continue;
      const o = (py * W + px) * 3;
      const a = bright * (1 - Math.abs(s / steps - 0.5));
      frame[o] = frame[o]! + a;
      frame[o + 1] = frame[o + 1]! + a;
      frame[o + 2] = frame[o + 2]! + a * 1.05;
    }
  }
}
