/**
 * The synthetic scenes (street, yard): their traffic streams, static props and lamps, and their
 * backgrounds.
 */
import type { SyntheticLabel, SyntheticSceneName } from './types.js';
import { clamp01, fbm, frac, hashUnit, mixRgb, Rng, scale, smooth, toInteger, type RGB } from './random.js';
import { depthScale, HORIZON, NORMAL_PALETTE, REF_H, type Palette } from './view.js';
import { bikeLook, carLook, halfWidth, Path, personLook, type Look, type PersonLook } from './actors.js';
import { drawBin, drawBush, drawLampPost, drawPerson, drawTrunk, type PropDef } from './draw.js';


export interface World {
  wc: number;
  add(label: SyntheticLabel, look: Look, path: Path): void;
}

export interface Stream {
  /** Spawns per second at activity 1. */
  rate: number;
  spawn(t: number, r: Rng): void;
}

export interface Lamp {
  /** Canonical position of the light. */
  x: number;
  y: number;
  /** Canonical y of the ground below it (its depth). */
  footY: number;
  strength: number;
}

export interface BgSample {
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

export interface BgFlags {
  night: boolean;
  overcast: boolean;
  style: number;
}

export interface SceneDef {
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

export const SCENES: Record<SyntheticSceneName, SceneDef> = { street, yard };

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
