import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPipelineFile, parsePipeline } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';

const file = '/srv/site/pipelines/main.yaml';

function issuesOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parsePipeline(text, file, { env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('pipeline config', () => {
  it('accepts the documented keys and fills defaults', () => {
    const config = parsePipeline(
      `
mqtt:
  url: mqtt://127.0.0.1:1883
  prefix: beats
  qos: 0
cameras:
  - name: highway
    source:
      url: ../videos/highway.avi
      fps: 10
      loop: false
    model: yolox-nano
    detect:
      threshold: 0.35
      labels: [car, truck, bus]
`,
      file,
    );
    const camera = config.cameras[0]!;
    expect(camera.source.url).toBe('/srv/site/videos/highway.avi');
    expect(camera.model).toBe('yolox-nano');
    expect(camera.detect).toMatchObject({ threshold: 0.35, nms_iou: 0.45, labels: ['car', 'truck', 'bus'] });
    expect(camera.source.reconnect).toEqual({ initial_s: 1, max_s: 30 });
    expect(config.runtime.providers).toEqual(['tensorrt', 'cuda', 'cpu']);
    expect(config.runtime.tensorrt.engine_cache).toBe('/srv/site/pipelines/.beats/trt-cache');
    expect(config.mqtt?.qos).toBe(0);
  });

  it('resolves model paths against the pipeline folder, keeps names and URLs as they are', () => {
    const config = parsePipeline(
      `
cameras:
  - { name: a, source: { url: "rtsp://cam/stream" }, model: ./models/mine.json }
  - { name: b, source: { url: "/dev/video0" }, model: yolox-nano }
  - { name: c, source: { url: "testsrc:size=320x240" }, model: ../x.onnx }
`,
      file,
    );
    expect(config.cameras.map((c) => [c.source.url, c.model])).toEqual([
      ['rtsp://cam/stream', '/srv/site/pipelines/models/mine.json'],
      ['/dev/video0', 'yolox-nano'],
      ['testsrc:size=320x240', '/srv/site/x.onnx'],
    ]);
  });

  it('names the path of an unknown key, a typo included', () => {
    expect(issuesOf('cameras: [{ name: a, source: { url: x.mp4 }, model: m, detect: { treshold: 0.5 } }]')).toEqual(['cameras[0].detect.treshold: unknown key']);
    expect(issuesOf('mqtt: { url: mqtt://h, colour: red, size: 2 }\ncameras: [{ name: a, source: { url: x.mp4 }, model: m }]')).toEqual(['mqtt.colour: unknown key', 'mqtt.size: unknown key']);
  });

  it('names the path of bad values', () => {
    const issues = issuesOf(`
cameras:
  - name: Front Door
    source: { url: "", fps: -1 }
    model: m
    detect: { threshold: 2 }
`);
    expect(issues).toContain('cameras[0].name: must match [a-z0-9_-]+ (it is used in MQTT topics)');
    expect(issues.some((i) => i.startsWith('cameras[0].source.url:'))).toBe(true);
    expect(issues.some((i) => i.startsWith('cameras[0].source.fps:'))).toBe(true);
    expect(issues.some((i) => i.startsWith('cameras[0].detect.threshold:'))).toBe(true);
  });

  it('tells a wrong type from a missing key', () => {
    expect(issuesOf('cameras: [{ name: a, source: { url: x }, model: m, detect: { threshold: high } }]')[0]).toMatch(/^cameras\[0\]\.detect\.threshold: .*number/);
  });

  it('requires cameras, a model and a source', () => {
    expect(issuesOf('mqtt: { prefix: beats }')).toEqual(['cameras: is required']);
    expect(issuesOf('cameras: [{ name: a }]')).toEqual(expect.arrayContaining(['cameras[0].source: is required', 'cameras[0].model: is required']));
  });

  it('rejects duplicate camera names, MQTT wildcards in the prefix, url with embedded', () => {
    expect(issuesOf('cameras: [{ name: a, source: { url: x }, model: m }, { name: a, source: { url: y }, model: m }]')).toEqual(['cameras[1].name: duplicate camera name "a" (also cameras[0])']);
    expect(issuesOf('mqtt: { prefix: "beats/#" }\ncameras: [{ name: a, source: { url: x }, model: m }]')[0]).toMatch(/^mqtt\.prefix: /);
    expect(issuesOf('mqtt: { url: "mqtt://h", embedded: { port: 1 } }\ncameras: [{ name: a, source: { url: x }, model: m }]')[0]).toMatch(/^mqtt: give either url/);
  });

  it('substitutes ${VAR} and ${VAR:-default} in values, and names a missing variable by path', () => {
    const text = `
mqtt: { url: "mqtt://\${BROKER_HOST:-localhost}:1883", username: beats, password: "\${MQTT_PASSWORD}" }
cameras: [{ name: a, source: { url: "rtsp://admin:\${CAM_PASS}@10.0.0.5/s" }, model: m }]
`;
    const config = parsePipeline(text, file, { env: { MQTT_PASSWORD: 'p: #{x}', CAM_PASS: 's3cret' } });
    expect(config.mqtt?.url).toBe('mqtt://localhost:1883');
    expect(config.mqtt?.password).toBe('p: #{x}');
    expect(config.cameras[0]!.source.url).toBe('rtsp://admin:s3cret@10.0.0.5/s');
    expect(issuesOf(text, { CAM_PASS: 'x' })).toEqual(['mqtt.password: environment variable MQTT_PASSWORD is not set']);
  });

  it('reports YAML syntax errors and a missing file as config errors', async () => {
    expect(issuesOf('cameras: [ { name: a')[0]).toMatch(/^: YAML: /);
    await expect(loadPipelineFile('/nonexistent/p.yaml')).rejects.toThrow(/p\.yaml: invalid pipeline\n {2}\(root\): file not found/);
  });

  it('loads a file from disk and anchors relative paths at its folder', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-config-'));
    const p = path.join(dir, 'p.yaml');
    await writeFile(p, 'cameras: [{ name: a, source: { url: clip.mp4 }, model: m.json }]\n');
    const loaded = await loadPipelineFile(p);
    expect(loaded.file).toBe(p);
    expect(loaded.config.cameras[0]!.source.url).toBe(path.join(dir, 'clip.mp4'));
    expect(loaded.config.cameras[0]!.model).toBe(path.join(dir, 'm.json'));
  });
});
