// mqtt-packet's cache of encoded packet lengths must not pin a Buffer pool block per distinct
// length (mqttjs/mqtt-packet#163): after fillMqttLengthCache(), packets of thousands of new lengths,
// written among the process's other small allocations, leave array buffers where they were. Each
// measurement runs in a fresh process (test/helpers/mqtt-length-probe.ts), where nothing else
// allocates while it counts.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/assets.js';

function probe(...args: string[]): { writers: number; fillMb: number; leftMb: number } {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join('test', 'helpers', 'mqtt-length-probe.ts'), ...args], { cwd: repoRoot, encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)!) as { writers: number; fillMb: number; leftMb: number };
}

describe("mqtt-packet's length cache", () => {
  it('is filled densely once, so that messages of new lengths allocate nothing that stays', { timeout: 60_000 }, () => {
    const unfilled = probe('--no-fill');
    const filled = probe();
    expect(filled.writers).toBeGreaterThan(0);
    // What the library's caches hold once filled: a few pool blocks, not one per length.
    expect(filled.fillMb).toBeLessThan(2);
    // Without the fill each new length pins a pool block (about 4 MB here); with it, nothing stays.
    expect(unfilled.leftMb).toBeGreaterThan(2);
    expect(filled.leftMb, `array buffers left: ${filled.leftMb.toFixed(2)} MB (without the fill ${unfilled.leftMb.toFixed(2)})`).toBeLessThan(0.5);
  });
});
