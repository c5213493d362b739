import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AcceptedFeedback, FeedbackIntake } from '../../src/adapt/feedback.js';
import { parsePipeline } from '../../src/config/load.js';
import { runPipeline, type RunSummary } from '../../src/pipeline.js';
import type { FrameResult } from '../../src/pipeline/types.js';
import type { EventMessage } from '../../src/publish/messages.js';
import { waitFor } from './brokers.js';

/** A pipeline running in this process for HTTP and feedback tests, stopped by `stop()`. */
export interface ServedPipeline {
  dir: string;
  /** The HTTP server's base URL ('' without `http`). */
  url: string;
  brokerUrl: string;
  intake: FeedbackIntake;
  /** Everything accepted$ emitted, in order. */
  accepted: AcceptedFeedback[];
  events: EventMessage[];
  /** Frames processed so far per camera. */
  processed(camera?: string): number;
  /** The newest processed frame of a camera that has a detection with a track id, if any. */
  latestTracked(camera?: string): FrameResult | undefined;
  /** The first processed frame of a camera (kept for stale-frame tests). */
  first(camera?: string): FrameResult | undefined;
  stop(): Promise<RunSummary>;
}

/**
 * Writes `yaml` (with `state_dir` in a temporary folder unless it sets one) and runs it until
 * `stop()`. Resolves once the broker, publisher and HTTP server are up.
 */
export async function servePipeline(yaml: string, options: { brokerUrl?: string } = {}): Promise<ServedPipeline> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-serve-'));
  const file = path.join(dir, 'pipeline.yaml');
  const text = /^state_dir:/m.test(yaml) ? yaml : `state_dir: ${JSON.stringify(path.join(dir, 'state'))}\n${yaml}`;
  await writeFile(file, text);
  const loaded = { file, config: parsePipeline(text, file) };
  const controller = new AbortController();
  const accepted: AcceptedFeedback[] = [];
  const events: EventMessage[] = [];
  const counts = new Map<string, number>();
  const tracked = new Map<string, FrameResult>();
  const firsts = new Map<string, FrameResult>();
  let started: { url: string; brokerUrl: string; intake: FeedbackIntake } | undefined;
  let failure: unknown;
  const run = runPipeline(loaded, {
    brokerUrl: options.brokerUrl,
    signal: controller.signal,
    onStarted: (r) => {
      r.feedback.accepted$.subscribe((f) => accepted.push(f));
      started = { url: r.httpUrl ?? '', brokerUrl: r.brokerUrl, intake: r.feedback };
    },
    onResult: (r) => {
      counts.set(r.camera, (counts.get(r.camera) ?? 0) + 1);
      if (!firsts.has(r.camera)) firsts.set(r.camera, r);
      // Only references to the newest frames are kept: a frame is half a megabyte.
      if (r.detections.some((d) => d.trackId !== undefined)) tracked.set(r.camera, r);
    },
    onEvent: (m) => events.push(m),
  });
  run.catch((err: unknown) => (failure = err));
  await waitFor(
    () => {
      if (failure) throw failure;
      return started;
    },
    30_000,
    'the pipeline to start',
  );
  const s = started!;
  const only = (camera?: string) => camera ?? loaded.config.cameras[0]!.name;
  return {
    dir,
    url: s.url,
    brokerUrl: s.brokerUrl,
    intake: s.intake,
    accepted,
    events,
    processed: (camera) => counts.get(only(camera)) ?? 0,
    latestTracked: (camera) => tracked.get(only(camera)),
    first: (camera) => firsts.get(only(camera)),
    stop: async () => {
      controller.abort();
      try {
        return await run;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * A detection of a frame that belongs to a confirmed track, as a verdict payload names it: of the
 * frame's tracked detections, the one whose track was matched on the most frames (`hits`).
 */
export function trackedDetection(result: FrameResult): { frame: number; box: [number, number, number, number]; label: string; trackId: number; hits: number } {
  const hitsOf = (id: number | undefined) => result.tracks.find((t) => t.id === id)?.hits ?? 0;
  const d = result.detections.filter((x) => x.trackId !== undefined).sort((a, b) => hitsOf(b.trackId) - hitsOf(a.trackId))[0]!;
  return { frame: result.frame.index, box: d.box.map((v) => Math.round(v * 10) / 10) as [number, number, number, number], label: d.label, trackId: d.trackId!, hits: hitsOf(d.trackId) };
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * The Prometheus text format, strictly enough to catch a broken exposition: every sample line must
 * be `name{labels} value`, and every sample's metric must have a TYPE line.
 */
export function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name!, type!);
      continue;
    }
    if (line.startsWith('#')) continue;
    // Values as Prometheus's parser takes them (Go's ParseFloat: NaN and Inf in any case; prom-client writes `Nan`).
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|nan|[+-]?inf)$/i.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) {
      const eq = pair.indexOf('=');
      labels[pair.slice(0, eq)] = JSON.parse(pair.slice(eq + 1)) as string;
    }
    const base = m[1]!.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]!) && !types.has(base)) throw new Error(`sample ${m[1]} has no TYPE line`);
    const raw = m[3]!.toLowerCase();
    const value = raw === 'nan' ? NaN : raw.endsWith('inf') ? (raw.startsWith('-') ? -Infinity : Infinity) : Number(raw);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

/** The value of one sample whose labels include `labels`; undefined when there is none. */
export function sample(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
