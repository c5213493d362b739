import { mkdir, mkdtemp, readdir, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import jpeg from 'jpeg-js';
import { describe, expect, it } from 'vitest';
import { parsePipeline } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';
import { renderSnapshot, SnapshotStore } from '../src/publish/snapshots.js';
import type { Frame } from '../src/source/frame.js';
import { letterbox } from '../src/source/geometry.js';
import type { Detection } from '../src/model/detection.js';
import { EventBuilder, type TrackedObject } from '../src/track/events.js';
import { Tracker } from '../src/track/tracker.js';
import { compileZones, pointInPolygon, ZonePresence } from '../src/track/zones.js';

function frameAt(index: number, fps = 10, width = 200, height = 100): Frame {
  const geometry = letterbox(width, height, 64, 64, 'top-left');
  return { camera: 'cam', index, streamTime: index / fps, ts: 1_700_000_000_000 + (index * 1000) / fps, width, height, pixels: Buffer.alloc(64 * 64 * 3, 90), pixelFormat: 'rgb24', geometry };
}

const track = (id: number, box: [number, number, number, number], score = 0.8, extra: Partial<TrackedObject> = {}): TrackedObject => ({ id, label: 'person', score, box, stationary: false, confirmed: true, detection: 0, ...extra });

function builder(zones = {}, extra: Partial<ConstructorParameters<typeof EventBuilder>[0]> = {}) {
  return new EventBuilder({ camera: 'cam', model: { name: 'm', version: '1' }, threshold: 0.5, minFrames: 3, updateIntervalS: 1, zones, snapshots: true, ...extra });
}

describe('zones', () => {
  it('tests points against polygons, in pixels or fractions of the frame', () => {
    const square: Array<[number, number]> = [[10, 10], [50, 10], [50, 50], [10, 50]];
    expect(pointInPolygon(30, 30, square)).toBe(true);
    expect(pointInPolygon(60, 30, square)).toBe(false);
    const [z] = compileZones({ half: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]] }, 200, 100);
    expect(z!.polygon).toEqual([[100, 0], [200, 0], [200, 100], [100, 100]]);
    expect(pointInPolygon(150, 50, z!.polygon)).toBe(true);
    expect(pointInPolygon(50, 50, z!.polygon)).toBe(false);
  });

  it('enters after `inertia` frames inside, leaves after as many outside, and honours label filters', () => {
    const zones = compileZones({ door: { points: [[0, 0], [100, 0], [100, 100], [0, 100]], inertia: 3 }, cars: { points: [[0, 0], [100, 0], [100, 100], [0, 100]], labels: ['car'], inertia: 1 } }, 200, 100);
    const p = new ZonePresence();
    const inside: [number, number, number, number] = [40, 20, 60, 80];
    const outside: [number, number, number, number] = [140, 20, 160, 80];
    p.update(zones, inside, 'person');
    p.update(zones, inside, 'person');
    expect(p.current).toEqual([]);
    p.update(zones, inside, 'person');
    expect(p.current).toEqual(['door']);
    p.update(zones, outside, 'person');
    p.update(zones, inside, 'person'); // jitter on the edge: still in
    p.update(zones, outside, 'person');
    p.update(zones, outside, 'person');
    expect(p.current).toEqual(['door']);
    p.update(zones, outside, 'person');
    expect(p.current).toEqual([]);
    expect([...p.entered]).toEqual(['door']);
  });

  it('malformed zones are config errors with their path', () => {
    const issues = (zones: string) => {
      try {
        parsePipeline(`cameras: [{ name: c, source: { url: x.mp4 }, model: m, zones: ${zones} }]`, '/p.yaml');
      } catch (err) {
        return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
      }
      return [];
    };
    expect(issues('{ dock: [[0, 0], [1, 1]] }').join()).toMatch(/cameras\[0\]\.zones\.dock.*at least 3 points/);
    expect(issues('{ dock: [[0, 0], [5, 5], [10, 10]] }').join()).toMatch(/cameras\[0\]\.zones\.dock.*no area/);
    expect(issues('{ "Loading Dock": [[0, 0], [5, 0], [5, 5]] }').join()).toMatch(/cameras\[0\]\.zones\.Loading Dock.*\[a-z0-9_-\]\+/);
    expect(issues('{ dock: { points: [[0, 0], [5, 0], [5, 5]], inertia: 0 } }').join()).toMatch(/cameras\[0\]\.zones\.dock/);
    expect(issues('{ dock: { points: [[0, 0], [5, 0], [-5, 5]] } }').join()).toMatch(/cameras\[0\]\.zones\.dock/);
    expect(issues('{ dock: { points: [[0, 0], [5, 0], [5, 5]], colour: red } }').join()).toMatch(/cameras\[0\]\.zones\.dock/);
    expect(issues('{ snapshot: [[0, 0], [5, 0], [5, 5]] }').join()).toMatch(/topic of its own/);
    expect(issues('{ dock: { points: [[0, 0], [5, 0], [5, 5]], labels: [person] } }')).toEqual([]);
  });
});

describe('events', () => {
  it('says which model made the detections that matched the track: a teacher serving the camera, else the camera\'s own', () => {
    const b = builder();
    const teacher = { name: 'yolox-nano', version: '0.1.1' };
    const all = [];
    let n = 0;
    for (let i = 0; i < 3; i++) all.push(...b.update(frameAt(n++), [track(1, [10, 10, 30, 60], 0.8)], [], teacher).messages);
    expect(all.map((m) => m.type)).toEqual(['new']);
    expect(all[0]!.after.model).toEqual(teacher);
    // The student takes over: the event's end says so.
    b.update(frameAt(n++), [track(1, [10, 10, 30, 60], 0.8)], []);
    const ended = b.update(frameAt(n++), [], [track(1, [10, 10, 30, 60], 0.8, { detection: undefined })]);
    expect(ended.messages[0]!.after.model).toEqual({ name: 'm', version: '1' });
  });

  it('new after min_frames above the threshold, updates only on meaningful change, end with times from the frames', () => {
    const b = builder({ right: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]] });
    const all = [];
    let n = 0;
    // Two weak frames do not count; then three good ones confirm.
    for (const score of [0.3, 0.3, 0.8, 0.8, 0.8]) all.push(...b.update(frameAt(n++), [track(1, [10, 10, 30, 60], score)], []).messages);
    expect(all.map((m) => m.type)).toEqual(['new']);
    const created = all[0]!;
    expect(created.after).toMatchObject({ camera: 'cam', label: 'person', score: 0.8, top_score: 0.8, end_time: null, current_zones: [], stationary: false, has_snapshot: true, model: { name: 'm', version: '1' } });
    expect(created.after.start_time).toBe(1_700_000_000);
    expect(created.before).toEqual(created.after);
    // Nothing changes for a while: no update.
    for (let i = 0; i < 10; i++) all.push(...b.update(frameAt(n++), [track(1, [12, 10, 32, 60])], []).messages);
    expect(all).toHaveLength(1);
    // It walks into the right half: after inertia (3 frames) an update names the zone.
    for (let i = 0; i < 4; i++) all.push(...b.update(frameAt(n++), [track(1, [150, 10, 170, 60])], []).messages);
    expect(all.map((m) => m.type)).toEqual(['new', 'update']);
    expect(all[1]!.after.current_zones).toEqual(['right']);
    expect(all[1]!.before.current_zones).toEqual([]);
    // Lost for a few frames, then the tracker ends it: end_time is the last frame it was seen.
    const lastSeen = frameAt(n - 1).ts / 1000;
    b.update(frameAt(n++), [track(1, [150, 10, 170, 60], 0.8, { detection: undefined })], []);
    const ended = b.update(frameAt(n++), [], [track(1, [150, 10, 170, 60], 0.8, { detection: undefined })]);
    expect(ended.messages.map((m) => m.type)).toEqual(['end']);
    expect(ended.messages[0]!.after.end_time).toBe(lastSeen);
    expect(ended.messages[0]!.after.entered_zones).toEqual(['right']);
    // Unique message ids for de-duplication, one event id throughout.
    const ids = [...all, ...ended.messages].map((m) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set([...all, ...ended.messages].map((m) => m.after.id)).size).toBe(1);
  });

  it('rate limits updates to one per update_interval_s of stream time', () => {
    const b = builder({}, { minFrames: 1 });
    const types: string[] = [];
    // Score keeps rising and stationary flips: meaningful every frame, but at 10 fps only one update a second passes.
    for (let i = 0; i < 30; i++) types.push(...b.update(frameAt(i), [track(1, [10, 10, 30, 60], 0.5 + i * 0.015, { stationary: i % 2 === 0 })], []).messages.map((m) => m.type));
    expect(types[0]).toBe('new');
    expect(types.filter((t) => t === 'update').length).toBe(2);
  });

  it('a track that never confirms makes no event; counts per label and zone follow open events', () => {
    const b = builder({ left: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]] }, { minFrames: 2, knownLabels: ['person', 'car'] });
    expect(b.initialCounts()).toEqual([
      { label: 'person', count: 0 },
      { label: 'person', zone: 'left', count: 0 },
      { label: 'car', count: 0 },
      { label: 'car', zone: 'left', count: 0 },
    ]);
    const out1 = b.update(frameAt(0), [track(1, [10, 10, 30, 60]), track(2, [110, 10, 130, 60], 0.2)], []);
    expect(out1.counts).toEqual([]);
    const counts = [];
    for (let i = 1; i < 5; i++) counts.push(...b.update(frameAt(i), [track(1, [10, 10, 30, 60]), track(2, [110, 10, 130, 60], 0.2)], []).counts);
    expect(counts).toEqual([{ label: 'person', count: 1 }, { label: 'person', zone: 'left', count: 1 }]);
    const gone = b.update(frameAt(5), [], [track(1, [10, 10, 30, 60]), track(2, [110, 10, 130, 60], 0.2)]);
    expect(gone.messages.map((m) => m.type)).toEqual(['end']);
    expect(gone.counts).toEqual([{ label: 'person', count: 0 }, { label: 'person', zone: 'left', count: 0 }]);
  });

  it('flush ends open events; the best frame is snapshotted on new and again at end when it improved', () => {
    const b = builder({}, { minFrames: 1 });
    const first = b.update(frameAt(0), [track(1, [10, 10, 30, 60], 0.6)], []);
    expect(first.snapshots).toHaveLength(1);
    b.update(frameAt(1), [track(1, [10, 10, 30, 60], 0.9)], []);
    const flushed = b.flush();
    expect(flushed.messages.map((m) => m.type)).toEqual(['end']);
    expect(flushed.snapshots).toHaveLength(1);
    expect(flushed.snapshots[0]!.frame.index).toBe(1);
    expect(b.openEvents).toEqual([]);
  });

  it('keeps no state of tracks the tracker dropped unconfirmed (flicker would grow it without bound)', () => {
    const b = builder({}, { minFrames: 3 });
    const tracker = new Tracker({ minHits: 3 });
    let withEvents = 0;
    for (let i = 0; i < 400; i++) {
      // A person who stays, and a one-frame false positive somewhere new on every other frame.
      const detections: Detection[] = [{ box: [10, 10, 30, 60], score: 0.9, classId: 0, label: 'person' }];
      if (i % 2 === 0) detections.push({ box: [100 + (i % 7) * 12, 20, 110 + (i % 7) * 12, 40], score: 0.7, classId: 0, label: 'person' });
      const update = tracker.update(detections, frameAt(i));
      const out = b.update(frameAt(i), update.active, update.ended);
      withEvents += out.messages.filter((m) => m.type === 'new').length;
      expect(b.trackedStates).toBeLessThanOrEqual(update.active.length);
    }
    expect(withEvents).toBe(1);
    expect(b.openEvents).toHaveLength(1);
  });

  it('a track that vanishes without being reported ended still gets its end', () => {
    const b = builder({}, { minFrames: 1 });
    expect(b.update(frameAt(0), [track(1, [10, 10, 30, 60])], []).messages.map((m) => m.type)).toEqual(['new']);
    const out = b.update(frameAt(1), [], []);
    expect(out.messages.map((m) => m.type)).toEqual(['end']);
    expect(b.trackedStates).toBe(0);
  });
});

describe('snapshots', () => {
  it('renders the picture without padding, with the box drawn, and a crop around the object', async () => {
    const frame = frameAt(0); // 200x100 source into 64x64: picture 64x32 at the top
    const { full, crop } = await renderSnapshot(frame, [50, 25, 100, 75], 90);
    const img = jpeg.decode(full);
    expect([img.width, img.height]).toEqual([64, 32]);
    const at = (x: number, y: number) => Array.from(img.data.subarray((y * 64 + x) * 4, (y * 64 + x) * 4 + 3));
    // Box corner in picture pixels: (16, 8); the frame is flat grey 90, the box is drawn red.
    expect(at(16, 16)[0]).toBeGreaterThan(200);
    expect(at(40, 16)[0]).toBeLessThan(130);
    const c = jpeg.decode(crop);
    expect(c.width).toBeGreaterThanOrEqual(16);
    expect(c.width).toBeLessThan(64);
  });

  it('keeps the snapshot folder under its total size, oldest deleted first', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-snap-'));
    const store = new SnapshotStore({ dir, maxTotalBytes: 6000 });
    const images = { full: Buffer.alloc(1000, 1), crop: Buffer.alloc(500, 2) };
    for (let i = 0; i < 10; i++) await store.save('cam', `e${i}`, images);
    const left = (await readdir(path.join(dir, 'cam'))).sort();
    expect(left.length).toBeLessThanOrEqual(8);
    expect(left).toContain('e9.jpg');
    expect(left).not.toContain('e0.jpg');
  });

  it('keeps at most maxEvents events however small their snapshots, oldest deleted first', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-snap-'));
    const store = new SnapshotStore({ dir, maxTotalBytes: 1e9, maxEvents: 3 });
    const images = { full: Buffer.alloc(10, 1), crop: Buffer.alloc(5, 2) };
    for (let i = 0; i < 8; i++) await store.save('cam', `e${i}`, images);
    expect(store.size).toBe(3);
    expect((await readdir(path.join(dir, 'cam'))).sort()).toEqual(['e5-crop.jpg', 'e5.jpg', 'e6-crop.jpg', 'e6.jpg', 'e7-crop.jpg', 'e7.jpg']);
  });

  it('counts an event saved again once, and deletes its two files together', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-snap-'));
    const store = new SnapshotStore({ dir, maxTotalBytes: 4500 });
    const images = { full: Buffer.alloc(1000, 1), crop: Buffer.alloc(500, 2) };
    for (const id of ['e0', 'e1', 'e2', 'e1', 'e1']) await store.save('cam', id, images);
    // Three events of 1,500 bytes fit: saving e1 again replaced its bytes, it did not add them.
    expect((await readdir(path.join(dir, 'cam'))).sort()).toEqual(['e0-crop.jpg', 'e0.jpg', 'e1-crop.jpg', 'e1.jpg', 'e2-crop.jpg', 'e2.jpg']);
    expect(store.size).toBe(3);
    // e1 was saved last, so e0 and then e2 are the oldest.
    await store.save('cam', 'e3', images);
    expect((await readdir(path.join(dir, 'cam'))).sort()).toEqual(['e1-crop.jpg', 'e1.jpg', 'e2-crop.jpg', 'e2.jpg', 'e3-crop.jpg', 'e3.jpg']);
  });

  it('keeps a file of a save that failed half way under the bound', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-snap-'));
    const store = new SnapshotStore({ dir, maxTotalBytes: 4500 });
    const images = { full: Buffer.alloc(1000, 1), crop: Buffer.alloc(500, 2) };
    // A folder where the crop should go: the full picture is written, the crop is not.
    await mkdir(path.join(dir, 'cam', 'e0-crop.jpg'), { recursive: true });
    await expect(store.save('cam', 'e0', images)).rejects.toThrow();
    expect(await readdir(path.join(dir, 'cam'))).toContain('e0.jpg');
    for (const id of ['e1', 'e2', 'e3']) await store.save('cam', id, images);
    expect(await readdir(path.join(dir, 'cam'))).not.toContain('e0.jpg');
  });

  it('indexes what an earlier run left, oldest first, and keeps it under the bound', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-snap-'));
    const images = { full: Buffer.alloc(1000, 1), crop: Buffer.alloc(500, 2) };
    const before = new SnapshotStore({ dir, maxTotalBytes: 1e6 });
    for (const id of ['old', 'older', 'newer']) await before.save('cam', id, images);
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
    for (const [id, s] of [['older', 1], ['old', 2], ['newer', 3]] as const) {
      for (const f of [`${id}.jpg`, `${id}-crop.jpg`]) await utimes(path.join(dir, 'cam', f), at(s), at(s));
    }
    const after = new SnapshotStore({ dir, maxTotalBytes: 4500 });
    await after.save('other', 'new', images);
    expect(after.size).toBe(3);
    expect((await readdir(path.join(dir, 'cam'))).sort()).toEqual(['newer-crop.jpg', 'newer.jpg', 'old-crop.jpg', 'old.jpg']);
  });
});
