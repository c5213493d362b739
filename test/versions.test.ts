import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Head, UpdateFigures } from '../src/adapt/engine-types.js';
import { decodeVersion, encodeVersion, headFingerprint, VersionError, VersionStore, versionFileName, versionsDir } from '../src/adapt/versions.js';
import { bigHead } from './helpers/version-heads.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'beats-versions-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let dirs = 0;
const freshDir = () => path.join(tmp, `state-${++dirs}`);

/** A small two-level head whose every value is k (level 1 a bit off), so versions are told apart by content. */
function smallHead(k: number): Head {
  return [
    { weight: new Float32Array(3 * 4).fill(k), bias: new Float32Array(3).fill(k), shape: [3, 4] },
    { weight: new Float32Array(3 * 2).fill(k + 0.5), bias: new Float32Array(3).fill(-k), shape: [3, 2] },
  ];
}
const base = smallHead(0);
const valueOf = (h: Head) => h[0]!.weight[0]!;
const same = (a: Head, b: Head) => a.every((l, i) => l.weight.every((v, j) => v === b[i]!.weight[j]) && l.bias.every((v, j) => v === b[i]!.bias[j]));

const figures: UpdateFigures = {
  holdout: { cells: 120, lossBefore: 0.31, lossAfter: 0.29, f1Before: 0.8, f1After: 0.82 },
  replay: { cells: 2000, lossBefore: 0.2, lossAfter: 0.205 },
  fired: [{ level: 0, region: 5, classId: 1, n: 12, ePlus: 3.5, eMinus: 0.1 }],
  rows: [{ level: 0, classId: 1, lr: 1, n: 12 }],
  durationMs: 1.5,
  streamTime: 42,
};

describe('head versions', () => {
  it('writes each version atomically as its own file, with parent, time, weights and figures', async () => {
    const stateDir = freshDir();
    let now = 1_700_000_000_000;
    const store = await VersionStore.open({ stateDir, camera: 'highway', base, now: () => now });
    expect(await store.latest()).toBeUndefined();
    const v1 = await store.append({ head: smallHead(1), figures, streamTime: 42 });
    now += 2000;
    const v2 = await store.append({ head: smallHead(2), figures });
    expect(v1).toMatchObject({ camera: 'highway', version: 1, parent: 0, kind: 'update', createdAt: 1_700_000_000_000, streamTime: 42 });
    expect(v2).toMatchObject({ version: 2, parent: 1, createdAt: 1_700_000_002_000 });
    const dir = versionsDir(stateDir, 'highway');
    expect(dir).toBe(path.join(stateDir, 'adapt', 'highway'));
    // Exactly the two version files: no temporary file left behind.
    expect((await readdir(dir)).sort()).toEqual(['v000001.json', 'v000002.json']);
    const text = await readFile(path.join(dir, 'v000001.json'), 'utf8');
    const decoded = decodeVersion(text, base, headFingerprint(base));
    expect(decoded.figures).toEqual(figures);
    expect(same(decoded.head, smallHead(1))).toBe(true);
    expect(JSON.parse(text)).toMatchObject({ format: 'beats-head-version', formatVersion: 1, version: 1, parent: 0, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // The head given is copied: changing it afterwards changes nothing on disk or in the store.
    const h = smallHead(3);
    const v3 = await store.append({ head: h });
    h[0]!.weight.fill(99);
    expect(valueOf((await store.get(3)).head)).toBe(3);
    expect(valueOf(v3.head)).toBe(3);
  });

  it('a write that fails leaves no file and says which version and where', async () => {
    const stateDir = freshDir();
    const store = await VersionStore.open({ stateDir, camera: 'cam', base });
    await store.append({ head: smallHead(1) });
    const dir = versionsDir(stateDir, 'cam');
    // A folder where version 2's file goes: the final rename fails (even for root).
    await mkdir(path.join(dir, versionFileName(2)));
    await expect(store.append({ head: smallHead(2) })).rejects.toThrow(/version 2 could not be written to .*v000002\.json/);
    expect((await readdir(dir)).sort()).toEqual(['v000001.json', 'v000002.json']);
    expect((await store.list()).map((v) => v.version)).toEqual([1]);
    expect((await store.latest())?.version).toBe(1);
    await rm(path.join(dir, versionFileName(2)), { recursive: true });
    expect((await store.append({ head: smallHead(2) })).version).toBe(2);
  });

  it('resumes the latest version after a restart, and lists the history', async () => {
    const stateDir = freshDir();
    const store = await VersionStore.open({ stateDir, camera: 'cam', base });
    for (let k = 1; k <= 4; k++) await store.append({ head: smallHead(k), figures });
    const reopened = await VersionStore.open({ stateDir, camera: 'cam', base });
    const latest = await reopened.latest();
    expect(latest?.version).toBe(4);
    expect(same(latest!.head, smallHead(4))).toBe(true);
    const list = await reopened.list();
    expect(list.map((v) => [v.version, v.parent])).toEqual([
      [1, 0],
      [2, 1],
      [3, 2],
      [4, 3],
    ]);
    expect(list.every((v) => !('head' in v))).toBe(true);
    expect((await reopened.append({ head: smallHead(5) })).version).toBe(5);
  });

  it('rolls back to a version and to the base as new versions whose parent says so', async () => {
    const stateDir = freshDir();
    const store = await VersionStore.open({ stateDir, camera: 'cam', base });
    for (let k = 1; k <= 3; k++) await store.append({ head: smallHead(k) });
    const r = await store.rollback(1);
    expect(r).toMatchObject({ version: 4, parent: 1, kind: 'rollback', rollbackOf: 1, replaces: 3 });
    expect(same(r.head, smallHead(1))).toBe(true);
    // After a restart the rolled-back head is the current one.
    const reopened = await VersionStore.open({ stateDir, camera: 'cam', base });
    expect(valueOf((await reopened.latest())!.head)).toBe(1);
    // An update after it descends from it.
    expect((await reopened.append({ head: smallHead(7) })).parent).toBe(4);
    const b = await reopened.rollback('base');
    expect(b).toMatchObject({ version: 6, parent: 0, rollbackOf: 'base', replaces: 5 });
    expect(same(b.head, base)).toBe(true);
    expect(same((await (await VersionStore.open({ stateDir, camera: 'cam', base })).latest())!.head, base)).toBe(true);
  });

  it('a rollback to a version that does not exist is an error naming it, and changes nothing', async () => {
    const stateDir = freshDir();
    const store = await VersionStore.open({ stateDir, camera: 'yard', base });
    await store.append({ head: smallHead(1) });
    await store.append({ head: smallHead(2) });
    const err = await store.rollback(7).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VersionError);
    expect((err as VersionError).version).toBe(7);
    expect((err as Error).message).toMatch(/camera yard: version 7 does not exist; kept: 1\.\.2/);
    await expect(store.get(0)).rejects.toThrow(/version 0 does not exist/);
    expect((await store.list()).map((v) => v.version)).toEqual([1, 2]);
    expect((await store.latest())?.version).toBe(2);
    expect(await readdir(versionsDir(stateDir, 'yard'))).toHaveLength(2);
  });

  it('keeps the newest `keep` versions; a pruned one is an error that says which are kept', async () => {
    const stateDir = freshDir();
    const store = await VersionStore.open({ stateDir, camera: 'cam', base, keep: 3 });
    for (let k = 1; k <= 6; k++) await store.append({ head: smallHead(k) });
    expect((await store.list()).map((v) => v.version)).toEqual([4, 5, 6]);
    expect((await readdir(versionsDir(stateDir, 'cam'))).sort()).toEqual(['v000004.json', 'v000005.json', 'v000006.json']);
    await expect(store.rollback(2)).rejects.toThrow(/version 2 does not exist \(deleted or unreadable\); kept: 4\.\.6/);
    expect(valueOf((await store.rollback(5)).head)).toBe(5);
  });

  it('never loads a half-written version: a truncated file or a leftover temporary file, the previous one loads', async () => {
    const stateDir = freshDir();
    const store = await VersionStore.open({ stateDir, camera: 'cam', base });
    await store.append({ head: smallHead(1) });
    await store.append({ head: smallHead(2) });
    const dir = versionsDir(stateDir, 'cam');
    // Version 3 as a torn write would leave it: the first part of a real file, under its final name...
    const whole = encodeVersion({ camera: 'cam', version: 3, parent: 2, kind: 'update', createdAt: Date.now(), head: smallHead(3) }, headFingerprint(base));
    for (const cut of [whole.length - 3, Math.floor(whole.length / 2), 10, 0]) {
      await writeFile(path.join(dir, versionFileName(3)), whole.slice(0, cut));
      // ...and an interrupted atomic write of version 4.
      await writeFile(path.join(dir, `${versionFileName(4)}.tmp-12345-abcdef`), whole.slice(0, cut));
      const reopened = await VersionStore.open({ stateDir, camera: 'cam', base });
      const latest = await reopened.latest();
      expect(latest?.version).toBe(2);
      expect(valueOf(latest!.head)).toBe(2);
      expect((await reopened.list()).map((v) => v.version)).toEqual([1, 2]);
      await expect(reopened.get(3)).rejects.toThrow(/version 3 does not exist/);
      // The leftover is cleaned up; the torn file's number is not reused.
      expect((await readdir(dir)).some((n) => n.includes('.tmp-'))).toBe(false);
    }
    // A whole file with one weight changed (a bad sector, a hand edit) fails its checksum.
    const flipped = whole.replace(/"weight":"(.)/, (_m, c: string) => `"weight":"${c === 'A' ? 'B' : 'A'}`);
    expect(flipped).not.toBe(whole);
    await writeFile(path.join(dir, versionFileName(3)), flipped);
    const reopened = await VersionStore.open({ stateDir, camera: 'cam', base });
    expect((await reopened.latest())?.version).toBe(2);
    expect((await reopened.append({ head: smallHead(9) })).version).toBe(4);
    // The whole file itself loads.
    await writeFile(path.join(dir, versionFileName(3)), whole);
    expect((await (await VersionStore.open({ stateDir, camera: 'cam', base })).get(3)).version).toBe(3);
  });

  it('ignores versions made for another base model', async () => {
    const stateDir = freshDir();
    const store = await VersionStore.open({ stateDir, camera: 'cam', base });
    await store.append({ head: smallHead(1) });
    const other = await VersionStore.open({ stateDir, camera: 'cam', base: smallHead(100) });
    expect(await other.latest()).toBeUndefined();
    expect((await other.append({ head: smallHead(2) })).version).toBe(2); // numbers are not reused
    expect((await (await VersionStore.open({ stateDir, camera: 'cam', base })).latest())?.version).toBe(1);
  });

  it('survives kill -9 of a process writing versions in a loop: the last complete version loads', async () => {
    const require = createRequire(import.meta.url);
    const tsx = require.resolve('tsx');
    const writer = fileURLToPath(new URL('./helpers/version-writer.ts', import.meta.url));
    const stateDir = freshDir();
    await mkdir(stateDir, { recursive: true });
    const dir = versionsDir(stateDir, 'cam');
    let leftoversSeen = 0;
    let lastConfirmed = 0;
    for (const round of [0, 1, 2, 3]) {
      const child = spawn(process.execPath, ['--import', tsx, writer, stateDir], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      let confirmed = lastConfirmed;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const lines = out.trim().split('\n');
        confirmed = Number(lines[lines.length - 1]!.split(' ')[1]);
      });
      // Let it write a few versions, then kill it at a moment that varies from round to round.
      const start = Date.now();
      while (confirmed < lastConfirmed + 3 + round) {
        if (Date.now() - start > 30_000) throw new Error(`the writer wrote nothing (${out})`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, 3 + round * 7));
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      leftoversSeen += (await readdir(dir)).filter((n) => n.includes('.tmp-')).length;

      const store = await VersionStore.open({ stateDir, camera: 'cam', base: bigHead(0), keep: 1000 });
      const latest = await store.latest();
      // Whatever was confirmed is there (fsync before rename), at most one more (renamed, not yet confirmed).
      expect(latest!.version).toBeGreaterThanOrEqual(confirmed);
      expect(latest!.version).toBeLessThanOrEqual(confirmed + 1);
      // Every version kept loads whole: all its values are its own k.
      for (const v of await store.list()) {
        const { head, streamTime } = await store.get(v.version);
        expect(head.every((l) => l.weight.every((x) => x === streamTime) && l.bias.every((x) => x === streamTime))).toBe(true);
      }
      expect((await readdir(dir)).some((n) => n.includes('.tmp-'))).toBe(false);
      lastConfirmed = latest!.version;
    }
    // Not asserted (timing), but says whether a kill landed mid-write in this run.
    console.log(`kill -9 test: ${leftoversSeen} interrupted write(s) found over 4 kills`);
  }, 120_000);
});
