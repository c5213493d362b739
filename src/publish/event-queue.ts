import type { EventOutput } from './messages.js';

export interface EventQueueOptions {
  /** Publishes one frame's event output (snapshots, counts, events through the outbox). */
  publish: (output: EventOutput) => Promise<void>;
  /** Outputs waiting past which `push` holds the frame path until one is done. */
  maxPending: number;
  /** A publish that failed: the output is lost for MQTT (its events stay in the event log), the queue goes on. */
  onError: (err: unknown, output: EventOutput) => void;
}

/**
 * One camera's event outputs on their way to MQTT, in frame order, off the frame path. Publishing
 * an event renders a JPEG snapshot and writes it and the event to disk with fsync: milliseconds
 * on an SSD, up to a hundred on an SD card, and the next frame need not wait for them. Bounded:
 * with `maxPending` outputs waiting, `push` resolves only once one is done, so a disk that stalls
 * slows the camera down (backpressure) instead of growing memory or dropping events.
 */
export class EventQueue {
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly options: EventQueueOptions) {}

  /** Outputs queued and not yet published. */
  get depth(): number {
    return this.pending;
  }

  /** Queues an output; resolves at once, or when there is room again. Empty outputs are skipped. */
  push(output: EventOutput): Promise<void> {
    if (output.messages.length === 0 && output.counts.length === 0 && output.snapshots.length === 0) return Promise.resolve();
    this.pending++;
    this.tail = this.tail
      .then(() => this.options.publish(output))
      .catch((err: unknown) => this.options.onError(err, output))
      .finally(() => {
        this.pending--;
        this.waiting.shift()?.();
      });
    if (this.pending <= this.options.maxPending) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Resolves once everything queued so far is published (or failed). */
  drain(): Promise<void> {
    return this.tail;
  }
}
