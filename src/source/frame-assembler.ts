/**
 * Cuts ffmpeg's raw video output into whole frames. Each byte is copied once, straight from the
 * pipe's chunk into the frame it belongs to: a frame of a 416x416 model is about eight 64 KB pipe
 * chunks, and joining them first (then cutting a copy) tripled the main thread's cost of a frame.
 * Frames are allocated without zero-filling, since every byte is written before a frame leaves.
 */
export class FrameAssembler {
  private readonly ready: Buffer[] = [];
  private current: Buffer | undefined;
  private filled = 0;

  constructor(readonly frameBytes: number) {
    if (!Number.isInteger(frameBytes) || frameBytes <= 0) throw new RangeError(`frame size must be a positive integer, got ${frameBytes}`);
  }

  /** Takes a chunk of the stream; it is copied, so the caller's buffer is not kept. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      this.current ??= Buffer.allocUnsafeSlow(this.frameBytes);
      const copied = chunk.copy(this.current, this.filled, offset);
      offset += copied;
      this.filled += copied;
      if (this.filled === this.frameBytes) {
        this.ready.push(this.current);
        this.current = undefined;
        this.filled = 0;
      }
    }
  }

  /** The oldest whole frame not yet taken, if any. */
  take(): Buffer | undefined {
    return this.ready.shift();
  }

  /** Whole frames waiting to be taken. */
  get readyFrames(): number {
    return this.ready.length;
  }

  /** Bytes of a frame begun but not complete (a stream that ends here ended mid-frame). */
  get partialBytes(): number {
    return this.filled;
  }
}
