import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelError, errorMessage } from '../errors.js';
import { logger } from '../log.js';

export type ProviderName = 'tensorrt' | 'cuda' | 'cpu';

export interface ProviderSettings {
  /** Tried in this order. */
  providers: readonly ProviderName[];
  tensorrt: { fp16: boolean; engineCache: string };
  /** onnxruntime intra-op threads; 0 = onnxruntime's choice. */
  threads: number;
}

/** What this onnxruntime build says it supports, and whether each provider's library is really there. */
export interface ProviderProbe {
  supportedBackends(): ReadonlyArray<{ name: string; bundled: boolean }>;
  libraryPresent(provider: 'cuda' | 'tensorrt'): boolean;
}

/** onnxruntime-node's native folder, where GPU provider libraries must sit beside the binding. */
function ortNativeDirs(): string[] {
  try {
    const require = createRequire(import.meta.url);
    const root = path.resolve(path.dirname(require.resolve('onnxruntime-node')), '..', 'bin');
    return readdirSync(root)
      .filter((d) => d.startsWith('napi-'))
      .map((d) => path.join(root, d, process.platform, process.arch));
  } catch {
    return [];
  }
}

export const systemProbe: ProviderProbe = {
  supportedBackends: () => ort.listSupportedBackends(),
  libraryPresent: (provider) =>
    ortNativeDirs().some((dir) => existsSync(path.join(dir, `libonnxruntime_providers_${provider}.so`))),
};

/** The providers that can actually be used here: supported by the build, and the library present. */
export function availableProviders(probe: ProviderProbe = systemProbe): ProviderName[] {
  const found: ProviderName[] = [];
  for (const backend of probe.supportedBackends()) {
    if (backend.name === 'cpu') found.push('cpu');
    if ((backend.name === 'cuda' || backend.name === 'tensorrt') && (backend.bundled || probe.libraryPresent(backend.name))) found.push(backend.name);
  }
  return found;
}

export interface SessionFactory {
  create(model: string | Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession>;
}

const ortFactory: SessionFactory = {
  create: (model, options) => (typeof model === 'string' ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(model, options)),
};

export interface CreatedSession {
  session: ort.InferenceSession;
  /** The first provider of the list the session was made with (the one that runs most nodes). */
  provider: ProviderName;
}

/** Missing providers are named once over the process's life, not once per camera. */
const warned = new Set<string>();

/**
 * Makes an onnxruntime session on the first configured providers that work here. A provider that is
 * missing, or whose library fails to load, is skipped with one warning naming it.
 */
export async function createSession(
  model: string | Uint8Array,
  settings: ProviderSettings,
  deps: { probe?: ProviderProbe; factory?: SessionFactory; modelName?: string } = {},
): Promise<CreatedSession> {
  const log = logger('model');
  const available = new Set(availableProviders(deps.probe ?? systemProbe));
  let candidates = settings.providers.filter((p) => available.has(p));
  const missing = settings.providers.filter((p) => !available.has(p) && !warned.has(p));
  if (missing.length > 0) {
    missing.forEach((p) => warned.add(p));
    log.warn(`execution provider${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not available in this onnxruntime (see docs/gpu.md); using ${candidates.join(', ') || 'cpu'}`);
  }
  if (candidates.length === 0) candidates = ['cpu'];

  while (candidates.length > 0) {
    const first = candidates[0]!;
    if (first === 'tensorrt') {
      // onnxruntime-node passes only a device id to TensorRT; the provider reads these variables.
      process.env.ORT_TENSORRT_FP16_ENABLE ??= settings.tensorrt.fp16 ? '1' : '0';
      process.env.ORT_TENSORRT_ENGINE_CACHE_ENABLE ??= '1';
      process.env.ORT_TENSORRT_CACHE_PATH ??= settings.tensorrt.engineCache;
    }
    try {
      const session = await (deps.factory ?? ortFactory).create(model, {
        executionProviders: candidates.map((name) => ({ name })),
        graphOptimizationLevel: 'all',
        // onnxruntime's pool threads spin while they wait for work. On an edge board they share the
        // cores with ffmpeg and the event loop, and spinning takes CPU from both.
        extra: { session: { intra_op: { allow_spinning: process.env.BEATS_ORT_SPIN ?? '0' } } },
        ...(settings.threads > 0 ? { intraOpNumThreads: settings.threads } : {}),
      });
      return { session, provider: first };
    } catch (err) {
      if (first === 'cpu') throw new ModelError(deps.modelName ?? 'onnx', `onnxruntime cannot load it: ${errorMessage(err)}`, { cause: err });
      log.warn(`execution provider ${first} failed to start (${errorMessage(err).split('\n')[0]}); falling back to ${candidates.slice(1).join(', ') || 'cpu'}`);
      candidates = candidates.slice(1);
      if (candidates.length === 0) candidates = ['cpu'];
    }
  }
  throw new ModelError(deps.modelName ?? 'onnx', 'no execution provider could load it');
}
