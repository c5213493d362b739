import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { FeedbackIntake } from '../adapt/feedback.js';
import { isLoopbackHost } from '../config/schema.js';
import { BeatsError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import type { LiveMonitor } from './live.js';
import type { PipelineMetrics } from './metrics.js';
import type { ModelHistorySource } from '../adapt/model-history.js';

/** The HTTP server cannot start (port taken, bad host). */
export class HttpServeError extends BeatsError {
  constructor(
    readonly where: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${where}: ${message}`, options);
  }
}

export interface HttpServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** Bearer token for state changes; without one they are allowed from loopback only. */
  token?: string;
  liveFps: number;
  monitor: LiveMonitor;
  intake: FeedbackIntake;
  metrics: PipelineMetrics;
  modelHistory: ModelHistorySource;
  /** `<state_dir>/snapshots`: `<camera>/<event id>.jpg` are served from it. */
  snapshotsDir: string;
  /** The body of /api/stats. */
  stats: () => unknown;
  /** Host names the server answers to besides loopback, its address and the machine's name (http.allowed_hosts). */
  allowedHosts?: readonly string[];
  timeouts?: Partial<HttpTimeouts>;
}

/** How long a client may take; past it its socket is closed. */
export interface HttpTimeouts {
  /** From the connection (or the previous response) to the end of the request's headers. */
  headersMs: number;
  /** The whole request, body included. */
  requestMs: number;
  /** A kept-alive socket between two requests. */
  keepAliveMs: number;
  /** A socket with no traffic at all, whatever its state. */
  idleMs: number;
}

export const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = { headersMs: 10_000, requestMs: 30_000, keepAliveMs: 5_000, idleMs: 60_000 };

/** Sockets at once; past it new connections are dropped (the pages poll over a handful). */
const MAX_CONNECTIONS = 256;

export interface HttpServer {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Pages and scripts, read once at start and served as they are (no bundler, no framework). */
const STATIC_FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/static/style.css': ['style.css', 'text/css; charset=utf-8'],
  '/static/index.js': ['index.js', 'text/javascript; charset=utf-8'],
  '/static/camera.js': ['camera.js', 'text/javascript; charset=utf-8'],
} as const;
const CAMERA_PAGE = 'camera.html';

/** Request bodies larger than this are refused before they are read whole. */
const MAX_BODY_BYTES = 64 * 1024;

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(reason);
  }
}

const cameraRoute = /^\/api\/cameras\/([a-z0-9_-]+)(?:\/(live|events|model|feedback))?$/;
const pageRoute = /^\/cameras\/([a-z0-9_-]+)\/?$/;
const snapshotRoute = /^\/snapshots\/([a-z0-9_-]+)\/([A-Za-z0-9][A-Za-z0-9._-]*\.jpg)$/;

/**
 * Live monitoring over HTTP (node:http; a handful of routes do not pay for a framework):
 * - `/`, `/cameras/<name>`: pages; `/api/...`: what they read; `/snapshots/<camera>/<event>.jpg`
 * - `/metrics` (Prometheus), `/healthz`, `/api/stats`
 * - `POST /api/cameras/<name>/feedback`: a verdict, through the same intake as MQTT feedback.
 * Reading is open to whoever reaches the server (it binds loopback unless told otherwise); a state
 * change needs the bearer token when one is configured, else a loopback peer.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const log = logger('http');
  const routes = new Routes(options, await loadStaticFiles());
  const timeouts = { ...DEFAULT_HTTP_TIMEOUTS, ...options.timeouts };
  // Header and request deadlines are checked this often (Node's default, 30 s, would let them run late).
  const connectionsCheckingInterval = Math.max(50, Math.min(1000, timeouts.headersMs / 4));
  const server: Server = createServer({ connectionsCheckingInterval }, (req, res) => {
    routes.handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpFailure) {
        sendJson(res, err.status, { error: STATUS_CODES[err.status]?.toLowerCase() ?? 'error', reason: err.reason }, err.headers);
        return;
      }
      // The method and path are the client's: limited, so that a request that fails cannot flood the log.
      log.limited('request failed').error(`${req.method} ${req.url}: ${errorMessage(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal server error', reason: 'see the pipeline log' });
      else res.destroy();
    });
  });
  // A slow, stuck or silent client must not hold a socket forever.
  server.headersTimeout = timeouts.headersMs;
  server.requestTimeout = timeouts.requestMs;
  server.keepAliveTimeout = timeouts.keepAliveMs;
  server.timeout = timeouts.idleMs;
  server.maxConnections = MAX_CONNECTIONS;

  await listen(server, options.host, options.port);
  server.on('error', (err) => log.error(`http server: ${err.message}`));
  const port = (server.address() as AddressInfo).port;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${shownHost}:${port}`,
    host: options.host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Live pages poll with keep-alive: close their sockets rather than wait for them to idle out.
        server.closeAllConnections();
      }),
  };
}

/** Resolves once the server listens; a port taken or a bad host is an HttpServeError. */
function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new HttpServeError(`http server ${host}:${port}`, `cannot listen: ${err.code ?? err.message} (see http.host and http.port)`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

interface StaticFiles {
  /** By route: the file's bytes and content type. */
  files: Map<string, { body: Buffer; type: string }>;
  cameraPage: Buffer;
}

/** The pages and scripts of static/, beside this module (src/serve/static, or dist/serve/static). */
async function loadStaticFiles(): Promise<StaticFiles> {
  const dir = new URL('./static/', import.meta.url);
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const [route, [file, type]] of Object.entries(STATIC_FILES)) files.set(route, { body: await readFile(new URL(file, dir)), type });
  return { files, cameraPage: await readFile(new URL(CAMERA_PAGE, dir)) };
}

/** The answer to each route; a client's mistake throws an HttpFailure. */
class Routes {
  private readonly names: ReadonlySet<string>;

  constructor(
    private readonly options: HttpServerOptions,
    private readonly statics: StaticFiles,
  ) {
    this.names = hostNames(options.host, options.allowedHosts ?? []);
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkHost(req.headers.host, this.names);
    const route = new URL(req.url ?? '/', 'http://beats.invalid').pathname;
    const method = req.method ?? 'GET';
    if (method === 'POST') return this.feedback(req, res, route);
    if (method !== 'GET' && method !== 'HEAD') throw new HttpFailure(405, `method ${method} not allowed`, { allow: 'GET, HEAD, POST' });

    const file = this.statics.files.get(route);
    if (file) return send(res, 200, file.type, file.body, { 'cache-control': 'no-cache' });
    const page = pageRoute.exec(route);
    if (page) {
      this.knownCamera(page[1]!);
      return send(res, 200, 'text/html; charset=utf-8', this.statics.cameraPage, { 'cache-control': 'no-cache' });
    }
    const { options } = this;
    if (route === '/metrics') return send(res, 200, options.metrics.contentType, Buffer.from(await options.metrics.text()));
    if (route === '/healthz') return this.health(res);
    if (route === '/api/stats') return sendJson(res, 200, options.stats());
    if (route === '/api/info') {
      return sendJson(res, 200, { auth: options.token ? 'token' : 'loopback', live_fps: options.liveFps, cameras: options.monitor.names });
    }
    if (route === '/api/cameras') return sendJson(res, 200, options.monitor.names.map((name) => this.describeCamera(name)));
    const api = cameraRoute.exec(route);
    if (api) return this.cameraApi(res, this.knownCamera(api[1]!), api[2]);
    const snapshot = snapshotRoute.exec(route);
    if (snapshot) return this.snapshot(res, this.knownCamera(snapshot[1]!), snapshot[2]!);
    throw new HttpFailure(404, 'not found');
  }

  /** `POST /api/cameras/<name>/feedback`: a verdict, through the feedback intake. */
  private async feedback(req: IncomingMessage, res: ServerResponse, route: string): Promise<void> {
    const m = cameraRoute.exec(route);
    if (!m || m[2] !== 'feedback') throw new HttpFailure(404, 'not found');
    const camera = this.knownCamera(m[1]!);
    checkStateChange(req, this.options.token);
    const body = await readBody(req);
    // Past checkStateChange, a request with http.token configured carried it: an operator's.
    const result = this.options.intake.submit(camera, body, { via: 'http', operator: this.options.token !== undefined });
    if (result.accepted) {
      const f = result.feedback;
      return sendJson(res, 200, {
        accepted: true,
        camera: f.camera,
        verdict: f.verdict,
        frame: f.frame.index,
        track_id: f.trackId ?? null,
        event: f.event?.id ?? null,
        detection: f.detection ? { label: f.detection.label, score: f.detection.score, box: f.detection.box } : null,
        label: f.label?.name ?? null,
        track_frames: f.trackFrames.length,
      });
    }
    const r = result.rejection;
    const status = r.code === 'rate_limited' ? 429 : r.code === 'too_large' ? 413 : 422;
    return sendJson(res, status, { accepted: false, reason: r.reason, code: r.code });
  }

  private health(res: ServerResponse): void {
    const { monitor } = this.options;
    const cameras = Object.fromEntries(monitor.names.map((name) => [name, monitor.health(name)!]));
    const ok = Object.values(cameras).every((c) => c.ok);
    sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'unhealthy', cameras });
  }

  /** `/api/cameras/<name>[/live|events|model]`. */
  private async cameraApi(res: ServerResponse, camera: string, part: string | undefined): Promise<void> {
    const { monitor } = this.options;
    switch (part) {
      case undefined:
        return sendJson(res, 200, this.describeCamera(camera));
      case 'live': {
        const frame = await monitor.live(camera);
        if (!frame) return send(res, 204, 'text/plain', Buffer.alloc(0));
        return sendJson(res, 200, frame);
      }
      case 'events':
        return sendJson(res, 200, monitor.events(camera)!.map((e) => ({ ...e, snapshot: e.has_snapshot ? `/snapshots/${camera}/${e.id}.jpg` : null })));
      case 'model':
        return sendJson(res, 200, (await this.options.modelHistory.history(camera)) ?? null);
      default:
        throw new HttpFailure(405, 'feedback is POST only', { allow: 'POST' });
    }
  }

  /** `/snapshots/<camera>/<event>.jpg`. */
  private async snapshot(res: ServerResponse, camera: string, name: string): Promise<void> {
    let body: Buffer;
    try {
      body = await readFile(path.join(this.options.snapshotsDir, camera, name));
    } catch {
      // Deleted past snapshots.max_total_mb, or the event had none.
      throw new HttpFailure(404, 'no such snapshot');
    }
    send(res, 200, 'image/jpeg', body, { 'cache-control': 'no-cache' });
  }

  private knownCamera(name: string): string {
    if (!this.options.monitor.info(name)) throw new HttpFailure(404, `unknown camera "${name}"`);
    return name;
  }

  private describeCamera(name: string) {
    const info = this.options.monitor.info(name)!;
    const s = info.stats;
    return {
      name,
      model: info.model,
      classes: info.classes,
      health: this.options.monitor.health(name),
      stats: { frames_in: s.source.framesIn, processed: s.processed, dropped: s.source.dropped, detections: s.detections, restarts: s.source.restarts, inference_ms: Math.round(s.inferenceMs * 10) / 10 },
    };
  }
}

/**
 * The names a request's Host may give: loopback names, the bound host, the machine's own name (and
 * its mDNS `.local` form), and http.allowed_hosts. Any IP literal is accepted too: DNS rebinding
 * needs a name the attacker controls, and a browser sends an IP as Host only when it was asked for it.
 */
function hostNames(bound: string, allowed: readonly string[]): ReadonlySet<string> {
  const hostname = os.hostname().toLowerCase();
  return new Set(['localhost', bound.toLowerCase(), hostname, `${hostname}.local`, ...allowed.map((h) => h.toLowerCase())]);
}

/**
 * DNS rebinding: a page on evil.example whose name is re-pointed at this machine is same-origin with
 * itself, so the browser lets it read the answers; its Host header still names evil.example. A
 * request for a name this server does not answer to is refused before anything is read or done.
 */
function checkHost(header: string | undefined, names: ReadonlySet<string>): void {
  // HTTP/1.0 may omit it (Node refuses HTTP/1.1 without one); browsers always send it.
  if (header === undefined) return;
  const h = header.trim().toLowerCase();
  if (/^\[[0-9a-f:.]+\](:\d+)?$/.test(h)) return;
  const name = h.replace(/:\d+$/, '').replace(/\.$/, '');
  if (isIP(name) !== 0 || names.has(name)) return;
  throw new HttpFailure(421, `host ${JSON.stringify(header.slice(0, 100))} refused: this server answers to ${[...names].join(', ')} or an IP address (add a name to http.allowed_hosts)`);
}

/**
 * A state change: the bearer token when one is configured, else a loopback peer. Also refused when
 * a browser says it comes from another site (Origin, Sec-Fetch-Site) or is not JSON: a page
 * elsewhere cannot make the operator's browser send verdicts (a JSON POST needs a CORS preflight,
 * which this server never grants).
 */
function checkStateChange(req: IncomingMessage, token: string | undefined): void {
  const origin = req.headers.origin;
  // `null` is what a sandboxed frame or a file:// page sends: never the live page.
  if (origin === 'null') throw new HttpFailure(403, 'a request with Origin: null refused');
  if (origin !== undefined) {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host !== req.headers.host) throw new HttpFailure(403, `cross-origin request from ${origin} refused`);
  }
  if (req.headers['sec-fetch-site'] === 'cross-site') throw new HttpFailure(403, 'cross-site request refused');
  if (token !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const challenge = { 'www-authenticate': 'Bearer realm="beats"' };
    if (!match) throw new HttpFailure(401, 'a bearer token is required (Authorization: Bearer <token>)', challenge);
    if (!sameSecret(match[1]!, token)) throw new HttpFailure(401, 'wrong token', challenge);
  } else {
    if (!isLoopbackHost(req.socket.remoteAddress ?? '')) throw new HttpFailure(401, 'no http.token is configured: state changes are allowed from this machine only');
    // A page elsewhere whose name was re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with
    // itself; its Host header still names it, not this machine.
    const hostname = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!isLoopbackHost(hostname)) throw new HttpFailure(403, `host ${hostname || '(none)'} refused: without http.token, state changes are for http://127.0.0.1 or http://localhost only`);
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new HttpFailure(415, 'the body must be JSON (Content-Type: application/json)');
}

/** Constant-time comparison of secrets (hashed first, so the length does not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      reject(new HttpFailure(413, `body too large (at most ${MAX_BODY_BYTES} bytes)`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpFailure(413, `body too large (at most ${MAX_BODY_BYTES} bytes)`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Pages load only their own scripts and styles; pictures are served here or inline (data:).
  'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

function send(res: ServerResponse, status: number, type: string, body: Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': String(body.length), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, status, 'application/json; charset=utf-8', Buffer.from(JSON.stringify(value)), { 'cache-control': 'no-store', ...headers });
}
