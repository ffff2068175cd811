//! Every tunable of a geobatch process, once: a const default that clap and the tests share.
//!
//! The same struct is the command line's global flags (each with its `GEOBATCH_*` variable)
//! and what [`Settings::embedded`] gives tests. Provider keys and base URLs are not fields:
//! each provider declares its own variables, read into [`ProviderEnv`] (see `lookup`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::job::EXCEL_MAX_DATA_ROWS;
use crate::secret::Secret;

pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_TOPIC_PARTITIONS: i32 = 4;
pub const DEFAULT_TOPIC_REPLICATION: i32 = 1;
pub const DEFAULT_WORKERS: usize = 2;
pub const DEFAULT_BATCH_ROWS: usize = 1000;
pub const DEFAULT_LOG: &str = "info";
pub const DEFAULT_MAX_SHEETS: u32 = 1000;
pub const DEFAULT_RECYCLE_AFTER_TOPICS: u64 = 500;
pub const DEFAULT_STALL_CHECK_SECS: u64 = 10;
pub const DEFAULT_WATCH_QUIET_MS: u64 = 3000;
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_UPLOAD_MB: u64 = 512;
/// A client has this long to send a request's headers (also: how long an idle keep-alive
/// connection stays open).
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 15;
/// A request body that sends nothing for this long is cut.
pub const DEFAULT_BODY_IDLE_TIMEOUT_SECS: u64 = 30;
/// Longest a request may take, from its headers to the end of its answer's head.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 3600;
/// Open HTTP connections at once; more are answered 503 and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The variable naming a file that holds the key of any provider (its first line).
pub const KEY_FILE_ENV: &str = "GEOBATCH_LOOKUP_KEY_FILE";

/// How this process reaches Kafka.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct BusSettings {
    /// Kafka bootstrap servers; unset: an embedded broker in this process.
    #[arg(long = "kafka-brokers", env = "GEOBATCH_KAFKA_BROKERS", global = true)]
    pub brokers: Option<String>,
    /// Extra librdkafka properties for every Kafka client, `key=value,key=value`
    /// (e.g. `security.protocol=SASL_SSL,sasl.mechanism=PLAIN`).
    #[arg(
        long = "kafka-config",
        env = "GEOBATCH_KAFKA_CONFIG",
        default_value = "",
        global = true,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub client_properties: ClientProperties,
    /// Partitions of each sheet topic.
    #[arg(long = "topic-partitions", env = "GEOBATCH_TOPIC_PARTITIONS", default_value_t = DEFAULT_TOPIC_PARTITIONS, global = true)]
    pub partitions: i32,
    /// Replication factor of each sheet topic (external Kafka only).
    #[arg(long = "topic-replication", env = "GEOBATCH_TOPIC_REPLICATION", default_value_t = DEFAULT_TOPIC_REPLICATION, global = true)]
    pub replication: i32,
}

impl BusSettings {
    /// The configured brokers, if any (an empty value means none).
    pub fn external_brokers(&self) -> Option<&str> {
        self.brokers
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
    }
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            brokers: None,
            client_properties: ClientProperties::default(),
            partitions: DEFAULT_TOPIC_PARTITIONS,
            replication: DEFAULT_TOPIC_REPLICATION,
        }
    }
}

/// The HTTP front door of `serve`: address, who may use it, and how long and how much a
/// client may take.
#[derive(Args, Clone, Debug)]
pub struct HttpSettings {
    /// HTTP listen address. Anything but a loopback address needs GEOBATCH_API_TOKEN (or
    /// --allow-anonymous).
    #[arg(long, env = "GEOBATCH_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Largest accepted upload (the whole request), in MiB.
    #[arg(long, env = "GEOBATCH_MAX_UPLOAD_MB", default_value_t = DEFAULT_MAX_UPLOAD_MB)]
    pub max_upload_mb: u64,
    /// Bearer token every route but /healthz needs (`Authorization: Bearer …`).
    #[arg(long, env = "GEOBATCH_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A file whose first line is the API token (when GEOBATCH_API_TOKEN is unset).
    #[arg(long, env = "GEOBATCH_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Bearer token for /metrics (unset: the API token).
    #[arg(long, env = "GEOBATCH_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Listen on a non-loopback address without a token: anyone who reaches it may use it.
    #[arg(long, env = "GEOBATCH_ALLOW_ANONYMOUS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_anonymous: bool,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is
    /// closed after as long.
    #[arg(long, env = "GEOBATCH_HEADER_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may send nothing before it is cut.
    #[arg(long, env = "GEOBATCH_BODY_IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_IDLE_TIMEOUT_SECS)]
    pub body_idle_timeout_secs: u64,
    /// Seconds one request may take at most (an upload included).
    #[arg(long, env = "GEOBATCH_REQUEST_TIMEOUT_SECS", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS)]
    pub request_timeout_secs: u64,
    /// Open HTTP connections at once; one more is answered 503 and closed.
    #[arg(long, env = "GEOBATCH_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("a socket address"),
            max_upload_mb: DEFAULT_MAX_UPLOAD_MB,
            api_token: None,
            api_token_file: None,
            metrics_token: None,
            allow_anonymous: false,
            header_timeout_secs: DEFAULT_HEADER_TIMEOUT_SECS,
            body_idle_timeout_secs: DEFAULT_BODY_IDLE_TIMEOUT_SECS,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl HttpSettings {
    /// The API token: the variable, else the file's first line; None when neither is set.
    pub fn api_token(&self) -> Result<Option<Secret>, String> {
        if let Some(t) = self.api_token.as_deref().map(str::trim) {
            if !t.is_empty() {
                return Ok(Some(Secret::new(t)));
            }
        }
        match &self.api_token_file {
            Some(path) => Secret::from_file(path)
                .map(Some)
                .map_err(|e| format!("GEOBATCH_API_TOKEN_FILE {}: {e}", path.display())),
            None => Ok(None),
        }
    }

    /// The token /metrics needs: its own, else the API token.
    pub fn metrics_token(&self) -> Result<Option<Secret>, String> {
        match self.metrics_token.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => Ok(Some(Secret::new(t))),
            _ => self.api_token(),
        }
    }
}

/// Everything a process is told besides its command.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Where uploads, the SQLite store and results live.
    #[arg(long, env = "GEOBATCH_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,
    /// postgres://… : keep the result store in PostgreSQL; unset: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL with PostGIS for `--engine postgis`; unset: the store's database (DATABASE_URL).
    #[arg(
        long,
        env = "GEOBATCH_POSTGIS_URL",
        global = true,
        hide_env_values = true
    )]
    pub postgis_url: Option<String>,
    #[command(flatten)]
    pub bus: BusSettings,
    /// Delete a job's row topics once its workbook is written. (Tansu 0.6 answers metadata for
    /// a deleted topic in a way that crashes librdkafka clients that knew it: set false there.)
    #[arg(long, env = "GEOBATCH_DELETE_TOPICS", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub delete_topics: bool,
    /// Consumer tasks (workers) in this process.
    #[arg(long, env = "GEOBATCH_WORKERS", default_value_t = DEFAULT_WORKERS, global = true)]
    pub workers: usize,
    /// Rows per Kafka message.
    #[arg(long, env = "GEOBATCH_BATCH_ROWS", default_value_t = DEFAULT_BATCH_ROWS, global = true)]
    pub batch_rows: usize,
    /// Data rows per worksheet before it is split (Excel's limit; lower only to test).
    #[arg(long, env = "GEOBATCH_SHEET_MAX_ROWS", default_value_t = EXCEL_MAX_DATA_ROWS, global = true, hide = true)]
    pub sheet_max_rows: u64,
    /// Worksheets (so topics) one job may have: a `sheet_by` column with more distinct values
    /// is refused.
    #[arg(long, env = "GEOBATCH_MAX_SHEETS", default_value_t = DEFAULT_MAX_SHEETS, global = true)]
    pub max_sheets: u32,
    /// The embedded broker is recycled once it has created this many topics and no job is in
    /// flight (it cannot delete topics); 0: never.
    #[arg(long, env = "GEOBATCH_RECYCLE_AFTER_TOPICS", default_value_t = DEFAULT_RECYCLE_AFTER_TOPICS, global = true)]
    pub recycle_after_topics: u64,
    /// Seconds between checks that the broker still holds the rows of every running job (a
    /// broker that lost its data is noticed, the rows without a result published again); also
    /// what /healthz reports of the broker. 0: never.
    #[arg(long, env = "GEOBATCH_STALL_CHECK_SECS", default_value_t = DEFAULT_STALL_CHECK_SECS, global = true)]
    pub stall_check_secs: u64,
    /// (`serve`) Milliseconds a file in the watched folder's inbox must keep its size and
    /// modification time before it is taken.
    #[arg(long, env = "GEOBATCH_WATCH_QUIET_MS", default_value_t = DEFAULT_WATCH_QUIET_MS, global = true)]
    pub watch_quiet_ms: u64,
    /// Serve /metrics on its own address (workers; serve also has it on the HTTP port)
    #[arg(long, env = "GEOBATCH_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
    /// A file whose first line is the API key (when the provider's own variable is unset).
    #[arg(long, env = KEY_FILE_ENV, global = true)]
    pub lookup_key_file: Option<PathBuf>,
    /// Named lookup templates (operator configuration): a JSON file, or a directory of `*.json`
    /// files, each an object of name -> template; a job picks one with `template=NAME`.
    #[arg(long, env = "GEOBATCH_LOOKUP_TEMPLATES", global = true)]
    pub lookup_templates: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `geobatch=debug`.
    #[arg(long, env = "GEOBATCH_LOG", default_value = DEFAULT_LOG, global = true)]
    pub log: String,
    /// Keys and base URLs of the lookup providers, from each provider's own flags and variables.
    #[arg(skip)]
    pub providers: ProviderEnv,
}

impl Settings {
    /// The defaults, with the data in `data_dir`: embedded broker, SQLite, builtin transform.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            database_url: None,
            postgis_url: None,
            bus: BusSettings::default(),
            delete_topics: true,
            workers: DEFAULT_WORKERS,
            batch_rows: DEFAULT_BATCH_ROWS,
            sheet_max_rows: EXCEL_MAX_DATA_ROWS,
            max_sheets: DEFAULT_MAX_SHEETS,
            recycle_after_topics: DEFAULT_RECYCLE_AFTER_TOPICS,
            stall_check_secs: DEFAULT_STALL_CHECK_SECS,
            watch_quiet_ms: DEFAULT_WATCH_QUIET_MS,
            metrics_addr: None,
            lookup_key_file: None,
            lookup_templates: None,
            log: DEFAULT_LOG.to_string(),
            providers: ProviderEnv::default(),
        }
    }

    /// The configured database URL, if any (an empty value means none).
    pub fn database_url(&self) -> Option<&str> {
        self.database_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}

/// What this process knows about the lookup providers from its flags and environment: keys
/// and base URLs by provider name. Never stored with a job: every process reads its own.
#[derive(Clone, Debug, Default)]
pub struct ProviderEnv {
    pub keys: BTreeMap<String, Secret>,
    pub base_urls: BTreeMap<String, String>,
}

/// librdkafka properties given as `key=value,key=value`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientProperties(pub Vec<(String, String)>);

impl std::str::FromStr for ClientProperties {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| {
                        // Never echo the value: it may be a password.
                        let key: String = kv.chars().take(40).collect();
                        format!("{key:?}… is not key=value")
                    })
            })
            .collect::<Result<_, _>>()
            .map(ClientProperties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    /// The command line's defaults are the embedded settings.
    #[test]
    fn defaults_are_declared_once() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().settings;
        let embedded = Settings::embedded(DEFAULT_DATA_DIR);
        assert_eq!(parsed.data_dir, embedded.data_dir);
        assert_eq!(parsed.bus, embedded.bus);
        assert_eq!(parsed.workers, embedded.workers);
        assert_eq!(parsed.batch_rows, embedded.batch_rows);
        assert_eq!(parsed.sheet_max_rows, embedded.sheet_max_rows);
        assert_eq!(parsed.max_sheets, embedded.max_sheets);
        assert_eq!(parsed.recycle_after_topics, embedded.recycle_after_topics);
        assert_eq!(parsed.delete_topics, embedded.delete_topics);
        assert_eq!(parsed.log, embedded.log);
        assert_eq!(parsed.watch_quiet_ms, embedded.watch_quiet_ms);
        assert_eq!(parsed.stall_check_secs, embedded.stall_check_secs);
        #[derive(Parser)]
        struct Serve {
            #[command(flatten)]
            http: HttpSettings,
        }
        let http = Serve::try_parse_from(["x"]).unwrap().http;
        let default = HttpSettings::default();
        assert_eq!(http.http_addr, default.http_addr);
        assert_eq!(http.max_upload_mb, default.max_upload_mb);
        assert_eq!(http.header_timeout_secs, default.header_timeout_secs);
        assert_eq!(http.body_idle_timeout_secs, default.body_idle_timeout_secs);
        assert_eq!(http.request_timeout_secs, default.request_timeout_secs);
        assert_eq!(http.max_connections, default.max_connections);
        assert!(!http.allow_anonymous);
    }

    #[test]
    fn client_properties_parse_without_echoing_values() {
        let p: ClientProperties = "a=1, b = two ,".parse().unwrap();
        assert_eq!(
            p.0,
            vec![("a".into(), "1".into()), ("b".into(), "two".into())]
        );
        let e = "sasl.password".parse::<ClientProperties>().unwrap_err();
        assert!(e.contains("sasl.password"), "{e}");
    }
}
