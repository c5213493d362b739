// Trust in `missed` verdicts: a box must be one a real object could have, and by default come from an operator.
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { FeedbackIntake, type FeedbackOrigin, type FeedbackResult, type IntakeFrame } from '../src/adapt/feedback.js';
import { feedbackPublishers } from '../src/publish/feedback-acl.js';
import { parsePipeline } from '../src/config/load.js';
import { newCameraStats, type CameraStats } from '../src/pipeline/types.js';
import { startEmbeddedBroker } from '../src/publish/broker.js';
import { startHttpServer } from '../src/serve/http.js';
import { LiveMonitor } from '../src/serve/live.js';
import { createMetrics } from '../src/serve/metrics.js';
import { baseModelHistory } from '../src/adapt/model-history.js';
import { sleep, waitFor } from './helpers/brokers.js';

const W = 320;
const H = 240;

/** An intake with frames 0..9 of camera `cam` recorded, one car detected at the left of each. */
function intake(missedFrom?: 'operators' | 'anyone'): FeedbackIntake {
  const i = new FeedbackIntake({ cameras: [{ name: 'cam', classes: ['person', 'car'] }], missedFrom, rate: { perSecond: 1000, burst: 1000 } });
  for (let index = 0; index < 10; index++) {
    const frame: IntakeFrame = {
      camera: 'cam',
      frame: { index, ts: 1_700_000_000_000 + index * 100, width: W, height: H },
      detections: [{ label: 'car', classId: 1, score: 0.9, box: [10, 100, 60, 140], trackId: 1 }],
      tracks: [{ id: 1, box: [10, 100, 60, 140] }],
      events: { messages: [] },
    };
    i.record(frame);
  }
  return i;
}

const missed = (box: number[], label = 'person') => JSON.stringify({ detection: { frame: 5 }, verdict: 'missed', label, box });
const code = (r: FeedbackResult) => (r.accepted ? 'accepted' : r.rejection.code);
const operator: FeedbackOrigin = { via: 'mqtt', operator: true };
const anonymous: FeedbackOrigin = { via: 'mqtt' };

describe('missed verdicts', () => {
  it('are taken from operators only by default; feedback.missed_from: anyone lifts it', () => {
    const strict = intake();
    const refused = strict.submit('cam', missed([200, 60, 230, 150]), anonymous);
    expect(code(refused)).toBe('untrusted');
    expect(refused.accepted || refused.rejection.reason).toMatch(/operators only.*mqtt\.feedback_users.*http\.token/);
    expect(code(strict.submit('cam', missed([200, 60, 230, 150]), { via: 'http' }))).toBe('untrusted');
    expect(code(strict.submit('cam', missed([200, 60, 230, 150]), operator))).toBe('accepted');
    expect(strict.counts('cam')!.rejected.untrusted).toBe(2);
    // Verdicts on real detections need no operator: they can only say something of what the camera saw.
    expect(code(strict.submit('cam', JSON.stringify({ detection: { frame: 5, box: [10, 100, 60, 140] }, verdict: 'false_positive' }), anonymous))).toBe('accepted');
    expect(code(intake('anyone').submit('cam', missed([200, 60, 230, 150]), anonymous))).toBe('accepted');
  });

  it('with a box no real object could have are refused, from operators too, with the reason', () => {
    const i = intake('anyone');
    const cases: Array<[number[], RegExp]> = [
      [[100, 100, 102, 140], /2x40 px: a missed object's box needs sides of at least 4 px/],
      [[0, 0, 320, 200], /covers 83 % of the 320x240 frame/],
      [[10, 10, 310, 25], /more than 10 times longer than wide/],
      [[-40, 10, 40, 60], /outside the 320x240 frame/],
    ];
    for (const [box, reason] of cases) {
      const r = i.submit('cam', missed(box), operator);
      expect(r.accepted, JSON.stringify(box)).toBe(false);
      if (!r.accepted) expect(r.rejection.reason).toMatch(reason);
    }
    expect(i.counts('cam')!.accepted.missed).toBe(0);
    expect(i.counts('cam')!.rejected.implausible).toBe(3);
  });
});

describe('who is an operator', () => {
  it('on MQTT: mqtt.feedback_users, else the embedded broker once it has a login; nobody without users', () => {
    const mqttOf = (yaml: string) => parsePipeline(`${yaml}\ncameras: [{ name: c, source: { url: x.mp4 }, model: m }]`, '/p.yaml').mqtt;
    expect(feedbackPublishers(mqttOf(''), true)).toBeUndefined();
    expect(feedbackPublishers(mqttOf('mqtt: { embedded: { host: 127.0.0.1 } }'), true)).toBeUndefined();
    expect(feedbackPublishers(mqttOf('mqtt: { embedded: { username: site, password: secret-secret } }'), true)).toEqual(['site']);
    expect(feedbackPublishers(mqttOf('mqtt: { embedded: { username: site, password: secret-secret }, feedback_users: [op] }'), true)).toEqual(['op']);
    expect(feedbackPublishers(mqttOf('mqtt: { url: "mqtt://h:1883", username: beats }'), false)).toBeUndefined();
    expect(feedbackPublishers(mqttOf('mqtt: { url: "mqtt://h:1883", feedback_users: [op] }'), false)).toEqual(['op']);
    expect(parsePipeline('cameras: [{ name: c, source: { url: x.mp4 }, model: m }]', '/p.yaml').feedback.missed_from).toBe('operators');
  });

  it('the embedded broker with a login lets only its user publish verdicts (anonymous clients are refused)', async () => {
    const users = feedbackPublishers({ embedded: { host: '127.0.0.1', port: 0, username: 'site', password: 'secret-secret' } }, true)!;
    const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, username: 'site', password: 'secret-secret', feedbackUsers: { prefix: 'beats', users } });
    const watcher = await mqtt.connectAsync(broker.url, { username: 'site', password: 'secret-secret' });
    try {
      const seen: string[] = [];
      watcher.on('message', (_topic, payload) => seen.push(payload.toString()));
      await watcher.subscribeAsync('beats/+/feedback');
      const anonymous = mqtt.connect(broker.url, { reconnectPeriod: 0 });
      const refused = await new Promise<boolean>((resolve) => {
        anonymous.on('error', () => resolve(true));
        anonymous.on('connect', () => resolve(false));
      });
      anonymous.end(true);
      expect(refused).toBe(true);
      await watcher.publishAsync('beats/cam/feedback', 'from site', { qos: 1 });
      await waitFor(() => seen.length >= 1 || undefined, 5000, 'the verdict of the broker user');
      await sleep(100);
      expect(seen).toEqual(['from site']);
    } finally {
      watcher.end(true);
      await broker.close();
    }
  });

  it('over HTTP: the holder of http.token; without a token, a loopback caller is not one', async () => {
    for (const token of ['a-token-of-sixteen-chars', undefined]) {
      const i = intake();
      const stats: CameraStats = newCameraStats();
      const monitor = new LiveMonitor([{ name: 'cam', model: { name: 'm', version: '1' }, classes: ['person', 'car'], stats, live: false, finite: true, stallAfterS: 10 }], { liveFps: 5 });
      const metrics = createMetrics({ monitor, intake: i, mqtt: () => ({ connected: true, published: 0, dropped: 0, reconnects: 0, outboxDepth: 0 }) });
      const server = await startHttpServer({ host: '127.0.0.1', port: 0, token, liveFps: 5, monitor, intake: i, metrics, modelHistory: baseModelHistory(new Map([['cam', { name: 'm', version: '1' }]])), snapshotsDir: '/nonexistent', stats: () => ({}) });
      try {
        const res = await fetch(`${server.url}/api/cameras/cam/feedback`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body: missed([200, 60, 230, 150]),
        });
        const body = (await res.json()) as { accepted: boolean; code?: string };
        if (token) expect(body).toMatchObject({ accepted: true });
        else expect(body).toMatchObject({ accepted: false, code: 'untrusted' });
      } finally {
        await server.close();
        metrics.registry.clear();
      }
    }
  });
});
