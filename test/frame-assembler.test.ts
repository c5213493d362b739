import { describe, expect, it } from 'vitest';
import { FrameAssembler } from '../src/source/frame-assembler.js';

/** Bytes 0, 1, 2, ... (mod 251) so that a frame cut at the wrong offset shows. */
function stream(length: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => i % 251));
}

describe('FrameAssembler', () => {
  it('cuts chunks of any size, across frame boundaries, into the exact frames', () => {
    const frameBytes = 1000;
    const bytes = stream(frameBytes * 5 + 123);
    for (const chunkSize of [1, 7, 999, 1000, 1001, 2500, bytes.length]) {
      const assembler = new FrameAssembler(frameBytes);
      for (let at = 0; at < bytes.length; at += chunkSize) assembler.push(bytes.subarray(at, at + chunkSize));
      expect(assembler.readyFrames, `chunks of ${chunkSize}`).toBe(5);
      for (let i = 0; i < 5; i++) expect(assembler.take()!.equals(bytes.subarray(i * frameBytes, (i + 1) * frameBytes))).toBe(true);
      expect(assembler.take()).toBeUndefined();
      expect(assembler.partialBytes).toBe(123);
    }
  });

  it('keeps no reference to the chunks it was given', () => {
    const assembler = new FrameAssembler(4);
    const chunk = Buffer.from([1, 2, 3, 4, 5, 6]);
    assembler.push(chunk);
    chunk.fill(0);
    expect([...assembler.take()!]).toEqual([1, 2, 3, 4]);
    assembler.push(Buffer.from([7, 8]));
    expect([...assembler.take()!]).toEqual([5, 6, 7, 8]);
  });

  it('refuses a frame size that is not a positive integer', () => {
    expect(() => new FrameAssembler(0)).toThrow(/positive integer, got 0/);
    expect(() => new FrameAssembler(2.5)).toThrow(/positive integer/);
  });
});
