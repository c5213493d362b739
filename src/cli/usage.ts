/**
 * What `beats --help` says beyond the commands: the exit codes and the environment variables the
 * program reads (test/cli.test.ts checks that every variable read under src/ is listed here).
 */

/** Exit codes of every `beats` command (README, "Exit codes"). */
export const EXIT = {
  ok: 0,
  /** Something failed while running: a camera, the broker, a model, a file. */
  runtime: 1,
  /** A command line or a pipeline file that cannot be used: retrying the same will not help. */
  invalid: 2,
} as const;

export const environment: ReadonlyArray<readonly [name: string, meaning: string]> = [
  ['BEATS_LOG_LEVEL', 'debug, info (default), warn or error'],
  ['BEATS_LOG_FORMAT', 'json for JSON lines (journald, log shippers); text by default'],
  ['BEATS_MODELS_DIR', 'where `models pull` writes and pulled models are found'],
  ['XDG_DATA_HOME', 'without BEATS_MODELS_DIR, models go to $XDG_DATA_HOME/beats/models (default ~/.local/share)'],
  ['BEATS_ASSETS_DIR', "a development checkout's test assets, yolox-nano's last resort (default ../shared/assets)"],
  ['FFMPEG_PATH', 'the ffmpeg binary (default: ffmpeg on PATH, then the @ffmpeg-installer package)'],
  ['BEATS_TF_BACKEND', 'TensorFlow.js for training and adaptation: wasm or cpu (default: tfjs-node if installed, else wasm)'],
  ['BEATS_ORT_SPIN', "1 lets onnxruntime's threads spin while they wait (default 0: they sleep)"],
  ['ORT_TENSORRT_FP16_ENABLE', 'TensorRT in fp16: 1 or 0 (default from runtime.tensorrt.fp16)'],
  ['ORT_TENSORRT_ENGINE_CACHE_ENABLE', "TensorRT's engine cache: 1 (default) or 0"],
  ['ORT_TENSORRT_CACHE_PATH', "TensorRT's engine cache folder (default runtime.tensorrt.engine_cache)"],
];

export function helpFooter(): string {
  const width = Math.max(...environment.map(([name]) => name.length));
  const vars = environment.map(([name, meaning]) => `  ${name.padEnd(width)}  ${meaning}`);
  return [
    '',
    'Environment:',
    ...vars,
    '  ${VAR} and ${VAR:-default} in a pipeline file are read from the environment too.',
    '',
    `Exit codes: ${EXIT.ok} done; ${EXIT.runtime} runtime error; ${EXIT.invalid} invalid command line or pipeline file.`,
  ].join('\n');
}
