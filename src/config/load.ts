import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { sourceKind } from '../source/kind.js';
import { pipelineSchema, type PipelineConfig } from './schema.js';

/** A validated pipeline with every relative path made absolute against the pipeline file's folder. */
export interface LoadedPipeline {
  file: string;
  config: PipelineConfig;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
}

export async function loadPipelineFile(file: string, options: LoadOptions = {}): Promise<LoadedPipeline> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [{ path: '', message: code === 'ENOENT' ? 'file not found' : `cannot read: ${String(err)}` }]);
  }
  return { file: absolute, config: parsePipeline(text, absolute, options) };
}

/** Parses and validates pipeline YAML text; `file` names it in errors and anchors relative paths. */
export function parsePipeline(text: string, file: string, options: LoadOptions = {}): PipelineConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message.split('\n')[0]}` })));
  }
  const raw: unknown = doc.toJS();
  const issues: ConfigIssue[] = [];
  const substituted = substituteEnv(raw, [], options.env ?? process.env, issues);
  if (issues.length > 0) throw new ConfigError(file, issues);

  const parsed = pipelineSchema.safeParse(substituted ?? {}, { reportInput: true });
  if (!parsed.success) throw new ConfigError(file, parsed.error.issues.flatMap(describeIssue));
  return resolvePaths(parsed.data, path.dirname(file));
}

/** `cameras[0].source.url` from zod's ['cameras', 0, 'source', 'url']. */
export function formatPath(p: readonly PropertyKey[]): string {
  return p.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)), '');
}

/**
 * One line per problem, with the full key path: an unknown key is named where it is
 * (`cameras[0].detect.treshold`, not its parent), a missing one says it is required (zod says
 * "expected string, received undefined"). zod leaves `input` out of its issues unless asked
 * (`reportInput`), so a missing key is told from a wrong type by asking. Used for model cards too.
 */
export function describeIssue(issue: z.core.$ZodIssue): ConfigIssue[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: 'unknown key' }));
  }
  if (issue.code === 'invalid_key') {
    return [{ path: formatPath(issue.path), message: `bad name: ${issue.issues.map((i) => i.message).join('; ')}` }];
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) return [{ path: formatPath(issue.path), message: 'is required' }];
  if (issue.code === 'invalid_value' && issue.input === undefined) {
    return [{ path: formatPath(issue.path), message: `is required (one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')})` }];
  }
  return [{ path: formatPath(issue.path), message: issue.message }];
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$/g;

/**
 * `${VAR}` and `${VAR:-default}` in string values (not in keys), so that secrets stay out of the
 * file. Done on parsed values, not on the text, so a password with YAML syntax in it stays a string.
 * `$$` is a literal `$`.
 */
function substituteEnv(value: unknown, at: PropertyKey[], env: NodeJS.ProcessEnv, issues: ConfigIssue[]): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (whole, name: string | undefined, fallback: string | undefined) => {
      if (whole === '$$') return '$';
      const found = env[name!];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      issues.push({ path: formatPath(at), message: `environment variable ${name} is not set` });
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, [...at, i], env, issues));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, [...at, k], env, issues)]));
  }
  return value;
}

/** A model reference that is a path (not a registry name) contains a slash or ends in .json/.onnx. */
export function isModelPath(ref: string): boolean {
  return ref.includes('/') || ref.includes('\\') || /\.(json|onnx)$/i.test(ref);
}

function resolvePaths(config: PipelineConfig, base: string): PipelineConfig {
  return {
    ...config,
    state_dir: path.resolve(base, config.state_dir),
    ...(config.mqtt?.tls ? { mqtt: { ...config.mqtt, tls: resolveTlsPaths(config.mqtt.tls, base) } } : {}),
    runtime: {
      ...config.runtime,
      tensorrt: { ...config.runtime.tensorrt, engine_cache: path.resolve(base, config.runtime.tensorrt.engine_cache) },
    },
    cameras: config.cameras.map((camera) => ({
      ...camera,
      source: { ...camera.source, url: sourceKind(camera.source.url) === 'file' ? path.resolve(base, camera.source.url) : camera.source.url },
      model: isModelPath(camera.model) ? path.resolve(base, camera.model) : camera.model,
      ...(camera.adapt.teacher && isModelPath(camera.adapt.teacher.model) ? { adapt: { ...camera.adapt, teacher: { ...camera.adapt.teacher, model: path.resolve(base, camera.adapt.teacher.model) } } } : {}),
    })),
  };
}

/** TLS files (mqtt.tls.ca, cert, key) are relative to the pipeline file, like every other path. */
function resolveTlsPaths<T extends { ca?: string; cert?: string; key?: string }>(tls: T, base: string): T {
  const at = (file: string | undefined) => (file === undefined ? undefined : path.resolve(base, file));
  return { ...tls, ca: at(tls.ca), cert: at(tls.cert), key: at(tls.key) };
}
