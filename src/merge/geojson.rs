//! GeoJSON (RFC 7946): one FeatureCollection, a feature per row with its sheet in a `sheet`
//! property, always WGS 84 lon/lat whatever the target CRS (the stored target position is
//! converted back with the builtin transform), numbers at full precision, rows without a
//! position with `"geometry": null`. Streamed to disk feature by feature.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{partial_path, unique_names, MergeError, MergedRow, OutValue, OutputPlan};
use super::{ResultWriter, Summary};
use crate::convert::crs::{Crs, Transform};
use crate::job::Cell;

pub(super) fn create(
    path: &Path,
    plan: &OutputPlan<'_>,
) -> Result<Box<dyn ResultWriter>, MergeError> {
    let to_wgs84 = match plan.target.epsg {
        4326 => None,
        code => {
            let crs = Crs::from_code(&code.to_string()).map_err(|e| {
                MergeError::Inconsistent(format!(
                    "GeoJSON is WGS 84 lon/lat, and the positions are in EPSG:{code}: {e}"
                ))
            })?;
            Some(Transform::new(
                crs,
                Crs::from_code("4326").expect("builtin"),
            ))
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| MergeError::io(dir, e))?;
    }
    let partial = partial_path(path);
    let file = File::create(&partial).map_err(|e| MergeError::io(&partial, e))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[")
        .map_err(|e| MergeError::io(&partial, e))?;
    let sheets = plan
        .sheets
        .iter()
        .map(|s| {
            let keys = unique_names(
                s.headers.iter().chain(&s.new_columns).cloned(),
                "field",
                vec!["sheet".into()],
            );
            // Keys and the sheet name as JSON text, once.
            let keys = keys.iter().map(|k| json_text(k)).collect();
            (json_text(&s.name), keys, s.headers.len())
        })
        .collect();
    Ok(Box::new(GeoJsonWriter {
        out,
        output: path.to_path_buf(),
        partial,
        to_wgs84,
        sheets,
        first: true,
    }))
}

struct GeoJsonWriter {
    out: BufWriter<File>,
    output: PathBuf,
    partial: PathBuf,
    to_wgs84: Option<Transform>,
    /// Per sheet: its name and property keys as JSON text, and how many are the input's.
    sheets: Vec<(String, Vec<String>, usize)>,
    first: bool,
}

fn json_text(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn number(n: f64) -> String {
    match n.is_finite() {
        true => Value::from(n).to_string(),
        false => "null".to_string(),
    }
}

impl GeoJsonWriter {
    fn feature(&self, row: &MergedRow<'_>) -> String {
        let (name, keys, inputs) = &self.sheets[row.sheet];
        let lonlat = row.position.and_then(|(x, y)| match &self.to_wgs84 {
            None => Some((x, y)),
            Some(t) => match t.convert(x, y) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(line = row.line, "no WGS 84 position for GeoJSON: {e}");
                    None
                }
            },
        });
        let mut f = String::with_capacity(256);
        f.push_str(if self.first { "\n" } else { ",\n" });
        f.push_str("{\"type\":\"Feature\",\"geometry\":");
        match lonlat {
            Some((lon, lat)) => {
                f.push_str("{\"type\":\"Point\",\"coordinates\":[");
                f.push_str(&number(lon));
                f.push(',');
                f.push_str(&number(lat));
                f.push_str("]}");
            }
            None => f.push_str("null"),
        }
        f.push_str(",\"properties\":{\"sheet\":");
        f.push_str(name);
        for (i, key) in keys.iter().enumerate() {
            f.push(',');
            f.push_str(key);
            f.push(':');
            let value = if i < *inputs {
                match row.cells.get(i) {
                    None | Some(Cell::Empty) => "null".to_string(),
                    Some(Cell::Number(n)) => number(*n),
                    Some(Cell::Bool(b)) => b.to_string(),
                    Some(Cell::Text(s) | Cell::Date(s)) => json_text(s),
                }
            } else {
                match row.values.get(i - inputs) {
                    None | Some(OutValue::Empty) => "null".to_string(),
                    Some(OutValue::Number(n)) => number(*n),
                    Some(OutValue::Text(s)) => json_text(s),
                }
            };
            f.push_str(&value);
        }
        f.push_str("}}");
        f
    }
}

impl ResultWriter for GeoJsonWriter {
    fn row(&mut self, row: &MergedRow<'_>) -> Result<(), MergeError> {
        let feature = self.feature(row);
        self.first = false;
        self.out
            .write_all(feature.as_bytes())
            .map_err(|e| MergeError::io(&self.partial, e))
    }

    fn finish(mut self: Box<Self>, _summary: &Summary) -> Result<(), MergeError> {
        let partial = self.partial.clone();
        let io = |e| MergeError::io(&partial, e);
        self.out.write_all(b"\n]}\n").map_err(io)?;
        self.out.flush().map_err(io)?;
        self.out.get_ref().sync_all().map_err(io)?;
        std::fs::rename(&self.partial, &self.output).map_err(|e| MergeError::io(&self.output, e))
    }
}
