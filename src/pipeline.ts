import { existsSync } from 'node:fs';
import path from 'node:path';
import { Subject, finalize, interval, merge } from 'rxjs';
import { ConfigError, StateError, errorMessage } from './errors.js';
import { ensurePrivateDir } from './fs-private.js';
import type { LoadedPipeline } from './config/load.js';
import { mqttSchema, type CameraConfig, type PipelineConfig } from './config/schema.js';
import { logger } from './log.js';
import { Detector, type DetectorOptions } from './model/detector.js';
import type { ProviderSettings } from './model/providers.js';
import type { BackendStats } from './model/backends/backend.js';
import { startEmbeddedBroker, type EmbeddedBroker } from './publish/broker.js';
import { EventPublisher } from './publish/events.js';
import type { EventMessage } from './publish/messages.js';
import { MqttPublisher } from './publish/mqtt.js';
import { Outbox } from './publish/outbox.js';
import { SnapshotStore } from './publish/snapshots.js';
import type { FeedbackIntake } from './adapt/feedback.js';
import type { WorkerMemory } from './adapt/engine.js';
import { CameraAdapter, adaptiveModelHistory } from './adapt/camera-adapter.js';
import type { SiteAdapter } from './adapt/site-adapter.js';
import { checkpointOf } from './adapt/student/model-files.js';
import { WholeModelAdapter, wholeModelProblem } from './adapt/whole-adapter.js';
import { feedbackPublishers } from './publish/feedback-acl.js';
import { HeadError } from './model/head.js';
import { ModelTeacher } from './adapt/teacher.js';
import { baseModelHistory } from './adapt/model-history.js';
import { startMonitoring, type Monitoring } from './serve/index.js';
import { readTlsFiles } from './publish/tls.js';
import { cameraChain } from './pipeline/camera-chain.js';
import { routeCommands, type CommandRouter } from './pipeline/commands.js';
import { newCameraStats, type CameraStats, type FrameResult } from './pipeline/types.js';

export interface RunOptions {
  /** Stop each camera after this many processed frames. */
  maxFrames?: number;
  /** Overrides `mqtt.url` of the pipeline file. */
  brokerUrl?: string;
  /** Stops the run cleanly (Ctrl-C). */
  signal?: AbortSignal;
  /** Every processed frame, for tests and tools. */
  onResult?: (result: FrameResult) => void;
  /** Every event message, in the order it is published. */
  onEvent?: (message: EventMessage) => void;
  /** Once the broker, the publisher and the HTTP server are up, before the first frame. */
  onStarted?: (run: StartedRun) => void;
}

export interface StartedRun {
  brokerUrl: string;
  /** The HTTP server's base URL, when `http` is configured. */
  httpUrl?: string;
  /** Operator verdicts (MQTT and HTTP); `accepted$` emits the accepted ones. */
  feedback: FeedbackIntake;
  /** Each adapting camera's training worker's own memory (its heap is not the main thread's), by camera. */
  trainingMemory: () => Promise<Map<string, WorkerMemory | undefined>>;
}

export interface RunSummary {
  brokerUrl: string;
  cameras: Record<string, CameraStats>;
  mqtt: { published: number; dropped: number; durableSent: number; outboxDepth: number };
  /** Each detector (one per model and input size, or per adapting camera): where it ran, its cameras and its runs. */
  inference: InferenceSummary[];
}

export interface InferenceSummary {
  model: string;
  backend: 'in-process' | 'worker' | 'adaptable';
  maxBatch: number;
  cameras: string[];
  stats?: BackendStats;
}

function inferenceSummary(detectors: Map<string, Detector>): InferenceSummary[] {
  return [...new Set(detectors.values())].map((d) => ({
    model: d.card.name,
    backend: d.backendKind,
    maxBatch: d.maxBatch,
    cameras: [...detectors].filter(([, x]) => x === d).map(([name]) => name),
    stats: d.backendStats(),
  }));
}

const log = logger('pipeline');

function providerSettings(config: PipelineConfig): ProviderSettings {
  return { providers: config.runtime.providers, tensorrt: { fp16: config.runtime.tensorrt.fp16, engineCache: config.runtime.tensorrt.engine_cache }, threads: config.runtime.threads };
}

/**
 * Where the detectors of cameras that do not adapt run: runtime.inference (a worker thread by
 * default, shared by the cameras on the same model and input size), in batches of up to
 * runtime.max_batch frames.
 */
function plainBackend(config: PipelineConfig): Pick<DetectorOptions, 'backend' | 'batch'> {
  return { backend: config.runtime.inference, batch: { max: config.runtime.max_batch, timeoutMs: config.runtime.batch_timeout_ms } };
}

/** Loads each camera's detector once per (model, input size); a bad label is a config error. */
async function loadDetectors(loaded: LoadedPipeline): Promise<Map<string, Detector>> {
  const byKey = new Map<string, Promise<Detector>>();
  const perCamera = new Map<string, Detector>();
  for (const [i, camera] of loaded.config.cameras.entries()) {
    const key = `${camera.model}@${camera.detect.input_size ?? ''}`;
    if (camera.adapt.enabled && camera.adapt.layers === 'all') {
      perCamera.set(camera.name, await wholeModelDetector(loaded, i));
      continue;
    }
    if (camera.adapt.enabled && camera.adapt.teacher && camera.adapt.teacher.serve !== 'student') {
      throw new ConfigError(loaded.file, [{ path: `cameras[${i}].adapt.teacher.serve`, message: `"${camera.adapt.teacher.serve}" needs adapt.layers: all (a class head alone does not take over from a teacher)` }]);
    }
    // An adapting camera gets a detector of its own: heads are per camera.
    const adaptable = camera.adapt.enabled
      ? await Detector.load(camera.model, { runtime: providerSettings(loaded.config), inputSize: camera.detect.input_size, adaptable: true }).catch((err: unknown) => {
          if (!(err instanceof HeadError)) throw err;
          log.warn(`camera ${camera.name}: adaptation off: ${errorMessage(err)}`);
          return undefined;
        })
      : undefined;
    if (!adaptable && !byKey.has(key)) byKey.set(key, Detector.load(camera.model, { runtime: providerSettings(loaded.config), inputSize: camera.detect.input_size, ...plainBackend(loaded.config) }));
    const detector = adaptable ?? (await byKey.get(key)!);
    const unknown = (camera.detect.labels ?? []).filter((l) => !detector.card.classes.includes(l));
    if (unknown.length > 0) {
      throw new ConfigError(loaded.file, [{ path: `cameras[${i}].detect.labels`, message: `model ${detector.card.name} has no class ${unknown.map((u) => `"${u}"`).join(', ')}` }]);
    }
    perCamera.set(camera.name, detector);
  }
  return perCamera;
}

/**
 * The detector of a camera adapting its whole model: its own (its weights are the camera's), in
 * process (the swap replaces its session), and refused with the YAML path when the model cannot
 * adapt whole or nothing would teach it.
 */
async function wholeModelDetector(loaded: LoadedPipeline, i: number): Promise<Detector> {
  const camera = loaded.config.cameras[i]!;
  const refuse = (where: string, message: string) => new ConfigError(loaded.file, [{ path: `cameras[${i}].adapt.${where}`, message }]);
  if (!camera.adapt.teacher) throw refuse('teacher', 'layers: all trains the whole model from teacher keyframes: give adapt.teacher');
  const detector = await Detector.load(camera.model, { runtime: providerSettings(loaded.config), inputSize: camera.detect.input_size, backend: 'in-process' });
  const problem = wholeModelProblem(detector) ?? (existsSync(checkpointOf(detector.model.onnxPath, detector.card.name)) ? undefined : `model ${detector.card.name} has no training checkpoint beside it (${checkpointOf(detector.model.onnxPath, detector.card.name)})`);
  if (problem) {
    await detector.close();
    throw refuse('layers', problem);
  }
  return detector;
}

/** The teacher of an adapting camera (cameras[].adapt.teacher), mapped to the student's classes. */
async function loadTeacher(loaded: LoadedPipeline, camera: CameraConfig, student: Detector): Promise<ModelTeacher | undefined> {
  const config = camera.adapt.teacher;
  if (!config) return undefined;
  const i = loaded.config.cameras.indexOf(camera);
  const detector = await Detector.load(config.model, { runtime: { ...providerSettings(loaded.config), threads: config.threads }, inputSize: config.input_size }).catch((err: unknown) => {
    throw new ConfigError(loaded.file, [{ path: `cameras[${i}].adapt.teacher.model`, message: errorMessage(err) }]);
  });
  const teacher = new ModelTeacher(detector, student.card.classes, { threshold: config.threshold, nmsIou: camera.detect.nms_iou, labels: camera.detect.labels });
  if (teacher.sharedClasses === 0) {
    await detector.close();
    throw new ConfigError(loaded.file, [{ path: `cameras[${i}].adapt.teacher.model`, message: `${detector.card.name} knows none of the classes of ${student.card.name} (${student.card.classes.join(', ')})` }]);
  }
  log.info(`camera ${camera.name}: teacher ${teacher.name} on keyframes (${teacher.sharedClasses} shared classes)`);
  return teacher;
}

function statusLine(cameras: Record<string, CameraStats>, previous: Map<string, { in: number; out: number }>, seconds: number, publisher: MqttPublisher): string {
  const parts = Object.entries(cameras).map(([name, s]) => {
    const before = previous.get(name) ?? { in: 0, out: 0 };
    previous.set(name, { in: s.source.framesIn, out: s.processed });
    const fpsIn = (s.source.framesIn - before.in) / seconds;
    const fpsOut = (s.processed - before.out) / seconds;
    const p50 = s.latency.quantile(0.5);
    const p99 = s.latency.quantile(0.99);
    const latency = p50 === undefined || p99 === undefined ? '' : `, latency p50 ${p50.toFixed(0)} ms p99 ${p99.toFixed(0)} ms`;
    return `${name}: in ${fpsIn.toFixed(1)} fps, out ${fpsOut.toFixed(1)} fps, dropped ${s.source.dropped}, inference ${s.inferenceMs.toFixed(1)} ms${latency}${s.failed > 0 ? `, failed ${s.failed}` : ''}${s.source.state === 'reconnecting' ? ', reconnecting' : ''}`;
  });
  return `${parts.join(' | ')} | mqtt ${publisher.stats.connected ? 'up' : 'down'}, sent ${publisher.stats.published}, dropped ${publisher.stats.dropped}, outbox ${publisher.outboxDepth}`;
}

/**
 * Runs a pipeline until every camera ends (finite files, or --max-frames) or the signal aborts.
 * With no MQTT URL it starts the embedded broker first.
 */
export async function runPipeline(loaded: LoadedPipeline, options: RunOptions = {}): Promise<RunSummary> {
  const config = loaded.config;
  const mqttConfig = config.mqtt ?? mqttSchema.parse({});
  const url = options.brokerUrl ?? mqttConfig.url;
  let broker: EmbeddedBroker | undefined;
  let publisher: MqttPublisher | undefined;
  let monitoring: Monitoring | undefined;
  let commands: CommandRouter | undefined;
  // First: a state_dir that cannot be made is a config error, before anything slow starts.
  await ensurePrivateDir(config.state_dir).catch((err: unknown) => {
    throw err instanceof StateError ? new ConfigError(loaded.file, [{ path: 'state_dir', message: err.message }]) : err;
  });
  const detectors = await loadDetectors(loaded);
  const adapters = new Map<string, SiteAdapter>();
  try {
    for (const camera of config.cameras) {
      const detector = detectors.get(camera.name)!;
      if (camera.adapt.enabled && camera.adapt.layers === 'all') {
        const teacher = await loadTeacher(loaded, camera, detector);
        adapters.set(camera.name, await WholeModelAdapter.start({ camera, detector, stateDir: config.state_dir, runtime: providerSettings(config), teacher, ringFrames: config.feedback.ring_frames }));
      } else if (camera.adapt.enabled && detector.heads) {
        const teacher = await loadTeacher(loaded, camera, detector);
        adapters.set(camera.name, await CameraAdapter.start({ camera, detector, stateDir: config.state_dir, ringFrames: config.feedback.ring_frames, teacher }));
      }
    }
    if (!url) {
      const embedded = config.mqtt?.embedded ?? { host: '127.0.0.1', port: 1883 };
      const users = feedbackPublishers(config.mqtt, true);
      const feedbackUsers = users ? { prefix: mqttConfig.prefix, users } : undefined;
      broker = await startEmbeddedBroker({ ...embedded, fallbackToFreePort: true, feedbackUsers });
      log.info(`embedded MQTT broker listening on ${broker.url} (try: mosquitto_sub -h ${broker.host} -p ${broker.port} -t '${mqttConfig.prefix}/#' -v)`);
    }
    const brokerUrl = url ?? broker!.url;
    // The embedded broker's own credentials when it has them; mqtt.username/password for an external one.
    const credentials = broker ? config.mqtt?.embedded : config.mqtt;
    const tls = url && config.mqtt?.tls ? await readTlsFiles(config.mqtt.tls, loaded.file) : undefined;
    const outbox = await Outbox.open({ dir: path.join(config.state_dir, 'outbox'), maxMessages: mqttConfig.outbox_max_messages });
    publisher = new MqttPublisher({
      outbox,
      url: brokerUrl,
      prefix: mqttConfig.prefix,
      qos: mqttConfig.qos,
      username: credentials?.username,
      password: credentials?.password,
      clientId: config.mqtt?.client_id,
      tls,
    });
    await publisher.waitConnected(5000).catch((err: unknown) => log.warn(`${errorMessage(err)}; running anyway, detections are dropped until it connects`));

    const cameras: Record<string, CameraStats> = {};
    for (const camera of config.cameras) {
      cameras[camera.name] = newCameraStats();
      const d = detectors.get(camera.name)!;
      const where = d.backendKind === 'worker' ? `, in a worker thread${d.maxBatch > 1 ? `, batches of up to ${d.maxBatch}` : ''}` : d.backendKind === 'adaptable' ? ', in process (adapting)' : '';
      log.info(`camera ${camera.name}: model ${d.card.name} ${d.card.version} (${d.inputWidth}x${d.inputHeight}) on ${d.provider}${where}`);
    }

    // Feedback intake (MQTT verdicts), and the HTTP server when configured: fed by the hooks below.
    const watch = await startMonitoring({
      config,
      publisher,
      cameras: config.cameras.map((camera) => ({ camera, model: detectors.get(camera.name)!.card, stats: cameras[camera.name]! })),
      adaptation: () => new Map([...adapters].map(([name, adapter]) => [name, adapter.statusMessage()])),
      modelHistory: adaptiveModelHistory(adapters, baseModelHistory(new Map(config.cameras.map((c) => [c.name, { name: detectors.get(c.name)!.card.name, version: detectors.get(c.name)!.card.version }])))),
    });
    monitoring = watch;
    // MQTT commands (verdicts, rollback, adapt/set) to the intake and the adapters; their status out.
    commands = routeCommands({
      publisher,
      prefix: mqttConfig.prefix,
      cameras: config.cameras.map((c) => c.name),
      intake: watch.intake,
      mqttOperators: feedbackPublishers(config.mqtt, !url) !== undefined,
      adapters,
    });
    const hooks: RunOptions = {
      ...options,
      onResult: (result) => {
        watch.onResult(result);
        options.onResult?.(result);
      },
      onEvent: (message) => {
        watch.onEvent(message);
        options.onEvent?.(message);
      },
    };
    const trainingMemory = async () => new Map(await Promise.all([...adapters].map(async ([name, a]) => [name, await a.trainingMemory()] as const)));
    options.onStarted?.({ brokerUrl, httpUrl: watch.httpUrl, feedback: watch.intake, trainingMemory });

    const stop$ = new Subject<void>();
    const onAbort = () => stop$.next();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const activePublisher = publisher;
    const snapshotStore = new SnapshotStore({ dir: path.join(config.state_dir, 'snapshots'), maxTotalBytes: config.snapshots.max_total_mb * 1024 * 1024, maxEvents: config.snapshots.max_events });
    const chains = config.cameras.map((camera) => {
      const detector = detectors.get(camera.name)!;
      const events = new EventPublisher({
        publisher: activePublisher,
        prefix: mqttConfig.prefix,
        camera: camera.name,
        modelName: detector.card.name,
        snapshots: camera.events.snapshots ? { store: snapshotStore, quality: config.snapshots.quality } : undefined,
        homeAssistant: mqttConfig.home_assistant.enabled ? { discoveryPrefix: mqttConfig.home_assistant.discovery_prefix } : undefined,
      });
      return cameraChain({ camera, detector, publisher: activePublisher, events, stats: cameras[camera.name]!, adapter: adapters.get(camera.name) }, stop$, hooks).pipe(finalize(() => watch.cameraEnded(camera.name)));
    });
    const all$ = merge(...chains);

    const previous = new Map<string, { in: number; out: number }>();
    const statusSubscription =
      config.status_interval_s > 0
        ? interval(config.status_interval_s * 1000).subscribe(() => log.info(statusLine(cameras, previous, config.status_interval_s, activePublisher)))
        : undefined;

    try {
      await new Promise<void>((resolve, reject) => {
        if (options.signal?.aborted) return resolve();
        all$.subscribe({ next: (result) => hooks.onResult?.(result), error: reject, complete: resolve });
      });
    } finally {
      statusSubscription?.unsubscribe();
      options.signal?.removeEventListener('abort', onAbort);
    }
    // Give the events of the last frames a moment to reach the broker; what does not stays on disk.
    await publisher.drainOutbox(3000);
    return { brokerUrl, cameras, mqtt: { published: publisher.stats.published, dropped: publisher.stats.dropped, durableSent: publisher.stats.durableSent, outboxDepth: publisher.outboxDepth }, inference: inferenceSummary(detectors) };
  } finally {
    await Promise.all([...adapters.values()].map((a) => a.close()));
    commands?.close();
    await monitoring?.close();
    await publisher?.close();
    await broker?.close();
    await Promise.all([...new Set(detectors.values())].map((d) => d.close()));
  }
}
