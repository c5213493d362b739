/**
 * Domain shifts as appearance transforms: night lighting and lamps, rain contrast, fog by distance.
 */
import { DOMAIN_SHIFTS, type DomainShift } from './types.js';
import type { RGB } from './random.js';
import { depthScale, FOCAL } from './view.js';
import type { Lamp } from './scenes.js';


export interface DomainFlags {
  night: boolean;
  rain: boolean;
  fog: boolean;
  palette: boolean;
  moved: boolean;
  decoys: boolean;
  style: number;
}

export function domainFlags(domain: readonly DomainShift[]): DomainFlags {
  const has = (d: DomainShift) => domain.includes(d);
  return { night: has('night'), rain: has('rain'), fog: has('fog'), palette: has('palette'), moved: has('moved'), decoys: has('decoys'), style: has('background') ? 1 : 0 };
}

export function domainKey(domain: readonly DomainShift[]): string {
  return DOMAIN_SHIFTS.filter((d) => d !== 'day' && domain.includes(d)).join(',') || 'day';
}

/** Colour transform of a surface: out = in * m + a (per channel). */
export interface Affine {
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

export function surfaceAffine(f: DomainFlags, lamps: readonly Lamp[], cx: number, depthY: number, lift: number, wc: number, emissive: boolean): Affine {
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
