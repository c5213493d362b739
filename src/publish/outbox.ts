import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { isAtomicLeftover, writeFileAtomic } from '../fs-atomic.js';
import { ensurePrivateDir, privateFile } from '../fs-private.js';
import { logger } from '../log.js';

/** A message that must reach the broker: kept on disk until the broker acknowledged it. */
export interface DurableMessage {
  topic: string;
  payload: string;
  qos: 1 | 2;
  retain: boolean;
}

export interface OutboxOptions {
  dir: string;
  /** Past this many waiting messages the oldest is dropped (counted and logged). */
  maxMessages: number;
}

interface Entry {
  seq: number;
  file: string;
}

/**
 * A durable FIFO of messages on disk, one file per message (`<seq>.json`, written atomically).
 * While the broker is away messages wait here; a restart of the process finds them again. Bounded:
 * the oldest is dropped first. The publisher takes the oldest, sends it, and removes it on ack.
 */
export class Outbox {
  dropped = 0;
  private readonly entries: Entry[] = [];
  private nextSeq = 1;
  private readonly log = logger('outbox');

  private constructor(private readonly options: OutboxOptions) {}

  static async open(options: OutboxOptions): Promise<Outbox> {
    const outbox = new Outbox(options);
    await ensurePrivateDir(options.dir);
    const names = await readdir(options.dir);
    for (const name of names) {
      if (isAtomicLeftover(name)) await rm(path.join(options.dir, name), { force: true });
      const match = /^(\d{12})\.json$/.exec(name);
      if (match) outbox.entries.push({ seq: Number(match[1]), file: path.join(options.dir, name) });
    }
    outbox.entries.sort((a, b) => a.seq - b.seq);
    outbox.nextSeq = (outbox.entries.at(-1)?.seq ?? 0) + 1;
    if (outbox.entries.length > 0) outbox.log.info(`${outbox.entries.length} message(s) from an earlier run wait in ${options.dir}`);
    return outbox;
  }

  get depth(): number {
    return this.entries.length;
  }

  async push(message: DurableMessage): Promise<void> {
    const seq = this.nextSeq++;
    const file = path.join(this.options.dir, `${String(seq).padStart(12, '0')}.json`);
    await writeFileAtomic(file, JSON.stringify(message), privateFile);
    this.entries.push({ seq, file });
    while (this.entries.length > this.options.maxMessages) {
      const oldest = this.entries.shift()!;
      await rm(oldest.file, { force: true });
      this.dropped++;
      // Once the outbox is full every new message drops one: a line each would flood the log.
      this.log.limited('outbox full').warn(`outbox full (${this.options.maxMessages} messages): dropped the oldest; ${this.dropped} dropped so far`);
    }
  }

  /** The oldest waiting message; an unreadable file is dropped with a log line, not sent. */
  async oldest(): Promise<{ seq: number; message: DurableMessage } | undefined> {
    while (this.entries.length > 0) {
      const entry = this.entries[0]!;
      try {
        const message = JSON.parse(await readFile(entry.file, 'utf8')) as DurableMessage;
        if (typeof message.topic === 'string' && typeof message.payload === 'string') return { seq: entry.seq, message };
        throw new Error('not a message');
      } catch (err) {
        this.log.error(`${entry.file}: unreadable, dropped (${(err as Error).message})`);
        this.entries.shift();
        this.dropped++;
        await rm(entry.file, { force: true });
      }
    }
    return undefined;
  }

  /** The broker acknowledged it. */
  async remove(seq: number): Promise<void> {
    const index = this.entries.findIndex((e) => e.seq === seq);
    if (index < 0) return;
    const [entry] = this.entries.splice(index, 1);
    await rm(entry!.file, { force: true });
  }
}
