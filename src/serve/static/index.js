// The camera list: one card per camera, refreshed every 2 s. Plain DOM, text only (no innerHTML).
const grid = document.getElementById('cameras');
const summary = document.getElementById('summary');

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

function card(camera) {
  const h = camera.health;
  const s = camera.stats;
  const facts = el('div', { className: 'facts' });
  const fact = (k, v) => facts.append(el('span', { textContent: k }), el('span', { textContent: v }));
  fact('model', `${camera.model.name} ${camera.model.version}`);
  fact('processed', `${s.processed} frames`);
  fact('dropped', String(s.dropped));
  fact('inference', `${s.inference_ms.toFixed(1)} ms`);
  fact('restarts', String(s.restarts));
  return el(
    'a',
    { className: 'card camera-card', href: `/cameras/${encodeURIComponent(camera.name)}` },
    el('div', { className: 'title' }, el('span', { textContent: camera.name }), el('span', { className: `pill ${h.state}`, textContent: h.state })),
    facts,
  );
}

async function refresh() {
  try {
    const response = await fetch('/api/cameras', { cache: 'no-store' });
    const cameras = await response.json();
    grid.replaceChildren(...cameras.map(card));
    const running = cameras.filter((c) => c.health.state === 'running').length;
    summary.textContent = `${cameras.length} camera${cameras.length === 1 ? '' : 's'}, ${running} running`;
  } catch {
    summary.textContent = 'The pipeline does not answer.';
  }
}

refresh();
setInterval(refresh, 2000);
