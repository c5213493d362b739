/**
 * From an inference pass's head features to the engine's supervised cells: the features of one
 * cell of a level's feature map (NCHW, as `HeadSwappableSession.run` returns them in
 * src/model/head.ts), and the cell's centre as a normalised position.
 */
import type { SupervisedCell } from './engine-types.js';

/** What is read of a level's feature map (`HeadFeatureMap` has it): NCHW, `data[((n * D + d) * H + y) * W + x]`. */
export interface FeatureMapView {
  level: number;
  dims: readonly [number, number, number, number];
  data: Float32Array;
}

/** The D features of cell (gx, gy) of image `batch`, copied out of the map. */
export function cellFeatures(map: FeatureMapView, gx: number, gy: number, batch = 0): Float32Array {
  const [N, D, H, W] = map.dims;
  if (!(Number.isInteger(gx) && Number.isInteger(gy) && gx >= 0 && gy >= 0 && gx < W && gy < H)) throw new RangeError(`cell (${gx}, ${gy}) is outside the ${W}x${H} feature map of level ${map.level}`);
  if (!(batch >= 0 && batch < N)) throw new RangeError(`image ${batch} of a batch of ${N}`);
  const out = new Float32Array(D);
  const plane = H * W;
  let o = batch * D * plane + gy * W + gx;
  for (let d = 0; d < D; d++, o += plane) out[d] = map.data[o]!;
  return out;
}

/**
 * A supervised cell of a level's map. The position defaults to the cell's centre over the map;
 * with a letterboxed input, give `position`: the centre in the source frame, normalised (0..1),
 * so that regions divide the picture and not the padding.
 */
export function supervisedCell(map: FeatureMapView, gx: number, gy: number, classId: number, target: 0 | 1, position?: { x: number; y: number }): SupervisedCell {
  const [, , H, W] = map.dims;
  return {
    level: map.level,
    x: position?.x ?? (gx + 0.5) / W,
    y: position?.y ?? (gy + 0.5) / H,
    classId,
    target,
    features: cellFeatures(map, gx, gy),
  };
}
