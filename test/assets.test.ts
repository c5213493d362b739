import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assetDirCandidates, fetchAssets, findAssetsDir, howToGetAssets, repoRoot, testAssets, type TestAsset } from './helpers/fetch-assets.js';
import { freePort } from './helpers/brokers.js';

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

let tmp: string;
let server: Server;
let base: string;
const requests: string[] = [];
/** Served bodies by path; /silent accepts and never answers. */
const bodies = new Map<string, string>([
  ['/a.bin', 'first asset'],
  ['/b.bin', 'second asset'],
]);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'beats-assets-'));
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url === '/silent') return; // headers never come
    const body = bodies.get(req.url ?? '');
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(tmp, { recursive: true, force: true });
});

const asset = (file: string, urlPath: string, body = bodies.get(urlPath) ?? ''): TestAsset => ({ file, url: `${base}${urlPath}`, sha256: sha256(body) });

describe('fetching the test assets', () => {
  it('fetches each file with its sha256 checked, and the second time finds them in the cache without asking', async () => {
    const dir = path.join(tmp, 'cache-ok');
    const list = [asset('models/a.bin', '/a.bin'), asset('videos/b.bin', '/b.bin')];
    const before = requests.length;
    expect(await fetchAssets(dir, list)).toEqual([
      { file: 'models/a.bin', outcome: 'fetched' },
      { file: 'videos/b.bin', outcome: 'fetched' },
    ]);
    expect(await readFile(path.join(dir, 'videos', 'b.bin'), 'utf8')).toBe('second asset');
    expect(requests.length - before).toBe(2);
    expect(await fetchAssets(dir, list)).toEqual([
      { file: 'models/a.bin', outcome: 'cached' },
      { file: 'videos/b.bin', outcome: 'cached' },
    ]);
    expect(requests.length - before).toBe(2);
  });

  it('writes nothing for a file whose sha256 is not the pinned one, says so, and still fetches the others', async () => {
    const dir = path.join(tmp, 'cache-mismatch');
    const wrong: TestAsset = { ...asset('models/a.bin', '/a.bin'), sha256: sha256('another file') };
    const outcomes = await fetchAssets(dir, [wrong, asset('videos/b.bin', '/b.bin'), asset('videos/gone.bin', '/gone.bin', 'x')]);
    expect(outcomes[0]).toMatchObject({ file: 'models/a.bin', outcome: 'failed', reason: expect.stringContaining(`expected ${sha256('another file')}`) });
    expect(outcomes.slice(1)).toEqual([
      { file: 'videos/b.bin', outcome: 'fetched' },
      expect.objectContaining({ file: 'videos/gone.bin', outcome: 'failed', reason: expect.stringContaining('HTTP 404') }),
    ]);
    expect(await readdir(path.join(dir, 'models')).catch(() => [])).toEqual([]);
    expect(await readdir(path.join(dir, 'videos'))).toEqual(['b.bin']);
  });

  it('replaces a cached copy that is not the pinned file', async () => {
    const dir = path.join(tmp, 'cache-stale');
    await mkdir(path.join(dir, 'models'), { recursive: true });
    await writeFile(path.join(dir, 'models', 'a.bin'), 'truncated');
    expect(await fetchAssets(dir, [asset('models/a.bin', '/a.bin')])).toEqual([{ file: 'models/a.bin', outcome: 'fetched' }]);
    expect(await readFile(path.join(dir, 'models', 'a.bin'), 'utf8')).toBe('first asset');
  });

  it('gives up on a server that does not answer within the answer timeout, and tries no further file there', async () => {
    const dir = path.join(tmp, 'cache-silent');
    const outcomes = await fetchAssets(dir, [asset('models/a.bin', '/silent', 'x'), asset('videos/b.bin', '/b.bin')], { answerTimeoutMs: 200 });
    expect(outcomes[0]).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('no answer within 200 ms') });
    expect(outcomes[1]).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('not tried') });
    expect(existsSync(dir)).toBe(false);
  });

  it('names why when nothing listens (connection refused)', async () => {
    const port = await freePort();
    const outcomes = await fetchAssets(path.join(tmp, 'cache-refused'), [{ file: 'models/a.bin', url: `http://127.0.0.1:${port}/a.bin`, sha256: sha256('x') }]);
    expect(outcomes[0]).toMatchObject({ outcome: 'failed', reason: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe('where the test assets are looked for', () => {
  const fill = async (dir: string) => {
    for (const a of testAssets) {
      await mkdir(path.dirname(path.join(dir, a.file)), { recursive: true });
      await writeFile(path.join(dir, a.file), '');
    }
  };

  it('BEATS_ASSETS_DIR first, then ../shared/assets, then the fetch cache; a folder is used only when it holds every file', async () => {
    const full = path.join(tmp, 'full');
    const partial = path.join(tmp, 'partial');
    const cacheHome = path.join(tmp, 'xdg-cache');
    await fill(full);
    await fill(path.join(cacheHome, 'beats', 'test-assets'));
    await mkdir(path.join(partial, 'models'), { recursive: true });
    await writeFile(path.join(partial, testAssets[0]!.file), '');
    const shared = path.resolve(repoRoot, '..', 'shared', 'assets');
    const cache = path.join(cacheHome, 'beats', 'test-assets');
    expect(assetDirCandidates({ BEATS_ASSETS_DIR: partial, XDG_CACHE_HOME: cacheHome })).toEqual([partial, shared, cache]);
    expect(findAssetsDir({ BEATS_ASSETS_DIR: full, XDG_CACHE_HOME: cacheHome })).toBe(full);
    const fallback = findAssetsDir({ BEATS_ASSETS_DIR: partial, XDG_CACHE_HOME: cacheHome });
    expect([shared, cache]).toContain(fallback);
    expect(findAssetsDir({ BEATS_ASSETS_DIR: partial, XDG_CACHE_HOME: path.join(tmp, 'nothing') })).not.toBe(partial);
  });

  it('the skip message says where it looked and how to get them', () => {
    const message = howToGetAssets({ XDG_CACHE_HOME: '/var/cache/x' });
    expect(message).toContain('/var/cache/x/beats/test-assets');
    expect(message).toContain('BEATS_ASSETS_DIR');
    expect(message).toContain('npm test');
    for (const a of testAssets) expect(message).toContain(a.file);
  });
});

const sourcesFile = path.resolve(repoRoot, '..', 'shared', 'assets', 'SOURCES.md');

describe.skipIf(!existsSync(sourcesFile))('the pinned addresses', () => {
  it('are the repository, commit, path and sha256 that SOURCES.md names for each file', () => {
    const sources = readFileSync(sourcesFile, 'utf8');
    for (const a of testAssets) {
      const row = sources.split('\n').find((l) => l.startsWith(`| ${a.file} `));
      expect(row, a.file).toBeDefined();
      const origin = /GitHub ([\w.-]+\/[\w.-]+) at commit ([0-9a-f]{40}), (?:path )?([^\s;|]+)/.exec(row!);
      expect(origin, a.file).not.toBeNull();
      const [, repo, commit, file] = origin!;
      expect(a.url).toBe(`https://raw.githubusercontent.com/${repo}/${commit}/${file}`);
      expect(sources).toMatch(new RegExp(`^${a.sha256}\\s+${a.file.replaceAll('.', '\\.')}$`, 'm'));
    }
  });
});
