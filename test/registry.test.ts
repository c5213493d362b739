import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelError } from '../src/errors.js';
import type { ModelCard } from '../src/model/card.js';
import { builtinModelsDir, listModels, pullModel, pulledModelsDir, resolveModel, sha256File, type PullProgress } from '../src/model/registry.js';
import { assets, needsAssets, repoRoot } from './helpers/assets.js';
import { sendChunked, startServer, type TestServer } from './helpers/model-http.js';

const run = promisify(execFile);

let tmp: string;
let card: ModelCard;
let download: NonNullable<ModelCard['download']>;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'beats-registry-'));
  card = JSON.parse(await readFile(path.join(builtinModelsDir, 'yolox-nano.json'), 'utf8')) as ModelCard;
  download = card.download!;
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A fresh, empty models directory, and an environment that points there and at no shared assets. */
let dirCount = 0;
async function modelsEnv(): Promise<{ dir: string; env: NodeJS.ProcessEnv }> {
  const dir = path.join(tmp, `models-${++dirCount}`);
  return { dir, env: { BEATS_MODELS_DIR: dir, BEATS_ASSETS_DIR: path.join(tmp, 'no-assets') } };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function failure(promise: Promise<unknown>): Promise<ModelError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelError);
  return err as ModelError;
}

/** Nothing published and no partial file left behind (the directory may not exist at all). */
async function expectNothingLeft(dir: string): Promise<void> {
  const left = existsSync(dir) ? await readdir(dir) : [];
  expect(left).toEqual([]);
}

describe('where models go', () => {
  it('is BEATS_MODELS_DIR, else XDG_DATA_HOME/beats/models, else ~/.local/share/beats/models', () => {
    expect(pulledModelsDir({ BEATS_MODELS_DIR: 'rel/models' })).toBe(path.resolve('rel/models'));
    expect(pulledModelsDir({ XDG_DATA_HOME: '/data' })).toBe('/data/beats/models');
    expect(pulledModelsDir({})).toBe(path.join(os.homedir(), '.local', 'share', 'beats', 'models'));
  });
});

describe('the yolox-nano card', () => {
  it.skipIf(needsAssets || !existsSync(assets.sources))('downloads what SOURCES.md names: that repository, commit and path, with that sha256', async () => {
    const sources = await readFile(assets.sources, 'utf8');
    const row = sources.split('\n').find((l) => l.startsWith('| models/yolox_nano.onnx'));
    expect(row).toBeDefined();
    const origin = /GitHub ([\w.-]+\/[\w.-]+) at commit ([0-9a-f]{40}), path (\S+?)[;,\s]/.exec(row!);
    expect(origin).not.toBeNull();
    const [, repo, commit, file] = origin!;
    expect(download.url).toBe(`https://raw.githubusercontent.com/${repo}/${commit}/${file}`);
    const pinned = /^([0-9a-f]{64})\s+models\/yolox_nano\.onnx$/m.exec(sources);
    expect(pinned?.[1]).toBe(download.sha256);
    // And the shared file is that file.
    expect(await sha256File(assets.yoloxNano)).toBe(download.sha256);
    expect((await stat(assets.yoloxNano)).size).toBe(download.size);
  });
});

describe.skipIf(needsAssets)('pulling a model', () => {
  let modelBytes: Buffer;
  let server: TestServer;
  /** What the next request gets; set by each test. */
  let respond: (res: ServerResponse) => Promise<void>;

  beforeAll(async () => {
    modelBytes = await readFile(assets.yoloxNano);
    server = await startServer(async (_req, res) => respond(res));
  });
  afterAll(async () => {
    await server?.close();
  });
  beforeEach(() => {
    respond = async (res) => {
      res.writeHead(500);
      res.end();
    };
  });

  it('copies it --from a local file, checking the sha256', async () => {
    const { dir, env } = await modelsEnv();
    const progress: PullProgress[] = [];
    const result = await pullModel('yolox-nano', { from: assets.yoloxNano, env, onProgress: (p) => progress.push(p) });
    expect(result).toEqual({ name: 'yolox-nano', file: path.join(dir, 'yolox_nano.onnx'), sha256: download.sha256, bytes: modelBytes.length });
    expect(await sha256File(result.file)).toBe(download.sha256);
    expect(await readdir(dir)).toEqual(['yolox_nano.onnx']);
    expect(progress.at(-1)).toEqual({ received: modelBytes.length, total: modelBytes.length });
    // Now the registry name resolves to the pulled copy, even with no shared assets in sight.
    expect(await resolveModel('yolox-nano', env)).toMatchObject({ origin: 'pulled', onnxPath: result.file });
  });

  it('downloads it over HTTP, reporting progress against the Content-Length', async () => {
    respond = async (res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(modelBytes.length) });
      await sendChunked(res, modelBytes, 256 * 1024);
      res.end();
    };
    const { dir, env } = await modelsEnv();
    const progress: PullProgress[] = [];
    const result = await pullModel('yolox-nano', { from: `${server.base}/yolox_nano.onnx`, env, onProgress: (p) => progress.push(p) });
    expect(result.sha256).toBe(download.sha256);
    expect(await sha256File(path.join(dir, 'yolox_nano.onnx'))).toBe(download.sha256);
    expect(await readdir(dir)).toEqual(['yolox_nano.onnx']);

    expect(progress.length).toBeGreaterThan(3);
    expect(progress[0]!.received).toBe(0);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.received).toBeGreaterThan(progress[i - 1]!.received);
    expect(progress.at(-1)!.received).toBe(modelBytes.length);
    expect(progress.every((p) => p.total === modelBytes.length)).toBe(true);
  });

  it('downloads a body sent without a Content-Length', async () => {
    respond = async (res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked transfer encoding
      await sendChunked(res, modelBytes, 512 * 1024);
      res.end();
    };
    const { dir, env } = await modelsEnv();
    const result = await pullModel('yolox-nano', { from: `${server.base}/chunked`, env });
    expect(result.bytes).toBe(modelBytes.length);
    expect(await readdir(dir)).toEqual(['yolox_nano.onnx']);
  });

  it('refuses other bytes: a ModelError with both hashes, and no file left', async () => {
    const other = randomBytes(modelBytes.length);
    respond = async (res) => {
      res.writeHead(200, { 'content-length': String(other.length) });
      await sendChunked(res, other, 512 * 1024);
      res.end();
    };
    const { dir, env } = await modelsEnv();
    const url = `${server.base}/tampered.onnx`;
    const err = await failure(pullModel('yolox-nano', { from: url, env }));
    expect(err.message).toContain(`checksum mismatch for ${url}`);
    expect(err.message).toContain(sha256(other));
    expect(err.message).toContain(download.sha256);
    await expectNothingLeft(dir);
  });

  it('fails cleanly when the server drops the connection mid-body', async () => {
    let sent = false;
    respond = async (res) => {
      res.writeHead(200, { 'content-length': String(modelBytes.length) });
      sent = await sendChunked(res, modelBytes, 128 * 1024, Math.floor(modelBytes.length / 2));
      res.destroy();
    };
    const { dir, env } = await modelsEnv();
    const progress: PullProgress[] = [];
    const err = await failure(pullModel('yolox-nano', { from: `${server.base}/cut`, env, onProgress: (p) => progress.push(p) }));
    expect(sent).toBe(true);
    expect(err.message).toMatch(/^model yolox-nano: cannot fetch http:\/\/127\.0\.0\.1:\d+\/cut: /);
    // Some of it had arrived (and been written to the partial file) before the cut.
    expect(progress.at(-1)!.received).toBeGreaterThan(0);
    expect(progress.at(-1)!.received).toBeLessThan(modelBytes.length);
    await expectNothingLeft(dir);
  });

  it('stops when aborted mid-download and leaves nothing behind', async () => {
    respond = async (res) => {
      res.writeHead(200, { 'content-length': String(modelBytes.length) });
      // A third of the file, then nothing more: the connection stays open until the client gives up.
      await sendChunked(res, modelBytes, 128 * 1024, Math.floor(modelBytes.length / 3));
    };
    const { dir, env } = await modelsEnv();
    const controller = new AbortController();
    let receivedAtAbort = 0;
    const err = await failure(
      pullModel('yolox-nano', {
        from: `${server.base}/slow`,
        env,
        signal: controller.signal,
        onProgress: ({ received }) => {
          if (received >= 512 * 1024 && !controller.signal.aborted) {
            receivedAtAbort = received;
            controller.abort();
          }
        },
      }),
    );
    expect(receivedAtAbort).toBeGreaterThan(0);
    expect(err.message).toBe('model yolox-nano: download interrupted; nothing was written');
    await expectNothingLeft(dir);
  });

  it('says what the server answered when it is not 200', async () => {
    respond = async (res) => {
      res.writeHead(404, 'Not Found');
      res.end('no such model');
    };
    const { dir, env } = await modelsEnv();
    const err = await failure(pullModel('yolox-nano', { from: `${server.base}/missing.onnx`, env }));
    expect(err.message).toMatch(/cannot fetch .*\/missing\.onnx: HTTP 404 Not Found$/);
    await expectNothingLeft(dir);
  });

  it('says so when the --from file does not exist, and for an unknown model name', async () => {
    const { dir, env } = await modelsEnv();
    const absent = path.join(tmp, 'absent.onnx');
    expect((await failure(pullModel('yolox-nano', { from: absent, env }))).message).toBe(`model yolox-nano: cannot fetch ${absent}: file not found: ${absent}`);
    await expectNothingLeft(dir);
    expect((await failure(pullModel('yolox-tiny', { from: absent, env }))).message).toMatch(/^model yolox-tiny: unknown model \(known: .*yolox-nano.*\)$/);
  });

  it('keeps two pulls of the same model at once apart: the good one is published, the bad one fails', async () => {
    const bad = path.join(tmp, 'bad-copy.onnx');
    await writeFile(bad, randomBytes(modelBytes.length));
    respond = async (res) => {
      res.writeHead(200, { 'content-length': String(modelBytes.length) });
      await sendChunked(res, modelBytes, 64 * 1024);
      res.end();
    };
    const { dir, env } = await modelsEnv();
    let badPull: Promise<unknown> | undefined;
    const goodPull = pullModel('yolox-nano', {
      from: `${server.base}/good`,
      env,
      // The local, corrupt copy starts while the download is under way, in the same directory.
      onProgress: ({ received }) => {
        if (received > 0 && !badPull) {
          badPull = pullModel('yolox-nano', { from: bad, env });
          // It may fail before it is awaited below: that is expected, not an unhandled rejection.
          badPull.catch(() => undefined);
        }
      },
    });
    const [good] = await Promise.allSettled([goodPull]);
    expect(badPull).toBeDefined();
    const [other] = await Promise.allSettled([badPull!]);
    expect(good.status).toBe('fulfilled');
    expect(other.status).toBe('rejected');
    expect(String((other as PromiseRejectedResult).reason)).toContain('checksum mismatch');
    expect(await readdir(dir)).toEqual(['yolox_nano.onnx']);
    expect(await sha256File(path.join(dir, 'yolox_nano.onnx'))).toBe(download.sha256);
  });
});

describe('resolving and listing models', () => {
  it.skipIf(needsAssets)('lists yolox-nano as not pulled, found in the shared assets, then pulled', async () => {
    const { dir, env } = await modelsEnv();
    const before = (await listModels(env)).find((m) => m.name === 'yolox-nano');
    expect(before).toEqual({ name: 'yolox-nano', version: card.version, classes: 80, file: undefined, origin: undefined });

    const withAssets = (await listModels({ ...env, BEATS_ASSETS_DIR: path.dirname(path.dirname(assets.yoloxNano)) })).find((m) => m.name === 'yolox-nano');
    expect(withAssets).toMatchObject({ file: assets.yoloxNano, origin: 'assets' });

    await pullModel('yolox-nano', { from: assets.yoloxNano, env });
    const after = (await listModels(env)).find((m) => m.name === 'yolox-nano');
    expect(after).toMatchObject({ file: path.join(dir, 'yolox_nano.onnx'), origin: 'pulled' });
  });

  it('does not use a shared-assets file whose sha256 differs from the card', async () => {
    const { env } = await modelsEnv();
    const fakeAssets = path.join(tmp, 'fake-assets');
    await mkdir(path.join(fakeAssets, 'models'), { recursive: true });
    await writeFile(path.join(fakeAssets, 'models', 'yolox_nano.onnx'), 'not the model');
    const err = await failure(resolveModel('yolox-nano', { ...env, BEATS_ASSETS_DIR: fakeAssets }));
    expect(err.message).toBe('model yolox-nano: not pulled yet: run `npx beats models pull yolox-nano` (offline: add --from FILE)');
  });

  it('asks for a card when an .onnx path has none beside it', async () => {
    const dir = path.join(tmp, 'cardless');
    await mkdir(dir, { recursive: true });
    const onnx = path.join(dir, 'my-detector.onnx');
    await writeFile(onnx, 'bytes');
    const err = await failure(resolveModel(onnx));
    expect(err.message).toBe(`model ${onnx}: no model card beside it: write my-detector.json (see models/README.md)`);
  });

  it('takes a card path, and the .onnx path next to a card', async () => {
    const dir = path.join(tmp, 'with-card');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'det.onnx'), 'bytes');
    await writeFile(path.join(dir, 'det.json'), JSON.stringify({ ...card, name: 'det', onnx: 'det.onnx', download: undefined }));
    expect(await resolveModel(path.join(dir, 'det.json'))).toMatchObject({ origin: 'path', onnxPath: path.join(dir, 'det.onnx'), file: path.join(dir, 'det.json') });
    expect(await resolveModel(path.join(dir, 'det.onnx'))).toMatchObject({ origin: 'path', onnxPath: path.join(dir, 'det.onnx') });
    await rm(path.join(dir, 'det.onnx'));
    expect((await failure(resolveModel(path.join(dir, 'det.json')))).message).toContain(`ONNX file not found: ${path.join(dir, 'det.onnx')}`);
  });

  it('rejects what is neither a path nor a model name', async () => {
    expect((await failure(resolveModel('YOLOX Nano'))).message).toBe('model YOLOX Nano: not a model name (expected something like yolox-nano)');
  });
});

describe.skipIf(needsAssets)('the CLI: beats models pull / list', () => {
  const cli = path.join(repoRoot, 'bin', 'beats.js');

  async function beats(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, [cli, ...args], { cwd: repoRoot, env: { ...process.env, ...env }, timeout: 30_000 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  it('pulls --from the shared file, then lists it as pulled', async () => {
    const { dir, env } = await modelsEnv();
    const before = await beats(['models', 'list'], env);
    expect(before.code).toBe(0);
    expect(before.stdout).toContain(`models directory: ${dir}`);
    expect(before.stdout).toMatch(/^yolox-nano\s.*not pulled \(npx beats models pull yolox-nano\)$/m);

    const pull = await beats(['models', 'pull', 'yolox-nano', '--from', assets.yoloxNano], env);
    expect(pull.stderr).not.toMatch(/ERROR/);
    expect(pull.code).toBe(0);
    expect(pull.stderr).toContain(`sha256 ${download.sha256} verified → ${path.join(dir, 'yolox_nano.onnx')}`);
    expect(await sha256File(path.join(dir, 'yolox_nano.onnx'))).toBe(download.sha256);

    const after = await beats(['models', 'list'], env);
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(new RegExp(`^yolox-nano\\s+${card.version}\\s+80 classes\\s+pulled: ${path.join(dir, 'yolox_nano.onnx').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  });

  it('exits 1 with the reason when the pull fails', async () => {
    const { dir, env } = await modelsEnv();
    const bad = path.join(tmp, 'cli-bad.onnx');
    await writeFile(bad, randomBytes(1024));
    const pull = await beats(['models', 'pull', 'yolox-nano', '--from', bad], env);
    expect(pull.code).toBe(1);
    expect(pull.stderr).toMatch(/ERROR.*model yolox-nano: checksum mismatch/);
    await expectNothingLeft(dir);
  });
});
