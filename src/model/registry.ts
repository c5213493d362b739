import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { ModelError, errorMessage } from '../errors.js';
import { redactUrl } from '../redact.js';
import { isModelPath } from '../config/load.js';
import { readModelCard, type LoadedCard } from './card.js';

/** The project's own model cards (and trained weights) ship in the package's `models/` folder. */
export const builtinModelsDir = fileURLToPath(new URL('../../models/', import.meta.url));

/** Where `beats models pull` writes: BEATS_MODELS_DIR, else ~/.local/share/beats/models. */
export function pulledModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BEATS_MODELS_DIR) return path.resolve(env.BEATS_MODELS_DIR);
  const dataHome = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(dataHome, 'beats', 'models');
}

/** The shared test assets (a development checkout's `../shared/assets`), used by the demo only as a last resort. */
export function assetsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.BEATS_ASSETS_DIR ? path.resolve(env.BEATS_ASSETS_DIR) : path.resolve(builtinModelsDir, '..', '..', 'shared', 'assets');
}

export interface ResolvedModel extends LoadedCard {
  /** Where the ONNX file was found. */
  origin: 'path' | 'pulled' | 'shipped' | 'assets';
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** Digests of model files by path, size and mtime: a file is hashed again only when it changed. */
const verified = new Map<string, string>();

/**
 * A card that pins its file's sha256 (download.sha256) gets that file or an error: weights changed
 * on disk after the pull (a bad sector, a bit flip, someone's edit) are refused, never run.
 */
async function checkPinnedHash(ref: string, model: ResolvedModel): Promise<ResolvedModel> {
  const expected = model.card.download?.sha256;
  if (!expected) return model;
  const info = await stat(model.onnxPath);
  const key = `${model.onnxPath}\0${info.size}\0${info.mtimeMs}`;
  const digest = verified.get(key) ?? (await sha256File(model.onnxPath));
  if (digest !== expected) {
    const again = model.origin === 'pulled' ? `pull it again: npx beats models pull ${model.card.name}` : 'replace it with the file the card names';
    throw new ModelError(ref, `${model.onnxPath} is damaged or not this model: its sha256 is ${digest}, its card pins ${expected}; ${again}`);
  }
  verified.set(key, digest);
  return model;
}

/** A registry name: its card is `models/NAME.json` in the package. */
export async function registryCard(name: string): Promise<LoadedCard> {
  if (!/^[a-z0-9._-]+$/.test(name)) throw new ModelError(name, 'not a model name (expected something like yolox-nano)');
  const file = path.join(builtinModelsDir, `${name}.json`);
  if (!existsSync(file)) {
    const known = (await listCardNames()).join(', ') || 'none';
    throw new ModelError(name, `unknown model (known: ${known})`);
  }
  return readModelCard(file);
}

async function listCardNames(): Promise<string[]> {
  const entries = await readdir(builtinModelsDir).catch(() => [] as string[]);
  return entries.filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}

/**
 * Finds the card and ONNX file for a pipeline's `model:` value: a path to a card (.json), a path to
 * an .onnx with its card beside it, or a registry name (pulled into pulledModelsDir()).
 */
export async function resolveModel(ref: string, env: NodeJS.ProcessEnv = process.env): Promise<ResolvedModel> {
  if (isModelPath(ref)) {
    const cardFile = ref.toLowerCase().endsWith('.onnx') ? ref.replace(/\.onnx$/i, '.json') : ref;
    if (ref.toLowerCase().endsWith('.onnx') && !existsSync(cardFile)) {
      throw new ModelError(ref, `no model card beside it: write ${path.basename(cardFile)} (see models/README.md)`);
    }
    const loaded = await readModelCard(cardFile);
    const onnxPath = ref.toLowerCase().endsWith('.onnx') ? ref : loaded.onnxPath;
    if (!existsSync(onnxPath)) throw new ModelError(ref, `ONNX file not found: ${onnxPath}`);
    return checkPinnedHash(ref, { ...loaded, onnxPath, origin: 'path' });
  }

  const loaded = await registryCard(ref);
  const fileName = path.basename(loaded.card.onnx);
  const pulled = path.join(pulledModelsDir(env), fileName);
  if (existsSync(pulled)) return checkPinnedHash(ref, { ...loaded, onnxPath: pulled, origin: 'pulled' });
  if (existsSync(loaded.onnxPath)) return checkPinnedHash(ref, { ...loaded, origin: 'shipped' });
  const asset = path.join(assetsDir(env), 'models', fileName);
  if (existsSync(asset) && loaded.card.download && (await sha256File(asset)) === loaded.card.download.sha256) {
    return { ...loaded, onnxPath: asset, origin: 'assets' };
  }
  throw new ModelError(ref, `not pulled yet: run \`npx beats models pull ${ref}\` (offline: add --from FILE)`);
}

export interface PullProgress {
  received: number;
  total?: number;
}

export interface PullOptions {
  /** A local file or an http(s) URL to take the file from instead of the card's download URL. */
  from?: string;
  onProgress?: (progress: PullProgress) => void;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

export interface PullResult {
  name: string;
  file: string;
  sha256: string;
  bytes: number;
}

/**
 * Downloads (or copies) a registry model, checks its pinned sha256 while writing, and publishes it
 * with write → fsync → rename: an interrupted or corrupt download never leaves a model file behind.
 */
export async function pullModel(name: string, options: PullOptions = {}): Promise<PullResult> {
  const { card } = await registryCard(name);
  if (!card.download) throw new ModelError(name, 'has no download in its card (it ships with the project)');
  const dir = pulledModelsDir(options.env);
  await mkdir(dir, { recursive: true });
  const target = path.join(dir, path.basename(card.onnx));
  // Unique per pull, not just per process: two pulls of one model at once must not write into (or
  // delete) each other's partial file, which would publish bytes that were never checksummed.
  const partial = `${target}.partial-${process.pid}-${randomBytes(6).toString('hex')}`;
  const from = options.from ?? card.download.url;

  const hash = createHash('sha256');
  let received = 0;
  let total = card.download.size;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      received += chunk.length;
      options.onProgress?.({ received, total });
      done(null, chunk);
    },
  });

  try {
    const body = await openSource(from, options.signal, (size) => (total = size ?? total));
    options.onProgress?.({ received: 0, total });
    await pipeline(body, meter, createWriteStream(partial), { signal: options.signal });
    const digest = hash.digest('hex');
    if (digest !== card.download.sha256) {
      throw new ModelError(name, `checksum mismatch for ${redactUrl(from)}: got sha256 ${digest}, expected ${card.download.sha256}`);
    }
    const handle = await open(partial, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(partial, target);
    return { name, file: target, sha256: digest, bytes: received };
  } catch (err) {
    await rm(partial, { force: true });
    if (err instanceof ModelError) throw err;
    if (options.signal?.aborted) throw new ModelError(name, 'download interrupted; nothing was written');
    throw new ModelError(name, `cannot fetch ${redactUrl(from)}: ${errorMessage(err)}`, { cause: err });
  }
}

async function openSource(from: string, signal: AbortSignal | undefined, onSize: (size: number | undefined) => void): Promise<Readable> {
  if (/^https?:\/\//i.test(from)) {
    const response = await fetch(from, { signal, redirect: 'follow' });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    const length = Number(response.headers.get('content-length'));
    onSize(Number.isFinite(length) && length > 0 ? length : undefined);
    return Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
  }
  const file = path.resolve(from);
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw new Error(`file not found: ${file}`);
  onSize(info.size);
  return createReadStream(file);
}

export interface ModelListing {
  name: string;
  version: string;
  classes: number;
  /** Where its ONNX file is, or undefined when it must still be pulled or is refused. */
  file?: string;
  origin?: ResolvedModel['origin'];
  /** Why a file that is there is refused (its sha256 does not match the card's pin). */
  problem?: string;
}

export async function listModels(env: NodeJS.ProcessEnv = process.env): Promise<ModelListing[]> {
  const listings: ModelListing[] = [];
  for (const name of await listCardNames()) {
    const { card } = await readModelCard(path.join(builtinModelsDir, `${name}.json`));
    let problem: string | undefined;
    const resolved = await resolveModel(name, env).catch((err: unknown) => {
      if (!/not pulled yet/.test(errorMessage(err))) problem = errorMessage(err);
      return undefined;
    });
    listings.push({ name, version: card.version, classes: card.classes.length, file: resolved?.onnxPath, origin: resolved?.origin, ...(problem ? { problem } : {}) });
  }
  return listings;
}
