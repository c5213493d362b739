import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { SourceError } from '../errors.js';

const run = promisify(execFile);

export interface FfmpegBinary {
  path: string;
  /** Where it was found: FFMPEG_PATH, the system PATH, or the @ffmpeg-installer/ffmpeg package. */
  origin: 'env' | 'system' | 'npm';
}

export interface LocateOptions {
  env?: NodeJS.ProcessEnv;
  /** Resolves the optional npm package's binary; replaceable so the fallback path can be tested. */
  npmBinary?: () => string | undefined;
}

/** A regular file with an execute bit (access(X_OK) says yes to anything for root). */
function executable(file: string): boolean {
  try {
    const info = statSync(file);
    return info.isFile() && (info.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function onPath(name: string, searchPath: string | undefined): string | undefined {
  for (const dir of (searchPath ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (executable(candidate)) return candidate;
  }
  return undefined;
}

function installerBinary(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const found = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
    return executable(found) ? found : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The system ffmpeg is preferred (newer, and on Jetson it has the hardware decoders); the binary of
 * the optional npm package is the fallback, so a machine with only Node still decodes.
 */
export function locateFfmpeg(options: LocateOptions = {}): FfmpegBinary {
  const env = options.env ?? process.env;
  if (env.FFMPEG_PATH) {
    if (!executable(env.FFMPEG_PATH)) throw new SourceError('FFMPEG_PATH', `${env.FFMPEG_PATH} is not an executable file`);
    return { path: env.FFMPEG_PATH, origin: 'env' };
  }
  const system = onPath('ffmpeg', env.PATH);
  if (system) return { path: system, origin: 'system' };
  const bundled = (options.npmBinary ?? installerBinary)();
  if (bundled) return { path: bundled, origin: 'npm' };
  throw new SourceError('ffmpeg', 'not found: install it (apt-get install ffmpeg) or the npm package @ffmpeg-installer/ffmpeg');
}

let cached: FfmpegBinary | undefined;
export function ffmpegBinary(): FfmpegBinary {
  cached ??= locateFfmpeg();
  return cached;
}

export async function ffmpegVersion(binary: string): Promise<string> {
  const { stdout } = await run(binary, ['-hide_banner', '-version']);
  return stdout.split('\n')[0]?.trim() ?? 'unknown';
}

export interface StreamInfo {
  width: number;
  height: number;
  /** Nominal frames per second of the input video stream, when ffmpeg states it. */
  fps?: number;
}

/**
 * Reads the first input video stream's size and rate from ffmpeg's stderr banner, e.g.
 * `Stream #0:0: Video: mpeg4 (XVID / 0x44495658), yuv420p, 320x240 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr`.
 * Works for ffmpeg 4 and 5, and needs no ffprobe (the npm package ships none).
 */
export function parseStreamInfo(line: string): StreamInfo | undefined {
  if (!/Stream #\d+:\d+.*: Video: /.test(line)) return undefined;
  const size = /,\s*(\d{2,5})x(\d{2,5})[\s,]/.exec(line + ',');
  if (!size) return undefined;
  const fps = /,\s*(\d+(?:\.\d+)?)\s*fps/.exec(line) ?? /,\s*(\d+(?:\.\d+)?)\s*tbr/.exec(line);
  return { width: Number(size[1]), height: Number(size[2]), fps: fps ? Number(fps[1]) : undefined };
}
