/**
 * The mosaic grids a training recipe may name (n for an n x n mosaic of smaller real samples). A
 * leaf, so that the command line checks `--mosaic-grid` without loading the training code.
 */
export function validMosaicGrids(grids: readonly number[]): boolean {
  return grids.length > 0 && grids.every((n) => Number.isInteger(n) && n >= 2 && n <= 8);
}
