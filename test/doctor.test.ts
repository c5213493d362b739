import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Check, DoctorReport } from '../src/cli/doctor.js';
import { assets, needsAssets, repoRoot } from './helpers/assets.js';
import { freePort, mosquittoPath, spawnBeats, waitFor, type BeatsProcess } from './helpers/brokers.js';
import { startSecureMosquitto, type SecureMosquitto } from './helpers/secure-mosquitto.js';

/** `beats doctor` runs for real against this machine: ffmpeg, onnxruntime, disk, brokers, sources. */

let dir: string;
const running: BeatsProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'beats-doctor-'));
});
afterAll(async () => {
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

async function doctor(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; report: DoctorReport; p: BeatsProcess }> {
  const p = spawnBeats(['doctor', '--json', ...args], { env });
  running.push(p);
  const { code } = await p.exit;
  let report: DoctorReport;
  try {
    report = JSON.parse(p.stdout()) as DoctorReport;
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${code}):\n${p.stdout()}\n${p.stderr()}`);
  }
  return { code, report, p };
}

function check(report: DoctorReport, name: string): Check {
  const found = report.checks.find((c) => c.name === name);
  if (!found) throw new Error(`no check "${name}" in: ${report.checks.map((c) => c.name).join(', ')}`);
  return found;
}

/** Whether something listens on this TCP port, read from /proc/net/tcp (state 0A) without connecting. */
function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((l) => {
      const cols = l.trim().split(/\s+/);
      return cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A';
    });
}

async function pipelineFile(name: string, content: unknown): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, typeof content === 'string' ? content : stringify(content));
  return file;
}

describe('beats doctor on this machine', () => {
  it('checks ffmpeg, the decoders, onnxruntime (a real CPU session), TensorFlow.js and disk, and prints a fix under what is not ok', async () => {
    const { code, report, p } = await doctor([]);
    expect(code, p.stderr()).toBe(0);
    expect(report.ok).toBe(true);
    expect(check(report, 'ffmpeg')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/ffmpeg version/) });
    // Debian's ffmpeg has the cuvid decoders compiled in; without /dev/nvidia0 they are not usable.
    expect(check(report, 'hardware decoders').detail).toMatch(/usable/);
    expect(check(report, 'onnxruntime cpu')).toMatchObject({ status: 'ok', detail: 'a session runs' });
    for (const provider of ['cuda', 'tensorrt']) {
      // Either the provider really loaded, or the doctor says why it did not.
      expect(check(report, `onnxruntime ${provider}`).detail).toMatch(/session runs|not usable: .+/);
    }
    expect(check(report, 'TensorFlow.js').detail).toMatch(/@tensorflow\/tfjs(-node)? .*backend \w+|not installed/);
    expect(check(report, 'disk: models')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/writable, [\d.]+ [GM]B free/) });
  });

  it('without --json prints ok/warn/FAIL lines and a closing verdict', async () => {
    const p = spawnBeats(['doctor']);
    running.push(p);
    expect((await p.exit).code).toBe(0);
    expect(p.stdout()).toMatch(/^ok +onnxruntime cpu: a session runs$/m);
    expect(p.stdout().trim().split('\n').pop()).toMatch(/^ready/);
  });
});

describe('beats doctor on the shipped demo (the synthetic camera, beats-s)', () => {
  it('finds the synthetic camera ok, and names a bad synthetic key', async () => {
    const { report } = await doctor([path.join(repoRoot, 'pipelines', 'demo.yaml'), '--timeout', '2']);
    expect(check(report, 'camera demo')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^synthetic:scene=street&seed=42: the synthetic camera, rendered in process \(scene street, 320x240 at 10 fps\)/) });
    expect(check(report, 'model beats-s').status).toBe('ok');
    const bad = await pipelineFile('bad-synthetic.yaml', { mqtt: { embedded: { host: '127.0.0.1', port: await freePort() } }, cameras: [{ name: 'demo', source: { url: 'synthetic:scene=moon' }, model: 'beats-s' }] });
    const { code, report: badReport } = await doctor([bad, '--timeout', '2']);
    expect(code).toBe(1);
    expect(check(badReport, 'camera demo')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^synthetic:scene=moon: scene: /) });
  });
});

describe.skipIf(needsAssets)('beats doctor FILE', () => {
  it('a good pipeline: the file, its camera, its model, the state dir and the embedded broker port are all ok', async () => {
    const file = await pipelineFile('good.yaml', {
      mqtt: { embedded: { host: '127.0.0.1', port: await freePort() } },
      state_dir: 'good-state',
      cameras: [{ name: 'highway', source: { url: assets.highway }, model: 'yolox-nano' }],
    });
    const { code, report, p } = await doctor([file]);
    expect(code, JSON.stringify(report.checks.filter((c) => c.status === 'fail'))).toBe(0);
    expect(p.stdout()).not.toMatch(/Hi there/); // libraries' chatter stays off stdout
    expect(check(report, 'pipeline file').status).toBe('ok');
    expect(check(report, 'camera highway')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/first frame in [\d.]+ s \(mpeg4 320x240/) });
    expect(check(report, 'model yolox-nano')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/yolox_nano\.onnx/) });
    expect(check(report, 'disk: state')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/good-state \(not there yet; made in /) });
    expect(check(report, 'MQTT broker')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/can listen on 127\.0\.0\.1:\d+, reachable from this machine only/) });
  });

  describe('a bad pipeline', () => {
    let hang: Server;
    const sockets = new Set<Socket>();
    let hangPort: number;
    beforeAll(async () => {
      // An HTTP "camera" that accepts the connection and never answers.
      hang = createServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
      hangPort = (hang.address() as { port: number }).port;
    });
    afterAll(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => hang.close(() => resolve()));
    });

    it('names every broken thing with a fix, and exits 1', async () => {
      const closedRtsp = await freePort();
      const closedBroker = await freePort();
      const stateFile = path.join(dir, 'state-is-a-file');
      await writeFile(stateFile, 'not a folder');
      const emptyModels = path.join(dir, 'no-models');
      const emptyAssets = path.join(dir, 'no-assets');
      await mkdir(emptyModels, { recursive: true });
      await mkdir(emptyAssets, { recursive: true });
      const file = await pipelineFile('bad.yaml', {
        mqtt: { url: `mqtt://127.0.0.1:${closedBroker}` },
        state_dir: stateFile,
        cameras: [
          { name: 'gone', source: { url: 'videos/missing.mp4' }, model: 'yolox-nano' },
          { name: 'door', source: { url: `rtsp://admin:hunter2@127.0.0.1:${closedRtsp}/stream1` }, model: 'yolox-nano' },
          { name: 'hangs', source: { url: `http://127.0.0.1:${hangPort}/video.mjpg` }, model: 'yolox-nano' },
        ],
      });
      const { code, report, p } = await doctor([file, '--timeout', '2'], { BEATS_MODELS_DIR: emptyModels, BEATS_ASSETS_DIR: emptyAssets });
      expect(code, p.stderr()).toBe(1);
      expect(report.ok).toBe(false);

      expect(check(report, 'camera gone')).toMatchObject({ status: 'fail', detail: `${path.join(dir, 'videos', 'missing.mp4')}: file not found` });
      const door = check(report, 'camera door');
      expect(door.status).toBe('fail');
      expect(door.detail).not.toContain('hunter2'); // the camera's password is not printed
      expect(door.detail).toMatch(/rtsp:\/\/admin:\*\*\*@127\.0\.0\.1/);
      expect(door.detail).toMatch(/refused|Connection|error/i);
      expect(check(report, 'camera hangs')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/no frame within 2 s|timed? ?out/i) });
      expect(check(report, 'model yolox-nano')).toMatchObject({ status: 'fail', fix: expect.stringContaining('npx beats models pull yolox-nano') });
      expect(check(report, 'disk: state')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/is a file, not a folder/) });
      expect(check(report, 'MQTT broker')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/ECONNREFUSED/), fix: expect.stringMatching(/nothing listens/) });
      for (const c of report.checks.filter((x) => x.status !== 'ok')) expect(c.fix, c.name).toBeTruthy();
    });

    it('an invalid pipeline file is reported as a check and exits 2, like beats run', async () => {
      const file = await pipelineFile('invalid.yaml', { cameras: [{ name: 'Bad Name', source: { url: 'x.mp4' }, model: 'yolox-nano' }] });
      const { code, report } = await doctor([file]);
      expect(code).toBe(2);
      expect(check(report, 'pipeline file')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/cameras\[0\]\.name/) });
      // The machine checks still ran.
      expect(check(report, 'onnxruntime cpu').status).toBe('ok');
    });
  });

  describe('an H.264 camera served over HTTP by ffmpeg', () => {
    let server: ChildProcess | undefined;
    afterAll(() => {
      server?.kill('SIGKILL');
    });

    it('reads its first frame', async () => {
      const port = await freePort();
      server = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-re', '-i', assets.highway, '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'mpegts', '-listen', '1', `http://127.0.0.1:${port}/cam.ts`], { stdio: 'ignore' });
      // Not by connecting: ffmpeg -listen 1 serves exactly one client.
      await waitFor(() => listening(port), 10_000, 'ffmpeg to serve HTTP');
      const file = await pipelineFile('http.yaml', { cameras: [{ name: 'lobby', source: { url: `http://127.0.0.1:${port}/cam.ts` }, model: 'yolox-nano' }] });
      const { report } = await doctor([file, '--timeout', '8']);
      expect(check(report, 'camera lobby')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/first frame in [\d.]+ s \(h264 320x240/) });
    });
  });
});

if (!mosquittoPath) {
  if (process.env.CI) throw new Error('mosquitto is needed for the doctor broker tests; in CI they must run');
  console.warn('mosquitto not found: the doctor tests against a Mosquitto with a password file are skipped');
}

describe.skipIf(!mosquittoPath || needsAssets)('beats doctor against Mosquitto with a password file and TLS', () => {
  let broker: SecureMosquitto;
  beforeAll(async () => {
    broker = await startSecureMosquitto();
  });
  afterAll(async () => {
    await broker?.stop();
    if (broker) await rm(broker.dir, { recursive: true, force: true });
  });

  const withBroker = (name: string, mqtt: Record<string, unknown>) =>
    pipelineFile(name, { mqtt: { url: broker.url, ...mqtt }, cameras: [{ name: 'highway', source: { url: assets.highway }, model: 'yolox-nano' }] });

  it('the right credential and CA: connected', async () => {
    const file = await withBroker('mq-good.yaml', { username: 'beats', password: '${MQTT_PASSWORD}', tls: { ca: broker.certs.ca } });
    const { code, report } = await doctor([file], { MQTT_PASSWORD: broker.passwords.beats });
    expect(check(report, 'MQTT broker')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/connected as beats, TLS$/) });
    expect(code).toBe(0);
  });

  it('a bad credential: FAIL, and the fix says which setting', async () => {
    const file = await withBroker('mq-badpw.yaml', { username: 'beats', password: 'not-the-password', tls: { ca: broker.certs.ca } });
    const { code, report } = await doctor([file]);
    expect(code).toBe(1);
    expect(check(report, 'MQTT broker')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/not authori[sz]ed|bad user/i), fix: expect.stringMatching(/mqtt\.password/) });
  });

  it("a broker certificate the pipeline does not trust: FAIL, the fix points at mqtt.tls.ca", async () => {
    const file = await withBroker('mq-noca.yaml', { username: 'beats', password: broker.passwords.beats });
    const { code, report } = await doctor([file]);
    expect(code).toBe(1);
    expect(check(report, 'MQTT broker')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/certificate/i), fix: expect.stringMatching(/mqtt\.tls\.ca/) });
  });
});
