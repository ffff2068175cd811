// Requests to the server: the API token when one is needed (asked once, kept in this browser),
// and the connection watched: a request that cannot reach the server shows the notice, and
// `/healthz` is asked (backing off) until it answers; then every listener hears `online`.
import { t } from './i18n.js';

const listeners = [];
let online = true;
let probing = null;

/** A failure the page shows: the server's message and the field it is about, if any. */
export class ApiError extends Error {
  constructor(message, { status = 0, field = null, offline = false } = {}) {
    super(message);
    this.status = status;
    this.field = field;
    this.offline = offline;
  }
}

function token() { return localStorage.getItem('geobatch_token'); }

function askToken() {
  const given = prompt(t('tokenPrompt'));
  if (!given) return false;
  localStorage.setItem('geobatch_token', given.trim());
  return true;
}

export function isOnline() { return online; }

/** Calls `fn(online)` whenever the server becomes unreachable or reachable again. */
export function onConnection(fn) { listeners.push(fn); }

function setOnline(value) {
  if (online === value) return;
  online = value;
  document.getElementById('offline').hidden = value;
  for (const fn of listeners) fn(value);
  if (!value) probe(1000);
}

function probe(delay) {
  if (probing) return;
  probing = setTimeout(async () => {
    probing = null;
    try {
      await fetch('/healthz', { cache: 'no-store' });
      setOnline(true);
    } catch {
      probe(Math.min(delay * 2, 8000));
    }
  }, delay);
}

async function errorOf(res) {
  const body = await res.json().catch(() => ({}));
  return new ApiError(body.error || `${res.status} ${res.statusText}`, { status: res.status, field: body.field || null });
}

/** `fetch` with the token; resolves to the response when it is OK, else throws ApiError. */
export async function api(path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = new Headers(opts.headers || {});
    if (token()) headers.set('Authorization', 'Bearer ' + token());
    let res;
    try {
      res = await fetch(path, { ...opts, headers });
    } catch {
      setOnline(false);
      throw new ApiError(t('offline'), { offline: true });
    }
    setOnline(true);
    if (res.status === 401 && attempt === 0 && askToken()) continue;
    if (!res.ok) throw await errorOf(res);
    return res;
  }
}

export async function json(path, opts) { return (await api(path, opts)).json(); }

/** A multipart POST with upload progress (`onProgress(percent)`); resolves to the JSON body. */
export function upload(path, data, onProgress) {
  const send = () => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    if (token()) xhr.setRequestHeader('Authorization', 'Bearer ' + token());
    xhr.responseType = 'json';
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) onProgress(Math.round(100 * ev.loaded / ev.total)); };
    xhr.onerror = () => { setOnline(false); reject(new ApiError(t('offline'), { offline: true })); };
    xhr.onload = () => {
      setOnline(true);
      const body = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(body.error || `${xhr.status} ${xhr.statusText}`, { status: xhr.status, field: body.field || null }));
    };
    xhr.send(data);
  });
  return send().catch((e) => (e.status === 401 && askToken() ? send() : Promise.reject(e)));
}

/** Saves a result with the token: fetched, then handed to the browser under `name`. */
export async function download(url, name) {
  const res = await api(url);
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await res.blob());
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}
