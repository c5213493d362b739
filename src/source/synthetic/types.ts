/**
 * The synthetic camera's public vocabulary: its classes, scenes and domain shifts, a scene's
 * options, and a frame with its ground truth.
 */
export const SYNTHETIC_CLASSES = ['person', 'car', 'bicycle'] as const;
export type SyntheticLabel = (typeof SYNTHETIC_CLASSES)[number];

/** `day` is no shift. The others change appearance only (except `moved`, which moves the camera). */
export const DOMAIN_SHIFTS = ['day', 'night', 'rain', 'fog', 'palette', 'moved', 'background', 'decoys'] as const;
export type DomainShift = (typeof DOMAIN_SHIFTS)[number];

export const SYNTHETIC_SCENES = ['street', 'yard'] as const;
export type SyntheticSceneName = (typeof SYNTHETIC_SCENES)[number];

export interface SceneOptions {
  scene: string;
  seed: number;
  width: number;
  height: number;
  fps: number;
  domain: DomainShift[];
  /** From stream time `at` (seconds) on, the domain is `domain` instead (it replaces, not adds). */
  shift?: { at: number; domain: DomainShift[] };
  /** Length of the stream for sources (`seconds=` in a URL); the scene itself never ends. */
  seconds?: number;
}

export const DEFAULT_SCENE_OPTIONS: Readonly<SceneOptions> = Object.freeze({ scene: 'street', seed: 1, width: 320, height: 240, fps: 10, domain: [] });

export interface SyntheticBox {
  /** Stable per object for the whole stream, never reused. */
  id: number;
  label: SyntheticLabel;
  /** Visible extent in frame pixels, [x1, y1, x2, y2], x2/y2 exclusive, clipped to the frame. */
  box: [number, number, number, number];
  /** Fraction of the object's silhouette that is in the frame and not hidden (0..1, 3 decimals). */
  visible: number;
}

export interface SyntheticFrame {
  index: number;
  /** Stream seconds: index / fps. */
  time: number;
  width: number;
  height: number;
  /** width * height * 3 bytes, RGB. */
  rgb: Buffer;
  /** Every object with at least one visible pixel, by id. */
  boxes: SyntheticBox[];
}
