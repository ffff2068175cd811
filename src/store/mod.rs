//! The result store: jobs, their files and sheets, one result per input row, the lookup cache
//! and the providers' shared budget.
//!
//! Every result write is idempotent per (job, seq) and moves the sheet counters in the same
//! transaction, so a redelivered batch can neither duplicate a row nor skew the progress.
//!
//! Two backends behind the same methods: SQLite (a file in the data directory, the default)
//! and PostgreSQL (`DATABASE_URL=postgres://…`). Same schema (`migrations/sqlite`,
//! `migrations/postgres`) and the same SQL text wherever the dialects agree: every query is
//! written with `$1`-style parameters, which sqlx's SQLite driver reads as well. Only the bulk
//! insert of results and the budget statement differ.
//!
//! The store knows the domain (`job`), never a stage: what a lookup answer means is the lookup's
//! business; the store keeps it as JSON.

mod budget;
mod cache;
mod jobs;
mod results;

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use budget::{QuotaSpent, Reservation, DAY_MS};
pub use jobs::{JobFile, JobRecord, NewJob, NewSheet, SheetRecord};
pub use results::{Stored, StoredResult};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("result store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("result store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Something stored cannot be read back as what it should be.
    #[error("result store: {0}")]
    Corrupt(String),
    #[error("result store: {0}")]
    Config(String),
}

impl StoreError {
    /// A failure that goes away by itself (a connection cut, the database restarting or busy,
    /// a disk that was full): the operation is worth trying again, the job is not at fault.
    pub fn is_transient(&self) -> bool {
        let StoreError::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    // Connection exceptions, insufficient resources, operator intervention
                    // (pg_terminate_backend, shutdown), serialization failures and deadlocks.
                    ["08", "53", "57"].iter().any(|c| code.starts_with(c))
                        || code == "40001"
                        || code == "40P01"
                } else {
                    // SQLITE_BUSY, _LOCKED, _IOERR, _FULL (primary codes; extended codes carry
                    // the primary one in their low byte).
                    code.parse::<i32>()
                        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13))
                }
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Which database holds the store.
#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct ResultStore {
    backend: Backend,
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever the backend: one source text,
/// compiled once per dialect.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            crate::store::Backend::Sqlite($pool) => $body,
            crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// True for the URLs that select the PostgreSQL backend.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl ResultStore {
    /// Opens the store and applies the migrations: PostgreSQL when `database_url` is a
    /// `postgres://` URL, otherwise (None or empty) the SQLite file `geobatch.db` in `data_dir`.
    pub async fn open(data_dir: &Path, database_url: Option<&str>) -> Result<ResultStore> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Self::open_dir(data_dir).await,
            Some(url) if is_postgres_url(url) => Self::open_postgres(url).await,
            Some(url) => Err(StoreError::Config(format!(
                "DATABASE_URL must be a postgres:// URL (unset: SQLite in the data directory); \
                 it starts with {:?}",
                url.split(':').next().unwrap_or_default()
            ))),
        }
    }

    /// Opens (creating if needed) the SQLite store in `data_dir` and applies the migrations.
    pub async fn open_dir(data_dir: &Path) -> Result<ResultStore> {
        let file = data_dir.join("geobatch.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))?
            .create_if_missing(true)
            // WAL + NORMAL survives a killed process (not a power cut) at a fraction of FULL's cost.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A COMMIT that failed (SQLITE_FULL on a full disk) can leave its connection inside
            // the transaction, holding the write lock: every later write then met "database is
            // locked" even after space came back, until a restart. A connection goes back to
            // the pool outside any transaction (the ROLLBACK fails harmlessly when none is open).
            .after_release(|conn, _| {
                Box::pin(async move {
                    let _ = sqlx::Executor::execute(&mut *conn, "ROLLBACK").await;
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(ResultStore {
            backend: Backend::Sqlite(pool),
        })
    }

    /// Connects to PostgreSQL and applies the migrations (sqlx serialises concurrent migrators
    /// with an advisory lock, so several processes may start at once).
    pub async fn open_postgres(url: &str) -> Result<ResultStore> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(ResultStore {
            backend: Backend::Postgres(pool),
        })
    }

    /// "SQLite" or "PostgreSQL", for logs.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// The PostgreSQL pool when the store lives there (the PostGIS engine may share it).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }
}

/// A column holding JSON, decoded; a value that does not decode is corruption of the store.
fn decode_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}
