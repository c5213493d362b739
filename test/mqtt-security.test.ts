import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadPipelineFile, parsePipeline } from '../src/config/load.js';
import { isLoopbackHost } from '../src/config/schema.js';
import { ConfigError, PublishError } from '../src/errors.js';
import { runPipeline } from '../src/pipeline.js';
import { startEmbeddedBroker } from '../src/publish/broker.js';
import { MqttPublisher } from '../src/publish/mqtt.js';
import { readTlsFiles } from '../src/publish/tls.js';
import { assets, needsAssets } from './helpers/assets.js';
import { mosquittoPath, spawnBeats, subscriber, waitFor, type Subscriber } from './helpers/brokers.js';
import { startSecureMosquitto, type SecureMosquitto } from './helpers/secure-mosquitto.js';

/** The issues of a config error, or fails the test when there is none. */
function configIssues(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues];
    throw err;
  }
  throw new Error('expected a config error');
}

const camera = { name: 'c', source: { url: 'testsrc:' }, model: 'yolox-nano' };
const pipelineWith = (mqttSection: unknown) => stringify({ mqtt: mqttSection, cameras: [camera] });

describe('config: the embedded broker binds loopback unless given credentials', () => {
  it('knows loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', 'LOCALHOST']) expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '192.0.2.4', '10.0.0.1', 'example.com', '128.0.0.1']) expect(isLoopbackHost(host), host).toBe(false);
  });

  it('0.0.0.0 without username and password is a config error naming both keys', () => {
    const issues = configIssues(() => parsePipeline(pipelineWith({ embedded: { host: '0.0.0.0', port: 1883 } }), '/site/p.yaml'));
    expect(issues.map((i) => i.path).sort()).toEqual(['mqtt.embedded.password', 'mqtt.embedded.username']);
    expect(issues[0]!.message).toMatch(/0\.0\.0\.0, not loopback/);
  });

  it('a non-loopback host with only a username still needs the password', () => {
    const issues = configIssues(() => parsePipeline(pipelineWith({ embedded: { host: '::', username: 'beats' } }), '/site/p.yaml'));
    expect(issues).toEqual([expect.objectContaining({ path: 'mqtt.embedded.password' })]);
  });

  it('0.0.0.0 with credentials, and loopback without, are valid', () => {
    const open = parsePipeline(pipelineWith({ embedded: { host: '0.0.0.0', username: 'beats', password: 's3cret' } }), '/site/p.yaml');
    expect(open.mqtt?.embedded).toEqual({ host: '0.0.0.0', port: 1883, username: 'beats', password: 's3cret' });
    const local = parsePipeline(pipelineWith({ embedded: { host: '127.0.0.1', port: 1884 } }), '/site/p.yaml');
    expect(local.mqtt?.embedded?.username).toBeUndefined();
  });

  it('the broker itself refuses a non-loopback host without credentials', async () => {
    await expect(startEmbeddedBroker({ host: '0.0.0.0', port: 0 })).rejects.toThrow(PublishError);
    await expect(startEmbeddedBroker({ host: '0.0.0.0', port: 0, username: 'beats' })).rejects.toThrow(/needs a username and password/);
  });
});

describe('config: mqtt.tls', () => {
  it('resolves ca, cert and key against the pipeline file and checks certificates by default', () => {
    const config = parsePipeline(pipelineWith({ url: 'mqtts://broker:8883', tls: { ca: 'certs/ca.crt', cert: '/abs/client.crt', key: 'client.key' } }), '/site/conf/p.yaml');
    expect(config.mqtt?.tls).toEqual({ ca: '/site/conf/certs/ca.crt', cert: '/abs/client.crt', key: '/site/conf/client.key', reject_unauthorized: true });
  });

  it('cert without key, and tls on a plain mqtt:// URL or without a URL, are errors with their paths', () => {
    expect(configIssues(() => parsePipeline(pipelineWith({ url: 'mqtts://b:8883', tls: { cert: 'c.crt' } }), '/p.yaml'))).toEqual([expect.objectContaining({ path: 'mqtt.tls.key' })]);
    expect(configIssues(() => parsePipeline(pipelineWith({ url: 'mqtt://b:1883', tls: { ca: 'ca.crt' } }), '/p.yaml'))).toEqual([
      expect.objectContaining({ path: 'mqtt.tls', message: expect.stringMatching(/mqtts:\/\//) }),
    ]);
    expect(configIssues(() => parsePipeline(pipelineWith({ tls: { ca: 'ca.crt' } }), '/p.yaml'))).toEqual([expect.objectContaining({ path: 'mqtt.tls' })]);
  });

  it('a missing or non-PEM file is a config error naming the key and the file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-tls-'));
    try {
      await writeFile(path.join(dir, 'not-pem.crt'), 'hello');
      const err = await readTlsFiles({ ca: path.join(dir, 'missing-ca.crt'), cert: path.join(dir, 'not-pem.crt'), key: path.join(dir, 'not-pem.crt'), reject_unauthorized: true }, '/p.yaml').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      const issues = (err as ConfigError).issues;
      expect(issues).toContainEqual({ path: 'mqtt.tls.ca', message: `file not found: ${path.join(dir, 'missing-ca.crt')}` });
      expect(issues).toContainEqual(expect.objectContaining({ path: 'mqtt.tls.cert', message: expect.stringMatching(/not a PEM file/) }));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Connects once; resolves 'connected' or the error message. */
function tryConnect(url: string, options: mqtt.IClientOptions): Promise<string> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    const done = (result: string) => {
      client.end(true);
      resolve(result);
    };
    client.once('connect', () => done('connected'));
    client.once('error', (err) => done(err.message));
    client.once('close', () => done('closed'));
  });
}

describe('embedded broker with credentials', () => {
  it('bound to 0.0.0.0, refuses clients without or with wrong credentials and accepts the right ones', async () => {
    const broker = await startEmbeddedBroker({ host: '0.0.0.0', port: 0, username: 'beats', password: 'correct horse' });
    try {
      // Reached over loopback: binding 0.0.0.0 accepts it, and nothing leaves this machine.
      const url = `mqtt://127.0.0.1:${broker.port}`;
      expect(await tryConnect(url, {})).toMatch(/bad user ?name or password|not authori[sz]ed/i);
      expect(await tryConnect(url, { username: 'beats', password: 'wrong' })).toMatch(/bad user ?name or password|not authori[sz]ed/i);
      expect(await tryConnect(url, { username: 'other', password: 'correct horse' })).toMatch(/bad user ?name or password|not authori[sz]ed/i);
      expect(await tryConnect(url, { username: 'beats', password: 'correct horse' })).toBe('connected');
    } finally {
      await broker.close();
    }
  });

  describe.skipIf(needsAssets)('the pipeline logs in to its own embedded broker', () => {
    it('publishes with mqtt.embedded credentials on a non-loopback bind', async () => {
      const config = parsePipeline(
        stringify({
          mqtt: { embedded: { host: '0.0.0.0', port: 0, username: 'beats', password: 'pw-123456' } },
          status_interval_s: 0,
          state_dir: path.join(os.tmpdir(), `beats-sec-state-${process.pid}`),
          cameras: [{ name: 'highway', source: { url: assets.highway }, model: 'yolox-nano' }],
        }),
        path.join(os.tmpdir(), 'p.yaml'),
      );
      try {
        const summary = await runPipeline({ file: path.join(os.tmpdir(), 'p.yaml'), config }, { maxFrames: 10 });
        // Without its credentials the publisher would have been refused and sent nothing.
        expect(summary.mqtt.published).toBeGreaterThan(0);
        expect(summary.cameras.highway?.processed).toBe(10);
      } finally {
        await rm(config.state_dir, { recursive: true, force: true });
      }
    });
  });
});

if (!mosquittoPath) {
  if (process.env.CI) throw new Error('mosquitto is needed for the TLS tests; in CI they must run');
  console.warn('mosquitto not found: the MQTT-over-TLS tests are skipped');
}

describe.skipIf(!mosquittoPath)('MQTT over TLS to Mosquitto (deploy/mosquitto config, certificates from deploy/make-dev-certs.sh)', () => {
  let broker: SecureMosquitto;
  let dir: string;
  beforeAll(async () => {
    broker = await startSecureMosquitto();
    dir = await mkdtemp(path.join(os.tmpdir(), 'beats-tls-run-'));
  });
  afterAll(async () => {
    await broker?.stop();
    if (broker) await rm(broker.dir, { recursive: true, force: true });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a client that does not trust the CA is refused; with mqtt.tls.ca it connects', async () => {
    expect(await tryConnect(broker.url, { username: 'viewer', password: broker.passwords.viewer })).toMatch(/self[- ]signed|unable to verify|certificate/i);
    const tls = await readTlsFiles({ ca: broker.certs.ca, reject_unauthorized: true }, '/p.yaml');
    expect(await tryConnect(broker.url, { username: 'viewer', password: broker.passwords.viewer, ...tls })).toBe('connected');
    expect(await tryConnect(broker.url, { username: 'viewer', password: 'wrong', ...tls })).toMatch(/not authori[sz]ed|bad user/i);
  });

  it.skipIf(needsAssets)('the pipeline publishes its detections over mqtts:// with the CA and its password', async () => {
    const tls = await readTlsFiles({ ca: broker.certs.ca, reject_unauthorized: true }, '/p.yaml');
    // The subscriber is a dashboard account: read only.
    const sub: Subscriber = await subscriber(broker.url, 'beats/#', { username: 'viewer', password: broker.passwords.viewer, ...tls });
    try {
      const file = path.join(dir, 'tls.yaml');
      await writeFile(
        file,
        stringify({
          mqtt: { url: broker.url, username: 'beats', password: '${MQTT_PASSWORD}', prefix: 'beats', tls: { ca: path.relative(dir, broker.certs.ca) } },
          state_dir: 'state',
          status_interval_s: 0,
          cameras: [{ name: 'highway', source: { url: assets.highway }, model: 'yolox-nano', detect: { labels: ['car'] } }],
        }),
      );
      const p = spawnBeats(['run', file, '--max-frames', '20'], { env: { MQTT_PASSWORD: broker.passwords.beats } });
      const exit = await p.exit;
      expect(exit.code, p.stderr()).toBe(0);
      const detections = await sub.waitForMessage((m) => m.topic === 'beats/highway/detections', 10_000, 'detections over TLS');
      expect(JSON.parse(detections.payload)).toMatchObject({ camera: 'highway', detections: expect.arrayContaining([expect.objectContaining({ label: 'car' })]) });
      expect(sub.on('beats/availability').map((m) => m.payload)).toContain('online');
    } finally {
      await sub.close();
    }
  });

  it.skipIf(needsAssets)('a missing CA file stops `beats run` with exit code 2 naming mqtt.tls.ca', async () => {
    const file = path.join(dir, 'missing-ca.yaml');
    await writeFile(file, stringify({ mqtt: { url: broker.url, tls: { ca: 'nowhere/ca.crt' } }, cameras: [{ name: 'c', source: { url: 'testsrc:' }, model: 'yolox-nano' }] }));
    const loaded = await loadPipelineFile(file);
    expect(loaded.config.mqtt?.tls?.ca).toBe(path.join(dir, 'nowhere', 'ca.crt'));
    const p = spawnBeats(['run', file, '--max-frames', '1']);
    const exit = await p.exit;
    expect(exit.code, p.stderr()).toBe(2);
    expect(p.stderr()).toContain(`mqtt.tls.ca: file not found: ${path.join(dir, 'nowhere', 'ca.crt')}`);
  });
});

describe.skipIf(!mosquittoPath)('mutual TLS (require_certificate true)', () => {
  let broker: SecureMosquitto;
  beforeAll(async () => {
    broker = await startSecureMosquitto({ requireCertificate: true });
  });
  afterAll(async () => {
    await broker?.stop();
    if (broker) await rm(broker.dir, { recursive: true, force: true });
  });

  it('the publisher connects with mqtt.tls cert and key, and is refused without them', async () => {
    const withCert = await readTlsFiles({ ca: broker.certs.ca, cert: broker.certs.clientCert, key: broker.certs.clientKey, reject_unauthorized: true }, '/p.yaml');
    const publisher = new MqttPublisher({ url: broker.url, prefix: 'beats', qos: 1, username: 'beats', password: broker.passwords.beats, tls: withCert });
    try {
      await publisher.waitConnected(10_000);
      expect(publisher.stats.connected).toBe(true);
    } finally {
      await publisher.close();
    }
    const caOnly = await readTlsFiles({ ca: broker.certs.ca, reject_unauthorized: true }, '/p.yaml');
    expect(await tryConnect(broker.url, { username: 'beats', password: broker.passwords.beats, ...caOnly })).not.toBe('connected');
  });
});

