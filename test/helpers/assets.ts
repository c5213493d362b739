import path from 'node:path';
import { assetCacheDir, assetDirCandidates, findAssetsDir, howToGetAssets, repoRoot } from './fetch-assets.js';

export { repoRoot };

/**
 * The real material (the YOLOX-Nano ONNX file, two real videos): the first of BEATS_ASSETS_DIR,
 * ../shared/assets and the fetch cache that holds them all (test/helpers/fetch-assets.ts). Tests
 * that need it skip with a message saying how to get it when it is absent, except in CI (CI=true),
 * where it must be present and they must run.
 */
const found = findAssetsDir();
export const assetsDir = found ?? assetDirCandidates()[0]!;
// Fetched copies: what resolves `yolox-nano` by name (the registry's last resort) looks there too.
if (found === assetCacheDir()) process.env.BEATS_ASSETS_DIR ??= found;

export const assets = {
  yoloxNano: path.join(assetsDir, 'models', 'yolox_nano.onnx'),
  highway: path.join(assetsDir, 'videos', 'highway-cctv-320x240.avi'),
  indoor: path.join(assetsDir, 'videos', 'indoor-people-768x432.mp4'),
  /** Only in the shared folder (it is not fetched): ../shared/assets/SOURCES.md. */
  sources: path.join(assetsDir, 'SOURCES.md'),
};

export const haveAssets = found !== undefined;

if (!haveAssets) {
  const message = `real test assets (model and videos) not found: the tests that need them are skipped; ${howToGetAssets()}`;
  if (process.env.CI) throw new Error(`${message}; in CI they must run`);
  console.warn(message);
}

/** `describe.skipIf(needsAssets)` reads well at the call site; the message above names why. */
export const needsAssets = !haveAssets;
