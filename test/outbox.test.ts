import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { setLogSink, type LogRecord } from '../src/log.js';
import { Outbox, type DurableMessage } from '../src/publish/outbox.js';

const message = (n: number): DurableMessage => ({ topic: 'beats/events', payload: JSON.stringify({ n }), qos: 1, retain: false });

describe('durable outbox', () => {
  it('keeps messages in order across a reopen (a restart of the pipeline)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-'));
    const first = await Outbox.open({ dir, maxMessages: 100 });
    for (let i = 1; i <= 5; i++) await first.push(message(i));
    const head = await first.oldest();
    await first.remove(head!.seq);

    const again = await Outbox.open({ dir, maxMessages: 100 });
    expect(again.depth).toBe(4);
    const seen: number[] = [];
    for (let next = await again.oldest(); next; next = await again.oldest()) {
      seen.push((JSON.parse(next.message.payload) as { n: number }).n);
      await again.remove(next.seq);
    }
    expect(seen).toEqual([2, 3, 4, 5]);
    // New messages after a restart sort after the old ones.
    await again.push(message(6));
    expect(await readdir(dir)).toEqual(['000000000006.json']);
  });

  it('a full outbox does not flood the log: a few lines, then a count', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-'));
    const records: LogRecord[] = [];
    const previous = setLogSink((r) => records.push(r));
    try {
      const outbox = await Outbox.open({ dir, maxMessages: 2 });
      for (let i = 1; i <= 60; i++) await outbox.push(message(i));
      expect(outbox.depth).toBe(2);
      const lines = records.filter((r) => r.component === 'outbox' && /outbox full/.test(r.msg));
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.length).toBeLessThan(20);
    } finally {
      setLogSink(previous);
    }
  });

  it('is bounded: the oldest is dropped first and counted', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-'));
    const outbox = await Outbox.open({ dir, maxMessages: 3 });
    for (let i = 1; i <= 5; i++) await outbox.push(message(i));
    expect(outbox.depth).toBe(3);
    expect(outbox.dropped).toBe(2);
    expect(JSON.parse((await outbox.oldest())!.message.payload)).toEqual({ n: 3 });
    expect((await readdir(dir)).length).toBe(3);
  });

  it('ignores half-written leftovers of a crash and drops unreadable files instead of sending them', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-'));
    await writeFile(path.join(dir, '000000000001.json.tmp-123-abc'), '{"topic":"beats/ev');
    await writeFile(path.join(dir, '000000000002.json'), 'not json');
    await writeFile(path.join(dir, '000000000003.json'), JSON.stringify(message(3)));
    const outbox = await Outbox.open({ dir, maxMessages: 10 });
    expect(outbox.depth).toBe(2);
    const next = await outbox.oldest();
    expect(JSON.parse(next!.message.payload)).toEqual({ n: 3 });
    expect(outbox.dropped).toBe(1);
    expect((await readdir(dir)).sort()).toEqual(['000000000003.json']);
  });

  it('serves the newest messages from memory, up to its bound, and the rest from disk', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'beats-outbox-'));
    const outbox = await Outbox.open({ dir, maxMessages: 10, cachedMessages: 2 });
    for (let i = 1; i <= 3; i++) await outbox.push(message(i));
    // The files of the two kept in memory are not read again: spoiling them changes nothing.
    for (const name of await readdir(dir)) await writeFile(path.join(dir, name), 'spoilt');
    const sending = new Set<number>();
    const first = await outbox.next(sending);
    sending.add(first!.seq);
    const second = await outbox.next(sending);
    sending.add(second!.seq);
    expect([first, second].map((m) => JSON.parse(m!.message.payload))).toEqual([{ n: 1 }, { n: 2 }]);
    expect(outbox.hasOther(sending)).toBe(true);
    // The third was read from its (spoilt) file: dropped, not sent.
    expect(await outbox.next(sending)).toBeUndefined();
    expect(outbox.dropped).toBe(1);
    expect(outbox.hasOther(sending)).toBe(false);
    await outbox.remove(first!.seq);
    await outbox.remove(second!.seq);
    expect(outbox.depth).toBe(0);
    expect(await readdir(dir)).toEqual([]);
    // Room again in memory once they are gone.
    await outbox.push(message(4));
    await writeFile(path.join(dir, '000000000004.json'), 'spoilt');
    expect(JSON.parse((await outbox.oldest())!.message.payload)).toEqual({ n: 4 });
  });
});
