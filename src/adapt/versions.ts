/**
 * Head versions on disk (BEATS.md, "Guard, swap and rollback"): every accepted head of a camera is
 * a numbered version, written atomically (write, fsync, rename: src/fs-atomic.ts) into a folder per
 * camera, `<state_dir>/adapt/<camera>/v000001.json`, with its parent, its time, the head's weights
 * and the guard's figures.
 *
 * - The history is append-only: the current head is always the newest valid version (no pointer
 *   file to get out of step with the versions). A rollback, to a version or to the base model, is a
 *   new version holding that head, whose `parent` is the version rolled back to (0 for the base) and
 *   whose `replaces` is the one that was current. So `latest()` after a restart is what the operator
 *   last chose, and the history still shows what was rolled back.
 * - A file that does not parse, fails its checksum or has the wrong shapes (a torn write on a disk
 *   that lied about fsync, a hand edit) is never loaded: it is skipped with a warning and the
 *   previous version is the latest. Leftovers of interrupted writes (`*.tmp-PID-xxxx`) are deleted at
 *   open. Numbers are never reused, even over a skipped file.
 * - Each version records a fingerprint of the base head it was trained from: versions of another
 *   model (the camera's model was changed) are ignored, never loaded into the wrong model.
 * - The newest `keep` versions are kept (default 100: about 8 MB for YOLOX-Nano's 3 x 80 x 65 head);
 *   older ones are deleted, and rolling back to one is an error that says which are kept.
 *
 * Format (JSON, one object): `format: "beats-head-version"`, `formatVersion: 1`, camera, version,
 * parent, kind (`update` | `rollback`), rollbackOf, replaces, createdAt (epoch ms), streamTime,
 * baseFingerprint, levels (`shape` [C, D], `weight` and `bias` as base64 little-endian float32),
 * figures, and last `sha256`: the SHA-256 of the JSON text of everything before it.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { BeatsError, errorMessage } from '../errors.js';
import { isAtomicLeftover, writeFileAtomic } from '../fs-atomic.js';
import { ensurePrivateDir, privateFile } from '../fs-private.js';
import { logger } from '../log.js';
import { checkSameShape, copyHead, type Head, type HeadLevelWeights, type UpdateFigures } from './engine-types.js';

export type RollbackTarget = number | 'base';

/** A version as `list()` gives it: everything but the weights. */
export interface VersionInfo {
  camera: string;
  /** 1, 2, 3...; 0 stands for the base model's own head (never a file). */
  version: number;
  /** update: the version it was trained from; rollback: the version rolled back to (0 = base). */
  parent: number;
  kind: 'update' | 'rollback';
  /** rollback: the version (or 'base') whose head this one holds. */
  rollbackOf?: RollbackTarget;
  /** rollback: the version that was current before it. */
  replaces?: number;
  /** Epoch ms. */
  createdAt: number;
  /** Stream seconds of the frame whose update made it. */
  streamTime?: number;
  /** The guard's figures (updates only). */
  figures?: UpdateFigures;
}

export interface HeadVersion extends VersionInfo {
  head: Head;
}

/** A version that does not exist (or no longer: pruned), or cannot be written. */
export class VersionError extends BeatsError {
  constructor(
    readonly camera: string,
    readonly version: RollbackTarget | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`head versions of camera ${camera}: ${message}`, options);
  }
}

export interface VersionStoreOptions {
  /** The pipeline's state_dir: versions go to `<stateDir>/adapt/<camera>/`. */
  stateDir: string;
  camera: string;
  /** The model's own head: what rollback('base') restores; versions of another base are ignored. */
  base: Head;
  /** Versions kept on disk (default 100). */
  keep?: number;
  /** Epoch ms (tests). */
  now?: () => number;
}

const FORMAT = 'beats-head-version';
const FILE = /^v(\d{6,})\.json$/;

export const versionsDir = (stateDir: string, camera: string): string => path.join(stateDir, 'adapt', camera);
export const versionFileName = (version: number): string => `v${String(version).padStart(6, '0')}.json`;

/** SHA-256 of a head's shapes and weights: which base a version belongs to. */
export function headFingerprint(head: Head): string {
  const hash = createHash('sha256');
  for (const l of head) {
    hash.update(`${l.shape[0]}x${l.shape[1]};`);
    hash.update(new Uint8Array(l.weight.buffer, l.weight.byteOffset, l.weight.byteLength));
    hash.update(new Uint8Array(l.bias.buffer, l.bias.byteOffset, l.bias.byteLength));
  }
  return hash.digest('hex');
}

const toBase64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

function fromBase64(text: unknown, count: number, what: string): Float32Array {
  if (typeof text !== 'string') throw new Error(`${what} is missing`);
  const bytes = Buffer.from(text, 'base64');
  if (bytes.byteLength !== count * 4) throw new Error(`${what} has ${bytes.byteLength / 4} values, ${count} expected`);
  const out = new Float32Array(count);
  new Uint8Array(out.buffer).set(bytes);
  const bad = out.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`${what}[${bad}] is not finite`);
  return out;
}

interface VersionFile extends VersionInfo {
  format: typeof FORMAT;
  formatVersion: 1;
  baseFingerprint: string;
  levels: Array<{ shape: [number, number]; weight: string; bias: string }>;
}

/** The file's text for a version: its JSON with `sha256` of the JSON before it as the last key. */
export function encodeVersion(v: HeadVersion, baseFingerprint: string): string {
  const body: VersionFile = {
    format: FORMAT,
    formatVersion: 1,
    camera: v.camera,
    version: v.version,
    parent: v.parent,
    kind: v.kind,
    ...(v.rollbackOf !== undefined ? { rollbackOf: v.rollbackOf } : {}),
    ...(v.replaces !== undefined ? { replaces: v.replaces } : {}),
    createdAt: v.createdAt,
    ...(v.streamTime !== undefined ? { streamTime: v.streamTime } : {}),
    baseFingerprint,
    levels: v.head.map((l) => ({ shape: [l.shape[0], l.shape[1]], weight: toBase64(l.weight), bias: toBase64(l.bias) })),
    ...(v.figures ? { figures: v.figures } : {}),
  };
  const text = JSON.stringify(body);
  const sha256 = createHash('sha256').update(text).digest('hex');
  return `${text.slice(0, -1)},"sha256":${JSON.stringify(sha256)}}\n`;
}

/** Parses and checks a version file's text (throws an Error saying what is wrong). */
export function decodeVersion(text: string, base: Head, baseFingerprint: string): HeadVersion {
  const trimmed = text.trimEnd();
  const at = trimmed.lastIndexOf(',"sha256":"');
  if (at < 0 || !trimmed.endsWith('"}')) throw new Error('no checksum (truncated?)');
  const body = `${trimmed.slice(0, at)}}`;
  const sha256 = trimmed.slice(at + ',"sha256":"'.length, -2);
  if (createHash('sha256').update(body).digest('hex') !== sha256) throw new Error('checksum mismatch');
  const file = JSON.parse(body) as VersionFile;
  if (file.format !== FORMAT || file.formatVersion !== 1) throw new Error(`not a ${FORMAT} file of format version 1`);
  if (file.baseFingerprint !== baseFingerprint) throw new Error('made for another base model (the camera\'s model changed)');
  if (!Number.isInteger(file.version) || file.version < 1) throw new Error(`bad version number ${String(file.version)}`);
  if (!Array.isArray(file.levels)) throw new Error('no levels');
  const head: HeadLevelWeights[] = file.levels.map((l, i) => {
    const [C, D] = Array.isArray(l.shape) ? l.shape : [0, 0];
    return { shape: [C, D], weight: fromBase64(l.weight, C * D, `level ${i} weight`), bias: fromBase64(l.bias, C, `level ${i} bias`) };
  });
  checkSameShape(head, base, 'the stored head');
  const { format: _f, formatVersion: _v, baseFingerprint: _b, levels: _l, ...info } = file;
  return { ...info, head };
}

/** The head versions of one camera. One writer per folder (the camera's engine). */
export class VersionStore {
  private readonly log = logger('versions');
  /** Valid versions on disk, by number. */
  private readonly index = new Map<number, VersionInfo>();
  /** Highest number seen in a file name (valid or not): numbers are never reused. */
  private highest = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly fingerprint: string;
  private readonly base: Head;
  readonly keep: number;

  private constructor(
    readonly dir: string,
    readonly camera: string,
    base: Head,
    keep: number,
    private readonly now: () => number,
  ) {
    this.base = copyHead(base);
    this.fingerprint = headFingerprint(this.base);
    this.keep = keep;
  }

  /** Opens (creating) the camera's folder, deletes leftovers of interrupted writes and indexes the valid versions. */
  static async open(options: VersionStoreOptions): Promise<VersionStore> {
    const keep = options.keep ?? 100;
    if (!(Number.isInteger(keep) && keep >= 1)) throw new RangeError(`keep must be a positive integer (got ${keep})`);
    const store = new VersionStore(versionsDir(options.stateDir, options.camera), options.camera, options.base, keep, options.now ?? Date.now);
    await ensurePrivateDir(store.dir);
    for (const name of await readdir(store.dir)) {
      if (isAtomicLeftover(name)) {
        await rm(path.join(store.dir, name), { force: true });
        continue;
      }
      const m = FILE.exec(name);
      if (!m) continue;
      const number = Number(m[1]);
      store.highest = Math.max(store.highest, number);
      try {
        const v = await store.readFile(number);
        if (v.version !== number) throw new Error(`holds version ${v.version}`);
        const { head: _h, ...info } = v;
        store.index.set(number, info);
      } catch (err) {
        store.log.warn(`${options.camera}: ${name} skipped: ${errorMessage(err)}`);
      }
    }
    return store;
  }

  /** The base model's head (a copy). */
  baseHead(): Head {
    return copyHead(this.base);
  }

  /** The current head's version: the newest valid one, or undefined for the base model's head. */
  async latest(): Promise<HeadVersion | undefined> {
    await this.chain;
    for (const number of this.numbers().reverse()) {
      try {
        return await this.readFile(number);
      } catch (err) {
        // Changed on disk since open: skip it for good.
        this.log.warn(`${this.camera}: ${versionFileName(number)} skipped: ${errorMessage(err)}`);
        this.index.delete(number);
      }
    }
    return undefined;
  }

  /** Versions kept, oldest first (without weights). */
  async list(): Promise<VersionInfo[]> {
    await this.chain;
    return this.numbers().map((n) => this.index.get(n)!);
  }

  /** One version, with its head. A version that does not exist is a VersionError naming it. */
  async get(version: number): Promise<HeadVersion> {
    await this.chain;
    if (!this.index.has(version)) throw this.missing(version);
    try {
      return await this.readFile(version);
    } catch (err) {
      throw new VersionError(this.camera, version, `version ${version} cannot be read: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** An accepted update's head as the next version (its parent: the current one, 0 for the base). */
  append(entry: { head: Head; figures?: UpdateFigures; streamTime?: number; parent?: number }): Promise<HeadVersion> {
    return this.serial(async () => {
      const parent = entry.parent ?? this.current();
      return this.write({ kind: 'update', parent, head: entry.head, figures: entry.figures, streamTime: entry.streamTime });
    });
  }

  /**
   * Makes a version's head (or the base model's) current again, as a new version. A version that
   * does not exist (never did, or was pruned) is a VersionError naming it; nothing is written then.
   */
  rollback(target: RollbackTarget): Promise<HeadVersion> {
    return this.serial(async () => {
      let head: Head;
      if (target === 'base') head = this.base;
      else {
        if (!this.index.has(target)) throw this.missing(target);
        head = (await this.readFile(target)).head;
      }
      return this.write({ kind: 'rollback', parent: target === 'base' ? 0 : target, rollbackOf: target, replaces: this.current(), head });
    });
  }

  private missing(version: RollbackTarget): VersionError {
    const numbers = this.numbers();
    const kept = numbers.length === 0 ? 'none is kept' : `kept: ${numbers[0]}..${numbers[numbers.length - 1]}`;
    const why = typeof version === 'number' && version >= 1 && version <= this.highest ? ' (deleted or unreadable)' : '';
    return new VersionError(this.camera, version, `version ${String(version)} does not exist${why}; ${kept}`);
  }

  private current(): number {
    const numbers = this.numbers();
    return numbers.length > 0 ? numbers[numbers.length - 1]! : 0;
  }

  private numbers(): number[] {
    return [...this.index.keys()].sort((a, b) => a - b);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async write(v: Omit<HeadVersion, 'camera' | 'version' | 'createdAt'>): Promise<HeadVersion> {
    checkSameShape(v.head, this.base);
    const version: HeadVersion = {
      camera: this.camera,
      version: this.highest + 1,
      parent: v.parent,
      kind: v.kind,
      ...(v.rollbackOf !== undefined ? { rollbackOf: v.rollbackOf } : {}),
      ...(v.replaces !== undefined ? { replaces: v.replaces } : {}),
      createdAt: this.now(),
      ...(v.streamTime !== undefined ? { streamTime: v.streamTime } : {}),
      ...(v.figures ? { figures: v.figures } : {}),
      head: copyHead(v.head),
    };
    const file = path.join(this.dir, versionFileName(version.version));
    try {
      await writeFileAtomic(file, encodeVersion(version, this.fingerprint), privateFile);
    } catch (err) {
      throw new VersionError(this.camera, version.version, `version ${version.version} could not be written to ${file}: ${errorMessage(err)}`, { cause: err });
    }
    this.highest = version.version;
    const { head: _h, ...info } = version;
    this.index.set(version.version, info);
    await this.prune();
    return version;
  }

  private async prune(): Promise<void> {
    const numbers = this.numbers();
    for (const n of numbers.slice(0, Math.max(0, numbers.length - this.keep))) {
      this.index.delete(n);
      await rm(path.join(this.dir, versionFileName(n)), { force: true }).catch((err: unknown) => this.log.warn(`${this.camera}: could not delete ${versionFileName(n)}: ${errorMessage(err)}`));
    }
  }

  private async readFile(version: number): Promise<HeadVersion> {
    const text = await readFile(path.join(this.dir, versionFileName(version)), 'utf8');
    return decodeVersion(text, this.base, this.fingerprint);
  }
}
