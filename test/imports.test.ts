/**
 * The direction of src/'s imports: no circles between files, and each folder imports only what lies
 * below it. Reads every src/**\/*.ts file's static imports and re-exports, dynamic `import()` and
 * worker URLs (`new URL('./x.ts', import.meta.url)`) with TypeScript's own pre-processor, and names
 * each offending import as `file -> import`.
 *
 * The layers, leaves first (each may import those above it, not those below):
 * - root leaves: errors.ts, log.ts, redact.ts, version.ts, fs-atomic.ts, fs-private.ts (they import
 *   only one another);
 * - config/: the pipeline file, its schema and source kinds; imports only the root leaves;
 * - source/: frame sources (source/frame.ts: the frame's vocabulary); knows no model;
 * - model/: inference (detectors, cards, head surgery; model/detection.ts: a detection);
 * - train/: the Beats CNN's architecture, training and export, and TensorFlow.js;
 * - publish/: MQTT topics and payloads (topics.ts, messages.ts), the publisher and the broker;
 * - track/: tracker, zones and events;
 * - adapt/: on-device adaptation (uses train/'s TensorFlow.js);
 * - serve/: HTTP, live page and metrics (reads pipeline/types.ts);
 * - pipeline.ts and pipeline/: the assembly (pipeline/commands.ts: the one place that takes MQTT
 *   commands; adapt/ holds no MQTT client); cli/: the commands, which nothing else imports.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const srcDir = fileURLToPath(new URL('../src', import.meta.url));

/** Root files of src/ that everything may import; they import only one another. */
const ROOT_LEAVES = ['errors.ts', 'log.ts', 'redact.ts', 'version.ts', 'fs-atomic.ts', 'fs-private.ts'];

/** An import from one src file to another, both relative to src/. */
interface Edge {
  from: string;
  to: string;
}

interface Rule {
  name: string;
  /** Whether the rule breaks for this import. */
  breaks: (edge: Edge) => boolean;
}

/** The top folder of a src-relative path, or '' for a file at the root of src/. */
const folder = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '');
const isRootLeaf = (file: string): boolean => ROOT_LEAVES.includes(file);

/**
 * What each folder must not import. 'pipeline' is the pipeline's assembly: pipeline.ts and
 * pipeline/ (serve/ may read pipeline/'s types, not pipeline.ts).
 */
const FORBIDDEN: Record<string, readonly string[]> = {
  source: ['model', 'track', 'publish', 'adapt', 'serve', 'train', 'cli', 'pipeline'],
  model: ['track', 'publish', 'adapt', 'serve', 'train', 'cli', 'pipeline'],
  train: ['track', 'publish', 'adapt', 'serve', 'cli', 'pipeline'],
  publish: ['track', 'adapt', 'serve', 'train', 'cli', 'pipeline'],
  track: ['adapt', 'serve', 'train', 'cli', 'pipeline'],
  adapt: ['serve', 'cli', 'pipeline'],
};

/** The part of src/ a file belongs to, as FORBIDDEN names it. */
const part = (file: string): string => (file === 'pipeline.ts' ? 'pipeline' : folder(file));

const rules: Rule[] = [
  {
    name: 'root leaves import only one another',
    breaks: ({ from, to }) => isRootLeaf(from) && !isRootLeaf(to),
  },
  {
    name: 'config/ imports nothing outside config/ but the root leaves',
    breaks: ({ from, to }) => folder(from) === 'config' && folder(to) !== 'config' && !isRootLeaf(to),
  },
  ...Object.entries(FORBIDDEN).map(([from, forbidden]) => ({
    name: `${from}/ imports nothing from ${forbidden.map((f) => (f === 'pipeline' ? 'the pipeline' : `${f}/`)).join(', ')}`,
    breaks: (edge: Edge) => folder(edge.from) === from && forbidden.includes(part(edge.to)),
  })),
  {
    name: 'serve/ does not import pipeline.ts (it is started by it)',
    breaks: ({ from, to }) => folder(from) === 'serve' && to === 'pipeline.ts',
  },
  {
    name: 'adapt/ holds no MQTT client (src/pipeline/commands.ts routes its commands and publishes its status)',
    breaks: ({ from, to }) => folder(from) === 'adapt' && to === 'publish/mqtt.ts',
  },
  {
    name: 'nothing outside cli/ imports cli/',
    breaks: ({ from, to }) => folder(from) !== 'cli' && folder(to) === 'cli',
  },
];

/** Every .ts file under `dir`, relative to it, with forward slashes. */
function tsFiles(dir: string, under = ''): string[] {
  return readdirSync(path.join(dir, under), { withFileTypes: true }).flatMap((entry) => {
    const rel = under ? `${under}/${entry.name}` : entry.name;
    if (entry.isDirectory()) return tsFiles(dir, rel);
    return entry.name.endsWith('.ts') ? [rel] : [];
  });
}

/** The relative module specifiers a file imports: static, re-exports, `import()`, and worker URLs. */
function importSpecifiers(text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  const specifiers = info.importedFiles.map((f) => f.fileName);
  for (const m of text.matchAll(/new URL\(\s*(['"])(\.{1,2}\/[^'"]+\.[jt]s)\1\s*,\s*import\.meta\.url\s*\)/g)) specifiers.push(m[2]!);
  return specifiers.filter((s) => s.startsWith('./') || s.startsWith('../'));
}

/** The import edges between src files; a relative import into src/ that names no file is an error. */
function importGraph(): { files: string[]; edges: Edge[]; unresolved: string[] } {
  const files = tsFiles(srcDir);
  const edges: Edge[] = [];
  const unresolved: string[] = [];
  for (const from of files) {
    for (const spec of importSpecifiers(readFileSync(path.join(srcDir, from), 'utf8'))) {
      const target = path.resolve(path.dirname(path.join(srcDir, from)), spec).replace(/\.js$/, '.ts');
      const to = path.relative(srcDir, target).split(path.sep).join('/');
      if (to.startsWith('..')) continue; // package.json, the shipped models: not code of src/
      if (existsSync(target)) edges.push({ from, to });
      else unresolved.push(`${from} -> ${spec}`);
    }
  }
  return { files, edges, unresolved };
}

/** Each circle of imports as the chain of files around it (strongly connected components, Tarjan). */
function importCycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) next.set(from, [...(next.get(from) ?? []), to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    const selfImport = next.get(v)?.includes(v) ?? false;
    if (component.length > 1 || selfImport) cycles.push(component.reverse());
  };
  for (const v of next.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

/** The imports inside one circle, `file -> import` each, so a reader sees which to cut. */
function cycleEdges(cycle: readonly string[], edges: readonly Edge[]): string[] {
  const members = new Set(cycle);
  return edges.filter((e) => members.has(e.from) && members.has(e.to)).map((e) => `${e.from} -> ${e.to}`);
}

/** `rule: file -> import` for each import that breaks a rule. */
function ruleViolations(edges: readonly Edge[], checked: readonly Rule[] = rules): string[] {
  return checked.flatMap((rule) => edges.filter(rule.breaks).map((e) => `${rule.name}: ${e.from} -> ${e.to}`));
}

describe('import direction in src/', () => {
  const graph = importGraph();

  it('reads the imports of every src file (static, dynamic and worker URLs)', () => {
    expect(graph.files.length).toBeGreaterThan(50);
    expect(graph.unresolved).toEqual([]);
    const has = (from: string, to: string) => graph.edges.some((e) => e.from === from && e.to === to);
    // Static, dynamic (the CLI loads its commands lazily) and the engine's worker thread.
    expect(has('source/frames.ts', 'source/frame.ts')).toBe(true);
    expect(graph.edges.some((e) => e.from === 'cli/main.ts' && folder(e.to) === 'cli')).toBe(true);
    expect(has('adapt/worker-bootstrap.ts', 'adapt/worker.ts')).toBe(true);
  });

  it('the checks catch what they are for', () => {
    const bad: Edge[] = [
      { from: 'a.ts', to: 'b.ts' },
      { from: 'b.ts', to: 'a.ts' },
      { from: 'config/x.ts', to: 'source/y.ts' },
      { from: 'config/x.ts', to: 'errors.ts' },
      { from: 'model/x.ts', to: 'adapt/y.ts' },
      { from: 'train/x.ts', to: 'model/y.ts' },
      { from: 'serve/x.ts', to: 'cli/y.ts' },
      { from: 'serve/x.ts', to: 'pipeline/types.ts' },
      { from: 'adapt/x.ts', to: 'pipeline.ts' },
      { from: 'adapt/x.ts', to: 'publish/mqtt.ts' },
      { from: 'adapt/x.ts', to: 'publish/topics.ts' },
    ];
    expect(importCycles(bad)).toEqual([['a.ts', 'b.ts']]);
    expect(ruleViolations(bad)).toEqual([
      'config/ imports nothing outside config/ but the root leaves: config/x.ts -> source/y.ts',
      'model/ imports nothing from track/, publish/, adapt/, serve/, train/, cli/, the pipeline: model/x.ts -> adapt/y.ts',
      'adapt/ imports nothing from serve/, cli/, the pipeline: adapt/x.ts -> pipeline.ts',
      'adapt/ holds no MQTT client (src/pipeline/commands.ts routes its commands and publishes its status): adapt/x.ts -> publish/mqtt.ts',
      'nothing outside cli/ imports cli/: serve/x.ts -> cli/y.ts',
    ]);
    expect(importSpecifiers("import type { A } from './a.js';\nexport { b } from '../b.js';\nconst c = await import('./c.js');\nnew URL('./w.ts', import.meta.url);\nnew URL('../package.json', import.meta.url);\nimport x from 'rxjs';")).toEqual(['./a.js', '../b.js', './c.js', './w.ts']);
  });

  it('has no import cycles between files', () => {
    const cycles = importCycles(graph.edges).map((cycle) => cycleEdges(cycle, graph.edges).join(', '));
    expect(cycles, `import cycles:\n${cycles.join('\n')}`).toEqual([]);
  });

  it('imports point one way between folders', () => {
    const violations = ruleViolations(graph.edges);
    expect(violations, `imports against the layering:\n${violations.join('\n')}`).toEqual([]);
  });
});
