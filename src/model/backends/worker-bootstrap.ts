// The inference worker's entry, as code for `new Worker(code, { eval: true })`. Compiled (this file
// is dist/model/backends/worker-bootstrap.js) it imports worker-thread.js beside it; run from the
// sources it first registers tsx in the worker thread (Node 20 applies no loader hooks of the main
// thread to a worker's own module), then imports worker-thread.ts.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

let bootstrap: string | undefined;

export function inferenceWorkerBootstrap(): string {
  if (!bootstrap) {
    const compiled = import.meta.url.endsWith('.js');
    // Two literal URLs, so that readers of the import graph (test/imports.test.ts) see the worker.
    const worker = (compiled ? new URL('./worker-thread.js', import.meta.url) : new URL('./worker-thread.ts', import.meta.url)).href;
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
