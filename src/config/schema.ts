import { z } from 'zod';

/**
 * The pipeline file's schema. Every object is strict: an unknown key is an error (a typo such as
 * `treshold` must not silently fall back to a default). Keys are snake_case as users write them.
 */

const cameraName = z
  .string()
  .regex(/^[a-z0-9_-]+$/, 'must match [a-z0-9_-]+ (it is used in MQTT topics)');

/**
 * Node's timers wait at most 2^31 - 1 ms (about 24.8 days); a longer delay fires after 1 ms. Every
 * duration of the file is bounded by it, timer or not, so that none can become one unnoticed.
 */
export const MAX_DURATION_S = Math.floor((2 ** 31 - 1) / 1000);

/** A duration in seconds, at most MAX_DURATION_S. */
const seconds = () => z.number().max(MAX_DURATION_S, `must be at most ${MAX_DURATION_S.toLocaleString('en-US')} s (about 24 days: Node's timers wait no longer)`);

const reconnectSchema = z
  .strictObject({
    initial_s: seconds().positive().default(1),
    max_s: seconds().positive().default(30),
  })
  .refine((r) => r.max_s >= r.initial_s, { message: 'max_s must be at least initial_s' });

/** Schemes ffmpeg opens for a camera; any other `scheme:` is refused, not read as a file name. */
const SOURCE_SCHEMES = ['rtsp', 'rtsps', 'http', 'https'];
/** Sources that look like a scheme but are not URLs. */
const SOURCE_PREFIXES = ['testsrc', 'synthetic'];
const SUPPORTED_SOURCES = `${SOURCE_SCHEMES.map((s) => `${s}://`).join(', ')}, ${SOURCE_PREFIXES.map((p) => `${p}:`).join(', ')}, /dev/videoN or a file path`;

/** A URL's scheme is one ffmpeg is given, and the URL names a host. */
function checkSourceUrl(url: string, ctx: z.core.$RefinementCtx<string>): void {
  // Two letters at least: `C:\clips\a.mp4` is a path.
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined || SOURCE_PREFIXES.includes(scheme)) return;
  if (!SOURCE_SCHEMES.includes(scheme)) {
    ctx.addIssue({ code: 'custom', message: `${scheme}: is not a supported source (supported: ${SUPPORTED_SOURCES})` });
    return;
  }
  // The authority: after `//`, up to the path; the host is what follows its last `@`, less the port.
  const authority = /^[a-z0-9+.-]+:\/\/([^/?#]*)/i.exec(url)?.[1] ?? '';
  const host = authority.slice(authority.lastIndexOf('@') + 1).replace(/:\d*$/, '');
  if (host === '') {
    ctx.addIssue({ code: 'custom', message: `names no host (expected e.g. ${scheme}://user:password@192.168.1.10${scheme.startsWith('rtsp') ? ':554' : ''}/stream)` });
    return;
  }
  if (!URL.canParse(url)) ctx.addIssue({ code: 'custom', message: `is not a valid ${scheme}:// URL` });
}

export const sourceSchema = z.strictObject({
  /** file path, rtsp://, http(s)://, /dev/videoN, testsrc:[lavfi options] */
  url: z.string().min(1, 'must not be empty').superRefine(checkSourceUrl),
  /** Cap on frames per second taken from the source (ffmpeg's fps filter). */
  fps: z.number().positive().max(240).optional(),
  /** Files only: start again at the end. */
  loop: z.boolean().default(false),
  /**
   * Pace a file at its own frame rate, like a live camera (frames may then be dropped when the
   * detector is slower). Default: false for files (every frame processed), true for live sources.
   */
  realtime: z.boolean().optional(),
  /**
   * Frames that may wait for the detector. Live and paced sources: beyond it the oldest waiting frame
   * is dropped (default 2: a frame that arrives while the detector is briefly held up waits rather
   * than replacing its predecessor). Files: ffmpeg is paused while it is full (default 4).
   */
  queue_frames: z.number().int().min(1).max(16).optional(),
  /** Live sources: no frame for this long means the source stalled; ffmpeg is restarted. */
  stall_timeout_s: seconds().positive().default(10),
  /** Live sources: restart delays, doubling from initial_s up to max_s. */
  reconnect: reconnectSchema.default({ initial_s: 1, max_s: 30 }),
});

export const detectSchema = z.strictObject({
  threshold: z.number().min(0).max(1).default(0.35),
  /** IoU above which two boxes of the same class are one object. */
  nms_iou: z.number().min(0).max(1).default(0.45),
  /** Keep only these class names (as the model card spells them). */
  labels: z.array(z.string().min(1)).min(1).optional(),
  /** Override the model card's input size (square), e.g. 320 or 640 for YOLOX. */
  input_size: z.number().int().min(32).max(4096).multipleOf(32, 'must be a multiple of 32').optional(),
  max_detections: z.number().int().positive().default(100),
});

const point = z.tuple([z.number().min(0), z.number().min(0)]);

/** Names that are topic levels of their own under `<prefix>/<camera>/`. */
const reservedZoneNames = new Set(['detections', 'snapshot', 'events', 'feedback', 'model', 'adapt']);

const polygon = z
  .array(point)
  .min(3, 'a zone needs at least 3 points')
  .refine((pts) => Math.abs(signedArea(pts)) > 0, 'the points enclose no area');

export const zoneSchema = z.union([
  polygon,
  z.strictObject({
    /** [x, y] in source pixels, or all in 0..1 as fractions of the frame. */
    points: polygon,
    /** Only these labels count in this zone. */
    labels: z.array(z.string().min(1)).min(1).optional(),
    /** Frames an object must be inside before it counts as entered (and outside before it left). */
    inertia: z.number().int().min(1).default(3),
  }),
]);

export function signedArea(pts: ReadonlyArray<readonly [number, number]>): number {
  let sum = 0;
  for (let i = 0; i < pts.length; i++) {
    const [x1, y1] = pts[i]!;
    const [x2, y2] = pts[(i + 1) % pts.length]!;
    sum += x1 * y2 - x2 * y1;
  }
  return sum / 2;
}

export const eventsSchema = z.strictObject({
  /** A track becomes an event after this many frames with a score above detect.threshold. */
  min_frames: z.number().int().min(1).default(3),
  /** An object gone for this long (stream seconds) ends its event. */
  end_after_s: seconds().positive().default(2),
  /** At most one `update` per event in this many seconds. */
  update_interval_s: seconds().min(0).default(1),
  /** Score of the second-stage (low-score) association of the tracker. */
  low_threshold: z.number().min(0).max(1).default(0.1),
  snapshots: z.boolean().default(true),
});

/** Where a teacher's box is a positive (teacherSchema.positives). */
export const teacherPositivesSchema = z.enum(['centre', 'assigned', 'none']);

export const teacherSchema = z
  .strictObject({
    /** A pulled model's name, or a path to a model card (.json) or an .onnx beside its card. */
    model: z.string().min(1),
    /** Square input size of the teacher (resizable cards only), e.g. 640 for a YOLOX teacher of a 320 student. */
    input_size: z.number().int().positive().optional(),
    /** The teacher's boxes at or above this score are targets. */
    threshold: z.number().gt(0).lt(1).default(0.5),
    /**
     * Where a teacher's box is a positive (y = 1 for its class; y = 0 everywhere outside the boxes
     * in every case): `centre`, the cell holding its centre (the default); `assigned`, every cell
     * the Beats CNN's training assigns to it (its centre and the cells within 1.5 cells of it);
     * `none`, nowhere (negatives only). The cells left out are no targets. `centre` because lifting
     * nine cells of a box lifts their look-alikes too, and `none` costs YOLOX-Nano recall
     * (figures: docs/adaptation.md, "Measuring it").
     */
    positives: teacherPositivesSchema.default('centre'),
    /**
     * onnxruntime intra-op threads of the teacher (0: onnxruntime's choice). One by default: a
     * keyframe may take a while, and the other cores stay with the student's frame path.
     */
    threads: z.number().int().min(0).default(1),
    /**
     * Which model's detections the camera publishes (`layers: all` only): `student`, the camera's
     * model (the teacher only labels keyframes); `teacher`, the teacher on every frame while the
     * student trains; `auto`, the teacher until the student's held-out F1 against it reaches
     * `takeover_f1`, then the student, and the teacher again while it falls under `handback_f1`.
     */
    serve: z.enum(['student', 'teacher', 'auto']).default('student'),
    takeover_f1: z.number().gt(0).max(1).default(0.8),
    handback_f1: z.number().min(0).max(1).default(0.6),
    /** A keyframe every N frames... */
    every_n_frames: z.number().int().min(1).optional(),
    /** ...or an adaptive stride (JITNet): halved while the student disagrees with the teacher or buckets fire, doubled while quiet. */
    adaptive: z
      .strictObject({
        min_frames: z.number().int().min(1).default(5),
        max_frames: z.number().int().min(1).default(80),
        /** Student/teacher F1 under this counts as disagreement. */
        agreement: z.number().gt(0).max(1).default(0.8),
      })
      .refine((a) => a.max_frames >= a.min_frames, { message: 'max_frames must be at least min_frames', path: ['max_frames'] })
      .optional(),
  })
  .superRefine((t, ctx) => {
    if (t.every_n_frames !== undefined && t.adaptive !== undefined) ctx.addIssue({ code: 'custom', path: ['adaptive'], message: 'give every_n_frames or adaptive, not both' });
    if (t.handback_f1 > t.takeover_f1) ctx.addIssue({ code: 'custom', path: ['handback_f1'], message: `must be at most takeover_f1 (${t.takeover_f1})` });
    if (t.every_n_frames === undefined && t.adaptive === undefined) ctx.addIssue({ code: 'custom', path: ['every_n_frames'], message: 'give every_n_frames (a keyframe every N frames) or adaptive: {min_frames, max_frames}' });
  });

export type TeacherConfig = z.infer<typeof teacherSchema>;

/**
 * On-device adaptation of the model's Beats head (BEATS.md; src/adapt/engine.ts says why each
 * default is what it is). Off unless enabled.
 */
export const adaptSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /**
   * What adapts: `head`, the class head (any model with a card `head`); `all`, every layer of the
   * Beats CNN, trained in a worker from teacher keyframes and swapped in whole (BEATS.md, "The
   * whole model"; docs/adaptation.md). `all` needs a teacher and the model's training checkpoint.
   */
  layers: z.enum(['head', 'all']).default('head'),
  /** `layers: all`: the training worker's steps, its replay reservoir of model-input frames, and the guard's held-out frames. */
  whole: z
    .strictObject({
      /** Adam's learning rate at its largest (halved when the shadow is taken back, doubled back on each accepted update). */
      lr: z.number().positive().max(0.1).default(0.0005),
      batch: z.number().int().min(1).max(64).default(8),
      steps_per_update: z.number().int().min(1).max(100).default(4),
      reservoir_frames: z.number().int().min(1).max(100_000).default(400),
      reservoir_mb: z.number().positive().max(4096).default(64),
      /** The newest held-out keyframes the guard scores updates on (one keyframe in five is held out). */
      holdout_frames: z.number().int().min(2).max(1000).default(64),
      /** Recent model-input frames kept for operator verdicts to label (their pixels; at most feedback.ring_frames). */
      verdict_frames: z.number().int().min(1).max(10_000).default(100),
      /**
       * The score an adapted weight set's detections are published and tracked from: `held_out`, the
       * threshold of its best F1 on the held-out keyframes (never under events.low_threshold);
       * `camera`, detect.threshold. The base model and a serving teacher use detect.threshold either
       * way, and the guard judges updates at detect.threshold in both (docs/adaptation.md says why).
       */
      threshold: z.enum(['held_out', 'camera']).default('held_out'),
    })
    .default({ lr: 0.0005, batch: 8, steps_per_update: 4, reservoir_frames: 400, reservoir_mb: 64, holdout_frames: 64, verdict_frames: 100, threshold: 'held_out' }),
  /** The frame is divided into grid x grid regions; a bucket is a (region, class) pair. */
  grid: z.number().int().min(1).max(16).default(4),
  /** A bucket fires when at least n_min supervised cells went into its gradient... */
  n_min: z.number().int().min(1).default(8),
  /** ...and its miss or false-alarm error energy (decayed sum of squared errors) reached theta. */
  theta: z.number().positive().default(2),
  /** Error energies are multiplied by this per supervised frame. */
  decay: z.number().gt(0).max(1).default(0.99),
  /** At most one update per this many stream seconds. */
  min_interval_s: seconds().min(0).default(2),
  /** Most of the recent (wall) time that training may take. */
  max_train_share: z.number().gt(0).max(1).default(0.2),
  /** Step size, in units of the features' mean squared norm (normalised SGD): 1 moves a cell's logit by about its error. */
  lr: z.number().positive().default(1),
  /** Momentum of SGD, carried from one update of a class row to the next. */
  momentum: z.number().min(0).lt(1).default(0.5),
  /** Pull toward the base head; each update takes back lr * l2_to_base of the drift. */
  l2_to_base: z.number().min(0).default(0.01),
  /** The replay loss (mean binary cross-entropy, nats) may rise by at most this for an update to be accepted. */
  epsilon: z.number().min(0).default(0.01),
  /** Recent supervised cells kept out of training to judge updates. */
  holdout: z
    .strictObject({
      /** Share of supervised cells held out (chosen at random, per cell). */
      share: z.number().gt(0).lt(1).default(0.2),
      /** The most recent max_cells held-out cells are kept. */
      max_cells: z.number().int().min(1).max(100_000).default(512),
      /** An update of a class waits until the holdout has at least this many cells of it. */
      min_cells: z.number().int().min(1).default(4),
    })
    .default({ share: 0.2, max_cells: 512, min_cells: 4 }),
  /** Replay reservoir: cells (features and targets) sampled from the whole stream so far, half positives and half negatives; 0 turns the replay check off. */
  replay: z.number().int().min(0).max(1_000_000).default(2000),
  /** Head versions kept on disk per camera; older ones are deleted. */
  keep_versions: z.number().int().min(1).default(100),
  /**
   * Confirmed tracks label their own misses: frames where a track that was matched at least
   * min_hits times, once above detect.threshold, is matched only by a low-score box give a positive.
   * Off by default: it is self-training, and a confidently wrong track (a mannequin) teaches its
   * error past the guard (docs/adaptation.md, "Self-training from tracks").
   */
  track_misses: z
    .strictObject({
      enabled: z.boolean().default(false),
      min_hits: z.number().int().min(1).default(5),
    })
    .default({ enabled: false, min_hits: 5 }),
  /** A stronger model on keyframes, whose boxes are targets for the whole keyframe (src/adapt/teacher.ts). */
  teacher: teacherSchema.optional(),
});

export const cameraSchema = z
  .strictObject({
    name: cameraName,
    source: sourceSchema,
    /** A pulled model's name, or a path to a model card (.json) or an .onnx beside its card. */
    model: z.string().min(1),
    detect: detectSchema.default(detectSchema.parse({})),
    zones: z
      .record(
        z.string().regex(/^[a-z0-9_-]+$/, 'zone names must match [a-z0-9_-]+ (they are used in MQTT topics)').refine((n) => !reservedZoneNames.has(n), 'this name is a topic of its own; choose another'),
        zoneSchema,
      )
      .default({}),
    events: eventsSchema.default(eventsSchema.parse({})),
    adapt: adaptSchema.default(adaptSchema.parse({})),
  })
  .superRefine((camera, ctx) => {
    if (camera.events.low_threshold > camera.detect.threshold) {
      ctx.addIssue({ code: 'custom', path: ['events', 'low_threshold'], message: `must not exceed detect.threshold (${camera.detect.threshold})` });
    }
  });

export const mqttSchema = z
  .strictObject({
    /** External broker. Omitted: an embedded broker (aedes) is started in process. */
    url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\/[^\s]+$/, 'must be an MQTT URL such as mqtt://host:1883').optional(),
    prefix: z
      .string()
      .regex(/^[^#+\s]+$/, 'must not contain MQTT wildcards (#, +) or spaces')
      .refine((p) => !p.startsWith('/') && !p.endsWith('/'), 'must not start or end with /')
      .default('beats'),
    qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0),
    /** QoS 1 events wait on disk while the broker is away; past this many, the oldest is dropped. */
    outbox_max_messages: z.number().int().positive().default(10_000),
    /** Home Assistant MQTT discovery: the counts appear as sensors. */
    home_assistant: z
      .strictObject({ enabled: z.boolean().default(false), discovery_prefix: z.string().regex(/^[^#+\s]+$/).default('homeassistant') })
      .default({ enabled: false, discovery_prefix: 'homeassistant' }),
    username: z.string().optional(),
    password: z.string().optional(),
    client_id: z.string().min(1).optional(),
    /**
     * Only these MQTT users may publish verdicts on `<prefix>/<camera>/feedback`: enforced by the
     * embedded broker; an external broker needs the matching ACL (README, "Feedback").
     */
    feedback_users: z.array(z.string().min(1)).min(1).optional(),
    /**
     * Where the embedded broker listens (only without url). Loopback by default; any other host
     * needs username and password, which every client (the pipeline's own too) must then give.
     */
    embedded: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(1883),
        username: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
      })
      .superRefine((e, ctx) => {
        if (isLoopbackHost(e.host)) return;
        for (const key of ['username', 'password'] as const) {
          if (!e[key]) ctx.addIssue({ code: 'custom', path: [key], message: `is required when the embedded broker listens on ${e.host}, not loopback (anyone who reaches it could publish and subscribe)` });
        }
      })
      .optional(),
    /** TLS for an mqtts:// or wss:// broker: PEM files, relative to the pipeline file, read at connect. */
    tls: z
      .strictObject({
        /** The CA that signed the broker's certificate; omitted: the system's CAs. */
        ca: z.string().min(1).optional(),
        /** Client certificate and key, for brokers that require them. */
        cert: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
        /** Check the broker's certificate against ca (default true). */
        reject_unauthorized: z.boolean().default(true),
      })
      .superRefine((t, ctx) => {
        if (t.cert && !t.key) ctx.addIssue({ code: 'custom', path: ['key'], message: 'is required with cert' });
        if (t.key && !t.cert) ctx.addIssue({ code: 'custom', path: ['cert'], message: 'is required with key' });
      })
      .optional(),
  })
  .refine((m) => !(m.url && m.embedded), { message: 'give either url (external broker) or embedded, not both' })
  .superRefine((m, ctx) => {
    if (m.tls && !/^(mqtts|wss|ssl):/.test(m.url ?? '')) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: m.url ? `needs an mqtts:// or wss:// url (url is ${m.url.split('://')[0]}://)` : 'is for an external broker (mqtts:// or wss:// url); the embedded broker speaks plain MQTT' });
    }
  });

/** 127.0.0.0/8, ::1 and localhost: only this machine reaches a broker bound there. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The HTTP server: live pages, /metrics, /healthz, verdict buttons. Off unless given. */
export const httpSchema = z
  .strictObject({
    port: z.number().int().min(0).max(65535).default(8080),
    host: z.string().min(1).default('127.0.0.1'),
    /** Bearer token for anything that changes state (verdicts). Required off loopback. */
    token: z.string().min(16, 'must be at least 16 characters (it guards the verdicts)').optional(),
    /** Most frames per second a live page gets (rendered only while someone watches). */
    live_fps: z.number().positive().max(30).default(5),
    /**
     * Host names the pages are reached by besides loopback, http.host, the machine's name and IP
     * addresses (a reverse proxy's, a DNS name of the board): any other Host header is refused.
     */
    allowed_hosts: z.array(z.string().regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i, 'must be a host name (letters, digits, dots, hyphens)')).optional(),
  })
  .superRefine((h, ctx) => {
    if (h.token === undefined && !isLoopbackHost(h.host)) {
      ctx.addIssue({ code: 'custom', path: ['token'], message: `is required when http.host is ${h.host}, not loopback (anyone who reaches it could send verdicts)` });
    }
  });

/** Operator verdicts (MQTT `<prefix>/<camera>/feedback` and the live page). */
export const feedbackSchema = z.strictObject({
  /** Frames per camera whose detections are kept so that a late verdict can still be resolved. */
  ring_frames: z.number().int().min(1).max(100_000).default(300),
  /** Token bucket per camera: verdicts per second, and how many at once; past it they are rejected. */
  rate_per_s: z.number().positive().default(5),
  burst: z.number().int().min(1).default(20),
  /**
   * Who may send `missed` verdicts, which name no detection and so are only as good as their sender:
   * `operators` (an mqtt.feedback_users user, or the live page with http.token), or `anyone`.
   */
  missed_from: z.enum(['operators', 'anyone']).default('operators'),
});

export const runtimeSchema = z.strictObject({
  /** onnxruntime execution providers, tried in this order. */
  providers: z.array(z.enum(['tensorrt', 'cuda', 'cpu'])).min(1).default(['tensorrt', 'cuda', 'cpu']),
  tensorrt: z
    .strictObject({
      fp16: z.boolean().default(true),
      /** TensorRT engines are slow to build; they are cached here (relative to the pipeline file). */
      engine_cache: z.string().default('.beats/trt-cache'),
    })
    .default({ fp16: true, engine_cache: '.beats/trt-cache' }),
  /** onnxruntime intra-op threads; 0 lets onnxruntime choose. */
  threads: z.number().int().min(0).default(0),
  /**
   * Where detectors run: 'worker' (a worker thread per model and input size, shared by its
   * cameras, off the event loop) or 'in-process' (on the event loop). Adapting cameras run
   * in-process either way (docs/benchmarks.md, "Many cameras").
   */
  inference: z.enum(['worker', 'in-process']).default('worker'),
  /** Frames of cameras sharing a model that go through one run at most (1: no batching). */
  max_batch: z.number().int().min(1).max(64).default(4),
  /** How long the oldest waiting frame waits at most for the other cameras' frames to fill a batch, ms. */
  batch_timeout_ms: z.number().min(0).max(1000).default(5),
});

export const pipelineSchema = z
  .strictObject({
    mqtt: mqttSchema.optional(),
    runtime: runtimeSchema.default(runtimeSchema.parse({})),
    /** Where the outbox and snapshots live (relative to the pipeline file). */
    state_dir: z.string().default('.beats'),
    snapshots: z
      .strictObject({
        /** Oldest snapshots are deleted past this total size... */
        max_total_mb: z.number().positive().default(100),
        /** ...or past this many events (which bounds the store's index in memory). */
        max_events: z.number().int().min(1).max(1_000_000).default(10_000),
        quality: z.number().int().min(1).max(100).default(80),
      })
      .default({ max_total_mb: 100, max_events: 10_000, quality: 80 }),
    /** Seconds between status lines on stderr; 0 turns them off. */
    status_interval_s: seconds().min(0).default(5),
    http: httpSchema.optional(),
    feedback: feedbackSchema.default(feedbackSchema.parse({})),
    cameras: z.array(cameraSchema).min(1, 'at least one camera is needed'),
  })
  .superRefine((p, ctx) => {
    const seen = new Map<string, number>();
    p.cameras.forEach((c, i) => {
      const first = seen.get(c.name);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['cameras', i, 'name'], message: `duplicate camera name "${c.name}" (also cameras[${first}])` });
      } else seen.set(c.name, i);
    });
  });

export type PipelineConfig = z.infer<typeof pipelineSchema>;
export type CameraConfig = z.infer<typeof cameraSchema>;
export type SourceConfig = z.infer<typeof sourceSchema>;
export type DetectConfig = z.infer<typeof detectSchema>;
export type MqttConfig = z.infer<typeof mqttSchema>;
export type RuntimeConfig = z.infer<typeof runtimeSchema>;
export type ZoneConfig = z.infer<typeof zoneSchema>;
export type EventsConfig = z.infer<typeof eventsSchema>;
export type AdaptConfig = z.infer<typeof adaptSchema>;
export type HttpConfig = z.infer<typeof httpSchema>;
export type FeedbackConfig = z.infer<typeof feedbackSchema>;
