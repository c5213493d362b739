/**
 * When frames waiting for a model go to it, and how many at once: first come, first served (no
 * camera starves: each camera has at most two frames in detection, the chain's backpressure), a batch as
 * soon as every attached camera has a frame waiting or `maxBatch` are, otherwise once the oldest has
 * waited `timeoutMs` since it came or since the model was free, whichever is later (a stalled or slow
 * camera holds the others that long per batch at most). Counting from the model's free moment is what
 * lets cameras that fell out of step (half of them waiting while the other half runs) come together
 * into one batch again: the ones just answered send their next frames within that time. Bounded:
 * `maxQueued` frames at most (or the caller's larger bound), beyond that `push` refuses.
 */
export interface BatchPolicy {
  maxBatch: number;
  timeoutMs: number;
  maxQueued: number;
}

export type BatchDecision<T> = { take: T[] } | { waitMs: number } | undefined;

export class BatchQueue<T> {
  private readonly waiting: Array<{ value: T; since: number }> = [];

  constructor(private policy: BatchPolicy) {}

  get length(): number {
    return this.waiting.length;
  }

  get maxBatch(): number {
    return this.policy.maxBatch;
  }

  /** A model whose batch turns out fixed runs one frame at a time. */
  limitBatch(maxBatch: number): void {
    this.policy = { ...this.policy, maxBatch: Math.max(1, Math.min(this.policy.maxBatch, maxBatch)) };
  }

  /** False when `maxQueued` frames (or `atMost`, when larger) already wait. */
  push(value: T, now: number, atMost = this.policy.maxQueued): boolean {
    if (this.waiting.length >= Math.max(this.policy.maxQueued, atMost)) return false;
    this.waiting.push({ value, since: now });
    return true;
  }

  /**
   * A batch to run now (the oldest frames, up to maxBatch), or how long to wait for more, or
   * undefined with nothing waiting. `attached`: the cameras that send frames (0 counts as 1);
   * `freeSince`: when the model finished its last batch.
   */
  next(now: number, attached: number, freeSince = -Infinity): BatchDecision<T> {
    const oldest = this.waiting[0];
    if (!oldest) return undefined;
    const target = Math.min(this.policy.maxBatch, Math.max(1, attached));
    const waited = now - Math.max(oldest.since, freeSince);
    if (this.waiting.length >= target || waited >= this.policy.timeoutMs) {
      return { take: this.waiting.splice(0, this.policy.maxBatch).map((w) => w.value) };
    }
    return { waitMs: this.policy.timeoutMs - waited };
  }

  /** Everything waiting, oldest first, and the queue empty. */
  drain(): T[] {
    return this.waiting.splice(0).map((w) => w.value);
  }
}
