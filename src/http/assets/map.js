// The map of a finished job: its GeoJSON result (`/jobs/{id}/result.geojson`) as points
// coloured by status, a popup with the row's cells, the rows without a position listed beside.
// OpenStreetMap tiles only while the browser is online and they load; a plain background else.
import { t } from './i18n.js';
import { json } from './api.js';

const COLOURS = { ok: '#1a7f37', ambiguous: '#b35900', no_result: '#8250df', error: '#b00020' };
/** Rows listed without a position, at most. */
const MAX_LISTED = 200;

let map = null;
let layer = null;
let tiles = null;

function colour(status) { return COLOURS[status] || '#1a5fb4'; }

function popup(props) {
  const table = document.createElement('table');
  for (const [k, v] of Object.entries(props)) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.textContent = k;
    const td = document.createElement('td');
    td.textContent = v == null ? '' : String(v);
    tr.append(th, td);
    table.append(tr);
  }
  return table;
}

/** The colours in use, with how many points each. */
function legend(placed) {
  const counts = new Map();
  for (const f of placed) {
    const status = f.properties?.status || '?';
    counts.set(status, (counts.get(status) || 0) + 1);
  }
  const p = document.getElementById('map-legend');
  p.replaceChildren(...[...counts].flatMap(([status, n]) => {
    const dot = document.createElement('span');
    dot.style.background = colour(status);
    dot.setAttribute('aria-hidden', 'true');
    return [dot, `${status} ${n}`];
  }));
}

function base() {
  if (tiles || !navigator.onLine) return;
  tiles = L.tileLayer('https://tile.openstreetmap.org/{z}/{x}/{y}.png', {
    maxZoom: 19,
    attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>',
  });
  // A tile that does not load: no base map, the plain background stays.
  tiles.once('tileerror', () => { map.removeLayer(tiles); document.getElementById('map').dataset.tiles = 'off'; });
  tiles.addTo(map);
  document.getElementById('map').dataset.tiles = 'on';
}

function listErrors(errors) {
  const box = document.getElementById('map-errors');
  const h = document.createElement('h3');
  h.textContent = t('errorRows');
  if (!errors.length) {
    const p = document.createElement('p');
    p.textContent = t('noErrors');
    box.replaceChildren(h, p);
    return;
  }
  const ul = document.createElement('ul');
  ul.className = 'error-rows';
  for (const f of errors.slice(0, MAX_LISTED)) {
    const li = document.createElement('li');
    const p = f.properties || {};
    li.textContent = `${p.sheet ?? ''}: ${p.error || p.status || ''}`;
    li.title = JSON.stringify(p).slice(0, 500);
    ul.append(li);
  }
  box.replaceChildren(h, ul);
}

/** Shows `job` (done, with a geojson result) on the map. */
export async function show(job) {
  const section = document.getElementById('map-section');
  section.hidden = false;
  const data = await json(`/jobs/${job.id}/result.geojson`);
  const features = data.features || [];
  const placed = features.filter((f) => f.geometry);
  const errors = features.filter((f) => !f.geometry);
  if (!map) {
    map = L.map('map', { preferCanvas: false });
    map.attributionControl.setPrefix(false);
  }
  base();
  if (layer) layer.remove();
  layer = L.geoJSON(placed, {
    pointToLayer: (f, latlng) => L.circleMarker(latlng, {
      radius: 6, weight: 1, color: '#222', fillColor: colour(f.properties?.status), fillOpacity: 0.85,
    }),
    onEachFeature: (f, l) => l.bindPopup(() => popup(f.properties || {})),
  }).addTo(map);
  if (placed.length) map.fitBounds(layer.getBounds(), { padding: [20, 20], maxZoom: 15 });
  else map.setView([36.5, 127.8], 6);
  const summary = document.getElementById('map-summary');
  summary.textContent = t('mapSummary', { n: placed.length, job: job.label, e: errors.length });
  legend(placed);
  document.getElementById('map').dataset.points = String(placed.length);
  document.getElementById('map').dataset.job = job.id;
  listErrors(errors);
  section.scrollIntoView({ block: 'start' });
  map.invalidateSize();
}

/** Hides the map when it shows `id` (the job was deleted). */
export function forget(id) {
  if (document.getElementById('map').dataset.job === id) document.getElementById('map-section').hidden = true;
}
