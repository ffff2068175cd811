// The preview: the server's dry run on the first rows of the chosen files (`POST
// /jobs/preview`, the same detection as a job): what it detected, the CRS guessed or the likely
// ones to pick from, and the first rows converted, so a wrong CRS shows as wrong positions
// before anything runs. Changing a column or the CRS asks again.
import { t } from './i18n.js';
import { upload } from './api.js';
import * as form from './form.js';

/** CSV text files are sent only up to here (the preview reads the first rows). */
const CSV_HEAD_BYTES = 1024 * 1024;

let files = [];
let asked = 0;
let last = null;

const box = () => document.getElementById('preview-body');

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function part(file) {
  const workbook = /\.(xlsx|xlsm|xls|ods)$/i.test(file.name);
  return workbook || file.size <= CSV_HEAD_BYTES ? file : file.slice(0, CSV_HEAD_BYTES);
}

/** Asks for the preview of `chosen` (or the files chosen before) with the current options. */
export async function run(chosen = files) {
  files = chosen;
  const section = document.getElementById('preview');
  if (!files.length) { section.hidden = true; return; }
  section.hidden = false;
  const n = ++asked;
  box().replaceChildren(el('p', t('previewing'), { class: 'hint' }));
  const data = new FormData();
  for (const f of files) data.append('file', part(f), f.name);
  form.appendValues(data, { skipFormat: true });
  try {
    const answer = await upload('/jobs/preview', data, () => {});
    if (n !== asked) return;
    last = answer;
    form.clearErrors();
    render(answer);
  } catch (e) {
    if (n !== asked) return;
    last = null;
    if (!form.showAtField(e)) {
      box().replaceChildren(el('p', t('previewFailed', { msg: form.reword(e.message) }), { class: 'field-error', role: 'alert' }));
    } else {
      box().replaceChildren();
    }
  }
}

export function rerender() { if (last) render(last); }

function facts(file) {
  const p = el('p', null, { class: 'preview-facts' });
  const parts = [`${file.label}: ${file.format}`];
  if (file.encoding) parts.push(`${t('encoding')} ${file.encoding}`);
  if (file.delimiter) parts.push(`${t('delimiter')} ${file.delimiter}`);
  parts.push(`${t('sheets')} ${file.tables.map((s) => s.name || file.label).join(', ')}`);
  p.textContent = `${t('detected')} — ${parts.join(' · ')}`;
  return p;
}

function crsPicker(crs) {
  const wrap = el('div', null, { class: 'crs' });
  const said = crs.used ? t('crsGuess', { crs: crs.used, reason: crs.reason }) : t('crsUnknown', { reason: crs.reason });
  wrap.append(el('p', said, { id: 'crs-guess' }));
  if (!crs.likely.length) return wrap;
  // Projected values: the likely CRSs side by side, the one in use checked.
  const group = el('div', null, { role: 'radiogroup', 'aria-labelledby': 'crs-guess' });
  for (const c of crs.likely) {
    const l = el('label');
    const r = el('input', null, { type: 'radio', name: 'crs-choice', value: c.code });
    r.checked = c.code === crs.used;
    r.addEventListener('change', () => { form.setValue('from', c.code); run(); });
    l.append(r, ` ${c.code} ${c.name}`);
    group.append(l);
  }
  wrap.append(group);
  return wrap;
}

function rowsTable(file) {
  const table = el('table');
  const tables = file.tables;
  const head = el('tr');
  for (const h of [t('line'), tables[0]?.x || 'x', tables[0]?.y || 'y', t('lon'), t('lat'), t('problem')]) head.append(el('th', h, { scope: 'col' }));
  table.append(el('caption', file.label), el('thead'), el('tbody'));
  table.tHead.append(head);
  const fix = (v) => (v == null ? '' : Number(v).toFixed(6));
  for (const r of file.rows) {
    const tr = el('tr');
    const tbl = tables[r.table] || tables[0];
    const xi = tbl.headers.indexOf(tbl.x);
    const yi = tbl.headers.indexOf(tbl.y);
    for (const v of [r.line, r.cells[xi] ?? '', r.cells[yi] ?? '', fix(r.lon), fix(r.lat), r.error ?? '']) tr.append(el('td', String(v)));
    if (r.lon != null) tr.classList.add('has-position');
    table.tBodies[0].append(tr);
  }
  const wrap = el('div', null, { class: 'table-wrap' });
  wrap.append(table);
  return wrap;
}

function render(answer) {
  const out = [];
  const headers = [];
  for (const file of answer.files) {
    out.push(facts(file));
    for (const tb of file.tables) for (const h of tb.headers) if (!headers.includes(h)) headers.push(h);
  }
  const first = answer.files[0]?.tables[0];
  form.setColumns('x', headers, first?.x);
  form.setColumns('y', headers, first?.y);
  form.setColumns('sheet_by', headers, null);
  out.push(crsPicker(answer.crs));
  for (const file of answer.files) out.push(rowsTable(file));
  box().replaceChildren(...out);
}

/** Changing these fields changes what the preview shows. */
export function watch() {
  for (const name of ['from', 'x', 'y', 'encoding', 'delimiter', 'sheets', 'header_row']) {
    document.getElementById('opt-' + name)?.addEventListener('change', () => run());
  }
}
