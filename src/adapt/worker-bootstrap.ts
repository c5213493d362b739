// The adaptation worker's entry, as code for `new Worker(code, { eval: true })`. Compiled (this file
// is dist/adapt/worker-bootstrap.js) it imports worker.js beside it; run from the sources it first
// registers tsx in the worker thread, then imports worker.ts.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

let bootstrap: string | undefined;

/**
 * The bootstrap code. tsx is registered inside the worker because Node 20 does not apply
 * `--import tsx` given in a Worker's execArgv to the worker's own module, and the main thread's hooks
 * are not inherited; this works under `node bin/beats.js`, tsx and vitest alike. Both by absolute
 * URL, so nothing depends on the working directory.
 */
export function workerBootstrap(): string {
  if (!bootstrap) {
    const compiled = import.meta.url.endsWith('.js');
    // Two literal URLs, so that readers of the import graph (test/imports.test.ts) see the worker.
    const worker = (compiled ? new URL('./worker.js', import.meta.url) : new URL('./worker.ts', import.meta.url)).href;
    bootstrap = compiled
      ? `import(${JSON.stringify(worker)});`
      : `import(${JSON.stringify(tsxApi())}).then((tsx) => { tsx.register(); return import(${JSON.stringify(worker)}); });`;
  }
  return bootstrap;
}

/** The URL of tsx's ESM API (tsx/esm/api), resolved from its package.json. */
function tsxApi(): string {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('tsx/package.json');
  const pkg = require(pkgPath) as { exports: Record<string, { import?: { default?: string } } | string> };
  const entry = pkg.exports['./esm/api'];
  const relative = typeof entry === 'object' ? entry.import?.default : undefined;
  if (!relative) throw new Error(`tsx (${pkgPath}) has no ESM API entry (tsx/esm/api)`);
  return new URL(relative, pathToFileURL(pkgPath)).href;
}
