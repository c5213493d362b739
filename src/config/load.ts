import { open } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { sourceKind } from './source-kind.js';
import { pipelineSchema, type PipelineConfig } from './schema.js';

/** A validated pipeline with every relative path made absolute against the pipeline file's folder. */
export interface LoadedPipeline {
  file: string;
  config: PipelineConfig;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
}

/**
 * A pipeline file is a few kilobytes (a hundred cameras with zones are some 50 KiB): past this it is
 * refused unread, before YAML and validation spend seconds and gigabytes on it.
 */
export const MAX_PIPELINE_BYTES = 256 * 1024;

/** YAML aliases expanded at most (the yaml package's guard against "billion laughs"). */
const MAX_ALIASES = 100;

/** Problems listed at most; the rest are counted. */
const MAX_ISSUES = 50;

export async function loadPipelineFile(file: string, options: LoadOptions = {}): Promise<LoadedPipeline> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readBounded(absolute, file);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [{ path: '', message: code === 'ENOENT' ? 'file not found' : `cannot read: ${String(err)}` }]);
  }
  return { file: absolute, config: parsePipeline(text, absolute, options) };
}

/** The file's text, refused when it is not a regular file or larger than MAX_PIPELINE_BYTES. */
async function readBounded(absolute: string, file: string): Promise<string> {
  const handle = await open(absolute, 'r');
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ConfigError(file, [{ path: '', message: 'not a regular file' }]);
    if (info.size > MAX_PIPELINE_BYTES) throw tooLarge(file, info.size);
    // Read at most one byte past the limit: the file may grow between stat and read.
    const buffer = Buffer.alloc(MAX_PIPELINE_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_PIPELINE_BYTES) throw tooLarge(file, 'more');
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

function tooLarge(file: string, size: number | 'more'): ConfigError {
  const is = size === 'more' ? `more than ${MAX_PIPELINE_BYTES} bytes` : `${size} bytes`;
  return new ConfigError(file, [{ path: '', message: `too large: ${is}; a pipeline file may be at most ${MAX_PIPELINE_BYTES / 1024} KiB (${MAX_PIPELINE_BYTES} bytes)` }]);
}

/** Parses and validates pipeline YAML text; `file` names it in errors and anchors relative paths. */
export function parsePipeline(text: string, file: string, options: LoadOptions = {}): PipelineConfig {
  if (Buffer.byteLength(text, 'utf8') > MAX_PIPELINE_BYTES) throw tooLarge(file, Buffer.byteLength(text, 'utf8'));
  const raw = parseYaml(text, file);
  const issues: ConfigIssue[] = [];
  const substituted = substituteEnv(raw, [], options.env ?? process.env, issues);
  if (issues.length > 0) throw configError(file, issues);

  const parsed = pipelineSchema.safeParse(substituted ?? {}, { reportInput: true });
  if (!parsed.success) throw configError(file, parsed.error.issues.flatMap(describeIssue));
  return resolvePaths(parsed.data, path.dirname(file));
}

/**
 * The YAML's value. An alias bomb (anchors that expand to millions of nodes) or nesting deeper than
 * the parser's stack is a ConfigError like any other mistake in the file, not a crash.
 */
function parseYaml(text: string, file: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw configError(file, doc.errors.map((e) => ({ path: '', message: `YAML: ${yamlMessage(e.message.split('\n')[0]!)}` })));
  }
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    if (err instanceof ReferenceError && /alias/i.test(err.message)) {
      throw new ConfigError(file, [{ path: '', message: `YAML: its aliases (*name) expand to too much (more than ${MAX_ALIASES} aliases would be copied); write the values out` }]);
    }
    if (err instanceof RangeError) throw new ConfigError(file, [{ path: '', message: 'YAML: nested too deeply' }]);
    throw err;
  }
}

function yamlMessage(message: string): string {
  return message.replace(/^Maximum call stack size exceeded/, 'nested too deeply');
}

/** A ConfigError listing at most MAX_ISSUES problems. */
function configError(file: string, issues: ConfigIssue[]): ConfigError {
  if (issues.length <= MAX_ISSUES) return new ConfigError(file, issues);
  return new ConfigError(file, [...issues.slice(0, MAX_ISSUES), { path: '', message: `and ${issues.length - MAX_ISSUES} more problems` }]);
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
