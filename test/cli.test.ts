import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { DetectionsMessage } from '../src/publish/messages.js';
import { assets, assetsDir, needsAssets, repoRoot } from './helpers/assets.js';
import {
  brokerKinds,
  brokerMissing,
  freePort,
  pidsMatching,
  spawnBeats,
  startBroker,
  subscriber,
  waitFor,
  type BeatsProcess,
  type BrokerKind,
  type Subscriber,
  type TestBroker,
} from './helpers/brokers.js';

let dir: string;
const running: BeatsProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'beats-cli-'));
});
afterAll(async () => {
  // A test that failed half-way must not leave a pipeline (and its ffmpeg) running.
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

function beats(args: string[], env?: NodeJS.ProcessEnv): BeatsProcess {
  const p = spawnBeats(args, { env });
  running.push(p);
  return p;
}

/** Writes a pipeline file (an object, or raw YAML text) into the test folder. */
async function writePipeline(name: string, content: object | string): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, typeof content === 'string' ? content : stringify(content));
  return file;
}

function camera(name: string, source: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return { name, source: { url: assets.highway, ...source }, model: 'yolox-nano', ...extra };
}

/** A pipeline that needs no broker of the test's: the embedded one on a free port. */
const embeddedAnywhere = { embedded: { host: '127.0.0.1', port: 0 } };

function parse(payload: string): DetectionsMessage {
  return JSON.parse(payload) as DetectionsMessage;
}

/** `camera highway: 20 frames processed, ...` from the run's closing lines. */
function processedFrames(stderr: string, cameraName: string): number | undefined {
  const m = new RegExp(`camera ${cameraName}: (\\d+) frames processed`).exec(stderr);
  return m ? Number(m[1]) : undefined;
}

describe.skipIf(needsAssets)('beats run: configuration errors exit 2 and say where', () => {
  it('names an unknown key', async () => {
    const file = await writePipeline('typo', { cameras: [camera('highway', {}, { detect: { treshold: 0.5 } })] });
    const p = beats(['run', file]);
    const exit = await p.exit;
    expect(exit.code, p.stderr()).toBe(2);
    expect(p.stderr()).toContain(file);
    // `cameras[0].detect.treshold`, or the object's path and the key's name.
    expect(p.stderr()).toMatch(/cameras\[0\]\.detect(\.treshold|: unknown key "treshold")/);
  });

  it('names a bad camera name', async () => {
    const file = await writePipeline('badname', { cameras: [camera('High Way')] });
    const p = beats(['run', file]);
    expect((await p.exit).code, p.stderr()).toBe(2);
    expect(p.stderr()).toContain(file);
    expect(p.stderr()).toMatch(/cameras\[0\]\.name: .*\[a-z0-9_-\]/);
  });

  it('names a missing environment variable', async () => {
    const file = await writePipeline('noenv', { mqtt: { url: 'mqtt://${BEATS_TEST_UNSET_BROKER_HOST}:1883' }, cameras: [camera('highway')] });
    const p = beats(['run', file], { BEATS_TEST_UNSET_BROKER_HOST: '' });
    expect((await p.exit).code, p.stderr()).toBe(2);
    expect(p.stderr()).toContain(file);
    expect(p.stderr()).toMatch(/mqtt\.url: .*BEATS_TEST_UNSET_BROKER_HOST/);
  });

  it('names a label the model does not have', async () => {
    const file = await writePipeline('badlabel', { mqtt: embeddedAnywhere, cameras: [camera('highway', {}, { detect: { labels: ['car', 'unicorn'] } })] });
    const p = beats(['run', file]);
    expect((await p.exit).code, p.stderr()).toBe(2);
    expect(p.stderr()).toContain(file);
    expect(p.stderr()).toMatch(/cameras\[0\]\.detect\.labels: .*"unicorn"/);
    expect(p.stderr()).not.toMatch(/cameras\[0\]\.detect\.labels: .*"car"/);
  });

  it('exits 2 on a missing pipeline file', async () => {
    const file = path.join(dir, 'no-such-pipeline.yaml');
    const p = beats(['run', file]);
    expect((await p.exit).code, p.stderr()).toBe(2);
    expect(p.stderr()).toContain(file);
    expect(p.stderr()).toMatch(/not found/);
  });
});

describe.each(brokerKinds)('beats run with %s', (kind: BrokerKind) => {
  describe.skipIf(needsAssets || brokerMissing(kind))(`${kind}`, () => {
    let broker: TestBroker;
    const subscribers: Subscriber[] = [];
    const sub = async (topics: string | string[]) => {
      const s = await subscriber(broker.url, topics);
      subscribers.push(s);
      return s;
    };
    beforeAll(async () => {
      broker = await startBroker(kind);
    });
    afterAll(async () => {
      await Promise.all(subscribers.map((s) => s.close()));
      await broker?.stop();
    });

    it('--max-frames 20 --broker URL: ends by itself and publishes', async () => {
      const cam = `max-${kind}`;
      const file = await writePipeline(`max-${kind}`, { status_interval_s: 0, cameras: [camera(cam)] });
      const s = await sub(`beats/${cam}/detections`);
      const p = beats(['run', file, '--max-frames', '20', '--broker', broker.url]);
      const exit = await p.exit;
      expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
      expect(processedFrames(p.stderr(), cam)).toBe(20);
      // `camera X: 20 frames processed, 0 dropped, N detections`: N boxes went out, one message a frame.
      const boxes = Number(new RegExp(`camera ${cam}: 20 frames processed, \\d+ dropped, (\\d+) detections`).exec(p.stderr())?.[1]);
      expect(boxes).toBeGreaterThan(20);
      const received = () => s.messages.reduce((n, m) => n + parse(m.payload).detections.length, 0);
      await waitFor(() => received() >= boxes, 10_000, `${boxes} detections (got ${received()})`);
      expect(received()).toBe(boxes);
      const frames = s.messages.map((m) => parse(m.payload).frame);
      expect(frames.length).toBeGreaterThan(10);
      expect(frames.length).toBeLessThanOrEqual(20);
      expect(frames.every((f, i) => f >= 0 && f < 20 && (i === 0 || f > frames[i - 1]!))).toBe(true);
      expect(s.messages.every((m) => parse(m.payload).camera === cam)).toBe(true);
    });

    it('on a finite file with no --max-frames, ends at the end of the file', async () => {
      const cam = `end-${kind}`;
      // 1 frame a second of the 30 s clip: 30 frames, so the whole file is quick to go through.
      const file = await writePipeline(`end-${kind}`, { status_interval_s: 0, cameras: [camera(cam, { fps: 1 })] });
      const s = await sub(`beats/${cam}/detections`);
      const p = beats(['run', file, '--broker', broker.url]);
      const exit = await p.exit;
      expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
      const processed = processedFrames(p.stderr(), cam);
      expect(processed).toBeGreaterThanOrEqual(29);
      expect(processed).toBeLessThanOrEqual(31);
      await waitFor(() => s.messages.length > 0 && parse(s.messages.at(-1)!.payload).frame >= processed! - 3, 10_000, 'detections from the end of the clip');
      // File time at 1 fps: the last frames are about 30 s into the clip.
      const first = parse(s.messages[0]!.payload);
      const last = parse(s.messages.at(-1)!.payload);
      expect(last.ts - first.ts).toBe((last.frame - first.frame) * 1000);
      expect(last.frame).toBeGreaterThanOrEqual(26);
    });

    it('SIGINT during a looping realtime run: exits 0, leaves no ffmpeg, publishes offline', async () => {
      const cam = `sigint-${kind}`;
      const prefix = `sigint-${kind}`;
      // A unique path for the video, so that its ffmpeg can be found whoever its parent is.
      const clip = `clip-${process.pid}-${Math.random().toString(16).slice(2, 10)}.avi`;
      await symlink(assets.highway, path.join(dir, clip));
      const file = await writePipeline(`sigint-${kind}`, { status_interval_s: 0, mqtt: { prefix }, cameras: [camera(cam, { url: path.join(dir, clip), loop: true, realtime: true })] });
      const s = await sub(`${prefix}/#`);
      const p = beats(['run', file, '--broker', broker.url]);
      await s.waitForMessage((m) => m.topic === `${prefix}/${cam}/detections`, 30_000, `detections (stderr: ${p.stderr()})`);
      const ffmpeg = await pidsMatching(clip);
      expect(ffmpeg.length).toBeGreaterThan(0);

      p.child.kill('SIGINT');
      await waitFor(() => p.child.exitCode !== null || p.child.signalCode !== null, 15_000, 'beats to exit after SIGINT');
      const exit = await p.exit;
      expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
      expect(p.stderr()).toMatch(/SIGINT: stopping/);
      expect(processedFrames(p.stderr(), cam)).toBeGreaterThan(0);
      await waitFor(async () => (await pidsMatching(clip)).length === 0, 5_000, `no ffmpeg left on ${clip}`);
      await s.waitForMessage((m) => m.topic === `${prefix}/availability` && m.payload === 'offline', 10_000, 'offline');
      const availability = s.on(`${prefix}/availability`).map((m) => m.payload);
      expect(availability.at(-1)).toBe('offline');
    });
  });
});

describe.skipIf(needsAssets)('beats run: the demo and a bad source', () => {
  it('`npm start` (pipelines/demo.yaml) says where its embedded broker listens, publishes there, stops on SIGINT', async () => {
    const p = beats(['run', 'pipelines/demo.yaml'], { BEATS_ASSETS_DIR: assetsDir });
    let s: Subscriber | undefined;
    try {
      const url = await waitFor(() => /embedded MQTT broker listening on (mqtt:\/\/\S+)/.exec(p.stderr())?.[1] ?? (p.child.exitCode !== null && 'exited'), 30_000, 'the broker line');
      expect(url, p.stderr()).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
      s = await subscriber(url, 'beats/demo/detections');
      const m = await s.waitForMessage(() => true, 30_000, 'a detection from the demo');
      expect(parse(m.payload).camera).toBe('demo');
    } finally {
      await s?.close();
      p.child.kill('SIGINT');
    }
    expect(await p.exit, p.stderr()).toEqual({ code: 0, signal: null });
  });

  it('a source file that does not exist: non-zero exit, stderr names the file', async () => {
    const missing = path.join(dir, 'no-such-video.avi');
    const file = await writePipeline('nosource', { status_interval_s: 0, mqtt: embeddedAnywhere, cameras: [camera('highway', { url: missing })] });
    const p = beats(['run', file]);
    const exit = await p.exit;
    expect(exit.code, p.stderr()).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(p.stderr()).toContain(missing);
  });
});

describe('beats doctor', () => {
  it('exits 0 and reports ffmpeg and the onnxruntime providers', async () => {
    const p = beats(['doctor']);
    expect((await p.exit).code, p.stdout() + p.stderr()).toBe(0);
    expect(p.stdout()).toMatch(/^ok +ffmpeg: \S+ffmpeg\S* \((system|env|npm)\): ffmpeg version/m);
    expect(p.stdout()).toMatch(/^ok +onnxruntime providers: usable: .*\bcpu\b/m);
  });

  it('--broker on a closed port exits 1 and names the broker', async () => {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const p = beats(['doctor', '--broker', url]);
    expect((await p.exit).code, p.stdout() + p.stderr()).toBe(1);
    expect(p.stdout()).toMatch(new RegExp(`^FAIL MQTT broker: ${url.replace(/[.]/g, '\\.')}\\b`, 'm'));
  });
});

// ---------------------------------------------------------------------------------------------
// The command line itself: version, usage errors, help
// ---------------------------------------------------------------------------------------------

/** Environment variables read under src/ (`env.NAME`, `process.env.NAME`, `env['NAME']`). */
async function variablesReadInSrc(): Promise<Set<string>> {
  const names = new Set<string>();
  const files = (await readdir(path.join(repoRoot, 'src'), { recursive: true })).filter((f) => f.endsWith('.ts'));
  for (const file of files) {
    const text = await readFile(path.join(repoRoot, 'src', file), 'utf8');
    for (const m of text.matchAll(/\benv(?:\?\.|\.|\[['"])([A-Z][A-Z0-9_]+)/g)) names.add(m[1]!);
  }
  // PATH is searched for ffmpeg as every program does; BEATS_DOCTOR_MODEL passes a model from doctor to its own child process.
  for (const internal of ['PATH', 'BEATS_DOCTOR_MODEL']) names.delete(internal);
  return names;
}

describe('the command line', () => {
  it('--version and -V print package.json\'s version and exit 0', async () => {
    const { version } = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const p = beats([flag]);
      expect(await p.exit, p.stderr()).toEqual({ code: 0, signal: null });
      expect(p.stdout().trim()).toBe(version);
    }
  });

  it('usage errors exit 2 and say what was wrong: unknown command or option, missing argument, bad option value, no command', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['run', 'x.yaml', '--bogus'], /unknown option '--bogus'/],
      [['run'], /missing required argument 'file'/],
      [['run', 'x.yaml', '--max-frames', '-3'], /--max-frames.*'-3' is invalid/],
      [['models', 'pull'], /missing required argument 'name'/],
      [[], /Usage: beats/],
    ];
    const runs = cases.map(([args, says]) => ({ args, says, p: beats(args) }));
    for (const { args, says, p } of runs) {
      expect(await p.exit, `beats ${args.join(' ')}: ${p.stderr()}`).toEqual({ code: 2, signal: null });
      expect(p.stderr()).toMatch(says);
    }
  });

  it('--help lists every environment variable the program reads, and the exit codes; exits 0', async () => {
    const p = beats(['--help']);
    expect(await p.exit, p.stderr()).toEqual({ code: 0, signal: null });
    const help = p.stdout();
    const variables = await variablesReadInSrc();
    expect(variables.size).toBeGreaterThan(5);
    for (const name of variables) expect(help, `${name} is read in src/ but not listed by --help`).toMatch(new RegExp(`^  ${name}\\s`, 'm'));
    expect(help).toContain('Exit codes: 0 done; 1 runtime error; 2 invalid command line or pipeline file.');
  });

  it('the README documents the same exit codes', async () => {
    const readme = await readFile(path.join(repoRoot, 'README.md'), 'utf8');
    expect(readme).toMatch(/Exit codes: 0 done, 1 runtime error, 2 invalid command line or pipeline file/);
  });
});
