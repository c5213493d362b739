import { execFile, spawn } from 'node:child_process';
import { constants, existsSync, readdirSync, readFileSync } from 'node:fs';
import { access, mkdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import onnxProto from 'onnx-proto';
import { loadPipelineFile, type LoadedPipeline } from '../config/load.js';
import { isLoopbackHost, type MqttConfig, type PipelineConfig } from '../config/schema.js';
import { ConfigError, errorMessage } from '../errors.js';
import { cardMismatches } from '../model/card-check.js';
import { graphTensors } from '../model/onnx-graph.js';
import { pulledModelsDir, resolveModel } from '../model/registry.js';
import { availableProviders, systemProbe } from '../model/providers.js';
import { readTlsFiles, type TlsMaterial } from '../publish/tls.js';
import { ffmpegVersion, locateFfmpeg, parseStreamInfo } from '../source/ffmpeg-binary.js';
import { redactSecrets, redactUrl } from '../redact.js';
import { loadTf } from '../train/tf.js';
import { sourceKind } from '../config/source-kind.js';
import { parseSyntheticUrl } from '../source/synthetic/index.js';

const run = promisify(execFile);

/**
 * `beats doctor`: a pre-flight check of this machine and, given a pipeline file, of everything that
 * pipeline needs (broker, cameras, models, disk). Each check says what it found; one that is not ok
 * says how to fix it. `fail` means the pipeline cannot work as configured; `warn` means it works,
 * worse than it could (software decoding, CPU instead of a present GPU, little disk).
 */
export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do when it is not ok. */
  fix?: string;
}

export interface DoctorOptions {
  broker?: string;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Seconds to wait for a live camera's first frame and for the broker. */
  timeoutS?: number;
}

export interface DoctorReport {
  ok: boolean;
  file?: string;
  checks: Check[];
}

const ok = (name: string, detail: string): Check => ({ name, status: 'ok', detail });
const warn = (name: string, detail: string, fix?: string): Check => ({ name, status: 'warn', detail, ...(fix ? { fix } : {}) });
const fail = (name: string, detail: string, fix?: string): Check => ({ name, status: 'fail', detail, ...(fix ? { fix } : {}) });

// ---------------------------------------------------------------------------------------------
// The machine: Jetson or not, NVIDIA devices, shared libraries

/** A Jetson (Tegra) board: L4T writes /etc/nv_tegra_release; the device tree says tegra. */
export function isJetson(): boolean {
  if (existsSync('/etc/nv_tegra_release')) return true;
  try {
    return readFileSync('/proc/device-tree/compatible', 'latin1').includes('nvidia,tegra');
  } catch {
    return false;
  }
}

function firstExisting(paths: readonly string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

const jetsonDecoderDevices = ['/dev/nvhost-nvdec', '/dev/nvhost-nvdec1', '/dev/v4l2-nvdec'];
const nvidiaGpuDevices = ['/dev/nvidia0', '/dev/nvgpu/igpu0/ctrl', '/dev/nvhost-gpu', '/dev/nvhost-ctrl-gpu'];

/** `ldconfig -p`: the shared libraries the dynamic loader knows (empty when ldconfig is missing). */
async function ldconfigLibraries(): Promise<Set<string>> {
  for (const binary of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    try {
      const { stdout } = await run(binary, ['-p'], { maxBuffer: 16 << 20 });
      return new Set(stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean));
    } catch {
      // try the next
    }
  }
  return new Set();
}

// ---------------------------------------------------------------------------------------------
// ffmpeg and hardware decoders

interface DecoderFamily {
  name: string;
  match: RegExp;
  /** Why it cannot be used here, or undefined when it can. */
  blocker(libs: Set<string>): string | undefined;
}

const decoderFamilies: DecoderFamily[] = [
  {
    name: 'Jetson NVDEC (nvv4l2)',
    match: /nvv4l2|_nvmpi$/,
    blocker: () => (firstExisting(jetsonDecoderDevices) ? undefined : `no decoder device (${jetsonDecoderDevices.join(', ')})`),
  },
  {
    name: 'NVIDIA NVDEC (cuvid)',
    match: /_cuvid$/,
    blocker: (libs) => {
      if (!existsSync('/dev/nvidia0')) return 'no NVIDIA GPU (/dev/nvidia0)';
      if (!libs.has('libnvcuvid.so.1') && !libs.has('libnvcuvid.so')) return 'libnvcuvid.so.1 (NVIDIA driver) not found by ldconfig';
      return undefined;
    },
  },
  {
    name: 'VA-API / Quick Sync',
    match: /_vaapi$|_qsv$/,
    blocker: () => {
      const dri = existsSync('/dev/dri') ? readdirSync('/dev/dri').filter((d) => d.startsWith('renderD')) : [];
      return dri.length > 0 ? undefined : 'no /dev/dri/renderD* device';
    },
  },
  {
    name: 'V4L2 mem2mem',
    match: /_v4l2m2m$/,
    blocker: () => {
      const video = existsSync('/dev') ? readdirSync('/dev').filter((d) => /^video\d+$/.test(d)) : [];
      return video.length > 0 ? undefined : 'no /dev/video* device';
    },
  },
];

async function checkFfmpeg(): Promise<{ checks: Check[]; binary?: string }> {
  let binary: string;
  try {
    const found = locateFfmpeg();
    binary = found.path;
    const version = await ffmpegVersion(found.path);
    const checks: Check[] = [ok('ffmpeg', `${found.path} (${found.origin}): ${version}`)];
    const { stdout } = await run(found.path, ['-hide_banner', '-decoders'], { maxBuffer: 4 << 20 });
    const decoders = stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[1] ?? '')
      .filter(Boolean);
    checks.push(await hardwareDecoders(decoders));
    return { checks, binary };
  } catch (err) {
    return { checks: [fail('ffmpeg', errorMessage(err), 'apt-get install ffmpeg (or npm install @ffmpeg-installer/ffmpeg; FFMPEG_PATH to choose one)')] };
  }
}

async function hardwareDecoders(decoders: string[]): Promise<Check> {
  const name = 'hardware decoders';
  const libs = await ldconfigLibraries();
  const usable: string[] = [];
  const blocked: string[] = [];
  for (const family of decoderFamilies) {
    const found = decoders.filter((d) => family.match.test(d));
    if (found.length === 0) continue;
    const shown = found.filter((d) => /^(h264|hevc|mjpeg|av1)_/.test(d)).join(', ') || found.slice(0, 3).join(', ');
    const why = family.blocker(libs);
    if (why) blocked.push(`${family.name} compiled in (${shown}) but not usable: ${why}`);
    else usable.push(`${family.name}: ${shown}`);
  }
  const detail = `${usable.length > 0 ? `usable: ${usable.join('; ')}` : 'none usable (software decoding)'}${blocked.length > 0 ? `; ${blocked.join('; ')}` : ''}`;
  if (isJetson() && !decoders.some((d) => /nvv4l2|_nvmpi$/.test(d))) {
    return warn(name, detail, "this is a Jetson but ffmpeg has no nvv4l2 decoders: install NVIDIA's Jetson ffmpeg (docs/deploy.md)");
  }
  return ok(name, detail);
}

// ---------------------------------------------------------------------------------------------
// onnxruntime

const { onnx } = onnxProto;

/** A one-node ONNX model (y = x + x), made in memory: enough for a provider to load and run. */
export function tinyOnnxModel(): Uint8Array {
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const valueInfo = (name: string) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: 1 }, { dimValue: 4 }] } } } });
  const graph = onnx.GraphProto.create({
    name: 'beats_doctor',
    input: [valueInfo('x')],
    output: [valueInfo('y')],
    node: [onnx.NodeProto.create({ opType: 'Add', input: ['x', 'x'], output: ['y'] })],
  });
  return onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, producerName: 'beats-doctor', opsetImport: [{ domain: '', version: 17 }], graph })).finish();
}

interface ProviderAttempt {
  ok: boolean;
  error?: string;
  /** What onnxruntime logged (the library that failed to load and why). */
  log: string;
}

/**
 * Makes a session on the tiny model with only this provider and runs it, in a child process: a
 * provider library that fails to load says why only on stderr, and a broken GPU driver must not take
 * the doctor down with it.
 */
function tryProvider(provider: string, timeoutMs: number): Promise<ProviderAttempt> {
  const require = createRequire(import.meta.url);
  const ortUrl = pathToFileURL(require.resolve('onnxruntime-node')).href;
  const script = `
    const ort = (await import(${JSON.stringify(ortUrl)})).default;
    const model = Buffer.from(process.env.BEATS_DOCTOR_MODEL, 'base64');
    try {
      const session = await ort.InferenceSession.create(model, { executionProviders: [${JSON.stringify(provider)}] });
      const out = await session.run({ x: new ort.Tensor('float32', new Float32Array([1, 2, 3, 4]), [1, 4]) });
      const y = Array.from(out.y.data);
      process.stdout.write(JSON.stringify({ ok: y.join() === '2,4,6,8', error: y.join() === '2,4,6,8' ? undefined : 'wrong result ' + y.join() }));
    } catch (err) {
      process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message || err) }));
    }`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, BEATS_DOCTOR_MODEL: Buffer.from(tinyOnnxModel()).toString('base64') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      // eslint-disable-next-line no-control-regex
      const log = stderr.replace(/\u001b\[[0-9;]*m/g, '').trim();
      try {
        const parsed = JSON.parse(stdout) as { ok: boolean; error?: string };
        resolve({ ok: parsed.ok, error: parsed.error, log });
      } catch {
        resolve({ ok: false, error: signal ? `the attempt was killed (${signal}${signal === 'SIGKILL' ? `, over ${timeoutMs / 1000} s` : ''})` : `the attempt exited with code ${code}`, log });
      }
    });
  });
}

/** The useful part of onnxruntime's "Failed to load library X with error: Y". */
function loadFailure(log: string): string | undefined {
  const m = /Failed to load library (\S+) with error: ([^\n]+)/.exec(log);
  return m ? m[2]!.replace(/^(\S+): /, (_, file: string) => `${path.basename(file)}: `).trim() : undefined;
}

const gpuLibraries: Record<'cuda' | 'tensorrt', string[]> = {
  cuda: ['libcudart.so.12', 'libcublas.so.12', 'libcublasLt.so.12', 'libcudnn.so.9', 'libcufft.so.11', 'libcurand.so.10'],
  tensorrt: ['libnvinfer.so.10', 'libnvinfer_plugin.so.10', 'libnvonnxparser.so.10'],
};

async function checkOnnxruntime(configured: readonly string[] | undefined): Promise<Check[]> {
  const supported = systemProbe.supportedBackends();
  const usable = availableProviders();
  const checks: Check[] = [
    ok('onnxruntime providers', `usable: ${usable.join(', ')}; this build knows: ${supported.map((b) => `${b.name}${b.bundled ? '' : ' (library not bundled)'}`).join(', ')}`),
  ];

  const cpu = await tryProvider('cpu', 30_000);
  checks.push(cpu.ok ? ok('onnxruntime cpu', 'a session runs') : fail('onnxruntime cpu', cpu.error ?? 'failed', 'reinstall onnxruntime-node (npm ci)'));

  const gpuPresent = Boolean(firstExisting(nvidiaGpuDevices));
  const libs = await ldconfigLibraries();
  for (const provider of ['cuda', 'tensorrt'] as const) {
    const name = `onnxruntime ${provider}`;
    const wanted = configured ? configured.includes(provider) : true;
    // Not usable is a warning only when it matters: the pipeline asks for it and there is an NVIDIA GPU.
    const notUsable = (detail: string, fix: string) => (wanted && gpuPresent ? warn(name, `${detail}; the CPU is used instead`, fix) : ok(name, `not usable: ${detail}${gpuPresent ? '' : ' (no NVIDIA GPU here: the CPU is used)'}`));
    if (!supported.some((b) => b.name === provider)) {
      checks.push(notUsable(`this onnxruntime-node binding (${process.platform}/${process.arch}) was built without ${provider}`, 'build onnxruntime with --use_cuda --use_tensorrt --build_nodejs and replace the binding folder (docs/deploy.md, Jetson)'));
      continue;
    }
    const missingLibs = gpuLibraries[provider].filter((l) => !libs.has(l));
    const attempt = await tryProvider(provider, 120_000);
    if (attempt.ok) {
      checks.push(ok(name, 'the provider library loads and a session runs'));
      continue;
    }
    const why = loadFailure(attempt.log) ?? attempt.error ?? 'failed';
    const libHint = missingLibs.length > 0 ? ` (ldconfig does not know ${missingLibs.join(', ')})` : '';
    checks.push(notUsable(`${why}${libHint}`, `put libonnxruntime_providers_${provider}.so and _shared.so beside the binding and install ${provider === 'cuda' ? 'CUDA 12 and cuDNN 9' : 'TensorRT 10'} (docs/gpu.md)`));
  }
  return checks;
}

// ---------------------------------------------------------------------------------------------
// TensorFlow.js

async function checkTensorflow(): Promise<Check> {
  const name = 'TensorFlow.js';
  try {
    const { tf, package: pkg, backend, skipped } = await loadTf();
    const why = skipped.length > 0 ? ` (${skipped.join('; ')})` : '';
    return ok(name, `${pkg} ${tf.version?.['tfjs-core'] ?? ''}, backend ${backend}${why}`.replace('  ', ' '));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return ok(name, `not installed (only needed for on-device adaptation)${code === 'ERR_MODULE_NOT_FOUND' ? '' : `: ${errorMessage(err).split('\n')[0]}`}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Disk: free space and write permission

const MB = 1024 * 1024;

/** The path itself, or its nearest existing parent (what it would be created in), and whether that is a folder. */
async function nearestExisting(dir: string): Promise<{ at: string; isDirectory: boolean }> {
  let at = path.resolve(dir);
  for (;;) {
    try {
      return { at, isDirectory: (await stat(at)).isDirectory() };
    } catch {
      // not there: go up
    }
    const parent = path.dirname(at);
    if (parent === at) return { at, isDirectory: true };
    at = parent;
  }
}

async function checkDirectory(label: string, dir: string, needMb: number): Promise<Check> {
  const name = `disk: ${label}`;
  const found = await nearestExisting(dir);
  const existing = found.at;
  const where = existing === path.resolve(dir) ? dir : `${dir} (not there yet; made in ${existing})`;
  if (!found.isDirectory) return fail(name, `${where}: ${existing} is a file, not a folder`, `move the file away, or point the setting at a folder`);
  let writable = true;
  let why = '';
  try {
    if (existing === path.resolve(dir)) {
      // A real write, not access(): root passes access() on a read-only mount.
      const probe = path.join(dir, `.beats-doctor-${process.pid}`);
      await writeFile(probe, 'ok');
      await rm(probe, { force: true });
    } else {
      await access(existing, constants.W_OK);
    }
  } catch (err) {
    writable = false;
    why = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
  }
  if (!writable) return fail(name, `${where}: not writable (${why})`, `give the user running beats write access to ${dir} (or set it elsewhere)`);
  const fs = await statfs(existing);
  const free = Number(fs.bavail) * Number(fs.bsize);
  const freeText = free >= 10 * 1024 * MB ? `${(free / 1024 / MB).toFixed(0)} GB` : free >= 1024 * MB ? `${(free / 1024 / MB).toFixed(1)} GB` : `${(free / MB).toFixed(0)} MB`;
  if (free < needMb * MB) return fail(name, `${where}: writable, only ${freeText} free (needs ${needMb} MB)`, 'free some disk, or move it to a bigger volume');
  if (free < 4 * needMb * MB) return warn(name, `${where}: writable, ${freeText} free (low)`, 'free some disk, or move it to a bigger volume');
  return ok(name, `${where}: writable, ${freeText} free`);
}

// ---------------------------------------------------------------------------------------------
// MQTT broker

function brokerFix(message: string): string {
  if (/not authori[sz]ed|bad user ?name or password|code 4\b|code 5\b/i.test(message)) return 'check mqtt.username and mqtt.password (e.g. MQTT_PASSWORD in the environment)';
  if (/certificate|self[- ]signed|CERT_|altnames|Hostname\/IP/i.test(message)) return "set mqtt.tls.ca to the CA that signed the broker's certificate, and connect with a host name the certificate names";
  if (/ECONNREFUSED/.test(message)) return 'nothing listens there: start the broker, or fix the host and port of mqtt.url';
  if (/ENOTFOUND|EAI_AGAIN/.test(message)) return 'the host name does not resolve: fix mqtt.url';
  if (/no answer|timed? ?out/i.test(message)) return 'check the port (8883 is TLS: mqtts://), a firewall, or whether the broker is up';
  return 'check mqtt.url, credentials and that the broker runs';
}

async function checkBroker(url: string, auth: { username?: string; password?: string; tls?: TlsMaterial }, timeoutMs: number): Promise<Check> {
  const shown = redactUrl(url);
  const name = 'MQTT broker';
  return new Promise((resolve) => {
    let settled = false;
    const client = mqtt.connect(url, {
      username: auth.username,
      password: auth.password,
      ...(auth.tls ?? {}),
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
      clientId: `beats-doctor-${process.pid}`,
    });
    const done = (check: Check) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.end(true);
      resolve(check);
    };
    const timer = setTimeout(() => done(fail(name, `${shown}: no answer within ${timeoutMs / 1000} s`, brokerFix('no answer'))), timeoutMs + 500);
    const how = [auth.username ? `as ${auth.username}` : 'anonymously', auth.tls ? `TLS${auth.tls.rejectUnauthorized ? '' : ' (certificate not checked)'}` : ''].filter(Boolean).join(', ');
    client.once('connect', () => done(ok(name, `${shown}: connected ${how}`)));
    client.once('error', (err) => {
      const code = (err as Error & { code?: string | number }).code;
      const message = `${err.message}${code !== undefined && !err.message.includes(String(code)) ? ` (${code})` : ''}`;
      done(fail(name, `${shown} ${how}: ${message}`, brokerFix(message)));
    });
    client.once('close', () => done(fail(name, `${shown} ${how}: connection closed before the broker accepted it`, brokerFix('closed'))));
  });
}

function checkEmbeddedPort(embedded: NonNullable<MqttConfig['embedded']> | undefined): Promise<Check> {
  const host = embedded?.host ?? '127.0.0.1';
  const port = embedded?.port ?? 1883;
  const name = 'MQTT broker';
  const auth = embedded?.username ? `, clients log in as ${embedded.username}` : '';
  const scope = isLoopbackHost(host) ? 'this machine only' : 'the network';
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve(warn(name, `embedded broker: ${host}:${port} is taken (the pipeline then listens on a free port and logs it)`, `stop what listens there, or set mqtt.embedded.port`));
      else resolve(fail(name, `embedded broker: cannot listen on ${host}:${port}: ${err.code ?? err.message}`, 'set mqtt.embedded.host to an address of this machine'));
    });
    server.listen(port, host, () => server.close(() => resolve(ok(name, `embedded broker (aedes) can listen on ${host}:${port}, reachable from ${scope}${auth}`))));
  });
}

// ---------------------------------------------------------------------------------------------
// Cameras and models

/** Opens a source with ffmpeg and reads one frame, within timeoutMs. */
function readOneFrame(ffmpeg: string, url: string, kind: ReturnType<typeof sourceKind>, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const input: string[] = ['-hide_banner', '-nostdin', '-loglevel', 'info'];
  const usec = String(Math.round(timeoutMs * 1000 * 0.8));
  if (kind === 'rtsp') input.push('-rtsp_transport', 'tcp', '-timeout', usec);
  if (kind === 'http') input.push('-rw_timeout', usec);
  const args = [...input, '-i', url, '-an', '-frames:v', '1', '-f', 'null', '-'];
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(ffmpeg, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-20_000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: errorMessage(err) });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const info = stderr.split('\n').map(parseStreamInfo).find((i) => i !== undefined);
      const codec = /Stream #\d+:\d+.*?: Video: (\w+)/.exec(stderr)?.[1];
      const frames = /frame=\s*(\d+)/.exec(stderr.slice(stderr.lastIndexOf('frame=')))?.[1];
      if (timedOut) return resolve({ ok: false, detail: `no frame within ${timeoutMs / 1000} s` });
      if (code === 0 && info && frames !== '0') {
        return resolve({ ok: true, detail: `first frame in ${((Date.now() - started) / 1000).toFixed(1)} s (${codec ?? 'video'} ${info.width}x${info.height}${info.fps ? ` ${info.fps} fps` : ''})` });
      }
      const last = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/^(Input|Output|Stream|Metadata|Duration|encoder|frame=|video:|Press|\[out|\s)/.test(l))
        .pop();
      // ffmpeg repeats the URL, password included: say it once, without the password.
      const said = last?.split(url + ': ').join('').split(url).join(redactUrl(url));
      resolve({ ok: false, detail: said ? redactSecrets(said) : `ffmpeg exited with code ${code} and no video frame` });
    });
  });
}

/** The synthetic camera renders in process (no ffmpeg): its URL's scene options are all there is to check. */
function checkSynthetic(name: string, url: string): Check {
  try {
    const o = parseSyntheticUrl(url);
    return ok(name, `${url}: the synthetic camera, rendered in process (scene ${o.scene}, ${o.width}x${o.height} at ${o.fps} fps)`);
  } catch (err) {
    return fail(name, errorMessage(err), 'fix cameras[].source.url (README: the synthetic camera, its keys and values)');
  }
}

async function checkCamera(camera: PipelineConfig['cameras'][number], ffmpeg: string | undefined, timeoutMs: number): Promise<Check> {
  const url = camera.source.url;
  const kind = sourceKind(url);
  const name = `camera ${camera.name}`;
  const shown = redactUrl(url);
  if (kind === 'testsrc') return ok(name, `${shown}: ffmpeg's test pattern`);
  if (kind === 'synthetic') return checkSynthetic(name, url);
  if (kind === 'file' && !existsSync(url)) return fail(name, `${shown}: file not found`, 'fix cameras[].source.url (relative paths are relative to the pipeline file)');
  if (kind === 'v4l2') {
    try {
      await access(url, constants.R_OK | constants.W_OK);
      return ok(name, `${shown}: device present and accessible`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return fail(name, `${shown}: ${code === 'ENOENT' ? 'no such device' : `not accessible (${code})`}`, code === 'ENOENT' ? 'plug the camera in, or fix the device path' : 'add the user running beats to the video group');
    }
  }
  if (!ffmpeg) return fail(name, `${shown}: cannot be opened without ffmpeg`, 'install ffmpeg');
  const result = await readOneFrame(ffmpeg, url, kind, kind === 'file' ? Math.max(timeoutMs, 15_000) : timeoutMs);
  if (result.ok) return ok(name, `${shown}: ${result.detail}`);
  const fix =
    kind === 'file'
      ? 'the file is not a video ffmpeg can read'
      : kind === 'rtsp'
        ? 'check the address, port, path and credentials of the camera (rtsp://user:pass@host:554/path), and that this machine reaches it'
        : 'check the URL and that this machine reaches it';
  return fail(name, `${shown}: ${result.detail}`, fix);
}

async function checkModels(config: PipelineConfig, env: NodeJS.ProcessEnv): Promise<Check[]> {
  const refs = [...new Set(config.cameras.map((c) => c.model))];
  return Promise.all(
    refs.map(async (ref) => {
      const name = `model ${ref}`;
      try {
        const model = await resolveModel(ref, env);
        const { inputs, outputs } = graphTensors(await readFile(model.onnxPath));
        const problems = cardMismatches(model.card, inputs, outputs);
        if (problems.length > 0) return fail(name, `its card ${model.file} does not fit ${model.onnxPath}: ${problems.join('; ')}`, 'fix the card (input size, classes, decoder) or use the ONNX file it was written for');
        return ok(name, `${model.card.name} ${model.card.version}: ${model.origin} (${model.onnxPath})`);
      } catch (err) {
        const message = errorMessage(err);
        const pull = /not pulled yet|is damaged/.test(message) ? `npx beats models pull ${ref}   (offline: --from FILE; into ${pulledModelsDir(env)})` : 'fix cameras[].model (a registry name, or a path to a model card or an .onnx with its card)';
        return fail(name, message, pull);
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------

/** Every check, in the order they are printed. */
export async function doctor(file: string | undefined, options: DoctorOptions = {}): Promise<DoctorReport & { configError?: ConfigError }> {
  const env = options.env ?? process.env;
  const timeoutMs = (options.timeoutS ?? 8) * 1000;
  const checks: Check[] = [];
  let loaded: LoadedPipeline | undefined;
  let configError: ConfigError | undefined;
  if (file) {
    try {
      loaded = await loadPipelineFile(file, { env });
      checks.push(ok('pipeline file', `${loaded.file}: valid, ${loaded.config.cameras.length} camera${loaded.config.cameras.length === 1 ? '' : 's'}`));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      configError = err;
      checks.push(fail('pipeline file', err.issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; '), `fix ${file} (beats run says the same)`));
    }
  }
  const config = loaded?.config;

  const ffmpeg = await checkFfmpeg();
  checks.push(...ffmpeg.checks);
  checks.push(...(await checkOnnxruntime(config?.runtime.providers)));
  checks.push(await checkTensorflow());

  checks.push(await checkDirectory('models', pulledModelsDir(env), 200));
  if (config) {
    checks.push(await checkDirectory('state', config.state_dir, 100 + config.snapshots.max_total_mb));
    if (config.runtime.providers.includes('tensorrt') && availableProviders().includes('tensorrt')) {
      checks.push(await checkDirectory('TensorRT engine cache', config.runtime.tensorrt.engine_cache, 200));
    }
  }

  const mqttConfig = config?.mqtt;
  const url = options.broker ?? mqttConfig?.url;
  if (url) {
    let tls: TlsMaterial | undefined;
    let tlsError: string | undefined;
    if (mqttConfig?.tls && loaded) {
      try {
        tls = await readTlsFiles(mqttConfig.tls, loaded.file);
      } catch (err) {
        tlsError = err instanceof ConfigError ? err.issues.map((i) => `${i.path}: ${i.message}`).join('; ') : errorMessage(err);
      }
    }
    if (tlsError) checks.push(fail('MQTT broker', `${redactUrl(url)}: ${tlsError}`, 'fix mqtt.tls (paths are relative to the pipeline file)'));
    else checks.push(await checkBroker(url, { username: mqttConfig?.username, password: mqttConfig?.password, tls }, timeoutMs));
  } else if (config || !file) {
    checks.push(config ? await checkEmbeddedPort(mqttConfig?.embedded) : ok('MQTT broker', 'none given (--broker URL or a pipeline file): a pipeline without mqtt.url starts its embedded broker'));
  }

  if (config) {
    checks.push(...(await Promise.all(config.cameras.map((c) => checkCamera(c, ffmpeg.binary, timeoutMs)))));
    checks.push(...(await checkModels(config, env)));
  }

  return { ok: checks.every((c) => c.status !== 'fail'), ...(loaded ? { file: loaded.file } : {}), checks, ...(configError ? { configError } : {}) };
}

/**
 * Prints one line per check (`ok`, `warn`, `FAIL`), a fix under each that is not ok, or with --json
 * the report as JSON. Returns the exit code: 0 all usable, 1 something needed is broken, 2 the
 * pipeline file is invalid.
 */
export async function doctorCommand(file: string | undefined, opts: DoctorOptions): Promise<number> {
  // Libraries that print to stdout (TensorFlow.js's hints) must not break the JSON.
  const log = console.log;
  if (opts.json) console.log = (...args: unknown[]) => console.error(...args);
  let report: Awaited<ReturnType<typeof doctor>>;
  try {
    report = await doctor(file, opts);
  } finally {
    console.log = log;
  }
  const { configError, ...printed } = report;
  if (opts.json) {
    process.stdout.write(JSON.stringify(printed, null, 2) + '\n');
  } else {
    for (const c of report.checks) {
      process.stdout.write(`${c.status === 'ok' ? 'ok  ' : c.status === 'warn' ? 'warn' : 'FAIL'} ${c.name}: ${c.detail}\n`);
      if (c.fix && c.status !== 'ok') process.stdout.write(`     → ${c.fix}\n`);
    }
    const failed = report.checks.filter((c) => c.status === 'fail').length;
    const warned = report.checks.filter((c) => c.status === 'warn').length;
    process.stdout.write(failed > 0 ? `${failed} problem${failed === 1 ? '' : 's'} to fix${warned ? `, ${warned} warning${warned === 1 ? '' : 's'}` : ''}\n` : `ready${warned ? ` (${warned} warning${warned === 1 ? '' : 's'})` : ''}\n`);
  }
  if (configError) return 2;
  return report.ok ? 0 : 1;
}
