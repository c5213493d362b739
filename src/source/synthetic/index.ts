/**
 * The synthetic camera: a seeded, deterministic renderer of scenes seen by a fixed camera, where
 * every frame comes with its exact ground truth, so that a detector can be trained and evaluated in
 * CI with no hand labelling.
 *
 * How it works
 * - The world is laid out in **canonical coordinates**: the picture of the unmoved camera at a height
 *   of 240 units (x from 0 to 240 * width / height). The ground is a plane seen by a level camera, so
 *   an object standing at canonical y has the size `depthScale(y) = (y - HORIZON) / (240 - HORIZON)`
 *   times its size at the bottom edge. A camera transform (`View`) maps canonical to frame pixels;
 *   the `moved` domain changes only that transform (zoom 1.15, shifted), so the ground line moves.
 * - Objects (actors) are spawned by per-lane Poisson processes whose rate follows a seeded "activity"
 *   level that changes every 15 s (busy spells, quiet spells with no new arrivals). Each actor gets
 *   its whole trajectory when it is spawned: key points (time, x, y) it moves between, with waits
 *   (a parked car, a person waiting at the kerb) and eased starts and stops for cars. Positions are a
 *   function of time only, so what is where does not depend on the frame rate or on how frames are
 *   requested. The simulation starts 40 s before stream time 0, so the first frame is already busy.
 * - Each frame: the static background of the current domain (precomputed once per domain, size and
 *   scene, 2x2 supersampled) is copied; actors and static props (a lamp post, a bin, a tree, a bush)
 *   are drawn far to near (by canonical foot y) into small anti-aliased sprites, each with a ground
 *   shadow, and composited through the domain's colour transform (night lighting, rain contrast, fog
 *   by distance); rain streaks and headlight beams are added; then lighting drift (clouds), a
 *   vignette and Gaussian sensor noise from a precomputed table.
 * - Ground truth comes from an ownership mask written while compositing (a pixel belongs to the
 *   nearest object covering it at >= 50 %): an object's `box` is the extent of the pixels it owns in
 *   the frame ([x1, y1, x2, y2], whole pixels, x2/y2 exclusive, so always inside the frame), and
 *   `visible` is the number of those pixels over the pixels of its whole silhouette (drawn unclipped
 *   in its own sprite): it is below 1 when something nearer (an object or a prop) hides part of it or
 *   part of it is outside the frame. Objects with no visible pixel are not listed.
 *
 * Classes: `person` (tall body, head, alternating legs and swinging arms; seen from the side when
 * walking across, from the front or back when walking towards or away from the camera), `car` (side
 * view: body, cabin with windows, two wheels; sedan, hatchback, SUV and van shapes) and `bicycle`.
 * Bicycles have **no rider**: the box is the bicycle alone (two wheels, frame, saddle, handlebar), so
 * a bicycle never looks like a person. Riderless bicycles ride along the bike lane / path; on
 * pavements a bicycle is often pushed by a person walking beside it, and then the person and the
 * bicycle are two objects (`person` and `bicycle`, two boxes), as a camera annotator would label them.
 *
 * Determinism: same options → byte-identical frames (seeded mulberry32 and integer hashes, no
 * Math.random, no clock). The background depends on the scene, size and domain only, not the seed:
 * the seed chooses the traffic (who comes when, looks, speeds, stops), the noise and the lighting.
 *
 * The parts: types.ts (the public vocabulary), random.ts (seeded numbers and noise), view.ts
 * (canonical geometry, palettes), actors.ts (looks and trajectories), scenes.ts (streams, props,
 * backgrounds), draw.ts (sprites), domains.ts (appearance transforms), render-context.ts (what is
 * static per scene, size and domain), simulation.ts (spawning), scene.ts (a frame and its truth),
 * options.ts (options and URLs).
 */
export { DEFAULT_SCENE_OPTIONS, DOMAIN_SHIFTS, SYNTHETIC_CLASSES, SYNTHETIC_SCENES, type DomainShift, type SceneOptions, type SyntheticBox, type SyntheticFrame, type SyntheticLabel, type SyntheticSceneName } from './types.js';
export { depthScale } from './view.js';
export { SyntheticScene } from './scene.js';
export { SYNTHETIC_URL_KEYS, parseSyntheticUrl, sceneOptionsFrom, syntheticUrl, type SyntheticUrlKey } from './options.js';
