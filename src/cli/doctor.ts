import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { loadPipelineFile } from '../config/load.js';
import { errorMessage } from '../errors.js';
import { availableProviders, systemProbe } from '../model/providers.js';
import { ffmpegVersion, locateFfmpeg } from '../source/ffmpeg-binary.js';
import { redactUrl } from '../source/kind.js';

const run = promisify(execFile);

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do when it is not ok. */
  fix?: string;
}

async function checkFfmpeg(): Promise<Check[]> {
  try {
    const binary = locateFfmpeg();
    const version = await ffmpegVersion(binary.path);
    const checks: Check[] = [{ name: 'ffmpeg', ok: true, detail: `${binary.path} (${binary.origin}): ${version}` }];
    const { stdout } = await run(binary.path, ['-hide_banner', '-decoders'], { maxBuffer: 4 << 20 });
    const hw = stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[1] ?? '')
      .filter((n) => /nvv4l2|cuvid|_v4l2m2m|_vaapi|_qsv/.test(n));
    checks.push({ name: 'hardware decoders (compiled in)', ok: true, detail: hw.length > 0 ? hw.join(', ') : 'none (software decoding)' });
    return checks;
  } catch (err) {
    return [{ name: 'ffmpeg', ok: false, detail: errorMessage(err), fix: 'apt-get install ffmpeg (or npm install @ffmpeg-installer/ffmpeg)' }];
  }
}

function checkProviders(): Check {
  const supported = systemProbe.supportedBackends().map((b) => `${b.name}${b.bundled ? '' : ' (library not bundled)'}`);
  const usable = availableProviders();
  const gpu = usable.filter((p) => p !== 'cpu');
  return {
    name: 'onnxruntime providers',
    ok: true,
    detail: `usable: ${usable.join(', ')}; this build knows: ${supported.join(', ')}`,
    fix: gpu.length === 0 ? 'for CUDA/TensorRT, install the GPU provider libraries (docs/gpu.md)' : undefined,
  };
}

async function checkTensorflow(): Promise<Check> {
  for (const pkg of ['@tensorflow/tfjs-node', '@tensorflow/tfjs']) {
    try {
      const tf = (await import(pkg)) as { ready(): Promise<void>; getBackend(): string; version_core?: string };
      await tf.ready();
      return { name: 'TensorFlow.js', ok: true, detail: `${pkg}, backend ${tf.getBackend()}` };
    } catch {
      // try the next one
    }
  }
  return { name: 'TensorFlow.js', ok: true, detail: 'not installed (only needed for on-device adaptation)' };
}

async function checkBroker(url: string, username?: string, password?: string): Promise<Check> {
  const shown = redactUrl(url);
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { username, password, reconnectPeriod: 0, connectTimeout: 3000 });
    const done = (check: Check) => {
      client.end(true);
      resolve(check);
    };
    client.once('connect', () => done({ name: 'MQTT broker', ok: true, detail: `${shown} reachable` }));
    client.once('error', (err) => done({ name: 'MQTT broker', ok: false, detail: `${shown}: ${err.message}`, fix: 'check mqtt.url, credentials and that the broker runs' }));
    client.once('close', () => done({ name: 'MQTT broker', ok: false, detail: `${shown}: connection closed`, fix: 'check mqtt.url and that the broker runs' }));
  });
}

/** Prints one line per check; returns the exit code (1 when something needed is broken). */
export async function doctorCommand(file: string | undefined, opts: { broker?: string }): Promise<number> {
  const checks: Check[] = [...(await checkFfmpeg()), checkProviders(), await checkTensorflow()];
  const pipeline = file ? (await loadPipelineFile(file)).config : undefined;
  const url = opts.broker ?? pipeline?.mqtt?.url;
  if (url) checks.push(await checkBroker(url, pipeline?.mqtt?.username, pipeline?.mqtt?.password));
  else checks.push({ name: 'MQTT broker', ok: true, detail: 'none configured: the pipeline starts its embedded broker' });
  for (const c of checks) {
    process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}\n`);
    if (c.fix && (!c.ok || c.name === 'onnxruntime providers')) process.stdout.write(`     → ${c.fix}\n`);
  }
  return checks.every((c) => c.ok) ? 0 : 1;
}
