//! Everything that can be wrong with a job's input and options, found before it is accepted.

use std::path::Path;

use super::{list, open, IntakeError, Layout};
use crate::job::Epsg;
use crate::options::JobOptions;

/// What users are told when a projected file comes without its CRS.
pub const LIKELY_KOREAN_CRS: &str = "EPSG:5174 (Korean 1985 Modified Central Belt, LOCALDATA), \
     EPSG:2097 (Korean 1985 Central Belt), EPSG:5181 (KGD2002 Central Belt), \
     EPSG:5186 (KGD2002 Central Belt 2010), EPSG:5179 (KGD2002 Unified CS, UTM-K)";

/// Records looked at to decide whether values are plainly longitude/latitude.
const SAMPLE_RECORDS: usize = 10_000;

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
    #[error("no input file")]
    NoInput,
}

impl InspectError {
    /// Which job option the error is about, if one is.
    pub fn option(&self) -> Option<&'static str> {
        match self {
            InspectError::Intake(e) => e.option(),
            InspectError::SheetByMissing { .. } => Some("sheet_by"),
            InspectError::SourceCrsNeeded { .. } => Some("from"),
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
        if detected.is_none() {
            detected = detect_geographic(&mut *source, &layout, label)?;
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

/// With no `from`, only plainly geographic values may default to EPSG:4326: Korean TM
/// variants sit hundreds of metres apart, so we never guess between them.
fn detect_geographic(
    source: &mut dyn super::RecordSource,
    layout: &Layout,
    label: &str,
) -> Result<Option<Epsg>, InspectError> {
    let mut seen = 0;
    while let Some(record) = source.next_record() {
        let record = record?;
        seen += 1;
        if seen > SAMPLE_RECORDS {
            break;
        }
        let Some(table) = layout.tables.get(record.table as usize) else {
            continue;
        };
        if let Ok((x, y)) = super::point_of(&record, table) {
            if x.abs() <= 180.0 && y.abs() <= 90.0 {
                tracing::info!(
                    "{label}: coordinates look like longitude/latitude; using EPSG:4326"
                );
                return Ok(Some(Epsg::WGS84));
            }
            return Err(InspectError::SourceCrsNeeded {
                file: label.to_string(),
                line: record.line,
                x: record.text(table.x),
                y: record.text(table.y),
            });
        }
    }
    Ok(None)
}
