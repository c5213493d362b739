import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { feedbackPayloadSchema, type Rejection } from '../src/adapt/feedback.js';
import { isFeedbackTopic } from '../src/publish/feedback-acl.js';
import { assets, needsAssets, repoRoot } from './helpers/assets.js';
import { accepts, brokerKinds, brokerMissing, freePort, mosquittoPath, startBroker, subscriber, waitFor, type Subscriber, type TestBroker } from './helpers/brokers.js';
import { parsePrometheus, sample, servePipeline, trackedDetection, type ServedPipeline } from './helpers/serve.js';

const RING = 100;
const camera = (extra = '') => `
status_interval_s: 0
http: { port: 0 }
feedback: { ring_frames: ${RING}, rate_per_s: 5, burst: 20 }
${extra}
cameras:
  - name: highway
    source: { url: ${JSON.stringify(assets.highway)}, loop: true, realtime: true }
    model: yolox-nano
`;

async function connect(url: string, options: { username?: string; password?: string } = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, { ...options, clientId: `test-feedback-${Math.random().toString(16).slice(2, 10)}`, reconnectPeriod: 0 });
  client.on('error', () => undefined);
  await waitFor(() => client.connected, 10_000, `a client to connect to ${url}`);
  return client;
}

function rejectionsOf(sub: Subscriber): Rejection[] {
  return sub.on('beats/highway/feedback/rejected').map((m) => JSON.parse(m.payload) as Rejection);
}

describe('the feedback payload schema', () => {
  it('needs exactly one of detection and event, and the fields each verdict needs', () => {
    const box = [10, 10, 50, 40];
    const ok = (v: unknown) => feedbackPayloadSchema.safeParse(v).success;
    expect(ok({ detection: { frame: 3, box }, verdict: 'correct' })).toBe(true);
    expect(ok({ event: 'e1', verdict: 'wrong_class', label: 'truck' })).toBe(true);
    expect(ok({ detection: { frame: 3 }, verdict: 'missed', label: 'car', box })).toBe(true);
    expect(ok({ verdict: 'correct' })).toBe(false);
    expect(ok({ detection: { frame: 3, box }, event: 'e1', verdict: 'correct' })).toBe(false);
    expect(ok({ detection: { frame: 3 }, verdict: 'correct' })).toBe(false);
    expect(ok({ detection: { frame: 3, box }, verdict: 'correct', label: 'car' })).toBe(false);
    expect(ok({ detection: { frame: 3 }, verdict: 'missed', label: 'car' })).toBe(false);
    expect(ok({ event: 'e1', verdict: 'missed', label: 'car', box })).toBe(false);
    expect(ok({ detection: { frame: 3, box: [50, 10, 10, 40] }, verdict: 'correct' })).toBe(false);
    expect(ok({ detection: { frame: -1, box }, verdict: 'correct' })).toBe(false);
  });

  it('knows the feedback topic from the rejected one', () => {
    expect(isFeedbackTopic('beats/highway/feedback', 'beats')).toBe(true);
    expect(isFeedbackTopic('site/beats/highway/feedback', 'site/beats')).toBe(true);
    expect(isFeedbackTopic('beats/highway/feedback/rejected', 'beats')).toBe(false);
    expect(isFeedbackTopic('beats/feedback', 'beats')).toBe(false);
    expect(isFeedbackTopic('other/highway/feedback', 'beats')).toBe(false);
  });
});

describe.skipIf(needsAssets).each(brokerKinds)('feedback over MQTT on %s', (kind) => {
  let broker: TestBroker;
  let served: ServedPipeline;
  let sub: Subscriber;
  let sender: MqttClient;
  const skip = brokerMissing(kind);

  beforeAll(async () => {
    if (skip) return;
    broker = await startBroker(kind);
    served = await servePipeline(camera(`mqtt: { url: ${broker.url} }`));
    sub = await subscriber(broker.url, 'beats/highway/feedback/rejected');
    sender = await connect(broker.url);
    await waitFor(() => served.latestTracked(), 60_000, 'a frame with a tracked detection');
  });
  afterAll(async () => {
    sender?.end(true);
    await sub?.close();
    await served?.stop();
    await broker?.stop();
  });

  const send = (payload: unknown) => sender.publishAsync('beats/highway/feedback', typeof payload === 'string' ? payload : JSON.stringify(payload), { qos: 1 });

  it.skipIf(skip)('a verdict on a detection is resolved to its detection, track and frames, and emitted on accepted$', async () => {
    // A track confirmed on this very frame has no other buffered frame yet: take one seen for a while.
    const d = await waitFor(() => {
      const latest = served.latestTracked();
      const candidate = latest && trackedDetection(latest);
      return candidate && candidate.hits >= 8 ? candidate : undefined;
    }, 30_000, 'a detection of a track matched on 8 frames');
    const before = served.accepted.length;
    await send({ detection: { frame: d.frame, box: d.box }, verdict: 'correct' });
    const f = await waitFor(() => served.accepted[before], 10_000, 'the verdict on accepted$');
    expect(f).toMatchObject({ camera: 'highway', verdict: 'correct', trackId: d.trackId, origin: { via: 'mqtt' } });
    expect(f.frame.index).toBe(d.frame);
    expect([f.frame.width, f.frame.height]).toEqual([320, 240]);
    expect(f.detection!.label).toBe(d.label);
    // The track's other buffered frames come along (labels travel along tracks, BEATS.md).
    expect(f.trackFrames).toContain(d.frame);
    expect(f.trackFrames.length).toBeGreaterThan(1);
    expect(f.trackFrames).toEqual([...f.trackFrames].sort((a, b) => a - b));
  });

  it.skipIf(skip)('a verdict from the HTTP endpoint goes through the same intake to the same accepted$', async () => {
    const d = trackedDetection(served.latestTracked()!);
    const right = d.label === 'truck' ? 'bus' : 'truck';
    const before = served.accepted.length;
    const response = await fetch(`${served.url}/api/cameras/highway/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'wrong_class', label: right }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ accepted: true, verdict: 'wrong_class', frame: d.frame, track_id: d.trackId, label: right });
    const f = served.accepted[before]!;
    expect(f).toMatchObject({ verdict: 'wrong_class', trackId: d.trackId, origin: { via: 'http' }, label: { name: right } });
    expect(f.label!.classId).toBeGreaterThanOrEqual(0);
    // A rejected HTTP verdict is also said on the MQTT rejected topic, like an MQTT one.
    const bad = await fetch(`${served.url}/api/cameras/highway/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'wrong_class', label: 'http-unicorn' }),
    });
    expect(bad.status).toBe(422);
    expect(await bad.json()).toMatchObject({ accepted: false, code: 'unknown_label' });
    await sub.waitForMessage((m) => m.payload.includes('http-unicorn'), 10_000, 'the HTTP rejection on MQTT');
    expect(served.accepted.length).toBe(before + 1);
  });

  it.skipIf(skip)('a verdict on an event is resolved to the event and its track', async () => {
    // An event still open: its track has frames in the buffer.
    const open = await waitFor(
      () => {
        const ended = new Set(served.events.filter((m) => m.type === 'end').map((m) => m.after.id));
        return [...served.events].reverse().find((m) => !ended.has(m.after.id) && m.after.stationary === false);
      },
      60_000,
      'an open event',
    );
    const before = served.accepted.length;
    await send({ event: open.after.id, verdict: 'false_positive' });
    const f = await waitFor(() => served.accepted[before], 10_000, 'the event verdict on accepted$');
    expect(f.verdict).toBe('false_positive');
    expect(f.event!.id).toBe(open.after.id);
    expect(f.event!.label).toBe(open.after.label);
    // The intake keeps thousands of events: of each, only what a verdict needs.
    expect(Object.keys(f.event!).sort()).toEqual(['id', 'label']);
    expect(f.trackId).toBeDefined();
    expect(f.detection!.trackId).toBe(f.trackId);
    expect(f.trackFrames.length).toBeGreaterThan(0);
    expect(f.trackFrames.at(-1)).toBe(f.frame.index);
  });

  it.skipIf(skip)('every bad verdict is rejected on feedback/rejected with its reason, and none reaches accepted$', async () => {
    await waitFor(() => served.processed() > RING + 20, 60_000, `more than ${RING + 20} frames`);
    const first = served.first()!;
    const d = trackedDetection(served.latestTracked()!);
    const cases: Array<{ name: string; payload: unknown; reason: RegExp }> = [
      { name: 'malformed JSON', payload: '{"verdict": "correct", ', reason: /^malformed JSON/ },
      { name: 'not an object', payload: '[1, 2, 3]', reason: /^invalid payload/ },
      { name: 'unknown verdict', payload: { detection: { frame: d.frame, box: d.box }, verdict: 'maybe' }, reason: /^invalid payload: verdict: / },
      { name: 'missing label', payload: { detection: { frame: d.frame, box: d.box }, verdict: 'wrong_class' }, reason: /label: is required for wrong_class/ },
      { name: 'unknown label', payload: { detection: { frame: d.frame, box: d.box }, verdict: 'wrong_class', label: 'unicorn' }, reason: /unknown label "unicorn"/ },
      { name: 'label for a correct verdict', payload: { detection: { frame: d.frame, box: d.box }, verdict: 'correct', label: 'car' }, reason: /label: is only for wrong_class and missed/ },
      { name: 'unknown key', payload: { detection: { frame: d.frame, box: d.box }, verdict: 'correct', colour: 'red' }, reason: /colour: unknown key/ },
      { name: 'box out of frame', payload: { detection: { frame: d.frame, box: [300, 200, 400, 260] }, verdict: 'correct' }, reason: /outside the 320x240 frame/ },
      { name: 'missed box out of frame', payload: { detection: { frame: d.frame }, verdict: 'missed', label: 'car', box: [-50, 10, 20, 30] }, reason: /outside the 320x240 frame/ },
      { name: 'missed without box', payload: { detection: { frame: d.frame }, verdict: 'missed', label: 'car' }, reason: /box: is required for missed/ },
      // No mqtt.feedback_users here: a missed verdict, which names no detection, needs an operator.
      { name: 'missed from a client not known as an operator', payload: { detection: { frame: d.frame }, verdict: 'missed', label: 'car', box: [200, 60, 230, 150] }, reason: /^missed verdicts are taken from operators only/ },
      { name: 'missed with an implausible box', payload: { detection: { frame: d.frame }, verdict: 'missed', label: 'car', box: [0, 0, 320, 230] }, reason: /covers 96 % of the 320x240 frame/ },
      { name: 'box that matches no detection', payload: { detection: { frame: d.frame, box: [0, 0, 1.5, 1.5] }, verdict: 'correct' }, reason: /no detection of frame \d+ matches the box/ },
      { name: 'unknown event', payload: { event: 'no-such-event', verdict: 'correct' }, reason: /unknown event "no-such-event"/ },
      { name: 'stale frame', payload: { detection: { frame: first.frame.index, box: [10, 10, 50, 50] }, verdict: 'correct' }, reason: new RegExp(`^stale frame ${first.frame.index}`) },
      { name: 'frame not processed yet', payload: { detection: { frame: 99_999_999, box: d.box }, verdict: 'correct' }, reason: /frame 99999999 has not been processed/ },
      { name: 'detection and event', payload: { detection: { frame: d.frame, box: d.box }, event: 'x', verdict: 'correct' }, reason: /give either detection or event/ },
    ];
    const acceptedBefore = served.accepted.length;
    for (const c of cases) {
      await send(c.payload);
      const expected = typeof c.payload === 'string' ? (JSON.parse(JSON.stringify(tryJson(c.payload))) as unknown) : c.payload;
      const rejection = await waitFor(() => rejectionsOf(sub).find((r) => JSON.stringify(r.received) === JSON.stringify(expected)), 10_000, `the rejection of "${c.name}"`);
      expect(rejection.reason, c.name).toMatch(c.reason);
    }
    expect(served.accepted.length).toBe(acceptedBefore);
  });

  it.skipIf(skip)('a flood is rate limited, and rate-limited verdicts are rejected too', async () => {
    const acceptedBefore = served.accepted.length;
    const n = 50;
    await Promise.all(Array.from({ length: n }, (_, i) => send(`flood-${i}`)));
    const flood = await waitFor(
      () => {
        const got = rejectionsOf(sub).filter((r) => typeof r.received === 'string' && r.received.startsWith('flood-'));
        return got.length >= n && got;
      },
      20_000,
      `${n} rejections`,
    );
    const limited = flood.filter((r) => r.reason === 'rate limited');
    // The bucket holds at most 20: most of a burst of 50 is refused unread, the rest as malformed.
    expect(limited.length).toBeGreaterThan(0);
    expect(flood.every((r) => r.reason === 'rate limited' || r.reason.startsWith('malformed JSON'))).toBe(true);
    expect(served.accepted.length).toBe(acceptedBefore);
    const { samples } = parsePrometheus(await (await fetch(`${served.url}/metrics`)).text());
    expect(sample(samples, 'beats_feedback_rejected_total', { camera: 'highway', code: 'rate_limited' })).toBeGreaterThanOrEqual(limited.length);
    expect(sample(samples, 'beats_feedback_accepted_total', { camera: 'highway', verdict: 'correct' })).toBeGreaterThanOrEqual(1);
  });
});

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

describe.skipIf(needsAssets)('feedback users', () => {
  it('the embedded broker refuses verdicts from a user not in mqtt.feedback_users', async () => {
    const port = await freePort();
    const served = await servePipeline(camera(`mqtt: { embedded: { host: 127.0.0.1, port: ${port} }, feedback_users: [operator] }`));
    const watcher = await subscriber(served.brokerUrl, 'beats/highway/feedback');
    const intruder = await connect(served.brokerUrl, { username: 'dashboard' });
    const anonymous = await connect(served.brokerUrl);
    const operator = await connect(served.brokerUrl, { username: 'operator' });
    try {
      const d = trackedDetection(await waitFor(() => served.latestTracked(), 60_000, 'a tracked detection'));
      // The refused ones are valid verdicts: were they let through, they would be accepted.
      intruder.publish('beats/highway/feedback', JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'false_positive' }), { qos: 0 });
      anonymous.publish('beats/highway/feedback', JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'wrong_class', label: 'bus' }), { qos: 0 });
      await operator.publishAsync('beats/highway/feedback', JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'correct' }), { qos: 1 });
      await waitFor(() => served.accepted.find((f) => f.verdict === 'correct'), 10_000, "the operator's verdict");
      await waitFor(() => watcher.messages.length >= 1, 5000, 'the watcher to see the verdict');
      // Published after the refused ones, and on the same broker: had those passed, they would be here.
      expect(served.accepted.map((f) => f.verdict)).toEqual(['correct']);
      expect(watcher.messages.map((m) => JSON.parse(m.payload) as { verdict: string }).map((m) => m.verdict)).toEqual(['correct']);
    } finally {
      intruder.end(true);
      anonymous.end(true);
      operator.end(true);
      await watcher.close();
      await served.stop();
    }
  });

  // The README's Mosquitto ACL, as written there: operators may send verdicts, dashboards may not.
  it.skipIf(!mosquittoPath)('Mosquitto with the README ACL takes verdicts from operators only', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-acl-'));
    const port = await freePort();
    const passwords = path.join(dir, 'passwd');
    const acl = path.join(dir, 'acl');
    const run = promisify(execFile);
    await writeFile(passwords, '');
    for (const [user, password] of [['beats', 'pipeline-secret'], ['operator', 'operator-secret'], ['viewer', 'viewer-secret']] as const) {
      await run('mosquitto_passwd', ['-b', passwords, user, password]);
    }
    await writeFile(acl, await readmeAcl());
    await chmod(passwords, 0o600);
    await chmod(acl, 0o600);
    // As root (CI), Mosquitto switches to its own user, which cannot read a private temporary folder.
    const user = process.getuid?.() === 0 ? 'user root\n' : '';
    await writeFile(path.join(dir, 'mosquitto.conf'), `${user}listener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${passwords}\nacl_file ${acl}\n`);
    const mosquitto: ChildProcess = spawn(mosquittoPath!, ['-c', path.join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    mosquitto.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    let served: ServedPipeline | undefined;
    const clients: MqttClient[] = [];
    try {
      await waitFor(() => accepts(port), 10_000, 'mosquitto to listen').catch((err: unknown) => {
        throw new Error(`${String(err)}: ${stderr.trim()}`);
      });
      const url = `mqtt://127.0.0.1:${port}`;
      served = await servePipeline(camera(`mqtt: { url: ${url}, username: beats, password: pipeline-secret }`));
      const dashboard = await connect(url, { username: 'viewer', password: 'viewer-secret' });
      const operator = await connect(url, { username: 'operator', password: 'operator-secret' });
      clients.push(dashboard, operator);
      const d = trackedDetection(await waitFor(() => served!.latestTracked(), 60_000, 'a tracked detection'));
      await dashboard.publishAsync('beats/highway/feedback', JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'false_positive' }), { qos: 1 });
      await operator.publishAsync('beats/highway/feedback', JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'correct' }), { qos: 1 });
      await waitFor(() => served!.accepted.find((f) => f.verdict === 'correct'), 10_000, "the operator's verdict");
      expect(served.accepted.map((f) => f.verdict)).toEqual(['correct']);
      // The operator also reads why a verdict was refused.
      const readsRejections = mqtt.connect(url, { username: 'operator', password: 'operator-secret', reconnectPeriod: 0 });
      clients.push(readsRejections);
      readsRejections.on('error', () => undefined);
      const got: string[] = [];
      readsRejections.on('message', (_t, payload) => got.push(payload.toString()));
      await waitFor(() => readsRejections.connected, 10_000, 'operator reader');
      await readsRejections.subscribeAsync('beats/highway/feedback/rejected', { qos: 1 });
      await operator.publishAsync('beats/highway/feedback', '{"acl-check": ', { qos: 1 });
      await waitFor(() => got.some((p) => p.includes('acl-check')), 10_000, 'the rejection to reach the operator');
    } finally {
      for (const c of clients) c.end(true);
      await served?.stop();
      mosquitto.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The ACL of README.md, "Who may send verdicts", exactly as written there. */
async function readmeAcl(): Promise<string> {
  const readme = await readFile(path.join(repoRoot, 'README.md'), 'utf8');
  const block = readme.split('```').find((b) => b.includes('topic write beats/+/feedback'));
  if (!block) throw new Error('README.md has no ACL block with "topic write beats/+/feedback"');
  return block.split('\n').map((l) => l.replace(/^ {2}/, '')).join('\n').trim() + '\n';
}
