//! `POST /jobs/preview`: a dry run on the first rows of an upload, with the same fields as
//! `POST /jobs` and the same detection code as a job: what was detected (encoding, delimiter,
//! sheets, headers, x/y columns), the source CRS guessed (or the likely ones), and the first
//! rows converted to longitude/latitude. Nothing is kept: the files are removed after.

use std::path::PathBuf;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{upload, ApiError, AppState};
use crate::convert::crs::{Crs, Transform};
use crate::intake::{self, RecordSource};
use crate::job::{Epsg, JobId};
use crate::options::JobOptions;
use crate::pipeline::JobError;

/// Rows read and shown per file.
pub const PREVIEW_ROWS: usize = 10;
/// Columns shown of a row (the headers are all listed, up to [`MAX_HEADERS`]).
const MAX_CELLS: usize = 40;
/// Headers listed per table.
const MAX_HEADERS: usize = 500;
/// Tables (worksheets) listed per file.
const MAX_TABLES: usize = 100;
/// Characters of a cell or header shown.
const MAX_CELL_CHARS: usize = 200;
/// The projected CRSs Korean open data comes in, offered when the values are not lon/lat.
pub const LIKELY_CODES: [u32; 5] = [5174, 2097, 5181, 5186, 5179];

#[derive(Serialize)]
pub(super) struct Preview {
    files: Vec<FilePreview>,
    crs: CrsGuess,
}

#[derive(Serialize)]
struct FilePreview {
    label: String,
    format: String,
    encoding: Option<String>,
    delimiter: Option<String>,
    tables: Vec<TablePreview>,
    rows: Vec<RowPreview>,
}

#[derive(Serialize)]
struct TablePreview {
    name: String,
    headers: Vec<String>,
    header_line: u64,
    x: String,
    y: String,
    /// Geocoding: the address columns (joined with spaces), then the parcel alternative.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    address: Vec<String>,
}

#[derive(Serialize)]
struct RowPreview {
    table: u32,
    line: u64,
    cells: Vec<String>,
    x: Option<f64>,
    y: Option<f64>,
    lon: Option<f64>,
    lat: Option<f64>,
    /// Geocoding: the address as it will be cleaned and asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct CrsGuess {
    /// The source CRS the rows were converted from: given, or plainly lon/lat.
    used: Option<String>,
    reason: String,
    /// Codes whose area holds the first readable point, when the values are projected.
    likely: Vec<CrsChoice>,
}

#[derive(Serialize)]
struct CrsChoice {
    code: String,
    name: &'static str,
}

pub(super) async fn preview(
    State(st): State<AppState>,
    request: Request,
) -> Result<Json<Preview>, ApiError> {
    let id = JobId::random();
    let dir = st.pipeline.upload_dir(&id);
    let received = upload::receive(&st, &id, &dir, request).await;
    let result = match received {
        Ok((inputs, fields)) => match upload::job_options(&st, &fields) {
            Ok(options) => {
                let files: Vec<(String, PathBuf)> =
                    inputs.into_iter().map(|i| (i.label, i.path)).collect();
                tokio::task::spawn_blocking(move || read_preview(&files, &options))
                    .await
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                    .and_then(|r| r)
            }
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result.map(Json)
}

fn intake_error(e: intake::IntakeError) -> ApiError {
    JobError::Input(e.into()).into()
}

fn short(s: &str) -> String {
    s.chars().take(MAX_CELL_CHARS).collect()
}

fn read_preview(files: &[(String, PathBuf)], options: &JobOptions) -> Result<Preview, ApiError> {
    let mut out = Vec::new();
    let mut points = Vec::new();
    for (label, path) in files {
        let mut source = intake::open(path, label, &options.read).map_err(intake_error)?;
        let layout = source.layout().clone();
        let rows = first_rows(&mut *source, &layout, &mut points)?;
        let reader = |key: &str| layout.reader.get(key).cloned();
        out.push(FilePreview {
            label: label.clone(),
            format: layout.format.clone(),
            encoding: reader("encoding").and_then(|e| e.as_str().map(String::from)),
            delimiter: reader("delimiter")
                .and_then(|d| d.as_u64())
                .and_then(|d| u8::try_from(d).ok())
                .map(|d| match d {
                    b'\t' => "tab".to_string(),
                    d => (d as char).to_string(),
                }),
            tables: layout
                .tables
                .iter()
                .take(MAX_TABLES)
                .map(|t| TablePreview {
                    name: short(&t.name),
                    headers: t
                        .headers
                        .iter()
                        .take(MAX_HEADERS)
                        .map(|h| short(h))
                        .collect(),
                    header_line: t.header_line,
                    // A geocoding table has no x/y columns (their indexes mean nothing).
                    x: if t.address.is_none() {
                        short(t.x_name())
                    } else {
                        String::new()
                    },
                    y: if t.address.is_none() {
                        short(t.y_name())
                    } else {
                        String::new()
                    },
                    address: t
                        .address
                        .iter()
                        .flat_map(|a| {
                            a.columns
                                .iter()
                                .chain(&a.alternative)
                                .map(|&i| short(t.headers.get(i).map_or("", String::as_str)))
                        })
                        .collect(),
                })
                .collect(),
            rows,
        });
    }
    let crs = if options.read.geocode.is_some() {
        CrsGuess {
            used: None,
            reason: "geocoding: the providers give the positions".into(),
            likely: Vec::new(),
        }
    } else {
        guess_crs(options.from, &points)
    };
    if let Some(used) = crs.used.as_deref().and_then(|c| Epsg::parse(c).ok()) {
        convert_rows(&mut out, used);
    }
    Ok(Preview { files: out, crs })
}

fn first_rows(
    source: &mut dyn RecordSource,
    layout: &intake::Layout,
    points: &mut Vec<(f64, f64)>,
) -> Result<Vec<RowPreview>, ApiError> {
    let mut rows = Vec::new();
    while rows.len() < PREVIEW_ROWS {
        let Some(record) = source.next_record() else {
            break;
        };
        let record = record.map_err(intake_error)?;
        let Some(table) = layout.tables.get(record.table as usize) else {
            continue;
        };
        let cells = (0..record.fields.len().min(MAX_CELLS))
            .map(|i| short(&record.text(i)))
            .collect();
        let bad = |bad: intake::BadCell| Some(short(&format!("{}: {}", bad.column, bad.reason)));
        let (x, y, address, error) = if table.address.is_some() {
            match intake::address_of(&record, table) {
                Ok(a) => (None, None, Some(short(&a.text)), None),
                Err(e) => (None, None, None, bad(e)),
            }
        } else {
            match intake::point_of(&record, table) {
                Ok((x, y)) => {
                    points.push((x, y));
                    (Some(x), Some(y), None, None)
                }
                Err(e) => (None, None, None, bad(e)),
            }
        };
        rows.push(RowPreview {
            table: record.table,
            line: record.line,
            cells,
            x,
            y,
            lon: None,
            lat: None,
            address,
            error,
        });
    }
    Ok(rows)
}

/// The CRS given, else EPSG:4326 when every readable value is lon/lat-sized (as a job
/// decides); and, when the values are projected, the likely Korean CRSs whose area holds the
/// first point (to pick from, or to compare with the one given).
fn guess_crs(given: Option<Epsg>, points: &[(f64, f64)]) -> CrsGuess {
    let lon_lat = points
        .iter()
        .all(|(x, y)| x.abs() <= 180.0 && y.abs() <= 90.0);
    let likely = match points.first() {
        Some(&(x, y)) if !lon_lat => likely_codes(x, y),
        _ => Vec::new(),
    };
    let (used, reason) = match (given, points.is_empty()) {
        (Some(crs), _) => (Some(crs.to_string()), "given"),
        (None, true) => (None, "no readable coordinates in the first rows"),
        (None, false) if lon_lat => (
            Some(Epsg::WGS84.to_string()),
            "the values are longitude/latitude",
        ),
        (None, false) => (
            None,
            "the values are projected coordinates; choose the file's CRS",
        ),
    };
    CrsGuess {
        used,
        reason: reason.into(),
        likely,
    }
}

fn likely_codes(x: f64, y: f64) -> Vec<CrsChoice> {
    let wgs84 = Crs::from_epsg(Epsg::WGS84).expect("EPSG:4326 is builtin");
    LIKELY_CODES
        .iter()
        .filter_map(|&code| {
            let crs = Crs::from_epsg(Epsg::new(code)).ok()?;
            Transform::new(crs, wgs84).convert(x, y).ok()?;
            Some(CrsChoice {
                code: Epsg::new(code).to_string(),
                name: crs.name(),
            })
        })
        .collect()
}

fn convert_rows(files: &mut [FilePreview], from: Epsg) {
    let (Ok(from), Ok(to)) = (Crs::from_epsg(from), Crs::from_epsg(Epsg::WGS84)) else {
        return;
    };
    let transform = Transform::new(from, to);
    for row in files.iter_mut().flat_map(|f| f.rows.iter_mut()) {
        if let (Some(x), Some(y)) = (row.x, row.y) {
            match transform.convert(x, y) {
                Ok((lon, lat)) => (row.lon, row.lat) = (Some(lon), Some(lat)),
                Err(e) => row.error = Some(short(&e.to_string())),
            }
        }
    }
}
