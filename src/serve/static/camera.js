// The live page of one camera: the latest frame with its boxes on a canvas (polled at most at the
// server's live_fps, one request at a time), verdict buttons, recent events and the model panel.
// Plain DOM; text goes in through textContent only.

const camera = decodeURIComponent(location.pathname.split('/')[2] ?? '');
const api = `/api/cameras/${encodeURIComponent(camera)}`;
const $ = (id) => document.getElementById(id);
const canvas = $('view');
const ctx = canvas.getContext('2d');
const waiting = $('waiting');
const toast = $('toast');
const picker = $('class-picker');
const tokenForm = $('token-form');
const verdictButtons = [...document.querySelectorAll('#verdict-card [data-verdict]')];

let fps = 5;
let paused = false;
let current; // the LiveFrame on screen
let image; // its decoded picture
let selected; // { frame, box, label, score, track_id, following }
let classes = [];
let token = localStorage.getItem('beats-token') ?? '';
let authMode = 'loopback';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) if (c !== undefined && c !== null) node.append(c);
  return node;
}

/** A stable colour per label. */
function colour(label) {
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${(h * 137) % 360} 85% 55%)`;
}

/** A colour chip; styles are set through the CSSOM (the page's CSP allows no inline style attribute). */
function swatch(label) {
  const node = el('span', { className: 'swatch' });
  node.style.background = colour(label);
  return node;
}

function describe(d) {
  return `${d.label} ${d.score.toFixed(2)}${d.track_id !== undefined ? ` #${d.track_id}` : ''}`;
}

// ---- live view ----------------------------------------------------------------------------------

async function liveLoop() {
  for (;;) {
    const started = performance.now();
    if (!paused && !document.hidden) {
      try {
        const response = await fetch(`${api}/live`, { cache: 'no-store' });
        if (response.status === 200) await show(await response.json());
        else if (response.status === 204) showWaiting('Waiting for frames…');
        else showWaiting(`The server says ${response.status}`);
      } catch {
        showWaiting('The pipeline does not answer; retrying…');
      }
    }
    await sleep(Math.max(50, 1000 / fps - (performance.now() - started)));
  }
}

function showWaiting(text) {
  if (current) return;
  waiting.textContent = text;
  waiting.hidden = false;
}

async function show(frame) {
  if (current && frame.frame === current.frame) return;
  const img = new Image();
  img.src = frame.image;
  await img.decode();
  // A frame fetched before Pause was pressed does not replace the one the user paused on.
  if (paused) return;
  current = frame;
  image = img;
  waiting.hidden = true;
  // What is on the canvas, for scripts that drive the page (the browser test clicks boxes by it).
  canvas.dataset.frame = String(frame.frame);
  canvas.dataset.width = String(frame.width);
  canvas.dataset.boxes = JSON.stringify(frame.detections.map((d) => d.box));
  follow();
  draw();
  renderTable();
  $('frame-info').textContent = `frame ${frame.frame} · ${new Date(frame.ts).toLocaleTimeString()} · ${frame.width}×${frame.height}`;
}

/** A selected track stays selected in newer frames, so a verdict is about a frame still buffered. */
function follow() {
  if (!selected || selected.track_id === undefined) return;
  const d = current.detections.find((x) => x.track_id === selected.track_id);
  if (d) Object.assign(selected, { frame: current.frame, box: d.box, label: d.label, score: d.score, following: true });
  else selected.following = false;
  renderSelection();
}

function draw() {
  if (!current || !image) return;
  const wrap = $('canvas-wrap');
  wrap.style.aspectRatio = `${current.width} / ${current.height}`;
  const dpr = window.devicePixelRatio || 1;
  const width = Math.round(wrap.clientWidth * dpr);
  const height = Math.round((width * current.height) / current.width);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(image, 0, 0, width, height);
  const s = width / current.width;
  const line = Math.max(2, Math.round(2 * dpr));
  if ($('show-tracks').checked) {
    ctx.setLineDash([6 * dpr, 4 * dpr]);
    ctx.lineWidth = Math.max(1, dpr);
    ctx.strokeStyle = 'rgba(255,255,255,.6)';
    for (const t of current.tracks.filter((t) => t.lost)) ctx.strokeRect(t.box[0] * s, t.box[1] * s, (t.box[2] - t.box[0]) * s, (t.box[3] - t.box[1]) * s);
    ctx.setLineDash([]);
  }
  ctx.font = `600 ${Math.round(12 * dpr)}px system-ui, sans-serif`;
  ctx.textBaseline = 'top';
  for (const d of current.detections) {
    const [x1, y1, x2, y2] = d.box.map((v) => v * s);
    const isSelected = selected && selected.frame === current.frame && sameBox(selected.box, d.box);
    if (isSelected) {
      ctx.lineWidth = line + 4 * dpr;
      ctx.strokeStyle = '#fff';
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    }
    ctx.lineWidth = line;
    ctx.strokeStyle = colour(d.label);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = describe(d);
    const pad = 3 * dpr;
    const tw = ctx.measureText(text).width + 2 * pad;
    const th = 12 * dpr + 2 * pad;
    const ty = y1 - th >= 0 ? y1 - th : y1;
    ctx.fillStyle = colour(d.label);
    ctx.fillRect(x1 - line / 2, ty, tw, th);
    ctx.fillStyle = '#0b0f17';
    ctx.fillText(text, x1 - line / 2 + pad, ty + pad);
  }
}

const sameBox = (a, b) => a.every((v, i) => Math.abs(v - b[i]) < 0.05);

canvas.addEventListener('click', (e) => {
  if (!current) return;
  const rect = canvas.getBoundingClientRect();
  const x = ((e.clientX - rect.left) / rect.width) * current.width;
  const y = ((e.clientY - rect.top) / rect.height) * current.height;
  const hits = current.detections.filter((d) => x >= d.box[0] && x <= d.box[2] && y >= d.box[1] && y <= d.box[3]);
  if (hits.length === 0) return;
  // The smallest box under the pointer: nested boxes stay reachable.
  const area = (d) => (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]);
  select(hits.sort((a, b) => area(a) - area(b))[0]);
});

window.addEventListener('resize', draw);
$('show-tracks').addEventListener('change', draw);
$('pause').addEventListener('click', () => {
  paused = !paused;
  $('pause').textContent = paused ? 'Resume' : 'Pause';
});

// ---- detections and verdicts --------------------------------------------------------------------

function renderTable() {
  const rows = current.detections.map((d) => {
    const row = el(
      'tr',
      {},
      el('td', {}, swatch(d.label), d.track_id !== undefined ? `#${d.track_id}` : '–'),
      el('td', { textContent: d.label }),
      el('td', { className: 'num', textContent: d.score.toFixed(2) }),
    );
    if (selected && selected.frame === current.frame && sameBox(selected.box, d.box)) row.className = 'selected';
    row.addEventListener('click', () => select(d));
    return row;
  });
  $('detections').replaceChildren(...rows);
  $('det-count').textContent = String(current.detections.length);
}

function select(d) {
  toast.textContent = '';
  selected = { frame: current.frame, box: d.box, label: d.label, score: d.score, track_id: d.track_id, following: true };
  if (picker.value === d.label || !picker.value) picker.value = classes.find((c) => c !== d.label) ?? '';
  renderSelection();
  draw();
  renderTable();
}

function renderSelection() {
  const node = $('selection');
  if (!selected) return;
  const where = selected.track_id !== undefined ? (selected.following ? ' · following the track' : ' · track out of view') : '';
  node.replaceChildren(
    swatch(selected.label),
    el('b', { textContent: describe(selected) }),
    el('br'),
    el('span', { className: 'muted', textContent: `frame ${selected.frame}${where}` }),
  );
  for (const b of verdictButtons) b.disabled = false;
}

for (const button of verdictButtons) {
  button.addEventListener('click', async () => {
    if (!selected) return;
    const verdict = button.dataset.verdict;
    const body = { detection: { frame: selected.frame, box: selected.box }, verdict };
    if (verdict === 'wrong_class') body.label = picker.value;
    const result = await sendVerdict(body);
    say(toast, result.ok ? `Accepted: ${verdict.replace('_', ' ')} on ${describe(selected)}` : `Rejected: ${result.reason}`, result.ok);
  });
}

/** POSTs a verdict; the same intake as the MQTT feedback topic decides. */
async function sendVerdict(body) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    const response = await fetch(`${api}/feedback`, { method: 'POST', headers, body: JSON.stringify(body) });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401) tokenForm.hidden = false;
    if (response.ok && answer.accepted) return { ok: true, answer };
    return { ok: false, reason: answer.reason ?? answer.error ?? `HTTP ${response.status}` };
  } catch (err) {
    return { ok: false, reason: String(err) };
  }
}

function say(node, text, ok) {
  node.textContent = text;
  node.className = `${node.className.replace(/\b(ok|err)\b/g, '').trim()} ${ok ? 'ok' : 'err'}`;
}

tokenForm.addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value.trim();
  localStorage.setItem('beats-token', token);
  tokenForm.hidden = true;
  say(toast, 'Token saved in this browser.', true);
});

// ---- events -------------------------------------------------------------------------------------

const eventCards = new Map();
/** Cards on the page; the server keeps a few more. */
const MAX_EVENTS = 15;

function eventCard(e) {
  const thumb = el('div', { className: 'thumb', textContent: 'no snapshot' });
  const title = el('div', { className: 'title' });
  const details = el('div', { className: 'muted' });
  const zones = el('div', { className: 'muted' });
  const note = el('div', { className: 'verdict-note' });
  const choose = el('select', { ariaLabel: 'right class' }, ...classes.map((c) => el('option', { value: c, textContent: c })));
  choose.value = classes.find((c) => c !== e.label) ?? '';
  const act = (label, cls, verdict) => {
    const b = el('button', { type: 'button', className: cls, textContent: label });
    b.dataset.verdict = verdict;
    b.addEventListener('click', async () => {
      const body = { event: e.id, verdict };
      if (verdict === 'wrong_class') body.label = choose.value;
      const result = await sendVerdict(body);
      say(note, result.ok ? `Accepted: ${verdict.replace('_', ' ')}` : `Rejected: ${result.reason}`, result.ok);
    });
    return b;
  };
  const node = el(
    'article',
    { className: 'event' },
    thumb,
    el('div', { className: 'body' }, title, details, zones),
    el('div', { className: 'actions' }, act('✓ Correct', 'good', 'correct'), act('✕ False positive', 'bad', 'false_positive'), choose, act('Wrong class', 'warn', 'wrong_class')),
    note,
  );
  node.dataset.event = e.id;
  return { node, thumb, title, details, zones, snapshot: '' };
}

function updateEventCard(c, e) {
  const open = e.end_time === null;
  c.title.replaceChildren(swatch(e.label), e.label, el('span', { className: `pill ${open ? 'open' : 'closed'}`, textContent: open ? 'in view' : 'ended' }));
  const start = new Date(e.start_time * 1000).toLocaleTimeString();
  const span = open ? `since ${start}` : `${start} · ${(e.end_time - e.start_time).toFixed(1)} s`;
  c.details.textContent = `score ${e.score.toFixed(2)} (best ${e.top_score.toFixed(2)}) · ${span}${e.stationary ? ' · stationary' : ''}`;
  c.zones.textContent = e.entered_zones.length ? `zones: ${e.entered_zones.join(', ')}` : '';
  // The snapshot is rewritten when the event ends with a better frame: ask again then.
  const snapshot = e.snapshot ? `${e.snapshot}?v=${e.type}` : '';
  if (snapshot !== c.snapshot) {
    c.snapshot = snapshot;
    c.thumb.replaceChildren(snapshot ? el('a', { href: snapshot, target: '_blank', title: 'open the snapshot' }, el('img', { src: snapshot, alt: `${e.label} snapshot` })) : 'no snapshot');
  }
}

async function refreshEvents() {
  try {
    const events = (await (await fetch(`${api}/events`, { cache: 'no-store' })).json()).slice(0, MAX_EVENTS);
    const list = $('events');
    if (events.length === 0) return;
    const nodes = events.map((e) => {
      let c = eventCards.get(e.id);
      if (!c) eventCards.set(e.id, (c = eventCard(e)));
      updateEventCard(c, e);
      return c.node;
    });
    for (const id of eventCards.keys()) if (!events.some((e) => e.id === id)) eventCards.delete(id);
    // Re-appending keeps the nodes (and any open class picker) alive, only in the new order.
    list.replaceChildren(...nodes);
  } catch {
    /* the next poll tries again */
  }
}

// ---- model panel ------------------------------------------------------------------------------

function curveSvg(curve) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 300 100');
  svg.setAttribute('preserveAspectRatio', 'none');
  const xs = curve.points.map((p) => p[0]);
  const ys = curve.points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const px = (x) => (x1 > x0 ? ((x - x0) / (x1 - x0)) * 296 + 2 : 150);
  const py = (y) => (y1 > y0 ? 98 - ((y - y0) / (y1 - y0)) * 96 : 50);
  const path = document.createElementNS(ns, 'polyline');
  path.setAttribute('points', curve.points.map(([x, y]) => `${px(x)},${py(y)}`).join(' '));
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', colour(curve.name));
  path.setAttribute('stroke-width', '2');
  path.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(path);
  const title = document.createElementNS(ns, 'title');
  title.textContent = curve.name;
  svg.append(title);
  return svg;
}

async function refreshModel() {
  try {
    const history = await (await fetch(`${api}/model`, { cache: 'no-store' })).json();
    if (!history) return;
    const facts = el('dl');
    const fact = (k, v) => facts.append(el('dt', { textContent: k }), el('dd', {}, v));
    fact('model', history.model.name);
    fact('version', history.model.version);
    fact('adaptation', el('span', { className: `badge ${history.adaptation}`, textContent: `adaptation ${history.adaptation}` }));
    const versions = el('ul', { className: 'versions' }, ...history.versions.map((v) => el('li', { textContent: `${v.current ? '● ' : '○ '}${v.version}${v.parent ? ` ← ${v.parent}` : ''} · ${new Date(v.created * 1000).toLocaleString()}${v.note ? ` · ${v.note}` : ''}` })));
    const curves = el('div', { className: 'curves' });
    if (history.curves.length === 0) curves.textContent = history.adaptation === 'off' ? 'Adaptation off: no adaptation curves.' : 'No adaptation curves yet.';
    else curves.replaceChildren(...history.curves.map((c) => el('figure', {}, curveSvg(c), el('figcaption', { className: 'muted', textContent: `${c.name}${c.unit ? ` (${c.unit})` : ''}` }))));
    $('model').replaceChildren(el('div', {}, facts, el('h2', { className: 'versions-title', textContent: 'versions' }), versions), curves);
  } catch {
    /* next time */
  }
}

// ---- header -----------------------------------------------------------------------------------

let lastStats;
async function refreshStatus() {
  try {
    const c = await (await fetch(api, { cache: 'no-store' })).json();
    const state = $('state');
    state.textContent = c.health.state;
    state.className = `pill ${c.health.state}`;
    const now = performance.now();
    const rate = lastStats ? ((c.stats.processed - lastStats.processed) * 1000) / (now - lastStats.at) : 0;
    lastStats = { processed: c.stats.processed, at: now };
    const stat = (k, v) => el('span', {}, `${k} `, el('b', { textContent: v }));
    $('stats').replaceChildren(stat('processed', `${rate.toFixed(1)} fps`), stat('inference', `${c.stats.inference_ms.toFixed(1)} ms`), stat('dropped', String(c.stats.dropped)), stat('restarts', String(c.stats.restarts)), stat('model', c.model.version));
  } catch {
    $('state').textContent = 'unreachable';
    $('state').className = 'pill stalled';
  }
}

async function start() {
  $('camera-name').textContent = camera;
  document.title = `Beats · ${camera}`;
  const [info, described] = await Promise.all([fetch('/api/info').then((r) => r.json()), fetch(api).then((r) => r.json())]);
  fps = info.live_fps;
  authMode = info.auth;
  classes = described.classes;
  picker.replaceChildren(...classes.map((c) => el('option', { value: c, textContent: c })));
  if (authMode === 'token' && !token) tokenForm.hidden = false;
  refreshStatus();
  refreshEvents();
  refreshModel();
  setInterval(refreshStatus, 2000);
  setInterval(refreshEvents, 2000);
  setInterval(refreshModel, 10000);
  liveLoop();
}

start();
