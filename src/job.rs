//! The domain every stage speaks: what a job is, where it is in its life, and what became of
//! each of its rows. This module imports nothing from the stages.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job's id: 32 lowercase hex digits (128 random bits). Ids of jobs made by earlier versions
/// (16 digits) still read. Anything else is refused before it reaches the store, a topic name
/// or a path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{shown} is not a job id (32 hexadecimal digits)")]
pub struct BadJobId {
    shown: String,
}

impl JobId {
    /// A new id of 128 random bits.
    pub fn random() -> JobId {
        let mut bytes = [0u8; 16];
        // The OS's generator; a machine without one cannot run anything else either.
        getrandom::getrandom(&mut bytes).expect("the operating system's random generator");
        JobId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn parse(s: &str) -> Result<JobId, BadJobId> {
        let ok = matches!(s.len(), 16 | 32)
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(JobId(s.to_string()))
        } else {
            Err(BadJobId {
                shown: quote_short(s),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl FromStr for JobId {
    type Err = BadJobId;
    fn from_str(s: &str) -> Result<JobId, BadJobId> {
        JobId::parse(s)
    }
}

impl TryFrom<String> for JobId {
    type Error = BadJobId;
    fn try_from(s: String) -> Result<JobId, BadJobId> {
        JobId::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Text shown back to a person: quoted, at most 200 characters.
pub fn quote_short(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// Declares an enum whose variants each have one text: the text is what the store, the API,
/// the workbook and the options use, in one place.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownText;
            fn from_str(s: &str) -> Result<$name, UnknownText> {
                let t = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(t))
                    .ok_or_else(|| UnknownText {
                        what: stringify!($name),
                        shown: quote_short(s),
                        choices: $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = Cow::<str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A text that is not one of an enum's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{shown} is not a {what}; one of {choices}")]
pub struct UnknownText {
    what: &'static str,
    shown: String,
    choices: String,
}

text_enum! {
    /// Where a job is in its life.
    pub enum JobState {
        /// Stored, not yet read.
        Accepted = "accepted",
        /// Intake is reading the files and publishing rows.
        Publishing = "publishing",
        /// Every row is published; workers are converting.
        Running = "running",
        /// Waiting (a spent daily quota, a provider that is down); the message says why and
        /// until when.
        Paused = "paused",
        /// Every row is resolved; the results are being written.
        Merging = "merging",
        Done = "done",
        Failed = "failed",
    }
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}

text_enum! {
    /// What became of one row.
    pub enum RowStatus {
        /// Converted (and, for a lookup, answered).
        Ok = "ok",
        /// Geocoded, but the provider gave several candidates at the best level.
        Ambiguous = "ambiguous",
        /// The provider knows nothing there (reverse lookup: the point is kept).
        NoResult = "no_result",
        /// No position: the reason is in the row's error.
        Error = "error",
    }
}

text_enum! {
    /// How points are transformed.
    pub enum EngineKind {
        /// Pure Rust, PROJ-exact for the CRSs it knows.
        Builtin = "builtin",
        /// PostGIS's `ST_Transform`, in a PostgreSQL database.
        Postgis = "postgis",
    }
}

/// A CRS by its EPSG code, as users write it: `EPSG:5174`, `epsg:5174` or `5174`. Whether an
/// engine knows it is the engine's question.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epsg(u32);

/// A CRS written in a way that is not an EPSG code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{shown} is not a CRS code; write it as EPSG:<number>, e.g. EPSG:5174")]
pub struct BadCrs {
    shown: String,
}

impl Epsg {
    pub const WGS84: Epsg = Epsg(4326);

    pub const fn new(code: u32) -> Epsg {
        Epsg(code)
    }

    pub fn code(self) -> u32 {
        self.0
    }

    pub fn parse(s: &str) -> Result<Epsg, BadCrs> {
        let trimmed = s.trim();
        let digits = match trimmed.get(..5) {
            Some(prefix) if prefix.eq_ignore_ascii_case("epsg:") => trimmed[5..].trim_start(),
            _ => trimmed,
        };
        let bad = || BadCrs {
            shown: quote_short(s),
        };
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match digits.parse::<u32>() {
            Ok(0) | Err(_) => Err(bad()),
            Ok(code) => Ok(Epsg(code)),
        }
    }
}

impl fmt::Display for Epsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPSG:{}", self.0)
    }
}

impl fmt::Debug for Epsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPSG:{}", self.0)
    }
}

impl FromStr for Epsg {
    type Err = BadCrs;
    fn from_str(s: &str) -> Result<Epsg, BadCrs> {
        Epsg::parse(s)
    }
}

impl Serialize for Epsg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Epsg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Epsg, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Epsg::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One input cell as read. A CSV gives text only, exactly as in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    /// A number cell of a workbook, at full precision.
    Number(f64),
    Bool(bool),
    /// A date or time cell as ISO-8601 text.
    Date(String),
}

impl Cell {
    /// The cell as a person reads it.
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Cell::Empty => Cow::Borrowed(""),
            Cell::Text(s) | Cell::Date(s) => Cow::Borrowed(s),
            Cell::Number(n) => Cow::Owned(format!("{n}")),
            Cell::Bool(b) => Cow::Borrowed(if *b { "TRUE" } else { "FALSE" }),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(s) | Cell::Date(s) => s.is_empty(),
            _ => false,
        }
    }
}

/// One point to convert: its place in the job's input and its source coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowPoint {
    pub seq: u64,
    pub x: f64,
    pub y: f64,
}

/// Why a row has no position. `column` None means the position as a whole (both coordinate
/// columns); `raw` None means "the cells as read", which the merger takes from the input.
#[derive(Clone, Debug, PartialEq)]
pub struct RowError {
    pub column: Option<String>,
    pub raw: Option<String>,
    pub reason: String,
}

/// Values of the columns a job adds after the position (an address lookup's `address`, …),
/// by column name; a column without a value is absent.
pub type Fields = Vec<(String, String)>;

/// What became of one row.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Resolved: `ok`, `ambiguous` or `no_result`, with the position when there is one.
    Resolved {
        status: RowStatus,
        point: Option<(f64, f64)>,
        fields: Fields,
    },
    /// `error`.
    Failed(RowError),
}

impl Outcome {
    /// A converted position and nothing else.
    pub fn point(x: f64, y: f64) -> Outcome {
        Outcome::Resolved {
            status: RowStatus::Ok,
            point: Some((x, y)),
            fields: Fields::new(),
        }
    }

    /// An error about the position as a whole.
    pub fn failed(reason: impl Into<String>) -> Outcome {
        Outcome::Failed(RowError {
            column: None,
            raw: None,
            reason: reason.into(),
        })
    }

    pub fn status(&self) -> RowStatus {
        match self {
            Outcome::Resolved { status, .. } => *status,
            Outcome::Failed(_) => RowStatus::Error,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    pub fn position(&self) -> Option<(f64, f64)> {
        match self {
            Outcome::Resolved { point, .. } => *point,
            Outcome::Failed(_) => None,
        }
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        match self {
            Outcome::Resolved { fields, .. } => fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            Outcome::Failed(_) => None,
        }
    }
}

/// A row's outcome with its place in the job's input.
#[derive(Clone, Debug, PartialEq)]
pub struct RowResult {
    pub seq: u64,
    pub outcome: Outcome,
}

/// One table of an input file: a CSV file has one; a workbook one per worksheet read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableLayout {
    /// The worksheet's name as in the input; a CSV's is its file's stem ("" in layouts stored
    /// by earlier versions: the file's stem is meant).
    pub name: String,
    /// Header names, trimmed of surrounding whitespace (and of a BOM).
    pub headers: Vec<String>,
    /// 1-based line (CSV) or row (workbook) of the header.
    #[serde(default = "first_line")]
    pub header_line: u64,
    /// Index into `headers` of the x column.
    pub x: usize,
    /// Index into `headers` of the y column.
    pub y: usize,
    /// Geocoding jobs: the address columns, which take the place of x/y (then both name the
    /// first address column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressColumns>,
}

/// Where a table's addresses are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddressColumns {
    /// Indexes into `headers`, their cells joined with spaces.
    pub columns: Vec<usize>,
    /// A parcel (지번) address column asked when the first gives nothing.
    #[serde(default)]
    pub alternative: Option<usize>,
}

/// A row's address to geocode, as read: the address columns joined, and the parcel
/// alternative when the table has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowAddress {
    pub text: String,
    pub alternative: Option<String>,
}

fn first_line() -> u64 {
    1
}

impl TableLayout {
    pub fn x_name(&self) -> &str {
        self.headers.get(self.x).map_or("", String::as_str)
    }

    pub fn y_name(&self) -> &str {
        self.headers.get(self.y).map_or("", String::as_str)
    }

    /// The columns a row's position is read from: x and y, or the address columns (and the
    /// alternative) of a geocoding table.
    pub fn position_columns(&self) -> Vec<usize> {
        match &self.address {
            Some(a) => a.columns.iter().copied().chain(a.alternative).collect(),
            None => vec![self.x, self.y],
        }
    }

    /// Their names, comma-separated (what an error about the position as a whole names).
    pub fn position_names(&self) -> String {
        self.position_columns()
            .into_iter()
            .map(|i| self.headers.get(i).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What was found (or given) for one input file; stored with the job so that a re-read gives
/// the same records in the same order.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Layout {
    /// The input format that reads the file: "csv", "xlsx", …
    pub format: String,
    /// What that format needs to read the file the same way again (CSV: encoding and
    /// delimiter). Only the format reads it.
    pub reader: serde_json::Value,
    pub tables: Vec<TableLayout>,
}

impl<'de> Deserialize<'de> for Layout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Layout, D::Error> {
        /// Layouts stored by versions that read CSV only: one table, the reader's settings
        /// beside it.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Current {
                format: String,
                reader: serde_json::Value,
                tables: Vec<TableLayout>,
            },
            CsvOnly {
                encoding: String,
                delimiter: u8,
                headers: Vec<String>,
                x: usize,
                y: usize,
            },
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Current {
                format,
                reader,
                tables,
            } => Layout {
                format,
                reader,
                tables,
            },
            Repr::CsvOnly {
                encoding,
                delimiter,
                headers,
                x,
                y,
            } => Layout {
                format: "csv".into(),
                reader: serde_json::json!({ "encoding": encoding, "delimiter": delimiter }),
                tables: vec![TableLayout {
                    name: String::new(),
                    headers,
                    header_line: 1,
                    x,
                    y,
                    address: None,
                }],
            },
        })
    }
}

/// Sheet names the merger uses for itself; data sheets never take them.
pub const RESERVED_SHEETS: [&str; 2] = ["Summary", "Errors"];

/// Excel's last row is 1,048,576; one is the header.
pub const EXCEL_MAX_DATA_ROWS: u64 = 1_048_575;

/// Excel's last column is XFD: 16,384 columns per worksheet.
pub const EXCEL_MAX_COLUMNS: usize = 16_384;

/// Excel's limit for one cell's text, in characters; longer text is cut (and said).
pub const EXCEL_MAX_CELL_CHARS: usize = 32_767;

#[cfg(test)]
mod tests;
