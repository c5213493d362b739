import { constants } from 'node:fs';
import { access, chmod, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { StateError } from './errors.js';

/**
 * Folders and files of state_dir (outbox, snapshots, head versions): folders made one level at a
 * time, each new one 0700 and each file 0600 whatever the umask (events, snapshots and heads are the
 * site's data, not for other users of the machine), and a path that cannot hold them fails at once
 * with a StateError naming it. Node's `mkdir({ recursive: true })` is not used: under a filesystem
 * that refuses new entries with ENOENT (/proc) it retries forever.
 */

/** writeFileAtomic's options for a state file: 0600, whatever the umask. */
export const privateFile = Object.freeze({ mode: 0o600 });

/** Creates `dir` and its missing parents (0700); an existing folder is kept as it is. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  const target = path.resolve(dir);
  const missing: string[] = [];
  let at = target;
  for (;;) {
    const info = await stat(at).catch((err: NodeJS.ErrnoException) => {
      // ENOTDIR: a parent is a file; found as such one level up.
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw new StateError(at, `cannot be read (${err.code ?? err.message})`, { cause: err });
    });
    if (info) {
      if (!info.isDirectory()) throw new StateError(at, `is a file, not a folder${at === target ? '' : ` (${target} would be made in it)`}`);
      break;
    }
    missing.unshift(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const folder of missing) {
    try {
      await mkdir(folder, { mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && (await stat(folder)).isDirectory()) continue;
      throw new StateError(folder, `cannot be created (${code ?? errorText(err)}${code === 'ENOENT' ? `: ${path.dirname(folder)} takes no new folders` : ''})`, { cause: err });
    }
    // mkdir's mode passes through the umask; the folder is ours, so it is set as meant.
    await chmod(folder, 0o700);
  }
  await access(target, constants.W_OK | constants.X_OK).catch((err: NodeJS.ErrnoException) => {
    throw new StateError(target, `is not writable (${err.code ?? err.message})`, { cause: err });
  });
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));
