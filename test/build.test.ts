// The build: scripts/build.js compiles src/ with tsc into a folder beside src/ (so the files the code
// reads relative to itself, ../package.json and ../../models/, resolve as from dist/), and the
// compiled CLI, its static page files, the adaptation worker and the inference worker run under
// plain node, without tsx.
// Also bin/beats.js's choice between dist/ and the sources.
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageVersion } from '../src/version.js';
import { repoRoot } from './helpers/assets.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node ARGS` with tsx nowhere in its loaders, never rejecting. */
function node(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: options.cwd ?? repoRoot, env: { ...process.env, NODE_OPTIONS: '', ...options.env }, timeout: 240_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('npm run build', () => {
  const outName = `dist-test-${process.pid}`;
  const out = path.join(repoRoot, outName);
  let build: Run;

  beforeAll(async () => {
    build = await node(['scripts/build.js', '--outDir', outName]);
  }, 300_000);
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('compiles src/ and copies the static page files beside the compiled server', async () => {
    expect(build.code, build.stderr + build.stdout).toBe(0);
    expect(Number(await readFile(path.join(out, '.built'), 'utf8'))).toBeGreaterThan(0);
    const statics = await readdir(path.join(repoRoot, 'src', 'serve', 'static'));
    expect(statics.length).toBeGreaterThan(0);
    for (const name of statics) {
      expect(await readFile(path.join(out, 'serve', 'static', name), 'utf8'), name).toBe(await readFile(path.join(repoRoot, 'src', 'serve', 'static', name), 'utf8'));
    }
  });

  it('runs the compiled CLI under plain node: --version and --help', async () => {
    const version = await node([path.join(out, 'cli', 'main.js'), '--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(packageVersion);
    const help = await node([path.join(out, 'cli', 'main.js'), '--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/Usage: beats/);
  });

  it('starts the adaptation worker from the compiled worker.js, without tsx', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-build-'));
    const script = `
      const [engineUrl, schemaUrl, stateDir] = process.argv.slice(1);
      const { BeatsEngine, VersionStore } = await import(engineUrl);
      const { adaptSchema } = await import(schemaUrl);
      const base = [{ weight: new Float32Array(16), bias: new Float32Array(2), shape: [2, 8] }];
      const store = await VersionStore.open({ stateDir, camera: 'cam', base });
      const engine = await BeatsEngine.start({ camera: 'cam', config: adaptSchema.parse({ enabled: true }), store });
      console.log('worker ready');
      await engine.close();`;
    const run = await node([
      '--input-type=module',
      '-e',
      script,
      pathToFileURL(path.join(out, 'adapt', 'engine.js')).href,
      pathToFileURL(path.join(out, 'config', 'schema.js')).href,
      stateDir,
    ]);
    await rm(stateDir, { recursive: true, force: true });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^worker ready/m);
  }, 120_000);

  it('runs a detector in the compiled inference worker (worker-thread.js), without tsx', async () => {
    const script = `
      const [detectorUrl] = process.argv.slice(1);
      const { Detector } = await import(detectorUrl);
      const runtime = { providers: ['cpu'], tensorrt: { fp16: false, engineCache: '/nonexistent' }, threads: 1 };
      const detector = await Detector.load('beats-s', { runtime, backend: 'worker', batch: { max: 2, timeoutMs: 5 } });
      const { width, height } = detector.frameOutput();
      const frame = { camera: 'c', index: 0, streamTime: 0, ts: 0, width, height, pixels: Buffer.alloc(width * height * 3, 90), pixelFormat: 'rgb24', geometry: { width, height, scaledWidth: width, scaledHeight: height, padX: 0, padY: 0, scaleX: 1, scaleY: 1 } };
      const found = await detector.detect(frame, { threshold: 0.3, nmsIou: 0.45, maxDetections: 10 });
      console.log('inference worker', detector.backendKind, detector.maxBatch, Array.isArray(found));
      await detector.close();`;
    const run = await node(['--input-type=module', '-e', script, pathToFileURL(path.join(out, 'model', 'detector.js')).href]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^inference worker worker 2 true/m);
  }, 120_000);
});

describe('bin/beats.js', () => {
  // A copy of bin/ beside stand-ins for src/cli/main.ts and dist/cli/main.js that say which ran.
  let root: string;
  const run = (env: NodeJS.ProcessEnv = {}) => node([path.join(root, 'bin', 'beats.js')], { cwd: root, env });

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'beats-bin-'));
    await cp(path.join(repoRoot, 'bin'), path.join(root, 'bin'), { recursive: true });
    await symlink(path.join(repoRoot, 'node_modules'), path.join(root, 'node_modules'));
    await writeFile(path.join(root, 'package.json'), '{ "type": "module" }\n');
    await mkdir(path.join(root, 'src', 'cli'), { recursive: true });
    await mkdir(path.join(root, 'dist', 'cli'), { recursive: true });
    await writeFile(path.join(root, 'src', 'cli', 'main.ts'), "const from: string = 'src';\nconsole.log(from);\n");
    await writeFile(path.join(root, 'dist', 'cli', 'main.js'), "console.log('dist');\n");
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('runs the sources with a one-line warning while dist/ is not built', async () => {
    const r = await run();
    expect(r.stdout.trim()).toBe('src');
    expect(r.stderr.trim()).toBe('beats: dist/ is not built; running the sources through tsx (npm run build compiles them)');
  });

  it('runs dist/ silently once built after the last edit, the sources again after an edit', async () => {
    const built = Date.now();
    await writeFile(path.join(root, 'dist', '.built'), `${built}\n`);
    const sourceFile = path.join(root, 'src', 'cli', 'main.ts');
    await utimes(sourceFile, new Date(built - 60_000), new Date(built - 60_000));
    const fresh = await run();
    expect(fresh).toMatchObject({ code: 0, stdout: 'dist\n', stderr: '' });

    await utimes(sourceFile, new Date(built + 60_000), new Date(built + 60_000));
    const stale = await run();
    expect(stale.stdout.trim()).toBe('src');
    expect(stale.stderr).toMatch(/^beats: dist\/ is older than src\/; running the sources through tsx/);
  });

  it('runs the sources without a word under BEATS_FROM_SOURCE=1 (the tests)', async () => {
    const r = await run({ BEATS_FROM_SOURCE: '1' });
    expect(r).toMatchObject({ code: 0, stdout: 'src\n', stderr: '' });
  });
});
