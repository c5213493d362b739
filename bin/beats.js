#!/usr/bin/env node
// The `beats` command. Runs the compiled CLI in dist/ (`npm run build`, which `npm install` and
// `npm ci` run). Where dist/ is missing, or older than a file in src/ (a checkout being edited), it
// runs the sources through tsx and says so in one line on stderr, so an edit is never silently
// ignored. BEATS_FROM_SOURCE=1 runs the sources without that line (the tests do: they test src/).
import { readFileSync, readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);

/** The newest modification time (ms) of a file under `dir`. */
function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const url = new URL(entry.name + (entry.isDirectory() ? '/' : ''), dir);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(url) : statSync(url).mtimeMs);
  }
  return newest;
}

/** Why dist/ cannot be run, or undefined when it can. */
function distProblem() {
  let built;
  try {
    built = Number(readFileSync(new URL('dist/.built', root), 'utf8'));
  } catch {
    return 'dist/ is not built';
  }
  let sources;
  try {
    sources = newestMtime(new URL('src/', root));
  } catch {
    return undefined; // an install without sources runs its build
  }
  return sources > built ? 'dist/ is older than src/' : undefined;
}

const fromSource = process.env.BEATS_FROM_SOURCE === '1';
const problem = fromSource ? 'BEATS_FROM_SOURCE=1' : distProblem();
if (problem === undefined) {
  await import('../dist/cli/main.js');
} else {
  if (!fromSource) console.error(`beats: ${problem}; running the sources through tsx (npm run build compiles them)`);
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
