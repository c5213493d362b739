import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes a file so that readers (and a restart after a crash or kill -9) see either the old content
 * or the new one, never a half-written file: write a temporary file beside it, fsync, rename, and
 * fsync the folder so the rename itself survives a power cut.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const handle = await open(tmp, 'w', options.mode);
    try {
      // open's mode passes through the umask: a file given one gets it exactly.
      if (options.mode !== undefined) await handle.chmod(options.mode);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(file));
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    await handle.close();
  }
}

/** Leftovers of writes interrupted by a crash: `name.tmp-PID-xxxx`. */
export const isAtomicLeftover = (name: string) => /\.tmp-\d+-[a-z0-9]+$/.test(name);
