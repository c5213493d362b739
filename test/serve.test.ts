import jpeg from 'jpeg-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePipeline } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';
import type { CameraHealth, LiveFrame, RecentEvent } from '../src/serve/live.js';
import type { ModelHistory } from '../src/adapt/model-history.js';
import { assets, needsAssets } from './helpers/assets.js';
import { freePort, waitFor } from './helpers/brokers.js';
import { parsePrometheus, sample, servePipeline, trackedDetection, type ServedPipeline } from './helpers/serve.js';

const TOKEN = 'test-token-0123456789abcdef';
const highway = (name = 'highway', extra = 'loop: true, realtime: true') => `
  - name: ${name}
    source: { url: ${JSON.stringify(assets.highway)}, ${extra} }
    model: yolox-nano`;

interface Health {
  status: string;
  cameras: Record<string, CameraHealth>;
}

async function health(url: string): Promise<{ status: number; body: Health }> {
  const response = await fetch(`${url}/healthz`);
  return { status: response.status, body: (await response.json()) as Health };
}

async function metrics(url: string) {
  const response = await fetch(`${url}/metrics`);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return parsePrometheus(await response.text());
}

describe('the http and feedback settings', () => {
  const issues = (yaml: string) => {
    try {
      parsePipeline(`${yaml}\ncameras: [{ name: a, source: { url: "testsrc:" }, model: m }]`, 'p.yaml');
    } catch (err) {
      if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
      throw err;
    }
    return [];
  };

  it('has safe defaults and no server unless asked', () => {
    const config = parsePipeline('cameras: [{ name: a, source: { url: "testsrc:" }, model: m }]', 'p.yaml');
    expect(config.http).toBeUndefined();
    expect(config.feedback).toEqual({ ring_frames: 300, rate_per_s: 5, burst: 20, missed_from: 'operators' });
    const withHttp = parsePipeline('http: {}\ncameras: [{ name: a, source: { url: "testsrc:" }, model: m }]', 'p.yaml');
    expect(withHttp.http).toEqual({ port: 8080, host: '127.0.0.1', live_fps: 5 });
  });

  it('needs a token off loopback, and says where', () => {
    expect(issues('http: { host: 0.0.0.0 }')).toEqual([expect.stringMatching(/^http\.token: is required when http\.host is 0\.0\.0\.0, not loopback/)]);
    expect(issues(`http: { host: 0.0.0.0, token: ${TOKEN} }`)).toEqual([]);
    expect(issues('http: { host: localhost }')).toEqual([]);
    expect(issues('http: { host: "::1" }')).toEqual([]);
    expect(issues('http: { token: short }')).toEqual([expect.stringMatching(/^http\.token: must be at least 16 characters/)]);
  });

  it('rejects unknown keys and bad values at their path', () => {
    expect(issues('http: { prot: 80 }')).toEqual(['http.prot: unknown key']);
    expect(issues('http: { port: 70000 }')).toEqual([expect.stringMatching(/^http\.port: /)]);
    expect(issues('http: { live_fps: 0 }')).toEqual([expect.stringMatching(/^http\.live_fps: /)]);
    expect(issues('feedback: { ring_frames: 0 }')).toEqual([expect.stringMatching(/^feedback\.ring_frames: /)]);
    expect(issues('feedback: { burst: 2.5 }')).toEqual([expect.stringMatching(/^feedback\.burst: /)]);
    expect(issues('mqtt: { feedback_users: [] }')).toEqual([expect.stringMatching(/^mqtt\.feedback_users: /)]);
  });
});

describe.skipIf(needsAssets)('the HTTP server of a running pipeline', () => {
  let served: ServedPipeline;
  beforeAll(async () => {
    served = await servePipeline(`
status_interval_s: 0
mqtt: { embedded: { port: 0 } }
http: { port: 0, token: ${TOKEN}, live_fps: 1 }
cameras:${highway()}
`);
    // Inference runs off the event loop: the server answers while the first frame is still in the detector.
    await waitFor(async () => (await health(served.url)).status === 200 && served.processed() > 0, 60_000, '/healthz to say 200 and a frame processed');
  });
  afterAll(async () => served?.stop());

  it('/healthz says 200 while the camera runs', async () => {
    const { status, body } = await health(served.url);
    expect(status).toBe(200);
    expect(body.status).toBe('ok');
    expect(body.cameras.highway).toMatchObject({ state: 'running', ok: true, live: false, restarts: 0 });
    expect(body.cameras.highway!.last_frame_age_s).toBeGreaterThanOrEqual(0);
  });

  it('/metrics is Prometheus text, and its counters move', async () => {
    const first = await metrics(served.url);
    expect(first.types.get('beats_frames_processed_total')).toBe('counter');
    expect(first.types.get('beats_inference_seconds')).toBe('histogram');
    expect(first.types.get('beats_mqtt_connected')).toBe('gauge');
    const processed = sample(first.samples, 'beats_frames_processed_total', { camera: 'highway' })!;
    expect(processed).toBeGreaterThan(0);
    expect(sample(first.samples, 'beats_frames_in_total', { camera: 'highway' })).toBeGreaterThanOrEqual(processed);
    expect(sample(first.samples, 'beats_frames_dropped_total', { camera: 'highway' })).toBeGreaterThanOrEqual(0);
    expect(sample(first.samples, 'beats_decode_restarts_total', { camera: 'highway' })).toBe(0);
    expect(sample(first.samples, 'beats_inference_seconds_count', { camera: 'highway' })).toBeGreaterThan(0);
    expect(sample(first.samples, 'beats_inference_seconds_bucket', { camera: 'highway', le: '+Inf' })).toBe(sample(first.samples, 'beats_inference_seconds_count', { camera: 'highway' }));
    // A frame's latency (decoded to MQTT) holds its inference: the same frames, the larger sum.
    expect(first.types.get('beats_frame_latency_seconds')).toBe('histogram');
    expect(sample(first.samples, 'beats_frame_latency_seconds_count', { camera: 'highway' })).toBe(sample(first.samples, 'beats_inference_seconds_count', { camera: 'highway' }));
    expect(sample(first.samples, 'beats_frame_latency_seconds_sum', { camera: 'highway' })).toBeGreaterThan(sample(first.samples, 'beats_inference_seconds_sum', { camera: 'highway' })!);
    expect(sample(first.samples, 'beats_frames_failed_total', { camera: 'highway' })).toBe(0);
    expect(sample(first.samples, 'beats_mqtt_connected')).toBe(1);
    expect(sample(first.samples, 'beats_outbox_depth')).toBeGreaterThanOrEqual(0);
    expect(sample(first.samples, 'beats_model_info', { camera: 'highway', name: 'yolox-nano' })).toBe(1);
    expect(first.samples.find((s) => s.name === 'beats_model_info')!.labels.version).toMatch(/\S/);
    expect(sample(first.samples, 'beats_source_state', { camera: 'highway', state: 'running' })).toBe(1);
    expect(sample(first.samples, 'beats_healthy', { camera: 'highway' })).toBe(1);
    expect(first.samples.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
    const later = await waitFor(
      async () => {
        const m = await metrics(served.url);
        return sample(m.samples, 'beats_frames_processed_total', { camera: 'highway' })! > processed && m;
      },
      30_000,
      'the processed counter to move',
    );
    expect(sample(later.samples, 'beats_mqtt_published_total')).toBeGreaterThan(0);
  });

  it('/api/stats has the same counters as JSON', async () => {
    const stats = (await (await fetch(`${served.url}/api/stats`)).json()) as {
      cameras: Record<string, { processed: number; frames_in: number; source_state: string; feedback: { accepted: Record<string, number> } }>;
      mqtt: { connected: boolean; outboxDepth: number };
    };
    expect(stats.cameras.highway!.processed).toBeGreaterThan(0);
    expect(stats.cameras.highway!.frames_in).toBeGreaterThanOrEqual(stats.cameras.highway!.processed);
    expect(stats.cameras.highway!.source_state).toBe('running');
    expect(stats.cameras.highway!.feedback.accepted).toHaveProperty('correct');
    expect(stats.mqtt.connected).toBe(true);
  });

  it('a verdict needs the bearer token: 401 without it or with a wrong one, 200 with it', async () => {
    const d = trackedDetection(await waitFor(() => served.latestTracked(), 60_000, 'a tracked detection'));
    const body = JSON.stringify({ detection: { frame: d.frame, box: d.box }, verdict: 'correct' });
    const post = (headers: Record<string, string>) => fetch(`${served.url}/api/cameras/highway/feedback`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    const before = served.accepted.length;

    const none = await post({});
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await none.json()).toEqual({ error: 'unauthorized', reason: expect.stringMatching(/bearer token is required/) });
    const wrong = await post({ authorization: 'Bearer not-the-token-at-all' });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ error: 'unauthorized', reason: 'wrong token' });
    const basic = await post({ authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` });
    expect(basic.status).toBe(401);
    expect(served.accepted.length).toBe(before);

    const right = await post({ authorization: `Bearer ${TOKEN}` });
    expect(right.status).toBe(200);
    expect(await right.json()).toMatchObject({ accepted: true, verdict: 'correct', frame: d.frame, track_id: d.trackId });
    expect(served.accepted.length).toBe(before + 1);
    expect(served.accepted.at(-1)!.origin.via).toBe('http');
  });

  it('a verdict must be JSON and come from this site', async () => {
    const url = `${served.url}/api/cameras/highway/feedback`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const form = await fetch(url, { method: 'POST', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body: 'verdict=correct' });
    expect(form.status).toBe(415);
    const foreign = await fetch(url, { method: 'POST', headers: { ...auth, 'content-type': 'application/json', origin: 'http://evil.example' }, body: '{}' });
    expect(foreign.status).toBe(403);
    expect(await foreign.json()).toEqual({ error: 'forbidden', reason: expect.stringMatching(/cross-origin/) });
    const unknownCamera = await fetch(`${served.url}/api/cameras/nope/feedback`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
    expect(unknownCamera.status).toBe(404);
    const huge = await fetch(url, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: 'x'.repeat(70_000) });
    expect(huge.status).toBe(413);
    const get = await fetch(url);
    expect(get.status).toBe(405);
  });

  it('the live frame: a JPEG of the picture the model saw, with the boxes in source pixels; viewers share renders', async () => {
    const frames = await Promise.all(Array.from({ length: 5 }, async () => {
      const response = await fetch(`${served.url}/api/cameras/highway/live`);
      expect(response.status).toBe(200);
      return (await response.json()) as LiveFrame;
    }));
    // Asked at once, they get one render: viewers never make the server encode more.
    expect(new Set(frames.map((f) => f.frame)).size).toBe(1);
    const frame = frames[0]!;
    expect([frame.width, frame.height]).toEqual([320, 240]);
    expect(frame.image).toMatch(/^data:image\/jpeg;base64,/);
    const picture = jpeg.decode(Buffer.from(frame.image.split(',')[1]!, 'base64'));
    expect([picture.width, picture.height]).toEqual([416, 312]);
    const tracked = await waitFor(
      async () => {
        const f = (await (await fetch(`${served.url}/api/cameras/highway/live`)).json()) as LiveFrame;
        return f.detections.some((d) => d.track_id !== undefined) && f;
      },
      30_000,
      'a live frame with a tracked detection',
    );
    for (const d of tracked.detections) {
      expect(d.box[0]).toBeGreaterThanOrEqual(0);
      expect(d.box[2]).toBeLessThanOrEqual(320);
      expect(d.box[3]).toBeLessThanOrEqual(240);
      expect(d.score).toBeGreaterThanOrEqual(0.35);
      if (d.track_id !== undefined) expect(tracked.tracks.find((t) => t.id === d.track_id)?.confirmed).toBe(true);
    }
  });

  it('recent events with their snapshots, from the snapshot store', async () => {
    const events = await waitFor(
      async () => {
        const list = (await (await fetch(`${served.url}/api/cameras/highway/events`)).json()) as Array<RecentEvent & { snapshot: string | null }>;
        return list.some((e) => e.snapshot) && list;
      },
      60_000,
      'an event with a snapshot',
    );
    const withSnapshot = events.find((e) => e.snapshot)!;
    expect(served.events.some((m) => m.after.id === withSnapshot.id)).toBe(true);
    expect(withSnapshot.snapshot).toBe(`/snapshots/highway/${withSnapshot.id}.jpg`);
    const response = await fetch(`${served.url}${withSnapshot.snapshot}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/jpeg');
    const image = jpeg.decode(Buffer.from(await response.arrayBuffer()));
    expect([image.width, image.height]).toEqual([416, 312]);
    // Nothing outside the store is reachable.
    for (const bad of ['/snapshots/highway/..%2F..%2Fpipeline.yaml', '/snapshots/highway/../../pipeline.yaml', '/snapshots/nope/x.jpg', '/snapshots/highway/.hidden.jpg']) {
      expect((await fetch(`${served.url}${bad}`)).status, bad).toBe(404);
    }
  });

  it('the pages, their scripts, and the model panel saying adaptation is off', async () => {
    const index = await fetch(`${served.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(await index.text()).toContain('<title>Beats</title>');
    const page = await fetch(`${served.url}/cameras/highway`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/static/camera.js');
    expect((await fetch(`${served.url}/cameras/nope`)).status).toBe(404);
    const script = await fetch(`${served.url}/static/camera.js`);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    const cameras = (await (await fetch(`${served.url}/api/cameras`)).json()) as Array<{ name: string; classes: string[] }>;
    expect(cameras.map((c) => c.name)).toEqual(['highway']);
    expect(cameras[0]!.classes).toContain('car');
    const model = (await (await fetch(`${served.url}/api/cameras/highway/model`)).json()) as ModelHistory;
    expect(model.adaptation).toBe('off');
    expect(model.model.name).toBe('yolox-nano');
    expect(model.versions).toEqual([expect.objectContaining({ version: model.model.version, current: true })]);
    const info = (await (await fetch(`${served.url}/api/info`)).json()) as { auth: string; live_fps: number };
    expect(info).toMatchObject({ auth: 'token', live_fps: 1 });
  });
});

describe.skipIf(needsAssets)('/healthz when a camera is not running', () => {
  it('503 while a live source reconnects, naming it; the other camera stays running', async () => {
    const closed = await freePort();
    const served = await servePipeline(`
status_interval_s: 0
mqtt: { embedded: { port: 0 } }
http: { port: 0 }
cameras:${highway()}
  - name: door
    source: { url: http://127.0.0.1:${closed}/x.ts, stall_timeout_s: 2, reconnect: { initial_s: 0.2, max_s: 0.5 } }
    model: yolox-nano
`);
    try {
      const { status, body } = await waitFor(
        async () => {
          const h = await health(served.url);
          return h.body.cameras.door?.state === 'reconnecting' && h.body.cameras.highway?.state === 'running' && h;
        },
        60_000,
        'door reconnecting while highway runs',
      );
      expect(status).toBe(503);
      expect(body.status).toBe('unhealthy');
      expect(body.cameras.door).toMatchObject({ ok: false, live: true });
      expect(body.cameras.highway).toMatchObject({ ok: true });
      const restarted = await waitFor(
        async () => {
          const m = await metrics(served.url);
          return sample(m.samples, 'beats_decode_restarts_total', { camera: 'door' })! >= 2 && m;
        },
        30_000,
        'restarts to be counted',
      );
      expect(sample(restarted.samples, 'beats_healthy', { camera: 'door' })).toBe(0);
      expect(sample(restarted.samples, 'beats_source_state', { camera: 'door', state: 'reconnecting' })).toBe(1);
    } finally {
      await served.stop();
    }
  });

  it('200 once a finite file ended normally, while the other camera runs', async () => {
    const served = await servePipeline(`
status_interval_s: 0
mqtt: { embedded: { port: 0 } }
http: { port: 0 }
cameras:${highway()}${highway('clip', 'fps: 2')}
`);
    try {
      const { status, body } = await waitFor(
        async () => {
          const h = await health(served.url);
          return h.body.cameras.clip?.state === 'ended' && h.body.cameras.highway?.state === 'running' && h;
        },
        60_000,
        'the clip to end',
      );
      expect(status).toBe(200);
      expect(body.cameras.clip).toMatchObject({ ok: true, live: false });
      expect(served.processed('clip')).toBeGreaterThan(50);
    } finally {
      await served.stop();
    }
  });
});
