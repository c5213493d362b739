/**
 * concatMapEager: inners run up to the concurrency at once, their values come out in input order,
 * and an error still ends the stream.
 */
import { Subject, lastValueFrom, of, throwError, timer, toArray, map, from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { concatMapEager } from '../src/pipeline/concat-map-eager.js';

describe('concatMapEager', () => {
  it('keeps input order when later inners finish first, with at most `concurrency` running', async () => {
    let running = 0;
    let most = 0;
    const delays = [40, 5, 25, 1, 10, 2];
    const out = await lastValueFrom(
      from(delays.map((ms, i) => ({ ms, i }))).pipe(
        concatMapEager(({ ms, i }) => {
          running++;
          most = Math.max(most, running);
          return timer(ms).pipe(
            map(() => {
              running--;
              return i;
            }),
          );
        }, 2),
        toArray(),
      ),
    );
    expect(out).toEqual([0, 1, 2, 3, 4, 5]);
    expect(most).toBe(2);
  });

  it('starts the second inner before the first has finished (what makes it eager)', async () => {
    const started: number[] = [];
    const first = new Subject<string>();
    const result = lastValueFrom(
      of(0, 1).pipe(
        concatMapEager((i) => {
          started.push(i);
          return i === 0 ? first : of('b');
        }, 2),
        toArray(),
      ),
    );
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    first.next('a');
    first.complete();
    expect(await result).toEqual(['a', 'b']);
  });

  it('passes on an inner error, and refuses a concurrency below one', async () => {
    await expect(lastValueFrom(of(1, 2).pipe(concatMapEager((i) => (i === 2 ? throwError(() => new Error('bad frame')) : of(i)), 2)))).rejects.toThrow('bad frame');
    expect(() => concatMapEager(() => of(1), 0)).toThrow(/at least 1/);
  });
});
