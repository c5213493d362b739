import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { take } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { LogRecord } from '../src/log.js';
import { decodeYolox } from '../src/model/decode.js';
import type { ProviderName, ProviderProbe, ProviderSettings, SessionFactory } from '../src/model/providers.js';
import { assets, needsAssets } from './helpers/assets.js';
import { consumeFrames } from './helpers/frames.js';
import { constantOutputModel } from './helpers/model-onnx.js';

/**
 * providers.ts remembers, for the whole process, which missing providers it already warned about.
 * Each test imports a fresh copy of it (and of the logger it writes to), so that what one test
 * warned about does not silence the next.
 */
async function fresh() {
  vi.resetModules();
  const providers = await import('../src/model/providers.js');
  const log = await import('../src/log.js');
  // errors.js too: a fresh providers.js throws the fresh module's ModelError.
  const { ModelError } = await import('../src/errors.js');
  const records: LogRecord[] = [];
  const previous = log.setLogSink((r) => records.push(r));
  restoreSink = () => log.setLogSink(previous);
  const warnings = () => records.filter((r) => r.level === 'warn').map((r) => r.msg);
  return { ...providers, ModelError, records, warnings };
}
let restoreSink: (() => void) | undefined;
afterEach(() => {
  restoreSink?.();
  restoreSink = undefined;
});

/** A build that lists GPU providers; which of their libraries are "installed" is up to the test. */
function fakeProbe(present: ReadonlyArray<'cuda' | 'tensorrt'>, bundled: ReadonlyArray<'cuda' | 'tensorrt'> = []): ProviderProbe & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    supportedBackends: () => [
      { name: 'cpu', bundled: true },
      { name: 'webgpu', bundled: true },
      { name: 'cuda', bundled: bundled.includes('cuda') },
      { name: 'tensorrt', bundled: bundled.includes('tensorrt') },
    ],
    libraryPresent: (p) => {
      asked.push(p);
      return present.includes(p);
    },
  };
}

interface FactoryCall {
  providers: string[];
  options: ort.InferenceSession.SessionOptions;
  env: Record<string, string | undefined>;
}

/**
 * Stands in for onnxruntime only where this GPU-less machine cannot: a provider in `failing` fails
 * as a missing CUDA library would; anything else gets a real onnxruntime session (on the CPU).
 */
function recordingFactory(failing: readonly ProviderName[]): SessionFactory & { calls: FactoryCall[] } {
  const calls: FactoryCall[] = [];
  return {
    calls,
    async create(model, options) {
      const providers = (options.executionProviders ?? []).map((p) => (typeof p === 'string' ? p : p.name));
      calls.push({ providers, options, env: pick(process.env, trtVars) });
      if (failing.includes(providers[0] as ProviderName)) {
        throw new Error(`${providers[0]}: libcublasLt.so.12: cannot open shared object file: No such file or directory\n    at native code`);
      }
      const cpuOnly = { ...options, executionProviders: ['cpu'] };
      return typeof model === 'string' ? ort.InferenceSession.create(model, cpuOnly) : ort.InferenceSession.create(model, cpuOnly);
    },
  };
}

const trtVars = ['ORT_TENSORRT_FP16_ENABLE', 'ORT_TENSORRT_ENGINE_CACHE_ENABLE', 'ORT_TENSORRT_CACHE_PATH'] as const;
const pick = (env: NodeJS.ProcessEnv, keys: readonly string[]) => Object.fromEntries(keys.map((k) => [k, env[k]]));

const settings = (providers: ProviderName[], extra: Partial<ProviderSettings> = {}): ProviderSettings => ({
  providers,
  tensorrt: { fp16: true, engineCache: '/var/cache/beats/trt-engines' },
  threads: 0,
  ...extra,
});

/** A tiny real model: input `x` [1, 3, 8, 8], output `y` = a known [1, 2, 3]. */
const tiny = constantOutputModel({ inputName: 'x', inputDims: [1, 3, 8, 8], outputName: 'y', outputDims: [1, 2, 3], output: new Float32Array([1, 2, 3, 4, 5, 6]) });
async function runTiny(session: ort.InferenceSession): Promise<number[]> {
  const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 8 * 8).fill(0.5), [1, 3, 8, 8]) });
  return Array.from(out.y!.data as Float32Array);
}

describe('which providers are available', () => {
  it('takes cpu always, and cuda/tensorrt only when bundled or their library is present', async () => {
    const { availableProviders } = await fresh();
    expect(availableProviders(fakeProbe([]))).toEqual(['cpu']);
    expect(availableProviders(fakeProbe(['cuda']))).toEqual(['cpu', 'cuda']);
    expect(availableProviders(fakeProbe(['cuda', 'tensorrt']))).toEqual(['cpu', 'cuda', 'tensorrt']);
    // A bundled provider needs no library check; webgpu is in onnxruntime-node's list but is not
    // something a pipeline can ask for.
    const bundled = fakeProbe([], ['tensorrt']);
    expect(availableProviders(bundled)).toEqual(['cpu', 'tensorrt']);
    expect(bundled.asked).toEqual(['cuda']);
  });

  it('on this machine, with the real probe: cpu, and a GPU provider only if its library is there', async () => {
    const { availableProviders, systemProbe } = await fresh();
    const found = availableProviders();
    expect(found).toContain('cpu');
    expect(availableProviders(systemProbe)).toEqual(found);
    const backends = systemProbe.supportedBackends();
    for (const gpu of ['cuda', 'tensorrt'] as const) {
      const backend = backends.find((b) => b.name === gpu);
      expect(found.includes(gpu)).toBe(backend !== undefined && (backend.bundled || systemProbe.libraryPresent(gpu)));
    }
  });

  it('makes a real session with the real probe and factory when only cpu is asked for', async () => {
    const { createSession, warnings } = await fresh();
    const { session, provider } = await createSession(tiny, settings(['cpu'], { threads: 1 }));
    try {
      expect(provider).toBe('cpu');
      expect(await runTiny(session)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(warnings()).toEqual([]);
    } finally {
      await session.release();
    }
  });
});

describe.skipIf(needsAssets)('GPU providers missing', () => {
  it('warns once, naming tensorrt and cuda, and runs YOLOX-Nano on the CPU', async () => {
    const { createSession, warnings } = await fresh();
    const bytes = await readFile(assets.yoloxNano);
    const { session, provider } = await createSession(bytes, settings(['tensorrt', 'cuda', 'cpu']), { probe: fakeProbe([]), modelName: 'yolox-nano' });
    try {
      expect(provider).toBe('cpu');
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).toMatch(/execution providers tensorrt, cuda not available .*; using cpu/);

      // A real frame from the real video, fed the way the card says (BGR, 0..255, NCHW).
      const [frame] = await consumeFrames(
        { camera: 'highway', url: assets.highway, output: { width: 416, height: 416, pixelFormat: 'bgr24', padValue: 114, align: 'top-left' } },
        (f) => f,
        (f$) => f$.pipe(take(1)),
      );
      const plane = 416 * 416;
      const data = new Float32Array(3 * plane);
      for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) data[c * plane + i] = frame!.pixels[3 * i + c]!;
      const out = (await session.run({ images: new ort.Tensor('float32', data, [1, 3, 416, 416]) })).output!;
      expect(out.dims).toEqual([1, 3549, 85]);
      const cars = decodeYolox({ data: out.data as Float32Array, dims: out.dims }, 416, 416, [8, 16, 32], true, { threshold: 0.5, allowed: new Set([2]) });
      expect(cars.length).toBeGreaterThanOrEqual(3);
    } finally {
      await session.release();
    }
  });
});

describe('missing providers are named once per process', () => {
  it('does not warn again for a provider it already named, but names a new one', async () => {
    const { createSession, warnings } = await fresh();
    const probe = fakeProbe([]);
    const sessions: ort.InferenceSession[] = [];
    try {
      sessions.push((await createSession(tiny, settings(['cuda', 'cpu']), { probe })).session);
      sessions.push((await createSession(tiny, settings(['cuda', 'cpu']), { probe })).session);
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).toMatch(/execution provider cuda not available/);
      sessions.push((await createSession(tiny, settings(['tensorrt', 'cuda', 'cpu']), { probe })).session);
      expect(warnings()).toHaveLength(2);
      expect(warnings()[1]).toMatch(/execution provider tensorrt not available/);
      expect(warnings()[1]).not.toContain('cuda');
    } finally {
      for (const s of sessions) await s.release();
    }
  });
});

describe('a provider that is present but fails to start', () => {
  it('warns once naming cuda and takes the session from the next provider', async () => {
    const { createSession, warnings } = await fresh();
    const factory = recordingFactory(['cuda']);
    const { session, provider } = await createSession(tiny, settings(['cuda', 'cpu']), { probe: fakeProbe(['cuda']), factory });
    try {
      expect(provider).toBe('cpu');
      expect(factory.calls.map((c) => c.providers)).toEqual([['cuda', 'cpu'], ['cpu']]);
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).toMatch(/^execution provider cuda failed to start \(cuda: libcublasLt\.so\.12: cannot open shared object file: No such file or directory\); falling back to cpu$/);
      expect(await runTiny(session)).toEqual([1, 2, 3, 4, 5, 6]);
    } finally {
      await session.release();
    }
  });

  it('falls back to cpu even when the list does not name it', async () => {
    const { createSession, warnings } = await fresh();
    const factory = recordingFactory(['tensorrt', 'cuda']);
    const { session, provider } = await createSession(tiny, settings(['tensorrt', 'cuda']), { probe: fakeProbe(['cuda', 'tensorrt']), factory });
    try {
      expect(provider).toBe('cpu');
      expect(factory.calls.map((c) => c.providers)).toEqual([['tensorrt', 'cuda'], ['cuda'], ['cpu']]);
      expect(warnings()).toEqual([expect.stringMatching(/^execution provider tensorrt failed to start .*falling back to cuda$/), expect.stringMatching(/^execution provider cuda failed to start .*falling back to cpu$/)]);
    } finally {
      await session.release();
    }
  });
});

describe('TensorRT settings', () => {
  let saved: Record<string, string | undefined>;
  beforeEach(() => {
    saved = pick(process.env, trtVars);
    for (const k of trtVars) delete process.env[k];
  });
  afterEach(() => {
    for (const k of trtVars) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it('sets the ORT_TENSORRT_* variables from the settings before making a TensorRT session', async () => {
    const { createSession, warnings } = await fresh();
    const factory = recordingFactory([]);
    const { session, provider } = await createSession(tiny, settings(['tensorrt', 'cuda', 'cpu'], { threads: 2 }), { probe: fakeProbe(['cuda', 'tensorrt']), factory });
    try {
      expect(provider).toBe('tensorrt');
      expect(factory.calls).toHaveLength(1);
      const [call] = factory.calls;
      expect(call!.providers).toEqual(['tensorrt', 'cuda', 'cpu']);
      expect(call!.env).toEqual({ ORT_TENSORRT_FP16_ENABLE: '1', ORT_TENSORRT_ENGINE_CACHE_ENABLE: '1', ORT_TENSORRT_CACHE_PATH: '/var/cache/beats/trt-engines' });
      expect(call!.options).toMatchObject({ graphOptimizationLevel: 'all', intraOpNumThreads: 2 });
      expect(warnings()).toEqual([]);
      expect(await runTiny(session)).toEqual([1, 2, 3, 4, 5, 6]);
    } finally {
      await session.release();
    }
  });

  it('turns FP16 off when the settings say so, and leaves the thread count to onnxruntime at 0', async () => {
    const { createSession } = await fresh();
    const factory = recordingFactory([]);
    const trt = settings(['tensorrt', 'cpu'], { tensorrt: { fp16: false, engineCache: '/tmp/engines' } });
    const { session } = await createSession(tiny, trt, { probe: fakeProbe(['tensorrt']), factory });
    await session.release();
    expect(factory.calls[0]!.env).toEqual({ ORT_TENSORRT_FP16_ENABLE: '0', ORT_TENSORRT_ENGINE_CACHE_ENABLE: '1', ORT_TENSORRT_CACHE_PATH: '/tmp/engines' });
    expect(factory.calls[0]!.options).not.toHaveProperty('intraOpNumThreads');
  });

  it('does not touch them when TensorRT is not the provider tried', async () => {
    const { createSession } = await fresh();
    const factory = recordingFactory([]);
    const { session, provider } = await createSession(tiny, settings(['tensorrt', 'cuda', 'cpu']), { probe: fakeProbe(['cuda']), factory });
    await session.release();
    expect(provider).toBe('cuda');
    expect(factory.calls.map((c) => c.providers)).toEqual([['cuda', 'cpu']]);
    expect(pick(process.env, trtVars)).toEqual({ ORT_TENSORRT_FP16_ENABLE: undefined, ORT_TENSORRT_ENGINE_CACHE_ENABLE: undefined, ORT_TENSORRT_CACHE_PATH: undefined });
  });
});

describe('when the CPU cannot load the model either', () => {
  it('is a ModelError naming the model, from the real onnxruntime', async () => {
    const { createSession, ModelError } = await fresh();
    const garbage = new TextEncoder().encode('this is not an ONNX file');
    const err = await createSession(garbage, settings(['cpu']), { modelName: 'broken.onnx' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(/^model broken\.onnx: onnxruntime cannot load it: /);
    expect((err as Error).cause).toBeInstanceOf(Error);
  });

  it('is a ModelError after the GPU providers failed, and tries nothing after cpu', async () => {
    const { createSession, warnings, ModelError } = await fresh();
    const factory = recordingFactory(['cuda', 'cpu']);
    const err = await createSession(tiny, settings(['cuda', 'cpu']), { probe: fakeProbe(['cuda']), factory, modelName: 'tiny' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(/^model tiny: onnxruntime cannot load it: cpu: libcublasLt/);
    expect(factory.calls.map((c) => c.providers)).toEqual([['cuda', 'cpu'], ['cpu']]);
    expect(warnings()).toHaveLength(1);
  });
});
