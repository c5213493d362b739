import path from 'node:path';
import { FeedbackIntake } from '../adapt/feedback.js';
import type { CameraConfig, PipelineConfig } from '../config/schema.js';
import { logger } from '../log.js';
import type { CameraStats, FrameResult } from '../pipeline/types.js';
import type { ModelStatusMessage, EventMessage } from '../publish/messages.js';
import type { MqttPublisher } from '../publish/mqtt.js';
import { isLive, sourceKind } from '../config/source-kind.js';
import { startHttpServer, type HttpServer } from './http.js';
import { LiveMonitor } from './live.js';
import { createMetrics, type PipelineMetrics } from './metrics.js';
import { baseModelHistory, type ModelHistorySource } from '../adapt/model-history.js';

export interface MonitoredCamera {
  camera: CameraConfig;
  model: { name: string; version: string; classes: readonly string[] };
  stats: CameraStats;
}

export interface MonitoringOptions {
  config: PipelineConfig;
  cameras: readonly MonitoredCamera[];
  /** For /metrics and /api/stats: the publisher's counts. */
  publisher: MqttPublisher;
  /** The model panel's data; default: the base model, adaptation off. */
  modelHistory?: ModelHistorySource;
  /** Adapting cameras' status, for /metrics. */
  adaptation?: () => ReadonlyMap<string, ModelStatusMessage>;
}

/**
 * Everything that watches a running pipeline or talks back to it: the feedback intake (always: MQTT
 * verdicts need no HTTP server; src/pipeline/commands.ts routes them to it), and with `http`
 * configured the live pages, /metrics and /healthz.
 * The pipeline calls the `on...` hooks; they store references and return.
 */
export interface Monitoring {
  intake: FeedbackIntake;
  /** The HTTP server's base URL, when `http` is configured. */
  httpUrl?: string;
  onResult(result: FrameResult): void;
  onEvent(message: EventMessage): void;
  cameraEnded(camera: string): void;
  close(): Promise<void>;
}

const log = logger('serve');

export async function startMonitoring(options: MonitoringOptions): Promise<Monitoring> {
  const { config, publisher } = options;
  const intake = new FeedbackIntake({
    cameras: options.cameras.map((c) => ({ name: c.camera.name, classes: c.model.classes })),
    ringFrames: config.feedback.ring_frames,
    rate: { perSecond: config.feedback.rate_per_s, burst: config.feedback.burst },
    missedFrom: config.feedback.missed_from,
  });

  const statsOf = new Map(options.cameras.map((c) => [c.camera.name, c.stats]));
  const monitor = new LiveMonitor(
    options.cameras.map((c) => {
      const kind = sourceKind(c.camera.source.url);
      return {
        name: c.camera.name,
        model: { name: c.model.name, version: c.model.version },
        classes: c.model.classes,
        stats: c.stats,
        live: isLive(kind) && kind !== 'testsrc',
        finite: kind === 'file' && !c.camera.source.loop,
        stallAfterS: c.camera.source.stall_timeout_s,
      };
    }),
    { liveFps: config.http?.live_fps ?? 5 },
  );
  let metrics: PipelineMetrics | undefined;
  let server: HttpServer | undefined;
  if (config.http) {
    const mqtt = () => ({ ...publisher.stats, outboxDepth: publisher.outboxDepth });
    metrics = createMetrics({ monitor, intake, mqtt, adaptation: options.adaptation });
    server = await startHttpServer({
      host: config.http.host,
      port: config.http.port,
      token: config.http.token,
      allowedHosts: config.http.allowed_hosts,
      liveFps: config.http.live_fps,
      monitor,
      intake,
      metrics,
      modelHistory: options.modelHistory ?? baseModelHistory(new Map(options.cameras.map((c) => [c.camera.name, { name: c.model.name, version: c.model.version }]))),
      snapshotsDir: path.join(config.state_dir, 'snapshots'),
      stats: () => ({
        cameras: Object.fromEntries(
          options.cameras.map((c) => {
            const s = c.stats;
            const counts = intake.counts(c.camera.name)!;
            return [
              c.camera.name,
              {
                frames_in: s.source.framesIn,
                processed: s.processed,
                dropped: s.source.dropped,
                detections: s.detections,
                restarts: s.source.restarts,
                inference_ms: s.inferenceMs,
                source_state: s.source.state,
                health: monitor.health(c.camera.name),
                feedback: counts,
              },
            ];
          }),
        ),
        mqtt: mqtt(),
      }),
    });
    log.info(`live view on ${server.url}/ (metrics ${server.url}/metrics, health ${server.url}/healthz)${config.http.token ? '; verdicts need the bearer token' : ''}`);
  }

  return {
    intake,
    httpUrl: server?.url,
    onResult(result) {
      monitor.onResult(result);
      intake.record(result);
      const stats = statsOf.get(result.camera);
      if (metrics && stats) {
        metrics.observeInference(result.camera, stats.lastInferenceMs);
        if (stats.latency.lastMs !== undefined) metrics.observeLatency(result.camera, stats.latency.lastMs);
      }
    },
    onEvent(message) {
      monitor.onEvent(message);
      intake.noteEvent(message.after.camera, message);
    },
    cameraEnded: (camera) => monitor.ended(camera),
    async close() {
      await server?.close();
      metrics?.registry.clear();
      intake.close();
    },
  };
}
