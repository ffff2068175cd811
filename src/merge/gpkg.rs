//! The GeoPackage (OGC 1.3): one feature table (layer) per sheet, written through sqlx's
//! SQLite. Input columns are TEXT exactly as read (`03171` keeps its zero), the position
//! columns REAL, `geom` a point in GeoPackage binary with its envelope (NULL for rows without a
//! position). Rows go in batches of multi-row prepared INSERTs inside one transaction; the
//! R-tree index is filled at the end and its triggers created then, as GDAL does.

use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::runtime::Handle;

use super::{
    partial_path, unique_names, MergeError, MergedRow, OutValue, OutputPlan, ResultWriter, Summary,
};
use crate::convert::crs::Crs;
use crate::job::Cell;

/// SQLite's limit of bound values in one statement.
const MAX_VARIABLES: usize = 32_766;
/// Rows in one INSERT at most.
const MAX_BATCH_ROWS: usize = 500;
/// `PRAGMA application_id` of a GeoPackage: "GPKG".
const APPLICATION_ID: i32 = 0x4750_4B47;
/// `PRAGMA user_version` of GeoPackage 1.3.0.
const USER_VERSION: i32 = 10_300;

pub(super) fn create(
    path: &Path,
    plan: &OutputPlan<'_>,
) -> Result<Box<dyn ResultWriter>, MergeError> {
    let handle = Handle::current();
    let output = path.to_path_buf();
    let partial = partial_path(path);
    let _ = std::fs::remove_file(&partial);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| MergeError::io(dir, e))?;
    }
    let srs = plan.target.epsg as i32;
    let wkt = Crs::from_code(&plan.target.epsg.to_string())
        .map(|c| c.wkt())
        .unwrap_or_else(|_| "undefined".to_string());
    let layers = layer_names(plan.sheets.iter().map(|s| s.name.as_str()));
    let mut tables = Vec::new();
    for (spec, name) in plan.sheets.iter().zip(layers) {
        let columns = unique_columns(spec.headers.iter().chain(&spec.new_columns));
        let types: Vec<&str> = (0..columns.len())
            .map(|i| {
                let new = i.checked_sub(spec.headers.len());
                if matches!(new, Some(0 | 1)) {
                    "REAL"
                } else {
                    "TEXT"
                }
            })
            .collect();
        let x_col = columns[spec.headers.len()].clone();
        let y_col = columns[spec.headers.len() + 1].clone();
        tables.push(Layer {
            name,
            columns,
            types,
            headers: spec.headers.len(),
            x_col,
            y_col,
            pending: Vec::new(),
            bounds: None,
        });
    }
    let conn = handle.block_on(async {
        let options = SqliteConnectOptions::new()
            .filename(&partial)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Off)
            .synchronous(SqliteSynchronous::Off)
            // Filling the R-tree of a million points is one long statement, not a problem.
            .disable_statement_logging();
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let mut ddl = format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {USER_VERSION};
             BEGIN;
             {SCHEMA}
             INSERT INTO gpkg_spatial_ref_sys VALUES
               ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined', 'undefined cartesian coordinate reference system'),
               ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', 'undefined geographic coordinate reference system'),
               ('WGS 84 geodetic', 4326, 'EPSG', 4326, {wgs84}, 'longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid');",
            wgs84 = sql_text(&Crs::from_code("4326").expect("builtin").wkt()),
        );
        if srs != 4326 {
            ddl.push_str(&format!(
                "INSERT INTO gpkg_spatial_ref_sys VALUES ({name}, {srs}, 'EPSG', {srs}, {wkt}, NULL);",
                name = sql_text(&plan.target.name),
                wkt = sql_text(&wkt),
            ));
        }
        for t in &tables {
            let columns: Vec<String> = t
                .columns
                .iter()
                .zip(&t.types)
                .map(|(c, ty)| format!("{} {ty}", ident(c)))
                .collect();
            ddl.push_str(&format!(
                "CREATE TABLE {table} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom POINT, {columns});
                 INSERT INTO gpkg_contents (table_name, data_type, identifier, srs_id)
                   VALUES ({name}, 'features', {name}, {srs});
                 INSERT INTO gpkg_geometry_columns VALUES ({name}, 'geom', 'POINT', {srs}, 0, 0);
                 INSERT INTO gpkg_extensions VALUES ({name}, 'geom', 'gpkg_rtree_index',
                   'http://www.geopackage.org/spec120/#extension_rtree', 'write-only');",
                table = ident(&t.name),
                name = sql_text(&t.name),
                columns = columns.join(", "),
            ));
        }
        sqlx::raw_sql(&ddl).execute(&mut conn).await?;
        Ok::<_, sqlx::Error>(conn)
    })?;
    Ok(Box::new(GpkgWriter {
        handle,
        conn: Some(conn),
        output,
        partial,
        srs,
        layers: tables,
    }))
}

/// One layer while it is written.
struct Layer {
    name: String,
    columns: Vec<String>,
    types: Vec<&'static str>,
    /// How many of the columns are the input's.
    headers: usize,
    x_col: String,
    y_col: String,
    /// Rows waiting for the next INSERT: the geometry and the column values.
    pending: Vec<(Option<Vec<u8>>, Vec<Value>)>,
    /// min x, min y, max x, max y of the points.
    bounds: Option<[f64; 4]>,
}

impl Layer {
    fn batch_rows(&self) -> usize {
        (MAX_VARIABLES / (self.columns.len() + 1)).clamp(1, MAX_BATCH_ROWS)
    }
}

enum Value {
    Null,
    Real(f64),
    Text(String),
}

struct GpkgWriter {
    handle: Handle,
    conn: Option<SqliteConnection>,
    output: PathBuf,
    partial: PathBuf,
    srs: i32,
    layers: Vec<Layer>,
}

impl GpkgWriter {
    fn flush(&mut self, layer: usize) -> Result<(), MergeError> {
        let t = &mut self.layers[layer];
        if t.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut t.pending);
        let one = format!("(?{})", ", ?".repeat(t.columns.len()));
        let sql = format!(
            "INSERT INTO {} (geom, {}) VALUES {}",
            ident(&t.name),
            t.columns
                .iter()
                .map(|c| ident(c))
                .collect::<Vec<_>>()
                .join(", "),
            vec![one; rows.len()].join(", ")
        );
        let conn = self.conn.as_mut().expect("open until finish");
        self.handle.block_on(async {
            let mut q = sqlx::query(&sql);
            for (geom, values) in rows {
                q = q.bind(geom);
                for v in values {
                    q = match v {
                        Value::Null => q.bind(None::<String>),
                        Value::Real(n) => q.bind(n),
                        Value::Text(s) => q.bind(s),
                    };
                }
            }
            q.execute(&mut *conn).await
        })?;
        Ok(())
    }
}

impl ResultWriter for GpkgWriter {
    fn row(&mut self, row: &MergedRow<'_>) -> Result<(), MergeError> {
        let t = &mut self.layers[row.sheet];
        let mut values = Vec::with_capacity(t.columns.len());
        for i in 0..t.headers {
            values.push(match row.cells.get(i) {
                None | Some(Cell::Empty) => Value::Null,
                Some(c) => Value::Text(c.as_text().into_owned()),
            });
        }
        for v in row.values {
            values.push(match *v {
                OutValue::Empty => Value::Null,
                OutValue::Number(n) => Value::Real(n),
                OutValue::Text(s) => Value::Text(s.to_string()),
            });
        }
        let geom = row.position.map(|(x, y)| {
            let b = t.bounds.get_or_insert([x, y, x, y]);
            *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            point_blob(self.srs, x, y)
        });
        t.pending.push((geom, values));
        if t.pending.len() >= t.batch_rows() {
            self.flush(row.sheet)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, _summary: &Summary) -> Result<(), MergeError> {
        for i in 0..self.layers.len() {
            self.flush(i)?;
        }
        let mut sql = String::new();
        for t in &self.layers {
            let table = ident(&t.name);
            let rtree = ident(&format!("rtree_{}_geom", t.name));
            sql.push_str(&format!(
                "CREATE VIRTUAL TABLE {rtree} USING rtree(id, minx, maxx, miny, maxy);
                 INSERT INTO {rtree} SELECT fid, {x}, {x}, {y}, {y} FROM {table} WHERE geom IS NOT NULL;",
                x = ident(&t.x_col),
                y = ident(&t.y_col),
            ));
            sql.push_str(&rtree_triggers(&t.name));
            let bounds = match t.bounds {
                Some([a, b, c, d]) => {
                    format!("min_x = {a:?}, min_y = {b:?}, max_x = {c:?}, max_y = {d:?}, ")
                }
                None => String::new(),
            };
            sql.push_str(&format!(
                "UPDATE gpkg_contents SET {bounds}last_change = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE table_name = {};",
                sql_text(&t.name)
            ));
        }
        sql.push_str("COMMIT;");
        let mut conn = self.conn.take().expect("open until finish");
        self.handle.block_on(async {
            sqlx::raw_sql(&sql).execute(&mut conn).await?;
            conn.close().await
        })?;
        std::fs::rename(&self.partial, &self.output).map_err(|e| MergeError::io(&self.output, e))
    }
}

/// A point in GeoPackage binary: header (magic, version 0, flags: little endian with an
/// [minx, maxx, miny, maxy] envelope), the SRS id, the envelope, then the WKB point.
fn point_blob(srs: i32, x: f64, y: f64) -> Vec<u8> {
    let mut b = Vec::with_capacity(61);
    b.extend_from_slice(&[b'G', b'P', 0, 0b0000_0011]);
    b.extend_from_slice(&srs.to_le_bytes());
    for v in [x, x, y, y] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.push(1);
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&x.to_le_bytes());
    b.extend_from_slice(&y.to_le_bytes());
    b
}

/// Layer names: the sheet names, unique without regard to case (SQLite's table names).
fn layer_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    unique_names(names.map(str::to_string), "layer", Vec::new())
}

/// Column names: unique without regard to case, never empty, never `fid` or `geom`.
fn unique_columns<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    unique_names(names.cloned(), "field", vec!["fid".into(), "geom".into()])
}

/// An SQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL text literal.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The GeoPackage 1.3 R-tree triggers of a layer's `geom` column (spec F.3).
fn rtree_triggers(table: &str) -> String {
    let t = ident(table);
    let r = ident(&format!("rtree_{table}_geom"));
    let n = |suffix: &str| ident(&format!("rtree_{table}_geom_{suffix}"));
    let bbox = "ST_MinX(NEW.geom), ST_MaxX(NEW.geom), ST_MinY(NEW.geom), ST_MaxY(NEW.geom)";
    format!(
        "CREATE TRIGGER {insert} AFTER INSERT ON {t} WHEN (new.geom NOT NULL AND NOT ST_IsEmpty(NEW.geom))
         BEGIN INSERT OR REPLACE INTO {r} VALUES (NEW.fid, {bbox}); END;
         CREATE TRIGGER {update1} AFTER UPDATE OF geom ON {t} WHEN OLD.fid = NEW.fid AND (NEW.geom NOTNULL AND NOT ST_IsEmpty(NEW.geom))
         BEGIN INSERT OR REPLACE INTO {r} VALUES (NEW.fid, {bbox}); END;
         CREATE TRIGGER {update2} AFTER UPDATE OF geom ON {t} WHEN OLD.fid = NEW.fid AND (NEW.geom ISNULL OR ST_IsEmpty(NEW.geom))
         BEGIN DELETE FROM {r} WHERE id = OLD.fid; END;
         CREATE TRIGGER {update3} AFTER UPDATE ON {t} WHEN OLD.fid != NEW.fid AND (NEW.geom NOTNULL AND NOT ST_IsEmpty(NEW.geom))
         BEGIN DELETE FROM {r} WHERE id = OLD.fid; INSERT OR REPLACE INTO {r} VALUES (NEW.fid, {bbox}); END;
         CREATE TRIGGER {update4} AFTER UPDATE ON {t} WHEN OLD.fid != NEW.fid AND (NEW.geom ISNULL OR ST_IsEmpty(NEW.geom))
         BEGIN DELETE FROM {r} WHERE id IN (OLD.fid, NEW.fid); END;
         CREATE TRIGGER {delete} AFTER DELETE ON {t} WHEN old.geom NOT NULL
         BEGIN DELETE FROM {r} WHERE id = OLD.fid; END;",
        insert = n("insert"),
        update1 = n("update1"),
        update2 = n("update2"),
        update3 = n("update3"),
        update4 = n("update4"),
        delete = n("delete"),
    )
}

/// The GeoPackage core tables (spec 1.3, Annex C) and the extensions register.
const SCHEMA: &str = "
CREATE TABLE gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
CREATE TABLE gpkg_tile_matrix_set (
  table_name TEXT NOT NULL PRIMARY KEY, srs_id INTEGER NOT NULL, min_x DOUBLE NOT NULL,
  min_y DOUBLE NOT NULL, max_x DOUBLE NOT NULL, max_y DOUBLE NOT NULL,
  CONSTRAINT fk_gtms_table_name FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gtms_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
CREATE TABLE gpkg_tile_matrix (
  table_name TEXT NOT NULL, zoom_level INTEGER NOT NULL, matrix_width INTEGER NOT NULL,
  matrix_height INTEGER NOT NULL, tile_width INTEGER NOT NULL, tile_height INTEGER NOT NULL,
  pixel_x_size DOUBLE NOT NULL, pixel_y_size DOUBLE NOT NULL,
  CONSTRAINT pk_ttm PRIMARY KEY (table_name, zoom_level),
  CONSTRAINT fk_tmm_table_name FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name));
CREATE TABLE gpkg_extensions (
  table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL, definition TEXT NOT NULL,
  scope TEXT NOT NULL,
  CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name));
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_without_regard_to_case() {
        let headers: Vec<String> = ["id", "", "FID", "Name", "name", "geom"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            unique_columns(headers.iter()),
            ["id", "field_2", "FID_2", "Name", "name_2", "geom_2"]
        );
        assert_eq!(
            layer_names(["a", "A", ""].into_iter()),
            ["a", "A_2", "layer_3"]
        );
        assert_eq!(point_blob(5186, 1.0, 2.0).len(), 61);
    }
}
