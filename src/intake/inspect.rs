//! Everything that can be wrong with a job's input and options, found before it is accepted.

use std::path::Path;

use super::{list, open, IntakeError, Layout};
use crate::convert::crs::Crs;
use crate::job::{Epsg, EXCEL_MAX_COLUMNS};
use crate::options::JobOptions;

/// What users are told when a projected file comes without its CRS.
pub const LIKELY_KOREAN_CRS: &str = "EPSG:5174 (Korean 1985 Modified Central Belt, LOCALDATA), \
     EPSG:2097 (Korean 1985 Central Belt), EPSG:5181 (KGD2002 Central Belt), \
     EPSG:5186 (KGD2002 Central Belt 2010), EPSG:5179 (KGD2002 Unified CS, UTM-K)";

/// Records looked at to decide whether values are plainly longitude/latitude.
const SAMPLE_RECORDS: usize = 10_000;
/// Readable points of a file's sample checked against the CRS it will use.
const SAMPLE_POINTS: usize = 100;

/// The columns geobatch adds after the input's: position (2), `status`, `error`.
const ADDED_COLUMNS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("{file}: no column {column:?} for option sheet_by; headers are: {headers}")]
    SheetByMissing {
        file: String,
        column: String,
        headers: String,
    },
    #[error(
        "{file}: line {line}: coordinates x={x}, y={y} are not longitude/latitude; set the \
         source CRS (option from), likely one of {LIKELY_KOREAN_CRS}"
    )]
    SourceCrsNeeded {
        file: String,
        line: u64,
        x: String,
        y: String,
    },
    #[error("{file}: line {line}: x={x}, y={y} {}", plainly_other(*.lon_lat, .crs))]
    PlainlyOtherCrs {
        file: String,
        line: u64,
        x: String,
        y: String,
        crs: Epsg,
        /// The values look like longitude/latitude (the CRS is projected), or not (it is
        /// geographic).
        lon_lat: bool,
    },
    #[error(
        "{file}: {table}{columns} columns, and geobatch adds {added}: more than the {max} \
         columns a worksheet holds; remove columns or split the file",
        max = EXCEL_MAX_COLUMNS
    )]
    TooManyColumns {
        file: String,
        table: String,
        columns: usize,
        added: usize,
    },
    #[error("no input file")]
    NoInput,
}

impl InspectError {
    /// Which job option the error is about, if one is.
    pub fn option(&self) -> Option<&'static str> {
        match self {
            InspectError::Intake(e) => e.option(),
            InspectError::SheetByMissing { .. } => Some("sheet_by"),
            InspectError::SourceCrsNeeded { .. } | InspectError::PlainlyOtherCrs { .. } => {
                Some("from")
            }
            InspectError::TooManyColumns { .. } => None,
            InspectError::NoInput => None,
        }
    }
}

/// What the input files are: their layouts, and the source CRS when it was not given but the
/// values are plainly longitude/latitude.
#[derive(Debug)]
pub struct Inspection {
    pub layouts: Vec<Layout>,
    pub detected: Option<Epsg>,
}

/// Opens every file (`(label, path)`) and checks the options against it. Blocking: reads files.
pub fn inspect(
    files: &[(String, &Path)],
    options: &JobOptions,
) -> Result<Inspection, InspectError> {
    if files.is_empty() {
        return Err(InspectError::NoInput);
    }
    let mut layouts = Vec::new();
    let mut detected = options.from;
    for (label, path) in files {
        let mut source = open(path, label, &options.read)?;
        let layout = source.layout().clone();
        if let Some(col) = &options.sheet_by {
            for table in &layout.tables {
                if super::find_given(&table.headers, col).is_none() {
                    return Err(InspectError::SheetByMissing {
                        file: label.clone(),
                        column: col.clone(),
                        headers: list(&table.headers),
                    });
                }
            }
        }
        let added = ADDED_COLUMNS
            + if options.lookup.is_some() {
                crate::lookup::REVERSE_FIELDS.len()
            } else if options.is_geocode() {
                crate::lookup::GEOCODE_COLUMNS.len()
            } else {
                0
            };
        for table in &layout.tables {
            if table.headers.len() + added > EXCEL_MAX_COLUMNS {
                return Err(InspectError::TooManyColumns {
                    file: label.clone(),
                    table: if layout.tables.len() > 1 {
                        format!("sheet {}: ", crate::job::quote_short(&table.name))
                    } else {
                        String::new()
                    },
                    columns: table.headers.len(),
                    added,
                });
            }
        }
        if options.is_geocode() {
            // Positions come from the addresses, in WGS84.
            detected = Some(Epsg::WGS84);
            layouts.push(layout);
            continue;
        }
        let sample = sample_points(&mut *source, &layout)?;
        if detected.is_none() {
            detected = detect_geographic(&sample, label)?;
        }
        if let Some(crs) = detected {
            check_sample(&sample, crs, label)?;
        }
        layouts.push(layout);
    }
    Ok(Inspection {
        layouts,
        detected: if options.from.is_some() {
            None
        } else {
            detected
        },
    })
}

/// A readable point of a file's sample: line, x and y as read, x and y.
struct SamplePoint {
    line: u64,
    x_text: String,
    y_text: String,
    x: f64,
    y: f64,
}

impl SamplePoint {
    fn lon_lat_sized(&self) -> bool {
        self.x.abs() <= 180.0 && self.y.abs() <= 90.0
    }
}

/// The first [`SAMPLE_POINTS`] readable points among the first [`SAMPLE_RECORDS`] records.
fn sample_points(
    source: &mut dyn super::RecordSource,
    layout: &Layout,
) -> Result<Vec<SamplePoint>, InspectError> {
    let mut points = Vec::new();
    let mut seen = 0;
    while let Some(record) = source.next_record() {
        let record = record?;
        seen += 1;
        if seen > SAMPLE_RECORDS || points.len() >= SAMPLE_POINTS {
            break;
        }
        let Some(table) = layout.tables.get(record.table as usize) else {
            continue;
        };
        if let Ok((x, y)) = super::point_of(&record, table) {
            let shown = |i| crate::job::quote_short(&record.text(i));
            points.push(SamplePoint {
                line: record.line,
                x_text: shown(table.x),
                y_text: shown(table.y),
                x,
                y,
            });
        }
    }
    Ok(points)
}

/// With no `from`, only plainly geographic values may default to EPSG:4326: Korean TM
/// variants sit hundreds of metres apart, so we never guess between them.
fn detect_geographic(sample: &[SamplePoint], label: &str) -> Result<Option<Epsg>, InspectError> {
    let Some(first) = sample.first() else {
        return Ok(None);
    };
    if first.lon_lat_sized() {
        tracing::info!("{label}: coordinates look like longitude/latitude; using EPSG:4326");
        return Ok(Some(Epsg::WGS84));
    }
    Err(InspectError::SourceCrsNeeded {
        file: label.to_string(),
        line: first.line,
        x: first.x_text.clone(),
        y: first.y_text.clone(),
    })
}

/// Values that plainly belong to another CRS than the one the file will use: every sampled
/// point lon/lat-sized under a projected CRS, or none under a geographic one. (A CRS the
/// builtin engine does not know is not checked.)
fn check_sample(sample: &[SamplePoint], crs: Epsg, label: &str) -> Result<(), InspectError> {
    let (Some(first), Ok(known)) = (sample.first(), Crs::from_epsg(crs)) else {
        return Ok(());
    };
    let lon_lat = sample.iter().filter(|p| p.lon_lat_sized()).count();
    let plainly_lon_lat = match (known.is_geographic(), lon_lat) {
        (true, 0) => false,
        (false, n) if n == sample.len() => true,
        _ => return Ok(()),
    };
    Err(InspectError::PlainlyOtherCrs {
        file: label.to_string(),
        line: first.line,
        x: first.x_text.clone(),
        y: first.y_text.clone(),
        crs,
        lon_lat: plainly_lon_lat,
    })
}

/// The rest of a [`InspectError::PlainlyOtherCrs`] message.
fn plainly_other(lon_lat: bool, crs: &Epsg) -> String {
    if lon_lat {
        format!(
            "look like longitude/latitude (so does every value sampled), not {crs} coordinates; \
             set option from to the file's CRS (EPSG:4326 for longitude/latitude)"
        )
    } else {
        format!(
            "are not longitude/latitude (nor is any value sampled), so not {crs}; set option \
             from to the file's CRS, likely one of {LIKELY_KOREAN_CRS}"
        )
    }
}
