/**
 * Canonical geometry of the synthetic camera (the ground plane, the depth scale, the camera
 * transform a `moved` domain changes) and the palettes (`palette` swaps them).
 */
import type { RGB } from './random.js';


/** Canonical y of the vanishing line (the horizon of the ground plane). */
export const HORIZON = 20;
export const REF_H = 240;
/** Canonical focal length, for depth differences on the ground (world units: canonical px at scale 1). */
export const FOCAL = 277;

/** Size of an object standing at canonical y, relative to one standing at the bottom edge. */
export function depthScale(y: number): number {
  return (y - HORIZON) / (REF_H - HORIZON);
}

export interface View {
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

export function makeView(width: number, height: number, moved: boolean): View {
  const q = height / REF_H;
  return { q, zoom: moved ? 1.15 : 1, ox: moved ? -0.08 * width : 0, oy: moved ? -0.05 * height : 0, wc: (REF_H * width) / height, width, height };
}

export const toScreenX = (v: View, cx: number) => (cx - v.wc / 2) * v.zoom * v.q + v.width / 2 + v.ox;
export const toScreenY = (v: View, cy: number) => (cy - REF_H / 2) * v.zoom * v.q + v.height / 2 + v.oy;
export const toCanonX = (v: View, sx: number) => (sx - v.width / 2 - v.ox) / (v.zoom * v.q) + v.wc / 2;
export const toCanonY = (v: View, sy: number) => (sy - v.height / 2 - v.oy) / (v.zoom * v.q) + REF_H / 2;

// ---------------------------------------------------------------------------------------------
// Palettes: `palette` swaps the clothes, paints and bicycle frames for a disjoint, vivid set.

export interface Palette {
  shirt: readonly RGB[];
  trousers: readonly RGB[];
  shoes: readonly RGB[];
  paint: readonly RGB[];
  frame: readonly RGB[];
}

export const NORMAL_PALETTE: Palette = {
  shirt: [[38, 48, 88], [30, 30, 33], [118, 118, 124], [150, 38, 40], [212, 212, 206], [186, 166, 126], [88, 98, 60], [108, 74, 50], [70, 94, 138], [40, 78, 56], [150, 150, 170], [90, 40, 60]],
  trousers: [[48, 66, 108], [28, 28, 32], [86, 86, 92], [146, 132, 98], [86, 62, 44], [60, 60, 70], [36, 44, 70], [120, 112, 100]],
  shoes: [[25, 24, 24], [60, 44, 34], [200, 200, 196], [70, 70, 74]],
  paint: [[224, 224, 220], [168, 171, 176], [24, 24, 27], [78, 80, 85], [30, 44, 88], [146, 26, 30], [30, 68, 50], [198, 188, 158], [48, 88, 156], [110, 110, 104]],
  frame: [[22, 22, 24], [150, 30, 34], [40, 70, 140], [170, 172, 176], [40, 90, 60], [220, 220, 214], [100, 96, 90], [60, 40, 30]],
};

export const SHIFTED_PALETTE: Palette = {
  shirt: [[222, 40, 182], [150, 232, 40], [252, 132, 22], [30, 212, 222], [242, 222, 30], [122, 40, 202], [252, 152, 192], [0, 152, 142], [252, 102, 90], [180, 255, 160], [255, 200, 120], [90, 120, 255]],
  trousers: [[200, 60, 162], [232, 202, 52], [40, 182, 92], [252, 122, 52], [122, 202, 232], [170, 90, 230], [255, 90, 140], [90, 220, 200]],
  shoes: [[240, 60, 60], [60, 200, 240], [250, 220, 60], [150, 80, 220]],
  paint: [[242, 122, 22], [236, 202, 22], [132, 212, 42], [202, 32, 152], [22, 192, 212], [112, 52, 182], [242, 132, 182], [52, 222, 162], [255, 82, 62], [160, 112, 255]],
  frame: [[255, 120, 0], [255, 0, 160], [0, 220, 120], [250, 240, 0], [0, 200, 255], [170, 0, 255], [255, 90, 90], [120, 255, 60]],
};

export const SKIN: readonly RGB[] = [[236, 202, 172], [212, 166, 132], [174, 122, 92], [124, 84, 58], [92, 62, 42], [226, 184, 150]];
export const HAIR: readonly RGB[] = [[28, 24, 20], [68, 48, 30], [118, 88, 50], [182, 160, 118], [150, 148, 146], [40, 30, 26]];
