/**
 * Before the tests: when no folder holds the real test assets (BEATS_ASSETS_DIR, ../shared/assets),
 * fetch them into the cache from their pinned addresses. Without the network this fails within a
 * few seconds and the tests that need them are skipped, with a message that says how to get them.
 * BEATS_FETCH_ASSETS=0 turns the fetch off.
 */
import { assetCacheDir, fetchAssets, findAssetsDir, howToGetAssets } from './helpers/fetch-assets.js';

export default async function fetchTestAssets(): Promise<void> {
  if (findAssetsDir() || process.env.BEATS_FETCH_ASSETS === '0') return;
  const dir = assetCacheDir();
  const outcomes = await fetchAssets(dir);
  const failed = outcomes.filter((o) => o.outcome === 'failed');
  const fetched = outcomes.filter((o) => o.outcome === 'fetched').map((o) => o.file);
  if (fetched.length > 0) console.warn(`test assets: fetched ${fetched.join(', ')} into ${dir}`);
  if (failed.length === 0) return;
  const reasons = failed.map((o) => (o.outcome === 'failed' ? `  ${o.file}: ${o.reason}` : '')).join('\n');
  console.warn(`test assets: could not fetch them; the tests that need them are skipped\n${reasons}\n${howToGetAssets()}`);
}
