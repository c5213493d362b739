import type { Head } from '../../src/adapt/engine-types.js';

/** A YOLOX-sized head (3 levels of 80 x 128): a version file of about 170 KB, every value k. */
export function bigHead(k: number): Head {
  return [0, 1, 2].map(() => ({ weight: new Float32Array(80 * 128).fill(k), bias: new Float32Array(80).fill(k), shape: [80, 128] as [number, number] }));
}
