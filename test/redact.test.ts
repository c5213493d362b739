/**
 * Camera and broker credentials never reach a log: the redaction function on its own, and a real
 * ffmpeg run against a camera that refuses the login, with the debug log (ffmpeg's command line) on.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Subject } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logger, setLogLevel, setLogSink, type LogRecord } from '../src/log.js';
import { redactSecrets } from '../src/redact.js';
import { readFrames } from '../src/source/frames.js';
import { newSourceStats } from '../src/source/frame.js';
import { waitFor } from './helpers/brokers.js';

describe('redactSecrets', () => {
  it('masks the password of a URL, one with @ and : in it whole', () => {
    expect(redactSecrets('rtsp://admin:hunter2@10.0.0.5:554/stream1')).toBe('rtsp://admin:***@10.0.0.5:554/stream1');
    expect(redactSecrets('rtsp://admin:p@ss:w0rd@cam.local/live')).toBe('rtsp://admin:***@cam.local/live');
    expect(redactSecrets('http://admin:a@b@c@cam.local')).toBe('http://admin:***@cam.local');
    expect(redactSecrets('rtsp://admin:pa/ss@cam.local:554/x')).toBe('rtsp://admin:***@cam.local:554/x');
    expect(redactSecrets('rtsp://admin:pa?ss@cam.local/x')).toBe('rtsp://admin:***@cam.local/x');
    expect(redactSecrets('mqtts://token-only@broker:8883')).toBe('mqtts://***@broker:8883');
  });

  it('masks credentials in the query, whatever the parameter is called', () => {
    expect(redactSecrets('http://cam/snap.cgi?chn=1&user=admin&pwd=S3cret')).toBe('http://cam/snap.cgi?chn=1&user=***&pwd=***');
    expect(redactSecrets('http://cam/v?password=x&pass=y&token=z&key=k&api_key=a&access_token=t#f')).toBe('http://cam/v?password=***&pass=***&token=***&key=***&api_key=***&access_token=***#f');
    expect(redactSecrets('https://h/m.onnx?X-Amz-Signature=abc&X-Amz-Credential=def&v=2')).toBe('https://h/m.onnx?X-Amz-Signature=***&X-Amz-Credential=***&v=2');
    expect(redactSecrets('http://u:p@h/x?usr=a&pwd=b')).toBe('http://u:***@h/x?usr=***&pwd=***');
  });

  it('finds URLs anywhere in a line (an ffmpeg command line, an error) and leaves the rest as it was', () => {
    const line = 'ffmpeg -rtsp_transport tcp -i rtsp://admin:p@ss@10.0.0.5/s1 -an -f rawvideo pipe:1';
    expect(redactSecrets(line)).toBe('ffmpeg -rtsp_transport tcp -i rtsp://admin:***@10.0.0.5/s1 -an -f rawvideo pipe:1');
    expect(redactSecrets('"http://a:b@h/x": Server returned 401')).toBe('"http://a:***@h/x": Server returned 401');
    for (const plain of ['no url here', 'http://host:8080/path', 'file:///tmp/x.mp4', 'rtsp://10.0.0.5/s1?channel=1', 'http://[::1]:8080/x', '']) {
      expect(redactSecrets(plain)).toBe(plain);
    }
  });
});

describe('the logger', () => {
  it('masks credentials in every record, message and fields, whoever logs them', () => {
    const records: LogRecord[] = [];
    const previous = setLogSink((r) => records.push(r));
    try {
      logger('test').warn('cannot open http://admin:p@ss@cam/x?pwd=Q', { url: 'rtsp://u:secret@h/s', n: 3 });
    } finally {
      setLogSink(previous);
    }
    expect(records[0]?.msg).toBe('cannot open http://admin:***@cam/x?pwd=***');
    expect(records[0]?.fields).toEqual({ url: 'rtsp://u:***@h/s', n: 3 });
  });
});

describe('a camera that refuses the login, read by real ffmpeg with the debug log on', () => {
  const password = 'p@ss:w0rd';
  const queryPassword = 'Qu3ryS3cret';
  let server: Server;
  let port: number;
  const authorizations: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      authorizations.push(req.headers.authorization ?? '');
      res.writeHead(401, { 'www-authenticate': 'Basic realm="cam"' });
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it('logs the command line and the failure with no password in them', async () => {
    const records: LogRecord[] = [];
    const previous = setLogSink((r) => records.push(r));
    setLogLevel('debug');
    const stats = newSourceStats();
    const url = `http://admin:${password}@127.0.0.1:${port}/live.ts?user=admin&pwd=${queryPassword}`;
    const demand$ = new Subject<void>();
    const sub = readFrames({ camera: 'cam', url, output: { width: 64, height: 64, pixelFormat: 'rgb24', padValue: 0, align: 'center' }, stats, reconnect: { initialS: 5, maxS: 5 } }, demand$).subscribe();
    try {
      await waitFor(() => records.some((r) => r.level === 'warn' && r.component === 'source/cam'), 15_000, 'the restart warning');
    } finally {
      sub.unsubscribe();
      setLogLevel('info');
      setLogSink(previous);
    }
    // ffmpeg really had the password (it sent it), so the log had it to leak.
    expect(authorizations.some((a) => Buffer.from(a.replace(/^Basic /, ''), 'base64').toString() === `admin:${password}`)).toBe(true);
    const commandLine = records.find((r) => r.level === 'debug' && r.msg.startsWith('ffmpeg: '));
    expect(commandLine?.msg).toContain(`-i http://admin:***@127.0.0.1:${port}/live.ts?user=***&pwd=***`);
    const warning = records.find((r) => r.level === 'warn');
    expect(warning?.msg).toContain(`http://admin:***@127.0.0.1:${port}/live.ts?user=***&pwd=***`);
    const everything = records.map((r) => r.msg + JSON.stringify(r.fields ?? {})).join('\n');
    for (const secret of [password, 'ss:w0rd', 'w0rd', queryPassword]) expect(everything).not.toContain(secret);
  });
});
