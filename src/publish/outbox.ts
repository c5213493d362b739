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
  /**
   * Messages pushed in this process are also kept in memory, up to this many (default 256), so
   * that sending one does not read back the file just written; older ones are read from disk.
   */
  cachedMessages?: number;
}

/** A waiting message: its sequence number (its file's name) and, while few wait, the message itself. */
interface Entry {
  seq: number;
  message?: DurableMessage;
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
  private cached = 0;
  private readonly maxCached: number;
  private readonly log = logger('outbox');

  private constructor(private readonly options: OutboxOptions) {
    this.maxCached = options.cachedMessages ?? 256;
  }

  private fileOf(seq: number): string {
    return path.join(this.options.dir, `${String(seq).padStart(12, '0')}.json`);
  }

  static async open(options: OutboxOptions): Promise<Outbox> {
    const outbox = new Outbox(options);
    await ensurePrivateDir(options.dir);
    const names = await readdir(options.dir);
    for (const name of names) {
      if (isAtomicLeftover(name)) await rm(path.join(options.dir, name), { force: true });
      const match = /^(\d{12})\.json$/.exec(name);
      if (match) outbox.entries.push({ seq: Number(match[1]) });
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
    await writeFileAtomic(this.fileOf(seq), JSON.stringify(message), privateFile);
    const keep = this.cached < this.maxCached;
    if (keep) this.cached++;
    this.entries.push(keep ? { seq, message } : { seq });
    while (this.entries.length > this.options.maxMessages) {
      const oldest = this.take(0);
      await rm(this.fileOf(oldest.seq), { force: true });
      this.dropped++;
      // Once the outbox is full every new message drops one: a line each would flood the log.
      this.log.limited('outbox full').warn(`outbox full (${this.options.maxMessages} messages): dropped the oldest; ${this.dropped} dropped so far`);
    }
  }

  /** The oldest waiting message; an unreadable file is dropped with a log line, not sent. */
  oldest(): Promise<{ seq: number; message: DurableMessage } | undefined> {
    return this.next(new Set());
  }

  /**
   * The oldest waiting message not in `sending` (those a sender has in flight); an unreadable file
   * is dropped with a log line, not sent.
   */
  async next(sending: ReadonlySet<number>): Promise<{ seq: number; message: DurableMessage } | undefined> {
    for (;;) {
      const entry = this.entries.find((e) => !sending.has(e.seq));
      if (!entry) return undefined;
      if (entry.message) return { seq: entry.seq, message: entry.message };
      const file = this.fileOf(entry.seq);
      try {
        const message = JSON.parse(await readFile(file, 'utf8')) as DurableMessage;
        if (typeof message.topic === 'string' && typeof message.payload === 'string') return { seq: entry.seq, message };
        throw new Error('not a message');
      } catch (err) {
        this.log.error(`${file}: unreadable, dropped (${(err as Error).message})`);
        const at = this.entries.indexOf(entry);
        if (at >= 0) this.take(at);
        this.dropped++;
        await rm(file, { force: true });
      }
    }
  }

  /** Whether a message waits that is not in `sending`. */
  hasOther(sending: ReadonlySet<number>): boolean {
    return this.entries.some((e) => !sending.has(e.seq));
  }

  /** The broker acknowledged it: out of the queue at once, its file removed when the promise settles. */
  async remove(seq: number): Promise<void> {
    const index = this.entries.findIndex((e) => e.seq === seq);
    if (index < 0) return;
    this.take(index);
    await rm(this.fileOf(seq), { force: true });
  }

  private take(index: number): Entry {
    const [entry] = this.entries.splice(index, 1);
    if (entry!.message) this.cached--;
    return entry!;
  }
}
