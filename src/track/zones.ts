import type { ZoneConfig } from '../config/schema.js';

/** A zone in source pixels, ready to test points against. */
export interface Zone {
  name: string;
  polygon: ReadonlyArray<readonly [number, number]>;
  labels?: ReadonlySet<string>;
  inertia: number;
}

/**
 * Zones as the pipeline file gives them, in source pixels or (every coordinate within 0..1) as
 * fractions of the frame, turned into pixels for one frame size.
 */
export function compileZones(zones: Record<string, ZoneConfig>, width: number, height: number): Zone[] {
  return Object.entries(zones).map(([name, zone]) => {
    const spec = Array.isArray(zone) ? { points: zone, labels: undefined, inertia: 3 } : zone;
    const fractions = spec.points.every(([x, y]) => x <= 1 && y <= 1);
    const polygon = spec.points.map(([x, y]) => (fractions ? ([x * width, y * height] as const) : ([x, y] as const)));
    return { name, polygon, labels: spec.labels ? new Set(spec.labels) : undefined, inertia: spec.inertia };
  });
}

/** Even-odd ray casting. */
export function pointInPolygon(x: number, y: number, polygon: ReadonlyArray<readonly [number, number]>): boolean {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i]!;
    const [xj, yj] = polygon[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * Where one tracked object is, zone by zone, with inertia: it enters a zone after `inertia`
 * consecutive frames inside and leaves after as many outside, so a box that jitters on an edge does
 * not flap in and out. The object's position is the bottom centre of its box: where it stands.
 */
export class ZonePresence {
  private readonly streak = new Map<string, number>();
  private readonly inside = new Set<string>();
  readonly entered = new Set<string>();

  update(zones: readonly Zone[], box: readonly [number, number, number, number], label: string): void {
    const x = (box[0] + box[2]) / 2;
    const y = box[3];
    for (const zone of zones) {
      const applies = !zone.labels || zone.labels.has(label);
      const isInside = applies && pointInPolygon(x, y, zone.polygon);
      const wasInside = this.inside.has(zone.name);
      if (isInside === wasInside) {
        this.streak.set(zone.name, 0);
        continue;
      }
      const streak = (this.streak.get(zone.name) ?? 0) + 1;
      this.streak.set(zone.name, streak);
      if (streak >= zone.inertia || (!applies && wasInside)) {
        this.streak.set(zone.name, 0);
        if (isInside) {
          this.inside.add(zone.name);
          this.entered.add(zone.name);
        } else this.inside.delete(zone.name);
      }
    }
  }

  get current(): string[] {
    return [...this.inside].sort();
  }
}
