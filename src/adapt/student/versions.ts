/**
 * Whole weight sets on disk: every accepted set of a camera adapting its whole model is a numbered
 * version, `<state_dir>/adapt/<camera>/weights/w000001.bin`, written atomically (write, fsync,
 * rename), as head versions are (src/adapt/versions.ts, whose rules this follows: append-only, a
 * rollback is a new version holding an earlier set, the newest valid file is the current one, a file
 * that fails its checksum is skipped with a warning, numbers are never reused, the newest `keep`).
 *
 * Format: 4-byte little-endian header length, a JSON header (format `beats-weights-version/1`,
 * camera, version, parent, kind, rollbackOf, replaces, createdAt, base (the model card's name and
 * version, so another model's sets are never loaded), figures, threshold, the tensor table, and the SHA-256 of
 * the data), then the tensors as little-endian float32.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { BeatsError, errorMessage } from '../../errors.js';
import { isAtomicLeftover, writeFileAtomic } from '../../fs-atomic.js';
import { ensurePrivateDir, privateFile } from '../../fs-private.js';
import { logger } from '../../log.js';
import type { NamedWeights } from './protocol.js';
import type { StudentUpdateFigures } from './trainer.js';

const FORMAT = 'beats-weights-version/1';

export interface WeightVersionInfo {
  version: number;
  parent: number;
  kind: 'update' | 'rollback';
  rollbackOf?: number | 'base';
  replaces?: number;
  createdAt: number;
  figures?: StudentUpdateFigures;
  /** The score this set's detections count from (its best F1 on held-out keyframes); absent: the camera's detect.threshold. */
  threshold?: number;
}

export interface WeightVersion extends WeightVersionInfo {
  weights: NamedWeights;
}

interface Header extends WeightVersionInfo {
  format: typeof FORMAT;
  camera: string;
  base: { name: string; version: string };
  tensors: Array<{ name: string; shape: number[]; offset: number; length: number }>;
  sha256: string;
}

const fileOf = (dir: string, version: number) => path.join(dir, `w${String(version).padStart(6, '0')}.bin`);

export class WeightVersionStore {
  private readonly log = logger('adapt');
  private constructor(
    readonly dir: string,
    private readonly camera: string,
    private readonly base: { name: string; version: string },
    private readonly keep: number,
    private highest: number,
  ) {}

  static async open(options: { stateDir: string; camera: string; base: { name: string; version: string }; keep: number }): Promise<WeightVersionStore> {
    const dir = path.join(options.stateDir, 'adapt', options.camera, 'weights');
    await ensurePrivateDir(dir);
    let highest = 0;
    for (const name of await readdir(dir)) {
      if (isAtomicLeftover(name)) await rm(path.join(dir, name), { force: true });
      const m = /^w(\d{6})\.bin$/.exec(name);
      if (m) highest = Math.max(highest, Number(m[1]));
    }
    return new WeightVersionStore(dir, options.camera, options.base, options.keep, highest);
  }

  /** Writes the next version; resolves with its number once it is on disk. */
  async write(info: Omit<WeightVersionInfo, 'version'>, weights: NamedWeights): Promise<number> {
    const version = this.highest + 1;
    const data = Buffer.alloc(weights.reduce((s, w) => s + w.data.byteLength, 0));
    const tensors: Header['tensors'] = [];
    let offset = 0;
    for (const w of weights) {
      Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength).copy(data, offset * 4);
      tensors.push({ name: w.name, shape: w.shape, offset, length: w.data.length });
      offset += w.data.length;
    }
    const header: Header = { format: FORMAT, camera: this.camera, base: this.base, ...info, version, tensors, sha256: createHash('sha256').update(data).digest('hex') };
    const json = Buffer.from(JSON.stringify(header));
    const length = Buffer.alloc(4);
    length.writeUInt32LE(json.length, 0);
    await writeFileAtomic(fileOf(this.dir, version), Buffer.concat([length, json, data]), privateFile);
    this.highest = version;
    await this.prune();
    return version;
  }

  /** A version with its weights; a missing, torn or foreign file is a BeatsError saying which. */
  async read(version: number): Promise<WeightVersion> {
    const file = fileOf(this.dir, version);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new BeatsError(`weight version ${version} of camera ${this.camera}: ${errorMessage(err)}`);
    }
    const header = parseHeader(bytes, file);
    const data = bytes.subarray(4 + bytes.readUInt32LE(0));
    if (createHash('sha256').update(data).digest('hex') !== header.sha256) throw new BeatsError(`${file}: its weights do not match their checksum (a torn write?)`);
    if (header.base.name !== this.base.name || header.base.version !== this.base.version) throw new BeatsError(`${file}: weights of ${header.base.name} ${header.base.version}, not of the camera's model ${this.base.name} ${this.base.version}`);
    const aligned = new Float32Array(data.byteLength / 4);
    new Uint8Array(aligned.buffer).set(data);
    const weights = header.tensors.map((t) => ({ name: t.name, shape: t.shape, data: aligned.slice(t.offset, t.offset + t.length) }));
    const { format: _f, camera: _c, base: _b, tensors: _t, sha256: _s, threshold, ...info } = header;
    // The header is outside the checksum: a threshold that is not a score is dropped (the camera's serves).
    return { ...info, ...(typeof threshold === 'number' && threshold > 0 && threshold < 1 ? { threshold } : {}), weights };
  }

  /** The newest version that reads back whole (undefined: none, the base model serves). */
  async latest(): Promise<WeightVersion | undefined> {
    for (let v = this.highest; v >= 1; v--) {
      try {
        return await this.read(v);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || /ENOENT/.test(errorMessage(err))) continue;
        this.log.warn(`${this.camera}: skipping weight version ${v}: ${errorMessage(err)}`);
      }
    }
    return undefined;
  }

  async list(): Promise<WeightVersionInfo[]> {
    const out: WeightVersionInfo[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      if (!/^w\d{6}\.bin$/.test(name)) continue;
      try {
        const { format: _f, camera: _c, base: _b, tensors: _t, sha256: _s, ...info } = parseHeader(await readFile(path.join(this.dir, name)), name);
        out.push(info);
      } catch {
        // A torn file is reported by latest()/read(); the list shows what can be used.
      }
    }
    return out;
  }

  private async prune(): Promise<void> {
    for (let v = this.highest - this.keep; v >= 1; v--) await rm(fileOf(this.dir, v), { force: true });
  }
}

function parseHeader(bytes: Buffer, file: string): Header {
  if (bytes.length < 4) throw new BeatsError(`${file}: too short to be a weight version`);
  const length = bytes.readUInt32LE(0);
  if (4 + length > bytes.length) throw new BeatsError(`${file}: its header runs past the end of the file`);
  let header: Header;
  try {
    header = JSON.parse(bytes.subarray(4, 4 + length).toString('utf8')) as Header;
  } catch (err) {
    throw new BeatsError(`${file}: header is not JSON: ${errorMessage(err)}`);
  }
  if (header.format !== FORMAT) throw new BeatsError(`${file}: format ${String(header.format)}, expected ${FORMAT}`);
  return header;
}
