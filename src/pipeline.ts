import { EMPTY, Subject, catchError, concatMap, finalize, from, interval, map, merge, take, takeUntil, tap, type Observable } from 'rxjs';
import { ConfigError, errorMessage } from './errors.js';
import type { LoadedPipeline } from './config/load.js';
import { mqttSchema, type CameraConfig, type PipelineConfig } from './config/schema.js';
import { logger } from './log.js';
import { Detector, type Detection } from './model/detector.js';
import type { ProviderSettings } from './model/providers.js';
import { startEmbeddedBroker, type EmbeddedBroker } from './publish/broker.js';
import { MqttPublisher, detectionsMessage } from './publish/mqtt.js';
import { newSourceStats, readFrames, type Frame, type SourceStats } from './source/frames.js';

/** What one camera did in this run; read by the status line and returned at the end. */
export interface CameraStats {
  source: SourceStats;
  processed: number;
  detections: number;
  /** Mean inference time (preprocess + onnxruntime + decode) of the last frames, ms. */
  inferenceMs: number;
}

export interface FrameResult {
  camera: string;
  frame: Frame;
  detections: Detection[];
}

export interface RunOptions {
  /** Stop each camera after this many processed frames. */
  maxFrames?: number;
  /** Overrides `mqtt.url` of the pipeline file. */
  brokerUrl?: string;
  /** Stops the run cleanly (Ctrl-C). */
  signal?: AbortSignal;
  /** Every processed frame, for tests and tools. */
  onResult?: (result: FrameResult) => void;
}

export interface RunSummary {
  brokerUrl: string;
  cameras: Record<string, CameraStats>;
  mqtt: { published: number; dropped: number };
}

const log = logger('pipeline');

function providerSettings(config: PipelineConfig): ProviderSettings {
  return { providers: config.runtime.providers, tensorrt: { fp16: config.runtime.tensorrt.fp16, engineCache: config.runtime.tensorrt.engine_cache }, threads: config.runtime.threads };
}

/** Loads each camera's detector once per (model, input size); a bad label is a config error. */
async function loadDetectors(loaded: LoadedPipeline): Promise<Map<string, Detector>> {
  const byKey = new Map<string, Promise<Detector>>();
  const perCamera = new Map<string, Detector>();
  for (const [i, camera] of loaded.config.cameras.entries()) {
    const key = `${camera.model}@${camera.detect.input_size ?? ''}`;
    if (!byKey.has(key)) byKey.set(key, Detector.load(camera.model, { runtime: providerSettings(loaded.config), inputSize: camera.detect.input_size }));
    const detector = await byKey.get(key)!;
    const unknown = (camera.detect.labels ?? []).filter((l) => !detector.card.classes.includes(l));
    if (unknown.length > 0) {
      throw new ConfigError(loaded.file, [{ path: `cameras[${i}].detect.labels`, message: `model ${detector.card.name} has no class ${unknown.map((u) => `"${u}"`).join(', ')}` }]);
    }
    perCamera.set(camera.name, detector);
  }
  return perCamera;
}

/**
 * One camera's chain: frames on demand → detect → publish → ask for the next frame. The source emits
 * a frame only when `processed$` says the previous one is done, so at most one frame is in flight and
 * the source's bounded mailbox is the only place frames wait (see readFrames).
 */
function cameraChain(camera: CameraConfig, detector: Detector, publisher: MqttPublisher, stats: CameraStats, options: RunOptions): Observable<FrameResult> {
  const processed$ = new Subject<void>();
  const allowed = camera.detect.labels ? detector.classIds(camera.detect.labels) : undefined;
  const detectOptions = { threshold: camera.detect.threshold, nmsIou: camera.detect.nms_iou, maxDetections: camera.detect.max_detections };
  const model = { name: detector.card.name, version: detector.card.version };
  const source = camera.source;

  return readFrames(
    {
      camera: camera.name,
      url: source.url,
      output: detector.frameOutput(),
      fps: source.fps,
      loop: source.loop,
      realtime: source.realtime,
      stallTimeoutS: source.stall_timeout_s,
      reconnect: { initialS: source.reconnect.initial_s, maxS: source.reconnect.max_s },
      stats: stats.source,
    },
    processed$,
  ).pipe(
    options.maxFrames ? take(options.maxFrames) : tap(),
    concatMap((frame) => {
      const started = performance.now();
      return from(detector.detect(frame, detectOptions, allowed)).pipe(
        map((detections) => {
          stats.inferenceMs = stats.processed === 0 ? performance.now() - started : stats.inferenceMs * 0.9 + (performance.now() - started) * 0.1;
          return { camera: camera.name, frame, detections };
        }),
        // A frame that fails to process is logged and skipped; the camera goes on.
        catchError((err: unknown) => {
          log.error(`camera ${camera.name}: frame ${frame.index} failed: ${errorMessage(err)}`);
          return EMPTY;
        }),
        finalize(() => processed$.next()),
      );
    }),
    tap((result) => {
      stats.processed++;
      stats.detections += result.detections.length;
      if (result.detections.length > 0) publisher.publishDetections(detectionsMessage(camera.name, result.frame, model, result.detections));
    }),
  );
}

function statusLine(cameras: Record<string, CameraStats>, previous: Map<string, { in: number; out: number }>, seconds: number, publisher: MqttPublisher): string {
  const parts = Object.entries(cameras).map(([name, s]) => {
    const before = previous.get(name) ?? { in: 0, out: 0 };
    previous.set(name, { in: s.source.framesIn, out: s.processed });
    const fpsIn = (s.source.framesIn - before.in) / seconds;
    const fpsOut = (s.processed - before.out) / seconds;
    return `${name}: in ${fpsIn.toFixed(1)} fps, out ${fpsOut.toFixed(1)} fps, dropped ${s.source.dropped}, inference ${s.inferenceMs.toFixed(1)} ms${s.source.state === 'reconnecting' ? ', reconnecting' : ''}`;
  });
  return `${parts.join(' | ')} | mqtt ${publisher.stats.connected ? 'up' : 'down'}, sent ${publisher.stats.published}, dropped ${publisher.stats.dropped}`;
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
  const detectors = await loadDetectors(loaded);
  try {
    if (!url) {
      const embedded = config.mqtt?.embedded ?? { host: '127.0.0.1', port: 1883 };
      broker = await startEmbeddedBroker({ ...embedded, fallbackToFreePort: true });
      log.info(`embedded MQTT broker listening on ${broker.url} (try: mosquitto_sub -h ${broker.host} -p ${broker.port} -t '${mqttConfig.prefix}/#' -v)`);
    }
    const brokerUrl = url ?? broker!.url;
    publisher = new MqttPublisher({
      url: brokerUrl,
      prefix: mqttConfig.prefix,
      qos: mqttConfig.qos,
      username: config.mqtt?.username,
      password: config.mqtt?.password,
      clientId: config.mqtt?.client_id,
    });
    await publisher.waitConnected(5000).catch((err: unknown) => log.warn(`${errorMessage(err)}; running anyway, detections are dropped until it connects`));

    const cameras: Record<string, CameraStats> = {};
    for (const camera of config.cameras) {
      cameras[camera.name] = { source: newSourceStats(), processed: 0, detections: 0, inferenceMs: 0 };
      const d = detectors.get(camera.name)!;
      log.info(`camera ${camera.name}: model ${d.card.name} ${d.card.version} (${d.inputWidth}x${d.inputHeight}) on ${d.provider}`);
    }

    const stop$ = new Subject<void>();
    const onAbort = () => stop$.next();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const activePublisher = publisher;
    const all$ = merge(...config.cameras.map((camera) => cameraChain(camera, detectors.get(camera.name)!, activePublisher, cameras[camera.name]!, options))).pipe(takeUntil(stop$));

    const previous = new Map<string, { in: number; out: number }>();
    const statusSubscription =
      config.status_interval_s > 0
        ? interval(config.status_interval_s * 1000).subscribe(() => log.info(statusLine(cameras, previous, config.status_interval_s, activePublisher)))
        : undefined;

    try {
      await new Promise<void>((resolve, reject) => {
        if (options.signal?.aborted) return resolve();
        all$.subscribe({ next: (result) => options.onResult?.(result), error: reject, complete: resolve });
      });
    } finally {
      statusSubscription?.unsubscribe();
      options.signal?.removeEventListener('abort', onAbort);
    }
    return { brokerUrl, cameras, mqtt: { published: publisher.stats.published, dropped: publisher.stats.dropped } };
  } finally {
    await publisher?.close();
    await broker?.close();
    await Promise.all([...new Set(detectors.values())].map((d) => d.close()));
  }
}
