// The jobs table: rows patched in place (focus and selection stay), asked again only while a
// job is still going, a page of PAGE_SIZE jobs at a time.
import { t, language } from './i18n.js';
import { json, api, download } from './api.js';

const PAGE_SIZE = 20;
const POLL_MS = 1000;
const ACTIVE = ['accepted', 'publishing', 'running', 'paused', 'merging'];

const rows = new Map();
let jobs = [];
let page = 0;
let timer = null;
let hooks = { status: () => {}, map: () => {}, deleted: () => {} };

function el(tag, cls) { const e = document.createElement(tag); if (cls) e.className = cls; return e; }
/** Sets a text only when it changed, so nothing is re-rendered needlessly. */
function text(node, value) { if (node.textContent !== value) node.textContent = value; }
function attr(node, name, value) { if (node.getAttribute(name) !== value) node.setAttribute(name, value); }

/** A job as controls name it: its file and short id (two uploads of one file differ). */
function named(job) { return `${job.label} (${job.id.slice(0, 8)})`; }

function stem(label) { return label.replace(/\.[^.]*$/, ''); }

function time(ms) {
  return new Date(ms).toLocaleString(language() === 'ko' ? 'ko-KR' : 'en-GB', { dateStyle: 'short', timeStyle: 'medium' });
}

function duration(secs) {
  if (secs < 90) return `${Math.round(secs)} s`;
  if (secs < 5400) return `${Math.round(secs / 60)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

/** A bar: indeterminate while the total is not known yet (never shown full by default). */
function bar(node, done, total, name) {
  attr(node, 'aria-label', name);
  if (total) {
    node.max = total;
    node.value = Math.min(done, total);
  } else if (node.hasAttribute('value')) {
    node.removeAttribute('value');
  }
}

function create(job) {
  const r = { tr: el('tr') };
  r.tr.dataset.id = job.id;
  const who = el('td');
  r.label = el('strong');
  r.created = el('small', 'created');
  r.options = el('small', 'options');
  who.append(r.label, r.created, r.options);
  r.state = el('td');
  const prog = el('td');
  r.bar = el('progress', 'job-progress');
  r.done = el('span', 'done');
  r.sheets = el('div', 'sheets');
  prog.append(r.bar, ' ', r.done, r.sheets);
  r.counts = el('td', 'counts');
  r.ok = el('span', 'ok');
  r.err = el('span');
  r.other = el('span', 'other');
  r.counts.append(r.ok, r.other, r.err);
  r.actions = el('td', 'actions-cell');
  r.links = el('span', 'links');
  r.map = el('button', 'map');
  r.map.type = 'button';
  r.map.addEventListener('click', () => hooks.map(r.job));
  r.retry = el('button', 'retry');
  r.retry.type = 'button';
  r.retry.addEventListener('click', () => retry(r.job));
  r.del = el('button', 'delete');
  r.del.type = 'button';
  r.del.addEventListener('click', () => remove(r.job));
  r.actions.append(r.links, r.map, r.retry, r.del);
  r.tr.append(who, r.state, prog, r.counts, r.actions);
  r.sheetRows = new Map();
  r.linkKey = '';
  return r;
}

function sheets(r, job) {
  if (job.sheets.length < 2) { r.sheets.hidden = true; return; }
  r.sheets.hidden = false;
  for (const s of job.sheets) {
    let line = r.sheetRows.get(s.name);
    if (!line) {
      line = { box: el('span', 'sheet'), name: el('span'), bar: el('progress'), count: el('span') };
      line.box.append(line.name, ' ', line.bar, ' ', line.count);
      r.sheets.append(line.box);
      r.sheetRows.set(s.name, line);
    }
    text(line.name, s.name);
    bar(line.bar, s.rows_done, job.state === 'publishing' ? 0 : s.rows_total, t('progressSheet', { sheet: s.name, job: named(job) }));
    text(line.count, `${s.rows_done} / ${s.rows_total || '?'}${s.rows_failed ? ` (${t('errors')} ${s.rows_failed})` : ''}`);
  }
}

function links(r, job) {
  const results = job.results || [];
  const key = results.map((x) => x.url).join() + language();
  if (key === r.linkKey) return;
  r.linkKey = key;
  const sheetsZip = job.sheets.length > 1;
  r.links.replaceChildren(...results.map((x) => {
    const a = el('a');
    a.href = x.url;
    a.textContent = x.format;
    a.setAttribute('aria-label', t('download', { fmt: x.format, job: named(job) }));
    const ext = x.format === 'csv' && sheetsZip ? 'zip' : x.format;
    a.dataset.name = `${stem(job.label)}-${job.id.slice(0, 8)}.${ext}`;
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      download(a.href, a.dataset.name).catch((e) => hooks.status(e.message, true));
    });
    return a;
  }));
}

function update(r, job) {
  r.job = job;
  text(r.label, job.label);
  text(r.created, `${t('created')} ${time(job.created_ms)} · ${job.id.slice(0, 8)}`);
  text(r.options, job.options || '');
  text(r.state, t('state_' + job.state) + (job.message ? `: ${job.message}` : ''));
  r.state.className = 'state state-' + job.state;
  const total = job.state === 'publishing' ? 0 : job.total_rows;
  bar(r.bar, job.rows_done, total, t('progressOf', { job: named(job) }));
  let done = total ? `${job.rows_done} / ${total}` : `${t('publishing')} ${job.rows_done}`;
  if (job.state === 'running' && total && job.rows_done > 0) {
    const secs = (Date.now() - job.created_ms) / 1000;
    done += ` · ${t('left', { t: duration(secs * (total - job.rows_done) / job.rows_done) })}`;
  }
  text(r.done, done);
  sheets(r, job);
  const failed = job.rows_failed;
  // Done: the rows per status (ok, no_result, ambiguous, error); before: ok and errors.
  const counts = job.status_counts || { ok: job.rows_done - failed };
  text(r.ok, `${t('ok')} ${counts.ok || 0}`);
  const other = Object.entries(counts).filter(([k, n]) => k !== 'ok' && k !== 'error' && n > 0);
  text(r.other, other.map(([k, n]) => `${t('status_' + k)} ${n}`).join(' · '));
  text(r.err, `${t('errors')} ${failed}`);
  r.err.className = failed ? 'err' : '';
  links(r, job);
  const finished = job.state === 'done';
  r.map.hidden = !(finished && (job.results || []).some((x) => x.format === 'geojson'));
  text(r.map, t('showMap'));
  attr(r.map, 'aria-label', t('showMapJob', { job: named(job) }));
  r.retry.hidden = !(finished && failed > 0);
  text(r.retry, t('retry'));
  attr(r.retry, 'aria-label', t('retryJob', { job: named(job) }));
  text(r.del, t('delete'));
  attr(r.del, 'aria-label', t('deleteJob', { job: named(job) }));
}

function render() {
  const tbody = document.getElementById('jobs');
  const pages = Math.max(1, Math.ceil(jobs.length / PAGE_SIZE));
  page = Math.min(page, pages - 1);
  const shown = jobs.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  const keep = new Set(shown.map((j) => j.id));
  for (const [id, r] of rows) if (!keep.has(id)) { r.tr.remove(); rows.delete(id); }
  let before = tbody.firstChild;
  for (const job of shown) {
    let r = rows.get(job.id);
    if (!r) { r = create(job); rows.set(job.id, r); }
    update(r, job);
    // Moves a row only when it is out of place (moving would drop its focus).
    if (r.tr !== before) tbody.insertBefore(r.tr, before);
    before = r.tr.nextSibling;
  }
  const pager = document.getElementById('pager');
  pager.hidden = pages < 2;
  text(document.getElementById('page-no'), t('pageOf', { n: page + 1, of: pages }));
  document.getElementById('prev').disabled = page === 0;
  document.getElementById('next').disabled = page >= pages - 1;
}

/** Asks for the jobs now; again every POLL_MS while one of them is still going. */
export async function refresh() {
  clearTimeout(timer);
  timer = null;
  try {
    const list = await json('/jobs');
    jobs = list.sort((a, b) => b.created_ms - a.created_ms);
    render();
  } catch (e) {
    if (!e.offline) hooks.status(e.message, true);
    return; // Offline: the connection watcher calls refresh when the server is back.
  }
  if (jobs.some((j) => ACTIVE.includes(j.state))) timer = setTimeout(refresh, POLL_MS);
  document.getElementById('jobs-table').dataset.polling = timer ? 'on' : 'off';
}

async function retry(job) {
  try {
    const res = await (await api(`/jobs/${job.id}/retry`, { method: 'POST' })).json();
    hooks.status(t('retried', { n: res.retried_rows, job: named(job) }));
  } catch (e) {
    hooks.status(e.message, true);
  }
  refresh();
}

async function remove(job) {
  if (!confirm(t('confirmDelete', { job: named(job) }))) return;
  try {
    await api(`/jobs/${job.id}`, { method: 'DELETE' });
    hooks.status(t('deleted', { job: named(job) }));
    hooks.deleted(job.id);
    document.getElementById('jobs-h').focus?.();
  } catch (e) {
    hooks.status(e.message, true);
  }
  refresh();
}

export function setup(h) {
  hooks = h;
  document.getElementById('prev').addEventListener('click', () => { page--; render(); });
  document.getElementById('next').addEventListener('click', () => { page++; render(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
}

/** Labels again in the current language. */
export function relabel() { render(); }
