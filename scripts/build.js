// Compiles src/ to dist/ (tsconfig.build.json), copies the files the code reads beside itself at run
// time (src/serve/static/), and stamps the build with the time it started, which bin/beats.js
// compares with the sources' times. `node scripts/build.js [--outDir DIR]`; run by `npm run build`
// and by `prepare` (so `npm install` and `npm ci` build). Where TypeScript is not installed
// (`npm ci --omit=dev`) it builds nothing and says so: bin/beats.js then runs the sources through tsx.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
/** Files read at run time relative to the module that reads them, copied as they are. */
const ASSETS = ['serve/static'];

function option(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function typescriptCompiler() {
  try {
    return createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    return undefined;
  }
}

const outDir = path.resolve(root, option('--outDir') ?? 'dist');
const tsc = typescriptCompiler();
if (!tsc) {
  console.warn('beats build: typescript is not installed (dev dependencies omitted); dist/ not built, bin/beats.js runs src/ through tsx');
  process.exit(0);
}
const started = Date.now();
rmSync(outDir, { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', outDir], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status !== 0) {
  // No stamp: bin/beats.js treats a failed build as no build.
  console.error(`beats build: tsc failed (exit ${result.status ?? result.signal}); dist/ is incomplete`);
  process.exit(result.status ?? 1);
}
for (const asset of ASSETS) {
  cpSync(path.join(root, 'src', asset), path.join(outDir, asset), { recursive: true });
}
writeFileSync(path.join(outDir, '.built'), `${started}\n`);
