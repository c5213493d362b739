/**
 * Pipeline files at the edges: alias bombs, oversized files, durations past what Node's timers hold,
 * sources with an unknown scheme or no host. Each is a ConfigError naming the file and the place,
 * and `beats run` exits 2 on it without a stack trace.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_PIPELINE_BYTES, loadPipelineFile, parsePipeline } from '../src/config/load.js';
import { MAX_DURATION_S } from '../src/config/schema.js';
import { ConfigError } from '../src/errors.js';
import { spawnBeats } from './helpers/brokers.js';

const camera = (source = '{ url: "testsrc:" }') => `cameras: [{ name: a, source: ${source}, model: m }]`;

function issues(text: string): string[] {
  try {
    parsePipeline(text, 'p.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

/** Nine copies per level, six levels: a few hundred bytes that expand to 9^7 strings. */
const sequenceBomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...'bcdef'.split('').map((l, i) => `${l}: &${l} [${Array(9).fill(`*${'abcdef'[i]}`).join(',')}]`), `g: [${Array(9).fill('*f').join(',')}]`].join('\n');
/** The same with merge keys. */
const mergeBomb = ['a: &a {x: 1, y: 2}', ...'bcd'.split('').map((l, i) => `${l}: &${l} {<<: [${Array(10).fill(`*${'abc'[i]}`).join(',')}]}`), `e: {<<: [${Array(10).fill('*d').join(',')}]}`].join('\n');

async function tempFile(name: string, text: string | Buffer): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-edges-'));
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

describe('YAML alias bombs', () => {
  it('are a ConfigError naming the aliases, not an exception', () => {
    for (const bomb of [sequenceBomb, mergeBomb]) {
      expect(issues(`${bomb}\n${camera()}`)).toEqual([expect.stringMatching(/^: YAML: its aliases \(\*name\) expand to too much/)]);
    }
  });

  it('a handful of aliases still work', () => {
    const config = parsePipeline('cameras: [{ name: a, source: &src { url: "testsrc:" }, model: m }, { name: b, source: *src, model: m }]', 'p.yaml');
    expect(config.cameras.map((c) => c.source.url)).toEqual(['testsrc:', 'testsrc:']);
  });

  it('nesting deeper than the parser goes is a ConfigError', () => {
    expect(issues(`a: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n${camera()}`)).toEqual([expect.stringMatching(/^: YAML: nested too deeply/)]);
  });

  it('beats run exits 2 with the reason and no stack trace', async () => {
    for (const bomb of [sequenceBomb, mergeBomb]) {
      const file = await tempFile('bomb.yaml', `${bomb}\n${camera()}\n`);
      const p = spawnBeats(['run', file]);
      const exit = await p.exit;
      expect(exit.code, p.stderr()).toBe(2);
      expect(p.stderr()).toContain(file);
      expect(p.stderr()).toMatch(/aliases \(\*name\) expand to too much/);
      expect(p.stderr()).not.toMatch(/\n\s+at |ReferenceError|unexpected error/);
    }
  }, 60_000);
});

describe('the size of the pipeline file', () => {
  it('past the limit it is refused unread, naming the file and the limit', async () => {
    const big = `${camera()}\n${'# padding\n'.repeat(MAX_PIPELINE_BYTES / 10 + 1)}`;
    const file = await tempFile('big.yaml', big);
    const err = await loadPipelineFile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${file}: invalid pipeline\n  (root): too large: ${Buffer.byteLength(big)} bytes; a pipeline file may be at most 256 KiB (262144 bytes)`);
    expect(issues(big)).toEqual([expect.stringMatching(/^: too large: \d+ bytes; a pipeline file may be at most 256 KiB/)]);
  });

  it('just under the limit it loads', async () => {
    const text = `${camera()}\n`;
    const file = await tempFile('ok.yaml', text + '#'.repeat(MAX_PIPELINE_BYTES - Buffer.byteLength(text) - 1) + '\n');
    expect((await loadPipelineFile(file)).config.cameras).toHaveLength(1);
  });

  it('a device or a folder is not read', async () => {
    const err = await loadPipelineFile('/dev/zero').catch((e: unknown) => e);
    expect((err as ConfigError).issues).toEqual([{ path: '', message: 'not a regular file' }]);
  });

  it('a file with thousands of mistakes lists the first 50 and counts the rest', () => {
    const many = `cameras:\n${Array.from({ length: 300 }, (_, i) => `  - { name: "Bad ${i}", source: { url: "testsrc:" }, model: m }`).join('\n')}\n`;
    const listed = issues(many);
    expect(listed).toHaveLength(51);
    expect(listed.at(-1)).toBe(': and 250 more problems');
  });
});

describe('durations', () => {
  const at = (key: string, value: number): string => {
    switch (key) {
      case 'status_interval_s':
        return `status_interval_s: ${value}\n${camera()}`;
      case 'stall_timeout_s':
        return camera(`{ url: "rtsp://cam/s", stall_timeout_s: ${value} }`);
      case 'reconnect.max_s':
        return camera(`{ url: "rtsp://cam/s", reconnect: { initial_s: 1, max_s: ${value} } }`);
      case 'events.end_after_s':
        return `cameras: [{ name: a, source: { url: "testsrc:" }, model: m, events: { end_after_s: ${value} } }]`;
      default:
        return `cameras: [{ name: a, source: { url: "testsrc:" }, model: m, adapt: { min_interval_s: ${value} } }]`;
    }
  };
  const paths: Record<string, string> = {
    status_interval_s: 'status_interval_s',
    stall_timeout_s: 'cameras[0].source.stall_timeout_s',
    'reconnect.max_s': 'cameras[0].source.reconnect.max_s',
    'events.end_after_s': 'cameras[0].events.end_after_s',
    'adapt.min_interval_s': 'cameras[0].adapt.min_interval_s',
  };

  it('beats doctor --timeout past them is a usage error (exit 2)', async () => {
    const p = spawnBeats(['doctor', '--timeout', String(MAX_DURATION_S + 1)]);
    expect((await p.exit).code, p.stderr()).toBe(2);
    expect(p.stderr()).toMatch(/--timeout.*must be at most 2147483/);
  }, 30_000);

  it("past what Node's timers hold (2^31 - 1 ms) are refused at their path", () => {
    expect(MAX_DURATION_S).toBe(2_147_483);
    // The bound is the timers' own: a delay one second past it is what Node fires after 1 ms.
    expect((MAX_DURATION_S + 1) * 1000).toBeGreaterThan(2 ** 31 - 1);
    expect(MAX_DURATION_S * 1000).toBeLessThanOrEqual(2 ** 31 - 1);
    for (const [key, shown] of Object.entries(paths)) {
      for (const value of [2_147_484, 1e12]) {
        expect(issues(at(key, value)), `${key} ${value}`).toEqual([`${shown}: must be at most 2,147,483 s (about 24 days: Node's timers wait no longer)`]);
      }
      expect(issues(at(key, MAX_DURATION_S)), key).toEqual([]);
    }
  });
});

describe('the frame queue', () => {
  it('queue_frames is a whole number from 1 to 16, refused at its path otherwise', () => {
    for (const value of [1, 2, 16]) expect(issues(camera(`{ url: "rtsp://cam/s", queue_frames: ${value} }`)), String(value)).toEqual([]);
    for (const value of [0, 17, 1.5, -1]) {
      const listed = issues(camera(`{ url: "rtsp://cam/s", queue_frames: ${value} }`));
      expect(listed, String(value)).toHaveLength(1);
      expect(listed[0], String(value)).toMatch(/^cameras\[0\]\.source\.queue_frames: /);
    }
  });
});

describe('source URLs', () => {
  it('an unknown scheme is refused with the list of supported ones, not read as a file', () => {
    for (const url of ['ftp://cam/stream', 'file:///tmp/a.mp4', 'rtmp://cam/live', 'udp://239.0.0.1:1234', 'smb:share/clip.mp4']) {
      const scheme = url.split(':')[0];
      expect(issues(camera(`{ url: ${JSON.stringify(url)} }`)), url).toEqual([
        `cameras[0].source.url: ${scheme}: is not a supported source (supported: rtsp://, rtsps://, http://, https://, testsrc:, synthetic:, /dev/videoN or a file path)`,
      ]);
    }
  });

  it('a URL with no host is refused', () => {
    for (const url of ['rtsp://', 'rtsp:///stream', 'http://', 'rtsps://user:pw@/s', 'rtsp:stream']) {
      expect(issues(camera(`{ url: ${JSON.stringify(url)} }`)), url).toEqual([expect.stringMatching(/^cameras\[0\]\.source\.url: names no host \(expected e\.g\. (rtsps?|https?):\/\/user:password@192\.168\.1\.10/)]);
    }
    expect(issues(camera('{ url: "rtsp://cam:99999/s" }'))).toEqual([expect.stringMatching(/^cameras\[0\]\.source\.url: is not a valid rtsp:\/\/ URL/)]);
  });

  it('what is supported still loads', () => {
    for (const url of ['rtsp://admin:p@ss@10.0.0.5:554/s1', 'rtsps://cam.local/s', 'http://cam/video.mjpg?user=a&pwd=b', 'HTTPS://cam/x', 'testsrc:', 'synthetic:scene=street', '/dev/video0', 'clips/a.mp4', 'C:\\clips\\a.mp4']) {
      expect(issues(camera(`{ url: ${JSON.stringify(url)} }`)), url).toEqual([]);
    }
  });
});
