/**
 * `concatMapEager(project, concurrency)`: like `concatMap`, but up to `concurrency` inner
 * observables run at once; what they emit comes out in the order of the inputs that made them (an
 * inner's values are held until every inner before it has completed). A camera's chain uses it to
 * keep a second frame waiting at the inference worker while the first is inferred, without
 * reordering the frames that tracking sees.
 *
 * Backpressure: at most `concurrency` inners are subscribed; further inputs wait in mergeMap's
 * buffer, which the chain's demand keeps from growing (it asks the source for a frame only when
 * one leaves detection). Held values are bounded by the inners running.
 */
import { concatMap, defer, from, map, mergeMap, toArray, type ObservableInput, type OperatorFunction } from 'rxjs';

export function concatMapEager<T, R>(project: (value: T) => ObservableInput<R>, concurrency: number): OperatorFunction<T, R> {
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new RangeError(`concatMapEager: concurrency must be a whole number of at least 1 (got ${concurrency})`);
  return (source) =>
    defer(() => {
      const held = new Map<number, R[]>();
      let next = 0;
      return source.pipe(
        mergeMap((value, index) => from(project(value)).pipe(toArray(), map((values) => ({ index, values }))), concurrency),
        concatMap(({ index, values }) => {
          held.set(index, values);
          const out: R[] = [];
          for (let ready = held.get(next); ready !== undefined; ready = held.get(next)) {
            held.delete(next++);
            out.push(...ready);
          }
          return out;
        }),
      );
    });
}
