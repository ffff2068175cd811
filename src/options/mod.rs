//! The job options: declared once, in [`JobSpec`], for the command line (clap) and the upload
//! form (serde) alike, then checked once into the typed [`JobOptions`] every stage receives.
//!
//! A new option is one field of `JobSpec` with its doc comment (the `--help` text, the form's
//! label, the README row) and one line in [`JobSpec::validate`].

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use serde::{Deserialize, Serialize};

use crate::job::{quote_short, EngineKind, Epsg};

mod parse;
use parse::{
    parse_columns, parse_in_range, parse_providers, parse_rate, parse_sheets, read_template,
};
pub use parse::{parse_delimiter, parse_formats};

/// Longest text accepted in an option (a column name, a CRS code…); the template definition
/// may be longer.
pub const MAX_OPTION_BYTES: usize = 4 * 1024;
/// Longest lookup template definition.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// A cached address is fresh for 30 days unless `cache_ttl` says otherwise.
pub const DEFAULT_CACHE_TTL_SECS: u64 = 30 * 86_400;

/// `--geocode` alone (or `geocode=auto` on the form): the address columns are detected.
pub const GEOCODE_AUTO: &str = "auto";
/// The geocoding chain when `providers` is not given.
pub const DEFAULT_GEOCODERS: [&str; 1] = ["kakao"];
/// Most address columns joined, and most providers in a chain.
pub const MAX_GEOCODE_COLUMNS: usize = 8;

/// The output formats (`merge::formats()` has one writer for each; a test holds them equal).
pub const OUTPUT_FORMATS: [&str; 4] = ["xlsx", "gpkg", "geojson", "csv"];

/// Allowed ranges of the numeric options, checked at acceptance.
pub const RATE_RANGE: (f64, f64) = (0.001, 10_000.0);
pub const DAILY_QUOTA_RANGE: (u64, u64) = (1, 1_000_000_000);
pub const CACHE_TTL_RANGE: (u64, u64) = (0, 10 * 365 * 86_400);
/// Excel's rows: 1 to 1,048,576.
pub const HEADER_ROW_RANGE: (u64, u64) = (1, 1_048_576);

/// What a user asks of a job, as given: `geobatch convert` flags and `POST /jobs` form fields
/// (same names, `sheet_by` is `--sheet-by`). Every value is text here; [`JobSpec::validate`]
/// reads it.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Source CRS, e.g. EPSG:5174. Unset: only plainly lon/lat values default to EPSG:4326.
    #[arg(long, value_name = "CRS")]
    pub from: Option<String>,
    /// Target CRS [default: EPSG:4326].
    #[arg(long, value_name = "CRS")]
    pub to: Option<String>,
    /// The x (easting/longitude) column; unset: detected from the header.
    #[arg(long, value_name = "COLUMN")]
    pub x: Option<String>,
    /// The y (northing/latitude) column; unset: detected from the header.
    #[arg(long, value_name = "COLUMN")]
    pub y: Option<String>,
    /// One worksheet per distinct value of this column.
    #[arg(long, value_name = "COLUMN")]
    pub sheet_by: Option<String>,
    /// Input encoding (utf-8, cp949, euc-kr, utf-16le, utf-16be); unset: detected.
    #[arg(long)]
    pub encoding: Option<String>,
    /// Field delimiter: , ; | or tab; unset: detected.
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Workbooks: read only these sheets (comma-separated names); unset: every visible sheet.
    #[arg(long, value_name = "NAME,NAME")]
    pub sheets: Option<String>,
    /// Workbooks: the 1-based row naming the columns in every sheet read; unset: the first
    /// row with values (one-cell title rows above it skipped).
    #[arg(long, value_name = "N")]
    pub header_row: Option<String>,
    /// Transform engine: builtin, or postgis (PostGIS ST_Transform; needs DATABASE_URL or
    /// GEOBATCH_POSTGIS_URL) [default: builtin].
    #[arg(long)]
    pub engine: Option<String>,
    /// Look up the address of every converted point at this provider (kakao, vworld,
    /// nominatim, template).
    #[arg(long, value_name = "PROVIDER")]
    pub lookup: Option<String>,
    /// The provider's budget for the whole cluster, requests per second (`10` or `10/s`;
    /// default: the provider's, 10, Nominatim 1).
    #[arg(long)]
    pub rate: Option<String>,
    /// Requests per UTC day for the whole cluster; when spent, the job pauses until midnight UTC.
    #[arg(long)]
    pub daily_quota: Option<String>,
    /// Seconds a cached address stays fresh [default: 2592000, 30 days].
    #[arg(long, value_name = "SECONDS")]
    pub cache_ttl: Option<String>,
    /// One of the operator's named lookup templates (GEOBATCH_LOOKUP_TEMPLATES); implies
    /// lookup template.
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// Command line only: a file holding your own provider description (JSON) for lookup
    /// template. The upload form takes `template` (a name) instead.
    #[arg(long, value_name = "FILE")]
    pub lookup_template: Option<String>,
    /// Geocode addresses instead of converting x/y: the address columns, comma-separated (their
    /// cells joined with spaces), or `auto` (the flag alone): detected from the header (주소,
    /// 도로명전체주소, 소재지전체주소, 도로명주소, 지번주소, address, addr). No x/y or --from.
    #[arg(long, value_name = "COL[,COL]", num_args = 0..=1, default_missing_value = GEOCODE_AUTO)]
    pub geocode: Option<String>,
    /// Geocoding providers in order, comma-separated (kakao, vworld, nominatim): a row not
    /// found, or found only at region level, goes to the next [default: kakao]; implies
    /// --geocode auto.
    #[arg(long, value_name = "P,P")]
    pub providers: Option<String>,
    /// Output formats: xlsx, gpkg (GeoPackage), geojson, csv; several comma-separated, e.g.
    /// xlsx,gpkg [default: xlsx; convert: from the extension of -o].
    #[arg(long, value_name = "FORMATS")]
    pub format: Option<String>,
}

/// Where the options came from: a file name is read only from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    Form,
}

/// What validation needs to know of the world, given by the caller (the options do not
/// depend on the stages that know these things).
#[derive(Clone, Debug)]
pub struct OptionContext {
    pub origin: Origin,
    /// The lookup providers this build knows.
    pub providers: Vec<&'static str>,
    /// The operator's named lookup templates (definitions already checked), for `template`.
    pub templates: std::sync::Arc<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// An option that cannot be used: it names the option as both the form and `--help` call it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("option {option}: {message}")]
pub struct OptionError {
    pub option: &'static str,
    pub message: String,
}

/// A geocoding provider chain as the `providers` option reads it (`kakao,vworld`), for a
/// retry with other providers.
pub fn parse_provider_chain(
    text: &str,
    known: &[&'static str],
) -> Result<Vec<String>, OptionError> {
    parse_providers(text, known).map_err(|m| err("providers", m))
}

pub(super) fn err(option: &'static str, message: impl Into<String>) -> OptionError {
    OptionError {
        option,
        message: message.into(),
    }
}

/// What the user told the reader; None = detect.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ReadOptions {
    /// An encoding label: "utf-8", "cp949", "euc-kr", "utf-16le", "utf-16be".
    pub encoding: Option<String>,
    pub delimiter: Option<u8>,
    pub x_column: Option<String>,
    pub y_column: Option<String>,
    /// Workbooks: the sheets to read (None: every visible one).
    pub sheets: Option<Vec<String>>,
    /// Workbooks: the 1-based header row (None: detected).
    pub header_row: Option<u32>,
    /// Geocoding (address → point): the address columns (empty: detected), which take the
    /// place of the x/y columns; None: no geocoding.
    pub geocode: Option<Vec<String>>,
}

/// The job's options, checked. Stored with the job (JSON); stages receive them typed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JobOptions {
    /// None: detected (plainly lon/lat values are EPSG:4326).
    pub from: Option<Epsg>,
    /// None: EPSG:4326.
    pub to: Option<Epsg>,
    #[serde(flatten)]
    pub read: ReadOptions,
    pub sheet_by: Option<String>,
    /// None: builtin.
    pub engine: Option<EngineKind>,
    /// Where the workbook goes; None: `<data dir>/results/<job>.xlsx`.
    pub output: Option<PathBuf>,
    /// The address lookup provider's name.
    pub lookup: Option<String>,
    /// The provider's budget for the whole cluster, requests/s (None: the provider's default).
    pub rate: Option<f64>,
    /// Requests per UTC day for the whole cluster.
    pub daily_quota: Option<u64>,
    /// Seconds a cached address stays fresh (None: [`DEFAULT_CACHE_TTL_SECS`]).
    pub cache_ttl: Option<u64>,
    /// The provider's own configuration (the template of `lookup template`).
    pub lookup_template: Option<serde_json::Value>,
    /// The output formats, each once, in the order given (empty: xlsx).
    pub formats: Vec<String>,
    /// Geocoding: the providers' names in the order asked (empty: [`DEFAULT_GEOCODERS`]).
    pub providers: Vec<String>,
    /// Set by `convert` only: a digest of its input files and options. A `convert` job belongs
    /// to its process: a later `convert` with the same digest resumes it, `serve` never does.
    pub input_digest: Option<String>,
}

impl JobOptions {
    pub fn target(&self) -> Epsg {
        self.to.unwrap_or(Epsg::WGS84)
    }

    pub fn engine(&self) -> EngineKind {
        self.engine.unwrap_or(EngineKind::Builtin)
    }

    pub fn cache_ttl_secs(&self) -> u64 {
        self.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL_SECS)
    }

    /// Whether rows are geocoded (addresses in, positions out).
    pub fn is_geocode(&self) -> bool {
        self.read.geocode.is_some()
    }

    /// The geocoding chain, in order.
    pub fn geocoders(&self) -> Vec<&str> {
        match self.providers.is_empty() {
            true => DEFAULT_GEOCODERS.to_vec(),
            false => self.providers.iter().map(String::as_str).collect(),
        }
    }

    /// The output formats, xlsx when none was asked for.
    pub fn formats(&self) -> Vec<&str> {
        match self.formats.is_empty() {
            true => vec![OUTPUT_FORMATS[0]],
            false => self.formats.iter().map(String::as_str).collect(),
        }
    }
}

/// One option as documented: its name, help and the values it takes, for `--help`'s twin on
/// the page (`GET /options`) and the README's table.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OptionDoc {
    /// The form field's name (`sheet_by`); the flag is `--sheet-by`.
    pub name: String,
    pub flag: String,
    pub help: String,
}

/// clap's view of `JobSpec` alone.
#[derive(clap::Parser)]
struct SpecOnly {
    #[command(flatten)]
    spec: JobSpec,
}

impl JobSpec {
    /// Every option with its help text, in declaration order.
    pub fn docs() -> Vec<OptionDoc> {
        SpecOnly::command()
            .get_arguments()
            .filter_map(|a| {
                let flag = a.get_long()?;
                Some(OptionDoc {
                    name: flag.replace('-', "_"),
                    flag: format!("--{flag}"),
                    help: a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                })
            })
            .filter(|d| d.name != "help")
            .collect()
    }

    /// The form's fields: text fields by their names (empty values are unset).
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<JobSpec, OptionError> {
        let mut map = serde_json::Map::new();
        for (name, value) in fields {
            let value = value.trim();
            if !value.is_empty() {
                map.insert(
                    name.to_string(),
                    serde_json::Value::String(value.to_string()),
                );
            }
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            let known: Vec<String> = JobSpec::docs().into_iter().map(|d| d.name).collect();
            let text = e.to_string();
            // serde's text quotes the field; keep it short whatever was sent.
            let shown = text
                .split('`')
                .nth(1)
                .map(quote_short)
                .unwrap_or_else(|| quote_short(&text));
            OptionError {
                option: "form",
                message: format!(
                    "unknown field {shown}; the fields are file, {}",
                    known.join(", ")
                ),
            }
        })
    }

    /// Reads every option once. Each error names the option and what it accepts.
    pub fn validate(self, ctx: &OptionContext) -> Result<JobOptions, OptionError> {
        let text = |name: &'static str, v: Option<String>| -> Result<Option<String>, OptionError> {
            match v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
                Some(v) if v.len() > MAX_OPTION_BYTES => {
                    Err(err(name, format!("longer than {MAX_OPTION_BYTES} bytes")))
                }
                other => Ok(other),
            }
        };
        let crs = |name: &'static str, v: Option<String>| -> Result<Option<Epsg>, OptionError> {
            text(name, v)?
                .map(|v| Epsg::parse(&v).map_err(|e| err(name, e.to_string())))
                .transpose()
        };
        let from = crs("from", self.from)?;
        let to = crs("to", self.to)?;
        let delimiter = text("delimiter", self.delimiter)?
            .map(|d| parse_delimiter(&d).map_err(|m| err("delimiter", m)))
            .transpose()?;
        let engine = text("engine", self.engine)?
            .map(|e| {
                e.parse::<EngineKind>().map_err(|_| {
                    err(
                        "engine",
                        format!(
                            "unknown engine {}; the engines are \"builtin\" and \"postgis\"",
                            quote_short(&e)
                        ),
                    )
                })
            })
            .transpose()?;
        let named = text("template", self.template)?
            .map(|name| {
                ctx.templates.get(&name).cloned().ok_or_else(|| {
                    let known: Vec<&str> =
                        ctx.templates.keys().take(20).map(String::as_str).collect();
                    err(
                        "template",
                        if known.is_empty() {
                            "no lookup templates are configured (GEOBATCH_LOOKUP_TEMPLATES)"
                                .to_string()
                        } else {
                            format!(
                                "unknown template {}; one of {}",
                                quote_short(&name),
                                known.join(", ")
                            )
                        },
                    )
                })
            })
            .transpose()?;
        let lookup_given = match text("lookup", self.lookup)? {
            None if named.is_some() => Some("template".to_string()),
            Some(p) if named.is_some() && !p.eq_ignore_ascii_case("template") => {
                return Err(err("template", "a template is for lookup template"))
            }
            other => other,
        };
        let lookup = lookup_given
            .map(|p| {
                let name = p.to_ascii_lowercase();
                if ctx.providers.contains(&name.as_str()) {
                    Ok(name)
                } else {
                    Err(err(
                        "lookup",
                        format!(
                            "unknown provider {}; one of {}",
                            quote_short(&p),
                            ctx.providers.join(", ")
                        ),
                    ))
                }
            })
            .transpose()?;
        let rate = text("rate", self.rate)?
            .map(|r| parse_rate(&r).map_err(|m| err("rate", m)))
            .transpose()?;
        let daily_quota = text("daily_quota", self.daily_quota)?
            .map(|q| parse_in_range("daily_quota", &q, DAILY_QUOTA_RANGE, "requests per day"))
            .transpose()?;
        let cache_ttl = text("cache_ttl", self.cache_ttl)?
            .map(|t| parse_in_range("cache_ttl", &t, CACHE_TTL_RANGE, "seconds"))
            .transpose()?;
        let lookup_template =
            match self.lookup_template {
                Some(t) if !t.trim().is_empty() && ctx.origin == Origin::Form => return Err(err(
                    "lookup_template",
                    "templates are the operator's configuration: pick one by name with template",
                )),
                Some(t) if !t.trim().is_empty() && named.is_some() => {
                    return Err(err(
                        "lookup_template",
                        "give template or lookup_template, not both",
                    ))
                }
                _ if named.is_some() => named,
                Some(t) if t.len() > MAX_TEMPLATE_BYTES => {
                    return Err(err(
                        "lookup_template",
                        format!("longer than {MAX_TEMPLATE_BYTES} bytes"),
                    ))
                }
                Some(t) if !t.trim().is_empty() => Some(read_template(t.trim(), ctx.origin)?),
                _ => None,
            };
        let providers = text("providers", self.providers)?
            .map(|p| parse_providers(&p, &ctx.providers).map_err(|m| err("providers", m)))
            .transpose()?
            .unwrap_or_default();
        let geocode = match text("geocode", self.geocode)? {
            Some(g) if g.eq_ignore_ascii_case(GEOCODE_AUTO) => Some(Vec::new()),
            Some(g) => Some(parse_columns(&g).map_err(|m| err("geocode", m))?),
            None if !providers.is_empty() => Some(Vec::new()),
            None => None,
        };
        if geocode.is_some() {
            let stray = [
                ("lookup", lookup.is_some()),
                ("from", from.is_some()),
                ("x", self.x.is_some()),
                ("y", self.y.is_some()),
                ("engine", engine.is_some()),
            ];
            if let Some((option, _)) = stray.into_iter().find(|(_, set)| *set) {
                return Err(err(
                    option,
                    "is for coordinates in the input; a geocoding job (geocode, providers) takes \
                     its positions from the addresses",
                ));
            }
        }
        if lookup.is_none() && geocode.is_none() {
            let stray = [
                ("rate", rate.is_some()),
                ("daily_quota", daily_quota.is_some()),
                ("cache_ttl", cache_ttl.is_some()),
                ("lookup_template", lookup_template.is_some()),
            ];
            if let Some((option, _)) = stray.into_iter().find(|(_, set)| *set) {
                return Err(err(
                    option,
                    "needs option lookup (the address provider) or geocode",
                ));
            }
        }
        Ok(JobOptions {
            from,
            to,
            read: ReadOptions {
                encoding: text("encoding", self.encoding)?,
                delimiter,
                x_column: text("x", self.x)?,
                y_column: text("y", self.y)?,
                sheets: text("sheets", self.sheets)?.map(|s| parse_sheets(&s)),
                header_row: text("header_row", self.header_row)?
                    .map(|n| parse_in_range("header_row", &n, HEADER_ROW_RANGE, "rows"))
                    .transpose()?
                    .map(|n| n as u32),
                geocode,
            },
            sheet_by: text("sheet_by", self.sheet_by)?,
            engine,
            output: None,
            lookup,
            rate,
            daily_quota,
            cache_ttl,
            lookup_template,
            formats: text("format", self.format)?
                .map(|f| parse_formats(&f).map_err(|m| err("format", m)))
                .transpose()?
                .unwrap_or_default(),
            providers,
            input_digest: None,
        })
    }
}

#[cfg(test)]
mod tests;
