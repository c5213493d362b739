import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import path from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../src/publish/broker.js';
import { repoRoot } from './assets.js';

/**
 * Real MQTT brokers for tests, each on a free port of 127.0.0.1: aedes (the embedded broker, in
 * process) and Mosquitto 2 (a child process; with no config file it listens on loopback only).
 */
export type BrokerKind = 'aedes' | 'mosquitto';
export const brokerKinds: readonly BrokerKind[] = ['aedes', 'mosquitto'];

export interface TestBroker {
  kind: BrokerKind;
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Starts it again on the same port (after stop). */
  restart?(): Promise<void>;
  /** Mosquitto only: sends a signal to the broker process (SIGSTOP freezes it, like a hung broker). */
  signal?(signal: NodeJS.Signals): void;
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The mosquitto binary: MOSQUITTO_PATH, the PATH, or the sbin folders Debian installs it in. */
export const mosquittoPath: string | undefined = (() => {
  if (process.env.MOSQUITTO_PATH) return executable(process.env.MOSQUITTO_PATH) ? process.env.MOSQUITTO_PATH : undefined;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];
  return dirs.filter(Boolean).map((d) => path.join(d, 'mosquitto')).find(executable);
})();

if (!mosquittoPath) {
  const message = 'mosquitto not found (apt-get install mosquitto, or set MOSQUITTO_PATH): tests against Mosquitto are skipped';
  if (process.env.CI) throw new Error(`${message}; in CI they must run`);
  console.warn(message);
}

/** True when tests for this broker cannot run here (Mosquitto not installed, outside CI). */
export function brokerMissing(kind: BrokerKind): boolean {
  return kind === 'mosquitto' && !mosquittoPath;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` until it returns something other than undefined/false and resolves with that, or
 * rejects after `timeoutMs` with `what` in the message. A generous limit, never a timing assertion.
 */
export async function waitFor<T>(check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function spawnMosquitto(binary: string, port: number): Promise<ChildProcess> {
  const child = spawn(binary, ['-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const failed = new Promise<never>((_, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`mosquitto -p ${port} exited (${code ?? signal}) before it listened: ${stderr.trim()}`)));
    child.once('error', reject);
  });
  failed.catch(() => undefined);
  await Promise.race([waitFor(() => accepts(port), 10_000, `mosquitto to listen on ${port}`), failed]);
  return child;
}

async function startMosquitto(): Promise<TestBroker> {
  const binary = mosquittoPath;
  if (!binary) throw new Error('mosquitto is not installed');
  let child: ChildProcess | undefined;
  let port = 0;
  // The free port may be taken by someone else between the probe and mosquitto's bind: try again.
  for (let attempt = 1; !child; attempt++) {
    port = await freePort();
    try {
      child = await spawnMosquitto(binary, port);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running) return;
    running.kill('SIGCONT');
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), 3000);
    await exited(running);
    clearTimeout(timer);
  };
  return {
    kind: 'mosquitto',
    url: `mqtt://127.0.0.1:${port}`,
    port,
    stop,
    restart: async () => {
      await stop();
      child = await spawnMosquitto(binary, port);
    },
    signal: (signal) => child?.kill(signal),
  };
}

async function startAedes(): Promise<TestBroker> {
  let broker: EmbeddedBroker | undefined = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
  const port = broker.port;
  const stop = async () => {
    const running = broker;
    broker = undefined;
    await running?.close();
  };
  return {
    kind: 'aedes',
    url: broker.url,
    port,
    stop,
    restart: async () => {
      await stop();
      broker = await startEmbeddedBroker({ host: '127.0.0.1', port });
    },
  };
}

export function startBroker(kind: BrokerKind): Promise<TestBroker> {
  return kind === 'aedes' ? startAedes() : startMosquitto();
}

export interface ReceivedMessage {
  topic: string;
  payload: string;
  retain: boolean;
  /** Date.now() when it arrived. */
  at: number;
}

export interface Subscriber {
  client: MqttClient;
  messages: ReceivedMessage[];
  on(topic: string): ReceivedMessage[];
  /** Resolves with the first message (from the start) that matches, or rejects after timeoutMs. */
  waitForMessage(match: (m: ReceivedMessage) => boolean, timeoutMs: number, what?: string): Promise<ReceivedMessage>;
  close(): Promise<void>;
}

/**
 * An mqtt.js client that subscribed to `topics` (resolves once the broker granted them) and keeps
 * every message. `options` adds credentials or TLS.
 */
export async function subscriber(url: string, topics: string | string[], options: IClientOptions = {}): Promise<Subscriber> {
  const client = mqtt.connect(url, {
    clientId: `test-sub-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    reconnectPeriod: 250,
    connectTimeout: 5000,
    ...options,
  });
  client.on('error', () => undefined);
  const messages: ReceivedMessage[] = [];
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), retain: packet.retain, at: Date.now() });
  });
  try {
    await waitFor(() => client.connected, 10_000, `subscriber to connect to ${url}`);
    await client.subscribeAsync(topics, { qos: 1 });
  } catch (err) {
    client.end(true);
    throw err;
  }
  return {
    client,
    messages,
    on: (topic) => messages.filter((m) => m.topic === topic),
    waitForMessage: (match, timeoutMs, what = 'a matching message') => waitFor(() => messages.find(match), timeoutMs, what),
    close: () => new Promise<void>((resolve) => client.end(true, {}, () => resolve())),
  };
}

export interface BeatsExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface BeatsProcess {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited (never rejects). */
  exit: Promise<BeatsExit>;
}

/**
 * `node bin/beats.js ARGS` from the repository root, output collected. BEATS_FROM_SOURCE=1: the
 * tests exercise src/ as it is, never a dist/ built before the last edit (test/build.test.ts covers
 * the compiled CLI).
 */
export function spawnBeats(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): BeatsProcess {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'beats.js'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, BEATS_LOG_FORMAT: 'text', BEATS_LOG_LEVEL: 'info', BEATS_FROM_SOURCE: '1', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<BeatsExit>((resolve) => {
    child.once('error', (err) => {
      stderr += String(err);
      resolve({ code: null, signal: null });
    });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, pid: child.pid ?? -1, stdout: () => stdout, stderr: () => stderr, exit };
}

/** Pids whose command line contains `pattern` (pgrep -f), other than this test process. */
export async function pidsMatching(pattern: string): Promise<number[]> {
  const out = await new Promise<string>((resolve) => {
    execFile('pgrep', ['-f', pattern], (_err, stdout) => resolve(stdout ?? ''));
  });
  return out
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 0 && pid !== process.pid);
}

/** Direct children of `pid` whose command line contains `pattern`. */
export async function childPids(pid: number, pattern = ''): Promise<number[]> {
  const out = await new Promise<string>((resolve) => {
    execFile('pgrep', ['-P', String(pid), '-f', pattern || '.'], (_err, stdout) => resolve(stdout ?? ''));
  });
  return out
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((p) => Number.isInteger(p) && p > 0);
}
