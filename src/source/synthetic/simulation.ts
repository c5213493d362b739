/**
 * The simulation of a synthetic scene: actors spawned by per-lane Poisson processes whose rate
 * follows a seeded activity level, and retired when gone.
 */
import { hash3, hashUnit, Rng } from './random.js';
import type { Actor } from './actors.js';
import type { SceneDef, Stream, World } from './scenes.js';


/** Simulation starts this long before stream time 0, so the first frame is already busy. */
const WARMUP_S = -40;
const ACTIVITY_BLOCK_S = 15;
const ACTIVITY_MAX = 1.5;

export class Simulation {
  actors: Actor[] = [];
  private streams: Array<{ stream: Stream; rng: Rng; next: number }> = [];
  private nextId = 1;
  private time = -Infinity;

  constructor(
    private readonly def: SceneDef,
    private readonly seed: number,
    private readonly wc: number,
  ) {}

  /** Activity level of the 15 s block holding t: quiet (no arrivals) 15 % of the time. */
  activity(t: number): number {
    const u = hashUnit(this.seed, Math.floor(t / ACTIVITY_BLOCK_S), 0xac7);
    return u < 0.15 ? 0 : 0.5 + (u - 0.15) / 0.85;
  }

  private reset(): void {
    this.actors = [];
    this.nextId = 1;
    const world: World = {
      wc: this.wc,
      add: (label, look, path) => {
        const keys = path.keys;
        this.actors.push({ id: this.nextId++, label, look, keys, t0: keys[0]!.t, t1: keys[keys.length - 1]!.t, cursor: 0 });
      },
    };
    this.streams = this.def.streams(world).map((stream, i) => {
      const rng = new Rng(hash3(this.seed, i + 1, 0x57e));
      return { stream, rng, next: WARMUP_S + rng.exp(stream.rate * ACTIVITY_MAX) };
    });
    this.time = WARMUP_S;
  }

  /** Spawns everything due by time t (in time order, so ids follow arrival), drops what has left. */
  advance(t: number): void {
    if (t < this.time) this.reset();
    if (this.time === -Infinity) this.reset();
    for (;;) {
      let due: (typeof this.streams)[number] | undefined;
      for (const s of this.streams) if (s.next <= t && (!due || s.next < due.next)) due = s;
      if (!due) break;
      if (due.rng.next() < this.activity(due.next) / ACTIVITY_MAX) due.stream.spawn(due.next, due.rng);
      due.next += due.rng.exp(due.stream.rate * ACTIVITY_MAX);
    }
    this.time = t;
    this.actors = this.actors.filter((a) => a.t1 >= t);
  }
}
