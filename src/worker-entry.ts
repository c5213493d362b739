// The entry code of the project's worker threads, for `new Worker(code, { eval: true })`. Compiled
// (dist/) it imports the worker's .js beside its bootstrap; run from the sources it first registers
// tsx in the worker thread, then imports the .ts: Node 20 applies no loader hooks of the main thread
// to a worker's own module, and `--import tsx` in a Worker's execArgv does not reach it either. Both
// by absolute URL, so nothing depends on the working directory.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/**
 * `compiled` and `source` are the worker's two URLs, written literally by each bootstrap (`new
 * URL('./worker.js', import.meta.url)`), so that readers of the import graph see the worker.
 */
export function workerEntry(bootstrapUrl: string, compiled: URL, source: URL): string {
  return bootstrapUrl.endsWith('.js') ? `import(${JSON.stringify(compiled.href)});` : `import(${JSON.stringify(tsxApi())}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source.href)}); });`;
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
