/**
 * Operator verdicts as supervised frames for whole-model adaptation (src/adapt/student/verdict-frames.ts):
 * which frames a verdict labels, and the targets it gives them.
 */
import { describe, expect, it } from 'vitest';
import type { AcceptedFeedback } from '../src/adapt/feedback.js';
import { VerdictFrames, type ObservedDetection } from '../src/adapt/student/verdict-frames.js';
import { letterbox } from '../src/source/geometry.js';

// Source 320x240 into a 160x120 input: model pixels are half the source's.
const geometry = letterbox(320, 240, 160, 120, 'center');
const pixels = (v: number) => new Uint8Array(160 * 120 * 3).fill(v);

const person: ObservedDetection = { classId: 0, score: 0.9, box: [20, 20, 60, 120], trackId: 7 };
const car: ObservedDetection = { classId: 1, score: 0.8, box: [200, 100, 300, 180] };
const unsure: ObservedDetection = { classId: 2, score: 0.3, box: [100, 40, 140, 90] };
const noise: ObservedDetection = { classId: 2, score: 0.1, box: [0, 0, 10, 10] };

function framesWith(count: number, options = { capacity: 10, threshold: 0.5, perVerdict: 8 }): VerdictFrames {
  const kept = new VerdictFrames(options);
  for (let i = 0; i < count; i++) kept.remember({ index: i, streamTime: i / 10, pixels: pixels(i), geometry }, [person, car, unsure, noise]);
  return kept;
}

function verdict(v: Partial<AcceptedFeedback> & Pick<AcceptedFeedback, 'verdict'>): AcceptedFeedback {
  return { camera: 'c', frame: { index: 4, ts: 0, width: 320, height: 240 }, trackFrames: [], origin: 'mqtt', receivedAt: 0, ...v } as AcceptedFeedback;
}

const fpOnPerson = verdict({ verdict: 'false_positive', detection: { label: 'person', classId: 0, score: 0.9, box: [20, 20, 60, 120], trackId: 7 } as AcceptedFeedback['detection'], trackId: 7 });

describe('verdict frames', () => {
  it('false_positive: the detection leaves the targets of its frame and of its track\'s frames; confident detections stay positives, unsure ones are ignored', () => {
    const images = framesWith(6).imagesFor(fpOnPerson);
    expect(images).toHaveLength(6);
    // The verdict's own frame first, with its own pixels.
    expect(images[0]!.pixels[0]).toBe(4);
    expect(images.map((i) => i.pixels[0]).slice(1)).toEqual([0, 1, 2, 3, 5]);
    for (const image of images) {
      expect(image.boxes).toEqual([
        { classId: 1, box: [100, 50, 150, 90], ignore: false },
        { classId: 2, box: [50, 20, 70, 45], ignore: true },
      ]);
    }
  });

  it('correct keeps the detection as a positive; wrong_class gives it the right class', () => {
    const kept = framesWith(5);
    const [correct] = kept.imagesFor({ ...fpOnPerson, verdict: 'correct' });
    expect(correct!.boxes).toContainEqual({ classId: 0, box: [10, 10, 30, 60], ignore: false });
    const [wrong] = kept.imagesFor({ ...fpOnPerson, verdict: 'wrong_class', label: { name: 'bicycle', classId: 2 } });
    expect(wrong!.boxes).toContainEqual({ classId: 2, box: [10, 10, 30, 60], ignore: false });
    expect(wrong!.boxes.filter((b) => b.classId === 0)).toEqual([]);
  });

  it('missed adds the operator\'s box, in model pixels, on its frame only', () => {
    const images = framesWith(6).imagesFor(verdict({ verdict: 'missed', box: [240, 20, 280, 100], label: { name: 'person', classId: 0 } }));
    expect(images).toHaveLength(1);
    expect(images[0]!.boxes).toContainEqual({ classId: 0, box: [120, 10, 140, 50], ignore: false });
    expect(images[0]!.boxes).toContainEqual({ classId: 0, box: [10, 10, 30, 60], ignore: false });
  });

  it('keeps at most its capacity of frames, and labels at most perVerdict of them, spread over the track', () => {
    const kept = framesWith(30, { capacity: 20, threshold: 0.5, perVerdict: 5 });
    expect(kept.size).toBe(20);
    const images = kept.imagesFor({ ...fpOnPerson, frame: { index: 25, ts: 0, width: 320, height: 240 } });
    expect(images).toHaveLength(5);
    expect(images[0]!.pixels[0]).toBe(25);
    expect(kept.imagesFor({ ...fpOnPerson, frame: { index: 3, ts: 0, width: 320, height: 240 }, trackId: undefined, detection: { ...fpOnPerson.detection!, trackId: undefined } })).toEqual([]);
  });

  it('each image owns its pixels (they are transferred to the worker one by one)', () => {
    const images = framesWith(3).imagesFor({ ...fpOnPerson, frame: { index: 1, ts: 0, width: 320, height: 240 } });
    expect(new Set(images.map((i) => i.pixels.buffer)).size).toBe(images.length);
  });
});
