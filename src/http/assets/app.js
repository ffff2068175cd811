// The page: the upload form (files chosen or dropped, previewed, sent with progress), the
// jobs, the map; labels in the browser's language.
import * as i18n from './i18n.js';
import { t } from './i18n.js';
import { json, upload, onConnection } from './api.js';
import * as form from './form.js';
import * as preview from './preview.js';
import * as jobs from './jobs.js';
import * as map from './map.js';

/** Files in one upload, at most. */
const MAX_FILES = 50;

const $ = (id) => document.getElementById(id);
let files = [];
let busy = false;

function status(message, error = false) {
  const s = $('status');
  s.textContent = error ? form.reword(message) : message;
  s.className = error ? 'error' : '';
}

function choose(list) {
  files = [...list].slice(0, MAX_FILES);
  const chosen = $('chosen');
  chosen.replaceChildren(...files.map((f) => {
    const li = document.createElement('li');
    li.textContent = `${f.name} (${Math.max(1, Math.round(f.size / 1024))} KiB)`;
    return li;
  }));
  $('error-file').textContent = '';
  // Columns chosen for other files mean nothing here: detect them again.
  for (const name of form.COLUMN_FIELDS) form.setValue(name, '');
  preview.run(files);
}

function setupDrop() {
  const drop = $('drop');
  $('file').addEventListener('change', (ev) => choose(ev.target.files));
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  }
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    if (ev.dataTransfer?.files?.length) choose(ev.dataTransfer.files);
  });
}

function setBusy(value) {
  busy = value;
  $('submit').disabled = value;
  $('upload-progress').hidden = !value;
}

async function submit(ev) {
  ev.preventDefault();
  if (busy) return;
  form.clearErrors();
  if (!files.length) {
    $('error-file').textContent = t('chooseFiles');
    $('file').focus();
    return;
  }
  setBusy(true);
  const data = new FormData();
  for (const f of files) data.append('file', f, f.name);
  form.appendValues(data);
  const progress = (pct) => {
    $('upload-progress').value = pct;
    $('upload-pct').textContent = `${pct}%`;
    status(t('uploading', { pct }));
  };
  progress(0);
  try {
    const body = await upload('/jobs', data, progress);
    progress(100);
    status(t('accepted', { id: body.id }));
    // The options stay for the next files; the files and their preview go.
    $('file').value = '';
    files = [];
    $('chosen').replaceChildren();
    preview.run([]);
    jobs.refresh();
  } catch (e) {
    if (!form.showAtField(e)) status(e.message, true);
    else status('');
  } finally {
    setBusy(false);
  }
}

async function start() {
  i18n.setupSwitch($('lang'));
  setupDrop();
  jobs.setup({
    status,
    map: (job) => map.show(job).catch((e) => status(e.message, true)),
    deleted: (id) => map.forget(id),
  });
  $('upload').addEventListener('submit', submit);
  onConnection((online) => {
    if (online) { status(t('back')); jobs.refresh(); if (files.length) preview.run(); }
  });
  i18n.onLanguage(() => { form.relabel(); jobs.relabel(); preview.rerender(); });
  try {
    form.build($('options'), await json('/options'));
    preview.watch();
  } catch (e) {
    status(e.message, true);
  }
  await jobs.refresh();
  document.body.dataset.ready = 'true';
}

start();
