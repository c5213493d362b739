/**
 * A synthetic scene's options: their checks, and the `synthetic:` URL that names them.
 */
import { SourceError } from '../../errors.js';
import { DEFAULT_SCENE_OPTIONS, DOMAIN_SHIFTS, SYNTHETIC_SCENES, type DomainShift, type SceneOptions } from './types.js';


export function validateSceneOptions(o: SceneOptions): void {
  const fail = (key: string, msg: string): never => {
    throw new Error(`synthetic scene: ${key}: ${msg}`);
  };
  if (!(SYNTHETIC_SCENES as readonly string[]).includes(o.scene)) fail('scene', `unknown scene "${o.scene}" (known: ${SYNTHETIC_SCENES.join(', ')})`);
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff) fail('seed', `must be a whole number from 0 to 4294967295, not ${o.seed}`);
  if (!Number.isInteger(o.width) || o.width < 32 || o.width > 4096) fail('width', `must be a whole number from 32 to 4096, not ${o.width}`);
  if (!Number.isInteger(o.height) || o.height < 32 || o.height > 4096) fail('height', `must be a whole number from 32 to 4096, not ${o.height}`);
  if (!(o.fps > 0 && o.fps <= 240)) fail('fps', `must be above 0 and at most 240, not ${o.fps}`);
  for (const d of [...o.domain, ...(o.shift?.domain ?? [])]) if (!(DOMAIN_SHIFTS as readonly string[]).includes(d)) fail('domain', `unknown domain shift "${d}" (known: ${DOMAIN_SHIFTS.join(', ')})`);
  if (o.shift && !(o.shift.at >= 0 && Number.isFinite(o.shift.at))) fail('shift.at', `must be a number of seconds >= 0, not ${o.shift.at}`);
}

/** The option keys of a `synthetic:` URL. */
export const SYNTHETIC_URL_KEYS = ['scene', 'seed', 'size', 'fps', 'domain', 'shift', 'shift_at', 'seconds'] as const;
export type SyntheticUrlKey = (typeof SYNTHETIC_URL_KEYS)[number];

/**
 * Builds scene options from key/value pairs (a URL's or the CLI's); `fail` reports a bad key, `name`
 * names another key in a message (the CLI says --shift-at where a URL says shift_at).
 * Defaults: scene street, seed 1, size 320x240, fps 10, no domain shift.
 */
export function sceneOptionsFrom(values: ReadonlyMap<string, string>, fail: (key: string, message: string) => never, name: (key: SyntheticUrlKey) => string = (key) => key): SceneOptions {
  for (const key of values.keys()) if (!(SYNTHETIC_URL_KEYS as readonly string[]).includes(key)) fail(key, `unknown key (known: ${SYNTHETIC_URL_KEYS.join(', ')})`);
  const get = (key: SyntheticUrlKey) => {
    const v = values.get(key);
    if (v !== undefined && v.trim() === '') fail(key, 'empty value');
    return v?.trim();
  };
  const number = (key: SyntheticUrlKey, v: string, check: (n: number) => boolean, what: string) => {
    const n = /^[+]?(\d+(\.\d*)?|\.\d+)$/.test(v) ? Number(v) : NaN;
    if (!Number.isFinite(n) || !check(n)) fail(key, `must be ${what}, not "${v}"`);
    return n;
  };
  const domains = (key: SyntheticUrlKey, v: string): DomainShift[] => {
    const list = v.split(',').map((d) => d.trim());
    for (const d of list) if (!(DOMAIN_SHIFTS as readonly string[]).includes(d)) fail(key, `unknown domain shift "${d}" (known: ${DOMAIN_SHIFTS.join(', ')})`);
    return [...new Set(list as DomainShift[])].filter((d) => d !== 'day');
  };
  const o: SceneOptions = { ...DEFAULT_SCENE_OPTIONS, domain: [] };
  const scene = get('scene');
  if (scene !== undefined) {
    if (!(SYNTHETIC_SCENES as readonly string[]).includes(scene)) fail('scene', `unknown scene "${scene}" (known: ${SYNTHETIC_SCENES.join(', ')})`);
    o.scene = scene;
  }
  const seed = get('seed');
  if (seed !== undefined) o.seed = number('seed', seed, (n) => Number.isInteger(n) && n <= 0xffffffff, 'a whole number from 0 to 4294967295');
  const size = get('size');
  if (size !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(size);
    const ok = (n: number) => n >= 32 && n <= 4096;
    if (!m || !ok(Number(m[1])) || !ok(Number(m[2]))) fail('size', `must be WIDTHxHEIGHT with each from 32 to 4096, like 320x240, not "${size}"`);
    o.width = Number(m![1]);
    o.height = Number(m![2]);
  }
  const fps = get('fps');
  if (fps !== undefined) o.fps = number('fps', fps, (n) => n > 0 && n <= 240, 'a number of frames per second above 0 and at most 240');
  const domain = get('domain');
  if (domain !== undefined) o.domain = domains('domain', domain);
  const shift = get('shift');
  const shiftAt = get('shift_at');
  if (shift !== undefined && shiftAt === undefined) fail('shift_at', `is needed with ${name('shift')} (the stream second of the switch)`);
  if (shiftAt !== undefined && shift === undefined) fail('shift', `is needed with ${name('shift_at')} (the domain shifts to switch to)`);
  if (shift !== undefined && shiftAt !== undefined) o.shift = { at: number('shift_at', shiftAt, (n) => n >= 0, 'a number of seconds >= 0'), domain: domains('shift', shift) };
  const seconds = get('seconds');
  if (seconds !== undefined) o.seconds = number('seconds', seconds, (n) => n > 0, 'a number of seconds above 0');
  return o;
}

/**
 * `synthetic:` or `synthetic:scene=yard&seed=7&size=320x240&fps=10&domain=night,rain&shift=fog&shift_at=60&seconds=120`
 * → scene options (`seconds`: the stream ends after that much stream time; without it, it never ends).
 * An unknown key or a bad value throws a SourceError whose message names the URL and the key.
 */
export function parseSyntheticUrl(url: string): SceneOptions {
  if (!url.startsWith('synthetic:')) throw new SourceError(url, 'a synthetic source URL starts with "synthetic:"');
  const query = url.slice('synthetic:'.length).replace(/^\/\//, '').replace(/^\?/, '');
  const values = new Map<string, string>();
  const fail = (key: string, message: string): never => {
    throw new SourceError(url, `${key}: ${message}`);
  };
  if (query) {
    for (const part of query.split('&')) {
      const eq = part.indexOf('=');
      if (eq <= 0) fail(part || '(empty)', 'expected key=value');
      const key = decodeURIComponent(part.slice(0, eq));
      if (values.has(key)) fail(key, 'given twice');
      values.set(key, decodeURIComponent(part.slice(eq + 1)));
    }
  }
  return sceneOptionsFrom(values, fail);
}

/** The canonical URL of scene options (parseSyntheticUrl's inverse). */
export function syntheticUrl(o: SceneOptions): string {
  const parts = [`scene=${o.scene}`, `seed=${o.seed}`, `size=${o.width}x${o.height}`, `fps=${o.fps}`];
  if (o.domain.length > 0) parts.push(`domain=${o.domain.join(',')}`);
  if (o.shift) parts.push(`shift=${o.shift.domain.join(',') || 'day'}`, `shift_at=${o.shift.at}`);
  if (o.seconds !== undefined) parts.push(`seconds=${o.seconds}`);
  return `synthetic:${parts.join('&')}`;
}
