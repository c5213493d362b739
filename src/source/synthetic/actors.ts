/**
 * Actors of the synthetic scenes and their trajectories: looks (person, car, bicycle, and the car
 * bodies), key points, paths and the pose at a time.
 */
import type { SyntheticLabel } from './types.js';
import { hypot, Rng, type RGB } from './random.js';
import { depthScale, HAIR, NORMAL_PALETTE, SKIN } from './view.js';


export interface PersonLook {
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

export interface CarLook {
  kind: 'car';
  /** Length in world units. */
  length: number;
  body: number;
  paint: number;
  darkRims: boolean;
}

export interface BikeLook {
  kind: 'bicycle';
  /** Wheel radius in world units. */
  wheel: number;
  frame: number;
  city: boolean;
  basket: boolean;
}

export type Look = PersonLook | CarLook | BikeLook;

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

export interface Actor {
  id: number;
  label: SyntheticLabel;
  look: Look;
  keys: Key[];
  t0: number;
  t1: number;
  cursor: number;
}

export interface Pose {
  x: number;
  y: number;
  d: number;
  moving: boolean;
  hx: number;
  hy: number;
}

export class Path {
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

export function samplePose(actor: Actor, t: number, out: Pose): boolean {
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

export function personLook(r: Rng): PersonLook {
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

export function carLook(r: Rng): CarLook {
  const body = r.int(CAR_BODIES.length);
  return { kind: 'car', length: CAR_BODIES[body]!.length * r.range(0.93, 1.07), body, paint: r.int(NORMAL_PALETTE.paint.length), darkRims: r.chance(0.4) };
}

export function bikeLook(r: Rng): BikeLook {
  const city = r.chance(0.4);
  return { kind: 'bicycle', wheel: r.range(11.4, 12.6), frame: r.int(NORMAL_PALETTE.frame.length), city, basket: city && r.chance(0.5) };
}

/** Half the width of an actor in world units (for spawning just outside the frame). */
export function halfWidth(look: Look): number {
  return look.kind === 'person' ? look.height * 0.3 : look.kind === 'car' ? look.length / 2 : look.wheel * 2.8;
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

export const CAR_BODIES: readonly CarBody[] = [
  { length: 134, hr: 0.34, belt: 0.5, cabin: [0.1, 0.27, 0.6, 0.79], wheel: 0.1 }, // sedan
  { length: 120, hr: 0.4, belt: 0.52, cabin: [0.05, 0.1, 0.58, 0.78], wheel: 0.105 }, // hatchback
  { length: 138, hr: 0.42, belt: 0.55, cabin: [0.05, 0.08, 0.66, 0.8], wheel: 0.112 }, // SUV
  { length: 150, hr: 0.46, belt: 0.56, cabin: [0.02, 0.03, 0.8, 0.95], wheel: 0.1 }, // van
];
