/**
 * `beats model versions CAMERA --pipeline FILE` and `beats model rollback CAMERA VERSION --pipeline
 * FILE`: a camera's head versions (BEATS.md) on disk, under the pipeline's `state_dir`.
 *
 * These work on the files, for a pipeline that is not running (one writer per camera folder). For a
 * running pipeline, publish the version (or `base`) on `<prefix>/<camera>/model/rollback`: its
 * engine writes the rollback and swaps the head in between two frames.
 */
import { readFile } from 'node:fs/promises';
import { parseRollbackTarget } from '../adapt/camera-adapter.js';
import { VersionStore, type VersionInfo } from '../adapt/versions.js';
import { headSurgery } from '../model/head-graph.js';
import { loadPipelineFile } from '../config/load.js';
import { BeatsError } from '../errors.js';
import { resolveModel } from '../model/registry.js';

async function openStore(camera: string, pipelineFile: string): Promise<VersionStore> {
  const { config } = await loadPipelineFile(pipelineFile);
  const cam = config.cameras.find((c) => c.name === camera);
  if (!cam) throw new BeatsError(`${pipelineFile} has no camera "${camera}" (it has ${config.cameras.map((c) => c.name).join(', ')})`);
  const model = await resolveModel(cam.model);
  // The base head is read from the model file itself (what `rollback base` restores).
  const { baseWeights } = headSurgery(await readFile(model.onnxPath), model.card);
  return VersionStore.open({ stateDir: config.state_dir, camera, base: baseWeights, keep: cam.adapt.keep_versions });
}

export function describeVersion(v: VersionInfo, current: boolean): string {
  const when = new Date(v.createdAt).toISOString();
  const what =
    v.kind === 'rollback'
      ? `rollback to ${v.rollbackOf === 'base' ? 'base' : `v${String(v.rollbackOf)}`} (replaced v${v.replaces ?? 0})`
      : `update from ${v.parent === 0 ? 'base' : `v${v.parent}`}${v.figures ? `, holdout loss ${v.figures.holdout.lossBefore.toFixed(4)} -> ${v.figures.holdout.lossAfter.toFixed(4)}` : ''}`;
  return `${current ? '*' : ' '} v${v.version}  ${when}  ${what}`;
}

export async function modelVersionsCommand(camera: string, opts: { pipeline: string; json?: boolean }): Promise<void> {
  const store = await openStore(camera, opts.pipeline);
  const versions = await store.list();
  const current = versions.length > 0 ? versions[versions.length - 1]!.version : 0;
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ camera, current, versions })}\n`);
    return;
  }
  if (versions.length === 0) {
    process.stdout.write(`${camera}: no head versions in ${store.dir}; inference runs the base model's head\n`);
    return;
  }
  process.stdout.write(`${camera}: ${versions.length} head version(s) in ${store.dir} (* = current)\n`);
  for (const v of versions) process.stdout.write(`${describeVersion(v, v.version === current)}\n`);
}

export async function modelRollbackCommand(camera: string, version: string, opts: { pipeline: string }): Promise<void> {
  let target;
  try {
    target = parseRollbackTarget(version);
  } catch (err) {
    throw new BeatsError(err instanceof Error ? err.message : String(err));
  }
  const store = await openStore(camera, opts.pipeline);
  const v = await store.rollback(target);
  process.stdout.write(`${camera}: rolled back to ${target === 'base' ? 'the base head' : `v${target}`}: now v${v.version} (the pipeline loads it at its next start)\n`);
}
