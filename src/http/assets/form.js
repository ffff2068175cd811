// The job's option fields, built from the server's list (`GET /options`: the same names and
// help texts as `geobatch convert --help`), their errors shown at the field, and the values
// as form data. Options this page has no special control for get a text field.
import { t, has } from './i18n.js';

/** Shown first; the others sit under "More options". */
const MAIN = ['from', 'to', 'x', 'y', 'format'];
/** Fields whose choices are the file's headers (filled by the preview). */
export const COLUMN_FIELDS = ['x', 'y', 'sheet_by'];
const CHOICES = {
  encoding: ['utf-8', 'cp949', 'euc-kr', 'utf-16le', 'utf-16be'],
  delimiter: [[',', ','], [';', ';'], ['|', '|'], ['tab', 'tab']],
  engine: ['builtin', 'postgis'],
};
/** Longest value typed into a text field (the server's limit is larger). */
const MAX_TEXT = 1000;

let docs = [];

export function label(name) { return has('opt_' + name) ? t('opt_' + name) : name.replace(/_/g, ' '); }

function option(value, text) { return new Option(text ?? value, value); }

function select(name, choices, emptyKey) {
  const s = document.createElement('select');
  s.append(option('', t(emptyKey)));
  for (const c of choices) s.append(Array.isArray(c) ? option(c[0], c[1]) : option(c));
  return s;
}

function crsInput(name, crsList) {
  const input = document.createElement('input');
  input.type = 'text';
  input.maxLength = 40;
  input.setAttribute('list', 'crs-list');
  input.autocomplete = 'off';
  if (!document.getElementById('crs-list')) {
    const list = document.createElement('datalist');
    list.id = 'crs-list';
    for (const c of [{ code: 'EPSG:4326', name: 'WGS 84' }, ...crsList]) list.append(option(c.code, `${c.code} ${c.name}`));
    document.body.append(list);
  }
  return input;
}

function formats(list) {
  const box = document.createElement('fieldset');
  box.className = 'formats';
  box.setAttribute('role', 'group');
  const legend = document.createElement('legend');
  legend.dataset.i18n = 'opt_format';
  legend.textContent = label('format');
  box.append(legend);
  for (const f of list) {
    const l = document.createElement('label');
    const c = document.createElement('input');
    c.type = 'checkbox';
    c.name = 'format';
    c.value = f;
    c.checked = f === 'xlsx' || f === 'geojson';
    l.append(c, ' ' + f);
    box.append(l);
  }
  return box;
}

function control(doc, server) {
  const { name } = doc;
  if (name === 'from' || name === 'to') return crsInput(name, server.likely_crs || []);
  if (COLUMN_FIELDS.includes(name)) return select(name, [], name === 'sheet_by' ? 'none' : 'auto');
  if (CHOICES[name]) return select(name, CHOICES[name], 'auto');
  if (name === 'lookup') return select(name, server.providers || [], 'off');
  if (name === 'template') return select(name, server.templates || [], 'none');
  const input = document.createElement('input');
  input.type = 'text';
  input.maxLength = MAX_TEXT;
  return input;
}

/** Builds the fields into `box` from the server's answer to `GET /options`. */
export function build(box, server) {
  docs = server.options.filter((o) => o.name !== 'lookup_template'
    && !(o.name === 'template' && !(server.templates || []).length));
  const more = document.createElement('details');
  const summary = document.createElement('summary');
  summary.textContent = 'More options';
  summary.dataset.i18n = 'moreOptions';
  more.append(summary);
  const main = document.createElement('div');
  for (const doc of docs) {
    if (doc.name === 'format') { main.append(formats(server.formats || ['xlsx'])); continue; }
    const wrap = document.createElement('div');
    wrap.className = 'field';
    const l = document.createElement('label');
    l.htmlFor = 'opt-' + doc.name;
    l.dataset.i18n = 'opt_' + doc.name;
    l.textContent = label(doc.name);
    const input = control(doc, server);
    input.id = 'opt-' + doc.name;
    input.name = doc.name;
    input.title = doc.help;
    input.setAttribute('aria-describedby', 'error-' + doc.name);
    input.addEventListener('input', () => clearError(doc.name));
    const error = document.createElement('p');
    error.id = 'error-' + doc.name;
    error.className = 'field-error';
    error.dataset.field = doc.name;
    wrap.append(l, input, error);
    (MAIN.includes(doc.name) ? main : more).append(wrap);
  }
  box.replaceChildren(main, more);
  relabel();
}

/** Labels of options the page has no translation for keep the option's own name. */
export function relabel() {
  for (const l of document.querySelectorAll('#options [data-i18n^="opt_"]')) l.textContent = label(l.dataset.i18n.slice(4));
  const more = document.querySelector('#options summary');
  if (more) more.textContent = has('moreOptions') ? t('moreOptions') : 'More options';
  for (const s of document.querySelectorAll('#options select')) {
    const first = s.options[0];
    if (first && first.value === '') first.text = t(s.name === 'sheet_by' || s.name === 'template' ? 'none' : s.name === 'lookup' ? 'off' : 'auto');
  }
}

/** The choices of a column field: the file's headers, `chosen` selected. */
export function setColumns(name, headers, chosen) {
  const s = document.getElementById('opt-' + name);
  if (!s) return;
  const keep = s.value;
  s.replaceChildren(s.options[0], ...headers.map((h) => option(h)));
  s.value = headers.includes(keep) ? keep : (chosen && headers.includes(chosen) ? chosen : '');
}

/** The fields' values, appended to `data` (empty fields are left out: the server decides). */
export function appendValues(data, { skipFormat = false } = {}) {
  for (const el of document.querySelectorAll('#options [name]')) {
    if (el.name === 'format') continue;
    const v = el.value.trim().slice(0, MAX_TEXT);
    if (v) data.append(el.name, v);
  }
  const chosen = [...document.querySelectorAll('#options input[name=format]:checked')].map((c) => c.value);
  if (!skipFormat && chosen.length) data.append('format', chosen.join(','));
}

export function value(name) { return document.getElementById('opt-' + name)?.value.trim() ?? ''; }

export function setValue(name, v) {
  const el = document.getElementById('opt-' + name);
  if (el) { el.value = v; clearError(name); }
}

/** The server's words for the page: "option from" is the field's label. */
export function reword(message) {
  return message
    .replace(/\(option (\w+)\)/g, (m, n) => `(${label(n)})`)
    .replace(/\boption (\w+)/g, (m, n) => `“${label(n)}”`)
    .replace(/ \(GEOBATCH_\w+\)/g, '');
}

export function clearError(name) {
  const p = document.getElementById('error-' + name);
  if (p) p.textContent = '';
  document.getElementById('opt-' + name)?.removeAttribute('aria-invalid');
}

export function clearErrors() {
  for (const p of document.querySelectorAll('.field-error')) p.textContent = '';
  for (const el of document.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/** Shows `err` at its field when it names one the page has; returns whether it did. */
export function showAtField(err) {
  const field = err.field === 'lookup_template' ? 'template' : err.field;
  const p = field && document.getElementById('error-' + field);
  if (!p) return false;
  p.textContent = reword(err.message);
  const input = document.getElementById('opt-' + field);
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    input.closest('details')?.setAttribute('open', '');
    input.focus();
  }
  return true;
}
