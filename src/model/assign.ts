/**
 * Which cells of a detection grid speak for which box: FCOS-style assignment with centre sampling.
 * It is the rule the Beats CNN is trained by (src/train/beats-train.ts) and the one a teacher's
 * boxes become adaptation targets by (src/adapt/supervision.ts), so that both mean the same thing
 * by "this cell is a person".
 *
 * A cell is positive for a box when it holds the box's centre, or when its centre lies strictly
 * inside the box and within 1.5 cells of the box's centre (or, with `sizeRadius`, within that share
 * of the box's shorter side, when that is more). A cell claimed by two boxes goes to the smaller.
 * Boxes under 1 pixel wide or tall claim nothing.
 */

/** In no box. */
export const OUTSIDE = -1;
/** In a box (edges included) but positive for none: a negative in training, left out of teacher targets. */
export const INSIDE = -2;
/** In an ignored box and positive for none: counts for nothing. */
export const IGNORED = -3;

export interface AssignGrid {
  /** Cells across and down. */
  gw: number;
  gh: number;
  /** Pixels per cell; cell (gx, gy) has its centre at ((gx + 0.5) * stride, (gy + 0.5) * stride). */
  stride: number;
  /**
   * The positive radius grows with the box: at least this share of its shorter side. On one fine
   * grid a large box otherwise has a few positive cells amid hundreds of negatives inside it, which
   * only a cell that sees the whole object could tell apart; the model learns to miss large objects.
   */
  sizeRadius?: number;
}

export interface AssignBox {
  /** [x1, y1, x2, y2] in the grid's pixels. */
  box: readonly number[];
  /** Too hidden to be a positive or a negative (the truth files' rule): its cells do not count. */
  ignore?: boolean;
}

/** The cell [gx, gy] holding a box's centre (clamped to the grid): a positive of the box unless a smaller box claims it. */
export function centreCell(grid: AssignGrid, box: readonly number[]): [number, number] {
  const clamp = (v: number, n: number) => Math.max(0, Math.min(n - 1, v));
  return [clamp(Math.floor((box[0]! + box[2]!) / 2 / grid.stride), grid.gw), clamp(Math.floor((box[1]! + box[3]!) / 2 / grid.stride), grid.gh)];
}

/**
 * Per cell, row-major: the index in `boxes` of the box it is positive for, or OUTSIDE, INSIDE or
 * IGNORED.
 */
export function assignCells(grid: AssignGrid, boxes: readonly AssignBox[]): Int32Array {
  const { gw, gh, stride } = grid;
  const owner = new Int32Array(gw * gh).fill(OUTSIDE);
  const ownerArea = new Float64Array(gw * gh).fill(Infinity);
  boxes.forEach(({ box, ignore }, k) => {
    const [x1, y1, x2, y2] = box as [number, number, number, number];
    if (!(x2 - x1 >= 1 && y2 - y1 >= 1)) return;
    const radius = Math.max(1.5 * stride, (grid.sizeRadius ?? 0) * Math.min(x2 - x1, y2 - y1));
    const area = (x2 - x1) * (y2 - y1);
    const bcx = (x1 + x2) / 2;
    const bcy = (y1 + y2) / 2;
    const [centreX, centreY] = centreCell(grid, box);
    for (let gy = Math.max(0, Math.floor(y1 / stride)); gy <= Math.min(gh - 1, Math.floor(y2 / stride)); gy++) {
      for (let gx = Math.max(0, Math.floor(x1 / stride)); gx <= Math.min(gw - 1, Math.floor(x2 / stride)); gx++) {
        const cx = (gx + 0.5) * stride;
        const cy = (gy + 0.5) * stride;
        const cell = gy * gw + gx;
        const inside = cx >= x1 && cx <= x2 && cy >= y1 && cy <= y2;
        if (ignore) {
          if (inside && owner[cell]! < 0) owner[cell] = IGNORED;
          continue;
        }
        const holdsCentre = gx === centreX && gy === centreY;
        const near = cx > x1 && cx < x2 && cy > y1 && cy < y2 && Math.abs(cx - bcx) <= radius && Math.abs(cy - bcy) <= radius;
        if (holdsCentre || near) {
          if (area < ownerArea[cell]!) {
            owner[cell] = k;
            ownerArea[cell] = area;
          }
        } else if (inside && owner[cell] === OUTSIDE) owner[cell] = INSIDE;
      }
    }
  });
  return owner;
}
