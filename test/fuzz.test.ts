/**
 * Seeded fuzzing of every input from outside, bounded in count and time: verdict, rollback and
 * adapt/set payloads over a real MQTT broker (the embedded aedes) to a running, adapting pipeline;
 * HTTP requests over raw sockets to its server; pipeline YAML; model cards. Each case must be
 * refused with a reason, the process must stay alive and keep processing, nothing may be trained
 * and nothing may be written half. A failure names the seed and the case, so it can be replayed.
 */
import { Rng as SeededRng } from '../src/source/synthetic/random.js';
import { readdir, readFile, mkdtemp, writeFile, copyFile } from 'node:fs/promises';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRollbackTarget } from '../src/adapt/camera-adapter.js';
import type { ModelStatusMessage } from '../src/publish/messages.js';
import { parsePipeline } from '../src/config/load.js';
import { ConfigError, ModelError } from '../src/errors.js';
import { formatRecord, setLogLimits, setLogSink, type LogRecord, type LogSink } from '../src/log.js';
import { readModelCard } from '../src/model/card.js';
import { Detector } from '../src/model/detector.js';
import type { Frame } from '../src/source/frame.js';
import { letterbox } from '../src/source/geometry.js';
import { repoRoot } from './helpers/assets.js';
import { subscriber, waitFor, type Subscriber } from './helpers/brokers.js';
import { servePipeline, type ServedPipeline } from './helpers/serve.js';

const SEED = Number(process.env.BEATS_FUZZ_SEED ?? 20261206);
const CAMERA = 'fuzz';

/** The synthetic camera's seeded generator (the same sequence on every machine for a seed), with the fuzzer's helpers. */
class Rng extends SeededRng {
  between(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.between(0, 255)));
  }
  /** Text with the characters that break things: controls, escapes, separators, quotes, non-ASCII. */
  text(max: number): string {
    const pieces = ['\n', '\r\n', '\u001b[2J', '\u001b]0;x\u0007', '\u0000', '\u2028', '\u202e', '"', "'", '\\', '{', '}', '[', ']', ':', ',', '#', '&', '*a', '%s', '$(id)', 'é', '漢', '\ud83d\ude00', 'base', 'on', 'off', '1', '-1', '1e309', 'NaN', 'null', ' '];
    let out = '';
    const n = this.between(0, max);
    while (out.length < n) out += this.next() < 0.5 ? this.pick(pieces) : String.fromCharCode(this.between(32, 126));
    return out;
  }
  /** Any JSON value, nested up to `depth`. */
  json(depth: number): unknown {
    const kind = depth <= 0 ? this.between(0, 4) : this.between(0, 6);
    switch (kind) {
      case 0:
        return null;
      case 1:
        return this.pick([0, -1, 1.5, 1e308, -1e308, 2 ** 53, 3, 7]);
      case 2:
        return this.text(20);
      case 3:
        return this.next() < 0.5;
      case 4:
        return this.pick(['correct', 'false_positive', 'wrong_class', 'missed', 'person', 'car']);
      case 5:
        return Array.from({ length: this.between(0, 4) }, () => this.json(depth - 1));
      default:
        return Object.fromEntries(Array.from({ length: this.between(0, 4) }, () => [this.pick(['detection', 'event', 'verdict', 'label', 'box', 'frame', 'x', '__proto__', 'constructor']), this.json(depth - 1)]));
    }
  }
}

/** Verdicts that are wrong by construction: each breaks at least one rule of the payload or the intake. */
function badVerdict(rng: Rng, frame: number): Buffer {
  const box = [10, 10, 60, 50];
  const base = (): Record<string, unknown> => ({ detection: { frame, box: [...box] }, verdict: 'correct' });
  const mutations: Array<() => unknown> = [
    () => rng.bytes(rng.between(0, 200)),
    () => rng.text(300),
    () => rng.json(4),
    () => ({ ...base(), detection: { frame: rng.pick([-1, 1.5, '3', null, 1e12, Number.MAX_SAFE_INTEGER]), box } }),
    () => ({ ...base(), detection: { frame, box: rng.pick([[60, 10, 10, 50], [1, 2, 3], [0, 0, 1e309, 1], ['a', 1, 2, 3], [-5, -5, -1, -1], [1, 1, 1, 1]]) } }),
    () => ({ ...base(), verdict: rng.text(12) + 'x' }),
    () => ({ ...base(), [rng.pick(['extra', 'constructor', 'detections'])]: rng.json(1) }),
    () => ({ ...base(), event: rng.text(8) }),
    () => ({ ...base(), label: 'car' }),
    () => ({ event: `e-${rng.between(0, 1e6)}-${rng.text(6)}`, verdict: rng.pick(['correct', 'false_positive']) }),
    () => ({ detection: { frame }, verdict: 'missed', label: 'person', box: [rng.between(0, 300), rng.between(0, 200), rng.between(301, 600), rng.between(201, 400)] }),
    () => ({ ...base(), verdict: 'wrong_class', label: rng.text(10) + '-no-such-class' }),
    () => ({ ...base(), note: 'x'.repeat(5000) }),
    () => '['.repeat(5000) + ']'.repeat(5000),
    () => `{"detection":${'{"a":'.repeat(3000)}1${'}'.repeat(3000)},"verdict":"correct"}`,
  ];
  const value = rng.pick(mutations)();
  return Buffer.isBuffer(value) ? value : Buffer.from(typeof value === 'string' ? value : JSON.stringify(value) ?? 'undefined');
}

async function connectClient(url: string): Promise<MqttClient> {
  const client = mqtt.connect(url, { clientId: `fuzz-${process.pid}-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 0 });
  client.on('error', () => undefined);
  await waitFor(() => client.connected, 10_000, 'the fuzz client to connect');
  return client;
}

/** Every file under `dir`, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe('fuzzed input against a running, adapting pipeline', () => {
  let served: ServedPipeline;
  let client: MqttClient;
  let sub: Subscriber;
  const records: LogRecord[] = [];
  let previousSink: LogSink;

  beforeAll(async () => {
    previousSink = setLogSink((r) => records.push(r));
    // Every refusal logged, so that each case can be matched to its line; the flood test lowers it.
    setLogLimits({ burst: 100_000 });
    served = await servePipeline(`
status_interval_s: 0
mqtt: { embedded: { port: 0 } }
http: { port: 0 }
feedback: { rate_per_s: 100000, burst: 100000 }
cameras:
  - name: ${CAMERA}
    source: { url: "synthetic:scene=street&seed=11", realtime: true }
    model: beats-s
    adapt: { enabled: true, min_interval_s: 0, n_min: 1 }
`);
    await waitFor(() => served.processed() > 5, 30_000, 'frames');
    client = await connectClient(served.brokerUrl);
    sub = await subscriber(served.brokerUrl, [`beats/${CAMERA}/feedback/rejected`, `beats/${CAMERA}/model/rollback/rejected`, `beats/${CAMERA}/model`]);
  }, 60_000);

  afterAll(async () => {
    setLogLimits();
    client?.end(true);
    await sub?.close();
    await served?.stop();
    setLogSink(previousSink);
  });

  const status = async (): Promise<ModelStatusMessage> => {
    const last = await waitFor(() => sub.on(`beats/${CAMERA}/model`).at(-1), 10_000, 'the model status');
    return JSON.parse(last.payload) as ModelStatusMessage;
  };
  const rejectedTotal = () => Object.values(served.intake.counts(CAMERA)!.rejected).reduce((a, b) => a + (b ?? 0), 0);

  it('300 bad verdicts: each refused with a reason, none accepted', async () => {
    const rng = new Rng(SEED);
    const topic = `beats/${CAMERA}/feedback`;
    for (let i = 0; i < 300; i++) {
      // A frame the intake still holds, so that a verdict is refused for what is wrong with it.
      const frame = served.latestTracked()?.frame.index ?? served.first()?.frame.index ?? 0;
      const payload = badVerdict(rng, frame);
      const before = rejectedTotal();
      const published = sub.on(`${topic}/rejected`).length;
      await client.publishAsync(topic, payload, { qos: 1 });
      const what = `seed ${SEED} verdict case ${i}: ${JSON.stringify(payload.toString('utf8').slice(0, 200))}`;
      await waitFor(() => rejectedTotal() > before && sub.on(`${topic}/rejected`).length > published, 10_000, `the refusal of ${what}`);
      const rejection = JSON.parse(sub.on(`${topic}/rejected`)[published]!.payload) as { reason: string; code: string };
      expect(rejection.reason, what).toMatch(/\w{3,}/);
      expect(rejection.code, what).not.toBe('rate_limited');
    }
    expect(served.accepted).toEqual([]);
  }, 60_000);

  it('150 bad rollbacks: each refused with a reason on rollback/rejected', async () => {
    const rng = new Rng(SEED + 1);
    const topic = `beats/${CAMERA}/model/rollback`;
    let sent = 0;
    for (let i = 0; sent < 150; i++) {
      const text = i % 3 === 0 ? String(rng.between(1, 1e9)) : rng.text(80);
      // `base` is a real rollback; a number is one too, refused only because no such version exists.
      let target: ReturnType<typeof parseRollbackTarget> | undefined;
      try {
        target = parseRollbackTarget(text);
      } catch {
        target = undefined;
      }
      if (target === 'base') continue;
      const before = sub.on(`${topic}/rejected`).length;
      await client.publishAsync(topic, text, { qos: 1 });
      const what = `seed ${SEED + 1} rollback case ${i}: ${JSON.stringify(text)}`;
      await waitFor(() => sub.on(`${topic}/rejected`).length > before, 10_000, `the refusal of ${what}`);
      const rejection = JSON.parse(sub.on(`${topic}/rejected`)[before]!.payload) as { reason: string };
      expect(rejection.reason, what).toMatch(/not a version|no version|version \d+|not found|unknown/i);
      sent++;
    }
  }, 60_000);

  it('150 bad adapt/set payloads: each refused in one escaped log line, adaptation stays on', async () => {
    const rng = new Rng(SEED + 2);
    const topic = `beats/${CAMERA}/adapt/set`;
    let sent = 0;
    while (sent < 150) {
      const text = rng.next() < 0.3 ? `${rng.pick(['on', 'off', 'ON'])}${rng.pick(['\n', '\u001b[2J', '\r', ' x', '\u0000'])}${rng.text(40)}` : rng.text(120);
      if (['on', 'off'].includes(text.trim().toLowerCase())) continue;
      const before = records.length;
      await client.publishAsync(topic, text, { qos: 1 });
      const line = await waitFor(() => records.slice(before).find((r) => r.msg.includes('is neither on nor off')), 10_000, `the refusal of adapt/set ${JSON.stringify(text)}`);
      const written = formatRecord(line, new Date(), 'human');
      expect(written.indexOf('\n'), JSON.stringify(text)).toBe(written.length - 1);
      expect(written).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202e]/);
      sent++;
    }
    expect((await status()).adaptation).toBe('on');
  }, 60_000);

  it('a flood of bad adapt/set payloads is summarised, not written line by line', async () => {
    setLogLimits({ burst: 3, windowMs: 500 });
    const before = records.length;
    for (let i = 0; i < 500; i++) client.publish(`beats/${CAMERA}/adapt/set`, `maybe ${i}`, { qos: 0 });
    await waitFor(() => records.slice(before).some((r) => /similar lines? suppressed/.test(r.msg)), 10_000, 'the summary line');
    const lines = records.slice(before).filter((r) => r.component === 'adapt' && r.level === 'warn');
    expect(lines.filter((r) => r.msg.includes('is neither on nor off')).length).toBeLessThanOrEqual(3 * 4);
    const suppressed = lines.filter((r) => /suppressed/.test(r.msg)).reduce((n, r) => n + Number(r.fields?.suppressed ?? 0), 0);
    expect(suppressed).toBeGreaterThan(400);
    setLogLimits({ burst: 100_000 });
  }, 30_000);

  it('300 fuzzed HTTP requests: each answered with a status and a reason, never 500, the server stays up', async () => {
    const rng = new Rng(SEED + 3);
    const port = Number(new URL(served.url).port);
    const paths = ['/', '/api/cameras', `/api/cameras/${CAMERA}`, `/api/cameras/${CAMERA}/live`, `/api/cameras/${CAMERA}/feedback`, `/api/cameras/${CAMERA}/model`, `/snapshots/${CAMERA}/../../etc/passwd`, '/snapshots/%2e%2e/x.jpg', '/metrics', '/healthz', '/api/stats', '//x', '/api/cameras/NOPE/live', `/cameras/${CAMERA}`];
    for (let i = 0; i < 300; i++) {
      const method = rng.pick(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'G\u0000T', 'TRACE']);
      const target = rng.next() < 0.7 ? rng.pick(paths) + (rng.next() < 0.3 ? `?${encodeURIComponent(rng.text(30))}` : '') : `/${encodeURI(rng.text(60)).replace(/%25/g, '%')}`;
      const host = rng.pick([`127.0.0.1:${port}`, `localhost:${port}`, 'evil.example', rng.text(20).replace(/[\r\n]/g, '')]);
      const body = rng.next() < 0.5 ? badVerdict(rng, 0) : Buffer.alloc(0);
      const headers = [`${method} ${target} HTTP/1.1`, `Host: ${host}`, 'Connection: close'];
      if (rng.next() < 0.5) headers.push(`Content-Type: ${rng.pick(['application/json', 'text/plain', 'application/json; charset=utf-8', rng.text(10).replace(/[\r\n]/g, '')])}`);
      if (rng.next() < 0.3) headers.push(`Origin: ${rng.pick(['null', 'http://evil.example', `http://127.0.0.1:${port}`])}`);
      headers.push(`Content-Length: ${rng.next() < 0.1 ? rng.between(0, 1e9) : body.length}`);
      const request = Buffer.concat([Buffer.from(headers.join('\r\n') + '\r\n\r\n', 'latin1'), body]);
      const what = `seed ${SEED + 3} http case ${i}: ${JSON.stringify(request.toString('latin1').slice(0, 200))}`;
      const response = await rawExchange(port, request, 5000);
      expect(response, what).toMatch(/^HTTP\/1\.1 \d{3} /);
      const status = Number(response.slice(9, 12));
      expect(status, what).not.toBe(500);
      if (status >= 400 && !/^HEAD /.test(request.toString('latin1'))) {
        const text = response.slice(response.indexOf('\r\n\r\n') + 4);
        // Node's own refusals (400, 413 on a bad header) carry no body; the server's carry a reason.
        if (text.length > 0) expect(text, what).toMatch(/"reason":"[^"]{3,}|Bad Request/);
      }
    }
    const health = await rawExchange(port, Buffer.from(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`), 5000);
    expect(health).toMatch(/^HTTP\/1\.1 200 /);
  }, 60_000);

  it('after all of it: the pipeline still runs, nothing was trained, nothing was written half', async () => {
    const processed = served.processed();
    await waitFor(() => served.processed() > processed + 3, 20_000, 'frames after the fuzzing');
    expect(served.accepted).toEqual([]);
    const s = await status();
    expect(s).toMatchObject({ version: 0, accepted: 0, rolled_back: 0, verdicts_used: 0, adaptation: 'on' });
    const files = await filesUnder(path.join(served.dir, 'state'));
    expect(files.filter((f) => /\.tmp-|partial/.test(f))).toEqual([]);
    expect(files.filter((f) => /(^|\/)v\d{6}\.json$/.test(f))).toEqual([]);
    // Every line the pipeline wrote is one line.
    for (const r of records) expect(formatRecord(r, new Date(), 'human').split('\n')).toHaveLength(2);
  }, 30_000);
});

/**
 * Writes `request` on a fresh socket and reads until the server closes it (or `timeoutMs`: a hang
 * fails). The socket is not half-closed: like a browser's, it waits for the answer with its side open.
 */
function rawExchange(port: number, request: Buffer, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms to ${JSON.stringify(request.toString('latin1').slice(0, 120))}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(request);
  });
}

describe('fuzzed pipeline YAML', () => {
  it('300 mutated files: each loads or is a ConfigError with a place and a reason', async () => {
    const rng = new Rng(SEED + 4);
    const demo = await readFile(path.join(repoRoot, 'pipelines', 'demo.yaml'), 'utf8');
    const fragments = ['&a', '*a', '<<: *a', '!!binary', '!!js/function', '{', '}', '[', ']', ': :', '- -', '\t', '"', "'", '|', '>', '%YAML 1.1', '---', '...', '? ', '${HOME}', '${NOPE}', '2147484', '1e400', '-1', '.inf', '.nan', '~', 'ftp://x', 'rtsp://', '\u0000', '\ufeff'];
    let loaded = 0;
    for (let i = 0; i < 300; i++) {
      const lines = demo.split('\n');
      for (let k = rng.between(1, 4); k > 0; k--) {
        const at = rng.between(0, lines.length - 1);
        const op = rng.between(0, 3);
        if (op === 0) lines[at] = lines[at]!.slice(0, rng.between(0, lines[at]!.length)) + rng.pick(fragments) + lines[at]!.slice(rng.between(0, lines[at]!.length));
        else if (op === 1) lines.splice(at, 1);
        else if (op === 2) lines.splice(at, 0, lines[rng.between(0, lines.length - 1)]!);
        else lines[at] = lines[at]!.replace(/\d+(\.\d+)?/, String(rng.pick([0, -1, 1e9, 2147484, 0.5, 1e309])));
      }
      const text = lines.join('\n');
      const what = `seed ${SEED + 4} yaml case ${i}:\n${text}`;
      try {
        parsePipeline(text, '/fuzz/p.yaml', { env: { HOME: '/home/x' } });
        loaded++;
      } catch (err) {
        expect(err, what).toBeInstanceOf(ConfigError);
        const issues = (err as ConfigError).issues;
        expect(issues.length, what).toBeGreaterThan(0);
        for (const issue of issues) expect(issue.message, what).toMatch(/\w{3,}/);
        expect((err as ConfigError).message, what).toMatch(/^\/fuzz\/p\.yaml: invalid pipeline/);
      }
    }
    // The mutations are not all fatal: some files still load (the generator is not only breaking things).
    expect(loaded).toBeGreaterThan(0);
  }, 60_000);
});

describe('fuzzed model cards', () => {
  let dir: string;
  let card: Record<string, unknown>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'beats-fuzz-card-'));
    card = JSON.parse(await readFile(path.join(repoRoot, 'models', 'beats-s.json'), 'utf8')) as Record<string, unknown>;
    await copyFile(path.join(repoRoot, 'models', 'beats-s.onnx'), path.join(dir, 'beats-s.onnx'));
  });

  it('300 mutated cards: each reads or is a ModelError naming the card and the field', async () => {
    const rng = new Rng(SEED + 5);
    const keys = (o: Record<string, unknown>, prefix = ''): string[] => Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? [`${prefix}${k}`, ...keys(v as Record<string, unknown>, `${prefix}${k}.`)] : [`${prefix}${k}`]));
    const fields = keys(card);
    for (let i = 0; i < 300; i++) {
      const mutated = structuredClone(card);
      let text: string;
      if (rng.next() < 0.15) {
        const whole = JSON.stringify(card);
        text = whole.slice(0, rng.between(0, whole.length)) + rng.text(10);
      } else {
        for (let k = rng.between(1, 3); k > 0; k--) {
          const field = rng.pick(fields).split('.');
          let parent = mutated as Record<string, unknown> | undefined;
          for (const part of field.slice(0, -1)) parent = typeof parent?.[part] === 'object' && parent[part] !== null ? (parent[part] as Record<string, unknown>) : undefined;
          if (!parent) continue;
          if (rng.next() < 0.2) delete parent[field.at(-1)!];
          else parent[field.at(-1)!] = rng.json(2);
        }
        text = JSON.stringify(mutated);
      }
      const file = path.join(dir, `case-${i}.json`);
      await writeFile(file, text);
      const what = `seed ${SEED + 5} card case ${i}: ${text.slice(0, 300)}`;
      try {
        const loaded = await readModelCard(file);
        expect(loaded.card.name, what).toMatch(/\w/);
      } catch (err) {
        expect(err, what).toBeInstanceOf(ModelError);
        expect((err as Error).message, what).toContain(file);
        expect((err as Error).message, what).toMatch(/not JSON|invalid model card:\n {2}\S/);
      }
    }
  }, 60_000);

  it('40 valid cards that lie about their ONNX file: each loads and runs, or is a ModelError; never a crash', async () => {
    const rng = new Rng(SEED + 6);
    type Card = { input: Record<string, unknown>; output: unknown; classes: unknown; decoder: unknown };
    const lies: Array<(c: Card) => void> = [
      (c) => (c.input.width = rng.pick([32, 64, 161, 320, 4096])),
      (c) => (c.input.height = rng.pick([32, 96, 119, 240])),
      (c) => (c.input.name = rng.pick(['input', 'x', 'images '])),
      (c) => (c.output = rng.pick(['out', 'logits'])),
      (c) => (c.classes = rng.pick([['person'], ['person', 'car', 'bicycle', 'truck'], Array.from({ length: 80 }, (_, i) => `c${i}`)])),
      (c) => (c.decoder = rng.pick([{ kind: 'beats', stride: rng.pick([1, 2, 8, 16]) }, { kind: 'yolox', strides: [8, 16, 32] }])),
      (c) => (c.input.layout = 'NHWC'),
      (c) => (c.input.channels = 'BGR'),
    ];
    const runtime = { providers: ['cpu'] as const, tensorrt: { fp16: false, engineCache: dir }, threads: 1 };
    let loadedCount = 0;
    for (let i = 0; i < 40; i++) {
      const mutated = structuredClone(card) as unknown as Card;
      for (let k = rng.between(1, 2); k > 0; k--) rng.pick(lies)(mutated);
      const file = path.join(dir, `lie-${i}.json`);
      await writeFile(file, JSON.stringify(mutated));
      const what = `seed ${SEED + 6} lying card case ${i}: ${JSON.stringify({ input: mutated.input, output: mutated.output, classes: (mutated.classes as string[]).length, decoder: mutated.decoder })}`;
      let detector: Detector | undefined;
      try {
        detector = await Detector.load(file, { runtime });
      } catch (err) {
        expect(err, what).toBeInstanceOf(ModelError);
        expect((err as Error).message, what).toMatch(/does not fit|not found|sha256|resiz|input|output|class|decoder/i);
        continue;
      }
      try {
        // Loaded: then it must also run on a frame of its own size without throwing.
        const out = detector.frameOutput();
        const pixels = Buffer.alloc(out.width * out.height * 3, 100);
        const geometry = letterbox(320, 240, out.width, out.height, out.align);
        const frame: Frame = { camera: 'fuzz', index: 0, streamTime: 0, ts: Date.now(), width: 320, height: 240, pixels, pixelFormat: out.pixelFormat, geometry, padValue: out.padValue };
        await detector.detect(frame, { threshold: 0.3, nmsIou: 0.45, maxDetections: 100 });
        loadedCount++;
      } catch (err) {
        expect.fail(`${what}: loaded, then failed on a frame: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        await detector.close();
      }
    }
    expect(loadedCount).toBeLessThan(40);
  }, 60_000);
});
