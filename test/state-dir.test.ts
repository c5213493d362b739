// A state_dir that cannot hold the pipeline's state fails at once, naming the path; it never hangs.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Head } from '../src/adapt/engine-types.js';
import { VersionStore } from '../src/adapt/versions.js';
import { StateError } from '../src/errors.js';
import { Outbox } from '../src/publish/outbox.js';
import { SnapshotStore } from '../src/publish/snapshots.js';
import { spawnBeats, waitFor, type BeatsProcess } from './helpers/brokers.js';

let dir: string;
const running: BeatsProcess[] = [];
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'beats-state-'));
});
afterAll(async () => {
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/** Settles within `ms` or says it hung (Node's recursive mkdir spins forever under /proc). */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms).unref())]);
}

const procOk = existsSync('/proc/self');

describe('an unusable state_dir', () => {
  it.skipIf(!procOk)('under /proc: the outbox fails with a StateError naming the folder, no hang', async () => {
    const err = await within(Outbox.open({ dir: '/proc/beats-state-test/outbox', maxMessages: 10 }), 10_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateError);
    expect((err as Error).message).toMatch(/^\/proc\/beats-state-test: cannot be created \(ENOENT: \/proc takes no new folders\)/);
  });

  it('a file where a folder should be: snapshots fail naming it', async () => {
    const file = path.join(dir, 'not-a-folder');
    await writeFile(file, 'x');
    const store = new SnapshotStore({ dir: path.join(file, 'snapshots'), maxTotalBytes: 1e6 });
    const err = await within(store.save('cam', 'e1', { full: Buffer.from('a'), crop: Buffer.from('b') }), 10_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateError);
    expect((err as Error).message).toBe(`${file}: is a file, not a folder (${path.join(file, 'snapshots', 'cam')} would be made in it)`);
  });

  it.skipIf(!procOk)('beats run exits 2 at once with state_dir and the path, before loading anything', async () => {
    const file = path.join(dir, 'proc.yaml');
    await writeFile(file, `state_dir: /proc/beats-state-test\nstatus_interval_s: 0\ncameras: [{ name: cam, source: { url: "testsrc:size=64x48:rate=5" }, model: beats-s }]\n`);
    const p = spawnBeats(['run', file]);
    running.push(p);
    const exit = await within(p.exit, 60_000);
    expect(exit.code, p.stderr()).toBe(2);
    expect(p.stderr()).toContain(`state_dir: /proc/beats-state-test: cannot be created`);
    expect(p.stderr()).not.toMatch(/model beats-s/);
  });

  it('SIGTERM during start-up stops the run cleanly', async () => {
    const file = path.join(dir, 'ok.yaml');
    await writeFile(file, `state_dir: ${JSON.stringify(path.join(dir, 'state'))}\nstatus_interval_s: 0\nmqtt: { embedded: { host: 127.0.0.1, port: 0 } }\ncameras: [{ name: cam, source: { url: "testsrc:size=64x48:rate=5" }, model: beats-s }]\n`);
    const p = spawnBeats(['run', file]);
    running.push(p);
    await waitFor(() => /state|model|broker|camera/.test(p.stderr()) || undefined, 60_000, 'the run to start');
    p.child.kill('SIGTERM');
    const exit = await within(p.exit, 60_000);
    expect(exit.code, p.stderr()).toBe(0);
    expect(p.stderr()).toMatch(/SIGTERM: stopping/);
  });
});

describe('state files and folders', () => {
  it('are 0600 and 0700 whatever the umask (outbox, snapshots, head versions)', async () => {
    const stateDir = path.join(dir, 'perm', 'state');
    const before = process.umask(0);
    try {
      const outbox = await Outbox.open({ dir: path.join(stateDir, 'outbox'), maxMessages: 10 });
      await outbox.push({ topic: 't', payload: 'p', qos: 1, retain: false });
      await new SnapshotStore({ dir: path.join(stateDir, 'snapshots'), maxTotalBytes: 1e6 }).save('cam', 'e1', { full: Buffer.from('a'), crop: Buffer.from('b') });
      const head = (k: number): Head => [{ weight: new Float32Array(6).fill(k), bias: new Float32Array(2).fill(k), shape: [2, 3] }];
      const store = await VersionStore.open({ stateDir, camera: 'cam', base: head(0) });
      await store.append({ head: head(1) });
    } finally {
      process.umask(before);
    }
    const modes = new Map<string, string>();
    const walk = async (at: string): Promise<void> => {
      const info = await stat(at);
      modes.set(path.relative(dir, at), (info.mode & 0o777).toString(8));
      if (info.isDirectory()) for (const name of await readdir(at)) await walk(path.join(at, name));
    };
    await walk(path.join(dir, 'perm'));
    const files = [...modes].filter(([p]) => /\.(json|jpg|bin|head)$|\d$/.test(path.basename(p)) && !p.endsWith('state'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const [p, mode] of modes) {
      const isDir = (await stat(path.join(dir, p))).isDirectory();
      expect(`${p} ${mode}`).toBe(`${p} ${isDir ? '700' : '600'}`);
    }
  });
});
