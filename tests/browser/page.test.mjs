// The page in headless Chromium against a real `geobatch serve` (GEOBATCH_URL), as a user
// would use it. Run by tests/it/page.rs; `node page.test.mjs` with GEOBATCH_URL and
// GEOBATCH_SAMPLES set runs it by hand.
import {
  BASE, DEADLINE_MS, assert, eq, check, launch, openPage, screenshot, axe, dropFiles,
  countRequests, sample, finish,
} from './lib.mjs';

const JOB_DEADLINE_MS = 90000;
const EXTRA_CSV = 'name,lon,lat\n"a, b",127.5,37.25\nc,-,37.0\n';

const browser = await launch();
const { page } = await openPage(browser, { locale: 'en-US', viewport: { width: 1280, height: 900 } });
const text = (sel) => page.locator(sel).innerText();
const row = (id) => `tr[data-id="${id}"]`;

async function submitAndGetId(click = () => page.click('#submit')) {
  const response = page.waitForResponse((r) => r.url() === BASE + '/jobs' && r.request().method() === 'POST');
  await click();
  const res = await response;
  eq(res.status(), 202, 'POST /jobs status');
  return (await res.json()).id;
}

async function waitDone(id) {
  await page.waitForSelector(`${row(id)} .state-done`, { timeout: JOB_DEADLINE_MS });
}

let localdataJob = null;
let storesJob = null;

await check('page has a viewport, a live region and no fake default CRS', async () => {
  assert(await page.locator('meta[name=viewport][content*="width=device-width"]').count() === 1, 'no viewport meta');
  eq(await page.getAttribute('#status', 'aria-live'), 'polite', 'status live region');
  const from = page.locator('#opt-from');
  eq(await from.inputValue(), '', 'From CRS value');
  const placeholder = (await from.getAttribute('placeholder')) || '';
  assert(!/EPSG/i.test(placeholder), `From CRS placeholder looks like a value: ${placeholder}`);
  // The fields are the server's options: every one of GET /options has its field.
  const options = await (await page.request.get(BASE + '/options')).json();
  for (const o of options.options) {
    if (['lookup_template', 'format'].includes(o.name) || (o.name === 'template' && !options.templates.length)) continue;
    assert(await page.locator(`#opt-${o.name}`).count() === 1, `no field for option ${o.name}`);
  }
});

await check('a projected file without its CRS: the error is at the field, in the page\'s words', async () => {
  await page.setInputFiles('#file', { name: 'localdata_5174.csv', mimeType: 'text/csv', buffer: sample('localdata_5174.csv') });
  await page.waitForSelector('#crs-guess');
  const posts = countRequests(page, 'POST', /^\/jobs$/);
  const response = page.waitForResponse((r) => r.url() === BASE + '/jobs' && r.request().method() === 'POST');
  await page.click('#submit');
  eq((await response).status(), 422, 'upload without CRS');
  const error = page.locator('#error-from');
  await error.waitFor({ state: 'visible' });
  const message = await error.innerText();
  assert(message.length > 10 && !/--\w|option from/.test(message), `field error: ${message}`);
  eq(await page.getAttribute('#opt-from', 'aria-invalid'), 'true', 'From CRS marked invalid');
  eq(await page.evaluate(() => document.activeElement.id), 'opt-from', 'focus on the field');
  eq(await page.isEnabled('#submit'), true, 'button enabled again');
  posts.stop();
});

await check('a file that is not a workbook: a readable message, no binary dump', async () => {
  const junk = Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(2000, 0xfe)]);
  await dropFiles(page, '#drop', [['broken.xlsx', junk]]);
  const error = page.locator('#preview .field-error');
  await error.waitFor();
  const message = await error.innerText();
  assert(/broken\.xlsx: cannot read the workbook/.test(message) && message.length < 400, `message: ${message}`);
  assert(!/[\u0000-\u0008\ufffd]/.test(message), 'binary in the message');
});

await check('drop a file: the preview shows detected columns, pick the CRS, rows convert', async () => {
  await page.evaluate(() => { document.getElementById('opt-from').value = ''; });
  await dropFiles(page, '#drop', [['localdata_5174.csv', sample('localdata_5174.csv')]]);
  await page.waitForSelector('#chosen li');
  await page.waitForSelector('input[name=crs-choice][value="EPSG:5174"]');
  const facts = await text('#preview .preview-facts');
  assert(/EUC-KR/i.test(facts) && /delimiter ,/.test(facts), `detected: ${facts}`);
  eq(await page.inputValue('#opt-x'), '좌표정보(x)', 'x column detected');
  eq(await page.inputValue('#opt-y'), '좌표정보(y)', 'y column detected');
  const headers = await page.locator('#opt-x option').allInnerTexts();
  assert(headers.includes('사업장명') && headers.length > 10, `x choices are the headers: ${headers}`);
  await page.click('input[name=crs-choice][value="EPSG:5174"]');
  await page.waitForSelector('#preview tr.has-position');
  eq(await page.inputValue('#opt-from'), 'EPSG:5174', 'From CRS set by the pick');
  // The other likely CRSs stay offered, the picked one checked.
  eq(await page.isChecked('input[name=crs-choice][value="EPSG:5174"]'), true, 'the pick is checked');
  assert(await page.locator('input[name=crs-choice]').count() > 1, 'the other CRSs stay offered');
  const cells = await page.locator('#preview tr.has-position').first().locator('td').allInnerTexts();
  const [lon, lat] = [Number(cells[3]), Number(cells[4])];
  assert(lon > 126 && lon < 128 && lat > 37 && lat < 38, `preview position ${lon}, ${lat}`);
  await screenshot(page, 'upload-preview', { docs: true, fullPage: false });
  // Another x column from the dropdown: the preview reads the file with it.
  await page.selectOption('#opt-x', '번호');
  await page.waitForSelector('#preview th:has-text("번호")');
  await page.selectOption('#opt-x', '좌표정보(x)');
  await page.waitForSelector('#preview th:has-text("좌표정보(x)")');
});

await check('double-click on Run makes one job; upload progress reaches 100%', async () => {
  const posts = countRequests(page, 'POST', /^\/jobs$/);
  localdataJob = await submitAndGetId(() => page.dblclick('#submit'));
  await page.waitForSelector('#status:has-text("Accepted")');
  eq(await text('#upload-pct'), '100%', 'upload percent');
  await page.waitForSelector(row(localdataJob));
  eq(posts.count, 1, 'POST /jobs requests for a double-click');
  posts.stop();
  await waitDone(localdataJob);
});

await check('two files dropped: per-sheet progress, ok/error counts, created time, options, downloads', async () => {
  await page.fill('#opt-from', '');
  await page.check('input[name=format][value=csv]');
  await page.check('input[name=format][value=gpkg]');
  await dropFiles(page, '#drop', [['stores_wgs84.csv', sample('stores_wgs84.csv')], ['extra.csv', Buffer.from(EXTRA_CSV)]]);
  eq(await page.locator('#chosen li').count(), 2, 'both dropped files chosen');
  // New files: the columns chosen for the last ones are detected again.
  await page.waitForSelector('#crs-guess:has-text("EPSG:4326")');
  eq(await page.inputValue('#opt-x'), 'lon', 'x column of the new files');
  storesJob = await submitAndGetId();
  await waitDone(storesJob);
  const r = page.locator(row(storesJob));
  eq(await r.locator('.sheet progress').count(), 2, 'a bar per sheet');
  for (const name of await r.locator('.sheet progress').evaluateAll((bars) => bars.map((b) => b.getAttribute('aria-label')))) {
    assert(/stores_wgs84|extra/.test(name), `sheet bar name: ${name}`);
  }
  const counts = await r.locator('.counts').innerText();
  assert(/ok 51/.test(counts) && /errors 1/.test(counts) && !/no result/.test(counts), `counts: ${counts}`);
  assert(await r.locator('.counts .err').count() === 1, 'errors are marked');
  const who = await r.locator('td').first().innerText();
  assert(/created \d/.test(who) && /xlsx,gpkg,geojson,csv/.test(who), `job cell: ${who}`);
  eq(await r.locator('.retry').isVisible(), true, 'retry offered for failed rows');
  // Every link and bar on the page has a name of its own.
  const names = await page.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('aria-label') || a.textContent));
  eq(new Set(names).size, names.length, 'link names are distinct');
  const files = {};
  for (const fmt of ['xlsx', 'gpkg', 'geojson', 'csv']) {
    const wait = page.waitForEvent('download');
    await r.locator(`a[aria-label^="Download ${fmt} "]`).click();
    const d = await wait;
    const bytes = await (await import('node:fs')).promises.readFile(await d.path());
    files[fmt] = { name: d.suggestedFilename(), bytes };
  }
  eq(files.xlsx.bytes.subarray(0, 2).toString(), 'PK', 'xlsx is a zip');
  eq(files.csv.bytes.subarray(0, 2).toString(), 'PK', 'csv of two sheets is a zip');
  eq(files.gpkg.bytes.subarray(0, 15).toString(), 'SQLite format 3', 'gpkg is SQLite');
  const geo = JSON.parse(files.geojson.bytes.toString());
  eq(geo.features.length, 52, 'geojson features');
  const names2 = Object.values(files).map((f) => f.name);
  assert(names2.every((n) => n.startsWith('stores_wgs84-')) && new Set(names2).size === 4, `download names: ${names2}`);
  assert(files.csv.name.endsWith('.zip'), `csv name ${files.csv.name}`);
});

await check('nothing running: the page stops asking for jobs', async () => {
  await page.waitForSelector('#jobs-table[data-polling=off]');
  const gets = countRequests(page, 'GET', /^\/jobs$/);
  // Observing that nothing happens needs a window of time: 3 poll intervals.
  await page.waitForTimeout(3000);
  gets.stop();
  eq(gets.count, 0, 'GET /jobs while idle');
});

await check('map of a finished job: a point per row with a position, errors listed', async () => {
  await page.click(`${row(storesJob)} button.map`);
  await page.waitForSelector('#map[data-points="51"]');
  eq(await page.locator('#map path.leaflet-interactive').count(), 51, 'points drawn');
  eq(await page.locator('#map-errors li').count(), 1, 'rows without a position');
  eq(await page.locator('#map-legend').innerText(), 'ok 51', 'legend of the colours');
  await page.waitForSelector('#map[data-tiles=off]');
  await page.locator('#map path.leaflet-interactive').first().click({ force: true });
  const popup = await page.locator('.leaflet-popup-content').innerText();
  assert(/stores_wgs84/.test(popup) && /status/.test(popup), `popup: ${popup}`);
  await page.keyboard.press('Escape');
  await screenshot(page, 'job-map', { docs: true, fullPage: false });
});

await check('retry failed rows, then delete the job', async () => {
  const r = page.locator(row(storesJob));
  const retried = page.waitForResponse((res) => res.url().endsWith(`/jobs/${storesJob}/retry`));
  await r.locator('.retry').click();
  eq((await retried).status(), 202, 'retry answer');
  await page.waitForSelector('#status:has-text("Retrying 1 rows")');
  // The row may still show the old "done": ask the server until the retried job is done again.
  await page.waitForFunction(
    async (url) => (await (await fetch(url)).json()).state === 'done',
    `${BASE}/jobs/${storesJob}`, { polling: 250, timeout: JOB_DEADLINE_MS },
  );
  await waitDone(storesJob);
  eq(await r.locator('.counts .err').innerText(), 'errors 1', 'the row that cannot convert fails again');
  page.once('dialog', (d) => d.accept());
  await r.locator('.delete').click();
  await page.waitForSelector(row(storesJob), { state: 'detached' });
  eq((await page.request.get(`${BASE}/jobs/${storesJob}`)).status(), 404, 'deleted job');
  eq(await page.isHidden('#map-section'), true, 'map of the deleted job hidden');
});

await check('updates keep focus; a publishing job is not shown full; paused shows why', async () => {
  let done = 0;
  const job = (state, extra = {}) => ({
    id: 'f'.repeat(32), label: 'big.csv', state, message: null, source_crs: null, total_rows: 1000,
    rows_done: done, rows_failed: 0, created_ms: Date.now() - 5000, finished_ms: null, result_url: null,
    results: [], options: 'xlsx', sheets: [{ name: 'big', rows_total: 1000, rows_done: done, rows_ok: done, rows_failed: 0 }], ...extra,
  });
  let current = () => [job('running')];
  await page.route(/\/jobs$/, (route) => {
    if (route.request().method() !== 'GET') return route.continue();
    done += 10;
    return route.fulfill({ json: current() });
  });
  await page.reload();
  const r = page.locator(`tr[data-id="${'f'.repeat(32)}"]`);
  await r.locator('.delete').focus();
  // A selection in the row (the file name) while it updates.
  await page.evaluate(() => {
    const range = document.createRange();
    range.selectNodeContents(document.querySelector('tr[data-id] strong'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  });
  const before = await r.locator('.done').innerText();
  await page.waitForFunction((b) => document.querySelector('tr[data-id] .done').textContent !== b, before);
  eq(await page.evaluate(() => document.activeElement.className), 'delete', 'focus after an update');
  eq(await page.evaluate(() => getSelection().toString()), 'big.csv', 'selection after an update');
  assert(/left about \d/.test(await r.locator('.done').innerText()), 'time left of a running job');
  current = () => [job('publishing', { total_rows: null, rows_done: 7 })];
  await page.waitForSelector('tr[data-id] .state-publishing');
  eq(await r.locator('.job-progress').evaluate((b) => b.position), -1, 'publishing bar is indeterminate');
  current = () => [job('paused', { message: 'provider down, next try 14:05:10' })];
  await page.waitForSelector('tr[data-id] .state-paused:has-text("provider down, next try 14:05:10")');
  // 25 finished jobs: 20 a page.
  const many = Array.from({ length: 25 }, (_, i) => ({
    ...job('done'), id: String(i).padStart(32, '0'), label: `f${i}.csv`, created_ms: 1e12 + i,
    rows_done: 1000, rows_failed: 7, status_counts: { ok: 900, no_result: 93, error: 7 },
  }));
  current = () => many;
  await page.reload();
  await page.waitForSelector('#pager:not([hidden])');
  // A done job's rows per status: ok, no result, errors.
  eq(await page.locator('#jobs tr .counts').first().innerText(), 'ok 900\nno result 93\nerrors 7', 'counts per status');
  eq(await page.locator('#jobs tr').count(), 20, 'first page');
  await page.click('#next');
  eq(await page.locator('#jobs tr').count(), 5, 'second page');
  eq(await page.locator('#jobs tr strong').first().innerText(), 'f4.csv', 'older jobs on page 2');
  await page.unroute(/\/jobs$/);
});

await check('server down: a notice, no endless "uploading", recovery when it returns', async () => {
  await page.unrouteAll({ behavior: 'ignoreErrors' }); // Whatever a failed check left.
  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  await page.setInputFiles('#file', { name: 'stores_wgs84.csv', mimeType: 'text/csv', buffer: sample('stores_wgs84.csv') });
  await page.waitForSelector('#crs-guess');
  const server = (url) => url.origin === BASE;
  await page.route(server, (route) => route.abort('connectionrefused'));
  await page.click('#submit');
  await page.waitForSelector('#offline', { state: 'visible' });
  await page.waitForSelector('#submit:enabled');
  assert(!/Uploading/.test(await text('#status')), 'still "uploading" while the server is down');
  await page.unroute(server);
  await page.waitForSelector('#offline', { state: 'hidden', timeout: DEADLINE_MS });
  await page.waitForSelector('#status:has-text("back")');
});

await check('axe-core: no serious or critical violations (English, wide)', async () => {
  const found = await axe(page, 'wide-en');
  eq(found, [], 'violations');
});

await check('Korean at 390 px: labels, no sideways scrolling, switch to English', async () => {
  const { page: ko, context } = await openPage(browser, { locale: 'ko-KR', viewport: { width: 390, height: 844 } });
  eq(await ko.locator('#jobs-h').innerText(), '작업', 'Korean heading');
  eq(await ko.getAttribute('html', 'lang'), 'ko', 'html lang');
  eq(await ko.locator('label[for=opt-from]').innerText(), '원본 좌표계', 'Korean field label');
  const width = await ko.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 390, `page is ${width} px wide at 390`);
  await screenshot(ko, 'phone-390-ko');
  eq(await axe(ko, 'phone-390-ko'), [], 'violations in Korean at 390 px');
  await ko.selectOption('#lang', 'en');
  eq(await ko.locator('#jobs-h').innerText(), 'Jobs', 'switched to English');
  await context.close();
});

if (process.env.GEOBATCH_TOKEN_URL) {
  await check('with an API token: the page loads, asks for the token once, then works', async () => {
    const base = process.env.GEOBATCH_TOKEN_URL;
    const context = await browser.newContext();
    const p = await context.newPage();
    p.setDefaultTimeout(DEADLINE_MS);
    let asked = 0;
    p.on('dialog', (d) => { asked++; d.accept(process.env.GEOBATCH_TOKEN); });
    await p.goto(base + '/');
    await p.waitForSelector('body[data-ready=true]');
    eq(asked, 1, 'token prompts');
    assert(await p.locator('#opt-from').count() === 1, 'the fields came from GET /options with the token');
    await p.setInputFiles('#file', { name: 'stores_wgs84.csv', mimeType: 'text/csv', buffer: sample('stores_wgs84.csv') });
    await p.waitForSelector('#crs-guess:has-text("EPSG:4326")');
    const response = p.waitForResponse((r) => r.url() === base + '/jobs' && r.request().method() === 'POST');
    await p.click('#submit');
    eq((await response).status(), 202, 'upload with the token');
    eq(asked, 1, 'token prompts after the upload');
    await context.close();
  });
}

await browser.close();
finish();
