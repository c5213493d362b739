import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The shared real material (../shared/assets, or BEATS_ASSETS_DIR). Tests that need it skip with a
 * message when it is absent, except in CI (CI=true), where it is present and they must run.
 */
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const assetsDir = process.env.BEATS_ASSETS_DIR ? path.resolve(process.env.BEATS_ASSETS_DIR) : path.resolve(repoRoot, '..', 'shared', 'assets');

export const assets = {
  yoloxNano: path.join(assetsDir, 'models', 'yolox_nano.onnx'),
  cocoNames: path.join(assetsDir, 'models', 'coco.names'),
  highway: path.join(assetsDir, 'videos', 'highway-cctv-320x240.avi'),
  indoor: path.join(assetsDir, 'videos', 'indoor-people-768x432.mp4'),
  sources: path.join(assetsDir, 'SOURCES.md'),
};

export const haveAssets = Object.values(assets).every((f) => existsSync(f));

if (!haveAssets) {
  const message = `shared test assets not found at ${assetsDir} (set BEATS_ASSETS_DIR): tests that need the real model and videos are skipped`;
  if (process.env.CI) throw new Error(`${message}; in CI they must run`);
  console.warn(message);
}

/** `describe.skipIf(!haveAssets)` reads well at the call site; this names why. */
export const needsAssets = !haveAssets;
