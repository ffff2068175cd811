// Labels in English and Korean: the browser's language decides, the switch (kept in this
// browser) overrides. Elements with data-i18n get their text, data-i18n-aria their name.
const LABELS = {
  en: {
    language: 'Language',
    offline: 'The server cannot be reached. Retrying…',
    back: 'The server is back.',
    intro: 'Upload CSV files or workbooks with x/y coordinates; get them back converted (Excel, GeoPackage, GeoJSON, CSV).',
    newJob: 'New job', files: 'CSV or workbook files', dropHint: '…or drop files here.',
    preview: 'Preview', run: 'Run', jobs: 'Jobs', map: 'Map',
    colJob: 'Job', colState: 'State', colProgress: 'Progress', colRows: 'Rows', colActions: 'Actions',
    prev: 'Newer', next: 'Older', pageOf: 'page {n} of {of}',
    chooseFiles: 'Choose or drop at least one file.',
    uploading: 'Uploading… {pct}%', accepted: 'Accepted: job {id}.',
    previewing: 'Reading the first rows…', previewFailed: 'Preview failed: {msg}',
    detected: 'Detected', encoding: 'encoding', delimiter: 'delimiter', sheets: 'sheets',
    crsGuess: 'Source CRS: {crs} ({reason})', crsUnknown: 'Source CRS not known: {reason}. Pick one below; the positions show whether it is right.',
    lon: 'lon', lat: 'lat', line: 'line', problem: 'problem',
    ok: 'ok', errors: 'errors', status_no_result: 'no result', status_ambiguous: 'ambiguous', of: 'of', created: 'created', left: 'left about {t}',
    download: 'Download {fmt} of {job}', delete: 'Delete', deleteJob: 'Delete job {job}',
    confirmDelete: 'Delete job {job} and its results?', deleted: 'Job {job} deleted.',
    retry: 'Retry failed rows', retryJob: 'Retry the failed rows of {job}', retried: 'Retrying {n} rows of {job}.',
    showMap: 'Map', showMapJob: 'Show {job} on the map',
    progressOf: 'Progress of {job}', progressSheet: 'Progress of sheet {sheet} of {job}',
    publishing: 'reading the file…',
    mapSummary: '{n} points of {job}; {e} rows without a position.',
    errorRows: 'Rows without a position', noErrors: 'Every row has a position.',
    state_accepted: 'accepted', state_publishing: 'reading', state_running: 'running', state_merging: 'writing results',
    state_done: 'done', state_failed: 'failed', state_paused: 'paused',
    opt_from: 'From CRS', opt_to: 'To CRS', opt_x: 'X column', opt_y: 'Y column', opt_sheet_by: 'One sheet per value of',
    opt_encoding: 'Encoding', opt_delimiter: 'Delimiter', opt_sheets: 'Worksheets', opt_header_row: 'Header row',
    opt_engine: 'Engine', opt_lookup: 'Address lookup', opt_rate: 'Requests per second', opt_daily_quota: 'Requests per day',
    opt_cache_ttl: 'Cache seconds', opt_template: 'Lookup template', opt_format: 'Output formats',
    opt_geocode: 'Address columns (geocoding)', opt_providers: 'Geocoding providers, in order',
    moreOptions: 'More options',
    auto: '(detect)', none: '(none)', chooseCrs: '(choose the file’s CRS)', off: 'off',
    tokenPrompt: 'This geobatch needs its API token:',
  },
  ko: {
    language: '언어',
    offline: '서버에 연결할 수 없습니다. 다시 시도하는 중…',
    back: '서버에 다시 연결되었습니다.',
    intro: '좌표(x/y)가 있는 CSV 파일이나 통합문서를 올리면 변환된 결과(Excel, GeoPackage, GeoJSON, CSV)를 받습니다.',
    newJob: '새 작업', files: 'CSV 또는 통합문서 파일', dropHint: '…또는 여기에 파일을 끌어다 놓으세요.',
    preview: '미리보기', run: '실행', jobs: '작업', map: '지도',
    colJob: '작업', colState: '상태', colProgress: '진행', colRows: '행', colActions: '동작',
    prev: '최근', next: '이전', pageOf: '{of}쪽 중 {n}쪽',
    chooseFiles: '파일을 하나 이상 고르거나 끌어다 놓으세요.',
    uploading: '올리는 중… {pct}%', accepted: '접수됨: 작업 {id}.',
    previewing: '첫 행을 읽는 중…', previewFailed: '미리보기 실패: {msg}',
    detected: '감지됨', encoding: '인코딩', delimiter: '구분자', sheets: '시트',
    crsGuess: '원본 좌표계: {crs} ({reason})', crsUnknown: '원본 좌표계를 알 수 없습니다: {reason}. 아래에서 고르면 위치로 맞는지 확인할 수 있습니다.',
    lon: '경도', lat: '위도', line: '줄', problem: '문제',
    ok: '성공', errors: '오류', status_no_result: '결과 없음', status_ambiguous: '모호함', of: '/', created: '생성', left: '약 {t} 남음',
    download: '{job}의 {fmt} 내려받기', delete: '삭제', deleteJob: '작업 {job} 삭제',
    confirmDelete: '작업 {job}과 결과를 삭제할까요?', deleted: '작업 {job}을 삭제했습니다.',
    retry: '실패한 행 재시도', retryJob: '{job}의 실패한 행 재시도', retried: '{job}의 {n}개 행을 다시 시도합니다.',
    showMap: '지도', showMapJob: '{job}을 지도에 표시',
    progressOf: '{job} 진행', progressSheet: '{job}의 시트 {sheet} 진행',
    publishing: '파일을 읽는 중…',
    mapSummary: '{job}의 점 {n}개, 위치가 없는 행 {e}개.',
    errorRows: '위치가 없는 행', noErrors: '모든 행에 위치가 있습니다.',
    state_accepted: '접수됨', state_publishing: '읽는 중', state_running: '실행 중', state_merging: '결과 쓰는 중',
    state_done: '완료', state_failed: '실패', state_paused: '일시 정지',
    opt_from: '원본 좌표계', opt_to: '대상 좌표계', opt_x: 'X 열', opt_y: 'Y 열', opt_sheet_by: '값마다 시트 나누기',
    opt_encoding: '인코딩', opt_delimiter: '구분자', opt_sheets: '워크시트', opt_header_row: '머리글 행',
    opt_engine: '엔진', opt_lookup: '주소 조회', opt_rate: '초당 요청 수', opt_daily_quota: '하루 요청 수',
    opt_cache_ttl: '캐시 초', opt_template: '조회 템플릿', opt_format: '결과 형식',
    opt_geocode: '주소 열 (지오코딩)', opt_providers: '지오코딩 제공자 (순서대로)',
    moreOptions: '옵션 더 보기',
    auto: '(자동 감지)', none: '(없음)', chooseCrs: '(파일의 좌표계 선택)', off: '사용 안 함',
    tokenPrompt: '이 geobatch는 API 토큰이 필요합니다:',
  },
};

const listeners = [];
let lang = pick();

function pick() {
  const chosen = localStorage.getItem('geobatch_lang');
  if (chosen && LABELS[chosen]) return chosen;
  return (navigator.language || 'en').toLowerCase().startsWith('ko') ? 'ko' : 'en';
}

/** The label `key` in the page's language, `{name}` replaced from `vars`. */
export function t(key, vars = {}) {
  const text = LABELS[lang][key] ?? LABELS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

/** Whether a label exists (options without one show their own name). */
export function has(key) { return key in LABELS.en; }

export function language() { return lang; }

/** Calls `fn` after every change of language. */
export function onLanguage(fn) { listeners.push(fn); }

export function apply() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
}

export function setupSwitch(select) {
  select.value = localStorage.getItem('geobatch_lang') || '';
  select.addEventListener('change', () => {
    if (select.value) localStorage.setItem('geobatch_lang', select.value);
    else localStorage.removeItem('geobatch_lang');
    lang = pick();
    apply();
    for (const fn of listeners) fn();
  });
  apply();
}
