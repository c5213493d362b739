/**
 * The replay reservoir of whole-model adaptation (BEATS.md, "The whole model"): a bounded, uniform
 * sample of the supervised model-input frames seen so far, with their targets. A body that changes
 * makes stored features stale, so the frames themselves are kept, at the model's input size.
 *
 * Bounded twice: at most `maxFrames` frames and `maxBytes` bytes of pixels. Sampling is Vitter's
 * algorithm R, so every frame of the stream has the same chance of being kept however long it runs,
 * and the earliest scenes stay in the sample the guard replays.
 */
import type { Random } from '../../train/random.js';
import type { TrainingSample } from '../../train/beats-train.js';

/** A frame with its targets: the teacher's (or verdicts') boxes in input pixels, unsure ones ignored. */
export interface SupervisedImage extends TrainingSample {
  /** Stream seconds of the frame. */
  time: number;
}

export interface ReservoirBounds {
  maxFrames: number;
  maxBytes: number;
}

export class FrameReservoir {
  private readonly frames: SupervisedImage[] = [];
  private bytesHeld = 0;
  /** Frames offered so far. */
  seen = 0;

  constructor(
    private readonly bounds: ReservoirBounds,
    private readonly random: Random,
  ) {
    if (!(bounds.maxFrames >= 1) || !(bounds.maxBytes >= 1)) throw new RangeError(`reservoir bounds ${bounds.maxFrames} frames, ${bounds.maxBytes} bytes: both must be at least 1`);
  }

  get size(): number {
    return this.frames.length;
  }

  get bytes(): number {
    return this.bytesHeld;
  }

  /** The most frames that fit both bounds, given the size of one frame. */
  private capacity(frameBytes: number): number {
    return Math.max(1, Math.min(this.bounds.maxFrames, Math.floor(this.bounds.maxBytes / Math.max(1, frameBytes))));
  }

  /** Keeps `frame` with probability capacity / seen, replacing a random one when full. */
  offer(frame: SupervisedImage): void {
    this.seen++;
    const capacity = this.capacity(frame.pixels.byteLength);
    if (this.frames.length < capacity) {
      this.frames.push(frame);
      this.bytesHeld += frame.pixels.byteLength;
      return;
    }
    const slot = Math.floor(this.random() * this.seen);
    if (slot >= capacity) return;
    const at = slot % this.frames.length;
    this.bytesHeld += frame.pixels.byteLength - this.frames[at]!.pixels.byteLength;
    this.frames[at] = frame;
  }

  /** `n` frames drawn at random (with replacement when n exceeds the size). */
  sample(n: number): SupervisedImage[] {
    if (this.frames.length === 0) return [];
    if (n >= this.frames.length) return Array.from({ length: n }, (_, i) => this.frames[i < this.frames.length ? i : Math.floor(this.random() * this.frames.length)]!);
    const picked = new Set<number>();
    while (picked.size < n) picked.add(Math.floor(this.random() * this.frames.length));
    return [...picked].map((i) => this.frames[i]!);
  }

  all(): readonly SupervisedImage[] {
    return this.frames;
  }
}
