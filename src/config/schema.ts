import { z } from 'zod';

/**
 * The pipeline file's schema. Every object is strict: an unknown key is an error (a typo such as
 * `treshold` must not silently fall back to a default). Keys are snake_case as users write them.
 */

const cameraName = z
  .string()
  .regex(/^[a-z0-9_-]+$/, 'must match [a-z0-9_-]+ (it is used in MQTT topics)');

const reconnectSchema = z
  .strictObject({
    initial_s: z.number().positive().default(1),
    max_s: z.number().positive().default(30),
  })
  .refine((r) => r.max_s >= r.initial_s, { message: 'max_s must be at least initial_s' });

export const sourceSchema = z.strictObject({
  /** file path, rtsp://, http(s)://, /dev/videoN, testsrc:[lavfi options] */
  url: z.string().min(1, 'must not be empty'),
  /** Cap on frames per second taken from the source (ffmpeg's fps filter). */
  fps: z.number().positive().max(240).optional(),
  /** Files only: start again at the end. */
  loop: z.boolean().default(false),
  /**
   * Pace a file at its own frame rate, like a live camera (frames may then be dropped when the
   * detector is slower). Default: false for files (every frame processed), true for live sources.
   */
  realtime: z.boolean().optional(),
  /** Live sources: no frame for this long means the source stalled; ffmpeg is restarted. */
  stall_timeout_s: z.number().positive().default(10),
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

export const cameraSchema = z.strictObject({
  name: cameraName,
  source: sourceSchema,
  /** A pulled model's name, or a path to a model card (.json) or an .onnx beside its card. */
  model: z.string().min(1),
  detect: detectSchema.default(detectSchema.parse({})),
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
    username: z.string().optional(),
    password: z.string().optional(),
    client_id: z.string().min(1).optional(),
    /** Where the embedded broker listens (only without url). */
    embedded: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(1883),
      })
      .optional(),
  })
  .refine((m) => !(m.url && m.embedded), { message: 'give either url (external broker) or embedded, not both' });

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
});

export const pipelineSchema = z
  .strictObject({
    mqtt: mqttSchema.optional(),
    runtime: runtimeSchema.default(runtimeSchema.parse({})),
    /** Seconds between status lines on stderr; 0 turns them off. */
    status_interval_s: z.number().min(0).default(5),
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
