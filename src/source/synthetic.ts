/**
 * The synthetic camera: a seeded, deterministic renderer of scenes seen by a fixed camera, where
 * every frame comes with its exact ground truth, so that a detector can be trained and evaluated in
 * CI with no hand labelling.
 *
 * How it works
 * - The world is laid out in **canonical coordinates**: the picture of the unmoved camera at a height
 *   of 240 units (x from 0 to 240 * width / height). The ground is a plane seen by a level camera, so
 *   an object standing at canonical y has the size `depthScale(y) = (y - HORIZON) / (240 - HORIZON)`
 *   times its size at the bottom edge. A camera transform (`View`) maps canonical to frame pixels;
 *   the `moved` domain changes only that transform (zoom 1.15, shifted), so the ground line moves.
 * - Objects (actors) are spawned by per-lane Poisson processes whose rate follows a seeded "activity"
 *   level that changes every 15 s (busy spells, quiet spells with no new arrivals). Each actor gets
 *   its whole trajectory when it is spawned: key points (time, x, y) it moves between, with waits
 *   (a parked car, a person waiting at the kerb) and eased starts and stops for cars. Positions are a
 *   function of time only, so what is where does not depend on the frame rate or on how frames are
 *   requested. The simulation starts 40 s before stream time 0, so the first frame is already busy.
 * - Each frame: the static background of the current domain (precomputed once per domain, size and
 *   scene, 2x2 supersampled) is copied; actors and static props (a lamp post, a bin, a tree, a bush)
 *   are drawn far to near (by canonical foot y) into small anti-aliased sprites, each with a ground
 *   shadow, and composited through the domain's colour transform (night lighting, rain contrast, fog
 *   by distance); rain streaks and headlight beams are added; then lighting drift (clouds), a
 *   vignette and Gaussian sensor noise from a precomputed table.
 * - Ground truth comes from an ownership mask written while compositing (a pixel belongs to the
 *   nearest object covering it at >= 50 %): an object's `box` is the extent of the pixels it owns in
 *   the frame ([x1, y1, x2, y2], whole pixels, x2/y2 exclusive, so always inside the frame), and
 *   `visible` is the number of those pixels over the pixels of its whole silhouette (drawn unclipped
 *   in its own sprite): it is below 1 when something nearer (an object or a prop) hides part of it or
 *   part of it is outside the frame. Objects with no visible pixel are not listed.
 *
 * Classes: `person` (tall body, head, alternating legs and swinging arms; seen from the side when
 * walking across, from the front or back when walking towards or away from the camera), `car` (side
 * view: body, cabin with windows, two wheels; sedan, hatchback, SUV and van shapes) and `bicycle`.
 * Bicycles have **no rider**: the box is the bicycle alone (two wheels, frame, saddle, handlebar), so
 * a bicycle never looks like a person. Riderless bicycles ride along the bike lane / path; on
 * pavements a bicycle is often pushed by a person walking beside it, and then the person and the
 * bicycle are two objects (`person` and `bicycle`, two boxes), as a camera annotator would label them.
 *
 * Determinism: same options → byte-identical frames (seeded mulberry32 and integer hashes, no
 * Math.random, no clock). The background depends on the scene, size and domain only, not the seed:
 * the seed chooses the traffic (who comes when, looks, speeds, stops), the noise and the lighting.
 */
import { SourceError } from '../errors.js';

export const SYNTHETIC_CLASSES = ['person', 'car', 'bicycle'] as const;
export type SyntheticLabel = (typeof SYNTHETIC_CLASSES)[number];

/** `day` is no shift. The others change appearance only (except `moved`, which moves the camera). */
export const DOMAIN_SHIFTS = ['day', 'night', 'rain', 'fog', 'palette', 'moved', 'background', 'decoys'] as const;
export type DomainShift = (typeof DOMAIN_SHIFTS)[number];

export const SYNTHETIC_SCENES = ['street', 'yard'] as const;
export type SyntheticSceneName = (typeof SYNTHETIC_SCENES)[number];

export interface SceneOptions {
  scene: string;
  seed: number;
  width: number;
  height: number;
  fps: number;
  domain: DomainShift[];
  /** From stream time `at` (seconds) on, the domain is `domain` instead (it replaces, not adds). */
  shift?: { at: number; domain: DomainShift[] };
  /** Length of the stream for sources (`seconds=` in a URL); the scene itself never ends. */
  seconds?: number;
}

export const DEFAULT_SCENE_OPTIONS: Readonly<SceneOptions> = Object.freeze({ scene: 'street', seed: 1, width: 320, height: 240, fps: 10, domain: [] });

export interface SyntheticBox {
  /** Stable per object for the whole stream, never reused. */
  id: number;
  label: SyntheticLabel;
  /** Visible extent in frame pixels, [x1, y1, x2, y2], x2/y2 exclusive, clipped to the frame. */
  box: [number, number, number, number];
  /** Fraction of the object's silhouette that is in the frame and not hidden (0..1, 3 decimals). */
  visible: number;
}

export interface SyntheticFrame {
  index: number;
  /** Stream seconds: index / fps. */
  time: number;
  width: number;
  height: number;
  /** width * height * 3 bytes, RGB. */
  rgb: Buffer;
  /** Every object with at least one visible pixel, by id. */
  boxes: SyntheticBox[];
}

// ---------------------------------------------------------------------------------------------
// Random numbers and noise

function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

function hash3(a: number, b: number, c: number): number {
  return mix32(mix32(mix32(a | 0) ^ (b | 0)) ^ (c | 0));
}

/** A hash of integer coordinates in [0, 1). */
function hashUnit(a: number, b: number, c: number): number {
  return hash3(a, b, c) / 4294967296;
}

/** mulberry32 with a few helpers. */
class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  sign(): 1 | -1 {
    return this.next() < 0.5 ? -1 : 1;
  }
  exp(rate: number): number {
    return -Math.log(1 - this.next()) / rate;
  }
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

function valueNoise(x: number, y: number, seed: number): number {
  const xi = Math.floor(x);
  const yi = Math.floor(y);
  const fx = x - xi;
  const fy = y - yi;
  const sx = fx * fx * (3 - 2 * fx);
  const sy = fy * fy * (3 - 2 * fy);
  const a = hashUnit(xi, yi, seed);
  const b = hashUnit(xi + 1, yi, seed);
  const c = hashUnit(xi, yi + 1, seed);
  const d = hashUnit(xi + 1, yi + 1, seed);
  return a + (b - a) * sx + (c - a) * sy + (a - b - c + d) * sx * sy;
}

function fbm(x: number, y: number, seed: number, octaves = 3): number {
  let sum = 0;
  let amp = 0.5;
  let norm = 0;
  for (let o = 0; o < octaves; o++) {
    sum += amp * valueNoise(x, y, seed + o * 131);
    norm += amp;
    x *= 2.03;
    y *= 2.01;
    amp *= 0.5;
  }
  return sum / norm;
}

const hypot = (x: number, y: number) => Math.sqrt(x * x + y * y);
const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
const smooth = (e0: number, e1: number, v: number) => {
  const t = clamp01((v - e0) / (e1 - e0));
  return t * t * (3 - 2 * t);
};
const frac = (v: number) => v - Math.floor(v);
/** Distance (in units of v) to the nearest integer. */
const toInteger = (v: number) => Math.abs(v - Math.round(v));

type RGB = readonly [number, number, number];
const scale = (c: RGB, k: number): RGB => [c[0] * k, c[1] * k, c[2] * k];
const mixRgb = (a: RGB, b: RGB, t: number): RGB => [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];

// ---------------------------------------------------------------------------------------------
// Canonical geometry

/** Canonical y of the vanishing line (the horizon of the ground plane). */
const HORIZON = 20;
const REF_H = 240;
/** Canonical focal length, for depth differences on the ground (world units: canonical px at scale 1). */
const FOCAL = 277;

/** Size of an object standing at canonical y, relative to one standing at the bottom edge. */
export function depthScale(y: number): number {
  return (y - HORIZON) / (REF_H - HORIZON);
}

interface View {
  /** Frame pixels per canonical unit, without the camera zoom. */
  q: number;
  zoom: number;
  /** Frame-pixel offset of the moved camera. */
  ox: number;
  oy: number;
  /** Canonical width. */
  wc: number;
  width: number;
  height: number;
}

function makeView(width: number, height: number, moved: boolean): View {
  const q = height / REF_H;
  return { q, zoom: moved ? 1.15 : 1, ox: moved ? -0.08 * width : 0, oy: moved ? -0.05 * height : 0, wc: (REF_H * width) / height, width, height };
}

const toScreenX = (v: View, cx: number) => (cx - v.wc / 2) * v.zoom * v.q + v.width / 2 + v.ox;
const toScreenY = (v: View, cy: number) => (cy - REF_H / 2) * v.zoom * v.q + v.height / 2 + v.oy;
const toCanonX = (v: View, sx: number) => (sx - v.width / 2 - v.ox) / (v.zoom * v.q) + v.wc / 2;
const toCanonY = (v: View, sy: number) => (sy - v.height / 2 - v.oy) / (v.zoom * v.q) + REF_H / 2;

// ---------------------------------------------------------------------------------------------
// Palettes: `palette` swaps the clothes, paints and bicycle frames for a disjoint, vivid set.

interface Palette {
  shirt: readonly RGB[];
  trousers: readonly RGB[];
  shoes: readonly RGB[];
  paint: readonly RGB[];
  frame: readonly RGB[];
}

const NORMAL_PALETTE: Palette = {
  shirt: [[38, 48, 88], [30, 30, 33], [118, 118, 124], [150, 38, 40], [212, 212, 206], [186, 166, 126], [88, 98, 60], [108, 74, 50], [70, 94, 138], [40, 78, 56], [150, 150, 170], [90, 40, 60]],
  trousers: [[48, 66, 108], [28, 28, 32], [86, 86, 92], [146, 132, 98], [86, 62, 44], [60, 60, 70], [36, 44, 70], [120, 112, 100]],
  shoes: [[25, 24, 24], [60, 44, 34], [200, 200, 196], [70, 70, 74]],
  paint: [[224, 224, 220], [168, 171, 176], [24, 24, 27], [78, 80, 85], [30, 44, 88], [146, 26, 30], [30, 68, 50], [198, 188, 158], [48, 88, 156], [110, 110, 104]],
  frame: [[22, 22, 24], [150, 30, 34], [40, 70, 140], [170, 172, 176], [40, 90, 60], [220, 220, 214], [100, 96, 90], [60, 40, 30]],
};

const SHIFTED_PALETTE: Palette = {
  shirt: [[222, 40, 182], [150, 232, 40], [252, 132, 22], [30, 212, 222], [242, 222, 30], [122, 40, 202], [252, 152, 192], [0, 152, 142], [252, 102, 90], [180, 255, 160], [255, 200, 120], [90, 120, 255]],
  trousers: [[200, 60, 162], [232, 202, 52], [40, 182, 92], [252, 122, 52], [122, 202, 232], [170, 90, 230], [255, 90, 140], [90, 220, 200]],
  shoes: [[240, 60, 60], [60, 200, 240], [250, 220, 60], [150, 80, 220]],
  paint: [[242, 122, 22], [236, 202, 22], [132, 212, 42], [202, 32, 152], [22, 192, 212], [112, 52, 182], [242, 132, 182], [52, 222, 162], [255, 82, 62], [160, 112, 255]],
  frame: [[255, 120, 0], [255, 0, 160], [0, 220, 120], [250, 240, 0], [0, 200, 255], [170, 0, 255], [255, 90, 90], [120, 255, 60]],
};

const SKIN: readonly RGB[] = [[236, 202, 172], [212, 166, 132], [174, 122, 92], [124, 84, 58], [92, 62, 42], [226, 184, 150]];
const HAIR: readonly RGB[] = [[28, 24, 20], [68, 48, 30], [118, 88, 50], [182, 160, 118], [150, 148, 146], [40, 30, 26]];

// ---------------------------------------------------------------------------------------------
// Actors and their trajectories

interface PersonLook {
  kind: 'person';
  /** Height in world units (canonical px at scale 1). */
  height: number;
  build: number;
  shirt: number;
  trousers: number;
  shoes: number;
  skin: number;
  hair: number;
  coat: boolean;
  longHair: boolean;
  /** 0 none, 1 backpack, 2 shoulder bag. */
  bag: 0 | 1 | 2;
  /** A mannequin: skin and hair of this plastic colour (`decoys`). */
  plastic?: RGB;
}

interface CarLook {
  kind: 'car';
  /** Length in world units. */
  length: number;
  body: number;
  paint: number;
  darkRims: boolean;
}

interface BikeLook {
  kind: 'bicycle';
  /** Wheel radius in world units. */
  wheel: number;
  frame: number;
  city: boolean;
  basket: boolean;
}

type Look = PersonLook | CarLook | BikeLook;

interface Key {
  t: number;
  x: number;
  y: number;
  /** World distance travelled since the start (drives legs and wheels). */
  d: number;
  /** Direction of travel of the segment ending here (of the last move, for a wait). */
  hx: number;
  hy: number;
  ease?: 'in' | 'out';
  still?: boolean;
}

interface Actor {
  id: number;
  label: SyntheticLabel;
  look: Look;
  keys: Key[];
  t0: number;
  t1: number;
  cursor: number;
}

interface Pose {
  x: number;
  y: number;
  d: number;
  moving: boolean;
  hx: number;
  hy: number;
}

class Path {
  readonly keys: Key[];
  constructor(t: number, x: number, y: number) {
    this.keys = [{ t, x, y, d: 0, hx: 1, hy: 0 }];
  }
  get end(): Key {
    return this.keys[this.keys.length - 1]!;
  }
  /** Moves to (x, y) at `speed` world units per second; eased segments take twice as long. */
  to(x: number, y: number, speed: number, ease?: 'in' | 'out'): this {
    const k = this.end;
    const dx = x - k.x;
    const dy = y - k.y;
    const dist = hypot(dx, dy);
    if (dist < 1e-6) return this;
    const world = dist / depthScale((k.y + y) / 2);
    const duration = (world / speed) * (ease ? 2 : 1);
    if (this.keys.length === 1) {
      k.hx = dx / dist;
      k.hy = dy / dist;
    }
    this.keys.push({ t: k.t + duration, x, y, d: k.d + world, hx: dx / dist, hy: dy / dist, ease });
    return this;
  }
  wait(seconds: number): this {
    const k = this.end;
    this.keys.push({ t: k.t + seconds, x: k.x, y: k.y, d: k.d, hx: k.hx, hy: k.hy, still: true });
    return this;
  }
  /** The same timing, offset in space (a person pushing a bicycle beside it). */
  offset(dx: number, dy: number): Path {
    const p = new Path(0, 0, 0);
    p.keys.length = 0;
    for (const k of this.keys) p.keys.push({ ...k, x: k.x + dx * Math.sign(k.hx || 1), y: k.y + dy });
    return p;
  }
}

function samplePose(actor: Actor, t: number, out: Pose): boolean {
  const ks = actor.keys;
  if (t < actor.t0 || t > actor.t1) return false;
  let i = actor.cursor;
  if (i >= ks.length - 1 || ks[i]!.t > t) i = 0;
  while (i < ks.length - 2 && ks[i + 1]!.t <= t) i++;
  actor.cursor = i;
  const a = ks[i]!;
  const b = ks[i + 1]!;
  let u = b.t > a.t ? (t - a.t) / (b.t - a.t) : 1;
  if (b.ease === 'out') u = 1 - (1 - u) * (1 - u);
  else if (b.ease === 'in') u = u * u;
  out.x = a.x + (b.x - a.x) * u;
  out.y = a.y + (b.y - a.y) * u;
  out.d = a.d + (b.d - a.d) * u;
  out.moving = !b.still;
  out.hx = b.hx;
  out.hy = b.hy;
  return true;
}

function personLook(r: Rng): PersonLook {
  const child = r.chance(0.06);
  return {
    kind: 'person',
    height: child ? r.range(50, 62) : r.range(72, 90),
    build: r.range(0.88, 1.15),
    shirt: r.int(NORMAL_PALETTE.shirt.length),
    trousers: r.int(NORMAL_PALETTE.trousers.length),
    shoes: r.int(NORMAL_PALETTE.shoes.length),
    skin: r.int(SKIN.length),
    hair: r.int(HAIR.length),
    coat: r.chance(0.25),
    longHair: r.chance(0.3),
    bag: r.chance(0.2) ? 1 : r.chance(0.15) ? 2 : 0,
  };
}

function carLook(r: Rng): CarLook {
  const body = r.int(CAR_BODIES.length);
  return { kind: 'car', length: CAR_BODIES[body]!.length * r.range(0.93, 1.07), body, paint: r.int(NORMAL_PALETTE.paint.length), darkRims: r.chance(0.4) };
}

function bikeLook(r: Rng): BikeLook {
  const city = r.chance(0.4);
  return { kind: 'bicycle', wheel: r.range(11.4, 12.6), frame: r.int(NORMAL_PALETTE.frame.length), city, basket: city && r.chance(0.5) };
}

/** Half the width of an actor in world units (for spawning just outside the frame). */
function halfWidth(look: Look): number {
  return look.kind === 'person' ? look.height * 0.3 : look.kind === 'car' ? look.length / 2 : look.wheel * 2.8;
}

// ---------------------------------------------------------------------------------------------
// Scenes: traffic streams, backgrounds, props and lamps

interface World {
  wc: number;
  add(label: SyntheticLabel, look: Look, path: Path): void;
}

interface Stream {
  /** Spawns per second at activity 1. */
  rate: number;
  spawn(t: number, r: Rng): void;
}

interface Lamp {
  /** Canonical position of the light. */
  x: number;
  y: number;
  /** Canonical y of the ground below it (its depth). */
  footY: number;
  strength: number;
}

interface PropDef {
  /** Canonical foot position (depth order). */
  x: number;
  y: number;
  draw(sp: Sprite, fx: number, fy: number, px: number, style: number, night: boolean): void;
  /** Half width and height in world units. */
  halfW: number;
  height: number;
}

interface BgSample {
  r: number;
  g: number;
  b: number;
  /** Canonical y of the ground at the depth of this surface (fog and lamp light). */
  depth: number;
  /** Height above the ground in world units (lamp light). */
  lift: number;
  /** Light of its own (lit windows, the night sky): not darkened at night. */
  emissive: boolean;
}

interface BgFlags {
  night: boolean;
  overcast: boolean;
  style: number;
}

interface SceneDef {
  name: SyntheticSceneName;
  streams(world: World): Stream[];
  background(style: number, wc: number): (cx: number, cy: number, flags: BgFlags, out: BgSample) => void;
  props(wc: number): PropDef[];
  /** `decoys`: person-shaped props (shop mannequins) that are not people, so not in the ground truth. */
  decoys(wc: number): PropDef[];
  lamps(style: number, wc: number): Lamp[];
}

/** Where an actor enters and leaves: just outside the frame (also the moved camera's frame). */
function edges(world: World, look: Look, y: number, dir: number): { from: number; to: number } {
  const m = halfWidth(look) * depthScale(y) + 0.12 * world.wc + 4;
  return dir > 0 ? { from: -m, to: world.wc + m } : { from: world.wc + m, to: -m };
}

/** Walks across at depth y, maybe stopping a while (and maybe turning back). */
function walkAcross(world: World, r: Rng, t: number, y: number, dir: number, stopChance: number, look: PersonLook = personLook(r)): void {
  const speed = r.range(50, 80) * (look.height < 65 ? 0.8 : 1);
  const { from, to } = edges(world, look, y, dir);
  const p = new Path(t, from, y);
  if (r.chance(stopChance)) {
    p.to(r.range(0.12, 0.88) * world.wc, y, speed).wait(r.range(2, 12));
    if (r.chance(0.2)) {
      world.add('person', look, p.to(from, y, speed));
      return;
    }
  }
  world.add('person', look, p.to(to, y, speed));
}

/** A car along a lane at depth y; cars in one lane never catch up with the one ahead. */
function carLane(world: World, y: number, dir: number, speeds: [number, number]): Stream {
  let last: { t: number; end: number; speed: number; length: number } | undefined;
  return {
    rate: 0.12,
    spawn(t, r) {
      const look = carLook(r);
      let speed = r.range(speeds[0], speeds[1]);
      if (last && t < last.end) {
        if ((t - last.t) * last.speed < last.length + look.length * 0.6 + 60) return;
        speed = Math.min(speed, last.speed);
      }
      const { from, to } = edges(world, look, y, dir);
      const p = new Path(t, from, y).to(to, y, speed);
      world.add('car', look, p);
      last = { t, end: p.end.t, speed, length: look.length };
    },
  };
}

/** A parking spot lane: one car at a time drives in, slows down, parks for a while, drives off. */
function parkingLane(world: World, y: number, dir: number, rate: number, park: [number, number]): Stream {
  let busyUntil = -Infinity;
  return {
    rate,
    spawn(t, r) {
      if (t < busyUntil + 3) return;
      const look = carLook(r);
      const speed = r.range(150, 260);
      const { from, to } = edges(world, look, y, dir);
      const stopX = r.range(0.2, 0.8) * world.wc;
      const s = depthScale(y);
      const brake = look.length * 1.2 * s;
      const p = new Path(t, from, y)
        .to(stopX - dir * brake, y, speed)
        .to(stopX, y, speed, 'out')
        .wait(r.range(park[0], park[1]))
        .to(stopX + dir * brake, y, speed, 'in')
        .to(to, y, speed);
      world.add('car', look, p);
      busyUntil = p.end.t;
    },
  };
}

/** A riderless bicycle riding across at depth y. */
function rideAcross(world: World, r: Rng, t: number, y: number, dir: number): void {
  const look = bikeLook(r);
  const { from, to } = edges(world, look, y, dir);
  world.add('bicycle', look, new Path(t, from, y).to(to, y, r.range(150, 230)));
}

/** A person pushing a bicycle: two objects with the same timing, the person just behind it. */
function pushBike(world: World, r: Rng, t: number, y: number, dir: number, stopChance: number): void {
  const bike = bikeLook(r);
  const person = personLook(r);
  const speed = r.range(50, 70);
  const { from, to } = edges(world, bike, y, dir);
  const p = new Path(t, from, y);
  if (r.chance(stopChance)) p.to(r.range(0.15, 0.85) * world.wc, y, speed).wait(r.range(2, 8));
  p.to(to, y, speed);
  world.add('bicycle', bike, p);
  world.add('person', person, p.offset(bike.wheel * 0.9 * depthScale(y), -3));
}

const street: SceneDef = {
  name: 'street',
  streams(world) {
    const wc = world.wc;
    const vpX = wc / 2;
    const crossingX = 0.22 * wc; // world X of the zebra crossing (its centre is at vpX + X * scale)
    return [
      carLane(world, 150, -1, [200, 420]),
      carLane(world, 171, 1, [200, 420]),
      parkingLane(world, 187, 1, 0.05, [6, 30]),
      { rate: 0.16, spawn: (t, r) => walkAcross(world, r, t, r.range(111, 125), r.sign(), 0.35) },
      { rate: 0.13, spawn: (t, r) => walkAcross(world, r, t, r.range(201, 234), r.sign(), 0.3) },
      {
        // Crossing the road at the zebra (or anywhere, now and then), waiting at the kerb first.
        rate: 0.035,
        spawn(t, r) {
          const look = personLook(r);
          const speed = r.range(55, 80);
          const farFirst = r.chance(0.5);
          const y0 = farFirst ? r.range(116, 124) : r.range(205, 222);
          const y1 = farFirst ? r.range(205, 226) : r.range(114, 124);
          const X = r.chance(0.75) ? crossingX + r.range(-12, 12) : r.range(-0.35, 0.35) * wc;
          const x0 = vpX + X * depthScale(y0);
          const x1 = vpX + X * depthScale(y1);
          const dirIn = r.sign();
          const { from } = edges(world, look, y0, dirIn);
          const { to } = edges(world, look, y1, r.sign());
          const p = new Path(t, from, y0).to(x0, y0, speed).wait(r.range(1, 5)).to(x1, y1, speed * 1.1).to(to, y1, speed);
          world.add('person', look, p);
        },
      },
      { rate: 0.04, spawn: (t, r) => rideAcross(world, r, t, 135, -1) },
      { rate: 0.025, spawn: (t, r) => pushBike(world, r, t, r.range(204, 222), r.sign(), 0.3) },
    ];
  },
  background: streetBackground,
  props(wc) {
    return [
      { x: 0.28 * wc, y: 195, halfW: 40, height: 236, draw: drawLampPost },
      { x: 0.9 * wc, y: 231, halfW: 9, height: 28, draw: drawBin },
    ];
  },
  decoys(wc) {
    // Mannequins outside a shop on the far pavement, and one on the near pavement.
    return [mannequin(0.5 * wc, 116, 0), mannequin(0.56 * wc, 118, 1), mannequin(0.66 * wc, 214, 2)];
  },
  lamps(style, wc) {
    const lamps: Lamp[] = [{ x: 0.28 * wc + 35 * depthScale(195), y: 195 - 224 * depthScale(195), footY: 195, strength: 1.3 }];
    for (let x = style === 0 ? 0.08 : 0.18; x < 1.1; x += style === 0 ? 0.42 : 0.36) lamps.push({ x: x * wc, y: 70, footY: 107, strength: 0.8 });
    return lamps;
  },
};

const yard: SceneDef = {
  name: 'yard',
  streams(world) {
    const wc = world.wc;
    return [
      { rate: 0.13, spawn: (t, r) => walkAcross(world, r, t, r.range(108, 124), r.sign(), 0.35) },
      { rate: 0.03, spawn: (t, r) => rideAcross(world, r, t, r.range(116, 122), r.sign()) },
      { rate: 0.02, spawn: (t, r) => pushBike(world, r, t, r.range(114, 124), r.sign(), 0.35) },
      {
        // Across the lawn, often stopping (chatting, looking at a phone), sometimes twice.
        rate: 0.065,
        spawn(t, r) {
          const look = personLook(r);
          const speed = r.range(45, 75);
          const y0 = r.range(140, 226);
          const { from } = edges(world, look, y0, r.sign());
          const p = new Path(t, from, y0);
          const stops = r.chance(0.6) ? 1 + r.int(2) : 0;
          for (let i = 0; i <= stops; i++) {
            p.to(r.range(0.15, 0.85) * wc, r.range(140, 228), speed);
            if (i < stops) p.wait(r.range(3, 15));
          }
          const y1 = r.range(140, 228);
          p.to(edges(world, look, y1, r.sign()).to, y1, speed);
          world.add('person', look, p);
        },
      },
      { rate: 0.045, spawn: (t, r) => walkAcross(world, r, t, r.range(219, 236), r.sign(), 0.2) },
      { rate: 0.02, spawn: (t, r) => rideAcross(world, r, t, r.range(213, 222), r.sign()) },
      parkingLane(world, 129, 1, 0.012, [8, 30]),
    ];
  },
  background: yardBackground,
  props(wc) {
    return [
      { x: 0.82 * wc, y: 170, halfW: 75, height: 340, draw: drawTrunk },
      { x: 0.13 * wc, y: 153, halfW: 26, height: 30, draw: drawBush },
    ];
  },
  decoys(wc) {
    return [mannequin(0.42 * wc, 112, 0), mannequin(0.36 * wc, 176, 1), mannequin(0.6 * wc, 204, 2)];
  },
  lamps(style, wc) {
    return [
      { x: 0.3 * wc, y: 62, footY: 101, strength: 0.9 },
      { x: (style === 0 ? 0.6 : 0.7) * wc, y: 62, footY: 101, strength: 0.9 },
    ];
  },
};

const SCENES: Record<SyntheticSceneName, SceneDef> = { street, yard };

// --- street background

interface Building {
  x0: number;
  x1: number;
  roof: number;
  material: number;
  color: RGB;
  winW: number;
  winH: number;
  pitchX: number;
  pitchY: number;
  shop: boolean;
  sign: RGB;
  door: number;
}

const FACADE_BASE = 106;
const FAR_KERB = 127;
const NEAR_KERB = 191;

function streetBackground(style: number, wc: number) {
  const r = new Rng(style === 0 ? 0x51ee7 : 0x2bac6);
  const materials = style === 0 ? [0, 1, 0, 2, 1] : [3, 4, 3, 1, 4];
  const colors: RGB[][] = [
    [[150, 72, 54], [128, 64, 50], [170, 96, 70], [110, 58, 48]], // brick
    [[206, 192, 160], [180, 186, 176], [214, 200, 184], [168, 150, 128]], // plaster
    [[160, 154, 140], [140, 136, 128]], // stone
    [[150, 152, 150], [126, 128, 130], [176, 172, 164]], // concrete panels
    [[86, 110, 130], [70, 92, 100], [110, 124, 140]], // glass curtain wall
  ];
  const signs: RGB[] = style === 0 ? [[40, 80, 50], [120, 30, 30], [30, 40, 90], [200, 160, 40]] : [[230, 230, 230], [20, 20, 20], [240, 120, 20], [30, 150, 180]];
  const buildings: Building[] = [];
  for (let x = -0.35 * wc; x < 1.35 * wc; ) {
    const w = r.range(44, 92);
    const material = materials[r.int(materials.length)]!;
    const palette = colors[material]!;
    buildings.push({
      x0: x,
      x1: x + w,
      roof: style === 0 ? r.range(8, 58) : r.range(0, 40),
      material,
      color: palette[r.int(palette.length)]!,
      winW: r.range(5, 8),
      winH: r.range(6, 9),
      pitchX: r.range(11, 16),
      pitchY: r.range(13, 17),
      shop: r.chance(0.55),
      sign: signs[r.int(signs.length)]!,
      door: r.range(0.2, 0.8),
    });
    x += w + (r.chance(0.2) ? r.range(3, 10) : 0);
  }
  const vpX = wc / 2;
  const crossingX = 0.22 * wc;
  const asphalt: RGB = style === 0 ? [78, 78, 82] : [98, 96, 94];
  const paving: RGB = style === 0 ? [150, 148, 142] : [150, 86, 70];
  const kerbTop: RGB = [176, 174, 168];
  return (cx: number, cy: number, f: BgFlags, out: BgSample) => {
    out.emissive = false;
    out.lift = 0;
    const s = Math.max(1e-3, depthScale(cy));
    const X = (cx - vpX) / s;
    const Z = 1 / s;
    let c: RGB;
    if (cy < FACADE_BASE) {
      out.depth = FACADE_BASE;
      out.lift = (FACADE_BASE - cy) / depthScale(FACADE_BASE);
      let b: Building | undefined;
      for (const bb of buildings) if (cx >= bb.x0 && cx < bb.x1) b = bb;
      if (!b || cy < b.roof) {
        sky(cx, cy, f, out);
        return;
      }
      c = facade(b, cx, cy, f, out);
    } else if (cy < FAR_KERB) {
      out.depth = cy;
      c = tiles(X, Z, cx, cy, paving, 16, 7, 1);
      if (cy > FAR_KERB - 2.2) c = scale(kerbTop, cy > FAR_KERB - 0.8 ? 0.7 : 1);
    } else if (cy < NEAR_KERB) {
      out.depth = cy;
      const n = fbm(cx * 0.18, cy * 0.35, 11) - 0.5;
      const grain = hashUnit(Math.floor(cx * 2), Math.floor(cy * 2), 5) - 0.5;
      c = scale(asphalt, 1 + n * 0.22 + grain * 0.1);
      // Worn wheel tracks, lane markings, the zebra crossing.
      for (const lane of [150, 171]) for (const off of [-3, 3]) c = scale(c, 1 - 0.06 * Math.exp(-(((cy - lane + off * s) / (2.2 * s)) ** 2)));
      const lineW = 0.9 * s;
      const white: RGB = style === 0 ? [214, 214, 204] : [226, 196, 60];
      if (Math.abs(cy - 160.5) < lineW && frac(X / 44) < 0.55) c = white;
      if (Math.abs(cy - 130.5) < lineW * 0.8 || Math.abs(cy - 180) < lineW * 0.8) c = mixRgb(c, [200, 200, 196], 0.85);
      if (Math.abs(X - crossingX) < 24 && cy > 132 && cy < 188 && frac(Z * 9) < 0.5) c = mixRgb(c, [222, 222, 214], 0.92 - 0.2 * fbm(cx * 0.5, cy, 3));
    } else {
      out.depth = cy;
      if (cy < NEAR_KERB + 3.2) c = scale(kerbTop, cy < NEAR_KERB + 1 ? 0.62 : 0.95);
      else c = tiles(X, Z, cx, cy, paving, 22, 5, 2);
    }
    out.r = c[0];
    out.g = c[1];
    out.b = c[2];
  };

  function sky(cx: number, cy: number, f: BgFlags, out: BgSample): void {
    out.depth = HORIZON + 0.5;
    const t = clamp01(cy / 100);
    let c: RGB;
    if (f.night) {
      c = mixRgb([6, 9, 22], [34, 32, 46], t);
      out.emissive = true;
    } else if (f.overcast) {
      c = mixRgb([150, 154, 162], [184, 186, 190], t);
      c = scale(c, 0.9 + 0.15 * fbm(cx * 0.03, cy * 0.06, 21));
    } else {
      c = mixRgb([104, 148, 206], [190, 208, 226], t);
      const cloud = smooth(0.5, 0.72, fbm(cx * 0.025 + 3, cy * 0.06, 7, 4));
      c = mixRgb(c, [240, 242, 246], cloud * 0.85);
    }
    out.r = c[0];
    out.g = c[1];
    out.b = c[2];
  }

  function facade(b: Building, cx: number, cy: number, f: BgFlags, out: BgSample): RGB {
    const lx = cx - b.x0;
    const ly = cy - b.roof;
    const w = b.x1 - b.x0;
    const edgeShade = 1 - 0.12 * Math.exp(-lx / 2) - 0.08 * Math.exp(-(w - lx) / 2);
    if (ly < 2.2) return scale(b.color, 0.7); // cornice
    let c: RGB = b.color;
    const id = Math.floor(b.x0);
    switch (b.material) {
      case 0: {
        const row = Math.floor(cy / 2.6);
        const u = (cx + (row & 1) * 3) / 6;
        const mortar = frac(cy / 2.6) < 0.24 || frac(u) < 0.1;
        c = mortar ? [168, 160, 150] : scale(b.color, 0.86 + 0.26 * hashUnit(Math.floor(u), row, id));
        break;
      }
      case 1:
        c = scale(b.color, 0.94 + 0.12 * fbm(cx * 0.2, cy * 0.2, id));
        break;
      case 2: {
        const row = Math.floor(cy / 5.5);
        const u = (cx + (row & 1) * 5) / 11;
        const joint = frac(cy / 5.5) < 0.12 || frac(u) < 0.05;
        c = joint ? scale(b.color, 0.7) : scale(b.color, 0.9 + 0.18 * hashUnit(Math.floor(u), row, id));
        break;
      }
      case 3: {
        const joint = frac(lx / 22) < 0.05 || frac(ly / 15) < 0.07;
        c = joint ? scale(b.color, 0.62) : scale(b.color, 0.92 + 0.14 * fbm(cx * 0.15, cy * 0.15, id));
        break;
      }
      case 4: {
        const mullion = frac(lx / 9) < 0.14 || frac(ly / 11) < 0.12;
        if (mullion) c = [60, 64, 70];
        else {
          c = mixRgb(b.color, [200, 214, 228], 0.35 * (1 - frac(ly / 11)) + 0.15 * fbm(cx * 0.05, cy * 0.05, 9));
          if (f.night) {
            const lit = hashUnit(Math.floor(lx / 9), Math.floor(ly / 11), id) < 0.3;
            if (lit) {
              out.emissive = true;
              return [200, 190, 150];
            }
            c = scale(c, 0.5);
          }
        }
        return scale(c, edgeShade);
      }
    }
    // Ground floor: a shop window with a sign, or a door.
    const groundTop = FACADE_BASE - 17;
    if (cy >= groundTop) {
      if (b.shop && lx > 3 && lx < w - 3) {
        if (cy < groundTop + 3.5) return b.sign;
        if (cy < FACADE_BASE - 1.5) {
          if (f.night) {
            out.emissive = true;
            return mixRgb([190, 170, 120], [120, 110, 90], (cy - groundTop) / 17);
          }
          return mixRgb([150, 168, 182], [48, 56, 62], (cy - groundTop - 3.5) / 12);
        }
        return scale(c, 0.8);
      }
      const dx = lx - b.door * w;
      if (Math.abs(dx) < 4 && cy > groundTop + 2) return Math.abs(dx) > 3.3 ? [70, 60, 50] : [92, 60, 40];
      return scale(c, edgeShade);
    }
    // Windows on the upper floors.
    const col = Math.floor((lx - 4) / b.pitchX);
    const ux = lx - 4 - col * b.pitchX;
    const row = Math.floor((ly - 6) / b.pitchY);
    const uy = ly - 6 - row * b.pitchY;
    if (lx > 4 && lx < w - 4 && ly > 6 && cy < groundTop - 3 && ux < b.winW && uy < b.winH) {
      if (ux < 0.8 || ux > b.winW - 0.8 || uy < 0.8 || uy > b.winH - 0.8) return [196, 192, 184];
      if (f.night) {
        if (hashUnit(col, row, id) < 0.32) {
          out.emissive = true;
          return scale([235, 196, 120], 0.7 + 0.3 * hashUnit(col, row, id + 1));
        }
        return [14, 16, 22];
      }
      return mixRgb([120, 140, 160], [40, 48, 58], uy / b.winH + 0.25 * hashUnit(col, row, id));
    }
    if (ly > 6 && ux >= b.winW && ux < b.winW + 0.8 && uy < b.winH + 0.8 && cy < groundTop - 3 && lx > 4 && lx < w - 4) return scale(c, 0.8); // window shadow
    return scale(c, edgeShade * (1 - 0.1 * smooth(groundTop - 20, groundTop, cy)));
  }
}

/** Paving tiles in perspective: columns converge on the vanishing point, rows follow depth. */
function tiles(X: number, Z: number, cx: number, cy: number, base: RGB, tileX: number, rowsPerZ: number, seed: number): RGB {
  const s = 1 / Z;
  // Line widths in tile units for ~0.8 canonical px.
  const dX = 0.8 / s / tileX;
  const dZ = (0.8 * rowsPerZ) / (s * s * (REF_H - HORIZON));
  const row = Math.floor(Z * rowsPerZ);
  const shift = (row & 1) * 0.5;
  const u = X / tileX + shift;
  if (toInteger(u) < dX / 2 || toInteger(Z * rowsPerZ) < dZ / 2) return scale(base, 0.72);
  const k = 0.9 + 0.16 * hashUnit(Math.floor(u), row, seed) + 0.08 * (fbm(cx * 0.3, cy * 0.5, seed + 40) - 0.5);
  return scale(base, k);
}

// --- yard background

const WALL_TOP = 48;
const WALL_BASE = 101;
const PATH_FRONT = 131;
const FRONT_PATH = 211;

function yardBackground(style: number, wc: number) {
  const vpX = wc / 2;
  const gateX = (style === 0 ? 0.64 : 0.72) * wc;
  return (cx: number, cy: number, f: BgFlags, out: BgSample) => {
    out.emissive = false;
    out.lift = 0;
    const s = Math.max(1e-3, depthScale(cy));
    const X = (cx - vpX) / s;
    const Z = 1 / s;
    let c: RGB;
    if (cy < WALL_TOP + (style === 0 ? 0 : 2)) {
      // Trees (style 0) or a hedge and open sky (style 1) behind the wall.
      out.depth = WALL_BASE - 6;
      out.lift = (WALL_BASE - cy) / depthScale(WALL_BASE);
      const edge = style === 0 ? 30 + 16 * fbm(cx * 0.04, 0, 71) : 30 + 3 * fbm(cx * 0.3, 0, 72);
      const hole = style === 0 && cy < 30 && fbm(cx * 0.09, cy * 0.12, 73) > 0.6;
      if (cy < edge || hole) {
        out.depth = HORIZON + 0.5;
        const t = clamp01(cy / 60);
        if (f.night) {
          c = mixRgb([6, 9, 22], [26, 28, 42], t);
          out.emissive = true;
        } else if (f.overcast) c = mixRgb([150, 154, 162], [182, 184, 188], t);
        else c = mixRgb([110, 154, 210], [186, 206, 226], t);
      } else {
        const leaf = fbm(cx * 0.35, cy * 0.35, style === 0 ? 74 : 75, 3);
        c = style === 0 ? mixRgb([30, 56, 28], [84, 112, 50], leaf) : mixRgb([28, 66, 30], [62, 100, 44], leaf);
        c = scale(c, 0.8 + 0.25 * hashUnit(Math.floor(cx * 1.5), Math.floor(cy * 1.5), 76));
      }
    } else if (cy < WALL_BASE) {
      out.depth = WALL_BASE;
      out.lift = (WALL_BASE - cy) / depthScale(WALL_BASE);
      if (style === 0) {
        if (cy < WALL_TOP + 4) c = scale([176, 170, 160], cy < WALL_TOP + 1 ? 1.08 : 0.88);
        else if (Math.abs(cx - gateX) < 11 && cy > 63) {
          c = Math.abs(cx - gateX) > 10 || cy < 64.5 ? [60, 48, 38] : scale([112, 76, 46], frac((cx - gateX) / 3.5) < 0.12 ? 0.7 : 0.95 + 0.1 * fbm(cx * 0.2, cy * 0.05, 81));
        } else {
          const row = Math.floor(cy / 2.7);
          const u = (cx + (row & 1) * 3.2) / 6.4;
          const mortar = frac(cy / 2.7) < 0.24 || frac(u) < 0.1;
          c = mortar ? [160, 152, 140] : scale([146, 82, 62], 0.82 + 0.3 * hashUnit(Math.floor(u), row, 82));
          const ivy = fbm(cx * 0.07, cy * 0.1, 83);
          if (ivy > 0.6) c = mixRgb(c, scale([48, 92, 40], 0.7 + 0.6 * hashUnit(Math.floor(cx * 2), Math.floor(cy * 2), 84)), smooth(0.6, 0.66, ivy));
        }
      } else {
        const board = Math.floor(cx / 5);
        const ub = frac(cx / 5);
        if (ub < 0.1) c = [40, 32, 26];
        else {
          c = scale([140, 108, 72], 0.85 + 0.25 * hashUnit(board, 0, 85));
          c = scale(c, 0.92 + 0.12 * fbm(cx * 0.8, cy * 0.08, 86));
          if (Math.abs(cy - 62) < 1.6 || Math.abs(cy - 90) < 1.6) c = scale(c, 0.7);
        }
        if (Math.abs(cx - gateX) < 11 && cy > 58) c = Math.abs(cx - gateX) > 10 ? [40, 36, 32] : scale([96, 104, 88], 0.9 + 0.1 * fbm(cx * 0.2, cy * 0.2, 87));
      }
      // The wall's foot, in shadow.
      c = scale(c, 1 - 0.25 * smooth(WALL_BASE - 4, WALL_BASE, cy));
    } else if (cy < PATH_FRONT) {
      out.depth = cy;
      if (style === 0) {
        const speck = hashUnit(Math.floor(cx * 2.2), Math.floor(cy * 2.2), 91);
        c = scale([170, 160, 140], 0.86 + 0.12 * fbm(cx * 0.2, cy * 0.4, 92) + 0.22 * (speck - 0.5));
      } else c = tiles(X, Z, cx, cy, [162, 162, 158], 30, 4, 93);
    } else if (cy < FRONT_PATH || cy > 239.5) {
      out.depth = cy;
      if (cy < PATH_FRONT + 2.5) c = style === 0 ? [54, 84, 40] : [120, 100, 76];
      else if (style === 0) {
        const stripe = Math.floor(X / 34) & 1 ? 1.06 : 0.95;
        const blade = hashUnit(Math.floor(cx * 2), Math.floor(cy * 2), 94) - 0.5;
        c = scale([74, 122, 52], stripe * (0.84 + 0.3 * fbm(cx * 0.12, cy * 0.3, 95)) + blade * 0.12);
      } else {
        const pebble = hashUnit(Math.floor(cx * 1.3), Math.floor(cy * 1.7), 96);
        c = scale([158, 132, 96], 0.82 + 0.3 * fbm(cx * 0.1, cy * 0.25, 97) + (pebble > 0.96 ? 0.25 : 0));
      }
    } else {
      out.depth = cy;
      c = style === 0 ? tiles(X, Z, cx, cy, [152, 146, 138], 26, 5, 98) : tiles(X, Z, cx, cy, [150, 76, 60], 12, 9, 99);
      if (cy < FRONT_PATH + 1.2) c = scale(c, 0.7);
    }
    out.r = c[0];
    out.g = c[1];
    out.b = c[2];
  };
}

// ---------------------------------------------------------------------------------------------
// Sprites: objects are drawn into small anti-aliased premultiplied-RGBA buffers of their own.

class Sprite {
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

function drawPerson(sp: Sprite, fx: number, fy: number, px: number, look: PersonLook, pose: Pose, pal: Palette): void {
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

// --- cars

interface CarBody {
  length: number;
  /** Height over length. */
  hr: number;
  /** Beltline height over car height. */
  belt: number;
  /** Cabin polygon along the length, back to front: base back, roof back, roof front, base front. */
  cabin: [number, number, number, number];
  wheel: number;
}

const CAR_BODIES: readonly CarBody[] = [
  { length: 134, hr: 0.34, belt: 0.5, cabin: [0.1, 0.27, 0.6, 0.79], wheel: 0.1 }, // sedan
  { length: 120, hr: 0.4, belt: 0.52, cabin: [0.05, 0.1, 0.58, 0.78], wheel: 0.105 }, // hatchback
  { length: 138, hr: 0.42, belt: 0.55, cabin: [0.05, 0.08, 0.66, 0.8], wheel: 0.112 }, // SUV
  { length: 150, hr: 0.46, belt: 0.56, cabin: [0.02, 0.03, 0.8, 0.95], wheel: 0.1 }, // van
];

function drawCar(sp: Sprite, fx: number, fy: number, px: number, look: CarLook, pose: Pose, pal: Palette, night: boolean): void {
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

function drawBike(sp: Sprite, fx: number, fy: number, px: number, look: BikeLook, pose: Pose, pal: Palette): void {
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

function drawLampPost(sp: Sprite, fx: number, fy: number, px: number, style: number, night: boolean): void {
  const H = 226 * px;
  const w = Math.max(1.6, 3.4 * px);
  const pole: RGB = style === 0 ? [52, 56, 58] : [150, 154, 158];
  fill(sp, rbox(fx - w * 0.9, fy - 6 * px, fx + w * 0.9, fy), scale(pole, 0.8));
  fill(sp, rbox(fx - w / 2, fy - H, fx + w / 2, fy), scale(pole, 1.2), { bottom: scale(pole, 0.8) });
  fill(sp, capsule(fx, fy - H + w, fx + 34 * px, fy - H - 2 * px, Math.max(1.1, 2.4 * px)), pole);
  fill(sp, rbox(fx + 28 * px, fy - H - 4 * px, fx + 42 * px, fy - H + 1.5 * px, 1.5 * px), pole);
  fill(sp, rbox(fx + 30 * px, fy - H + 1 * px, fx + 40 * px, fy - H + 3 * px, 1 * px), night ? [255, 230, 170] : [210, 210, 200], { emissive: night });
}

function drawBin(sp: Sprite, fx: number, fy: number, px: number, style: number): void {
  const c: RGB = style === 0 ? [38, 70, 48] : [120, 122, 126];
  fill(sp, rbox(fx - 7.5 * px, fy - 24 * px, fx + 7.5 * px, fy, 1.5 * px), scale(c, 1.15), { bottom: scale(c, 0.75) });
  fill(sp, rbox(fx - 8.5 * px, fy - 27 * px, fx + 8.5 * px, fy - 23 * px, 1.5 * px), scale(c, 0.8));
}

function drawTrunk(sp: Sprite, fx: number, fy: number, px: number, style: number): void {
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

const MANNEQUIN_PLASTIC: readonly RGB[] = [[236, 234, 228], [200, 198, 194], [226, 222, 212]];
const MANNEQUIN_PALETTE: Palette = { ...NORMAL_PALETTE, shirt: MANNEQUIN_PLASTIC, trousers: MANNEQUIN_PLASTIC, shoes: MANNEQUIN_PLASTIC };

/** A shop mannequin standing facing the camera: white or grey plastic, person-shaped, not a person. */
function mannequin(x: number, y: number, variant: number): PropDef {
  const look: PersonLook = { kind: 'person', height: 82 + 4 * variant, build: 0.95, shirt: variant % 3, trousers: (variant + 1) % 3, shoes: variant % 3, skin: 0, hair: 0, coat: false, longHair: variant === 1, bag: 0, plastic: MANNEQUIN_PLASTIC[variant % 3]! };
  return {
    x,
    y,
    halfW: 16,
    height: look.height + 2,
    draw: (sp, fx, fy, px) => drawPerson(sp, fx, fy, px, look, { x, y, d: 0, moving: false, hx: 0, hy: 1 }, MANNEQUIN_PALETTE),
  };
}

function drawBush(sp: Sprite, fx: number, fy: number, px: number, style: number): void {
  const leaf: RGB = style === 0 ? [46, 92, 38] : [66, 84, 40];
  const ox = sp.x0;
  const oy = sp.y0;
  const texture = (x: number, y: number) => 0.7 + 0.6 * fbm((x + ox) * 0.5, (y + oy) * 0.5, 63) * (1.15 - (0.5 * (fy - y)) / (30 * px));
  fill(sp, ellipse(fx - 8 * px, fy - 13 * px, 16 * px, 13 * px), scale(leaf, 0.9), { texture });
  fill(sp, ellipse(fx + 9 * px, fy - 12 * px, 15 * px, 12 * px), leaf, { texture });
  fill(sp, ellipse(fx, fy - 17 * px, 14 * px, 13 * px), scale(leaf, 1.1), { texture });
}

// ---------------------------------------------------------------------------------------------
// Domains: appearance transforms

interface DomainFlags {
  night: boolean;
  rain: boolean;
  fog: boolean;
  palette: boolean;
  moved: boolean;
  decoys: boolean;
  style: number;
}

function domainFlags(domain: readonly DomainShift[]): DomainFlags {
  const has = (d: DomainShift) => domain.includes(d);
  return { night: has('night'), rain: has('rain'), fog: has('fog'), palette: has('palette'), moved: has('moved'), decoys: has('decoys'), style: has('background') ? 1 : 0 };
}

function domainKey(domain: readonly DomainShift[]): string {
  return DOMAIN_SHIFTS.filter((d) => d !== 'day' && domain.includes(d)).join(',') || 'day';
}

/** Colour transform of a surface: out = in * m + a (per channel). */
interface Affine {
  m: [number, number, number];
  a: [number, number, number];
}

const NIGHT_AMBIENT: RGB = [0.12, 0.14, 0.23];
const LAMP_COLOUR: RGB = [1.0, 0.82, 0.56];
const RAIN_GREY: RGB = [118, 122, 130];

function fogAmount(depthY: number): number {
  return 1 - Math.exp(-0.36 / Math.max(0.02, depthScale(depthY)));
}

/** Light of the lamps at a point of a surface at depth `depthY`, `lift` world units above the ground. */
function lampLight(lamps: readonly Lamp[], cx: number, depthY: number, lift: number, wc: number): number {
  const s = Math.max(0.02, depthScale(depthY));
  let light = 0;
  for (const l of lamps) {
    const sl = depthScale(l.footY);
    const dX = (cx - wc / 2) / s - (l.x - wc / 2) / sl;
    const dZ = FOCAL * (1 / s - 1 / sl);
    const dY = (lift - (l.footY - l.y) / sl) * 0.6;
    light += l.strength * Math.exp(-(dX * dX + dZ * dZ + dY * dY) / (125 * 125));
  }
  return light;
}

function surfaceAffine(f: DomainFlags, lamps: readonly Lamp[], cx: number, depthY: number, lift: number, wc: number, emissive: boolean): Affine {
  const m: [number, number, number] = [1, 1, 1];
  const a: [number, number, number] = [0, 0, 0];
  if (f.night && !emissive) {
    const light = lampLight(lamps, cx, depthY, lift, wc);
    for (let k = 0; k < 3; k++) m[k] = Math.min(1.15, NIGHT_AMBIENT[k]! + LAMP_COLOUR[k]! * light * 1.1);
  }
  if (f.rain) {
    for (let k = 0; k < 3; k++) {
      m[k] *= 0.68;
      a[k] = a[k]! * 0.68 + (f.night ? 0.25 : 1) * 0.22 * RAIN_GREY[k]!;
    }
  }
  if (f.fog) {
    const fog = fogAmount(depthY);
    const col: RGB = f.night ? [40, 44, 54] : [182, 186, 190];
    for (let k = 0; k < 3; k++) {
      m[k] *= 1 - fog;
      a[k] = a[k]! * (1 - fog) + col[k]! * fog;
    }
  }
  return { m, a };
}

// ---------------------------------------------------------------------------------------------
// Render contexts: everything static for one scene, size and domain.

interface PropSprite {
  def: PropDef;
  sprite: Sprite;
  affine: Affine;
  emissiveAffine: Affine;
}

interface RenderContext {
  flags: DomainFlags;
  view: View;
  background: Float32Array;
  lamps: Lamp[];
  props: PropSprite[];
  palette: Palette;
  sigma: number;
  shadow: number;
}

const contexts = new Map<string, RenderContext>();

function renderContext(def: SceneDef, width: number, height: number, domain: readonly DomainShift[]): RenderContext {
  const key = `${def.name}|${width}x${height}|${domainKey(domain)}`;
  const cached = contexts.get(key);
  if (cached) {
    contexts.delete(key);
    contexts.set(key, cached);
    return cached;
  }
  const flags = domainFlags(domain);
  const view = makeView(width, height, flags.moved);
  const lamps = flags.night ? def.lamps(flags.style, view.wc) : [];
  const sampler = def.background(flags.style, view.wc);
  const bgFlags: BgFlags = { night: flags.night, overcast: flags.rain || flags.fog, style: flags.style };
  const background = new Float32Array(width * height * 3);
  const sample: BgSample = { r: 0, g: 0, b: 0, depth: 0, lift: 0, emissive: false };
  const sub = [0.25, 0.75];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (const oy of sub) {
        for (const ox of sub) {
          const cx = toCanonX(view, x + ox);
          const cy = toCanonY(view, y + oy);
          sampler(cx, cy, bgFlags, sample);
          const t = surfaceAffine(flags, lamps, cx, sample.depth, sample.lift, view.wc, sample.emissive);
          r += sample.r * t.m[0] + t.a[0];
          g += sample.g * t.m[1] + t.a[1];
          b += sample.b * t.m[2] + t.a[2];
          if (flags.night) {
            // Lamp heads glow.
            for (const l of lamps) {
              const d2 = (cx - l.x) ** 2 + (cy - l.y) ** 2;
              const rad = 9 * depthScale(l.footY);
              const glow = l.strength * 150 * Math.exp(-d2 / (rad * rad));
              r += glow;
              g += glow * 0.85;
              b += glow * 0.6;
            }
          }
        }
      }
      const i = (y * width + x) * 3;
      background[i] = r / 4;
      background[i + 1] = g / 4;
      background[i + 2] = b / 4;
    }
  }
  const props: PropSprite[] = [...def.props(view.wc), ...(flags.decoys ? def.decoys(view.wc) : [])].map((p) => {
    const px = depthScale(p.y) * view.zoom * view.q;
    const fx = toScreenX(view, p.x);
    const fy = toScreenY(view, p.y);
    const half = p.halfW * px + 3;
    const x0 = Math.floor(fx - half);
    const y0 = Math.floor(fy - p.height * px - 3);
    const sprite = new Sprite().reset(x0, y0, Math.ceil(2 * half) + 2, Math.ceil(fy - y0) + 2);
    p.draw(sprite, fx - x0, fy - y0, px, flags.style, flags.night);
    return { def: p, sprite, affine: surfaceAffine(flags, lamps, p.x, p.y, 40, view.wc, false), emissiveAffine: surfaceAffine({ ...flags, night: false }, lamps, p.x, p.y, 0, view.wc, true) };
  });
  const ctx: RenderContext = {
    flags,
    view,
    background,
    lamps,
    props,
    palette: flags.palette ? SHIFTED_PALETTE : NORMAL_PALETTE,
    sigma: flags.night ? 7 : flags.rain ? 4.5 : 2.8,
    shadow: flags.night ? 0.12 : flags.rain || flags.fog ? 0.18 : 0.38,
  };
  contexts.set(key, ctx);
  // A few recent contexts are kept (about 1 MB each at 320x240), at most ~64 MB of backgrounds.
  let bytes = 0;
  for (const c of contexts.values()) bytes += c.background.byteLength;
  while (contexts.size > 1 && (contexts.size > 24 || bytes > 64 << 20)) {
    const oldest = contexts.keys().next().value!;
    bytes -= contexts.get(oldest)!.background.byteLength;
    contexts.delete(oldest);
  }
  return ctx;
}

// Sensor noise: a table of unit Gaussian samples (x 32, as Int8) read from a random offset per frame.
let noiseTable: Int8Array | undefined;
function noise(): Int8Array {
  if (!noiseTable) {
    const r = new Rng(0x6e6f6973);
    noiseTable = new Int8Array(1 << 20);
    for (let i = 0; i < noiseTable.length; i++) noiseTable[i] = Math.max(-127, Math.min(127, Math.round(r.normal() * 32)));
  }
  return noiseTable;
}

const vignettes = new Map<string, Float32Array>();
function vignette(width: number, height: number): Float32Array {
  const key = `${width}x${height}`;
  let v = vignettes.get(key);
  if (!v) {
    v = new Float32Array(width * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const dx = (x + 0.5) / width - 0.5;
        const dy = (y + 0.5) / height - 0.5;
        v[y * width + x] = 1 - 0.28 * (dx * dx + dy * dy);
      }
    }
    vignettes.set(key, v);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// The simulation: spawning and retiring actors

/** Simulation starts this long before stream time 0, so the first frame is already busy. */
const WARMUP_S = -40;
const ACTIVITY_BLOCK_S = 15;
const ACTIVITY_MAX = 1.5;

class Simulation {
  actors: Actor[] = [];
  private streams: Array<{ stream: Stream; rng: Rng; next: number }> = [];
  private nextId = 1;
  private time = -Infinity;

  constructor(
    private readonly def: SceneDef,
    private readonly seed: number,
    private readonly wc: number,
  ) {}

  /** Activity level of the 15 s block holding t: quiet (no arrivals) 15 % of the time. */
  activity(t: number): number {
    const u = hashUnit(this.seed, Math.floor(t / ACTIVITY_BLOCK_S), 0xac7);
    return u < 0.15 ? 0 : 0.5 + (u - 0.15) / 0.85;
  }

  private reset(): void {
    this.actors = [];
    this.nextId = 1;
    const world: World = {
      wc: this.wc,
      add: (label, look, path) => {
        const keys = path.keys;
        this.actors.push({ id: this.nextId++, label, look, keys, t0: keys[0]!.t, t1: keys[keys.length - 1]!.t, cursor: 0 });
      },
    };
    this.streams = this.def.streams(world).map((stream, i) => {
      const rng = new Rng(hash3(this.seed, i + 1, 0x57e));
      return { stream, rng, next: WARMUP_S + rng.exp(stream.rate * ACTIVITY_MAX) };
    });
    this.time = WARMUP_S;
  }

  /** Spawns everything due by time t (in time order, so ids follow arrival), drops what has left. */
  advance(t: number): void {
    if (t < this.time) this.reset();
    if (this.time === -Infinity) this.reset();
    for (;;) {
      let due: (typeof this.streams)[number] | undefined;
      for (const s of this.streams) if (s.next <= t && (!due || s.next < due.next)) due = s;
      if (!due) break;
      if (due.rng.next() < this.activity(due.next) / ACTIVITY_MAX) due.stream.spawn(due.next, due.rng);
      due.next += due.rng.exp(due.stream.rate * ACTIVITY_MAX);
    }
    this.time = t;
    this.actors = this.actors.filter((a) => a.t1 >= t);
  }
}

// ---------------------------------------------------------------------------------------------
// The scene

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

// ---------------------------------------------------------------------------------------------
// Options and URLs

function validateSceneOptions(o: SceneOptions): void {
  const fail = (key: string, msg: string): never => {
    throw new Error(`synthetic scene: ${key}: ${msg}`);
  };
  if (!(SYNTHETIC_SCENES as readonly string[]).includes(o.scene)) fail('scene', `unknown scene "${o.scene}" (known: ${SYNTHETIC_SCENES.join(', ')})`);
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff) fail('seed', `must be a whole number from 0 to 4294967295, not ${o.seed}`);
  if (!Number.isInteger(o.width) || o.width < 32 || o.width > 4096) fail('width', `must be a whole number from 32 to 4096, not ${o.width}`);
  if (!Number.isInteger(o.height) || o.height < 32 || o.height > 4096) fail('height', `must be a whole number from 32 to 4096, not ${o.height}`);
  if (!(o.fps > 0 && o.fps <= 240)) fail('fps', `must be above 0 and at most 240, not ${o.fps}`);
  for (const d of [...o.domain, ...(o.shift?.domain ?? [])]) if (!(DOMAIN_SHIFTS as readonly string[]).includes(d)) fail('domain', `unknown domain shift "${d}" (known: ${DOMAIN_SHIFTS.join(', ')})`);
  if (o.shift && !(o.shift.at >= 0 && Number.isFinite(o.shift.at))) fail('shift.at', `must be a number of seconds >= 0, not ${o.shift.at}`);
}

/** The option keys of a `synthetic:` URL. */
export const SYNTHETIC_URL_KEYS = ['scene', 'seed', 'size', 'fps', 'domain', 'shift', 'shift_at', 'seconds'] as const;
export type SyntheticUrlKey = (typeof SYNTHETIC_URL_KEYS)[number];

/**
 * Builds scene options from key/value pairs (a URL's or the CLI's); `fail` reports a bad key, `name`
 * names another key in a message (the CLI says --shift-at where a URL says shift_at).
 * Defaults: scene street, seed 1, size 320x240, fps 10, no domain shift.
 */
export function sceneOptionsFrom(values: ReadonlyMap<string, string>, fail: (key: string, message: string) => never, name: (key: SyntheticUrlKey) => string = (key) => key): SceneOptions {
  for (const key of values.keys()) if (!(SYNTHETIC_URL_KEYS as readonly string[]).includes(key)) fail(key, `unknown key (known: ${SYNTHETIC_URL_KEYS.join(', ')})`);
  const get = (key: SyntheticUrlKey) => {
    const v = values.get(key);
    if (v !== undefined && v.trim() === '') fail(key, 'empty value');
    return v?.trim();
  };
  const number = (key: SyntheticUrlKey, v: string, check: (n: number) => boolean, what: string) => {
    const n = /^[+]?(\d+(\.\d*)?|\.\d+)$/.test(v) ? Number(v) : NaN;
    if (!Number.isFinite(n) || !check(n)) fail(key, `must be ${what}, not "${v}"`);
    return n;
  };
  const domains = (key: SyntheticUrlKey, v: string): DomainShift[] => {
    const list = v.split(',').map((d) => d.trim());
    for (const d of list) if (!(DOMAIN_SHIFTS as readonly string[]).includes(d)) fail(key, `unknown domain shift "${d}" (known: ${DOMAIN_SHIFTS.join(', ')})`);
    return [...new Set(list as DomainShift[])].filter((d) => d !== 'day');
  };
  const o: SceneOptions = { ...DEFAULT_SCENE_OPTIONS, domain: [] };
  const scene = get('scene');
  if (scene !== undefined) {
    if (!(SYNTHETIC_SCENES as readonly string[]).includes(scene)) fail('scene', `unknown scene "${scene}" (known: ${SYNTHETIC_SCENES.join(', ')})`);
    o.scene = scene;
  }
  const seed = get('seed');
  if (seed !== undefined) o.seed = number('seed', seed, (n) => Number.isInteger(n) && n <= 0xffffffff, 'a whole number from 0 to 4294967295');
  const size = get('size');
  if (size !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(size);
    const ok = (n: number) => n >= 32 && n <= 4096;
    if (!m || !ok(Number(m[1])) || !ok(Number(m[2]))) fail('size', `must be WIDTHxHEIGHT with each from 32 to 4096, like 320x240, not "${size}"`);
    o.width = Number(m![1]);
    o.height = Number(m![2]);
  }
  const fps = get('fps');
  if (fps !== undefined) o.fps = number('fps', fps, (n) => n > 0 && n <= 240, 'a number of frames per second above 0 and at most 240');
  const domain = get('domain');
  if (domain !== undefined) o.domain = domains('domain', domain);
  const shift = get('shift');
  const shiftAt = get('shift_at');
  if (shift !== undefined && shiftAt === undefined) fail('shift_at', `is needed with ${name('shift')} (the stream second of the switch)`);
  if (shiftAt !== undefined && shift === undefined) fail('shift', `is needed with ${name('shift_at')} (the domain shifts to switch to)`);
  if (shift !== undefined && shiftAt !== undefined) o.shift = { at: number('shift_at', shiftAt, (n) => n >= 0, 'a number of seconds >= 0'), domain: domains('shift', shift) };
  const seconds = get('seconds');
  if (seconds !== undefined) o.seconds = number('seconds', seconds, (n) => n > 0, 'a number of seconds above 0');
  return o;
}

/**
 * `synthetic:` or `synthetic:scene=yard&seed=7&size=320x240&fps=10&domain=night,rain&shift=fog&shift_at=60&seconds=120`
 * → scene options (`seconds`: the stream ends after that much stream time; without it, it never ends).
 * An unknown key or a bad value throws a SourceError whose message names the URL and the key.
 */
export function parseSyntheticUrl(url: string): SceneOptions {
  if (!url.startsWith('synthetic:')) throw new SourceError(url, 'a synthetic source URL starts with "synthetic:"');
  const query = url.slice('synthetic:'.length).replace(/^\/\//, '').replace(/^\?/, '');
  const values = new Map<string, string>();
  const fail = (key: string, message: string): never => {
    throw new SourceError(url, `${key}: ${message}`);
  };
  if (query) {
    for (const part of query.split('&')) {
      const eq = part.indexOf('=');
      if (eq <= 0) fail(part || '(empty)', 'expected key=value');
      const key = decodeURIComponent(part.slice(0, eq));
      if (values.has(key)) fail(key, 'given twice');
      values.set(key, decodeURIComponent(part.slice(eq + 1)));
    }
  }
  return sceneOptionsFrom(values, fail);
}

/** The canonical URL of scene options (parseSyntheticUrl's inverse). */
export function syntheticUrl(o: SceneOptions): string {
  const parts = [`scene=${o.scene}`, `seed=${o.seed}`, `size=${o.width}x${o.height}`, `fps=${o.fps}`];
  if (o.domain.length > 0) parts.push(`domain=${o.domain.join(',')}`);
  if (o.shift) parts.push(`shift=${o.shift.domain.join(',') || 'day'}`, `shift_at=${o.shift.at}`);
  if (o.seconds !== undefined) parts.push(`seconds=${o.seconds}`);
  return `synthetic:${parts.join('&')}`;
}
