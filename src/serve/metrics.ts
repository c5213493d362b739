import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { verdicts, type FeedbackIntake } from '../adapt/feedback.js';
import type { ModelStatusMessage } from '../publish/messages.js';
import type { LiveMonitor } from './live.js';

/** What /metrics reads of the MQTT side. */
export interface MqttMetricsSource {
  connected: boolean;
  published: number;
  dropped: number;
  reconnects: number;
  outboxDepth: number;
}

export interface MetricsOptions {
  monitor: LiveMonitor;
  intake: FeedbackIntake;
  mqtt: () => MqttMetricsSource;
  /** The status of each adapting camera (what `<prefix>/<camera>/model` says), read at scrape time. */
  adaptation?: () => ReadonlyMap<string, ModelStatusMessage>;
}

export interface PipelineMetrics {
  readonly registry: Registry;
  /** One frame's inference time (observed on the frame path: a bucket increment). */
  observeInference(camera: string, ms: number): void;
  /** One frame's time from decoded to its detections handed to MQTT (a bucket increment). */
  observeLatency(camera: string, ms: number): void;
  text(): Promise<string>;
  readonly contentType: string;
}

const sourceStates = ['starting', 'running', 'reconnecting', 'ended'] as const;

/**
 * Prometheus metrics in a registry of their own (not prom-client's global one: two pipelines in one
 * process, as in tests, must not collide). Counters are read from the counts the pipeline already
 * keeps, when scraped, so nothing is added to the frame path but the two histograms.
 */
export function createMetrics(options: MetricsOptions): PipelineMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  cameraMetrics(registers, options.monitor);
  adaptationMetrics(registers, options.adaptation);
  const inference = new Histogram({
    name: 'beats_inference_seconds',
    help: 'Inference time per frame: preprocessing, onnxruntime and decoding.',
    labelNames: ['camera'],
    buckets: [0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const latency = new Histogram({
    name: 'beats_frame_latency_seconds',
    help: 'Time per frame from decoded to its detections handed to MQTT: waiting for the detector, inference, tracking and events.',
    labelNames: ['camera'],
    buckets: [0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  mqttMetrics(registers, options.mqtt);
  feedbackMetrics(registers, options.monitor, options.intake);
  return {
    registry,
    observeInference: (camera, ms) => inference.observe({ camera }, ms / 1000),
    observeLatency: (camera, ms) => latency.observe({ camera }, ms / 1000),
    text: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

/** A maker of per-camera counters whose values are read from `entries` at scrape time. */
function perCameraCounter<T>(registers: Registry[], entries: () => Iterable<readonly [string, T]>) {
  return (name: string, help: string, read: (value: T) => number) =>
    new Counter({
      name,
      help,
      labelNames: ['camera'],
      registers,
      collect() {
        this.reset();
        for (const [camera, value] of entries()) this.inc({ camera }, read(value));
      },
    });
}

/** Frames, detections, restarts, source state, health and model of each camera. */
function cameraMetrics(registers: Registry[], monitor: LiveMonitor): void {
  const cameras = () => monitor.names.map((name) => ({ name, info: monitor.info(name)! }));
  const mirrored = perCameraCounter(registers, () => cameras().map((c) => [c.name, c.info.stats] as const));
  mirrored('beats_frames_in_total', 'Frames decoded from the source (dropped ones included).', (s) => s.source.framesIn);
  mirrored('beats_frames_processed_total', 'Frames that went through detection, tracking and events.', (s) => s.processed);
  mirrored('beats_frames_dropped_total', 'Frames replaced in the live mailbox before the detector took them.', (s) => s.source.dropped);
  mirrored('beats_detections_total', 'Published detections (above detect.threshold).', (s) => s.detections);
  mirrored('beats_frames_failed_total', 'Frames that failed on the way (inference, a crashed inference worker, tracking, publishing): logged and skipped.', (s) => s.failed);
  mirrored('beats_decode_restarts_total', 'ffmpeg restarts of a live source (ended, failed or stalled).', (s) => s.source.restarts);

  new Gauge({
    name: 'beats_source_state',
    help: 'The source state of each camera: 1 for the current one.',
    labelNames: ['camera', 'state'],
    registers,
    collect() {
      for (const c of cameras()) for (const state of sourceStates) this.set({ camera: c.name, state }, c.info.stats.source.state === state ? 1 : 0);
    },
  });
  new Gauge({
    name: 'beats_healthy',
    help: 'Whether the camera is healthy as /healthz says (running, or a finite file that ended).',
    labelNames: ['camera'],
    registers,
    collect() {
      for (const c of cameras()) this.set({ camera: c.name }, monitor.health(c.name)?.ok ? 1 : 0);
    },
  });
  new Gauge({
    name: 'beats_model_info',
    help: 'The model each camera runs (always 1; name and version are labels).',
    labelNames: ['camera', 'name', 'version'],
    registers,
    collect() {
      this.reset();
      for (const c of cameras()) this.set({ camera: c.name, name: c.info.model.name, version: c.info.model.version }, 1);
    },
  });
}

/** On-device adaptation (cameras with adapt.enabled), from the engines' own counts. */
function adaptationMetrics(registers: Registry[], adaptation: MetricsOptions['adaptation']): void {
  const adapting = () => [...(adaptation?.() ?? new Map<string, ModelStatusMessage>())];
  const adaptCounter = perCameraCounter(registers, adapting);
  new Counter({
    name: 'beats_adapt_updates_total',
    help: 'Head updates by outcome: accepted by the guard, rejected by it, rolled back by an operator.',
    labelNames: ['camera', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const [camera, s] of adapting()) {
        this.inc({ camera, outcome: 'accepted' }, s.accepted);
        this.inc({ camera, outcome: 'rejected' }, s.rejected);
        this.inc({ camera, outcome: 'rolled_back' }, s.rolled_back);
      }
    },
  });
  adaptCounter('beats_adapt_supervised_frames_total', 'Supervised frames submitted to the adaptation engine.', (s) => s.supervised_frames);
  adaptCounter('beats_adapt_serving_switches_total', 'Whole-model adaptation with a teacher (serve: auto): times the camera changed between the teacher and the student serving.', (s) => s.serving?.switches ?? 0);
  adaptCounter('beats_adapt_dropped_frames_total', 'Supervised frames dropped because the training worker was behind.', (s) => s.dropped_frames);
  adaptCounter('beats_adapt_cells_trained_total', 'Supervised cells that went into the accumulated gradients.', (s) => s.cells_trained);
  adaptCounter('beats_adapt_verdicts_used_total', 'Operator verdicts turned into training cells.', (s) => s.verdicts_used);
  adaptCounter('beats_adapt_teacher_keyframes_total', 'Keyframes labelled by the teacher.', (s) => s.teacher?.keyframes ?? 0);
  new Gauge({
    name: 'beats_adapt_head_version',
    help: 'The head version inference runs (0: the base model), and whether adaptation is on.',
    labelNames: ['camera', 'adaptation'],
    registers,
    collect() {
      this.reset();
      for (const [camera, s] of adapting()) this.set({ camera, adaptation: s.adaptation }, s.version);
    },
  });
  new Gauge({
    name: 'beats_adapt_error_energy',
    help: 'Accumulated error energy (misses plus false alarms) per region of the adaptation grid; row and col from the top left.',
    labelNames: ['camera', 'row', 'col'],
    registers,
    collect() {
      this.reset();
      for (const [camera, s] of adapting()) s.error_energy.forEach((cells, row) => cells.forEach((v, col) => this.set({ camera, row: String(row), col: String(col) }, v)));
    },
  });
}

/** The MQTT connection, outbox and publish counts. */
function mqttMetrics(registers: Registry[], mqtt: () => MqttMetricsSource): void {
  new Gauge({
    name: 'beats_mqtt_connected',
    help: 'Whether the pipeline is connected to its MQTT broker.',
    registers,
    collect() {
      this.set(mqtt().connected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'beats_outbox_depth',
    help: 'Event messages waiting on disk for the broker.',
    registers,
    collect() {
      this.set(mqtt().outboxDepth);
    },
  });
  const mqttCounter = (name: string, help: string, read: (m: MqttMetricsSource) => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read(mqtt()));
      },
    });
  mqttCounter('beats_mqtt_published_total', 'MQTT publishes completed.', (m) => m.published);
  mqttCounter('beats_mqtt_dropped_total', 'MQTT publishes dropped (offline, too many waiting, lost with a connection).', (m) => m.dropped);
  mqttCounter('beats_mqtt_reconnects_total', 'MQTT reconnection attempts.', (m) => m.reconnects);
}

/** Operator verdicts accepted and rejected, per camera. */
function feedbackMetrics(registers: Registry[], monitor: LiveMonitor, intake: FeedbackIntake): void {
  new Counter({
    name: 'beats_feedback_accepted_total',
    help: 'Operator verdicts accepted, by verdict.',
    labelNames: ['camera', 'verdict'],
    registers,
    collect() {
      this.reset();
      for (const camera of monitor.names) {
        const counts = intake.counts(camera);
        for (const verdict of verdicts) this.inc({ camera, verdict }, counts?.accepted[verdict] ?? 0);
      }
    },
  });
  new Counter({
    name: 'beats_feedback_rejected_total',
    help: 'Operator verdicts rejected, by why (rate_limited, malformed, invalid, stale, ...).',
    labelNames: ['camera', 'code'],
    registers,
    collect() {
      this.reset();
      for (const camera of monitor.names) {
        // Present from the start at 0, so that rate() works from the first rejection.
        this.inc({ camera, code: 'rate_limited' }, 0);
        for (const [code, n] of Object.entries(intake.counts(camera)?.rejected ?? {})) this.inc({ camera, code }, n);
      }
    },
  });
}
