/**
 * The HTTP server against a hostile network, over raw sockets: DNS rebinding (a Host this server
 * does not answer to), cross-origin state changes, and sockets that say nothing or stop halfway.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeedbackIntake } from '../src/adapt/feedback.js';
import { LiveMonitor } from '../src/serve/live.js';
import { createMetrics } from '../src/serve/metrics.js';
import { baseModelHistory } from '../src/adapt/model-history.js';
import { startHttpServer, type HttpServer } from '../src/serve/http.js';
import { waitFor } from './helpers/brokers.js';
import { servePipeline, type ServedPipeline } from './helpers/serve.js';

interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

/**
 * One request written by hand on a fresh socket (fetch would not send a forged Host). The socket
 * stays open for the answer, as a browser's does (Node drops a request whose client half-closes).
 */
function rawRequest(port: number, head: string, body = ''): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, headers: text.slice(0, split), body: text.slice(split + 4) });
    });
    socket.write(`${head.trim().split('\n').join('\r\n')}\r\nConnection: close\r\n\r\n${body}`);
  });
}

const portOf = (url: string) => Number(new URL(url).port);

describe('a running pipeline behind a Host it does not answer to', () => {
  let served: ServedPipeline;
  let port: number;

  beforeAll(async () => {
    served = await servePipeline(`
status_interval_s: 0
mqtt: { embedded: { port: 0 } }
http: { port: 0, live_fps: 5, allowed_hosts: [cams.example.lan] }
cameras:
  - name: demo
    source: { url: "synthetic:scene=street&seed=7", realtime: true }
    model: beats-s
`);
    port = portOf(served.url);
    await waitFor(async () => (await rawRequest(port, `GET /api/cameras/demo/live HTTP/1.1\nHost: 127.0.0.1:${port}`)).status === 200, 60_000, 'a live frame');
  }, 90_000);

  afterAll(async () => {
    await served?.stop();
  });

  it('refuses a rebound name (421) for reads and for verdicts, before doing anything', async () => {
    for (const host of ['evil.example', `evil.example:${port}`, 'EVIL.example.', '127.0.0.1.evil.example', 'localhost.evil.example', '']) {
      const live = await rawRequest(port, `GET /api/cameras/demo/live HTTP/1.1\nHost: ${host}`);
      expect(live.status, host).toBe(421);
      expect(JSON.parse(live.body)).toEqual({ error: 'misdirected request', reason: expect.stringMatching(/refused: this server answers to localhost, 127\.0\.0\.1, .*cams\.example\.lan or an IP address/) });
    }
    const body = JSON.stringify({ detection: { frame: 1, box: [1, 1, 20, 20] }, verdict: 'correct' });
    const post = await rawRequest(port, `POST /api/cameras/demo/feedback HTTP/1.1\nHost: evil.example:${port}\nContent-Type: application/json\nContent-Length: ${body.length}`, body);
    expect(post.status).toBe(421);
    expect(served.intake.counts('demo')!.rejected).toEqual({});
  });

  it('answers to loopback names, IP addresses and http.allowed_hosts', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'LOCALHOST', `cams.example.lan:${port}`, '10.1.2.3']) {
      const live = await rawRequest(port, `GET /api/cameras/demo/live HTTP/1.1\nHost: ${host}`);
      expect(live.status, host).toBe(200);
      expect(JSON.parse(live.body)).toMatchObject({ frame: expect.any(Number) });
    }
  });

  it('refuses a state change whose Origin is another site or null', async () => {
    const body = JSON.stringify({ detection: { frame: 1, box: [1, 1, 20, 20] }, verdict: 'correct' });
    const post = (origin: string) =>
      rawRequest(port, `POST /api/cameras/demo/feedback HTTP/1.1\nHost: 127.0.0.1:${port}\nOrigin: ${origin}\nContent-Type: application/json\nContent-Length: ${body.length}`, body);
    for (const origin of ['null', 'http://evil.example', `http://localhost:${port + 1}`]) {
      const r = await post(origin);
      expect(r.status, origin).toBe(403);
    }
    // The page's own origin gets past the checks to the verdict itself (stale frame: 422 with a reason).
    const own = await post(`http://127.0.0.1:${port}`);
    expect(own.status).toBe(422);
    expect(JSON.parse(own.body)).toMatchObject({ accepted: false, reason: expect.any(String) });
  });
});

describe('sockets that say nothing, stop halfway or idle after a response', () => {
  let server: HttpServer;

  beforeAll(async () => {
    const monitor = new LiveMonitor([], { liveFps: 1 });
    const intake = new FeedbackIntake({ cameras: [] });
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      liveFps: 1,
      monitor,
      intake,
      metrics: createMetrics({ monitor, intake, mqtt: () => ({ connected: false, published: 0, dropped: 0, reconnects: 0, outboxDepth: 0 }) }),
      modelHistory: baseModelHistory(new Map()),
      snapshotsDir: '/nonexistent',
      stats: () => ({}),
      timeouts: { headersMs: 600, requestMs: 1200, keepAliveMs: 300, idleMs: 1000 },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  const open = (): Promise<{ socket: Socket; closed: Promise<number> }> =>
    new Promise((resolve, reject) => {
      const socket = connect(server.port, '127.0.0.1');
      const opened = Date.now();
      const closed = new Promise<number>((done) => socket.on('close', () => done(Date.now() - opened)));
      socket.on('error', () => undefined);
      // Read (and so see the server's FIN) whether or not anything is listening for data.
      socket.resume();
      socket.once('connect', () => resolve({ socket, closed }));
      socket.once('error', reject);
    });

  it('closes silent sockets, half-sent requests and idle kept-alive sockets; a client that talks is served', async () => {
    const silent = await Promise.all(Array.from({ length: 50 }, () => open()));
    const halfway = await open();
    let halfwayAnswer = '';
    halfway.socket.on('data', (c: Buffer) => (halfwayAnswer += c.toString()));
    halfway.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    const kept = await open();
    let answered = '';
    kept.socket.on('data', (c: Buffer) => (answered += c.toString()));
    kept.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');

    const all = [...silent, halfway, kept];
    await waitFor(() => all.every((s) => s.socket.destroyed), 10_000, 'every socket to be closed by the server');
    expect(answered).toMatch(/^HTTP\/1\.1 200 /);
    // The half-sent request was told why.
    expect(halfwayAnswer).toMatch(/^HTTP\/1\.1 408 /);
    // After all that, the server still answers.
    const again = await rawRequest(server.port, 'GET /healthz HTTP/1.1\nHost: localhost');
    expect(again.status).toBe(200);
  });
});
