/**
 * The logger against outside text: a newline cannot forge a line, escape sequences do not reach the
 * terminal, JSON lines stay one parseable line, and a flood of lines under one key is summarised.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { escapeControl, formatRecord, logger, setLogLimits, setLogSink, type LogRecord } from '../src/log.js';
import { waitFor } from './helpers/brokers.js';

const forged = 'on\n12:00:00.000 ERROR [feedback] forged line\r\u001b[2J\u001b]0;title\u0007\u009b31m\u2028x\u202egnp.exe';

describe('lines written', () => {
  it('a message with newlines, carriage returns and escape sequences is one line with them escaped', () => {
    const line = formatRecord({ level: 'warn', component: 'adapt', msg: `payload "${forged}" ignored`, fields: { topic: 'a\nb' } }, new Date(0), 'human');
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toMatch(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/);
    expect(line).toBe(
      '00:00:00.000 WARN  [adapt] payload "on\\n12:00:00.000 ERROR [feedback] forged line\\r\\x1b[2J\\x1b]0;title\\x07\\x9b31m\\u2028x\\u202egnp.exe" ignored {"topic":"a\\nb"}\n',
    );
    expect(escapeControl('tab\tkept')).toBe('tab\tkept');
  });

  it('a JSON line escapes what JSON.stringify leaves raw, and parses back to the same text', () => {
    const line = formatRecord({ level: 'warn', component: 'adapt', msg: forged }, new Date(0), 'json');
    expect(line.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/);
    expect((JSON.parse(line) as { msg: string }).msg).toBe(forged);
  });

  it('the default sink writes one line per record to stderr', () => {
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      logger('adapt').warn(`"${forged}" is neither on nor off`);
    } finally {
      spy.mockRestore();
    }
    expect(written).toHaveLength(1);
    expect(written[0]!.split('\n')).toHaveLength(2);
    expect(written[0]).not.toContain('\u001b');
  });
});

describe('limited lines', () => {
  afterEach(() => setLogLimits());

  function capture(): { records: LogRecord[]; restore: () => void } {
    const records: LogRecord[] = [];
    const previous = setLogSink((r) => records.push(r));
    return { records, restore: () => setLogSink(previous) };
  }

  it('a flood under one key writes the first lines of a window, then one line with the count', async () => {
    setLogLimits({ burst: 3, windowMs: 300 });
    const { records, restore } = capture();
    try {
      const log = logger('adapt');
      for (let i = 0; i < 50; i++) log.limited('beats/cam/adapt/set').warn(`bad payload ${i}`);
      log.limited('beats/cam/model/rollback').warn('other key');
      log.warn('not limited');
      expect(records.map((r) => r.msg)).toEqual(['bad payload 0', 'bad payload 1', 'bad payload 2', 'other key', 'not limited']);
      const summary = await waitFor(() => records.find((r) => /suppressed/.test(r.msg)), 5000, 'the summary');
      expect(summary).toMatchObject({ level: 'warn', component: 'adapt', msg: 'beats/cam/adapt/set: 47 similar lines suppressed in the last 0.3 s', fields: { suppressed: 47 } });
      // A new window writes again.
      log.limited('beats/cam/adapt/set').warn('after the window');
      expect(records.at(-1)?.msg).toBe('after the window');
    } finally {
      restore();
    }
  });

  it('a flood of distinct keys (topics made up by a client) stays bounded', async () => {
    setLogLimits({ burst: 2, windowMs: 300, maxKeys: 10 });
    const { records, restore } = capture();
    try {
      for (let i = 0; i < 5000; i++) logger('broker').limited(`beats/cam${i}/feedback`).warn(`refused ${i}`);
      expect(records.length).toBeLessThanOrEqual(10 * 2 + 2);
      await waitFor(() => records.some((r) => /\(other keys\): \d+ similar lines suppressed/.test(r.msg)), 5000, 'the summary of the shared key');
    } finally {
      restore();
    }
  });
});
