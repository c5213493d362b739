/**
 * The real material the tests run on (the YOLOX-Nano ONNX file and two real videos): where it is
 * looked for, and a fetch of each file from its pinned public address with its sha256 checked, into
 * a cache. A folder is used when it holds every file: BEATS_ASSETS_DIR first, then the checkout's
 * ../shared/assets, then the cache the fetch fills (test/global-setup.ts runs it before the tests).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export interface TestAsset {
  /** Path inside an assets folder, e.g. `videos/highway-cctv-320x240.avi`. */
  file: string;
  url: string;
  sha256: string;
}

interface CardDownload {
  download: { url: string; sha256: string };
}
const yoloxCard = JSON.parse(readFileSync(path.join(repoRoot, 'models', 'yolox-nano.json'), 'utf8')) as CardDownload;

/** Each file at the repository and commit that ../shared/assets/SOURCES.md names (test/assets.test.ts checks they agree). */
export const testAssets: readonly TestAsset[] = [
  { file: 'models/yolox_nano.onnx', url: yoloxCard.download.url, sha256: yoloxCard.download.sha256 },
  {
    file: 'videos/highway-cctv-320x240.avi',
    url: 'https://raw.githubusercontent.com/andrewssobral/bgslibrary/af6171def6f7f77539c60fff14b04f484cc34559/dataset/video02.avi',
    sha256: '64dd421c7a5430ba9f2b6876a4d97c2bb599c2023f42f8e3af4ac6e00dbe81a2',
  },
  {
    file: 'videos/indoor-people-768x432.mp4',
    url: 'https://raw.githubusercontent.com/intel-iot-devkit/sample-videos/57978890822836f2b4743852f04f62fc511757e4/one-by-one-person-detection.mp4',
    sha256: 'a5964aa259099a482a8b360ffc2c57b5a30f84d5919236a4dad01f8e929ac07c',
  },
];

/** Where fetched assets are kept: $XDG_CACHE_HOME/beats/test-assets, else ~/.cache/beats/test-assets. */
export function assetCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'beats', 'test-assets');
}

/** The folders looked in, in order. */
export function assetDirCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = [path.resolve(repoRoot, '..', 'shared', 'assets'), assetCacheDir(env)];
  return env.BEATS_ASSETS_DIR ? [path.resolve(env.BEATS_ASSETS_DIR), ...dirs] : dirs;
}

export const holdsAll = (dir: string, assets: readonly TestAsset[] = testAssets): boolean => assets.every((a) => existsSync(path.join(dir, a.file)));

/** The first folder that holds every asset, if any. */
export function findAssetsDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return assetDirCandidates(env).find((dir) => holdsAll(dir));
}

/** How to get the assets, for every message that says tests were skipped without them. */
export function howToGetAssets(env: NodeJS.ProcessEnv = process.env): string {
  return (
    `looked in ${assetDirCandidates(env).join(', ')}. To get them: run \`npm test\` where raw.githubusercontent.com ` +
    `is reachable (it fetches ${testAssets.map((a) => path.basename(a.file)).join(', ')} at pinned commits, checks their ` +
    `sha256 and caches them in ${assetCacheDir(env)}), or set BEATS_ASSETS_DIR to a folder holding ` +
    `${testAssets.map((a) => a.file).join(', ')} (addresses and sha256 in test/helpers/fetch-assets.ts)`
  );
}

export interface FetchOptions {
  /** Time allowed for a server to answer with its headers; a network that cannot reach it fails within it. */
  answerTimeoutMs?: number;
  /** Time allowed for one file's whole download. */
  downloadTimeoutMs?: number;
}

export type FetchOutcome = { file: string; outcome: 'cached' | 'fetched' } | { file: string; outcome: 'failed'; reason: string };

/** The server answered, with something other than the pinned file: the network itself works. */
class Rejected extends Error {}

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

async function cachedCopy(target: string, asset: TestAsset): Promise<boolean> {
  if (!existsSync(target)) return false;
  if (sha256(await readFile(target)) === asset.sha256) return true;
  await rm(target, { force: true }); // not the pinned file: fetched again
  return false;
}

async function download(asset: TestAsset, options: Required<FetchOptions>): Promise<Uint8Array> {
  const answered = new AbortController();
  const timer = setTimeout(() => answered.abort(new Error(`no answer within ${options.answerTimeoutMs} ms`)), options.answerTimeoutMs);
  let response: Response;
  try {
    response = await fetch(asset.url, { signal: AbortSignal.any([answered.signal, AbortSignal.timeout(options.downloadTimeoutMs)]) });
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) throw new Rejected(`HTTP ${response.status}`);
  const body = new Uint8Array(await response.arrayBuffer());
  const digest = sha256(body);
  if (digest !== asset.sha256) throw new Rejected(`sha256 ${digest}, expected ${asset.sha256} (${body.length} bytes)`);
  return body;
}

/** The message of an error and of its causes (fetch says only "fetch failed"; the cause says why). */
function reasonOf(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 3; e = e.cause) parts.push(e.message);
  return parts.join(': ') || String(err);
}

async function writeInPlace(target: string, body: Uint8Array): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const partial = `${target}.partial-${process.pid}`;
  try {
    await writeFile(partial, body);
    await rename(partial, target);
  } finally {
    await rm(partial, { force: true });
  }
}

/**
 * Puts each asset into `dir` unless a copy with its sha256 is already there. A file is written only
 * once its sha256 matched (a temporary name, then a rename). After the first failure to reach a
 * server the rest are not tried: a machine without the network is told so once, quickly.
 */
export async function fetchAssets(dir: string, assets: readonly TestAsset[] = testAssets, options: FetchOptions = {}): Promise<FetchOutcome[]> {
  const limits: Required<FetchOptions> = { answerTimeoutMs: options.answerTimeoutMs ?? 5000, downloadTimeoutMs: options.downloadTimeoutMs ?? 120_000 };
  const outcomes: FetchOutcome[] = [];
  let unreachable: string | undefined;
  for (const asset of assets) {
    const target = path.join(dir, asset.file);
    if (await cachedCopy(target, asset)) {
      outcomes.push({ file: asset.file, outcome: 'cached' });
      continue;
    }
    if (unreachable) {
      outcomes.push({ file: asset.file, outcome: 'failed', reason: `not tried (${unreachable})` });
      continue;
    }
    try {
      const body = await download(asset, limits);
      await writeInPlace(target, body);
      outcomes.push({ file: asset.file, outcome: 'fetched' });
    } catch (err) {
      const reason = `${asset.url}: ${reasonOf(err)}`;
      if (!(err instanceof Rejected)) unreachable = `${new URL(asset.url).host} unreachable`;
      outcomes.push({ file: asset.file, outcome: 'failed', reason });
    }
  }
  return outcomes;
}
