// A small runner for the page's checks: each check is named, runs in order, and its failure
// (with the message) is reported; the process exits 1 when any failed. Waits have deadlines;
// nothing sleeps to synchronise.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BASE = process.env.GEOBATCH_URL;
export const SAMPLES = process.env.GEOBATCH_SAMPLES;
export const OUT = process.env.GEOBATCH_SCREENSHOTS || 'target/browser';
/** Set to a folder (docs/) to also write the README's screenshots there. */
export const DOCS = process.env.GEOBATCH_DOCS_SCREENSHOTS || '';
const CHROMIUM = process.env.GEOBATCH_CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Longest wait for anything the page should show. */
export const DEADLINE_MS = 20000;

const results = [];
// A wait left behind by a failed check must not end the run.
process.on('unhandledRejection', (e) => console.log(`(after a failure) ${e.message || e}`));
const problems = [];

export function sample(name) { return fs.readFileSync(path.join(SAMPLES, name)); }

export function assert(cond, message) { if (!cond) throw new Error(message); }

export function eq(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

export async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - started });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ name, ok: false, ms: Date.now() - started, error: e.stack || String(e) });
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

export async function launch() {
  fs.mkdirSync(OUT, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}

/** A page that records uncaught errors and console errors (they fail the run at the end). */
export async function openPage(browser, options = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...options });
  // Tests run offline: the base map's tiles never load (the page must cope).
  await context.route(/tile\.openstreetmap\.org/, (route) => route.abort('internetdisconnected'));
  // For editing the page without rebuilding: GEOBATCH_DEV_ASSETS=src/http serves the page's
  // files from there instead of the binary.
  if (process.env.GEOBATCH_DEV_ASSETS) {
    const dir = path.resolve(HERE, '../..', process.env.GEOBATCH_DEV_ASSETS);
    await context.route((url) => url.origin === BASE && (url.pathname === '/' || url.pathname.startsWith('/assets/')), (route) => {
      const p = new URL(route.request().url()).pathname;
      const file = p === '/' ? 'page.html' : 'assets/' + p.slice(8);
      const type = file.endsWith('.html') ? 'text/html' : file.endsWith('.css') ? 'text/css' : 'text/javascript';
      return route.fulfill({ body: fs.readFileSync(path.join(dir, file)), contentType: type });
    });
  }
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  page.on('pageerror', (e) => problems.push(`uncaught error: ${e.message}`));
  page.on('console', (m) => {
    // A request the browser could not send is logged by Chromium itself; only the page's own
    // errors count.
    if (m.type() === 'error' && !/Failed to load resource|ERR_/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  await page.goto(BASE + '/');
  await page.waitForSelector('body[data-ready=true]');
  return { context, page };
}

export async function screenshot(page, name, { docs = false, fullPage = true } = {}) {
  const file = path.join(OUT, name + '.png');
  await page.screenshot({ path: file, fullPage });
  if (docs && DOCS) {
    fs.mkdirSync(DOCS, { recursive: true });
    fs.copyFileSync(file, path.join(DOCS, name + '.png'));
  }
}

/** Runs axe-core in the page (its report saved as `<name>.axe.json`); returns the serious and
 * critical violations. */
export async function axe(page, name) {
  await page.addScriptTag({ path: path.join(HERE, 'node_modules/axe-core/axe.min.js') });
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  fs.writeFileSync(path.join(OUT, `${name}.axe.json`), JSON.stringify(result.violations, null, 1));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
}

/** Drops files (name, bytes) on the element `selector` as a browser would. */
export async function dropFiles(page, selector, files) {
  const payload = files.map(([name, bytes]) => ({ name, b64: Buffer.from(bytes).toString('base64') }));
  await page.evaluate(({ selector, payload }) => {
    const dt = new DataTransfer();
    for (const f of payload) {
      const bin = atob(f.b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      dt.items.add(new File([bytes], f.name));
    }
    const target = document.querySelector(selector);
    for (const type of ['dragenter', 'dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }, { selector, payload });
}

/** Requests the page sends matching `method` and `pathname` regex, counted from now. */
export function countRequests(page, method, pathname) {
  const seen = [];
  const on = (req) => { if (req.method() === method && pathname.test(new URL(req.url()).pathname)) seen.push(req.url()); };
  page.on('request', on);
  return { get count() { return seen.length; }, stop: () => page.off('request', on) };
}

export function finish() {
  for (const p of problems) console.log(`FAIL page: ${p}`);
  const failed = results.filter((r) => !r.ok).length + (problems.length ? 1 : 0);
  fs.writeFileSync(path.join(OUT, 'results.json'), JSON.stringify({ results, problems }, null, 1));
  console.log(`${results.length - results.filter((r) => !r.ok).length} of ${results.length} checks passed; ${problems.length} page errors`);
  process.exit(failed ? 1 : 0);
}
