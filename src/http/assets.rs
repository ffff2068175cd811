//! The page's static files, compiled into the binary: `GET /` and `GET /assets/{name}`.
//! Leaflet (`leaflet.js`, `leaflet.css`) is copied from the npm package `leaflet` (BSD-2-Clause,
//! `assets/LEAFLET-LICENSE`; the version is pinned in `tests/browser/package.json`), so the page
//! needs no CDN.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("page.css", CSS, include_str!("assets/page.css")),
    ("app.js", JS, include_str!("assets/app.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("i18n.js", JS, include_str!("assets/i18n.js")),
    ("form.js", JS, include_str!("assets/form.js")),
    ("preview.js", JS, include_str!("assets/preview.js")),
    ("jobs.js", JS, include_str!("assets/jobs.js")),
    ("map.js", JS, include_str!("assets/map.js")),
    ("leaflet.js", JS, include_str!("assets/leaflet.js")),
    ("leaflet.css", CSS, include_str!("assets/leaflet.css")),
];

pub(super) async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
