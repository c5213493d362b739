import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import type { ModelStatusMessage } from '../src/publish/messages.js';
import { parsePipeline } from '../src/config/load.js';
import type { ModelHistory } from '../src/adapt/model-history.js';
import { iou } from '../src/model/decode.js';
import { runPipeline, type RunSummary, type StartedRun } from '../src/pipeline.js';
import type { DetectionsMessage } from '../src/publish/messages.js';
import { syntheticTruth } from '../src/source/synthetic-source.js';
import { sleep, spawnBeats, waitFor } from './helpers/brokers.js';

const CAMERA = 'street';

function pipelineYaml(stateDir: string, realtime: boolean): string {
  return `
status_interval_s: 0
state_dir: ${JSON.stringify(stateDir)}
mqtt: { embedded: { host: 127.0.0.1, port: 0 } }
http: { host: 127.0.0.1, port: 0 }
feedback: { rate_per_s: 1000, burst: 1000 }
cameras:
  - name: ${CAMERA}
    source: { url: "synthetic:scene=street&seed=21&seconds=40", realtime: ${realtime} }
    model: beats-s
    # Low thresholds: the shipped beats-s may be a provisional (briefly trained) model with low scores;
    # the operator below answers whatever it detects.
    detect: { threshold: 0.02, max_detections: 10 }
    events: { low_threshold: 0.01 }
    adapt: { enabled: true, min_interval_s: 0.5, n_min: 4 }
`;
}

/**
 * A run with a simulated operator: every detection it sees on `beats/street/detections` gets a
 * verdict from the synthetic ground truth (correct when a true box of its class overlaps it, else
 * false_positive), while `send` is on.
 */
function startRun(stateDir: string, realtime: boolean) {
  const file = path.join(stateDir, 'pipeline.yaml');
  const loaded = { file, config: parsePipeline(pipelineYaml(stateDir, realtime), file) };
  const truth = new Map<number, Array<{ label: string; box: readonly number[] }>>();
  const statuses: ModelStatusMessage[] = [];
  const rollbackRejected: Array<{ reason: string }> = [];
  const verdicts = { sent: 0, send: true };
  const abort = new AbortController();
  let client: mqtt.MqttClient | undefined;
  let started!: (run: StartedRun) => void;
  const up = new Promise<StartedRun>((resolve) => (started = resolve));
  const done: Promise<RunSummary> = runPipeline(loaded, {
    signal: abort.signal,
    onStarted: (run) => started(run),
    onResult: (r) => {
      const boxes = syntheticTruth.get(r.frame);
      if (boxes) truth.set(r.frame.index, boxes.map((b) => ({ label: b.label, box: b.box })));
      truth.delete(r.frame.index - 400);
    },
  });
  const ready = (async () => {
    const run = await up;
    client = await mqtt.connectAsync(run.brokerUrl);
    client.on('message', (topic, payload) => {
      const text = payload.toString('utf8');
      if (topic === `beats/${CAMERA}/model`) statuses.push(JSON.parse(text) as ModelStatusMessage);
      else if (topic === `beats/${CAMERA}/model/rollback/rejected`) rollbackRejected.push(JSON.parse(text) as { reason: string });
      else if (topic === `beats/${CAMERA}/detections` && verdicts.send) {
        const m = JSON.parse(text) as DetectionsMessage;
        const boxes = truth.get(m.frame) ?? [];
        for (const d of m.detections) {
          const right = boxes.some((b) => b.label === d.label && iou(b.box as [number, number, number, number], d.box) >= 0.5);
          verdicts.sent++;
          client!.publish(`beats/${CAMERA}/feedback`, JSON.stringify({ detection: { frame: m.frame, box: d.box }, verdict: right ? 'correct' : 'false_positive' }), { qos: 1 });
        }
      }
    });
    await client.subscribeAsync([`beats/${CAMERA}/model`, `beats/${CAMERA}/model/rollback/rejected`, `beats/${CAMERA}/detections`], { qos: 1 });
    return run;
  })();
  return {
    ready,
    statuses,
    rollbackRejected,
    verdicts,
    last: () => statuses[statuses.length - 1],
    publish: (topic: string, payload: string) => client!.publishAsync(topic, payload, { qos: 1 }),
    async stop(): Promise<RunSummary> {
      abort.abort();
      const summary = await done;
      await client?.endAsync();
      return summary;
    },
    done,
  };
}

const versionFiles = async (stateDir: string) => (await readdir(path.join(stateDir, 'adapt', CAMERA))).filter((n) => /^v\d+\.json$/.test(n)).sort();

describe('adaptation in the running pipeline (synthetic camera, beats-s)', () => {
  it('verdicts reach the engine, updates are judged and swapped in, a restart resumes, rollback and adapt/set work over MQTT', { timeout: 90_000 }, async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'beats-adapt-'));
    await writeFile(path.join(stateDir, 'pipeline.yaml'), pipelineYaml(stateDir, false));

    // Run 1 (realtime, like a camera), with an operator answering every detection, until the guard
    // accepted an update (or the 40 s stream ends).
    const run1 = startRun(stateDir, true);
    await run1.ready;
    const ended = { yes: false };
    void run1.done.finally(() => (ended.yes = true));
    await waitFor(() => ended.yes || (run1.last()?.accepted ?? 0) > 0 || undefined, 45_000, 'an accepted update in run 1');
    // One more status tick: the swapped-in head shows in it.
    await sleep(1100);
    await run1.stop();
    const final1 = run1.last()!;
    expect(run1.verdicts.sent).toBeGreaterThan(20);
    // Supervision reached the engine: supervised frames and trained cells.
    expect(final1.supervised_frames).toBeGreaterThan(10);
    expect(final1.cells_trained).toBeGreaterThan(50);
    expect(final1.verdicts_used).toBeGreaterThan(10);
    // The loop ran: at least one update was judged by the guard.
    expect(final1.accepted + final1.rejected).toBeGreaterThan(0);
    expect(final1.accepted).toBeGreaterThan(0);
    // The accepted head was swapped into inference and written to disk.
    expect(final1.version).toBeGreaterThan(0);
    expect(final1.head).toBe(`v${final1.version}`);
    const files1 = await versionFiles(stateDir);
    expect(files1).toContain(`v${String(final1.version).padStart(6, '0')}.json`);
    // The status grew while the run went (published along the way, not only at the end).
    expect(run1.statuses.length).toBeGreaterThan(1);

    // Run 2 (realtime, so it lasts): resumes from the last version before the first frame.
    const run2 = startRun(stateDir, true);
    await run2.ready;
    const first = await waitFor(() => run2.statuses[0], 10_000, 'first status of run 2');
    expect(first.version).toBe(final1.version);
    expect(first.head).toBe(`v${final1.version}`);
    expect(first.accepted).toBe(0);

    // Supervision flows in run 2 too...
    const before = run2.last()!.supervised_frames;
    await waitFor(() => (run2.last()!.supervised_frames > before ? true : undefined), 15_000, 'supervision in run 2');
    // ...and adapt/set off stops it while verdicts keep coming (inference goes on).
    await run2.publish(`beats/${CAMERA}/adapt/set`, 'off');
    await waitFor(() => run2.statuses.find((s) => s.adaptation === 'off'), 5000, 'adaptation off');
    await sleep(1200);
    const frozen = run2.last()!;
    const sentBefore = run2.verdicts.sent;
    await sleep(3000);
    expect(run2.verdicts.sent).toBeGreaterThan(sentBefore);
    expect(run2.last()!.supervised_frames).toBe(frozen.supervised_frames);

    // Rollback to a version that does not exist: answered on the rejected topic, nothing changes.
    await run2.publish(`beats/${CAMERA}/model/rollback`, '999');
    await run2.publish(`beats/${CAMERA}/model/rollback`, 'yesterday');
    await waitFor(() => run2.rollbackRejected.length >= 2 || undefined, 10_000, 'rollback rejections');
    const reasons = run2.rollbackRejected.map((r) => r.reason);
    expect(reasons.some((r) => /version 999 does not exist/.test(r))).toBe(true);
    expect(reasons.some((r) => /"yesterday" is not a version/.test(r))).toBe(true);
    expect(run2.last()!.version).toBe(frozen.version);

    // Rollback to base: a new version holding the base head, swapped into inference.
    await run2.publish(`beats/${CAMERA}/model/rollback`, 'base');
    const rolled = await waitFor(() => run2.statuses.find((s) => s.rolled_back > 0), 10_000, 'rollback status');
    expect(rolled.version).toBe(frozen.version + 1);
    expect(rolled.head).toBe(`v${rolled.version}`);
    const file = JSON.parse(await readFile(path.join(stateDir, 'adapt', CAMERA, `v${String(rolled.version).padStart(6, '0')}.json`), 'utf8')) as { kind: string; rollbackOf: unknown };
    expect(file).toMatchObject({ kind: 'rollback', rollbackOf: 'base' });

    // The live page's model panel comes from the engine: every version, the current one, paused.
    const panel = (await (await fetch(`${(await run2.ready).httpUrl!}/api/cameras/${CAMERA}/model`)).json()) as ModelHistory;
    expect(panel.adaptation).toBe('paused');
    expect(panel.versions.map((v) => v.version)).toEqual(['base', ...Array.from({ length: rolled.version }, (_, i) => `v${i + 1}`)]);
    expect(panel.versions.filter((v) => v.current).map((v) => v.version)).toEqual([`v${rolled.version}`]);
    expect(panel.versions.at(-1)!.note).toBe('rollback to base');
    expect(panel.curves.find((c) => c.name.startsWith('holdout loss'))!.points).toHaveLength(rolled.version - 1);
    // Prometheus has the engine's counts.
    const metrics = await (await fetch(`${(await run2.ready).httpUrl!}/metrics`)).text();
    expect(metrics).toContain(`beats_adapt_updates_total{camera="${CAMERA}",outcome="rolled_back"} 1`);
    expect(metrics).toContain(`beats_adapt_head_version{camera="${CAMERA}",adaptation="off"} ${rolled.version}`);
    expect(metrics).toMatch(new RegExp(`beats_adapt_supervised_frames_total\\{camera="${CAMERA}"\\} [1-9]`));
    expect(metrics).toMatch(/beats_adapt_error_energy\{camera="street",row="3",col="3"\} /);
    await run2.stop();

    // The CLI works on the stopped pipeline's versions on disk.
    const file2 = path.join(stateDir, 'pipeline.yaml');
    const list = spawnBeats(['model', 'versions', CAMERA, '--pipeline', file2, '--json']);
    expect((await list.exit).code).toBe(0);
    const listed = JSON.parse(list.stdout()) as { current: number; versions: Array<{ version: number; kind: string }> };
    expect(listed.current).toBe(rolled.version);
    expect(listed.versions.map((v) => v.version)).toContain(1);
    const back = spawnBeats(['model', 'rollback', CAMERA, '1', '--pipeline', file2]);
    expect((await back.exit).code).toBe(0);
    expect(back.stdout()).toContain(`now v${rolled.version + 1}`);
    const missing = spawnBeats(['model', 'rollback', CAMERA, '999', '--pipeline', file2]);
    expect((await missing.exit).code).toBe(1);
    expect(missing.stdout() + missing.stderr()).toMatch(/version 999 does not exist/);
    await rm(stateDir, { recursive: true, force: true });
  });
});
