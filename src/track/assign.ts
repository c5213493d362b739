/**
 * Minimum-cost assignment with a cost limit (the Hungarian algorithm, as ByteTrack's lap.lapjv with
 * `cost_limit`): pairs rows (tracks) with columns (detections) so that the total cost is lowest,
 * where leaving a row or a column unpaired costs `maxCost / 2`. A pair costing more than `maxCost`
 * is never made, and a pair close to the limit is made only if no better use of the two exists:
 * one good match wins over two poor ones (a plain "match as many as possible" would not).
 */

export interface Assignment {
  /** [row, column] pairs, by row. */
  pairs: Array<[number, number]>;
  unmatchedRows: number[];
  unmatchedColumns: number[];
}

/** Stands for "not allowed"; finite so that the potentials stay ordinary numbers. */
const FORBIDDEN = 1e6;

/** `cost[row][column]`; NaN, Infinity and anything above `maxCost` forbid the pair. */
export function assign(cost: ReadonlyArray<ArrayLike<number>>, columns: number, maxCost: number): Assignment {
  const rows = cost.length;
  if (rows === 0 || columns === 0) {
    return { pairs: [], unmatchedRows: range(rows), unmatchedColumns: range(columns) };
  }
  // The square matrix [[cost, leave row], [leave column, 0]] of size rows + columns: every real row
  // may go to a dummy column (unmatched) and every real column to a dummy row, at half the limit each.
  const n = rows + columns;
  const half = maxCost / 2;
  const at = (r: number, c: number): number => {
    if (r < rows && c < columns) {
      const v = cost[r]![c]!;
      return Number.isFinite(v) && v <= maxCost ? v : FORBIDDEN;
    }
    return r < rows || c < columns ? half : 0;
  };
  const columnOfRow = hungarian(n, at);
  const pairs: Array<[number, number]> = [];
  const matchedColumns = new Set<number>();
  const unmatchedRows: number[] = [];
  for (let r = 0; r < rows; r++) {
    const c = columnOfRow[r]!;
    if (c < columns && at(r, c) !== FORBIDDEN) {
      pairs.push([r, c]);
      matchedColumns.add(c);
    } else {
      unmatchedRows.push(r);
    }
  }
  return { pairs, unmatchedRows, unmatchedColumns: range(columns).filter((c) => !matchedColumns.has(c)) };
}

/**
 * Square n×n minimum-cost perfect matching, O(n³) (Kuhn–Munkres with potentials, the shortest
 * augmenting path form). Returns the column of each row. Deterministic: ties go to the lowest index.
 */
function hungarian(n: number, cost: (r: number, c: number) => number): number[] {
  // 1-based inside, with row/column 0 as the sentinel of the augmenting path.
  const u = new Float64Array(n + 1);
  const v = new Float64Array(n + 1);
  const rowOfColumn = new Int32Array(n + 1);
  const way = new Int32Array(n + 1);
  const minv = new Float64Array(n + 1);
  const used = new Uint8Array(n + 1);
  for (let i = 1; i <= n; i++) {
    rowOfColumn[0] = i;
    let j0 = 0;
    minv.fill(Infinity);
    used.fill(0);
    do {
      used[j0] = 1;
      const i0 = rowOfColumn[j0]!;
      let delta = Infinity;
      let j1 = 0;
      for (let j = 1; j <= n; j++) {
        if (used[j]) continue;
        const reduced = cost(i0 - 1, j - 1) - u[i0]! - v[j]!;
        if (reduced < minv[j]!) {
          minv[j] = reduced;
          way[j] = j0;
        }
        if (minv[j]! < delta) {
          delta = minv[j]!;
          j1 = j;
        }
      }
      for (let j = 0; j <= n; j++) {
        if (used[j]) {
          u[rowOfColumn[j]!] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (rowOfColumn[j0] !== 0);
    do {
      const j1 = way[j0]!;
      rowOfColumn[j0] = rowOfColumn[j1]!;
      j0 = j1;
    } while (j0 !== 0);
  }
  const columnOfRow = new Array<number>(n).fill(-1);
  for (let j = 1; j <= n; j++) if (rowOfColumn[j]! > 0) columnOfRow[rowOfColumn[j]! - 1] = j - 1;
  return columnOfRow;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
