import { describe, expect, it } from 'vitest';
import { EventQueue } from '../src/publish/event-queue.js';
import type { EventOutput } from '../src/publish/messages.js';
import type { EventMessage } from '../src/publish/messages.js';

/** An output holding one message with this id (the queue only looks at the lists' lengths and ids). */
const output = (id: string): EventOutput => ({ messages: [{ id, type: 'new', after: { id } } as unknown as EventMessage], snapshots: [], counts: [] });

/** A publish whose calls wait until the test lets them finish, one by one. */
function gatedPublish() {
  const started: string[] = [];
  const gates: Array<(fail?: Error) => void> = [];
  const publish = (o: EventOutput) =>
    new Promise<void>((resolve, reject) => {
      started.push(o.messages[0]!.id);
      gates.push((fail) => (fail ? reject(fail) : resolve()));
    });
  const settle = async (fail?: Error) => {
    gates.shift()!(fail);
    await new Promise((r) => setImmediate(r));
  };
  return { publish, started, settle };
}

const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

describe('the event queue (events off the frame path)', () => {
  it('publishes in order, one at a time, while push returns at once', async () => {
    const gate = gatedPublish();
    const queue = new EventQueue({ publish: gate.publish, maxPending: 8, onError: () => undefined });
    for (const id of ['a', 'b', 'c']) expect(await settled(queue.push(output(id)))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(gate.started).toEqual(['a']);
    expect(queue.depth).toBe(3);
    await gate.settle();
    expect(gate.started).toEqual(['a', 'b']);
    await gate.settle();
    await gate.settle();
    expect(gate.started).toEqual(['a', 'b', 'c']);
    expect(queue.depth).toBe(0);
    // Frames without events do not enter the queue.
    await queue.push({ messages: [], snapshots: [], counts: [] });
    expect(queue.depth).toBe(0);
  });

  it('holds the frame path once maxPending outputs wait, and lets it go as they are published', async () => {
    const gate = gatedPublish();
    const queue = new EventQueue({ publish: gate.publish, maxPending: 2, onError: () => undefined });
    expect(await settled(queue.push(output('a')))).toBe(true);
    expect(await settled(queue.push(output('b')))).toBe(true);
    const third = queue.push(output('c'));
    expect(await settled(third)).toBe(false);
    await gate.settle();
    expect(await settled(third)).toBe(true);
    const drained = queue.drain();
    expect(await settled(drained)).toBe(false);
    await gate.settle();
    await gate.settle();
    expect(await settled(drained)).toBe(true);
  });

  it('a publish that fails is reported with its output, and the ones after it still go', async () => {
    const gate = gatedPublish();
    const failed: string[] = [];
    const queue = new EventQueue({ publish: gate.publish, maxPending: 8, onError: (err, o) => failed.push(`${o.messages[0]!.id}: ${(err as Error).message}`) });
    void queue.push(output('a'));
    void queue.push(output('b'));
    await new Promise((r) => setImmediate(r));
    await gate.settle(new Error('disk full'));
    await gate.settle();
    await queue.drain();
    expect(failed).toEqual(['a: disk full']);
    expect(gate.started).toEqual(['a', 'b']);
  });
});
