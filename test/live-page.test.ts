import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assets, needsAssets, repoRoot } from './helpers/assets.js';
import { waitFor } from './helpers/brokers.js';
import { servePipeline, type ServedPipeline } from './helpers/serve.js';

/** Debian's Chromium (apt-get install chromium); Playwright's own browser downloads are not used. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  const message = `${CHROMIUM} not found (apt-get install chromium): the live page test is skipped`;
  if (process.env.CI) throw new Error(`${message}; in CI it must run`);
  console.warn(message);
}

type Box = [number, number, number, number];

/** Where a box of the frame on the canvas is on the screen. */
async function boxOnScreen(page: Page, box: Box): Promise<{ x: number; y: number }> {
  return page.evaluate((b) => {
    const canvas = document.getElementById('view') as HTMLCanvasElement;
    const rect = canvas.getBoundingClientRect();
    // The canvas shows the source frame scaled to its width (the page keeps its aspect ratio).
    const s = rect.width / Number(canvas.dataset.width);
    return { x: rect.left + ((b[0] + b[2]) / 2) * s, y: rect.top + ((b[1] + b[3]) / 2) * s };
  }, box);
}

/** The paused canvas shows its frame, each box drawn in colour, and one table row per box. */
async function expectBoxesDrawn(page: Page): Promise<void> {
  // The page must stay on the paused frame from here on: two reads of it are compared.
  const drawn = await page.evaluate(() => {
    const canvas = document.getElementById('view') as HTMLCanvasElement;
    const ctx = canvas.getContext('2d')!;
    const boxes = JSON.parse(canvas.dataset.boxes!) as Array<[number, number, number, number]>;
    const s = canvas.width / Number(canvas.dataset.width);
    const saturated = (x: number, y: number) => {
      const [r, g, b] = ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data;
      return Math.max(r!, g!, b!) - Math.min(r!, g!, b!) > 90;
    };
    // The middle of each box's left and right edges: the box colours are saturated; the
    // highway clip is a grey CCTV picture.
    const onEdges = boxes.filter((b) => saturated(b[0] * s, ((b[1] + b[3]) / 2) * s) || saturated(b[2] * s, ((b[1] + b[3]) / 2) * s)).length;
    const all = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let sat = 0;
    let sum = 0;
    for (let i = 0; i < all.length; i += 4) {
      sum += all[i]! + all[i + 1]! + all[i + 2]!;
      if (Math.max(all[i]!, all[i + 1]!, all[i + 2]!) - Math.min(all[i]!, all[i + 1]!, all[i + 2]!) > 90) sat++;
    }
    const pixels = all.length / 4;
    return { boxes: boxes.length, onEdges, saturatedShare: sat / pixels, meanLevel: sum / pixels / 3 };
  });
  expect(drawn.onEdges).toBeGreaterThanOrEqual(Math.ceil(drawn.boxes * 0.8));
  // The picture itself is there (not a blank canvas), and the colour is only on the boxes.
  expect(drawn.meanLevel).toBeGreaterThan(30);
  expect(drawn.saturatedShare).toBeLessThan(0.15);
  const rows = await page.locator('#detections tr').count();
  expect(rows).toBe(drawn.boxes);
}

describe.skipIf(needsAssets || !haveChromium)('the live page in Chromium', () => {
  let served: ServedPipeline;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    served = await servePipeline(`
status_interval_s: 0
mqtt: { embedded: { port: 0 } }
http: { port: 0, live_fps: 5 }
cameras:
  - name: highway
    source: { url: ${JSON.stringify(assets.highway)}, loop: true, realtime: true }
    model: yolox-nano
`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1360, height: 1180 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${served.url}/cameras/highway`);
    // The page must load without script errors (a CSP violation shows up here too).
    await page.waitForFunction(() => document.getElementById('class-picker')!.children.length > 0, undefined, { timeout: 30_000 });
    expect(errors).toEqual([]);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await served?.stop();
  });

  it('draws the frame and its boxes on the canvas', async () => {
    await page.waitForFunction(() => JSON.parse((document.getElementById('view') as HTMLCanvasElement).dataset.boxes ?? '[]').length >= 2, undefined, { timeout: 60_000 });
    await page.click('#pause');
    try {
      const paused = await page.locator('#view').getAttribute('data-frame');
      await expectBoxesDrawn(page);
      // Paused means paused: a frame that was on its way when the button was pressed is not shown.
      await page.waitForTimeout(600);
      expect(await page.locator('#view').getAttribute('data-frame')).toBe(paused);
    } finally {
      await page.click('#pause'); // live again, whatever the outcome: the later tests need a live page
    }
  });


  it('lists events with their snapshots', async () => {
    const card = page.locator('#events article.event').first();
    await card.waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('#events article.event img')].some((img) => img.complete && img.naturalWidth > 0), undefined, { timeout: 30_000 });
    const ids = await page.locator('#events article.event').evaluateAll((nodes) => nodes.map((n) => (n as HTMLElement).dataset.event));
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) expect(served.events.some((m) => m.after.id === id)).toBe(true);
  });

  it('a click on a box and a verdict button reach the feedback intake', async () => {
    // A fresh frame, held still while the box is clicked (a verdict on a frame gone from the
    // buffer would be rejected as stale).
    const shown = Number(await page.locator('#view').getAttribute('data-frame'));
    await page.waitForFunction((f) => Number((document.getElementById('view') as HTMLCanvasElement).dataset.frame) > f, shown, { timeout: 30_000 });
    await page.click('#pause');
    const box = await page.evaluate(() => (JSON.parse((document.getElementById('view') as HTMLCanvasElement).dataset.boxes!) as Array<[number, number, number, number]>)[0]!);
    const frame = Number(await page.locator('#view').getAttribute('data-frame'));
    const before = served.accepted.length;
    const at = await boxOnScreen(page, box);
    await page.mouse.click(at.x, at.y);
    await page.waitForFunction(() => !(document.querySelector('[data-verdict="correct"]') as HTMLButtonElement).disabled);
    await page.click('#verdict-card [data-verdict="correct"]');
    const f = await waitFor(() => served.accepted[before], 10_000, 'the verdict on accepted$');
    expect(f).toMatchObject({ verdict: 'correct', origin: { via: 'http' } });
    expect(f.frame.index).toBeGreaterThanOrEqual(frame);
    await page.waitForFunction(() => document.getElementById('toast')!.textContent!.startsWith('Accepted'));
    await page.click('#pause'); // live again
  });

  it('a row, a class from the picker and "Wrong class" send a wrong_class verdict', async () => {
    const before = served.accepted.length;
    await page.click('#pause'); // the rows stay put while one is read and clicked
    const row = page.locator('#detections tr').first();
    const label = (await row.locator('td').nth(1).textContent())!;
    await row.click();
    const right = label === 'truck' ? 'bus' : 'truck';
    await page.selectOption('#class-picker', right);
    await page.click('#verdict-card [data-verdict="wrong_class"]');
    const f = await waitFor(() => served.accepted[before], 10_000, 'the wrong_class verdict');
    expect(f).toMatchObject({ verdict: 'wrong_class', label: { name: right } });
    expect(f.detection!.label).toBe(label);
    await page.click('#pause'); // live again
  });

  it('an event card takes a verdict too; the page looks right', async () => {
    const open = page.locator('#events article.event', { has: page.locator('.pill.open') }).first();
    await open.waitFor({ timeout: 60_000 });
    const id = (await open.getAttribute('data-event'))!;
    const before = served.accepted.length;
    // That card by its id from now on: the event may end meanwhile, and its card is then no longer "open".
    const card = page.locator(`#events article.event[data-event="${id}"]`);
    await card.locator('[data-verdict="false_positive"]').click();
    const f = await waitFor(() => served.accepted[before], 10_000, 'the event verdict');
    expect(f).toMatchObject({ verdict: 'false_positive', event: { id } });
    await card.locator('.verdict-note', { hasText: 'Accepted' }).waitFor({ timeout: 5000 });

    // A selection on screen for the picture: the first row of the newest frame.
    await page.locator('#detections tr').first().click();
    await page.waitForTimeout(400);
    const file = path.join(repoRoot, 'test-artifacts', 'live-page.png');
    await mkdir(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file, fullPage: true });
    expect(existsSync(file)).toBe(true);
  });
});
