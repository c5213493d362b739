/**
 * A camera's frame latency, from the frame decoded to its detections handed to MQTT: the last
 * frames' values for the status line's p50 / p99 (the /metrics histogram keeps all of them).
 */
export class LatencyWindow {
  private readonly values: Float64Array;
  private next = 0;
  private filled = 0;
  /** The latest frame's latency, ms; undefined before the first. */
  lastMs: number | undefined;

  constructor(size = 1024) {
    this.values = new Float64Array(size);
  }

  add(ms: number): void {
    this.values[this.next] = ms;
    this.next = (this.next + 1) % this.values.length;
    this.filled = Math.min(this.filled + 1, this.values.length);
    this.lastMs = ms;
  }

  get count(): number {
    return this.filled;
  }

  /** The q-quantile (0..1) of the window, nearest rank; undefined when empty. */
  quantile(q: number): number | undefined {
    if (this.filled === 0) return undefined;
    const sorted = this.values.slice(0, this.filled).sort();
    return sorted[Math.min(this.filled - 1, Math.max(0, Math.ceil(q * this.filled) - 1))];
  }
}
