/**
 * Render contexts: everything static for one scene, size and domain (the supersampled background,
 * props, lamps), computed once; the sensor noise table and vignette.
 */
import type { DomainShift } from './types.js';
import { Rng } from './random.js';
import { depthScale, makeView, NORMAL_PALETTE, SHIFTED_PALETTE, toCanonX, toCanonY, toScreenX, toScreenY, type Palette, type View } from './view.js';
import type { BgFlags, BgSample, Lamp, SceneDef } from './scenes.js';
import { Sprite, type PropDef } from './draw.js';
import { domainFlags, domainKey, surfaceAffine, type Affine, type DomainFlags } from './domains.js';


export interface PropSprite {
  def: PropDef;
  sprite: Sprite;
  affine: Affine;
  emissiveAffine: Affine;
}

interface RenderContext {
  flags: DomainFlags;
  view: View;
  background: Float32Array;
  lamps: Lamp[];
  props: PropSprite[];
  palette: Palette;
  sigma: number;
  shadow: number;
}

const contexts = new Map<string, RenderContext>();

export function renderContext(def: SceneDef, width: number, height: number, domain: readonly DomainShift[]): RenderContext {
  const key = `${def.name}|${width}x${height}|${domainKey(domain)}`;
  const cached = contexts.get(key);
  if (cached) {
    contexts.delete(key);
    contexts.set(key, cached);
    return cached;
  }
  const flags = domainFlags(domain);
  const view = makeView(width, height, flags.moved);
  const lamps = flags.night ? def.lamps(flags.style, view.wc) : [];
  const sampler = def.background(flags.style, view.wc);
  const bgFlags: BgFlags = { night: flags.night, overcast: flags.rain || flags.fog, style: flags.style };
  const background = new Float32Array(width * height * 3);
  const sample: BgSample = { r: 0, g: 0, b: 0, depth: 0, lift: 0, emissive: false };
  const sub = [0.25, 0.75];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (const oy of sub) {
        for (const ox of sub) {
          const cx = toCanonX(view, x + ox);
          const cy = toCanonY(view, y + oy);
          sampler(cx, cy, bgFlags, sample);
          const t = surfaceAffine(flags, lamps, cx, sample.depth, sample.lift, view.wc, sample.emissive);
          r += sample.r * t.m[0] + t.a[0];
          g += sample.g * t.m[1] + t.a[1];
          b += sample.b * t.m[2] + t.a[2];
          if (flags.night) {
            // Lamp heads glow.
            for (const l of lamps) {
              const d2 = (cx - l.x) ** 2 + (cy - l.y) ** 2;
              const rad = 9 * depthScale(l.footY);
              const glow = l.strength * 150 * Math.exp(-d2 / (rad * rad));
              r += glow;
              g += glow * 0.85;
              b += glow * 0.6;
            }
          }
        }
      }
      const i = (y * width + x) * 3;
      background[i] = r / 4;
      background[i + 1] = g / 4;
      background[i + 2] = b / 4;
    }
  }
  const props: PropSprite[] = [...def.props(view.wc), ...(flags.decoys ? def.decoys(view.wc) : [])].map((p) => {
    const px = depthScale(p.y) * view.zoom * view.q;
    const fx = toScreenX(view, p.x);
    const fy = toScreenY(view, p.y);
    const half = p.halfW * px + 3;
    const x0 = Math.floor(fx - half);
    const y0 = Math.floor(fy - p.height * px - 3);
    const sprite = new Sprite().reset(x0, y0, Math.ceil(2 * half) + 2, Math.ceil(fy - y0) + 2);
    p.draw(sprite, fx - x0, fy - y0, px, flags.style, flags.night);
    return { def: p, sprite, affine: surfaceAffine(flags, lamps, p.x, p.y, 40, view.wc, false), emissiveAffine: surfaceAffine({ ...flags, night: false }, lamps, p.x, p.y, 0, view.wc, true) };
  });
  const ctx: RenderContext = {
    flags,
    view,
    background,
    lamps,
    props,
    palette: flags.palette ? SHIFTED_PALETTE : NORMAL_PALETTE,
    sigma: flags.night ? 7 : flags.rain ? 4.5 : 2.8,
    shadow: flags.night ? 0.12 : flags.rain || flags.fog ? 0.18 : 0.38,
  };
  contexts.set(key, ctx);
  // A few recent contexts are kept (about 1 MB each at 320x240), at most ~64 MB of backgrounds.
  let bytes = 0;
  for (const c of contexts.values()) bytes += c.background.byteLength;
  while (contexts.size > 1 && (contexts.size > 24 || bytes > 64 << 20)) {
    const oldest = contexts.keys().next().value!;
    bytes -= contexts.get(oldest)!.background.byteLength;
    contexts.delete(oldest);
  }
  return ctx;
}

// Sensor noise: a table of unit Gaussian samples (x 32, as Int8) read from a random offset per frame.
let noiseTable: Int8Array | undefined;
export function noise(): Int8Array {
  if (!noiseTable) {
    const r = new Rng(0x6e6f6973);
    noiseTable = new Int8Array(1 << 20);
    for (let i = 0; i < noiseTable.length; i++) noiseTable[i] = Math.max(-127, Math.min(127, Math.round(r.normal() * 32)));
  }
  return noiseTable;
}

const vignettes = new Map<string, Float32Array>();
export function vignette(width: number, height: number): Float32Array {
  const key = `${width}x${height}`;
  let v = vignettes.get(key);
  if (!v) {
    v = new Float32Array(width * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const dx = (x + 0.5) / width - 0.5;
        const dy = (y + 0.5) / height - 0.5;
        v[y * width + x] = 1 - 0.28 * (dx * dx + dy * dy);
      }
    }
    vignettes.set(key, v);
  }
  return v;
}
