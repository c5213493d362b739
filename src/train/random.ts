/** A seeded generator for training data: the same samples for a recipe's seed on every machine. */
export type Random = () => number;

/** xorshift32 in [0, 1). */
export function seededRandom(seed: number): Random {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}
